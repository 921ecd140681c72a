//! Helpers shared by the Phase F tests (`export_*` modules): export settings for tests, submitting, waiting for a
//! job's state through the public API, downloading a signed URL, and reading the ZIP back.

use std::io::Read as _;
use std::time::Duration;

use phr_server::export::{ExportConfig, SigningSecret};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{FACILITY, PASSWORD, TestServer, USER};

/// The signing secret tests configure (never a real one).
pub const SECRET: &[u8] = b"test-export-signing-secret-0123456789abcdef";

/// Export settings for a test: a signing secret, fast heartbeats and polling, the spec's TTL and pacing.
pub fn export_config() -> ExportConfig {
    ExportConfig {
        signing_secret: Some(SigningSecret::new(SECRET).expect("secret")),
        heartbeat_interval: Duration::from_millis(200),
        poll_interval: Duration::from_millis(100),
        workers: 2,
        ..ExportConfig::default()
    }
}

/// `POST /export` with `body`; asserts 202 and returns the job response.
pub async fn submit(server: &TestServer, body: Value) -> Value {
    let response = server.request(Method::POST, "export").json(&body).send().await.expect("POST /export");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, StatusCode::ACCEPTED, "POST /export: {text}");
    serde_json::from_str(&text).expect("job JSON")
}

/// Polls `GET /status/{job}` until the job reaches `state` (panics on another final state or after
/// `limit`), checking on the way that progress stays within 0..=100 and never goes down within one run.
pub async fn wait_for_state(server: &TestServer, job_id: &str, state: &str, limit: Duration) -> Value {
    let started = std::time::Instant::now();
    let mut last_progress = 0;
    let mut last_run = Value::Null;
    loop {
        let response = server.get(&format!("status/{job_id}")).send().await.expect("GET /status");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("status JSON");
        let progress = body["progress"].as_i64().expect("progress");
        assert!((0..=100).contains(&progress), "progress out of range: {body}");
        // A requeued job starts a new run from 0; between two polls it can be requeued and claimed again, so
        // the PENDING in between is not always seen. A run is known by its start time.
        if body["startedAt"] != last_run {
            last_run = body["startedAt"].clone();
            last_progress = 0;
        }
        assert!(progress >= last_progress || body["state"] == "PENDING", "progress went down: {body}");
        last_progress = progress;
        let current = body["state"].as_str().expect("state").to_owned();
        if current == state {
            return body;
        }
        assert!(
            !matches!(current.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED" | "EXPIRED"),
            "job ended {current}, expected {state}: {body}"
        );
        assert!(started.elapsed() < limit, "job still {current} after {limit:?}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs a signed URL as the default caller (F001:ops, client certificate).
pub async fn download(server: &TestServer, url: &str) -> reqwest::Response {
    download_as(server, url, FACILITY).await
}

/// GETs a signed URL as `ops` of `facility`.
pub async fn download_as(server: &TestServer, url: &str, facility: &str) -> reqwest::Response {
    server
        .client()
        .get(url)
        .basic_auth(format!("{facility}:{USER}"), Some(PASSWORD))
        .header("X-Trace-Id", format!("test-dl-{}", uuid::Uuid::new_v4().simple()))
        .header("X-Facility-Id", facility)
        .send()
        .await
        .expect("GET artifact")
}

/// Streams a response body into a temporary file (never the whole ZIP in memory) and opens it as a ZIP.
pub async fn read_zip(response: reqwest::Response) -> zip::ZipArchive<std::fs::File> {
    use futures::StreamExt as _;
    use std::io::Write as _;
    let mut file = tempfile::tempfile().expect("temp file");
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk.expect("chunk")).expect("write");
    }
    zip::ZipArchive::new(file).expect("the artifact is a ZIP")
}

/// One entry of the ZIP as JSON.
pub fn entry_json(archive: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Value {
    let mut text = String::new();
    archive.by_name(name).unwrap_or_else(|e| panic!("entry {name}: {e}")).read_to_string(&mut text).expect("read");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("entry {name} is not JSON: {e}"))
}

/// Replaces the last character of the URL's token with a different one.
pub fn alter_token(url: &str) -> String {
    let mut altered = url.to_owned();
    let last = altered.pop().expect("non-empty url");
    altered.push(if last == 'A' { 'B' } else { 'A' });
    altered
}

/// `(expires, token)` of a download URL.
pub fn url_params(url: &str) -> (i64, String) {
    let query = url.split_once('?').expect("query").1;
    let mut expires = None;
    let mut token = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) => expires = v.parse().ok(),
            Some(("token", v)) => token = Some(v.to_owned()),
            _ => {}
        }
    }
    (expires.expect("expires"), token.expect("token"))
}

/// Inserts bare F001 patients (no records: each exports as an empty container), in batches.
pub async fn insert_minimal_patients(server: &TestServer, ids: &[String]) {
    for batch in ids.chunks(400) {
        let values: Vec<String> =
            (0..batch.len()).map(|i| format!("('F001', ${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
        let sql = format!("INSERT INTO patient (facility_id, patient_id, name) VALUES {}", values.join(", "));
        phr_server::with_pool!(&server.app.db, |pool| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for id in batch {
                query = query.bind(id).bind(format!("患者 {id}"));
            }
            query.execute(pool).await.expect("insert patients").rows_affected()
        });
    }
}

/// What [`full_life_cycle`] leaves for backend-specific checks.
pub struct LifeCycle {
    pub job_id: String,
    /// The job's final status body.
    pub status: Value,
}

/// The spec's whole life cycle against a running server (storage backend and database chosen by the caller):
/// submit 202 → progress → SUCCEEDED → https downloadUrl with its audit row → altered token 403 → other
/// facility 403 → download once 200 (a ZIP with every patient and metadata.json) → second download 410
/// signedUrlUsed → a fresh URL past its TTL 410 signedUrlExpired → cancel of a finished job 409.
pub async fn full_life_cycle(server: &TestServer, storage_type: &str) -> LifeCycle {
    // Submit.
    let accepted = submit(server, serde_json::json!({"patientIds": ["P0001", "P0002", "P0003", "P0001"]})).await;
    let job_id = accepted["jobId"].as_str().expect("jobId").to_owned();
    assert!(uuid::Uuid::parse_str(&job_id).is_ok(), "jobId is a UUID: {accepted}");
    assert!(matches!(accepted["state"].as_str(), Some("PENDING" | "RUNNING")), "{accepted}");
    assert!(accepted["queuedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339 queuedAt: {accepted}");
    assert!(accepted.get("downloadUrl").is_none(), "no URL before SUCCEEDED: {accepted}");

    // Progress to SUCCEEDED.
    let done = wait_for_state(server, &job_id, "SUCCEEDED", Duration::from_secs(120)).await;
    assert_eq!(done["progress"], 100, "{done}");
    assert!(done["startedAt"].is_string() && done["finishedAt"].is_string(), "{done}");

    // The status call that mints a URL, with its audit rows.
    let trace = format!("test-status-{}", uuid::Uuid::new_v4().simple());
    let status: Value = server
        .get_traced(&format!("status/{job_id}"), &trace)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    let url = status["downloadUrl"].as_str().expect("downloadUrl when SUCCEEDED").to_owned();
    let expected_prefix = format!(
        "https://localhost:{}/openDolphin/resources/20/adm/phr/export/{job_id}/artifact?expires=",
        server.phr_addr.port()
    );
    assert!(url.starts_with(&expected_prefix), "{url}");
    let (expires, token) = url_params(&url);
    assert_eq!(expires, server.clock.now().timestamp() + 300, "TTL 300 s");
    let rows = server.audit_rows(&trace).await;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["PHR_SIGNED_URL_ISSUED", "PHR_EXPORT_STATUS"], "{rows:?}");
    let issued = &rows[0].payload;
    assert_eq!(issued["signedUrlIssuer"], "phr-server");
    assert_eq!(issued["storageType"], storage_type);
    assert_eq!(issued["signedUrlTtlSeconds"], 300);
    assert_eq!(issued["bandwidthProfile"], "max-export-download-burst=50MB/s");
    assert!(issued.get("kmsKeyAlias").is_some(), "{issued}");
    for row in &rows {
        assert!(!row.payload.to_string().contains(&token), "a token reached the audit trail: {row:?}");
    }

    // An altered token, and another facility, are refused without spending the URL.
    let altered = download(server, &alter_token(&url)).await;
    assert_eq!(altered.status(), StatusCode::FORBIDDEN);
    assert_eq!(crate::support::error_type(altered).await, "error.phr.invalidSignature");
    let foreign = download_as(server, &url, "F002").await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(crate::support::error_type(foreign).await, "error.phr.forbiddenFacility");
    let foreign_status = server
        .client()
        .get(server.url(&format!("status/{job_id}")))
        .basic_auth(format!("F002:{USER}"), Some(PASSWORD))
        .header("X-Trace-Id", "test-foreign")
        .header("X-Facility-Id", "F002")
        .send()
        .await
        .expect("status");
    assert_eq!(foreign_status.status(), StatusCode::FORBIDDEN);
    assert_eq!(crate::support::error_type(foreign_status).await, "error.phr.forbiddenFacility");

    // Download once.
    let first = download(server, &url).await;
    assert_eq!(first.status(), StatusCode::OK);
    let header = |name: &str| first.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("content-type"), "application/zip");
    assert_eq!(header("cache-control"), "no-store");
    assert!(header("content-disposition").starts_with("attachment;"), "{}", header("content-disposition"));
    assert!(header("content-length").parse::<u64>().is_ok_and(|n| n > 0));
    let mut archive = read_zip(first).await;
    let mut names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    names.sort();
    assert_eq!(names, ["metadata.json", "patient-1-P0001.json", "patient-2-P0002.json", "patient-3-P0003.json"]);
    let metadata = entry_json(&mut archive, "metadata.json");
    assert_eq!(metadata["facilityId"], "F001");
    assert_eq!(metadata["patientCount"], 3);
    assert_eq!(metadata["jobId"], job_id.as_str());
    assert!(metadata["generatedAt"].is_string());
    let p1 = entry_json(&mut archive, "patient-1-P0001.json");
    assert!(p1["docList"].as_array().is_some_and(|d| !d.is_empty()), "P0001 has documents: {p1}");

    // Second download of the same URL.
    let second = download(server, &url).await;
    assert_eq!(second.status(), StatusCode::GONE);
    assert_eq!(crate::support::error_type(second).await, "error.phr.signedUrlUsed");

    // A fresh URL, used after its TTL (the manual clock moves; nothing sleeps).
    let fresh: Value =
        server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
    let fresh_url = fresh["downloadUrl"].as_str().expect("fresh URL").to_owned();
    assert_ne!(fresh_url, url, "each issue has its own nonce");
    server.clock.advance(chrono::Duration::seconds(301));
    let expired = download(server, &fresh_url).await;
    assert_eq!(expired.status(), StatusCode::GONE);
    assert_eq!(crate::support::error_type(expired).await, "error.phr.signedUrlExpired");

    // Only PENDING jobs can be cancelled.
    let cancel = server.request(Method::DELETE, &format!("status/{job_id}")).send().await.expect("DELETE");
    assert_eq!(cancel.status(), StatusCode::CONFLICT);
    assert_eq!(crate::support::error_type(cancel).await, "error.phr.invalidState");

    LifeCycle { job_id, status: done }
}
