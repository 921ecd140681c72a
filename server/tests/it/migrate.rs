//! `phr-server migrate [--dry-run]`: the dry run applies pending migrations inside a transaction and rolls
//! back (nothing is left behind); the real run commits; a second run has nothing to do.

use crate::support;
use std::process::Command;

fn migrate(url: &str, dry_run: bool) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_phr-server"));
    command.args(["migrate", "--database-url", url]);
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.output().expect("run phr-server");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn dry_run_rolls_back_and_real_run_commits() {
    for db in support::backends().await {
        // Act 1: dry run
        let (code, stdout) = migrate(&db.url, true);

        // Assert 1: it reported what it would apply, said ROLLBACK, and left no table behind
        assert_eq!(code, 0, "{:?}: {stdout}", db.backend);
        assert!(stdout.contains("would apply (rolled back): 1 identity and audit"), "{stdout}");
        assert!(stdout.trim_end().ends_with("ROLLBACK"), "{stdout}");
        let probe = phr_server::Db::connect(&db.url).await.unwrap();
        let exists = phr_server::with_pool!(&probe, |pool| {
            sqlx::query("SELECT COUNT(*) FROM d_audit_event").fetch_one(pool).await.is_ok()
        });
        assert!(!exists, "{:?}: the dry run must not create d_audit_event", db.backend);
        probe.close().await;

        // Act 2 + Assert 2: the real run commits, and a second one has nothing to do
        let (code, stdout) = migrate(&db.url, false);
        assert_eq!(code, 0, "{stdout}");
        assert!(stdout.contains("applied: 1 identity and audit") && stdout.trim_end().ends_with("COMMIT"), "{stdout}");
        let (code, stdout) = migrate(&db.url, false);
        assert_eq!(code, 0);
        assert!(stdout.contains("no pending migrations"), "{stdout}");
    }
}
