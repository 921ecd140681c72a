//! Mutual TLS at the PHR listener: who gets through the handshake, and what the audit row learns about them.

use crate::support::{self, Options, TestServer};
use devpki::{Authority, Identity, LeafSpec, Pkcs12Flavor};

/// The identities a client might present, and whether the handshake must accept them.
fn cases(server: &TestServer) -> Vec<(&'static str, Option<Identity>, bool)> {
    let foreign_ca = Authority::new("foreign").expect("CA");
    vec![
        ("valid client certificate", Some(server.pki.client.clone()), true),
        ("no client certificate", None, false),
        ("certificate from another CA", Some(foreign_ca.issue(&LeafSpec::client("ops-client")).expect("cert")), false),
        (
            "expired certificate from the right CA",
            Some(server.pki.ca.issue(&LeafSpec::client("ops-client").expired()).expect("cert")),
            false,
        ),
    ]
}

#[tokio::test]
async fn handshake_accepts_only_valid_client_certificates() {
    // Arrange
    let server = TestServer::start(support::sqlite(), Options::default()).await;
    for (name, identity, accepted) in cases(&server) {
        let before = server.audit_count().await;

        // Act
        let result = server
            .client_with(identity.as_ref())
            .get(server.url("allergy/P0001"))
            .basic_auth("F001:ops", Some(support::PASSWORD))
            .header("X-Trace-Id", format!("tls-{name}"))
            .header("X-Facility-Id", "F001")
            .send()
            .await;

        // Assert
        match (accepted, result) {
            (true, Ok(response)) => assert!(response.status().is_success(), "{name}: {}", response.status()),
            (false, Err(error)) => {
                assert!(error.is_connect() || error.is_request(), "{name}: unexpected error kind {error:?}")
            }
            (true, Err(error)) => panic!("{name}: should be accepted, got {error:?}"),
            (false, Ok(response)) => panic!("{name}: should be refused at handshake, got HTTP {}", response.status()),
        }
        let written = server.audit_count().await - before;
        assert_eq!(written, i64::from(accepted), "{name}: refused handshakes leave no audit row");
    }
    server.stop().await;
}

#[tokio::test]
async fn audit_row_records_the_client_certificate() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;
    let expected_sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, server.pki.client.leaf()));

    let response = server.get_traced("allergy/P0001", "tls-cert-audit").send().await.unwrap();

    assert_eq!(response.status(), 200);
    let rows = server.audit_rows("tls-cert-audit").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].payload["clientCertificate"]["sha256"], expected_sha256.as_str());
    assert!(rows[0].payload["clientCertificate"]["subject"].as_str().unwrap().contains("CN=ops-client"));
    server.stop().await;
}

#[tokio::test]
async fn pkcs12_client_identity_is_accepted_in_both_encodings() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;
    for flavor in [Pkcs12Flavor::Modern, Pkcs12Flavor::Legacy3Des] {
        // Arrange: a real .p12 file as an operator would get it, read back the way a client reads it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.p12");
        std::fs::write(&path, server.pki.client.to_pkcs12("p12-pass", flavor).unwrap()).unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &std::fs::read(&path).unwrap(),
            "p12-pass",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().expect("key chain in the .p12");
        let identity = Identity {
            chain: chain.certs().iter().map(|c| c.as_der().to_vec().into()).collect(),
            key_pkcs8: chain.key().as_der().to_vec(),
        };

        // Act
        let response = server
            .client_with(Some(&identity))
            .get(server.url("allergy/P0001"))
            .basic_auth("F001:ops", Some(support::PASSWORD))
            .header("X-Trace-Id", "tls-p12")
            .header("X-Facility-Id", "F001")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{flavor:?}: {e:?}"));

        // Assert
        assert_eq!(response.status(), 200, "{flavor:?}");
    }
    server.stop().await;
}
