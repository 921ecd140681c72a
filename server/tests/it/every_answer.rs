//! Every answer on a PHR path is the spec's JSON error and has its audit row, whoever produced it: the path
//! extractor (a parameter that is not UTF-8), the router (404 for an unknown sub-path, 405 for a method a
//! route does not serve), the limits (413 for a body, 431 for headers over HTTP/1.1 and HTTP/2), and the
//! HTTP layer itself for a malformed HTTP/1.1 head, which hyper answers before any route: that one cannot be
//! JSON, but it still leaves a row. Each test runs on SQLite and PostgreSQL.

use std::sync::Arc;

use reqwest::{Method, StatusCode, Version};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{self, FACILITY, Options, PASSWORD, TestServer, USER};

/// One request's answer as the tests check it: status, the JSON error's type, the row's payload.
async fn answer_and_row(server: &TestServer, response: reqwest::Response, trace: &str) -> (StatusCode, String, Value) {
    let status = response.status();
    assert_eq!(
        response.headers().get("x-trace-id").and_then(|v| v.to_str().ok()),
        Some(trace),
        "{:?}: trace id echoed",
        server.backend
    );
    let error = support::error_type(response).await;
    let rows = server.audit_rows(trace).await;
    assert_eq!(rows.len(), 1, "{:?} {trace}: exactly one row: {rows:?}", server.backend);
    assert_eq!(rows[0].outcome, "failed");
    assert_eq!(rows[0].payload["httpStatus"], status.as_u16(), "{:?}: {:?}", server.backend, rows[0]);
    assert!(rows[0].payload["reason"].as_str().is_some_and(|r| !r.is_empty()), "{:?}", rows[0]);
    let mut payload = rows[0].payload.clone();
    payload["action"] = rows[0].action.clone().into();
    (status, error, payload)
}

#[tokio::test]
async fn router_and_extractor_answers_are_json_and_audited() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        // A path parameter that is not percent-encoded UTF-8 (the path extractor refuses it).
        let response = server.get_traced("allergy/%FF", "bad-utf8").send().await.unwrap();
        let (status, error, row) = answer_and_row(&server, response, "bad-utf8").await;
        assert_eq!((status, error.as_str()), (StatusCode::BAD_REQUEST, "error.phr.invalidParameter"));
        assert_eq!(
            (row["action"].as_str(), row["rejectedBy"].as_str()),
            (Some("PHR_REQUEST_REJECTED"), Some("extractor"))
        );

        // An unknown sub-path (the router's fallback).
        let response = server.get_traced("allergy/P0001/extra", "extra-segment").send().await.unwrap();
        let (status, error, row) = answer_and_row(&server, response, "extra-segment").await;
        assert_eq!((status, error.as_str()), (StatusCode::NOT_FOUND, "error.phr.invalidParameter"));
        assert_eq!(row["rejectedBy"], "router");

        // A method the route does not serve; `Allow` is kept.
        let response = server.get_traced("accessKey", "wrong-method").send().await.unwrap();
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let (status, error, row) = answer_and_row(&server, response, "wrong-method").await;
        assert_eq!((status, error.as_str()), (StatusCode::METHOD_NOT_ALLOWED, "error.phr.invalidParameter"));
        assert_eq!(allow.as_deref(), Some("PUT"), "{:?}", server.backend);
        assert_eq!((row["rejectedBy"].as_str(), row["method"].as_str()), (Some("router"), Some("GET")));

        // A body over the endpoint's limit.
        let big = format!("{{\"patientId\":\"P0001\",\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
        let response = server.request_traced(Method::PUT, "accessKey", "big-body").body(big).send().await.unwrap();
        let (status, error, row) = answer_and_row(&server, response, "big-body").await;
        assert_eq!((status, error.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "error.phr.invalidPayload"));
        assert_eq!(row["action"], "PHR_ACCESS_KEY_UPSERT");
        server.stop().await;
    }
}

#[tokio::test]
async fn oversize_headers_are_431_json_and_audited_over_http1_and_http2() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        for (version, client) in [(Version::HTTP_11, client(&server, false)), (Version::HTTP_2, client(&server, true))]
        {
            // Arrange: a 20 KB header, as in the issue.
            let trace = format!("big-header-{version:?}");
            let request = client
                .get(server.url("allergy/P0001"))
                .basic_auth(format!("{FACILITY}:{USER}"), Some(PASSWORD))
                .header("X-Trace-Id", &trace)
                .header("X-Facility-Id", FACILITY)
                .header("X-Padding", "p".repeat(20 * 1024));

            // Act
            let response = request.send().await.unwrap();

            // Assert
            assert_eq!(response.version(), version, "{:?}", server.backend);
            let (status, error, row) = answer_and_row(&server, response, &trace).await;
            assert_eq!(
                (status, error.as_str()),
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "error.phr.invalidParameter")
            );
            assert_eq!(
                (row["action"].as_str(), row["rejectedBy"].as_str()),
                (Some("PHR_REQUEST_REJECTED"), Some("limits"))
            );
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn a_malformed_http1_head_refused_by_hyper_still_leaves_a_row() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        let rejected_by_http = "SELECT COUNT(*) FROM d_audit_event WHERE action = 'PHR_REQUEST_REJECTED' \
                                AND payload LIKE '%\"rejectedBy\":\"http\"%'";

        // Act: a control character in a header value, over a raw TLS connection (clients refuse to send it).
        let answer = raw_http1(
            &server,
            b"GET /openDolphin/resources/20/adm/phr/allergy/P0001 HTTP/1.1\r\nHost: localhost\r\n\
              X-Trace-Id: ctl\x01char\r\nX-Facility-Id: F001\r\n\r\n",
        )
        .await;

        // Assert: hyper's own empty 400 (no route ran, so it cannot be JSON), and a row with the reason.
        assert!(answer.starts_with("HTTP/1.1 400"), "{:?}: {answer}", server.backend);
        let row_written = wait_for(|| async { count(&server, rejected_by_http).await == 1 }).await;
        assert!(row_written, "{:?}: the refused head left no row", server.backend);
        let reason: String = phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query_scalar("SELECT payload FROM d_audit_event WHERE action = 'PHR_REQUEST_REJECTED'")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert!(reason.contains("invalid HTTP header parsed"), "{reason}");
        assert!(reason.contains("\"httpStatus\":400"), "{reason}");
        server.stop().await;
    }
}

/// A client that speaks only HTTP/1.1 or only HTTP/2 (by ALPN), with the test CA's client certificate.
fn client(server: &TestServer, http2: bool) -> reqwest::Client {
    let mut tls = support::client_tls(&server.pki.ca, Some(&server.pki.client));
    tls.alpn_protocols = vec![if http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    let builder = reqwest::Client::builder().tls_backend_preconfigured(tls).resolve("localhost", server.phr_addr);
    let builder = if http2 { builder.http2_prior_knowledge() } else { builder.http1_only() };
    builder.build().expect("client")
}

/// Sends `request` as raw bytes over mTLS and reads the answer until the server closes the connection.
async fn raw_http1(server: &TestServer, request: &[u8]) -> String {
    let tls = support::client_tls(&server.pki.ca, Some(&server.pki.client));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(server.phr_addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn count(server: &TestServer, sql: &'static str) -> i64 {
    phr_server::with_pool!(&server.app.db, |pool| sqlx::query_scalar(sql).fetch_one(pool).await.unwrap())
}

/// Polls `condition` until it holds (the row of a refused head is written by a task of its own); gives up
/// after a generous bound so a missing row fails the test instead of hanging it.
async fn wait_for<F, Fut>(condition: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
