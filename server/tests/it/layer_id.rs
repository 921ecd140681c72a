//! PHR-06 `POST /identityToken` end to end: the token verifies with the public key in an independent check,
//! bad bodies are clean 4xx, a server without a key refuses to start unless told otherwise, and then the call
//! answers 503 with the `PHR_LAYER_ID_CERT_MISSING` audit row.

use std::collections::BTreeSet;

use crate::support::{self, Options, TestServer};
use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use phr_server::config::LayerKeyArgs;
use phr_server::{App, Config, TlsMaterial};
use serde_json::{Value, json};

/// `POST identityToken` with a trace id and the client certificate only (no Basic, as in the original).
fn identity_request(server: &TestServer, trace: &str, content_type: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    server
        .client()
        .post(server.url("identityToken"))
        .header("X-Trace-Id", trace)
        .header("Content-Type", content_type)
        .body(body)
}

/// The test key's public half, derived by aws-lc-rs from the PKCS#8 the test itself generated.
fn decoding_key() -> DecodingKey {
    let key_pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(support::layer_key_pkcs8()).expect("test key parses");
    let spki: PublicKeyX509Der<'static> = key_pair.public_key().as_der().expect("public key DER");
    DecodingKey::from_rsa_der(spki.as_ref())
}

#[tokio::test]
async fn the_token_verifies_with_the_public_key_and_carries_exactly_the_spec_header_and_claims() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        for content_type in ["text/plain", "application/json"] {
            // Arrange
            let trace = format!("20251119TorcaPHRSeqZ1-phr06-{}", content_type.replace('/', "-"));
            let body = json!({"nonce": "nonce-8f3a", "user": "patient-0001"}).to_string().into_bytes();

            // Act
            let response = identity_request(&server, &trace, content_type, body).send().await.unwrap();

            // Assert: the response
            assert_eq!(response.status(), 200, "{content_type}");
            assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
            assert_eq!(response.headers()["x-trace-id"], trace.as_str());
            let token = response.text().await.unwrap();

            // Assert: an independent verification (jsonwebtoken's decoder, the test's own copy of the public key)
            let mut validation = Validation::new(Algorithm::RS256);
            validation.validate_exp = false; // the server runs on the test's manual clock, in the past
            validation.required_spec_claims = ["exp", "iss"].into_iter().map(String::from).collect();
            validation.set_issuer(&["opd-test-provider"]);
            let verified =
                jsonwebtoken::decode::<Value>(&token, &decoding_key(), &validation).expect("signature verifies");
            let header = verified.header;
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            assert_eq!(header.alg, Algorithm::RS256);
            assert_eq!(header.cty.as_deref(), Some("layer-eit;v=1"));
            assert_eq!(header.kid.as_deref(), Some("layer-test-key"));
            assert!(
                header.jku.is_none()
                    && header.jwk.is_none()
                    && header.x5c.is_none()
                    && header.extras.inner().is_empty()
            );
            let claims = verified.claims.as_object().unwrap();
            let names: BTreeSet<&str> = claims.keys().map(String::as_str).collect();
            assert_eq!(names, BTreeSet::from(["exp", "iat", "iss", "nce", "prn"]));
            assert_eq!(claims["iss"], "opd-test-provider");
            assert_eq!(claims["prn"], "patient-0001");
            assert_eq!(claims["nce"], "nonce-8f3a");
            assert_eq!(claims["iat"], server.clock.now().timestamp());
            assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 120);

            // Assert: the audit row has the user and the nonce's length, never the token
            let rows = server.audit_rows(&trace).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_LAYER_ID_TOKEN_ISSUE", "success"));
            assert_eq!(rows[0].payload["user"], "patient-0001");
            assert_eq!(rows[0].payload["nonceLength"], 10);
            let signature = token.rsplit('.').next().unwrap();
            assert!(!rows[0].payload.to_string().contains(signature), "token leaked into the audit row");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_tampered_token_does_not_verify() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;
    let body = json!({"nonce": "n", "user": "patient-0001"}).to_string().into_bytes();
    let token =
        identity_request(&server, "tamper", "application/json", body).send().await.unwrap().text().await.unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let forged = json!({"iss": "opd-test-provider", "prn": "someone-else", "iat": 1, "exp": 121, "nce": "n"});
    parts[1] = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, forged.to_string());

    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    let result = jsonwebtoken::decode::<Value>(parts.join("."), &decoding_key(), &validation);

    assert!(result.is_err(), "a changed claim must break the signature");
    server.stop().await;
}

#[tokio::test]
async fn empty_or_missing_fields_and_malformed_bodies_are_400_invalid_payload() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;
    let cases: [(&str, &[u8]); 6] = [
        ("empty nonce", br#"{"nonce":"","user":"patient-0001"}"#),
        ("blank user", br#"{"nonce":"n","user":"   "}"#),
        ("missing user", br#"{"nonce":"n"}"#),
        ("not JSON", b"nonce=n&user=u"),
        ("wrong type", br#"{"nonce":7,"user":"u"}"#),
        ("empty body", b""),
    ];
    for (name, body) in cases {
        let trace = format!("bad-body-{}", name.replace(' ', "-"));

        let response = identity_request(&server, &trace, "text/plain", body.to_vec()).send().await.unwrap();

        assert_eq!(response.status(), 400, "{name}");
        assert_eq!(support::error_type(response).await, "error.phr.invalidPayload", "{name}");
        let rows = server.audit_rows(&trace).await;
        assert_eq!(
            (rows[0].action.as_str(), rows[0].outcome.as_str()),
            ("PHR_LAYER_ID_TOKEN_ISSUE", "failed"),
            "{name}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_10_mb_body_is_a_clean_413_with_the_json_error() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;
    let mut body = br#"{"nonce":""#.to_vec();
    body.resize(10 * 1024 * 1024, b'a');

    let response = identity_request(&server, "huge-body", "application/json", body).send().await.unwrap();

    assert_eq!(response.status(), 413);
    assert_eq!(support::error_type(response).await, "error.phr.invalidPayload");
    server.stop().await;
}

#[tokio::test]
async fn without_a_key_the_server_refuses_to_start_and_names_the_variables() {
    // Arrange: everything valid except the Layer ID key, which is simply not configured.
    let db = support::sqlite();
    let pki = support::Pki::new();
    let images = tempfile::tempdir().unwrap();
    let tls = TlsMaterial {
        cert_chain: pki.server.chain.clone(),
        key: std::sync::Arc::new(pki.server.private_key()),
        client_ca: vec![pki.ca.cert_der()],
    };
    let mut config = Config::new(db.url.clone(), tls, images.path());
    config.layer =
        LayerKeyArgs { layer_key_id: Some("k".into()), layer_provider_id: Some("p".into()), ..LayerKeyArgs::default() };

    // Act
    let result = App::build(config).await;

    // Assert
    let Err(error) = result else { panic!("the server started without a Layer ID key") };
    let message = error.to_string();
    assert!(message.contains("PHR_LAYER_PRIVATE_KEY_BASE64"), "{message}");
    assert!(message.contains("PHR_LAYER_PRIVATE_KEY_PATH"), "{message}");
}

#[tokio::test]
async fn with_the_explicit_opt_out_phr06_answers_503_and_audits_cert_missing() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options { layer_key: false, ..Options::default() }).await;
        let body = json!({"nonce": "n-1", "user": "patient-0001"}).to_string().into_bytes();

        let response = identity_request(&server, "no-layer-key", "application/json", body).send().await.unwrap();

        assert_eq!(response.status(), 503);
        assert_eq!(support::error_type(response).await, "error.phr.layerKeyMissing");
        let rows = server.audit_rows("no-layer-key").await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_LAYER_ID_CERT_MISSING", "failed"));
        assert_eq!(rows[0].payload["httpStatus"], 503);
        server.stop().await;
    }
}

#[tokio::test]
async fn the_binary_refuses_to_serve_without_a_key_and_names_the_variables() {
    // Arrange: valid TLS files, loopback ports, no Layer ID key and no opt-out.
    let pki = support::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let cert = write("server.pem", pki.server.chain_pem());
    let key = write("server.key", pki.server.key_pem());
    let ca = write("ca.pem", pki.ca.cert_pem());
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_phr-server"));
    command
        .arg("serve")
        .env_clear()
        .env("PHR_DATABASE_URL", format!("sqlite:{}", dir.path().join("phr.db").display()))
        .env("PHR_LISTEN", "127.0.0.1:0")
        .env("PHR_OPS_LISTEN", "127.0.0.1:0")
        .env("PHR_TLS_CERT", &cert)
        .env("PHR_TLS_KEY", &key)
        .env("PHR_TLS_CLIENT_CA", &ca)
        .env("PHR_IMAGE_STORE_DIR", dir.path().join("images"))
        .kill_on_drop(true);

    // Act: a server that wrongly starts would never exit; the timeout turns that into a failure.
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
        .await
        .expect("phr-server started without a Layer ID key")
        .unwrap();

    // Assert
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PHR_LAYER_PRIVATE_KEY_BASE64") && stderr.contains("PHR_LAYER_PRIVATE_KEY_PATH"),
        "{stderr}"
    );
}
