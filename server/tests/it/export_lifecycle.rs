//! Phase F on FILESYSTEM storage, against SQLite and (when reachable) PostgreSQL: the whole life cycle of a
//! job and its single-use signed URL, cancellation, validation errors, facility isolation, concurrent
//! downloads of one URL, the NULL fallback without a signing secret, and the https-only rules.

use std::time::Duration;

use crate::support::export::{download, export_config, full_life_cycle, submit, wait_for_state};
use crate::support::{self, Options, TestServer, backends, error_type};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn options(export: phr_server::export::ExportConfig) -> Options {
    Options { export, ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_life_cycle_on_filesystem_storage() {
    for db in backends().await {
        // Arrange
        let server = TestServer::start(db, options(export_config())).await;

        // Act + Assert (each step asserts its own outcome)
        let outcome = full_life_cycle(&server, "FILESYSTEM").await;

        // The artifact really is a file under the facility prefix of the configured base.
        let key: String = phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query_scalar("SELECT artifact_key FROM phr_async_job WHERE job_id = $1")
                .bind(&outcome.job_id)
                .fetch_one(pool)
                .await
                .expect("job row")
        });
        assert_eq!(key, format!("facility/F001/jobs/{}/phr-export-1.zip", outcome.job_id));

        // The ops listener's gauge counts the job (refreshed by the pool's maintenance pass).
        let mut gauge_seen = false;
        for _ in 0..100 {
            let metrics = reqwest::get(format!("{}/metrics", server.ops_base)).await.expect("metrics");
            if metrics.text().await.expect("text").contains("phr_export_jobs{state=\"SUCCEEDED\"} 1") {
                gauge_seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gauge_seen, "phr_export_jobs gauge shows the SUCCEEDED job");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_answers_204_for_pending_and_409_otherwise_and_bad_input_is_named() {
    for db in backends().await {
        // Arrange: an API-only node (no workers), so a submitted job stays PENDING.
        let server =
            TestServer::start(db, options(phr_server::export::ExportConfig { workers: 0, ..export_config() })).await;
        let job = submit(&server, json!({"patientIds": ["P0001"]})).await;
        let job_id = job["jobId"].as_str().expect("jobId").to_owned();
        assert_eq!(job["state"], "PENDING");
        assert_eq!(job["progress"], 0);

        // Act: cancel it, then cancel it again.
        let trace = format!("test-cancel-{}", uuid::Uuid::new_v4().simple());
        let cancelled =
            server.request_traced(Method::DELETE, &format!("status/{job_id}"), &trace).send().await.expect("DELETE");
        let again = server.request(Method::DELETE, &format!("status/{job_id}")).send().await.expect("DELETE");

        // Assert
        assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
        let rows = server.audit_rows(&trace).await;
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_EXPORT_CANCEL", "success"));
        assert_eq!(again.status(), StatusCode::CONFLICT);
        assert_eq!(error_type(again).await, "error.phr.invalidState");
        let status: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
        assert_eq!(status["state"], "CANCELLED");
        assert!(status.get("downloadUrl").is_none());

        // Bad ids and bodies.
        let not_uuid = server.get("status/not-a-uuid").send().await.expect("status");
        assert_eq!(not_uuid.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_type(not_uuid).await, "error.phr.invalidJobId");
        let unknown = server.get(&format!("status/{}", uuid::Uuid::new_v4())).send().await.expect("status");
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_type(unknown).await, "error.phr.jobNotFound");
        let unknown_cancel =
            server.request(Method::DELETE, &format!("status/{}", uuid::Uuid::new_v4())).send().await.expect("DELETE");
        assert_eq!(error_type(unknown_cancel).await, "error.phr.jobNotFound");
        for body in [json!({"patientIds": []}), json!({}), json!({"patientIds": ["P0001"], "documentSince": "x"})] {
            let trace = format!("test-bad-{}", uuid::Uuid::new_v4().simple());
            let bad = server.request_traced(Method::POST, "export", &trace).json(&body).send().await.expect("POST");
            assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error_type(bad).await, "error.phr.invalidPayload");
            let rows = server.audit_rows(&trace).await;
            assert_eq!(rows.len(), 1);
            assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_EXPORT_REQUEST", "failed"));
        }
        let foreign_patient =
            server.request(Method::POST, "export").json(&json!({"patientIds": ["P0001", "NOPE"]})).send().await;
        let foreign_patient = foreign_patient.expect("POST");
        assert_eq!(foreign_patient.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_type(foreign_patient).await, "error.phr.patientNotFound");
        let not_json = server.request(Method::POST, "export").body("{").send().await.expect("POST");
        assert_eq!(error_type(not_json).await, "error.phr.invalidPayload");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_fifty_simultaneous_downloads_of_one_url_exactly_one_gets_the_file() {
    for db in backends().await {
        // Arrange
        let server = TestServer::start(db, options(export_config())).await;
        let job = submit(&server, json!({"patientIds": ["P0001", "P0002"]})).await;
        let job_id = job["jobId"].as_str().expect("jobId");
        let done = wait_for_state(&server, job_id, "SUCCEEDED", Duration::from_secs(120)).await;
        let status: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
        let url = status["downloadUrl"].as_str().expect("url").to_owned();
        assert_eq!(done["state"], "SUCCEEDED");

        // Act
        let attempts = (0..50).map(|_| download(&server, &url));
        let responses = futures::future::join_all(attempts).await;

        // Assert
        let mut ok = 0;
        let mut used = 0;
        for response in responses {
            match response.status() {
                StatusCode::OK => {
                    ok += 1;
                    let archive = support::export::read_zip(response).await;
                    assert_eq!(archive.len(), 3);
                }
                StatusCode::GONE => {
                    assert_eq!(error_type(response).await, "error.phr.signedUrlUsed");
                    used += 1;
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!((ok, used), (1, 49));
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_signing_secret_the_url_is_omitted_and_the_null_fallback_audited() {
    // Arrange
    let export = phr_server::export::ExportConfig { signing_secret: None, ..export_config() };
    let server = TestServer::start(support::sqlite(), options(export)).await;
    let job = submit(&server, json!({"patientIds": ["P0001"]})).await;
    let job_id = job["jobId"].as_str().expect("jobId");
    wait_for_state(&server, job_id, "SUCCEEDED", Duration::from_secs(120)).await;

    // Act
    let trace = format!("test-null-{}", uuid::Uuid::new_v4().simple());
    let status: serde_json::Value = server
        .get_traced(&format!("status/{job_id}"), &trace)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");

    // Assert
    assert_eq!(status["state"], "SUCCEEDED");
    assert!(status.get("downloadUrl").is_none(), "{status}");
    let rows = server.audit_rows(&trace).await;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["PHR_SIGNED_URL_NULL_FALLBACK", "PHR_EXPORT_STATUS"]);
    assert!(rows[0].payload["reason"].as_str().is_some_and(|r| r.contains("PHR_EXPORT_SIGNING_SECRET")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_http_is_refused_and_no_http_url_is_ever_minted() {
    // Arrange: loopback is a trusted proxy, so its X-Forwarded-Proto counts.
    let trusted = Options { trusted_proxies: vec!["127.0.0.1".parse().expect("ip")], ..options(export_config()) };
    let server = TestServer::start(support::sqlite(), trusted).await;
    let job = submit(&server, json!({"patientIds": ["P0001"]})).await;
    let job_id = job["jobId"].as_str().expect("jobId").to_owned();
    wait_for_state(&server, &job_id, "SUCCEEDED", Duration::from_secs(120)).await;

    // Act + Assert: a request the proxy received over http.
    let over_http =
        server.get(&format!("status/{job_id}")).header("X-Forwarded-Proto", "http").send().await.expect("status");
    assert_eq!(over_http.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_type(over_http).await, "error.phr.insecureScheme");
    // The proxy's public host is used, with https.
    let proxied: serde_json::Value = server
        .get(&format!("status/{job_id}"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "phr.example.jp")
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    let url = proxied["downloadUrl"].as_str().expect("url");
    assert!(url.starts_with("https://phr.example.jp/openDolphin/resources/20/adm/phr/export/"), "{url}");
    server.stop().await;

    // A configured public base that is not https is refused at issue time, audited as ISSUE_FAILED.
    let export =
        phr_server::export::ExportConfig { public_base_url: Some("http://phr.example.jp".into()), ..export_config() };
    let server = TestServer::start(support::sqlite(), options(export)).await;
    let job = submit(&server, json!({"patientIds": ["P0001"]})).await;
    let job_id = job["jobId"].as_str().expect("jobId").to_owned();
    wait_for_state_without_url(&server, &job_id).await;
    let trace = format!("test-insecure-{}", uuid::Uuid::new_v4().simple());
    let refused = server.get_traced(&format!("status/{job_id}"), &trace).send().await.expect("status");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_type(refused).await, "error.phr.insecureScheme");
    let rows = server.audit_rows(&trace).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_SIGNED_URL_ISSUE_FAILED", "failed"));
    server.stop().await;
}

/// Waits for SUCCEEDED by reading the row: with an http public base every status call of a finished job fails.
async fn wait_for_state_without_url(server: &TestServer, job_id: &str) {
    for _ in 0..2400 {
        let state: String = phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query_scalar("SELECT state FROM phr_async_job WHERE job_id = $1")
                .bind(job_id)
                .fetch_one(pool)
                .await
                .expect("job row")
        });
        if state == "SUCCEEDED" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job_id} did not succeed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_past_their_retention_are_deleted_and_the_job_expires() {
    for db in backends().await {
        // Arrange: a finished job with an issued, unused URL.
        let server = TestServer::start(db, options(export_config())).await;
        let job = submit(&server, json!({"patientIds": ["P0001"]})).await;
        let job_id = job["jobId"].as_str().expect("jobId").to_owned();
        wait_for_state(&server, &job_id, "SUCCEEDED", Duration::from_secs(120)).await;
        let status: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
        let url = status["downloadUrl"].as_str().expect("url").to_owned();
        let phr_server::export::StorageSettings::Filesystem { base } = &server.app.config.export.storage else {
            panic!("filesystem storage expected");
        };
        let file = base.join(format!("facility/F001/jobs/{job_id}/phr-export-1.zip"));
        assert!(file.exists(), "{}", file.display());

        // Act: a day and a second later (the pool's maintenance may get there first).
        server.clock.advance(chrono::Duration::seconds(86_401));
        phr_server::export::worker::expire_artifacts(&server.app).await.expect("expire");

        // Assert
        let expired: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
        assert_eq!(expired["state"], "EXPIRED", "{expired}");
        assert!(expired.get("downloadUrl").is_none());
        // The state changes first, then the file goes. When the pool's maintenance pass expired the job, our
        // own call found nothing to do and returned while that pass may still be deleting the file.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while file.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!file.exists(), "the artifact is deleted");
        let late = download(&server, &url).await;
        assert_eq!(late.status(), StatusCode::GONE);
        assert_eq!(error_type(late).await, "error.phr.signedUrlExpired");
        server.stop().await;
    }
}
