//! Several instances, one truth: two server instances (two `App`s, each with its own listeners, connection
//! pool, limiters and export workers) on one PostgreSQL database, as two tasks behind a load balancer are.
//! The image burst budget holds across them, the audit chain they both append to stays one unbroken chain,
//! and every export job runs exactly once although both worker pools compete for it.

use std::time::Duration;

use futures::future::join_all;
use phr_server::ImagePolicy;
use serde_json::json;

use crate::support::export::{export_config, submit, wait_for_state};
use crate::support::{self, Options, TestServer};

const FIVE_MIB: u64 = 5 * 1024 * 1024;

/// Status of `GET image/P0004` (exactly 5 MiB in the seed) on `server`, body drained.
async fn image(server: &TestServer, trace: &str) -> u16 {
    let response = server.get_traced("image/P0004", trace).send().await.expect("image");
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

#[tokio::test]
async fn two_instances_share_the_burst_budget_one_audit_chain_and_run_each_export_once() {
    let Some(db) = support::postgres().await else { return };
    // Arrange: a budget of two images per window, and export workers in both instances.
    let policy = ImagePolicy { burst_bytes: 2 * FIVE_MIB, ..ImagePolicy::default() };
    let options = Options { image: policy, export: export_config(), ..Options::default() };
    let first = TestServer::start(db, options).await;
    let second = first.sibling().await;

    // Act 1: eight calls at once, four on each instance.
    let calls = (0..8).map(|i| {
        let server = if i % 2 == 0 { &first } else { &second };
        image(server, if i % 2 == 0 { "multi-image-first" } else { "multi-image-second" })
    });
    let mut statuses = join_all(calls).await;

    // Assert 1: exactly two fit the one budget, wherever they were decided; then either instance refuses.
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429, 429, 429]);
    assert_eq!(image(&first, "multi-image-late").await, 429);
    assert_eq!(image(&second, "multi-image-late").await, 429);

    // Act 2: both instances append to the audit chain at once.
    let calls = (0..40).map(|i| {
        let server = if i % 2 == 0 { &first } else { &second };
        async move { server.get_traced("allergy/P0001", &format!("multi-audit-{i}")).send().await.unwrap().status() }
    });
    let statuses = join_all(calls).await;

    // Assert 2: every call answered and the chain is one unbroken chain.
    assert!(statuses.iter().all(|s| s.as_u16() == 200), "{statuses:?}");
    let report =
        phr_server::audit::AuditLog::new(first.app.db.clone(), phr_server::Clock::System).verify().await.unwrap();
    assert_eq!(report.first_broken, None);
    assert_eq!(i64::try_from(report.rows_checked).unwrap(), first.audit_count().await);

    // Act 3: jobs submitted through both instances, claimed by both worker pools.
    let mut jobs = Vec::new();
    for i in 0..6 {
        let server = if i % 2 == 0 { &first } else { &second };
        let job = submit(server, json!({"patientIds": ["P0001", "P0002"]})).await;
        jobs.push(job["jobId"].as_str().expect("jobId").to_owned());
    }
    for job in &jobs {
        wait_for_state(&first, job, "SUCCEEDED", Duration::from_secs(120)).await;
    }

    // Assert 3: each job ran once: one attempt, one artifact.
    let runs: Vec<(i64, Option<String>)> = phr_server::with_pool!(&first.app.db, |pool| {
        sqlx::query_as("SELECT attempts, artifact_key FROM phr_async_job ORDER BY job_id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(runs.len(), jobs.len());
    assert!(runs.iter().all(|(attempts, key)| *attempts == 1 && key.is_some()), "{runs:?}");
    second.stop().await;
    first.stop().await;
}
