//! A transaction on the audit chain: the chain lock, one database transaction, and the rows appended in it.
//!
//! A data change commits only together with its audit rows (PHR_API.md §5). So a handler that changes data
//! (an access-key upsert, an export submitted or cancelled, a signed URL issued or consumed) begins an
//! [`AuditTx`], makes its change through [`AuditTx::db`], and hands the transaction to the pipeline, which
//! appends the call's rows into it and commits. When a row is refused the transaction rolls back and the
//! change goes with it; a plain append is the same with no change before the rows.
//!
//! Lock order is always the in-process chain mutex first, then the database transaction (SQLite: `BEGIN
//! IMMEDIATE`, the database's single write lock; PostgreSQL: `BEGIN` plus the transaction-scoped advisory
//! lock). The other order deadlocks on SQLite: a connection holding the write lock would wait for a mutex
//! whose holder waits for the write lock.

use std::sync::Arc;

use chrono::SubsecRound;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{AuditError, AuditEvent, sealed_row};
use crate::clock::Clock;
use crate::db::Db;
use crate::dbtx::DbTx;

/// Key of the PostgreSQL advisory lock that serialises chain appends across processes.
const CHAIN_LOCK_KEY: i64 = 0x5048_525f_4155_4454; // "PHR_AUDT"

/// The chain every row is appended to (one chain; the column lets there be more).
pub const MAIN_CHAIN: &str = "main";

/// The chain's newest row: its hash is the next row's `previous_hash`.
const HEAD_SQL: &str = "SELECT event_hash FROM d_audit_event WHERE chain_id = $1 ORDER BY id DESC LIMIT 1";
/// The id the next row gets. It is sealed into the row, so it is taken before the insert, under the lock.
const PG_NEXT_ID_SQL: &str = "SELECT nextval(pg_get_serial_sequence('d_audit_event', 'id'))";
/// SQLite's AUTOINCREMENT rule: one more than the largest id ever used (the table's or `sqlite_sequence`'s).
const SQLITE_NEXT_ID_SQL: &str = "SELECT COALESCE(MAX(v), 0) + 1 FROM (SELECT MAX(id) AS v FROM d_audit_event \
     UNION ALL SELECT seq AS v FROM sqlite_sequence WHERE name = 'd_audit_event')";
const INSERT_SQL: &str = "INSERT INTO d_audit_event (id, chain_id, hash_version, event_time, actor_id, \
     actor_display_name, actor_role, action, outcome, resource, patient_id, request_id, trace_id, ip_address, \
     user_agent, run_id, payload, payload_hash, previous_hash, event_hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)";

/// The chain lock plus one database transaction; rows appended in it commit with whatever else it changed.
#[derive(Debug)]
pub struct AuditTx {
    /// Serialises chain appends in this process; released when the transaction ends.
    _serialised: OwnedMutexGuard<()>,
    /// The transaction the data change and the rows share.
    tx: DbTx,
    /// Stamps each row's `event_time`.
    clock: Clock,
}

impl AuditTx {
    /// Takes the chain lock, then begins the transaction (see the module docs for the order).
    pub(super) async fn begin(db: &Db, lock: Arc<Mutex<()>>, clock: Clock) -> Result<Self, sqlx::Error> {
        let serialised = lock.lock_owned().await;
        let tx = match db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHAIN_LOCK_KEY).execute(&mut *tx).await?;
                DbTx::Postgres(tx)
            }
            // Take the write lock up front: a deferred read-then-write transaction fails with
            // SQLITE_BUSY_SNAPSHOT (not retried by busy_timeout) when another connection writes in between.
            Db::Sqlite(pool) => DbTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(Self { _serialised: serialised, tx, clock })
    }

    /// The transaction, for the call's data change.
    pub fn db(&mut self) -> &mut DbTx {
        &mut self.tx
    }

    /// Appends one row to the chain inside the transaction and returns its id.
    pub async fn append(&mut self, event: AuditEvent) -> Result<i64, AuditError> {
        // Millisecond precision, so the stored time re-hashes to the same value on both backends.
        let event_time = self.clock.now().trunc_subsecs(3);
        let next_id_sql = match self.tx {
            DbTx::Postgres(_) => PG_NEXT_ID_SQL,
            DbTx::Sqlite(_) => SQLITE_NEXT_ID_SQL,
        };
        let id = crate::with_tx!(&mut self.tx, |conn| {
            let previous_hash: String =
                sqlx::query_scalar(HEAD_SQL).bind(MAIN_CHAIN).fetch_optional(&mut *conn).await?.unwrap_or_default();
            let id: i64 = sqlx::query_scalar(next_id_sql).fetch_one(&mut *conn).await?;
            let row = sealed_row(event, id, MAIN_CHAIN, previous_hash, event_time);
            sqlx::query(INSERT_SQL)
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
                .execute(&mut *conn)
                .await?;
            Ok::<i64, sqlx::Error>(row.id)
        })?;
        Ok(id)
    }

    /// Commits the data change and the rows together, then releases the chain lock.
    pub async fn commit(self) -> Result<(), AuditError> {
        match self.tx {
            DbTx::Postgres(tx) => tx.commit().await?,
            DbTx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Rolls back the data change and any rows, then releases the chain lock.
    pub async fn rollback(self) -> Result<(), AuditError> {
        match self.tx {
            DbTx::Postgres(tx) => tx.rollback().await?,
            DbTx::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}
