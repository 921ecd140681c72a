//! PHR-07 `GET /image/{patientId}`: the patient's newest image, streamed from storage.
//!
//! Images are the largest thing the API serves, so this endpoint is where the network team's limits live:
//! a per-image cap (`PHR_IMAGE_MAX_BYTES`, 413) and a per-client sliding-window burst budget
//! (`PHR_IMAGE_BURST`, 429 with `Retry-After`, see [`crate::burst`]). Both limits are advertised on every
//! response, errors included, in `X-Image-Max-Size` and `X-Image-Burst-Limit`, so a client can pace itself.
//! The body is forwarded chunk by chunk from the blob store with `Content-Length` set up front; a `Range`
//! header is ignored (the original had no range support) and a missing image is an empty 404, as before.
//! Throttled and oversize calls are audited as `PHR_IMAGE_STREAM_THROTTLED` and `PHR_IMAGE_STREAM_FAILED`; so is
//! a stream that breaks off after its success row (storage error or client gone, see [`super::delivery`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::pipeline;
use super::reply::Reply;
use super::request::{AuthMode, Caller, RequestMeta};
use crate::audit::Action;
use crate::clinical;
use crate::config::ImagePolicy;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Advertises `PHR_IMAGE_MAX_BYTES`, in bytes.
pub const MAX_SIZE_HEADER: HeaderName = HeaderName::from_static("x-image-max-size");
/// Advertises the burst budget as `<bytes>;w=<window seconds>` (the IETF RateLimit-Policy notation).
pub const BURST_LIMIT_HEADER: HeaderName = HeaderName::from_static("x-image-burst-limit");

/// The newest image of one patient of one facility (served by `phr_image_patient_idx`).
const NEWEST_IMAGE_SQL: &str = "SELECT object_key, size_bytes, sha256 FROM phr_image \
     WHERE facility_id = $1 AND patient_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1";

#[derive(Debug, sqlx::FromRow)]
struct ImageRow {
    /// BlobStore key of the bytes.
    object_key: String,
    /// Size recorded at upload; checked against the cap before the blob is opened.
    size_bytes: i64,
    /// SHA-256 recorded at upload, for the audit row.
    sha256: String,
}

/// `GET /image/{patientId}`.
pub async fn stream(State(app): State<AppState>, meta: RequestMeta, Path(patient_id): Path<String>) -> Response {
    let policy = policy_headers(&app.config.image);
    let mut response = pipeline::handle(&app, meta, Action::ImageStream, AuthMode::Basic, async |caller| {
        newest_image(&app, caller, patient_id).await
    })
    .await;
    response.headers_mut().extend(policy);
    response
}

async fn newest_image(app: &AppState, caller: Caller, patient_id: String) -> Result<Reply, ApiError> {
    let max_bytes = app.config.image.max_bytes;
    if !clinical::plausible_id(&patient_id) {
        return Err(no_image(patient_id));
    }
    let row = with_pool!(&app.db, |pool| {
        sqlx::query_as::<_, ImageRow>(NEWEST_IMAGE_SQL)
            .bind(&caller.facility_id)
            .bind(&patient_id)
            .fetch_optional(pool)
            .await
    })?;
    let Some(row) = row else {
        return Err(no_image(patient_id));
    };
    let recorded = u64::try_from(row.size_bytes).unwrap_or(u64::MAX);
    if recorded > max_bytes {
        return Err(too_large(&patient_id, recorded, max_bytes));
    }
    let blob = app.images.open(&row.object_key).await.map_err(|e| {
        ApiError::internal(format_args!("image {} of {patient_id}: {e}", row.object_key)).with_patient(&patient_id)
    })?;
    // The stored object, not the row, is what would be sent; it must respect the cap too.
    if blob.size > max_bytes {
        return Err(too_large(&patient_id, blob.size, max_bytes));
    }

    let decision = app.image_budget.try_consume(&burst_client(&caller), blob.size, app.config.clock.now()).await?;
    app.metrics.throttle_decision(decision.is_ok());
    if let Err(wait) = decision {
        let seconds = wait.as_secs();
        return Err(ApiError::new(
            ErrorCode::Throttled,
            format!("image burst budget exceeded; retry after {seconds} s"),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
        .with_audit_action(Action::ImageStreamThrottled)
        .with_patient(&patient_id)
        .with_detail("sizeBytes", blob.size)
        .with_detail("retryAfterSeconds", seconds));
    }

    let mut response = Response::new(Body::from_stream(blob.chunks));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, max-age=0"));
    Ok(Reply::new(response)
        .patient(patient_id)
        .detail("sizeBytes", blob.size)
        .detail("sha256", row.sha256)
        .audit_if_incomplete(Action::ImageStreamFailed))
}

/// PHR-07's 404: an empty body, as the original answered.
fn no_image(patient_id: String) -> ApiError {
    ApiError::new(ErrorCode::PatientNotFound, "no image is stored for this patient")
        .with_patient(patient_id)
        .with_empty_body()
}

fn too_large(patient_id: &str, size: u64, max_bytes: u64) -> ApiError {
    ApiError::new(ErrorCode::ImageTooLarge, format!("the image is {size} bytes; the limit is {max_bytes}"))
        .with_audit_action(Action::ImageStreamFailed)
        .with_patient(patient_id)
        .with_detail("sizeBytes", size)
        .with_detail("maxBytes", max_bytes)
}

/// The burst budget is per client certificate and facility (PHR_API.md PHR-07).
fn burst_client(caller: &Caller) -> String {
    let certificate = caller.client_cert.as_ref().map_or("no-certificate", |c| c.sha256.as_str());
    format!("{certificate}|{}", caller.facility_id.to_ascii_uppercase())
}

/// `X-Image-Max-Size` and `X-Image-Burst-Limit` for every PHR-07 response.
pub fn policy_headers(policy: &ImagePolicy) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MAX_SIZE_HEADER, HeaderValue::from(policy.max_bytes));
    let burst = format!("{};w={}", policy.burst_bytes, policy.burst_window.as_secs());
    if let Ok(value) = HeaderValue::from_str(&burst) {
        headers.insert(BURST_LIMIT_HEADER, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn policy_headers_state_bytes_and_window_seconds() {
        let policy = ImagePolicy {
            max_bytes: 5 * 1024 * 1024,
            burst_bytes: 200 * 1024 * 1024,
            burst_window: Duration::from_secs(300),
        };

        let headers = policy_headers(&policy);

        assert_eq!(headers[MAX_SIZE_HEADER], "5242880");
        assert_eq!(headers[BURST_LIMIT_HEADER], "209715200;w=300");
    }
}
