//! End to end through the binary: the demo against the real phr-server, a run against a refused port, and a
//! run killed mid-way (no folder looks finished, the RUN_ID is never reused, the log is readable).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn connrun_command(artifacts: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_connrun"));
    command.current_dir(env!("CARGO_MANIFEST_DIR")).arg("--artifacts").arg(artifacts).args(args);
    command
}

fn connrun(artifacts: &Path, args: &[&str]) -> Output {
    connrun_command(artifacts, args).output().expect("run connrun")
}

/// A targets file for `base_url`, trusting a freshly generated CA, without client identity or secrets.
fn targets_file(dir: &Path, base_url: &str, timeout_seconds: u64) -> PathBuf {
    let ca = devpki::Authority::new("cli-run-test").expect("CA");
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).expect("write CA");
    let path = dir.join("targets.toml");
    let text = format!(
        "[targets.t]\nbase_url = \"{base_url}\"\ntimeout_seconds = {timeout_seconds}\n[targets.t.tls]\nca_bundle = \"ca.pem\"\n"
    );
    std::fs::write(&path, text).expect("write targets");
    path
}

/// A loopback port that refuses connections while the returned socket lives: the socket is bound, so no
/// concurrent test can be given the port, but never listens. (The port of a listener that was bound and
/// dropped could be reused by another test's server before this test connects to it.)
fn refused_port() -> (u16, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    (socket.local_addr().expect("addr").port(), socket)
}

fn finished_runs(suite: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(suite) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

#[test]
fn demo_runs_phr_seq_against_the_real_server_and_seals_valid_evidence() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let output = connrun(artifacts.path(), &["--json", "demo"]);

    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let run_id = result["run_id"].as_str().expect("run id").to_owned();
    let statuses: Vec<_> =
        result["status"]["probes"].as_array().expect("probes").iter().map(|p| p["http_status"].clone()).collect();
    assert_eq!(statuses, [200, 200, 200]);
    for count in result["status"]["audit"].as_array().expect("audit") {
        assert_eq!(count["delta"], count["expected"], "audit delta must equal the probes sent: {count}");
    }
    let dir = PathBuf::from(result["evidence"].as_str().expect("evidence"));
    let har: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("har/run.har")).expect("har")).expect("HAR is JSON");
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(har["log"]["entries"].as_array().map(Vec::len), Some(4));
    let verify = connrun(artifacts.path(), &["verify", &run_id]);
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));

    // Demo runs live apart: their own suite and label, so the first real run is still Z1 and the real
    // history does not list the demo.
    assert_eq!(dir.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()), Some("demo"), "{}", dir.display());
    assert!(run_id.ends_with("DemoZ1"), "{run_id}");
    let new = connrun(artifacts.path(), &["new", "phr-seq"]);
    let real = String::from_utf8_lossy(&new.stdout).trim().to_owned();
    assert!(real.ends_with("Z1") && !real.contains("Demo"), "the first real run after a demo: {real}");
    let history = connrun(artifacts.path(), &["--json", "history"]);
    let listed = String::from_utf8_lossy(&history.stdout);
    assert!(!listed.contains(&run_id), "the demo run is in the real history: {listed}");
}

#[test]
fn a_refused_port_is_recorded_and_the_run_ends_with_exit_1_and_sealed_evidence() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (port, _refusing) = refused_port();
    let targets = targets_file(artifacts.path(), &format!("https://127.0.0.1:{port}"), 5);

    let output = connrun(
        artifacts.path(),
        &["--json", "--targets", targets.to_str().expect("utf-8"), "run", "--template", "phr-seq", "--target", "t"],
    );

    assert_eq!(output.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    for probe in result["status"]["probes"].as_array().expect("probes") {
        assert_eq!(probe["outcome"]["kind"], "connection_refused");
    }
    let dir = PathBuf::from(result["evidence"].as_str().expect("evidence"));
    let todo = std::fs::read_to_string(dir.join("todo/PHR_OPEN_ITEMS.md")).expect("open items");
    assert!(todo.contains("- [ ] PHR-06") && todo.contains("- [ ] PHR-11"), "{todo}");
    let curl = std::fs::read_to_string(dir.join("logs/curl_summary.log")).expect("curl summary");
    assert!(curl.contains("PHR-07 image: HTTP 000 ("), "{curl}");
    let run_id = result["run_id"].as_str().expect("run id");
    assert_eq!(connrun(artifacts.path(), &["verify", run_id]).status.code(), Some(0));
}

#[test]
fn a_killed_run_never_looks_finished_and_its_run_id_is_never_reused() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    // Accepts connections and never answers: the first probe hangs in the TLS handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let _holder = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(16).collect();
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    let targets = targets_file(artifacts.path(), &format!("https://127.0.0.1:{port}"), 300);
    let targets_arg = targets.to_str().expect("utf-8").to_owned();
    let new = connrun(artifacts.path(), &["new", "phr-seq", "--date", "20251119"]);
    let run_id = String::from_utf8_lossy(&new.stdout).trim().to_owned();
    let mut child = connrun_command(artifacts.path(), &["--targets", &targets_arg, "run", &run_id, "--target", "t"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    let suite = artifacts.path().join("orca-connectivity");
    let log = suite.join(format!(".{run_id}.partial/logs/run.ndjson.gz"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut events = String::new();
    while !events.contains("run_started") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        events.clear();
        if let Ok(file) = std::fs::File::open(&log) {
            let _ = flate2::read::MultiGzDecoder::new(file).read_to_string(&mut events);
        }
    }

    child.kill().expect("kill");
    child.wait().expect("reap");
    let rerun = connrun(artifacts.path(), &["--targets", &targets_arg, "run", &run_id, "--target", "t"]);
    let next = connrun(artifacts.path(), &["new", "phr-seq", "--date", "20251119"]);
    let verify = connrun(artifacts.path(), &["verify", &run_id]);

    assert!(events.contains("run_started"), "the log must be readable mid-run: {events:?}");
    assert!(finished_runs(&suite).is_empty(), "a killed run must not look finished: {:?}", finished_runs(&suite));
    assert_eq!(rerun.status.code(), Some(2), "a started RUN_ID must not run again");
    assert_eq!(String::from_utf8_lossy(&next.stdout).trim(), "20251119TorcaPHRSeqZ2");
    assert_eq!(verify.status.code(), Some(2), "an unfinished run cannot be verified");
}

/// Creates a fresh PostgreSQL database; `None` (loudly) when no server is reachable, unless REQUIRE_PG=1.
fn fresh_postgres_database() -> Option<(String, String, String)> {
    let admin =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let name = format!("connrun_demo_{}", uuid::Uuid::new_v4().simple());
    let created = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.simple_query(&format!("CREATE DATABASE \"{name}\"")).await.map(|_| ())
    });
    match created {
        Ok(()) => {
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
            Some((format!("{base}/{name}"), admin, name))
        }
        Err(error) if std::env::var("REQUIRE_PG").as_deref() != Ok("1") => {
            eprintln!(
                "\n!!! SKIPPING demo --database-url: PostgreSQL unreachable ({error}); REQUIRE_PG=1 makes this a failure\n"
            );
            None
        }
        Err(error) => panic!("REQUIRE_PG=1 but PostgreSQL is unreachable: {error}"),
    }
}

fn drop_postgres_database(admin: &str, name: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _ = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.simple_query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.map(|_| ())
    });
}

#[test]
fn demo_works_against_postgresql_with_database_url() {
    let Some((url, admin, name)) = fresh_postgres_database() else { return };
    let artifacts = tempfile::tempdir().expect("temp dir");

    let output = connrun(artifacts.path(), &["--json", "demo", "--database-url", &url]);
    drop_postgres_database(&admin, &name);

    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let audit = result["status"]["audit"].as_array().expect("audit counts");
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(audit.iter().all(|c| c["delta"] == 1 && c["expected"] == 1), "{audit:?}");
}
