//! `phr-server migrate [--dry-run]` and `phr-server routes`, run as the binary an operator runs.
//!
//! The dry run prints BEGIN, what it applied inside the transaction, and ROLLBACK, and leaves nothing behind:
//! no `_sqlx_migrations` and no table on PostgreSQL, no database file on SQLite. The real run commits, and a
//! second one has nothing to do. The route map lists every route with its audit action, and calling each
//! route writes exactly that action.

use std::process::Command;

use crate::support::{self, Backend, Options, TestServer};

/// Runs the binary; returns its exit code and stdout (stderr, the log, is shown when it fails).
fn phr_server(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_phr-server")).args(args).output().expect("run phr-server");
    let code = output.status.code().unwrap_or(-1);
    if code != 0 {
        eprintln!("phr-server {args:?} stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    (code, String::from_utf8_lossy(&output.stdout).into_owned())
}

fn migrate(url: &str, dry_run: bool) -> (i32, String) {
    let mut args = vec!["migrate", "--database-url", url];
    if dry_run {
        args.push("--dry-run");
    }
    phr_server(&args)
}

/// Tables in the database (PostgreSQL: the public schema), without creating the SQLite file when absent.
async fn tables(db: &support::TestDb) -> Vec<String> {
    if db.backend == Backend::Sqlite {
        let path = db.url.strip_prefix("sqlite:").expect("sqlite url");
        if !std::path::Path::new(path).exists() {
            return Vec::new();
        }
    }
    let probe = phr_server::Db::connect(&db.url).await.unwrap();
    let sql = match db.backend {
        Backend::Postgres => "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1",
    };
    let names = phr_server::with_pool!(&probe, |pool| sqlx::query_scalar(sql).fetch_all(pool).await.unwrap());
    probe.close().await;
    names
}

#[tokio::test]
async fn dry_run_leaves_nothing_and_prints_begin_rollback_and_the_real_run_commits() {
    for db in support::backends().await {
        // Act 1: dry run on an empty database (on SQLite: no file yet)
        let (code, out) = migrate(&db.url, true);

        // Assert 1: BEGIN, what it applied, ROLLBACK; nothing left, not even the bookkeeping table or the file
        assert_eq!(code, 0, "{:?}: {out}", db.backend);
        assert!(out.starts_with("BEGIN\n"), "{out}");
        assert!(out.contains("would apply (rolled back): 1 identity and audit"), "{out}");
        assert!(out.trim_end().ends_with("ROLLBACK"), "{out}");
        if db.backend == Backend::Sqlite {
            let path = db.url.strip_prefix("sqlite:").unwrap();
            assert!(!std::path::Path::new(path).exists(), "the dry run created {path}");
            assert!(out.contains("does not exist (not created)"), "{out}");
        }
        assert_eq!(tables(&db).await, Vec::<String>::new(), "{:?}: the dry run left tables", db.backend);

        // Act 2 + Assert 2: the real run commits, a second has nothing to do, and so has a dry run now
        let (code, out) = migrate(&db.url, false);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("applied: 1 identity and audit") && out.trim_end().ends_with("COMMIT"), "{out}");
        let after = tables(&db).await;
        assert!(after.contains(&"_sqlx_migrations".to_owned()) && after.contains(&"d_audit_event".to_owned()));
        assert!(migrate(&db.url, false).1.contains("no pending migrations"));
        let (code, out) = migrate(&db.url, true);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("BEGIN\n-- no pending migrations") && out.trim_end().ends_with("ROLLBACK"), "{out}");
        assert_eq!(tables(&db).await, after, "a dry run on a migrated database changes nothing");
    }
}

/// A concrete path for a route pattern: every `{param}` filled with a value the route accepts.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{*key}", "jamri")
        .replace("{csv}", "F001,P0001")
        .replace("{job_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{access_key}", "no-such-key")
        .replace("{patient_id}", "P0001")
}

#[tokio::test]
async fn routes_prints_the_route_map_and_every_route_writes_its_audit_action() {
    // Arrange: the map as the binary prints it.
    let (code, out) = phr_server(&["routes"]);
    assert_eq!(code, 0, "{out}");
    let routes: Vec<(String, String, String)> = out
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "method, path, action: {line:?}");
            (fields[0].to_owned(), fields[1].to_owned(), fields[2].to_owned())
        })
        .collect();
    assert!(routes.contains(&(
        "GET".into(),
        "/openDolphin/resources/20/adm/phr/image/{patient_id}".into(),
        "PHR_IMAGE_STREAM".into()
    )));
    assert_eq!(routes.len(), phr_server::route_map().len());
    for db in support::backends().await {
        let server = TestServer::start(db, Options { seed_patients: 1, ..Options::default() }).await;
        for (i, (method, pattern, action)) in routes.iter().enumerate() {
            // Act: the route called with a client certificate and no Basic credential.
            let trace = format!("route-{i}");
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let url = format!("{}{}", server.base, concrete(pattern));
            let response = server
                .client()
                .request(method, url)
                .header("X-Trace-Id", &trace)
                .header("X-Facility-Id", "F001")
                .send();
            let response = response.await.unwrap();

            // Assert: a JSON error answer, and one audit row with the route's action.
            assert!(response.status().is_client_error(), "{pattern}: {}", response.status());
            support::error_type(response).await;
            let rows = server.audit_rows(&trace).await;
            assert_eq!(rows.len(), 1, "{pattern}: {rows:?}");
            assert_eq!(&rows[0].action, action, "{pattern}");
        }
        server.stop().await;
    }
}
