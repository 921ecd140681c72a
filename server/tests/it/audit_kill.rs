//! No acknowledged audit row is lost when the process dies: the real binary, answering a flood of audited
//! requests, is killed with SIGKILL in the middle of it. Every request that got its answer has its row,
//! and the chain verifies. On both backends (SQLite with `synchronous=FULL`, PostgreSQL's commit flush).
//!
//! A kill is not a power loss (the kernel still writes what the process handed it), so this shows the
//! ordering half of durability: the answer is sent only after the commit returned. The flush half is the
//! databases' settings, checked by `db.rs` (SQLite `synchronous=FULL`) and PostgreSQL's defaults.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{self, FACILITY, PASSWORD, Pki, USER, client_tls};

/// Concurrent clients in the flood.
const CLIENTS: usize = 16;
/// Answered requests to wait for before the kill (the flood goes on meanwhile).
const ANSWERED_BEFORE_KILL: usize = 200;

/// The real `phr-server serve` on loopback port 0, and the PHR address it reported.
async fn spawn_server(db_url: &str, dir: &Path, pki: &Pki) -> (Child, SocketAddr) {
    let write = |name: &str, contents: String| {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write TLS file");
        path
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_phr-server"))
        .arg("serve")
        .env_clear()
        .env("PHR_DATABASE_URL", db_url)
        .env("PHR_LISTEN", "127.0.0.1:0")
        .env("PHR_OPS_LISTEN", "127.0.0.1:0")
        .env("PHR_TLS_CERT", write("server.pem", pki.server.chain_pem()))
        .env("PHR_TLS_KEY", write("server.key", pki.server.key_pem()))
        .env("PHR_TLS_CLIENT_CA", write("ca.pem", pki.ca.cert_pem()))
        .env("PHR_LAYER_KEY_OPTIONAL", "true")
        .env("PHR_IMAGE_STORE_DIR", dir.join("images"))
        .env("PHR_LOG", "info")
        .env("PHR_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start phr-server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if event["fields"]["message"] == "phr-server listening" {
                return event["fields"]["phr"].as_str().expect("phr address").parse().expect("socket address");
            }
        }
        panic!("phr-server exited before listening");
    };
    let addr = tokio::time::timeout(Duration::from_secs(120), find).await.expect("phr-server listening in time");
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// One client's flood: audited GETs with their own trace ids until the server goes away; returns the trace
/// ids that were answered 200.
async fn flood(
    client: reqwest::Client,
    addr: SocketAddr,
    worker: usize,
    answered: Arc<tokio::sync::Semaphore>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for i in 0.. {
        let trace = format!("kill-{worker}-{i}");
        let url = format!("https://localhost:{}{}/allergy/P0001", addr.port(), phr_server::paths::PHR_BASE);
        let sent = client
            .get(url)
            .basic_auth(format!("{FACILITY}:{USER}"), Some(PASSWORD))
            .header("X-Trace-Id", &trace)
            .header("X-Facility-Id", FACILITY)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let Ok(response) = sent else { return acknowledged };
        assert_eq!(response.status(), 200, "the only answer before the kill");
        // An answer is acknowledged once the client has all of it; a body cut off by the kill is not.
        if response.bytes().await.is_err() {
            return acknowledged;
        }
        acknowledged.push(trace);
        answered.add_permits(1);
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answered_request_keeps_its_audit_row_when_the_server_is_killed() {
    for db in support::backends().await {
        // Arrange: a seeded database and the real server process on it.
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new();
        let seeded = Command::new(env!("CARGO_BIN_EXE_phr-server"))
            .args(["seed", "--patients", "2", "--database-url", &db.url])
            .env("PHR_SEED_USER_PASSWORD", PASSWORD)
            .env("PHR_IMAGE_STORE_DIR", dir.path().join("images"))
            .output()
            .await
            .expect("seed");
        assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
        let (mut server, addr) = spawn_server(&db.url, dir.path(), &pki).await;

        // Act: a flood of audited requests, and SIGKILL once enough of them were answered.
        let answered = Arc::new(tokio::sync::Semaphore::new(0));
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(client_tls(&pki.ca, Some(&pki.client)))
            .resolve("localhost", addr)
            .build()
            .expect("client");
        let clients: Vec<_> =
            (0..CLIENTS).map(|w| tokio::spawn(flood(client.clone(), addr, w, answered.clone()))).collect();
        let enough = answered.acquire_many(ANSWERED_BEFORE_KILL as u32);
        tokio::time::timeout(Duration::from_secs(300), enough)
            .await
            .expect("answers in time")
            .expect("semaphore")
            .forget();
        server.start_kill().expect("SIGKILL");
        server.wait().await.expect("reaped");
        let mut acknowledged = Vec::new();
        for c in clients {
            acknowledged.extend(c.await.expect("client task"));
        }

        // Assert: every answered request has its row, and the chain holds.
        let store = phr_server::Db::connect(&db.url).await.expect("reopen");
        let traces: Vec<String> = phr_server::with_pool!(&store, |pool| {
            sqlx::query_scalar("SELECT trace_id FROM d_audit_event WHERE trace_id LIKE 'kill-%'")
                .fetch_all(pool)
                .await
                .expect("rows")
        });
        let recorded: std::collections::HashSet<String> = traces.into_iter().collect();
        let lost: Vec<&String> = acknowledged.iter().filter(|t| !recorded.contains(*t)).collect();
        assert!(acknowledged.len() >= ANSWERED_BEFORE_KILL, "{:?}", db.backend);
        assert!(
            lost.is_empty(),
            "{:?}: {} of {} answered requests have no row: {lost:?}",
            db.backend,
            lost.len(),
            acknowledged.len()
        );
        let report =
            phr_server::audit::AuditLog::new(store.clone(), phr_server::Clock::System).verify().await.expect("verify");
        assert_eq!(report.first_broken, None, "{:?}", db.backend);
        store.close().await;
    }
}
