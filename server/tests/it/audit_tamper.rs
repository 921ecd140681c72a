//! The tamper suite: someone with the table owner's rights disables the append-only trigger and rewrites
//! `d_audit_event`; `audit verify` must name the first row that does not hold and, as precisely as hash
//! version 2 allows, the column. Rows written under hash version 1 before the upgrade keep verifying, and a
//! tampered one is still caught. Each case starts from the same table (restored from a snapshot), on SQLite
//! and PostgreSQL.
//!
//! A re-hashed tail and a deleted tail leave a chain that is consistent in itself; only signed checkpoints
//! outside the database can tell them from the truth: those cases are in `audit_checkpoints.rs`, which
//! tampers with the helpers here.

use std::process::Command;

use chrono::{DateTime, TimeZone, Utc};
use phr_server::audit::seal::{self, StoredRow};

use crate::support::{self, Backend, Options, TestServer};

/// Rows written by an earlier server under hash version 1, before the upgrade.
const LEGACY_ROWS: i64 = 3;
/// Calls made through the upgraded server (hash version 2).
const CALLS: usize = 4;

#[tokio::test]
async fn every_tampering_is_detected_and_named_by_row_and_column() {
    for db in support::backends().await {
        // Arrange: three legacy version-1 rows, then four calls through the server.
        let server = TestServer::start(db, Options::default()).await;
        insert_legacy_rows(&server).await;
        for i in 0..CALLS {
            let response = server.get_traced("allergy/P0001", &format!("tamper-{i}")).send().await.unwrap();
            assert_eq!(response.status(), 200);
        }
        let snapshot = read_rows(&server).await;
        let report = server.app.audit.verify().await.unwrap();
        assert_eq!(report.first_broken, None, "{:?}: the mixed v1/v2 chain holds", server.backend);
        assert_eq!(report.rows_checked, LEGACY_ROWS as u64 + CALLS as u64);
        let legacy = snapshot[1].id;
        let second = snapshot[LEGACY_ROWS as usize + 1].id;
        let third = snapshot[LEGACY_ROWS as usize + 2].id;
        let last = snapshot.last().unwrap().id;
        assert!(snapshot[..LEGACY_ROWS as usize].iter().all(|r| r.hash_version == 1));
        assert!(snapshot[LEGACY_ROWS as usize..].iter().all(|r| r.hash_version == 2));

        let cases: Vec<(&str, Vec<String>, i64, &str)> = vec![
            (
                "the issue's example: action and outcome rewritten",
                vec![format!(
                    "UPDATE d_audit_event SET action = 'PHR_IMAGE_STREAM', outcome = 'failed' WHERE id = {second}"
                )],
                second,
                "action",
            ),
            (
                "outcome alone",
                vec![format!("UPDATE d_audit_event SET outcome = 'failed' WHERE id = {second}")],
                second,
                "outcome",
            ),
            (
                "trace id",
                vec![format!("UPDATE d_audit_event SET trace_id = 'other' WHERE id = {second}")],
                second,
                "trace_id",
            ),
            (
                "resource",
                vec![format!("UPDATE d_audit_event SET resource = '/elsewhere' WHERE id = {second}")],
                second,
                "event_hash",
            ),
            (
                "ip address",
                vec![format!("UPDATE d_audit_event SET ip_address = '10.9.9.9' WHERE id = {third}")],
                third,
                "event_hash",
            ),
            (
                "payload",
                vec![format!("UPDATE d_audit_event SET payload = payload || ' ' WHERE id = {second}")],
                second,
                "payload",
            ),
            (
                "payload with a matching payload_hash",
                vec![format!(
                    "UPDATE d_audit_event SET payload = '{{}}', payload_hash = '{}' WHERE id = {second}",
                    seal::sha256_hex(b"{}")
                )],
                second,
                "event_hash",
            ),
            (
                "deleted middle row",
                vec![format!("DELETE FROM d_audit_event WHERE id = {second}")],
                third,
                "previous_hash",
            ),
            ("swapped rows", swap_ids(second, third), second, "previous_hash"),
            (
                "renumbered last row",
                vec![format!("UPDATE d_audit_event SET id = {} WHERE id = {last}", last + 100)],
                last + 100,
                "event_hash",
            ),
            (
                "legacy row's actor",
                vec![format!("UPDATE d_audit_event SET actor_id = 'F001:intruder' WHERE id = {legacy}")],
                legacy,
                "event_hash",
            ),
        ];
        for (name, statements, expected_id, expected_column) in cases {
            // Act
            as_table_owner(&server, &statements).await;
            let report = server.app.audit.verify().await.unwrap();
            restore(&server, &snapshot).await;

            // Assert
            let broken = report.first_broken.unwrap_or_else(|| panic!("{:?} {name}: not detected", server.backend));
            assert_eq!(
                (broken.id, broken.column.as_str()),
                (expected_id, expected_column),
                "{:?} {name}: {broken}",
                server.backend
            );
        }
        assert_eq!(server.app.audit.verify().await.unwrap().first_broken, None, "restored");
        server.stop().await;
    }
}

#[tokio::test]
async fn the_verify_command_names_the_row_and_column() {
    for db in support::backends().await {
        // Arrange: the issue's example, on the middle one of three rows.
        let server = TestServer::start(db, Options::default()).await;
        for i in 0..3 {
            server.get_traced("allergy/P0001", &format!("cli-tamper-{i}")).send().await.unwrap();
        }
        let target = server.audit_rows("cli-tamper-1").await[0].id;
        as_table_owner(
            &server,
            &[format!("UPDATE d_audit_event SET action = 'PHR_IMAGE_STREAM', outcome = 'success' WHERE id = {target}")],
        )
        .await;

        // Act: the operator's command, as a separate process.
        let output = Command::new(env!("CARGO_BIN_EXE_phr-server"))
            .args(["audit", "verify", "--database-url", &server.app.config.database_url])
            .output()
            .unwrap();

        // Assert
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{:?}: {stdout}", server.backend);
        assert!(
            stdout.contains(&format!("BROKEN at id {target} (chain \"{}\"), column action:", support::FACILITY)),
            "{:?}: {stdout}",
            server.backend
        );
        assert!(stdout.contains("PHR_IMAGE_STREAM") && stdout.contains("PHR_ALLERGY_TEXT"), "{stdout}");
        server.stop().await;
    }
}

/// Three rows as a server before hash version 2 wrote them: `hash_version` 1, the version-1 formula.
async fn insert_legacy_rows(server: &TestServer) {
    let mut previous = String::new();
    for i in 0..LEGACY_ROWS {
        let at: DateTime<Utc> = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i);
        let payload = format!(r#"{{"status":"success","traceId":"legacy-{i}","userId":"ops","facilityId":"F001"}}"#);
        let payload_hash = seal::sha256_hex(payload.as_bytes());
        let event_hash = seal::v1(&previous, &payload_hash, at, Some("F001:ops"));
        let row = StoredRow {
            id: i + 1,
            chain_id: "main".into(),
            hash_version: 1,
            event_time: at,
            actor_id: Some("F001:ops".into()),
            actor_display_name: None,
            actor_role: Some("user".into()),
            action: "PHR_ALLERGY_TEXT".into(),
            outcome: "success".into(),
            resource: Some("/openDolphin/resources/20/adm/phr/allergy/P0001".into()),
            patient_id: Some("P0001".into()),
            request_id: None,
            trace_id: Some(format!("legacy-{i}")),
            ip_address: Some("127.0.0.1".into()),
            user_agent: None,
            run_id: None,
            payload: Some(payload),
            payload_hash,
            previous_hash: Some(previous.clone()),
            event_hash: event_hash.clone(),
        };
        insert_rows(server, &[row]).await;
        previous = event_hash;
    }
    if server.backend == Backend::Postgres {
        phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query("SELECT setval(pg_get_serial_sequence('d_audit_event', 'id'), $1)")
                .bind(LEGACY_ROWS)
                .execute(pool)
                .await
                .unwrap();
        });
    }
}

/// Every row of the table, in id order.
pub(crate) async fn read_rows(server: &TestServer) -> Vec<StoredRow> {
    let sql = format!("SELECT {} FROM d_audit_event ORDER BY id", seal::COLUMNS);
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_as::<_, StoredRow>(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await.unwrap()
    })
}

/// Inserts rows exactly as given (a restore, or rows of an earlier server version).
pub(crate) async fn insert_rows(server: &TestServer, rows: &[StoredRow]) {
    const SQL: &str = "INSERT INTO d_audit_event (id, chain_id, hash_version, event_time, actor_id, \
         actor_display_name, actor_role, action, outcome, resource, patient_id, request_id, trace_id, ip_address, \
         user_agent, run_id, payload, payload_hash, previous_hash, event_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)";
    for row in rows {
        phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query(SQL)
                .bind(row.id)
                .bind(&row.chain_id)
                .bind(row.hash_version)
                .bind(row.event_time)
                .bind(&row.actor_id)
                .bind(&row.actor_display_name)
                .bind(&row.actor_role)
                .bind(&row.action)
                .bind(&row.outcome)
                .bind(&row.resource)
                .bind(&row.patient_id)
                .bind(&row.request_id)
                .bind(&row.trace_id)
                .bind(&row.ip_address)
                .bind(&row.user_agent)
                .bind(&row.run_id)
                .bind(&row.payload)
                .bind(&row.payload_hash)
                .bind(&row.previous_hash)
                .bind(&row.event_hash)
                .execute(pool)
                .await
                .unwrap();
        });
    }
}

/// Puts the table back to `snapshot` (as the owner, past the trigger).
pub(crate) async fn restore(server: &TestServer, snapshot: &[StoredRow]) {
    as_table_owner(server, &["DELETE FROM d_audit_event".to_owned()]).await;
    insert_rows(server, snapshot).await;
}

/// Exchanges the ids of two rows (three statements, through a free id).
fn swap_ids(a: i64, b: i64) -> Vec<String> {
    vec![
        format!("UPDATE d_audit_event SET id = -1 WHERE id = {a}"),
        format!("UPDATE d_audit_event SET id = {a} WHERE id = {b}"),
        format!("UPDATE d_audit_event SET id = {b} WHERE id = -1"),
    ]
}

/// Runs `statements` in one transaction with the append-only triggers out of the way, as the table's owner
/// (or anyone holding the file) can.
pub(crate) async fn as_table_owner(server: &TestServer, statements: &[String]) {
    let (disable, enable): (&[&str], &[&str]) = match server.backend {
        Backend::Postgres => {
            (&["ALTER TABLE d_audit_event DISABLE TRIGGER USER"], &["ALTER TABLE d_audit_event ENABLE TRIGGER USER"])
        }
        Backend::Sqlite => (
            &["DROP TRIGGER d_audit_event_no_update", "DROP TRIGGER d_audit_event_no_delete"],
            &[
                "CREATE TRIGGER d_audit_event_no_update BEFORE UPDATE ON d_audit_event \
                 BEGIN SELECT RAISE(ABORT, 'd_audit_event is append-only: UPDATE refused'); END",
                "CREATE TRIGGER d_audit_event_no_delete BEFORE DELETE ON d_audit_event \
                 BEGIN SELECT RAISE(ABORT, 'd_audit_event is append-only: DELETE refused'); END",
            ],
        ),
    };
    phr_server::with_pool!(&server.app.db, |pool| {
        let mut tx = pool.begin().await.unwrap();
        for statement in disable.iter().copied().map(str::to_owned).chain(statements.iter().cloned()) {
            sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut *tx)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        for statement in enable {
            sqlx::query(*statement).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    });
}
