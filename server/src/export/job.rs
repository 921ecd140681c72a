//! Durable export jobs: the `phr_async_job` row and every transition of its state machine.
//!
//! A job must survive a crash of the process that accepted or was running it, so its whole state lives in
//! one row and every transition is one conditional UPDATE (the condition names the state it leaves, and for
//! worker transitions the run's `lease_id`). That gives the guarantees the spec asks for without any
//! in-memory bookkeeping: two workers never run the same job (claiming, in `queue.rs` with the per-facility
//! caps and the fair order, is one `UPDATE … RETURNING` under a claim lock), a worker that
//! lost its job cannot overwrite the run that replaced it, and a job left RUNNING by a dead worker is found by
//! its stale heartbeat and requeued, or failed with a reason once it has used up its attempts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use sqlx::AssertSqlSafe;

use crate::db::Db;
use crate::dbtx::{DbTx, Target};

/// The states of the spec's `PhrExportJobResponse.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
}

impl JobState {
    /// The state as stored in `phr_async_job.state` and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }
}

/// A stored state that is none of [`JobState`]'s (the table's CHECK constraint should make this impossible).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export job state {0:?} in phr_async_job")]
pub struct UnknownJobState(pub String);

impl std::str::FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "PENDING" => Ok(Self::Pending),
            "RUNNING" => Ok(Self::Running),
            "SUCCEEDED" => Ok(Self::Succeeded),
            "FAILED" => Ok(Self::Failed),
            "CANCELLED" => Ok(Self::Cancelled),
            "EXPIRED" => Ok(Self::Expired),
            other => Err(UnknownJobState(other.to_owned())),
        }
    }
}

/// How `sqlx` reads the column: a row with an unknown state fails to decode, naming the value.
impl TryFrom<String> for JobState {
    type Error = UnknownJobState;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// What the worker needs to build the export, stored as JSON in the job row (`request_json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSpec {
    /// Validated, de-duplicated, in request order.
    pub patient_ids: Vec<String>,
    /// `yyyy-MM-dd`: documents strictly after this day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_since: Option<String>,
    /// `yyyy-MM-dd`: laboratory reports strictly after this day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_request: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// One `phr_async_job` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub job_id: String,
    pub facility_id: String,
    /// Decoded from the stored text; an unknown value is a decode error, never guessed.
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// `facilityId:userId` of the submitter.
    pub requested_by: String,
    pub request_json: String,
    pub patient_count: i64,
    pub progress: i64,
    /// Runs started so far (claims); also numbers the artifact key of each run.
    pub attempts: i64,
    pub queued_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub heartbeat_at_ms: Option<i64>,
    /// The run that owns the row while RUNNING.
    pub lease_id: Option<String>,
    pub artifact_key: Option<String>,
    pub artifact_bytes: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl JobRow {
    /// The stored request; a row that does not parse cannot be built and is failed by the worker.
    pub fn spec(&self) -> Result<ExportSpec, serde_json::Error> {
        serde_json::from_str(&self.request_json)
    }
}

/// A job as a worker holds it after claiming: the row plus the lease every update must present.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub row: JobRow,
    pub job_id: Uuid,
    pub lease_id: String,
}

/// Every column a [`JobRow`] reads, for `SELECT` and `RETURNING` (also `queue::claim`'s).
pub(super) const COLUMNS: &str = "job_id, facility_id, state, requested_by, request_json, patient_count, progress, attempts, \
     queued_at_ms, started_at_ms, finished_at_ms, heartbeat_at_ms, lease_id, artifact_key, artifact_bytes, \
     error_code, error_message";

/// Epoch milliseconds of a clock reading.
pub fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// RFC 3339 (UTC, seconds) of stored epoch milliseconds.
pub fn rfc3339(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// A value bound to a job-table statement: every column the transitions write is text or an integer.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// Runs one statement on `phr_async_job` with `args` bound to `$1`, `$2`, … in order; returns the rows it
/// changed. Every transition below is one call, so each is one conditional statement; a handler's runs in
/// the call's transaction, a worker's on its own.
async fn execute<'t>(target: impl Into<Target<'t>>, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
    crate::with_target!(target.into(), |exec| {
        let mut query = sqlx::query(sql);
        for arg in args {
            query = match *arg {
                Arg::Text(value) => query.bind(value),
                Arg::Int(value) => query.bind(value),
            };
        }
        query.execute(exec).await.map(|done| done.rows_affected())
    })
}

/// A transition of a claimed job: `$1` is its id and `$2` its lease, `args` follow from `$3`. `false` when
/// the run no longer owns the job (the statement's condition did not match).
async fn update_run(db: &Db, job: &ClaimedJob, sql: &'static str, args: &[Arg<'_>]) -> Result<bool, sqlx::Error> {
    let job_id = job.job_id.to_string();
    let mut bound = vec![Arg::Text(&job_id), Arg::Text(&job.lease_id)];
    bound.extend_from_slice(args);
    Ok(execute(db, sql, &bound).await? == 1)
}

/// A new PENDING job.
pub struct NewJob<'a> {
    pub job_id: Uuid,
    pub facility_id: &'a str,
    pub requested_by: &'a str,
    pub trace_id: &'a str,
    pub spec: &'a ExportSpec,
    pub now_ms: i64,
}

/// Inserts a PENDING job (in the submitting call's transaction, or on its own).
pub async fn insert<'t>(target: impl Into<Target<'t>>, job: &NewJob<'_>) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO phr_async_job (job_id, facility_id, job_type, state, requested_by, trace_id, \
         request_json, patient_count, progress, attempts, queued_at_ms) \
         VALUES ($1, $2, 'PHR_EXPORT', 'PENDING', $3, $4, $5, $6, 0, 0, $7)";
    let request_json = serde_json::to_string(job.spec).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let count = i64::try_from(job.spec.patient_ids.len()).unwrap_or(i64::MAX);
    let job_id = job.job_id.to_string();
    let args = [
        Arg::Text(&job_id),
        Arg::Text(job.facility_id),
        Arg::Text(job.requested_by),
        Arg::Text(job.trace_id),
        Arg::Text(&request_json),
        Arg::Int(count),
        Arg::Int(job.now_ms),
    ];
    execute(target, SQL, &args).await?;
    Ok(())
}

/// The job with this id, of any facility (callers check the facility to answer 403). In a transaction it
/// sees the transaction's own uncommitted insert.
pub async fn find<'t>(target: impl Into<Target<'t>>, job_id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM phr_async_job WHERE job_id = $1");
    crate::with_target!(target.into(), |exec| sqlx::query_as::<_, JobRow>(AssertSqlSafe(sql.as_str()))
        .bind(job_id.to_string())
        .fetch_optional(exec)
        .await)
}

/// PENDING → CANCELLED in the cancelling call's transaction; `false` when the job was in any other state (or
/// does not exist).
pub async fn cancel(tx: &mut DbTx, job_id: Uuid, facility_id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE phr_async_job SET state = 'CANCELLED', finished_at_ms = $3, \
         error_code = 'cancelled', error_message = 'cancelled by the requester' \
         WHERE job_id = $1 AND facility_id = $2 AND state = 'PENDING'";
    let job_id = job_id.to_string();
    Ok(execute(tx, SQL, &[Arg::Text(&job_id), Arg::Text(facility_id), Arg::Int(now_ms)]).await? == 1)
}

/// Records liveness and progress of a run; `false` means the run no longer owns the job (stop building).
pub async fn heartbeat(db: &Db, job: &ClaimedJob, progress: u8, now_ms: i64) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE phr_async_job SET heartbeat_at_ms = $3, progress = $4 \
         WHERE job_id = $1 AND lease_id = $2 AND state = 'RUNNING'";
    update_run(db, job, SQL, &[Arg::Int(now_ms), Arg::Int(i64::from(progress.min(100)))]).await
}

/// RUNNING → SUCCEEDED with the artifact; `false` when the run had lost the job.
pub async fn succeed(
    db: &Db,
    job: &ClaimedJob,
    storage_type: &str,
    artifact_key: &str,
    artifact_bytes: u64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE phr_async_job SET state = 'SUCCEEDED', progress = 100, finished_at_ms = $3, \
         heartbeat_at_ms = $3, storage_type = $4, artifact_key = $5, artifact_bytes = $6 \
         WHERE job_id = $1 AND lease_id = $2 AND state = 'RUNNING'";
    let bytes = i64::try_from(artifact_bytes).unwrap_or(i64::MAX);
    update_run(db, job, SQL, &[Arg::Int(now_ms), Arg::Text(storage_type), Arg::Text(artifact_key), Arg::Int(bytes)])
        .await
}

/// RUNNING → FAILED with a code and a client-safe message.
pub async fn fail(db: &Db, job: &ClaimedJob, code: &str, message: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE phr_async_job SET state = 'FAILED', finished_at_ms = $3, error_code = $4, \
         error_message = $5 WHERE job_id = $1 AND lease_id = $2 AND state = 'RUNNING'";
    update_run(db, job, SQL, &[Arg::Int(now_ms), Arg::Text(code), Arg::Text(message)]).await
}

/// RUNNING → PENDING for a run interrupted by a graceful shutdown; the attempt is not counted.
pub async fn release(db: &Db, job: &ClaimedJob) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE phr_async_job SET state = 'PENDING', lease_id = NULL, worker_id = NULL, \
         heartbeat_at_ms = NULL, progress = 0, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
         WHERE job_id = $1 AND lease_id = $2 AND state = 'RUNNING'";
    update_run(db, job, SQL, &[]).await
}

/// What one recovery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Stale RUNNING jobs put back to PENDING.
    pub requeued: u64,
    /// Stale RUNNING jobs that had used all their attempts, now FAILED with `workerLost`.
    pub failed: u64,
}

/// Takes back every RUNNING job whose heartbeat is older than `stale_before_ms`: requeued while it has
/// attempts left, FAILED with a reason otherwise. Each statement is conditional on the stale heartbeat, so
/// a live run that heartbeats concurrently keeps its job.
pub async fn recover_stale(
    db: &Db,
    stale_before_ms: i64,
    max_attempts: u32,
    now_ms: i64,
) -> Result<Recovery, sqlx::Error> {
    const FAIL_SQL: &str = "UPDATE phr_async_job SET state = 'FAILED', finished_at_ms = $2, \
         error_code = 'workerLost', \
         error_message = 'the export worker stopped responding and the job used all its attempts', \
         lease_id = NULL WHERE state = 'RUNNING' AND COALESCE(heartbeat_at_ms, 0) < $1 AND attempts >= $3";
    const REQUEUE_SQL: &str = "UPDATE phr_async_job SET state = 'PENDING', lease_id = NULL, worker_id = NULL, \
         heartbeat_at_ms = NULL, progress = 0 \
         WHERE state = 'RUNNING' AND COALESCE(heartbeat_at_ms, 0) < $1 AND attempts < $2";
    let max = i64::from(max_attempts);
    let failed = execute(db, FAIL_SQL, &[Arg::Int(stale_before_ms), Arg::Int(now_ms), Arg::Int(max)]).await?;
    let requeued = execute(db, REQUEUE_SQL, &[Arg::Int(stale_before_ms), Arg::Int(max)]).await?;
    Ok(Recovery { requeued, failed })
}

/// SUCCEEDED jobs finished before `finished_before_ms`: `(job id, artifact key)`, oldest first.
pub async fn retention_due(
    db: &Db,
    finished_before_ms: i64,
    limit: i64,
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    const SQL: &str = "SELECT job_id, artifact_key FROM phr_async_job WHERE state = 'SUCCEEDED' AND finished_at_ms < $1 \
         ORDER BY finished_at_ms LIMIT $2";
    with_pool!(db, |pool| sqlx::query_as::<_, (String, Option<String>)>(SQL)
        .bind(finished_before_ms)
        .bind(limit)
        .fetch_all(pool)
        .await)
}

/// SUCCEEDED → EXPIRED (no further URLs are minted for it); `false` when the job was no longer SUCCEEDED.
pub async fn expire(db: &Db, job_id: &str) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE phr_async_job SET state = 'EXPIRED', error_code = 'artifactExpired', \
         error_message = 'the artifact passed its retention period and was deleted' \
         WHERE job_id = $1 AND state = 'SUCCEEDED'";
    Ok(execute(db, SQL, &[Arg::Text(job_id)]).await? == 1)
}

/// Jobs per state, for the `/metrics` gauge.
pub async fn count_by_state(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    const SQL: &str = "SELECT state, COUNT(*) AS n FROM phr_async_job GROUP BY state";
    with_pool!(db, |pool| sqlx::query_as::<_, (String, i64)>(SQL).fetch_all(pool).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_as_stored_and_an_unknown_one_is_named() {
        for state in [
            JobState::Pending,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Expired,
        ] {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, state.as_str(), "the API shows the stored text");
        }
        let unknown = JobState::try_from("PAUSED".to_owned()).unwrap_err();
        assert_eq!(unknown.to_string(), "unknown export job state \"PAUSED\" in phr_async_job");
    }
}
