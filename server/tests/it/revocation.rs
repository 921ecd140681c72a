//! Client certificate revocation (`PHR_TLS_CLIENT_CRL`) over real mTLS: a CA made by the test signs real CRLs
//! (PEM and DER files), a revoked certificate fails the handshake and is counted, a replaced CRL file takes
//! effect without a restart (by polling, by the reload handle, and by SIGHUP to a real `phr-server` process),
//! and a bad file, at start-up or on reload, is named and never replaces the CRLs in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use devpki::{Authority, CrlSpec, Identity, LeafSpec};
use phr_server::config::revocation::RevocationConfig;
use phr_server::tls::Reloaded;
use phr_server::{App, Config, TlsMaterial};

use crate::support::{self, Options, Pki, TestServer};

/// Writes `contents` to `path` the way configuration management does: a new file renamed over the old one.
fn replace(path: &Path, contents: impl AsRef<[u8]>) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A PEM CRL of `ca` revoking `revoked`.
fn pem_crl(ca: &Authority, revoked: &[&Identity], number: u64) -> String {
    devpki::crl_pem(&ca.revocation_list(revoked, CrlSpec::current(number)).unwrap())
}

/// Whether `identity` gets through the handshake: any HTTP answer means it did.
async fn admitted(server: &TestServer, identity: &Identity) -> bool {
    server
        .client_with(Some(identity))
        .get(server.url("allergy/P0001"))
        .basic_auth("F001:ops", Some(support::PASSWORD))
        .header("X-Trace-Id", "crl-probe")
        .header("X-Facility-Id", "F001")
        .send()
        .await
        .is_ok()
}

/// A server whose client CA is `pki.ca`, checking the CRL file `crl` (polled every second when `poll`).
async fn start(pki: &Arc<Pki>, crl: &Path, poll: bool) -> TestServer {
    let revocation =
        RevocationConfig { files: vec![crl.to_path_buf()], poll_interval: poll.then_some(Duration::from_secs(1)) };
    let options = Options { pki: Some(pki.clone()), revocation, seed_patients: 1, ..Options::default() };
    TestServer::start(support::sqlite(), options).await
}

#[tokio::test]
async fn a_revoked_certificate_fails_the_handshake_is_counted_and_leaves_no_audit_row() {
    // Arrange: a CRL (PEM) revoking one of two client certificates of the same CA.
    let pki = Arc::new(Pki::new());
    let revoked = pki.ca.issue(&LeafSpec::client("lost-laptop")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let crl = dir.path().join("clients.crl.pem");
    replace(&crl, pem_crl(&pki.ca, &[&revoked], 1));
    let server = start(&pki, &crl, false).await;
    let before = server.audit_count().await;

    // Act
    let revoked_admitted = admitted(&server, &revoked).await;
    let valid_admitted = admitted(&server, &pki.client).await;

    // Assert
    assert!(!revoked_admitted, "a revoked certificate completed the handshake");
    assert!(valid_admitted, "a certificate the CRL does not list was refused");
    server.wait_for_metric("phr_connections_closed_total{reason=\"certificate_revoked\"} 1").await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("phr_tls_crl_revoked_certificates 1"), "{metrics}");
    assert!(metrics.contains("phr_tls_crl_next_update_timestamp_seconds "), "{metrics}");
    assert_eq!(server.audit_count().await - before, 1, "only the admitted call is audited");
    server.stop().await;
}

#[tokio::test]
async fn a_replaced_crl_applies_without_restart_and_a_bad_one_keeps_the_crls_in_force() {
    // Arrange: a DER CRL revoking A, polled every second.
    let pki = Arc::new(Pki::new());
    let a = pki.ca.issue(&LeafSpec::client("client-a")).unwrap();
    let b = pki.ca.issue(&LeafSpec::client("client-b")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let crl = dir.path().join("clients.crl");
    replace(&crl, pki.ca.revocation_list(&[&a], CrlSpec::current(1)).unwrap());
    let server = start(&pki, &crl, true).await;
    assert!(!admitted(&server, &a).await && admitted(&server, &b).await, "the first CRL is in force");

    // Act 1: the file is replaced by one revoking B instead; the poller finds it.
    replace(&crl, pki.ca.revocation_list(&[&b], CrlSpec::current(2)).unwrap());
    server.wait_for_metric("phr_tls_crl_reloads_total{result=\"ok\"} 1").await;

    // Assert 1
    assert!(admitted(&server, &a).await, "A was un-revoked by the new CRL");
    assert!(!admitted(&server, &b).await, "B is revoked by the new CRL");

    // Act 2: a truncated file replaces it; the poller tries it and fails.
    replace(&crl, b"-----BEGIN X509 CRL-----\nMIIB\n");
    server.wait_for_metric("phr_tls_crl_reloads_total{result=\"failed\"} 1").await;

    // Assert 2: the CRL in force stays in force.
    assert!(admitted(&server, &a).await && !admitted(&server, &b).await, "a bad file changed the CRLs in force");

    // Act 3: a CRL signed by another CA under the same file name, through the reload handle (SIGHUP's path).
    let foreign = Authority::new("foreign").unwrap();
    replace(&crl, pem_crl(&foreign, &[], 3));
    let error = server.tls.reload(true).unwrap_err();

    // Assert 3: the error names the file and the problem; still nothing changed.
    assert_eq!(error.file, crl);
    assert!(error.problem.contains("not a CA of PHR_TLS_CLIENT_CA"), "{error}");
    assert!(admitted(&server, &a).await && !admitted(&server, &b).await);

    // Act 4: a good CRL past its nextUpdate, revoking both: stale CRLs stay enforced (see tls.rs).
    replace(&crl, pki.ca.revocation_list(&[&a, &b], CrlSpec::current(4).stale()).unwrap());
    let reloaded = server.tls.reload(true).unwrap();

    // Assert 4
    assert_eq!(reloaded, Reloaded::Swapped);
    assert!(!admitted(&server, &a).await && !admitted(&server, &b).await, "a stale CRL must still be enforced");
    assert!(admitted(&server, &pki.client).await);
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_whose_ca_has_no_crl_in_the_list_is_refused() {
    // Arrange: two client CAs, a CRL for the first only.
    let pki = Arc::new(Pki::new());
    let second_ca = Authority::new("second").unwrap();
    let from_second = second_ca.issue(&LeafSpec::client("second-ca-client")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let crl = dir.path().join("first.crl");
    replace(&crl, pem_crl(&pki.ca, &[], 1));
    let options = Options {
        pki: Some(pki.clone()),
        extra_client_ca: vec![second_ca.cert_der()],
        revocation: RevocationConfig { files: vec![crl], poll_interval: None },
        seed_patients: 1,
        ..Options::default()
    };
    let server = TestServer::start(support::sqlite(), options).await;

    // Act / Assert: unknown revocation status is not "not revoked".
    assert!(!admitted(&server, &from_second).await);
    assert!(admitted(&server, &pki.client).await);
    server.stop().await;
}

#[tokio::test]
async fn a_missing_garbled_or_foreign_crl_at_start_up_is_an_error_naming_the_variable_and_the_file() {
    let pki = Arc::new(Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let garbled = dir.path().join("garbled.der");
    std::fs::write(&garbled, b"\x30\x03\x02\x01").unwrap();
    let foreign = dir.path().join("foreign.pem");
    std::fs::write(&foreign, pem_crl(&Authority::new("foreign").unwrap(), &[], 1)).unwrap();
    let good = dir.path().join("good.pem");
    std::fs::write(&good, pem_crl(&pki.ca, &[], 1)).unwrap();
    for (name, files) in [
        ("missing", vec![good.clone(), dir.path().join("missing.crl")]),
        ("garbled", vec![garbled.clone()]),
        ("foreign", vec![good.clone(), foreign.clone()]),
    ] {
        // Act
        let result = App::build(config_for(&pki, &dir, files.clone())).await;

        // Assert
        let Err(error) = result else { panic!("{name}: the server started with a bad CRL") };
        let message = error.to_string();
        let culprit = files.last().unwrap().display().to_string();
        assert!(message.starts_with("PHR_TLS_CLIENT_CRL: "), "{name}: {message}");
        assert!(message.contains(&culprit), "{name}: {message} does not name {culprit}");
    }
}

/// A configuration for `pki` with the CRL `files`, a SQLite database and image folder in `dir`.
fn config_for(pki: &Pki, dir: &tempfile::TempDir, files: Vec<PathBuf>) -> Config {
    let tls = TlsMaterial {
        cert_chain: pki.server.chain.clone(),
        key: Arc::new(pki.server.private_key()),
        client_ca: vec![pki.ca.cert_der()],
    };
    let db = format!("sqlite:{}", dir.path().join("phr.db").display());
    let mut config = Config::new(db, tls, dir.path().join("images"));
    config.layer = support::layer_args();
    config.revocation = RevocationConfig { files, poll_interval: None };
    config
}
