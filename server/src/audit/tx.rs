//! A transaction on the audit chain: the chain lock, one database transaction, and the rows appended in it.
//!
//! A data change commits only together with its audit rows (PHR_API.md §5). So a handler that changes data
//! (an access-key upsert, an export submitted or cancelled, a signed URL issued or consumed) begins an
//! [`AuditTx`], makes its change through [`AuditTx::db`], and hands the transaction to the pipeline, which
//! appends the call's rows into it and commits. When a row is refused the transaction rolls back and the
//! change goes with it. Calls without a data change go to the group-commit writer (`writer.rs`), which
//! uses the same [`begin_chain_transaction`] and [`append_rows`] for a whole batch.
//!
//! Lock order is always the in-process lane mutex first (`chains.rs`), then the database transaction
//! (SQLite: `BEGIN IMMEDIATE`, the database's single write lock; PostgreSQL: `BEGIN` plus the chain's
//! transaction-scoped advisory lock). The other order deadlocks on SQLite: a connection holding the write lock
//! would wait for a mutex whose holder waits for the write lock. A transaction holds one chain's locks only,
//! so two chains never wait for each other in a circle.

use std::sync::Arc;

use chrono::SubsecRound;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::checkpoint::AppendSignal;
use super::{AuditError, AuditEvent, sealed_row};
use crate::clock::Clock;
use crate::db::Db;
use crate::dbtx::DbTx;
use auditchain::seal::StoredRow;

/// The chain of rows without an authenticated facility, and of every row under `PHR_AUDIT_CHAINS=single`
/// (`chains.rs` decides which chain a row joins).
pub const MAIN_CHAIN: &str = "main";

/// Key of the PostgreSQL advisory lock that serialises appends to `main` across processes (the key servers
/// before chains per facility took, so a server of either version appending to `main` waits for the other).
const MAIN_LOCK_KEY: i64 = 0x5048_525f_4155_4454; // "PHR_AUDT"
/// First key of the two-key advisory lock of any other chain ("PHRC"); the second is [`chain_lock_keys`]'s.
/// The two-key space is apart from the one-key space, and a hash collision only makes two chains take turns.
const CHAIN_LOCK_CLASS: i32 = 0x5048_5243;

/// The chain's newest row: its hash is the next row's `previous_hash`.
const HEAD_SQL: &str = "SELECT event_hash FROM d_audit_event WHERE chain_id = $1 ORDER BY id DESC LIMIT 1";
/// The chain's head (on every row) and the ids the next `$2` rows get, in one round trip. The ids are sealed
/// into the rows, so they are taken before the insert, under the lock (so chain order is id order).
const PG_HEAD_AND_IDS_SQL: &str = "SELECT (SELECT event_hash FROM d_audit_event WHERE chain_id = $1 ORDER BY id DESC \
     LIMIT 1), nextval(pg_get_serial_sequence('d_audit_event', 'id')) FROM generate_series(1, $2::bigint)";
/// SQLite's AUTOINCREMENT rule: one more than the largest id ever used (the table's or `sqlite_sequence`'s).
const SQLITE_NEXT_ID_SQL: &str = "SELECT COALESCE(MAX(v), 0) + 1 FROM (SELECT MAX(id) AS v FROM d_audit_event \
     UNION ALL SELECT seq AS v FROM sqlite_sequence WHERE name = 'd_audit_event')";
/// The columns of one inserted row, in bind order.
const INSERT_COLUMNS: &str = "INSERT INTO d_audit_event (id, chain_id, hash_version, event_time, actor_id, \
     actor_display_name, actor_role, action, outcome, resource, patient_id, request_id, trace_id, ip_address, \
     user_agent, run_id, payload, payload_hash, previous_hash, event_hash) VALUES ";
/// PostgreSQL's insert: the rows as 20 arrays, one per column, in one statement whatever their number, so
/// every batch runs the one statement the connection prepared once, with 20 binds (a `VALUES` list is a
/// statement per batch size, parsed and planned with 20 binds a row).
const PG_INSERT_SQL: &str = "INSERT INTO d_audit_event (id, chain_id, hash_version, event_time, actor_id, \
     actor_display_name, actor_role, action, outcome, resource, patient_id, request_id, trace_id, ip_address, \
     user_agent, run_id, payload, payload_hash, previous_hash, event_hash) SELECT * FROM UNNEST($1::int8[], \
     $2::text[], $3::int4[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
     $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], \
     $18::text[], $19::text[], $20::text[])";
/// Binds per row.
const COLUMNS_PER_ROW: usize = 20;
/// Rows per SQLite INSERT statement (SQLite allows 32766 binds).
const ROWS_PER_INSERT: usize = 256;
const _: () = assert!(ROWS_PER_INSERT * COLUMNS_PER_ROW <= 32_766);
/// The chain lock plus one database transaction; rows appended in it commit with whatever else it changed.
#[derive(Debug)]
pub struct AuditTx {
    /// Serialises the lane's appends in this process; released when the transaction ends.
    _serialised: OwnedMutexGuard<()>,
    /// The chain the rows join.
    chain: String,
    /// The transaction the data change and the rows share.
    tx: DbTx,
    /// Stamps each row's `event_time`.
    clock: Clock,
    /// Rows appended so far, announced to the checkpoint task once committed.
    appended: usize,
    /// Where they are announced.
    signal: Arc<AppendSignal>,
}

impl AuditTx {
    /// Takes the lane lock, then begins the transaction on `chain` (see the module docs for the order).
    pub(super) async fn begin(
        db: &Db,
        lock: Arc<Mutex<()>>,
        chain: String,
        clock: Clock,
        signal: Arc<AppendSignal>,
    ) -> Result<Self, sqlx::Error> {
        let serialised = lock.lock_owned().await;
        let tx = begin_chain_transaction(db, &chain).await?;
        Ok(Self { _serialised: serialised, chain, tx, clock, appended: 0, signal })
    }

    /// The transaction, for the call's data change.
    pub fn db(&mut self) -> &mut DbTx {
        &mut self.tx
    }

    /// Appends one row to the chain inside the transaction and returns its id.
    pub async fn append(&mut self, event: AuditEvent) -> Result<i64, AuditError> {
        let ids = append_rows(&mut self.tx, &self.clock, &self.chain, std::slice::from_ref(&event)).await?;
        self.appended += ids.len();
        Ok(ids[0])
    }

    /// Commits the data change and the rows together, then releases the chain lock.
    pub async fn commit(self) -> Result<(), AuditError> {
        match self.tx {
            DbTx::Postgres(tx) => tx.commit().await?,
            DbTx::Sqlite(tx) => tx.commit().await?,
        }
        self.signal.committed(&self.chain, self.appended);
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

/// Begins a transaction that may append to `chain`; the caller holds the chain's lane lock. SQLite takes
/// the write lock up front (a deferred read-then-write transaction fails with SQLITE_BUSY_SNAPSHOT, which
/// busy_timeout does not retry, when another connection writes in between), which serialises every chain;
/// PostgreSQL takes the chain's transaction-scoped advisory lock, which serialises its appends across
/// processes and leaves other chains free.
///
/// On PostgreSQL `BEGIN` and the lock leave as one simple query (one round trip); the keys are integers, so
/// nothing of the chain's name is spliced into SQL.
pub(super) async fn begin_chain_transaction(db: &Db, chain: &str) -> Result<DbTx, sqlx::Error> {
    Ok(match db {
        Db::Postgres(pool) => {
            let begin = match chain_lock_keys(chain) {
                None => format!("BEGIN; SELECT pg_advisory_xact_lock({MAIN_LOCK_KEY})"),
                Some((class, key)) => format!("BEGIN; SELECT pg_advisory_xact_lock({class}, {key})"),
            };
            // Only integers are formatted in: nothing of the chain's name reaches the SQL text.
            DbTx::Postgres(pool.begin_with(sqlx::AssertSqlSafe(begin)).await?)
        }
        Db::Sqlite(pool) => DbTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
    })
}

/// The two keys of `chain`'s PostgreSQL advisory lock: [`CHAIN_LOCK_CLASS`] and the first four bytes of the
/// SHA-256 of its name (big-endian); `None` for `main`, which takes the one-key lock servers always took.
pub fn chain_lock_keys(chain: &str) -> Option<(i32, i32)> {
    if chain == MAIN_CHAIN {
        return None;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, chain.as_bytes());
    let bytes = digest.as_ref();
    Some((CHAIN_LOCK_CLASS, i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])))
}

/// Appends `events` in order to `chain` inside `tx` (begun by [`begin_chain_transaction`] for that chain,
/// under its lane lock): the head is read once, the ids are taken once, the rows are sealed one after the
/// other and inserted in as few statements as the bind limits allow. Returns their ids.
pub(super) async fn append_rows(
    tx: &mut DbTx,
    clock: &Clock,
    chain: &str,
    events: &[AuditEvent],
) -> Result<Vec<i64>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let postgres = matches!(tx, DbTx::Postgres(_));
    let (mut previous_hash, ids): (String, Vec<i64>) = crate::with_tx!(tx, |conn| {
        let (head, mut ids): (Option<String>, Vec<i64>) = if postgres {
            let rows: Vec<(Option<String>, i64)> =
                sqlx::query_as(PG_HEAD_AND_IDS_SQL).bind(chain).bind(count).fetch_all(&mut *conn).await?;
            (rows.first().and_then(|(head, _)| head.clone()), rows.into_iter().map(|(_, id)| id).collect())
        } else {
            let head = sqlx::query_scalar(HEAD_SQL).bind(chain).fetch_optional(&mut *conn).await?;
            let first: i64 = sqlx::query_scalar(SQLITE_NEXT_ID_SQL).fetch_one(&mut *conn).await?;
            (head, (first..first + count).collect())
        };
        ids.sort_unstable();
        Ok::<_, sqlx::Error>((head.unwrap_or_default(), ids))
    })?;
    let mut rows = Vec::with_capacity(events.len());
    for (event, id) in events.iter().zip(&ids) {
        // Millisecond precision, so the stored time re-hashes to the same value on both backends.
        let row = sealed_row(event, *id, chain, previous_hash, clock.now().trunc_subsecs(3));
        previous_hash = row.event_hash.clone();
        rows.push(row);
    }
    match tx {
        DbTx::Postgres(tx) => insert_postgres(tx, &rows).await?,
        DbTx::Sqlite(tx) => insert_sqlite(tx, &rows).await?,
    }
    Ok(ids)
}

/// The rows in one statement of column arrays ([`PG_INSERT_SQL`]).
async fn insert_postgres(conn: &mut sqlx::PgConnection, rows: &[StoredRow]) -> Result<(), sqlx::Error> {
    fn column<'a, T>(rows: &'a [StoredRow], value: impl Fn(&'a StoredRow) -> T) -> Vec<T> {
        rows.iter().map(value).collect()
    }
    sqlx::query(PG_INSERT_SQL)
        .bind(column(rows, |r| r.id))
        .bind(column(rows, |r| r.chain_id.as_str()))
        .bind(column(rows, |r| r.hash_version))
        .bind(column(rows, |r| r.event_time))
        .bind(column(rows, |r| r.actor_id.as_deref()))
        .bind(column(rows, |r| r.actor_display_name.as_deref()))
        .bind(column(rows, |r| r.actor_role.as_deref()))
        .bind(column(rows, |r| r.action.as_str()))
        .bind(column(rows, |r| r.outcome.as_str()))
        .bind(column(rows, |r| r.resource.as_deref()))
        .bind(column(rows, |r| r.patient_id.as_deref()))
        .bind(column(rows, |r| r.request_id.as_deref()))
        .bind(column(rows, |r| r.trace_id.as_deref()))
        .bind(column(rows, |r| r.ip_address.as_deref()))
        .bind(column(rows, |r| r.user_agent.as_deref()))
        .bind(column(rows, |r| r.run_id.as_deref()))
        .bind(column(rows, |r| r.payload.as_deref()))
        .bind(column(rows, |r| r.payload_hash.as_str()))
        .bind(column(rows, |r| r.previous_hash.as_deref()))
        .bind(column(rows, |r| r.event_hash.as_str()))
        .execute(conn)
        .await?;
    Ok(())
}

/// The rows in `VALUES` lists of up to [`ROWS_PER_INSERT`] rows (SQLite has no arrays to bind).
async fn insert_sqlite(conn: &mut sqlx::SqliteConnection, rows: &[StoredRow]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(chunk.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for row in chunk {
            query = query
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
                .bind(&row.event_hash);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `INSERT … VALUES ($1, …, $20), ($21, …)` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(INSERT_COLUMNS);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..COLUMNS_PER_ROW {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * COLUMNS_PER_ROW + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_numbers_every_bind_of_every_row() {
        let sql = insert_sql(2);
        assert!(sql.starts_with(INSERT_COLUMNS));
        assert!(sql.ends_with(
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20), \
             ($21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40)"
        ));
    }
}
