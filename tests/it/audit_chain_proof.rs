//! connrun proves its own rows against the real server: `connrun pki init` writes the checkpoint key pair and
//! a targets.toml naming the public key and the ops listener's checkpoint URL; the real `phr-server` binary
//! signs checkpoints; each `connrun run` walks its segment and verifies the newest checkpoint. A clean run is
//! OK; after a row is changed in the database (as its owner, past the trigger), the next run is NG naming the
//! row, and exits 1; without a key configured the verdict is 未検証, never OK. The run's rows are in two chains
//! (the facility's, and `main` for a probe the router refuses before anyone authenticates), and each is
//! proved against its own checkpoint. On SQLite, and on PostgreSQL (where connrun reads rows through
//! tokio-postgres as text, event times as epoch milliseconds).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use sqlx::Connection as _;

use crate::pki_real_server::{Stop, bash, binaries, free_port, wait_ready};

/// Every run folder (one holding `status.json`) under `root`.
fn run_dirs(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.join("status.json").is_file() {
                    found.insert(path.clone());
                }
                stack.push(path);
            }
        }
    }
    found
}

/// A probe the router answers 404 before anyone authenticates: its row joins `main`, not the facility's chain.
const UNROUTED_PROBE: &str = r#"
[[phases]]
id = "Z"
name = "経路外"

[[phases.probes]]
id = "PHR-404"
name = "unrouted"
memo = "ルータが認証前に 404 を返す (行は main チェーンへ)"
method = "GET"
path = "{{phr_base}}/allergy/{{patient}}/extra"
ready = [404]
"#;

/// phr-seq plus [`UNROUTED_PROBE`], under `scratch/run-templates`.
fn two_chain_template(scratch: &Path) {
    let from = crate::pki_real_server::root().join("run-templates/phr-seq");
    let to = scratch.join("run-templates/phr-seq");
    std::fs::create_dir_all(to.join("audit")).unwrap();
    for entry in std::fs::read_dir(from.join("audit")).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join("audit").join(entry.file_name())).unwrap();
    }
    let template = std::fs::read_to_string(from.join("template.toml")).unwrap();
    std::fs::write(to.join("template.toml"), template + UNROUTED_PROBE).unwrap();
}

/// Runs phr-seq (plus the unrouted probe) against the local target; returns the output, the run's
/// chain.json and its summary.md.
fn run(scratch: &Path, bin: &Path) -> (Output, serde_json::Value, String) {
    let artifacts = scratch.join("artifacts");
    let before = run_dirs(&artifacts);
    let command = format!(
        "{}/connrun --artifacts {} --run-templates run-templates --targets pki/targets.toml run --template phr-seq \
         --target local",
        bin.display(),
        artifacts.display()
    );
    let output = bash(scratch, &command).output().expect("connrun run");
    let new: Vec<PathBuf> = run_dirs(&artifacts).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "one new run folder: {new:?}\n{}", String::from_utf8_lossy(&output.stderr));
    let chain = std::fs::read(new[0].join("audit/chain.json")).expect("audit/chain.json");
    let summary = std::fs::read_to_string(new[0].join("logs/summary.md")).expect("summary.md");
    (output, serde_json::from_slice(&chain).expect("chain.json parses"), summary)
}

/// A fresh PostgreSQL database's URL, or `None` after a loud SKIP (a panic under `REQUIRE_PG=1`).
async fn fresh_postgres() -> Option<String> {
    let admin =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut connection = match sqlx::PgConnection::connect(&admin).await {
        Ok(connection) => connection,
        Err(e) if std::env::var("REQUIRE_PG").as_deref() == Ok("1") => panic!("REQUIRE_PG=1 but {e}"),
        Err(e) => {
            eprintln!("\n*** SKIP: PostgreSQL not reachable ({e}); set TEST_DATABASE_URL or REQUIRE_PG=1 ***\n");
            return None;
        }
    };
    let name = format!("connrun_chain_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut connection).await.unwrap();
    let (base, _) = admin.rsplit_once('/').expect("a database URL");
    Some(format!("{base}/{name}"))
}

/// As the table's owner, past the append-only trigger: the newest row's outcome flipped (success ↔ failed).
/// Returns its id.
async fn change_newest_row(database: &str) -> i64 {
    let sql = "UPDATE d_audit_event SET outcome = CASE outcome WHEN 'failed' THEN 'success' ELSE 'failed' END \
               WHERE id = $1";
    if database.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(database).await.expect("open the server's SQLite file");
        let id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM d_audit_event").fetch_one(&mut db).await.unwrap();
        sqlx::query("DROP TRIGGER d_audit_event_no_update").execute(&mut db).await.unwrap();
        sqlx::query(sql).bind(id).execute(&mut db).await.unwrap();
        db.close().await.unwrap();
        id
    } else {
        let mut db = sqlx::PgConnection::connect(database).await.expect("connect to the server's database");
        let id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM d_audit_event").fetch_one(&mut db).await.unwrap();
        sqlx::query("ALTER TABLE d_audit_event DISABLE TRIGGER USER").execute(&mut db).await.unwrap();
        sqlx::query(sql).bind(id).execute(&mut db).await.unwrap();
        db.close().await.unwrap();
        id
    }
}

#[tokio::test]
async fn a_run_proves_its_rows_and_names_a_changed_row_and_says_unverified_without_a_key() {
    proves_its_rows(None).await;
}

#[tokio::test]
async fn on_postgresql_a_run_proves_its_rows_and_names_a_changed_row() {
    if let Some(database) = fresh_postgres().await {
        proves_its_rows(Some(database.clone())).await;
        let admin =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
        let name = database.rsplit('/').next().unwrap_or_default();
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut connection).await.unwrap();
    }
}

/// The three runs against a server on `database` (SQLite in the pki folder when `None`).
async fn proves_its_rows(database: Option<String>) {
    // Arrange: pki init, then the real server with a checkpoint after every commit.
    let bin = binaries();
    let scratch = tempfile::tempdir().expect("temp dir");
    let (phr, ops) = (free_port(), free_port());
    let mut init =
        format!("{}/connrun pki init pki --listen 127.0.0.1:{phr} --ops-listen 127.0.0.1:{ops}", bin.display());
    if let Some(database) = &database {
        init.push_str(&format!(" --database-url '{database}'"));
    }
    let made = bash(scratch.path(), &init).output().expect("pki init");
    assert!(made.status.success(), "pki init: {}", String::from_utf8_lossy(&made.stderr));
    let server = format!(
        "set -a && . pki/phr-server.env && set +a && export PHR_AUDIT_CHECKPOINT_ROWS=1 && \
         {bin}/phr-server migrate && {bin}/phr-server seed --patients 5 && exec {bin}/phr-server serve",
        bin = bin.display()
    );
    two_chain_template(scratch.path());
    let server = bash(scratch.path(), &server).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("serve");
    let mut stop = Stop(server);
    wait_ready(ops, &mut stop.0);

    // Act 1: a clean run.
    let (output, chain, summary) = run(scratch.path(), &bin);

    // Assert 1: both chains proved, each against a checkpoint of its own.
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(chain["verdict"], "ok", "{chain:#}");
    let chains = chain["chains"].as_array().expect("chains");
    let ids: Vec<&str> = chains.iter().filter_map(|c| c["chain_id"].as_str()).collect();
    assert_eq!(ids, ["F001", "main"], "{chain:#}");
    for proved in chains {
        assert_eq!(proved["verdict"], "ok", "{chain:#}");
        assert!(proved["segment"].is_array(), "{chain:#}");
        assert_eq!(proved["checkpoint"]["checkpoint"]["chain_id"], proved["chain_id"], "{chain:#}");
        assert!(proved["checkpoint"]["signature"].is_string(), "{chain:#}");
    }
    assert!(summary.contains("監査チェーン検証: OK"), "{summary}");

    // Act 2: the table's owner changes the newest row (the chain's head before the next run), then a run.
    let database = std::fs::read_to_string(scratch.path().join("pki/audit.url")).expect("audit.url");
    let changed = change_newest_row(database.trim()).await;
    let (output, chain, summary) = run(scratch.path(), &bin);

    // Assert 2: NG naming the row, exit 1.
    assert_eq!(output.status.code(), Some(1), "{}\n{chain:#}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(chain["verdict"], "ng", "{chain:#}");
    let reason = chain["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("行 id {changed} の列 outcome")), "{reason}");
    assert!(summary.contains("監査チェーン検証: NG (チェーン "), "{summary}");
    assert!(summary.contains(&format!("行 id {changed} の列 outcome")), "{summary}");

    // Act 3: no public key in the target.
    let targets = scratch.path().join("pki/targets.toml");
    let text = std::fs::read_to_string(&targets).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("public_key") && !l.starts_with("checkpoint_url"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&targets, without).unwrap();
    let (_, chain, summary) = run(scratch.path(), &bin);

    // Assert 3: 未検証 with the reason, never OK.
    assert_eq!(chain["verdict"], "unverified", "{chain:#}");
    assert!(summary.contains("監査チェーン検証: 未検証 (理由: 公開鍵未設定"), "{summary}");
}
