//! Client identities as operators receive them: PKCS#12 in both encodings (OpenSSL 3's AES/PBES2 and the
//! legacy 3DES one), PEM cert + key, and every way such files go wrong. Each broken file must produce an
//! error naming the file and the problem; each good one must be accepted by a server requiring client
//! certificates.

use crate::probe_support;

use std::path::Path;
use std::sync::Arc;

use connrun::evidence::{Outcome, ProbeRecord};
use connrun::probe::ProbeClient;
use connrun::probe::identity::{ClientIdentitySource, IdentityError, TrustSource, client_tls_config, load_identity};
use connrun::redact::Redactor;
use devpki::{LeafSpec, Pkcs12Flavor};
use probe_support::{P12_PASSWORD, Pki, ServerKind};

async fn probe_mtls_server(pki: &Pki, identity: Option<&ClientIdentitySource>, run_dir: &Path) -> ProbeRecord {
    let server = pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
    let addr =
        probe_support::start(ServerKind::Tls { cert: server, client_ca: Some(&pki.ca), tls12_only: false }).await;
    let tls = client_tls_config(&TrustSource::CaBundle(pki.ca_bundle.clone()), identity).unwrap();
    let client = ProbeClient::new(Arc::new(tls), None, Arc::new(Redactor::new([P12_PASSWORD.to_owned()])));
    let spec = probe_support::get_spec("PHR-06", "identityToken", "C", format!("https://localhost:{}/ok", addr.port()));
    client.run(&spec, "20251119TorcaPHRSeqZ1", run_dir).await
}

fn config_error(identity: &ClientIdentitySource, pki: &Pki) -> String {
    match client_tls_config(&TrustSource::CaBundle(pki.ca_bundle.clone()), Some(identity)) {
        Ok(_) => panic!("{identity:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn pkcs12_in_both_flavors_is_accepted_by_a_server_requiring_client_certificates() {
    let pki = Pki::new();
    for flavor in [Pkcs12Flavor::Modern, Pkcs12Flavor::Legacy3Des] {
        let identity = ClientIdentitySource::Pkcs12 {
            path: pki.client_p12(flavor),
            password: P12_PASSWORD.to_owned(),
            password_from: None,
        };
        let run_dir = tempfile::tempdir().unwrap();

        let record = probe_mtls_server(&pki, Some(&identity), run_dir.path()).await;

        assert_eq!(record.outcome, Outcome::Http, "{flavor:?}");
        assert_eq!(record.http_status, Some(200), "{flavor:?}");
        assert!(record.ready, "{flavor:?}");
    }
}

#[tokio::test]
async fn pem_identity_is_accepted_and_no_identity_is_rejected_by_the_server() {
    let pki = Pki::new();
    let (cert, key) = pki.client_pem();
    let run_dir = tempfile::tempdir().unwrap();

    let with_pem = probe_mtls_server(&pki, Some(&ClientIdentitySource::Pem { cert, key }), run_dir.path()).await;
    let without = probe_mtls_server(&pki, None, run_dir.path()).await;

    assert_eq!((with_pem.outcome, with_pem.http_status), (Outcome::Http, Some(200)));
    assert!(
        matches!(&without.outcome, Outcome::ClientCertRejected { reason } if reason.contains("certificate_required")),
        "{:?}",
        without.outcome
    );
}

#[test]
fn pkcs12_decodes_leaf_first_with_its_key() {
    let pki = Pki::new();
    let path = pki.client_p12(Pkcs12Flavor::Legacy3Des);

    let identity =
        load_identity(&ClientIdentitySource::Pkcs12 { path, password: P12_PASSWORD.to_owned(), password_from: None })
            .unwrap();

    assert_eq!(identity.chain.first(), Some(pki.client.leaf()));
    assert_eq!(identity.key.secret_der(), pki.client.key_pkcs8.as_slice());
}

#[test]
fn wrong_pkcs12_password_names_the_file() {
    let pki = Pki::new();
    for flavor in [Pkcs12Flavor::Modern, Pkcs12Flavor::Legacy3Des] {
        let path = pki.client_p12(flavor);

        let message = config_error(
            &ClientIdentitySource::Pkcs12 { path: path.clone(), password: "wrong".to_owned(), password_from: None },
            &pki,
        );

        assert!(message.starts_with(&path.display().to_string()), "{message}");
        assert!(message.contains("wrong password"), "{message}");
        assert!(!message.contains(P12_PASSWORD));
    }
}

/// The password is a reference in the targets file; when it does not open the `.p12`, the message says
/// which variable or file it came from (and which key named it), never the value.
#[test]
fn wrong_pkcs12_password_names_the_file_it_was_read_from() {
    let pki = Pki::new();
    let p12 = pki.client_p12(Pkcs12Flavor::Modern);
    std::fs::write(pki.dir.path().join("p12.pass"), "stale-password\n").unwrap();
    let targets_file = pki.dir.path().join("targets.toml");
    let text = format!(
        "[targets.stage]\nbase_url = \"https://127.0.0.1:9\"\n[targets.stage.identity]\np12 = \"{}\"\n\
         password_file = \"p12.pass\"\n",
        p12.display()
    );
    let target = connrun::plan::target::Targets::parse(&targets_file, &text).unwrap().resolve("stage").unwrap();

    let message = config_error(target.identity.as_ref().unwrap(), &pki);

    assert!(message.contains("wrong password"), "{message}");
    let from = format!("read from file {}", pki.dir.path().join("p12.pass").display());
    assert!(message.contains(&from) && message.contains("targets.stage.identity.password_file"), "{message}");
    assert!(!message.contains("stale-password"), "{message}");
}

#[test]
fn pem_file_given_as_pkcs12_is_called_out() {
    let pki = Pki::new();
    let (cert, _) = pki.client_pem();

    let message = config_error(
        &ClientIdentitySource::Pkcs12 { path: cert, password: P12_PASSWORD.to_owned(), password_from: None },
        &pki,
    );

    assert!(message.contains("client.crt") && message.contains("not a PKCS#12 file"), "{message}");
}

#[test]
fn pkcs12_with_certificates_only_has_no_private_key() {
    let pki = Pki::new();
    let mut store = p12_keystore::KeyStore::new();
    let cert = p12_keystore::Certificate::from_der(pki.client.leaf()).unwrap();
    store.add_entry("client", p12_keystore::KeyStoreEntry::Certificate(cert));
    let path = pki.dir.path().join("certs-only.p12");
    std::fs::write(&path, store.writer(P12_PASSWORD).write().unwrap()).unwrap();

    let message = config_error(
        &ClientIdentitySource::Pkcs12 { path, password: P12_PASSWORD.to_owned(), password_from: None },
        &pki,
    );

    assert!(message.contains("certs-only.p12") && message.contains("no private key"), "{message}");
}

#[test]
fn pem_key_of_another_certificate_does_not_match() {
    let pki = Pki::new();
    let (cert, _) = pki.client_pem();
    let other = pki.ca.issue(&LeafSpec::client("someone-else")).unwrap();
    let key = pki.dir.path().join("other.key");
    std::fs::write(&key, other.key_pem()).unwrap();

    let message = config_error(&ClientIdentitySource::Pem { cert, key }, &pki);

    assert!(message.contains("client.crt") && message.contains("does not match"), "{message}");
}

#[test]
fn missing_and_empty_files_are_named() {
    let pki = Pki::new();
    let missing = pki.dir.path().join("nowhere.p12");
    let empty_bundle = pki.dir.path().join("empty.pem");
    std::fs::write(&empty_bundle, "no certificates here\n").unwrap();
    let (cert, _) = pki.client_pem();

    let unreadable =
        load_identity(&ClientIdentitySource::Pkcs12 { path: missing, password: String::new(), password_from: None });
    let no_key = load_identity(&ClientIdentitySource::Pem { cert: cert.clone(), key: cert });
    let no_ca = client_tls_config(&TrustSource::CaBundle(empty_bundle), None);

    assert!(matches!(&unreadable, Err(IdentityError::Unreadable { path, .. }) if path.ends_with("nowhere.p12")));
    let no_key = no_key.unwrap_err().to_string();
    assert!(no_key.contains("client.crt") && no_key.contains("no private key"), "{no_key}");
    let no_ca = no_ca.unwrap_err().to_string();
    assert!(no_ca.contains("empty.pem") && no_ca.contains("no certificates"), "{no_ca}");
}

#[tokio::test]
async fn system_roots_do_not_trust_a_private_ca() {
    let pki = Pki::new();
    let server = pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
    let addr = probe_support::start(ServerKind::Tls { cert: server, client_ca: None, tls12_only: false }).await;
    let tls = match client_tls_config(&TrustSource::SystemRoots, None) {
        Ok(tls) => tls,
        // A machine without a trust store must say so, naming the store.
        Err(error) => {
            assert!(matches!(error, IdentityError::SystemRoots(_)), "{error}");
            return;
        }
    };
    let client = ProbeClient::new(Arc::new(tls), None, Arc::new(Redactor::new(Vec::new())));
    let spec = probe_support::get_spec("PHR-01", "system roots", "A", format!("https://localhost:{}/ok", addr.port()));
    let run_dir = tempfile::tempdir().unwrap();

    let record = client.run(&spec, "R", run_dir.path()).await;

    assert!(
        matches!(&record.outcome, Outcome::TlsFailure { reason } if reason.contains("unknown CA")),
        "{:?}",
        record.outcome
    );
}

#[test]
fn encrypted_pem_key_is_called_out_as_encrypted() {
    let pki = Pki::new();
    let (cert, _) = pki.client_pem();
    let key = pki.dir.path().join("encrypted.key");
    std::fs::write(&key, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n")
        .unwrap();

    let message = config_error(&ClientIdentitySource::Pem { cert, key }, &pki);

    assert!(message.contains("encrypted.key") && message.contains("the private key is encrypted"), "{message}");
}
