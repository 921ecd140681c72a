//! The fair export queue: how many jobs one facility may queue and run, and which job a worker takes next.
//!
//! One global first-in-first-out queue let one facility starve every other (a hundred jobs of one clinic ran
//! before the first job of the next). So admission and claiming are per facility, and both are decided in
//! the database, because on PostgreSQL several server instances share one queue:
//!
//! - **Admission** ([`insert_within_cap`]): a facility may have `PHR_EXPORT_MAX_QUEUED_PER_FACILITY` PENDING
//!   jobs. The count and the insert run in the submitting call's transaction (the audit chain's, so the job
//!   and its audit rows commit together) under a per-facility lock: on PostgreSQL a transaction-scoped
//!   advisory lock keyed by the facility, taken after the chain lock like every other lock of that
//!   transaction; on SQLite the transaction's `BEGIN IMMEDIATE` write lock. Two submits of one facility,
//!   on any instances, therefore count one after the other and the cap holds exactly.
//! - **Claiming** ([`claim`]): the next job is the oldest PENDING job of the facility whose last run started
//!   longest ago (a facility that never ran comes first), skipping facilities that already have
//!   `PHR_EXPORT_MAX_RUNNING_PER_FACILITY` RUNNING jobs. "Started" is `started_seq`, a number each claim
//!   takes one past the largest so far, so the turn order does not depend on clocks that differ between
//!   instances or on two claims in one millisecond. Claims are serialised (a PostgreSQL advisory lock of
//!   their own, SQLite's write lock), so the running cap and the turn order hold across instances; the row
//!   lock with `SKIP LOCKED` stays, so a job is still never handed out twice.

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::job::{self, COLUMNS, ClaimedJob, JobRow, NewJob};
use crate::db::Db;
use crate::dbtx::DbTx;

/// Key of the PostgreSQL advisory lock that serialises claims across instances ("PHR_CLAM").
const CLAIM_LOCK_KEY: i64 = 0x5048_525f_434c_414d;
/// First key of the two-key PostgreSQL advisory lock of one facility's admissions ("PHRQ"); the second is
/// the facility id's hash. Two-key locks never collide with the one-key chain and claim locks.
const FACILITY_LOCK_NAMESPACE: i32 = 0x5048_5251;

/// What admission decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The job is inserted (PENDING) in the call's transaction.
    Queued,
    /// The facility already has `queued` PENDING jobs, at or over its cap `max`; nothing was inserted.
    QueueFull { queued: i64, max: u32 },
}

/// Inserts `job` as PENDING in `tx` unless its facility already has `max_queued` PENDING jobs. Atomic with
/// every other admission of the facility, on every instance (see the module docs).
pub async fn insert_within_cap(tx: &mut DbTx, job: &NewJob<'_>, max_queued: u32) -> Result<Admission, sqlx::Error> {
    const COUNT_SQL: &str = "SELECT COUNT(*) FROM phr_async_job WHERE facility_id = $1 AND state = 'PENDING'";
    if let DbTx::Postgres(pg) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(FACILITY_LOCK_NAMESPACE)
            .bind(job.facility_id)
            .execute(&mut **pg)
            .await?;
    }
    let queued: i64 = crate::with_tx!(&mut *tx, |conn| sqlx::query_scalar(COUNT_SQL)
        .bind(job.facility_id)
        .fetch_one(&mut *conn)
        .await)?;
    if queued >= i64::from(max_queued) {
        return Ok(Admission::QueueFull { queued, max: max_queued });
    }
    job::insert(tx, job).await?;
    Ok(Admission::Queued)
}

/// The job a claim takes: PENDING, of a facility under its running cap (`$4`), the facility whose latest
/// claim is oldest first (0: never claimed), then the facility's oldest job.
const PICK: &str = "SELECT j.job_id FROM phr_async_job j WHERE j.state = 'PENDING' \
     AND (SELECT COUNT(*) FROM phr_async_job r WHERE r.facility_id = j.facility_id AND r.state = 'RUNNING') < $4 \
     ORDER BY (SELECT COALESCE(MAX(s.started_seq), 0) FROM phr_async_job s WHERE s.facility_id = j.facility_id), \
     j.queued_at_ms, j.job_id LIMIT 1";

/// Claims the next job in the fair order for a new run (see the module docs), or `None` when no facility
/// under its running cap has a PENDING job.
pub async fn claim(
    db: &Db,
    worker_id: &str,
    now_ms: i64,
    max_running_per_facility: u32,
) -> Result<Option<ClaimedJob>, sqlx::Error> {
    let lease_id = Uuid::new_v4().to_string();
    let set = "SET state = 'RUNNING', lease_id = $1, worker_id = $2, started_at_ms = $3, heartbeat_at_ms = $3, \
               attempts = attempts + 1, progress = 0, error_code = NULL, error_message = NULL, \
               started_seq = (SELECT COALESCE(MAX(started_seq), 0) + 1 FROM phr_async_job)";
    let sql = match db {
        // Row lock on the chosen job; a claimer that somehow got past the claim lock skips it.
        Db::Postgres(_) => {
            format!("UPDATE phr_async_job {set} WHERE job_id = ({PICK} FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}")
        }
        // The write lock makes the claim exclusive; the repeated state condition says so in the statement.
        Db::Sqlite(_) => {
            format!("UPDATE phr_async_job {set} WHERE job_id = ({PICK}) AND state = 'PENDING' RETURNING {COLUMNS}")
        }
    };
    let mut tx = begin_claim(db).await?;
    let row = crate::with_tx!(&mut tx, |conn| {
        sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql.as_str()))
            .bind(&lease_id)
            .bind(worker_id)
            .bind(now_ms)
            .bind(i64::from(max_running_per_facility))
            .fetch_optional(&mut *conn)
            .await
    })?;
    match tx {
        DbTx::Postgres(tx) => tx.commit().await?,
        DbTx::Sqlite(tx) => tx.commit().await?,
    }
    Ok(row.and_then(|row| {
        let job_id = Uuid::parse_str(&row.job_id).ok()?;
        Some(ClaimedJob { row, job_id, lease_id })
    }))
}

/// A transaction in which one claim is alone: PostgreSQL's claim advisory lock (every instance), SQLite's
/// write lock taken up front (a deferred transaction could read a snapshot another writer has outdated).
async fn begin_claim(db: &Db) -> Result<DbTx, sqlx::Error> {
    Ok(match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLAIM_LOCK_KEY).execute(&mut *tx).await?;
            DbTx::Postgres(tx)
        }
        Db::Sqlite(pool) => DbTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
    })
}
