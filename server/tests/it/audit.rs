//! The audit trail: one row per call under concurrency, an unbroken chain, append-only, tamper detection,
//! and fail-closed behaviour when the row cannot be written. Each test runs on SQLite and PostgreSQL.

use std::process::Command;

use crate::support::{self, Backend, Options, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_leave_one_row_each_and_an_unbroken_chain() {
    for db in support::backends().await {
        // Arrange
        let server = TestServer::start(db, Options::default()).await;
        let n = 200;

        // Act
        let requests = (0..n).map(|i| {
            let request = server.get_traced("allergy/P0001", &format!("concurrent-{i}"));
            async move { request.send().await.map(|r| r.status().as_u16()) }
        });
        let statuses = futures::future::join_all(requests).await;

        // Assert
        let failures: Vec<_> = statuses.iter().filter(|s| !matches!(s, Ok(200))).collect();
        assert!(
            failures.is_empty(),
            "{:?}: {} failed: {:?}",
            server.backend,
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        let rows: i64 = phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM d_audit_event WHERE trace_id LIKE 'concurrent-%'")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert_eq!(rows, n, "{:?}", server.backend);
        let report = server.app.audit.verify().await.unwrap();
        assert_eq!(report.first_broken, None, "{:?}", server.backend);
        assert!(report.rows_checked >= n as u64);
        server.stop().await;
    }
}

#[tokio::test]
async fn the_table_refuses_update_and_delete() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        server.get_traced("allergy/P0001", "append-only").send().await.unwrap();

        for statement in ["UPDATE d_audit_event SET payload = 'x'", "DELETE FROM d_audit_event"] {
            let result =
                phr_server::with_pool!(&server.app.db, |pool| sqlx::query(statement).execute(pool).await.map(|_| ()));
            let error = result.expect_err(statement).to_string();
            assert!(error.contains("append-only"), "{:?} {statement}: {error}", server.backend);
        }
        assert_eq!(server.audit_rows("append-only").await.len(), 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn audit_verify_names_the_first_tampered_row() {
    for db in support::backends().await {
        // Arrange: three calls, then an administrator with table-owner rights edits the middle row.
        let server = TestServer::start(db, Options::default()).await;
        for i in 0..3 {
            server.get_traced("allergy/P0001", &format!("tamper-{i}")).send().await.unwrap();
        }
        let target = server.audit_rows("tamper-1").await[0].id;
        let (disable, enable) = match server.backend {
            Backend::Postgres => (
                "ALTER TABLE d_audit_event DISABLE TRIGGER d_audit_event_no_update_delete",
                "ALTER TABLE d_audit_event ENABLE TRIGGER d_audit_event_no_update_delete",
            ),
            Backend::Sqlite => (
                "DROP TRIGGER d_audit_event_no_update",
                "CREATE TRIGGER d_audit_event_no_update BEFORE UPDATE ON d_audit_event \
                 BEGIN SELECT RAISE(ABORT, 'd_audit_event is append-only: UPDATE refused'); END",
            ),
        };
        phr_server::with_pool!(&server.app.db, |pool| {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(disable).execute(&mut *tx).await.unwrap();
            sqlx::query("UPDATE d_audit_event SET payload = replace(payload, 'success', 'failed') WHERE id = $1")
                .bind(target)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(enable).execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        });

        // Act: the operator's command, as a separate process.
        let output = Command::new(env!("CARGO_BIN_EXE_phr-server"))
            .args(["audit", "verify", "--database-url", &server_db_url(&server)])
            .output()
            .unwrap();

        // Assert
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{:?}: {stdout}", server.backend);
        assert!(stdout.contains(&format!("BROKEN at id {target}")), "{:?}: {stdout}", server.backend);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_call_whose_audit_row_cannot_be_written_returns_no_data() {
    for db in support::backends().await {
        // Arrange: make the database refuse this one action's rows.
        let server = TestServer::start(db, Options::default()).await;
        let refuse = match server.backend {
            Backend::Postgres => {
                "ALTER TABLE d_audit_event ADD CONSTRAINT test_refuse CHECK (action <> 'PHR_ALLERGY_TEXT') NOT VALID"
            }
            Backend::Sqlite => {
                "CREATE TRIGGER test_refuse BEFORE INSERT ON d_audit_event WHEN NEW.action = 'PHR_ALLERGY_TEXT' \
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            }
        };
        phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query(refuse).execute(pool).await.unwrap();
        });

        // Act
        let response = server.get_traced("allergy/P0001", "fail-closed").send().await.unwrap();

        // Assert: an error, not the allergy text; other endpoints still answer.
        assert_eq!(response.status(), 500, "{:?}", server.backend);
        assert_eq!(support::error_type(response).await, "error.phr.internal");
        assert!(server.audit_rows("fail-closed").await.is_empty());
        let other = server.get("disease/P0001").send().await.unwrap();
        assert_eq!(other.status(), 200);
        server.stop().await;
    }
}

fn server_db_url(server: &TestServer) -> String {
    server.app.config.database_url.clone()
}

#[tokio::test]
async fn control_characters_in_ids_are_escaped_into_the_row_instead_of_failing_the_call() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        let response = server.get_traced("image/P%00%0Ax", "nul-in-id").send().await.unwrap();

        assert_eq!(response.status(), 404, "{:?}: a NUL must not make the audit insert fail", server.backend);
        let rows = server.audit_rows("nul-in-id").await;
        assert_eq!(rows.len(), 1, "{:?}", server.backend);
        assert_eq!(rows[0].patient_id.as_deref(), Some("P\\u{0}\\u{a}x"), "{:?}", server.backend);
        server.stop().await;
    }
}

#[tokio::test]
async fn the_audit_connection_waits_for_the_flush_on_both_backends() {
    for db in support::backends().await {
        // Arrange: on PostgreSQL the database's default says not to wait; the server must not follow it.
        if db.backend == Backend::Postgres {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{name}\" SET synchronous_commit = off")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let server = TestServer::start(db, Options::default()).await;

        // Act: ask the connection the audit writer appends on.
        let mut tx = server.app.audit.begin(None).await.unwrap();
        let setting: String = phr_server::with_tx!(tx.db(), |conn| match server.backend {
            Backend::Sqlite => sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .map(|level| level.to_string()),
            Backend::Postgres => sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut *conn).await,
        })
        .unwrap();
        tx.rollback().await.unwrap();

        // Assert: SQLite FULL (2), PostgreSQL on.
        let expected = match server.backend {
            Backend::Sqlite => "2",
            Backend::Postgres => "on",
        };
        assert_eq!(setting, expected, "{:?}", server.backend);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_row_fails_only_its_own_call_when_rows_are_committed_in_groups() {
    for db in support::backends().await {
        // Arrange: the database refuses PHR_ALLERGY_TEXT rows only.
        let server = TestServer::start(db, Options::default()).await;
        let refuse = match server.backend {
            Backend::Postgres => {
                "ALTER TABLE d_audit_event ADD CONSTRAINT test_refuse CHECK (action <> 'PHR_ALLERGY_TEXT') NOT VALID"
            }
            Backend::Sqlite => {
                "CREATE TRIGGER test_refuse BEFORE INSERT ON d_audit_event WHEN NEW.action = 'PHR_ALLERGY_TEXT' \
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            }
        };
        phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query(refuse).execute(pool).await.unwrap();
        });

        // Act: refused and accepted calls at once, so they share batches.
        let requests = (0..60).map(|i| {
            let path = if i % 2 == 0 { "allergy/P0001" } else { "disease/P0001" };
            let request = server.get_traced(path, &format!("group-{i}"));
            async move { (i, request.send().await.unwrap().status().as_u16()) }
        });
        let statuses = futures::future::join_all(requests).await;

        // Assert: every refused call failed closed, every other call answered with its row.
        for (i, status) in statuses {
            let expected = if i % 2 == 0 { 500 } else { 200 };
            assert_eq!(status, expected, "{:?}: call {i}", server.backend);
            let rows = server.audit_rows(&format!("group-{i}")).await.len();
            assert_eq!(rows, usize::from(i % 2 == 1), "{:?}: call {i}", server.backend);
        }
        assert_eq!(server.app.audit.verify().await.unwrap().first_broken, None);
        server.stop().await;
    }
}
