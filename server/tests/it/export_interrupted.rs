//! A download that breaks off is in the audit trail: the success row of `GET /export/{jobId}/artifact` is
//! written before the first byte (fail closed), so a client that goes away mid-stream must leave a second,
//! `failed` row with the bytes that left, or the trail would claim a delivered artifact that never arrived.
//!
//! The download is paced slowly (the spec's bandwidth profile, turned down), so the client can drop the
//! connection while most of the ZIP is still on the server's side.

use std::time::Duration;

use crate::support::export::{export_config, insert_minimal_patients, submit, wait_for_state};
use crate::support::{self, FACILITY, Options, PASSWORD, TestServer, USER, backends};
use phr_server::export::ExportConfig;
use reqwest::StatusCode;
use serde_json::json;

/// Enough patients for an artifact of many storage chunks, so the stream is still going when the client leaves.
const PATIENTS: usize = 800;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_the_client_abandons_leaves_a_failed_artifact_row() {
    for db in backends().await {
        // Arrange: a finished export whose download is paced at 20 kB/s.
        let export = ExportConfig { download_bytes_per_second: 20_000, ..export_config() };
        let server = TestServer::start(db, Options { export, ..Options::default() }).await;
        let ids: Vec<String> = (1..=PATIENTS).map(|n| format!("Y{n:05}")).collect();
        insert_minimal_patients(&server, &ids).await;
        let job = submit(&server, json!({ "patientIds": ids })).await;
        let job_id = job["jobId"].as_str().expect("jobId").to_owned();
        let status = wait_for_state(&server, &job_id, "SUCCEEDED", Duration::from_secs(300)).await;
        let url = status["downloadUrl"].as_str().expect("downloadUrl").to_owned();
        let trace = format!("test-abandon-{}", uuid::Uuid::new_v4().simple());

        // Act: take the headers and the first bytes, then close the connection.
        let mut response = server
            .client()
            .get(&url)
            .basic_auth(format!("{FACILITY}:{USER}"), Some(PASSWORD))
            .header("X-Trace-Id", &trace)
            .header("X-Facility-Id", FACILITY)
            .send()
            .await
            .expect("GET artifact");
        assert_eq!(response.status(), StatusCode::OK);
        let expected: u64 = response.content_length().expect("Content-Length");
        assert!(expected > 100_000, "the artifact should take seconds at 20 kB/s, it is {expected} bytes");
        let first = response.chunk().await.expect("first chunk").expect("some bytes");
        drop(response);

        // Assert: the success row, then a failed row of the same action with what was sent.
        let rows = wait_for_rows(&server, &trace, 2).await;
        let summary: Vec<(&str, &str)> = rows.iter().map(|r| (r.action.as_str(), r.outcome.as_str())).collect();
        assert_eq!(summary, [("PHR_EXPORT_ARTIFACT", "success"), ("PHR_EXPORT_ARTIFACT", "failed")], "{rows:?}");
        let failed = &rows[1].payload;
        assert_eq!(failed["bytesExpected"], expected, "{failed}");
        let sent = failed["bytesSent"].as_u64().expect("bytesSent");
        assert!(sent >= first.len() as u64 && sent < expected, "{failed}");
        assert!(failed["reason"].as_str().is_some_and(|r| r.contains("connection closed")), "{failed}");
        assert_eq!(failed["jobId"], job_id.as_str(), "{failed}");
        server.stop().await;
    }
}

/// The audit rows of `trace` once there are at least `count` (the failed row is written after the fact).
async fn wait_for_rows(server: &TestServer, trace: &str, count: usize) -> Vec<support::AuditRow> {
    for _ in 0..300 {
        let rows = server.audit_rows(trace).await;
        if rows.len() >= count {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} audit rows for {trace} after 30 s: {:?}", server.audit_rows(trace).await);
}
