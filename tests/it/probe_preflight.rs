//! Preflight against a real mTLS listener, a real SQLite audit file and readyz: all green when everything
//! is in order, and the failing check named when one thing is wrong.

use crate::probe_support;

use std::time::Duration;

use connrun::evidence::CheckResult;
use connrun::probe::identity::{ClientIdentitySource, TrustSource};
use connrun::run::preflight::{PreflightInput, preflight};
use devpki::{LeafSpec, Pkcs12Flavor};
use probe_support::{P12_PASSWORD, Pki, ServerKind};

fn check<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no {name} check in {results:#?}"))
}

async fn audit_file(pki: &Pki) -> String {
    use sqlx::Connection as _;
    let path = pki.dir.path().join("audit.db");
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    sqlx::raw_sql("create table d_audit_event (id integer)").execute(&mut db).await.unwrap();
    db.close().await.unwrap();
    format!("sqlite:{}", path.display())
}

async fn input(pki: &Pki, client_ca_of_server: &devpki::Authority) -> PreflightInput {
    let server = pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
    let addr =
        probe_support::start(ServerKind::Tls { cert: server, client_ca: Some(client_ca_of_server), tls12_only: false })
            .await;
    PreflightInput {
        base_url: format!("https://localhost:{}", addr.port()),
        trust: TrustSource::CaBundle(pki.ca_bundle.clone()),
        identity: Some(ClientIdentitySource::Pkcs12 {
            path: pki.client_p12(Pkcs12Flavor::Modern),
            password: P12_PASSWORD.to_owned(),
            password_from: None,
        }),
        audit_db_url: Some(audit_file(pki).await),
        readyz_url: Some(format!("https://localhost:{}/readyz", addr.port())),
        // Only reached when something is broken; room for a loaded CI machine.
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn everything_in_order_passes_every_check_with_facts() {
    let pki = Pki::new();
    let input = input(&pki, &pki.ca).await;

    let results = preflight(&input).await;

    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["identity", "client_certificate", "trust", "tcp_connect", "tls_handshake", "audit_db", "readyz"]
    );
    assert!(results.iter().all(|r| r.ok), "{results:#?}");
    assert!(check(&results, "client_certificate").detail.contains("days left"));
    assert_eq!(check(&results, "identity").certificates.len(), 2);
    assert_eq!(check(&results, "tls_handshake").certificates.len(), 2);
    assert!(check(&results, "readyz").detail.contains("HTTP 200 ready"), "{results:#?}");
}

#[tokio::test]
async fn rejected_client_certificate_wrong_password_and_missing_audit_db_are_named() {
    let pki = Pki::new();
    let mut rejecting = input(&pki, &pki.foreign_ca).await;
    rejecting.audit_db_url = Some(format!("sqlite:{}", pki.dir.path().join("absent.db").display()));
    let mut wrong_password = rejecting.clone();
    wrong_password.identity = Some(ClientIdentitySource::Pkcs12 {
        path: pki.client_p12(Pkcs12Flavor::Legacy3Des),
        password: "nope".to_owned(),
        password_from: None,
    });

    let rejected = preflight(&rejecting).await;
    let bad_identity = preflight(&wrong_password).await;

    let tls = check(&rejected, "tls_handshake");
    assert!(!tls.ok && tls.detail.contains("client certificate rejected"), "{tls:#?}");
    assert!(!check(&rejected, "audit_db").ok);
    assert!(!check(&rejected, "readyz").ok);
    let identity = check(&bad_identity, "identity");
    assert!(!identity.ok && identity.detail.contains("wrong password"), "{identity:#?}");
    assert!(!check(&bad_identity, "tls_handshake").ok);
}

#[tokio::test]
async fn refused_port_fails_the_tcp_check() {
    let pki = Pki::new();
    let refused = probe_support::refused_port();
    let input = PreflightInput {
        base_url: format!("https://127.0.0.1:{}", refused.port),
        trust: TrustSource::CaBundle(pki.ca_bundle.clone()),
        identity: None,
        audit_db_url: None,
        readyz_url: None,
        timeout: Duration::from_secs(30),
    };

    let results = preflight(&input).await;

    let tcp = check(&results, "tcp_connect");
    assert!(!tcp.ok && tcp.detail.contains("connection refused"), "{tcp:#?}");
    assert!(results.iter().all(|r| r.name != "tls_handshake"));
}
