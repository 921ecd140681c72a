//! Fair exports: per-facility caps on queued and running jobs and on patients per job, and a queue that
//! serves facilities in turn, against the real server (TLS, Basic, audit) on SQLite and PostgreSQL. One
//! facility can no longer starve the others: its submits beyond the cap are refused (429, audited) while
//! another facility's are accepted, and another facility's job runs before the rest of its queue. On
//! PostgreSQL the caps are checked with two instances on one database and concurrent callers.

use std::time::Duration;

use futures::future::join_all;
use phr_server::export::job::{self, NewJob};
use phr_server::export::{ExportConfig, ExportSpec, queue};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::export::{export_config, wait_for_state};
use crate::support::{self, Backend, Options, PASSWORD, TestServer, USER, backends};

/// `POST /export` as `ops` of `facility` with `trace`.
async fn submit_as(server: &TestServer, facility: &str, trace: &str, body: &Value) -> reqwest::Response {
    server
        .client()
        .post(server.url("export"))
        .basic_auth(format!("{facility}:{USER}"), Some(PASSWORD))
        .header("X-Trace-Id", trace)
        .header("X-Facility-Id", facility)
        .json(body)
        .send()
        .await
        .expect("POST /export")
}

/// The job id of an accepted submit (asserts 202).
async fn accepted(response: reqwest::Response) -> String {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["jobId"].as_str().expect("jobId").to_owned()
}

/// Jobs of `facility` in `state`.
async fn count(server: &TestServer, facility: &str, state: &str) -> i64 {
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM phr_async_job WHERE facility_id = $1 AND state = $2")
            .bind(facility)
            .bind(state)
            .fetch_one(pool)
            .await
            .expect("count")
    })
}

/// An API-only node (no workers, so submitted jobs stay PENDING) with the given per-facility queue cap.
fn api_only(max_queued: u32) -> Options {
    let export = ExportConfig { workers: 0, max_queued_per_facility: max_queued, ..export_config() };
    Options { export, ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_facility_at_its_queue_cap_gets_an_audited_429_while_another_facility_is_still_accepted() {
    for db in backends().await {
        // Arrange: F001 fills its queue of three.
        let server = TestServer::start(db, api_only(3)).await;
        let body = json!({"patientIds": ["P0001"]});
        let mut queued = Vec::new();
        for i in 0..3 {
            queued.push(accepted(submit_as(&server, "F001", &format!("fair-fill-{i}"), &body).await).await);
        }

        // Act
        let refused = submit_as(&server, "F001", "fair-over-cap", &body).await;
        let other = submit_as(&server, "F002", "fair-other", &body).await;

        // Assert: a JSON 429 with Retry-After, and its failed row with the reason, count and cap.
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("30"));
        let error: Value = refused.json().await.expect("the refusal is JSON");
        assert_eq!(error["type"], "error.phr.throttled", "{error}");
        assert_eq!(error["status"], 429);
        assert_eq!(error["traceId"], "fair-over-cap");
        assert!(error["message"].as_str().is_some_and(|m| m.contains("at most 3")), "{error}");
        let rows = server.audit_rows("fair-over-cap").await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_EXPORT_REQUEST", "failed"));
        let payload = &rows[0].payload;
        assert!(payload["reason"].as_str().is_some_and(|r| r.contains("at most 3")), "{payload}");
        assert_eq!(
            (payload["httpStatus"].as_u64(), payload["error"].as_str()),
            (Some(429), Some("error.phr.throttled"))
        );
        assert_eq!((payload["queuedJobs"].as_i64(), payload["maxQueuedPerFacility"].as_i64()), (Some(3), Some(3)));
        accepted(other).await;
        assert_eq!((count(&server, "F001", "PENDING").await, count(&server, "F002", "PENDING").await), (3, 1));

        // A cancelled job frees its place.
        let cancel = server.request(reqwest::Method::DELETE, &format!("status/{}", queued[0])).send().await;
        assert_eq!(cancel.expect("DELETE").status(), StatusCode::NO_CONTENT);
        accepted(submit_as(&server, "F001", "fair-after-cancel", &body).await).await;
        assert_eq!(count(&server, "F001", "PENDING").await, 3);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_patients_than_the_per_job_cap_is_an_audited_400_naming_the_field_and_the_limit() {
    // Arrange
    let export = ExportConfig { workers: 0, max_patients: 2, ..export_config() };
    let server = TestServer::start(support::sqlite(), Options { export, ..Options::default() }).await;

    // Act
    let response =
        submit_as(&server, "F001", "fair-patients", &json!({"patientIds": ["P0001", "P0002", "P0003"]})).await;

    // Assert
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["type"], "error.phr.invalidPayload");
    let message = error["message"].as_str().expect("message");
    assert!(message.contains("patientIds") && message.contains("at most 2"), "{message}");
    let rows = server.audit_rows("fair-patients").await;
    assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_EXPORT_REQUEST", "failed"));
    assert_eq!(count(&server, "F001", "PENDING").await, 0, "no job was queued");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_later_facilitys_job_starts_before_the_rest_of_an_earlier_facilitys_queue() {
    for db in backends().await {
        // Arrange: F001 queues four jobs, then F002 one (a second apart, so queue order is exact), while no
        // worker runs.
        let server = TestServer::start(db, api_only(10)).await;
        let body = json!({"patientIds": ["P0001"]});
        let mut order = Vec::new();
        for i in 0..4 {
            order.push(accepted(submit_as(&server, "F001", &format!("fair-a-{i}"), &body).await).await);
            server.clock.advance(chrono::Duration::seconds(1));
        }
        let b = accepted(submit_as(&server, "F002", "fair-b", &body).await).await;

        // Act: the server comes back with one worker.
        let server = server.restart_with(|config| config.export.workers = 1).await;
        // (one worker runs one job at a time, so when F001's last job is done every job is)
        for job_id in &order {
            wait_for_state(&server, job_id, "SUCCEEDED", Duration::from_secs(120)).await;
        }
        assert_eq!(count(&server, "F002", "SUCCEEDED").await, 1);

        // Assert: the order of the runs' starts: F001's oldest, then F002's, then the rest of F001's.
        let started: Vec<String> = phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query_scalar("SELECT job_id FROM phr_async_job ORDER BY started_seq").fetch_all(pool).await.unwrap()
        });
        let expected = [&order[0], &b, &order[1], &order[2], &order[3]];
        assert_eq!(started.iter().collect::<Vec<_>>(), expected, "F002's job waits for one F001 job only");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_on_two_instances_never_exceed_a_facilitys_queue_cap() {
    for db in backends().await {
        // Arrange: on PostgreSQL two instances on one database (as behind a load balancer); SQLite has one.
        let first = TestServer::start(db, api_only(5)).await;
        let second = if first.backend == Backend::Postgres { Some(first.sibling().await) } else { None };
        let body = json!({"patientIds": ["P0001"]});

        // Act: 16 submits of F001 and 16 of F002 at once, spread over the instances.
        let calls = (0..32).map(|i| {
            let server = match (&second, i % 4 < 2) {
                (Some(second), true) => second,
                _ => &first,
            };
            let facility = if i % 2 == 0 { "F001" } else { "F002" };
            let body = &body;
            async move { (facility, submit_as(server, facility, &format!("fair-race-{i}"), body).await.status()) }
        });
        let results = join_all(calls).await;

        // Assert: exactly five accepted per facility, every other submit refused with 429.
        for facility in ["F001", "F002"] {
            let statuses: Vec<u16> = results.iter().filter(|(f, _)| *f == facility).map(|(_, s)| s.as_u16()).collect();
            assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 5, "{facility}: {statuses:?}");
            assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 11, "{facility}: {statuses:?}");
            assert_eq!(count(&first, facility, "PENDING").await, 5, "{facility}");
        }
        if let Some(second) = second {
            second.stop().await;
        }
        first.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_run_more_than_the_running_cap_of_a_facility() {
    for db in backends().await {
        // Arrange: six PENDING jobs of F001 and of F002, no workers of the server's own.
        let server = TestServer::start(db, api_only(10)).await;
        let spec = ExportSpec {
            patient_ids: vec!["P0001".into()],
            document_since: None,
            lab_since: None,
            rp_request: None,
            reply_to: None,
        };
        for facility in ["F001", "F002"] {
            for _ in 0..6 {
                let new = NewJob {
                    job_id: uuid::Uuid::new_v4(),
                    facility_id: facility,
                    requested_by: "test",
                    trace_id: "fair-claim",
                    spec: &spec,
                    now_ms: job::millis(server.clock.now()),
                };
                job::insert(&server.app.db, &new).await.expect("insert");
            }
        }

        // Act: 8 claimers race with a running cap of two (no job finishes, so every slot stays taken).
        let now = job::millis(server.clock.now());
        let claimers = (0..8).map(|i| {
            let db = server.app.db.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(claimed) = queue::claim(&db, &format!("racer-{i}"), now, 2).await.expect("claim") {
                    mine.push(claimed.row.facility_id);
                }
                mine
            })
        });
        let claimed: Vec<String> = join_all(claimers).await.into_iter().flat_map(|r| r.expect("task")).collect();

        // Assert: two per facility, the rest still waiting.
        for facility in ["F001", "F002"] {
            assert_eq!(claimed.iter().filter(|f| *f == facility).count(), 2, "{claimed:?}");
            assert_eq!(count(&server, facility, "RUNNING").await, 2);
            assert_eq!(count(&server, facility, "PENDING").await, 4);
        }
        server.stop().await;
    }
}
