//! Least privilege on PostgreSQL: `phr-server migrate --app-role` run as the owner, then the real server
//! serving as that role. The role appends and reads audit rows, and everything that could rewrite the trail
//! (UPDATE, DELETE, TRUNCATE, disabling the append-only trigger) is refused by PostgreSQL itself; the server
//! reports the owner's role as one to warn about and the serving role as clean.

use std::process::Command;

use crate::support::{self, Options, TestServer};

/// A login role created for one test and dropped after it (after the test database, which holds its grants).
struct Role {
    admin: String,
    name: String,
}

impl Role {
    async fn create(admin: &str) -> Role {
        let name = format!("phr_app_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let pool = sqlx::PgPool::connect(admin).await.expect("admin connection");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE \"{name}\" LOGIN"))).execute(&pool).await.expect("role");
        pool.close().await;
        Role { admin: admin.to_owned(), name }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let drop = format!("DROP ROLE IF EXISTS \"{name}\"");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

fn migrate_with_role(url: &str, role: &str) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_phr-server"))
        .args(["migrate", "--database-url", url, "--app-role", role])
        .output()
        .expect("run phr-server");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[tokio::test]
async fn a_serving_role_appends_and_reads_the_audit_trail_and_can_rewrite_none_of_it() {
    // Arrange: a fresh database migrated by its owner, who grants a separate login role what serving needs.
    let admin =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let Some(db) = support::postgres().await else { return };
    let role = Role::create(&admin).await;
    let (code, out, err) = migrate_with_role(&db.url, &role.name);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("granted to {}", role.name)), "{out}");
    let owner = phr_server::Db::connect(&db.url).await.expect("owner connects");
    let owner_report = owner.privilege_report().await.expect("report").expect("PostgreSQL");
    owner.close().await;

    // Act: the real server serving as the role, answering an audited request.
    let server = TestServer::start(db.connect_as(&role.name), Options::default()).await;
    let response = server.get_traced("allergy/P0001", "least-privilege").send().await.expect("request");
    let report = server.app.db.privilege_report().await.expect("report").expect("PostgreSQL");

    // Assert: the request was answered and audited by the role.
    assert_eq!(response.status(), 200);
    assert_eq!(server.audit_rows("least-privilege").await.len(), 1);
    assert_eq!(report.role, role.name);
    assert_eq!(report.warning(), None, "{report:?}");
    assert!(owner_report.warning().is_some_and(|w| w.contains("owns d_audit_event")), "{owner_report:?}");
    // Assert: every way to rewrite the trail is refused by the database, not by the server's good manners.
    let attempts = [
        "UPDATE d_audit_event SET outcome = 'success'",
        "DELETE FROM d_audit_event",
        "TRUNCATE d_audit_event",
        "ALTER TABLE d_audit_event DISABLE TRIGGER ALL",
        "DROP TABLE d_audit_event",
    ];
    for sql in attempts {
        let refused = phr_server::with_pool!(&server.app.db, |pool| sqlx::query(sql).execute(pool).await.map(|_| ()))
            .expect_err(sql)
            .to_string();
        assert!(refused.contains("permission denied") || refused.contains("must be owner"), "{sql}: {refused}");
    }
    assert_eq!(server.audit_rows("least-privilege").await.len(), 1, "the row is still there");
    server.stop().await;
}

#[tokio::test]
async fn granting_to_a_role_that_does_not_exist_says_how_to_create_it() {
    let Some(db) = support::postgres().await else { return };
    let (code, _, err) = migrate_with_role(&db.url, "phr_no_such_role_here");
    assert_ne!(code, 0);
    assert!(err.contains("no such role") && err.contains("CREATE ROLE phr_no_such_role_here LOGIN"), "{err}");
}
