//! Chains per facility (PHR_API.md §5): an authenticated caller's rows join its facility's chain and every
//! other row joins `main`; each chain is unbroken, signed and verified on its own, the operator's `audit
//! verify --checkpoints` follows every chain, and on PostgreSQL a chain held by another process holds up
//! that chain only. `PHR_AUDIT_CHAINS=single` keeps every row in `main`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use auditchain::checkpoint::SigningKey;
use phr_server::config::audit::ChainPolicy;

use crate::audit_checkpoints::{newest_checkpoint_covering, options as signed_options};
use crate::support::{self, Backend, Options, PASSWORD, TestServer, USER};

/// GET `path` as `ops` of `facility` with `password`, traced.
async fn call_as(server: &TestServer, facility: &str, password: &str, path: &str, trace: &str) -> u16 {
    let response = server
        .client()
        .get(server.url(path))
        .basic_auth(format!("{facility}:{USER}"), Some(password))
        .header("X-Facility-Id", facility)
        .header("X-Trace-Id", trace)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// The chain of the one row traced `trace`.
async fn chain_of(server: &TestServer, trace: &str) -> String {
    let rows = server.audit_rows(trace).await;
    assert_eq!(rows.len(), 1, "{trace}: {rows:?}");
    rows[0].chain_id.clone()
}

#[tokio::test]
async fn each_facility_appends_to_a_chain_of_its_own_and_each_is_signed_and_verified() {
    for db in support::backends().await {
        // Arrange
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = SigningKey::generate().unwrap();
        let public = dir.path().join("audit.pub");
        std::fs::write(&public, key.public_key().to_pem()).unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let key = Arc::new(key);
        let server = TestServer::start(db, signed_options(&key, &checkpoints)).await;

        // Act: two facilities, twice each, interleaved; a wrong password that claims F002.
        for i in 0..2 {
            assert_eq!(call_as(&server, "F001", PASSWORD, "allergy/P0001", &format!("ch-f1-{i}")).await, 200);
            assert_eq!(call_as(&server, "F002", PASSWORD, "allergy/P0001", &format!("ch-f2-{i}")).await, 200);
        }
        assert_eq!(call_as(&server, "F002", "wrong-password", "allergy/P0001", "ch-claimed").await, 401);

        // Assert: the facility's chain for its calls, `main` for the claim.
        for i in 0..2 {
            assert_eq!(chain_of(&server, &format!("ch-f1-{i}")).await, "F001", "{:?}", server.backend);
            assert_eq!(chain_of(&server, &format!("ch-f2-{i}")).await, "F002", "{:?}", server.backend);
        }
        assert_eq!(chain_of(&server, "ch-claimed").await, "main", "{:?}", server.backend);
        let report = server.app.audit.verify().await.unwrap();
        assert_eq!(report.first_broken, None, "{:?}", server.backend);
        // Each chain is signed on its own, and counts its own rows only.
        let shared = &server;
        let last = |trace: &'static str| async move { shared.audit_rows(trace).await[0].id };
        let f1 = newest_checkpoint_covering(shared, "F001", last("ch-f1-1").await).await;
        let f2 = newest_checkpoint_covering(shared, "F002", last("ch-f2-1").await).await;
        let main = newest_checkpoint_covering(shared, "main", last("ch-claimed").await).await;
        assert_eq!((f1.checkpoint.rows, f2.checkpoint.rows, main.checkpoint.rows), (2, 2, 1), "{:?}", server.backend);
        // The operator's command follows every chain.
        let url = server.app.config.database_url.clone();
        let output = Command::new(env!("CARGO_BIN_EXE_phr-server"))
            .args(["audit", "verify", "--database-url", &url, "--checkpoints"])
            .arg(&checkpoints)
            .arg("--public-key")
            .arg(&public)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&output.stderr));
        for chain in ["F001", "F002", "main"] {
            assert!(text.contains(&format!("\"{chain}\"")), "chain {chain} not reported: {text}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn under_the_single_policy_every_row_joins_main() {
    let server =
        TestServer::start(support::sqlite(), Options { audit_chains: ChainPolicy::Single, ..Options::default() }).await;
    assert_eq!(call_as(&server, "F002", PASSWORD, "allergy/P0001", "single-f2").await, 200);
    assert_eq!(chain_of(&server, "single-f2").await, "main");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgresql_a_chain_held_by_another_process_holds_up_that_chain_only() {
    let Some(db) = support::postgres().await else { return };
    // Arrange: another process (a connection of its own) holds F001's chain lock, as a second server
    // instance does while it appends to F001.
    let server = TestServer::start(db, Options::default()).await;
    assert_eq!(server.backend, Backend::Postgres);
    let url = server.app.config.database_url.clone();
    let other = sqlx::PgPool::connect(&url).await.unwrap();
    let mut held = other.begin().await.unwrap();
    let (class, key) = phr_server::audit::tx::chain_lock_keys("F001").expect("F001 has a two-key lock");
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)").bind(class).bind(key).execute(&mut *held).await.unwrap();

    // Act: a call of each facility.
    let f1 = {
        let client = server.client();
        let request = client
            .get(server.url("allergy/P0001"))
            .basic_auth(format!("F001:{USER}"), Some(PASSWORD))
            .header("X-Facility-Id", "F001")
            .header("X-Trace-Id", "held-f1");
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    let f2 =
        tokio::time::timeout(Duration::from_secs(20), call_as(&server, "F002", PASSWORD, "allergy/P0001", "held-f2"))
            .await;

    // Assert: F002 answered while F001 waits for its chain, and F001 answers once the lock is released.
    assert_eq!(f2.expect("F002 must not wait for F001's chain"), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!f1.is_finished(), "F001's call must wait for its chain's lock");
    assert!(server.audit_rows("held-f1").await.is_empty());
    held.rollback().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), f1).await.expect("F001 answers").unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(chain_of(&server, "held-f1").await, "F001");
    assert_eq!(server.app.audit.verify().await.unwrap().first_broken, None);
    other.close().await;
    server.stop().await;
}
