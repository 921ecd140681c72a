//! A worker that dies in the middle of a job: after a restart the job finishes, or, once it has used all
//! its attempts, is FAILED with a reason. Never RUNNING forever, never lost. Also: two workers never build
//! the same job (claiming is exclusive), on SQLite and PostgreSQL.

use std::time::Duration;

use crate::support::export::{export_config, wait_for_state};
use crate::support::{self, Options, TestServer, backends};
use phr_server::export::ExportSpec;
use phr_server::export::job::{self, NewJob};
use phr_server::export::queue;
use uuid::Uuid;

/// Writes a job as a crashed worker leaves it: RUNNING, with `attempts` runs so far and a heartbeat from
/// ten minutes ago (the manual clock's "now" minus 600 s).
async fn abandoned_job(server: &TestServer, attempts: i64) -> Uuid {
    let job_id = Uuid::new_v4();
    let now = server.clock.now();
    let spec = ExportSpec {
        patient_ids: vec!["P0001".into(), "P0002".into()],
        document_since: None,
        lab_since: None,
        rp_request: None,
        reply_to: None,
    };
    let new = NewJob {
        job_id,
        facility_id: "F001",
        requested_by: "F001:ops",
        trace_id: "test-crash",
        spec: &spec,
        now_ms: job::millis(now),
    };
    job::insert(&server.app.db, &new).await.expect("insert job");
    let stale = job::millis(now - chrono::Duration::seconds(600));
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query(
            "UPDATE phr_async_job SET state = 'RUNNING', lease_id = 'dead-worker', worker_id = 'crashed', \
             attempts = $2, progress = 40, started_at_ms = $3, heartbeat_at_ms = $3 WHERE job_id = $1",
        )
        .bind(job_id.to_string())
        .bind(attempts)
        .bind(stale)
        .execute(pool)
        .await
        .expect("mark RUNNING")
        .rows_affected()
    });
    job_id
}

async fn attempts_of(server: &TestServer, job_id: Uuid) -> i64 {
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_scalar("SELECT attempts FROM phr_async_job WHERE job_id = $1")
            .bind(job_id.to_string())
            .fetch_one(pool)
            .await
            .expect("job row")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_left_running_by_a_dead_worker_is_finished_after_restart() {
    for db in backends().await {
        // Arrange: a server whose worker "crashed" mid-job, then a process restart.
        let server = TestServer::start(db, Options { export: export_config(), ..Options::default() }).await;
        let job_id = abandoned_job(&server, 1).await;

        // Act
        let server = server.restart().await;

        // Assert: recovered at start-up, run again (attempt 2), finished.
        let done = wait_for_state(&server, &job_id.to_string(), "SUCCEEDED", Duration::from_secs(120)).await;
        assert_eq!(done["progress"], 100);
        assert_eq!(attempts_of(&server, job_id).await, 2);
        let status: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
        let url = status["downloadUrl"].as_str().expect("url");
        let archive = support::export::read_zip(support::export::download(&server, url).await).await;
        assert_eq!(archive.len(), 3, "two patients and metadata.json");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_used_all_its_attempts_is_failed_with_a_reason() {
    for db in backends().await {
        // Arrange: the crashed run was already the last allowed attempt.
        let server = TestServer::start(db, Options { export: export_config(), ..Options::default() }).await;
        let max = i64::from(server.app.config.export.max_attempts);
        let job_id = abandoned_job(&server, max).await;

        // Act
        let server = server.restart().await;

        // Assert
        let failed = wait_for_state(&server, &job_id.to_string(), "FAILED", Duration::from_secs(60)).await;
        assert_eq!(failed["errorCode"], "workerLost", "{failed}");
        assert!(failed["errorMessage"].as_str().is_some_and(|m| m.contains("stopped responding")), "{failed}");
        assert!(failed["finishedAt"].is_string());
        assert!(failed.get("downloadUrl").is_none());
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_job_with_a_live_heartbeat_is_left_alone() {
    for db in backends().await {
        // Arrange: an API-only node, and a RUNNING job whose heartbeat is recent (a live worker elsewhere).
        let export = phr_server::export::ExportConfig { workers: 0, ..export_config() };
        let server = TestServer::start(db, Options { export, ..Options::default() }).await;
        let job_id = abandoned_job(&server, 1).await;
        phr_server::with_pool!(&server.app.db, |pool| {
            // State and heartbeat in one statement: the server's own maintenance task may already have
            // requeued the (stale) abandoned job, and the arrangement must not depend on that timing.
            sqlx::query("UPDATE phr_async_job SET state = 'RUNNING', heartbeat_at_ms = $2 WHERE job_id = $1")
                .bind(job_id.to_string())
                .bind(job::millis(server.clock.now()))
                .execute(pool)
                .await
                .expect("fresh heartbeat")
                .rows_affected()
        });

        // Act
        let fresh = phr_server::export::worker::recover(&server.app).await.expect("recover");
        let while_fresh: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
        server.clock.advance(chrono::Duration::seconds(61));
        // (the pool's own maintenance task may get there first; either way the job must be requeued)
        phr_server::export::worker::recover(&server.app).await.expect("recover");

        // Assert: untouched while fresh, requeued once stale.
        assert_eq!((fresh.requeued, fresh.failed), (0, 0));
        assert_eq!(while_fresh["state"], "RUNNING");
        let status: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
        assert_eq!(status["state"], "PENDING");
        server.stop().await;
    }
}

async fn pending(db: &phr_server::Db) -> i64 {
    phr_server::with_pool!(db, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM phr_async_job WHERE state = 'PENDING'")
            .fetch_one(pool)
            .await
            .expect("count")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_hand_out_the_same_job_twice() {
    for db in backends().await {
        // Arrange: 20 PENDING jobs, no workers of the server's own.
        let export = phr_server::export::ExportConfig { workers: 0, ..export_config() };
        let server = TestServer::start(db, Options { export, ..Options::default() }).await;
        let spec = ExportSpec {
            patient_ids: vec!["P0001".into()],
            document_since: None,
            lab_since: None,
            rp_request: None,
            reply_to: None,
        };
        for _ in 0..20 {
            let new = NewJob {
                job_id: Uuid::new_v4(),
                facility_id: "F001",
                requested_by: "F001:ops",
                trace_id: "test-claim",
                spec: &spec,
                now_ms: job::millis(server.clock.now()),
            };
            job::insert(&server.app.db, &new).await.expect("insert");
        }

        // Act: 8 claimers race until the queue is empty (a running cap of 20 lets one facility take all 20).
        // (claims carry the manual clock's "now" as their heartbeat, so recovery leaves them alone)
        let now = job::millis(server.clock.now());
        let claimers = (0..8).map(|i| {
            let db = server.app.db.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    match queue::claim(&db, &format!("racer-{i}"), now, 20).await.expect("claim") {
                        Some(claimed) => mine.push(claimed.job_id),
                        // On PostgreSQL a claim racing a committed claim can come back empty while other
                        // jobs are still PENDING (the row it locked no longer matched); only stop when none is.
                        None if pending(&db).await == 0 => return mine,
                        None => tokio::task::yield_now().await,
                    }
                }
            })
        });
        let claimed: Vec<Uuid> =
            futures::future::join_all(claimers).await.into_iter().flat_map(|r| r.expect("task")).collect();

        // Assert
        let unique: std::collections::HashSet<_> = claimed.iter().collect();
        assert_eq!(claimed.len(), 20, "every job claimed once");
        assert_eq!(unique.len(), 20, "no job claimed twice");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_in_the_middle_of_a_job_hands_it_back_and_the_restart_finishes_it() {
    for db in backends().await {
        // Arrange: a job big enough to be caught running.
        let export = phr_server::export::ExportConfig { workers: 1, ..export_config() };
        let server = TestServer::start(db, Options { export, ..Options::default() }).await;
        let extra: Vec<String> = (1..=3_000).map(|n| format!("S{n:05}")).collect();
        support::export::insert_minimal_patients(&server, &extra).await;
        let job = support::export::submit(&server, serde_json::json!({ "patientIds": extra })).await;
        let job_id = job["jobId"].as_str().expect("jobId").to_owned();
        wait_for_state(&server, &job_id, "RUNNING", Duration::from_secs(60)).await;

        // Act: stop the server (and its workers) while the job runs.
        let mut server = server;
        server.shutdown().await;
        // (the server closed its pool on shutdown; look with a connection of our own)
        let db = phr_server::Db::connect(&server.app.config.database_url).await.expect("connect");
        let state_after_shutdown: String = phr_server::with_pool!(&db, |pool| {
            sqlx::query_scalar("SELECT state FROM phr_async_job WHERE job_id = $1")
                .bind(&job_id)
                .fetch_one(pool)
                .await
                .expect("job row")
        });
        db.close().await;
        eprintln!("job state after the shutdown: {state_after_shutdown}");
        let server = server.restart().await;

        // Assert: never left RUNNING by a clean shutdown; finished after the restart.
        assert!(matches!(state_after_shutdown.as_str(), "PENDING" | "SUCCEEDED"), "{state_after_shutdown}");
        let done = wait_for_state(&server, &job_id, "SUCCEEDED", Duration::from_secs(300)).await;
        assert_eq!(done["progress"], 100);
        server.stop().await;
    }
}
