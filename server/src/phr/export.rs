//! Phase F endpoints: `POST /export`, `GET|DELETE /status/{jobId}`, `GET /export/{jobId}/artifact`.
//!
//! The handlers validate, check the facility, and translate between HTTP and the export subsystem
//! ([`crate::export`]): jobs are rows, the work happens in the worker pool, and the artifact comes back only
//! through a signed, single-use, short-lived https URL minted when the status of a finished job is read.
//! Decisions where the spec is silent: a job of another facility answers 403 forbiddenFacility (the spec's
//! rule for other facilities' data; job ids are random UUIDs, so this reveals nothing guessable); every
//! requested patient must exist in the caller's facility at submission (404 patientNotFound naming them);
//! a facility at its queue cap is answered 429 throttled with `Retry-After` (the spec's code for a limit);
//! an `X-Forwarded-Proto: http` from a trusted proxy refuses any export call with 400 insecureScheme; the
//! artifact URL requires the same mTLS + Basic + facility as every PHR call, on top of its signature.
//! The body's field checks are in `export/validate.rs`, the signed URL's minting and redemption and the paced
//! artifact stream in `export/download.rs`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::json;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

mod download;
mod validate;

use super::pipeline;
use super::reply::Reply;
use super::request::{AuthMode, Caller, RequestMeta, invalid_json, read_body};
use crate::audit::Action;
use crate::error::{ApiError, ErrorCode};
use crate::export::job::{self, JobRow, JobState, NewJob};
use crate::export::queue::{self, Admission};
use crate::export::signed_url;
use crate::paths;
use crate::state::AppState;
use crate::storage::StorageError;
use validate::{PhrExportRequest, validate};

/// Largest `POST /export` body (room for the maximum number of patient ids).
const MAX_EXPORT_BODY: usize = 4 * 1024 * 1024;
/// Patient ids checked per existence query at submission.
const EXISTENCE_BATCH: usize = 200;
/// `Retry-After` of a submit refused because the facility's queue is full: about one small export's run.
const QUEUE_FULL_RETRY_SECONDS: u32 = 30;

/// `PhrExportJobResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PhrExportJobResponse {
    job_id: String,
    state: JobState,
    progress: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    queued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    download_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

impl PhrExportJobResponse {
    fn of(row: &JobRow) -> Self {
        Self {
            job_id: row.job_id.clone(),
            state: row.state,
            progress: row.progress,
            queued_at: job::rfc3339(row.queued_at_ms),
            started_at: row.started_at_ms.and_then(job::rfc3339),
            finished_at: row.finished_at_ms.and_then(job::rfc3339),
            download_url: None,
            error_code: row.error_code.clone(),
            error_message: row.error_message.clone(),
        }
    }
}

/// What the handlers need from the request besides the pipeline's [`RequestMeta`].
struct Transport {
    /// `X-Forwarded-Proto: http` from a trusted proxy.
    insecure: bool,
    /// Host (and port) the client addressed, for URLs when no public base is configured.
    host: Option<String>,
}

impl Transport {
    fn of(app: &AppState, meta: &RequestMeta, uri: &Uri) -> Self {
        let trusted = meta.peer.as_ref().is_some_and(|p| app.config.trusted_proxies.contains(&p.addr.ip()));
        let header = |name: &str| meta.header(name).ok().flatten().filter(|v| !v.is_empty()).map(str::to_owned);
        let insecure = trusted
            && header("x-forwarded-proto")
                .and_then(|p| p.split(',').next().map(|s| s.trim().to_ascii_lowercase()))
                .is_some_and(|proto| proto != "https");
        let forwarded_host = if trusted { header("x-forwarded-host") } else { None };
        let host = forwarded_host.or_else(|| header("host")).or_else(|| uri.authority().map(|a| a.as_str().to_owned()));
        Self { insecure, host }
    }

    fn refuse_plain_http(&self) -> Result<(), PlainHttp> {
        if self.insecure { Err(PlainHttp) } else { Ok(()) }
    }
}

/// A request that reached the trusted proxy over plain http.
struct PlainHttp;

impl From<PlainHttp> for ApiError {
    fn from(_: PlainHttp) -> Self {
        ApiError::new(ErrorCode::InsecureScheme, "export calls are refused over plain http; use https")
    }
}

/// A job id that is not a UUID.
struct NotAJobId(String);

impl From<NotAJobId> for ApiError {
    fn from(NotAJobId(raw): NotAJobId) -> Self {
        ApiError::new(ErrorCode::InvalidJobId, format!("job id {raw:?} is not a UUID"))
    }
}

/// `POST /export`: validates the request and queues a job (202).
pub async fn submit(State(app): State<AppState>, meta: RequestMeta, uri: Uri, body: Body) -> Response {
    let transport = Transport::of(&app, &meta, &uri);
    pipeline::handle(&app, meta, Action::ExportRequest, AuthMode::Basic, async |caller| {
        transport.refuse_plain_http()?;
        let bytes = read_body(body, MAX_EXPORT_BODY).await?;
        let request: PhrExportRequest = serde_json::from_slice(&bytes).map_err(|e| invalid_json(&e))?;
        let spec = validate(&request, app.config.export.max_patients)
            .map_err(|message| ApiError::new(ErrorCode::InvalidPayload, message))?;
        require_patients(&app, &caller.facility_id, &spec.patient_ids).await?;
        let job_id = Uuid::new_v4();
        let now_ms = job::millis(app.config.clock.now());
        let new_job = NewJob {
            job_id,
            facility_id: &caller.facility_id,
            requested_by: &caller.actor_id(),
            trace_id: &caller.trace_id,
            spec: &spec,
            now_ms,
        };
        let max_queued = app.config.export.max_queued_per_facility;
        let (row, tx) = pipeline::change(&app, &caller.facility_id, async |tx| {
            if let Admission::QueueFull { queued, max } = queue::insert_within_cap(tx, &new_job, max_queued).await? {
                return Err(queue_full(&caller.facility_id, queued, max));
            }
            job::find(tx, job_id).await?.ok_or_else(|| ApiError::internal("inserted job vanished"))
        })
        .await?;
        let export = app.clone();
        let mut reply = Reply::json(&PhrExportJobResponse::of(&row))?
            .detail("jobId", job_id.to_string())
            .detail("patientCount", spec.patient_ids.len())
            .in_transaction(tx)
            .on_commit(move || export.export.wake.notify_one());
        *reply.response.status_mut() = StatusCode::ACCEPTED;
        if let Ok(location) = HeaderValue::from_str(&paths::export_status(job_id)) {
            reply.response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(reply)
    })
    .await
}

/// `GET /status/{jobId}`: the job, plus a fresh single-use `downloadUrl` when it SUCCEEDED.
pub async fn status(State(app): State<AppState>, meta: RequestMeta, uri: Uri, Path(job_id): Path<String>) -> Response {
    let transport = Transport::of(&app, &meta, &uri);
    pipeline::handle(&app, meta, Action::ExportStatus, AuthMode::Basic, async |caller| {
        transport.refuse_plain_http()?;
        let (job_id, row) = caller_job(&app, &caller, &job_id).await?;
        let mut body = PhrExportJobResponse::of(&row);
        let mut minted = None;
        if row.state == JobState::Succeeded {
            let issue = download::mint(&app, &caller, transport.host.as_deref(), &row).await?;
            body.download_url = issue.url.clone();
            minted = Some(issue);
        }
        let mut reply = Reply::json(&body)?.detail("jobId", job_id.to_string()).detail("state", row.state.as_str());
        if let Some(issue) = minted {
            reply = reply.also_audit(issue.action, issue.details);
            if let Some(tx) = issue.transaction {
                reply = reply.in_transaction(tx);
            }
        }
        Ok(reply)
    })
    .await
}

/// `DELETE /status/{jobId}`: cancels a PENDING job (204); any other state is 409 invalidState.
pub async fn cancel(State(app): State<AppState>, meta: RequestMeta, uri: Uri, Path(job_id): Path<String>) -> Response {
    let transport = Transport::of(&app, &meta, &uri);
    pipeline::handle(&app, meta, Action::ExportCancel, AuthMode::Basic, async |caller| {
        transport.refuse_plain_http()?;
        let job_id = parse_job_id(&job_id)?;
        let now_ms = job::millis(app.config.clock.now());
        let (cancelled, tx) = pipeline::change(&app, &caller.facility_id, async |tx| {
            Ok(job::cancel(tx, job_id, &caller.facility_id, now_ms).await?)
        })
        .await?;
        if cancelled {
            return Ok(Reply::new(StatusCode::NO_CONTENT).detail("jobId", job_id.to_string()).in_transaction(tx));
        }
        tx.rollback().await.map_err(ApiError::internal)?;
        let (_, row) = caller_job(&app, &caller, &job_id.to_string()).await?;
        Err(ApiError::new(
            ErrorCode::InvalidState,
            format!("the job is {}; only PENDING jobs can be cancelled", row.state.as_str()),
        )
        .with_detail("jobId", job_id.to_string())
        .with_detail("state", row.state.as_str()))
    })
    .await
}

/// `GET /export/{jobId}/artifact?expires=…&token=…`: streams the ZIP once per signed URL.
pub async fn artifact(
    State(app): State<AppState>,
    meta: RequestMeta,
    uri: Uri,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let transport = Transport::of(&app, &meta, &uri);
    pipeline::handle(&app, meta, Action::ExportArtifact, AuthMode::Basic, async |caller| {
        transport.refuse_plain_http()?;
        let (job_id, row) = caller_job(&app, &caller, &job_id).await?;
        let detail = |e: ApiError| e.with_detail("jobId", job_id.to_string());
        let secret = app.config.export.signing_secret.as_ref().ok_or_else(|| {
            detail(ApiError::new(ErrorCode::InvalidSignature, "download URLs are not enabled on this server"))
        })?;
        let params = download::QueryParams::parse(query.as_deref().unwrap_or(""));
        let now_ms = job::millis(app.config.clock.now());
        let verified =
            signed_url::verify(&app.db, secret, job_id, params.single("expires"), params.single("token"), now_ms)
                .await
                .map_err(|e| detail(download::redeem_error(e)))?;
        let key = match (row.state, row.artifact_key.as_deref()) {
            (JobState::Succeeded, Some(key)) => key.to_owned(),
            (JobState::Expired, _) => {
                return Err(detail(ApiError::new(ErrorCode::SignedUrlExpired, "the export artifact has expired")));
            }
            _ => return Err(detail(ApiError::internal(format!("job {job_id} has a signed URL but no artifact")))),
        };
        let blob = app.export.store.blobs.open(&key).await.map_err(|e| match e {
            StorageError::NotFound(_) => {
                detail(ApiError::new(ErrorCode::SignedUrlExpired, "the export artifact is no longer available"))
            }
            other => ApiError::internal(other),
        })?;
        let ((), tx) = pipeline::change(&app, &caller.facility_id, async |tx| {
            signed_url::consume(tx, &verified, &caller.actor_id(), now_ms)
                .await
                .map_err(|e| detail(download::redeem_error(e)))
        })
        .await?;

        let size = blob.size;
        let body = Body::from_stream(download::paced(blob.chunks, app.config.export.download_bytes_per_second));
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"phr-export-{job_id}.zip\"")) {
            headers.insert(header::CONTENT_DISPOSITION, disposition);
        }
        Ok(Reply::new(response)
            .in_transaction(tx)
            .detail("jobId", job_id.to_string())
            .detail("bytes", size)
            .detail("storageType", app.export.store.storage_type.as_str())
            .detail("bandwidthProfile", app.config.export.bandwidth_profile())
            .audit_if_incomplete(Action::ExportArtifact))
    })
    .await
}

/// 429 throttled for a submit over the facility's queue cap (`PHR_EXPORT_MAX_QUEUED_PER_FACILITY`), with
/// `Retry-After` and, for the audit row, the count and the cap.
fn queue_full(facility_id: &str, queued: i64, max: u32) -> ApiError {
    ApiError::new(
        ErrorCode::Throttled,
        format!(
            "facility {facility_id} already has {queued} export jobs waiting; at most {max} may wait at once \
             (retry when one has started, or cancel one)"
        ),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(QUEUE_FULL_RETRY_SECONDS))
    .with_detail("queuedJobs", queued)
    .with_detail("maxQueuedPerFacility", max)
}

/// A job id that is not a UUID is 400 invalidJobId.
fn parse_job_id(raw: &str) -> Result<Uuid, NotAJobId> {
    Uuid::parse_str(raw.trim()).map_err(|_| NotAJobId(raw.to_owned()))
}

/// The job, if it exists (404 jobNotFound) and belongs to the caller's facility (403 forbiddenFacility).
async fn caller_job(app: &AppState, caller: &Caller, raw_id: &str) -> Result<(Uuid, JobRow), ApiError> {
    let job_id = parse_job_id(raw_id)?;
    let row = job::find(&app.db, job_id).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::JobNotFound, format!("no export job {job_id}"))
            .with_detail("jobId", job_id.to_string())
    })?;
    caller.require_facility(&row.facility_id).map_err(|e| e.with_detail("jobId", job_id.to_string()))?;
    Ok((job_id, row))
}

/// Every requested patient must exist in the caller's facility; otherwise 404 patientNotFound naming them.
async fn require_patients(app: &AppState, facility_id: &str, patient_ids: &[String]) -> Result<(), ApiError> {
    let mut missing = Vec::new();
    for batch in patient_ids.chunks(EXISTENCE_BATCH) {
        let placeholders: Vec<String> = (0..batch.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT patient_id FROM patient WHERE facility_id = $1 AND patient_id IN ({})",
            placeholders.join(", ")
        );
        let found: Vec<String> = with_pool!(&app.db, |pool| {
            let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.as_str())).bind(facility_id);
            for id in batch {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })?;
        let found: std::collections::HashSet<String> = found.into_iter().collect();
        missing.extend(batch.iter().filter(|id| !found.contains(*id)).cloned());
    }
    match missing.first() {
        None => Ok(()),
        Some(first) => {
            let shown: Vec<&String> = missing.iter().take(10).collect();
            Err(ApiError::new(
                ErrorCode::PatientNotFound,
                format!("{} requested patient(s) do not exist in the facility: {}", missing.len(), json!(shown)),
            )
            .with_patient(first.clone())
            .with_detail("missingPatientCount", missing.len()))
        }
    }
}
