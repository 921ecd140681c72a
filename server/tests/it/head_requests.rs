//! HEAD neither spends nor charges (issue: axum served HEAD with the GET handler, so a HEAD on a signed URL
//! consumed it and a HEAD on an image charged the burst budget). HEAD on a PHR path is a 405 naming the
//! methods the path serves, audited like every other refusal. Each test runs on SQLite and PostgreSQL.

use std::time::Duration;

use phr_server::ImagePolicy;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::export::{download, export_config, submit, wait_for_state};
use crate::support::{self, FACILITY, Options, PASSWORD, TestServer, USER};

const FIVE_MIB: u64 = 5 * 1024 * 1024;

/// A HEAD as F001:ops with the client certificate.
async fn head(server: &TestServer, url: &str, trace: &str) -> reqwest::Response {
    server
        .client()
        .head(url)
        .basic_auth(format!("{FACILITY}:{USER}"), Some(PASSWORD))
        .header("X-Trace-Id", trace)
        .header("X-Facility-Id", FACILITY)
        .send()
        .await
        .unwrap()
}

/// Asserts the refusal: 405, `Allow` as given, the JSON content type, and its `PHR_REQUEST_REJECTED` row.
async fn assert_refused(server: &TestServer, response: reqwest::Response, trace: &str, allow: &str) {
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{:?}", server.backend);
    assert_eq!(response.headers()["allow"], allow);
    assert_eq!(response.headers()["content-type"], "application/json");
    let rows = server.audit_rows(trace).await;
    assert_eq!(rows.len(), 1, "{:?}: {rows:?}", server.backend);
    assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_REQUEST_REJECTED", "failed"));
    assert_eq!(rows[0].payload["method"], "HEAD");
}

#[tokio::test]
async fn head_on_an_image_does_not_charge_the_burst_budget() {
    for db in support::backends().await {
        // Arrange: a budget of exactly one 5 MiB image (P0004's) per window.
        let image = ImagePolicy { max_bytes: FIVE_MIB, burst_bytes: FIVE_MIB, burst_window: Duration::from_secs(300) };
        let server = TestServer::start(db, Options { image, ..Options::default() }).await;
        let url = server.url("image/P0004");

        // Act: two HEADs, then the GET the budget has room for.
        for trace in ["head-image-1", "head-image-2"] {
            let response = head(&server, &url, trace).await;
            assert_refused(&server, response, trace, "GET").await;
        }
        let get = server.get_traced("image/P0004", "get-image").send().await.unwrap();

        // Assert: the GET got the whole image; only it was charged.
        assert_eq!(get.status(), StatusCode::OK, "{:?}: a HEAD charged the budget", server.backend);
        assert_eq!(get.bytes().await.unwrap().len() as u64, FIVE_MIB);
        let metrics = server.app.metrics.render();
        assert!(metrics.contains("phr_image_throttle_total{decision=\"allowed\"} 1"), "{metrics}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn head_on_a_signed_url_does_not_consume_it_and_head_on_status_mints_none() {
    for db in support::backends().await {
        // Arrange: a finished export and its download URL.
        let server = TestServer::start(db, Options { export: export_config(), ..Options::default() }).await;
        let job = submit(&server, json!({"patientIds": ["P0001"]})).await;
        let job_id = job["jobId"].as_str().unwrap().to_owned();
        wait_for_state(&server, &job_id, "SUCCEEDED", Duration::from_secs(120)).await;
        let status: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.unwrap().json().await.unwrap();
        let url = status["downloadUrl"].as_str().expect("downloadUrl").to_owned();
        let issued = issued_urls(&server).await;

        // Act
        let head_url = head(&server, &url, "head-artifact").await;
        let head_status = head(&server, &server.url(&format!("status/{job_id}")), "head-status").await;

        // Assert: nothing spent, nothing minted; the URL still downloads once.
        assert_refused(&server, head_url, "head-artifact", "GET").await;
        assert_refused(&server, head_status, "head-status", "GET, DELETE").await;
        assert_eq!(issued_urls(&server).await, issued, "{:?}: a HEAD minted a URL", server.backend);
        assert_eq!(
            download(&server, &url).await.status(),
            StatusCode::OK,
            "{:?}: a HEAD spent the URL",
            server.backend
        );
        assert_eq!(download(&server, &url).await.status(), StatusCode::GONE);
        server.stop().await;
    }
}

async fn issued_urls(server: &TestServer) -> i64 {
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM phr_export_signed_url").fetch_one(pool).await.unwrap()
    })
}
