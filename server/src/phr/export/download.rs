//! The download side of Phase F: minting the single-use signed URL that `GET /status/{jobId}` hands out for a
//! finished job, the errors of redeeming one, and the paced stream `GET /export/{jobId}/artifact` sends.
//! Split from `phr/export.rs`, which holds the handlers; the URL's signature and its one-time use live in
//! [`crate::export::signed_url`].

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::audit::{Action, AuditTx};
use crate::config::export::normalise_public_base;
use crate::error::{ApiError, ErrorCode};
use crate::export::job::{self, JobRow};
use crate::export::signed_url::{self, IssueRequest, RedeemError};
use crate::phr::pipeline;
use crate::phr::request::Caller;
use crate::state::AppState;
use crate::storage::StorageError;

/// Who issues the URLs, for `PHR_SIGNED_URL_ISSUED.signedUrlIssuer`.
const SIGNED_URL_ISSUER: &str = "phr-server";

/// The API error for a signed URL that cannot be redeemed.
pub(super) fn redeem_error(error: RedeemError) -> ApiError {
    match error {
        RedeemError::InvalidSignature => ApiError::new(ErrorCode::InvalidSignature, error.to_string()),
        RedeemError::Expired => ApiError::new(ErrorCode::SignedUrlExpired, error.to_string()),
        RedeemError::Used => ApiError::new(ErrorCode::SignedUrlUsed, error.to_string()),
        RedeemError::Database(cause) => ApiError::from(cause),
    }
}

/// What minting a download URL produced for the status call.
pub(super) struct Minted {
    /// The URL, or `None` when no signing secret is configured.
    pub(super) url: Option<String>,
    /// The extra audit row: `PHR_SIGNED_URL_ISSUED` or `PHR_SIGNED_URL_NULL_FALLBACK`, with its details.
    pub(super) action: Action,
    pub(super) details: Map<String, Value>,
    /// The uncommitted issue row; it commits with the status call's rows.
    pub(super) transaction: Option<AuditTx>,
}

/// Mints a download URL. No secret: no URL and the NULL-fallback row. A URL that would not be https, or a
/// failed insert: the call fails and is audited as `PHR_SIGNED_URL_ISSUE_FAILED`.
pub(super) async fn mint(
    app: &AppState,
    caller: &Caller,
    host: Option<&str>,
    job: &JobRow,
) -> Result<Minted, ApiError> {
    let config = &app.config.export;
    let job_id = Uuid::parse_str(&job.job_id).map_err(ApiError::internal)?;
    let mut details = Map::new();
    details.insert("jobId".into(), job_id.to_string().into());
    details.insert("signedUrlIssuer".into(), SIGNED_URL_ISSUER.into());
    details.insert("storageType".into(), app.export.store.storage_type.as_str().into());
    details.insert("signedUrlTtlSeconds".into(), config.token_ttl.as_secs().into());
    details.insert("kmsKeyAlias".into(), config.storage.kms_key().map(str::to_owned).into());
    details.insert("bandwidthProfile".into(), config.bandwidth_profile().into());
    let issue_failed = |error: ApiError| {
        let mut error = error.with_audit_action(Action::SignedUrlIssueFailed);
        error.details.extend(details.clone());
        error
    };
    let Some(secret) = &config.signing_secret else {
        details.insert("reason".into(), "PHR_EXPORT_SIGNING_SECRET is not configured; downloadUrl omitted".into());
        return Ok(Minted { url: None, action: Action::SignedUrlNullFallback, details, transaction: None });
    };
    let public_base = match &config.public_base_url {
        Some(base) => normalise_public_base(base).map_err(|problem| {
            issue_failed(ApiError::new(ErrorCode::InsecureScheme, format!("PHR_PUBLIC_BASE_URL {problem}")))
        })?,
        None => {
            let host = host.and_then(valid_host).ok_or_else(|| {
                issue_failed(ApiError::new(
                    ErrorCode::InvalidParameter,
                    "the request has no usable Host to build the download URL (set PHR_PUBLIC_BASE_URL)",
                ))
            })?;
            format!("https://{host}")
        }
    };
    let request = IssueRequest {
        public_base: &public_base,
        job_id,
        facility_id: &job.facility_id,
        issued_to: &caller.actor_id(),
        now_ms: job::millis(app.config.clock.now()),
        ttl_seconds: i64::try_from(config.token_ttl.as_secs()).unwrap_or(i64::MAX),
    };
    let (issued, tx) = pipeline::change(app, &caller.facility_id, async |tx| {
        signed_url::issue(tx, secret, &request).await.map_err(|e| issue_failed(ApiError::from(e)))
    })
    .await?;
    details.insert("expires".into(), issued.expires.into());
    Ok(Minted { url: Some(issued.url), action: Action::SignedUrlIssued, details, transaction: Some(tx) })
}

/// A `Host` value usable in a URL: a valid authority without user info.
fn valid_host(host: &str) -> Option<&str> {
    let authority: axum::http::uri::Authority = host.parse().ok()?;
    (!authority.as_str().contains('@')).then_some(host)
}

/// Query parameters, percent-decoded; a repeated name counts as absent (ambiguous).
pub(super) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(super) fn parse(query: &str) -> Self {
        let decode =
            |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        Self(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(pair), String::new()),
                })
                .collect(),
        )
    }

    pub(super) fn single(&self, name: &str) -> Option<&str> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        }
    }
}

/// Paces a byte stream to at most `bytes_per_second` on average: each chunk is released no earlier than the
/// moment the bytes before and including it are due, so a fast store cannot exceed the bandwidth profile.
pub(super) fn paced(
    chunks: futures::stream::BoxStream<'static, Result<Bytes, StorageError>>,
    bytes_per_second: u64,
) -> impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static {
    let start = tokio::time::Instant::now();
    futures::stream::unfold((chunks, 0u64), move |(mut chunks, sent)| async move {
        let chunk = chunks.next().await?;
        let sent = sent + chunk.as_ref().map_or(0, |c| c.len() as u64);
        let due = start + due_after(sent, bytes_per_second);
        if due > tokio::time::Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        Some((chunk, (chunks, sent)))
    })
}

/// When, after the start of a download paced at `bytes_per_second`, the first `sent` bytes may have left.
fn due_after(sent: u64, bytes_per_second: u64) -> Duration {
    Duration::from_secs_f64(sent as f64 / bytes_per_second.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_releases_bytes_at_the_configured_rate() {
        assert_eq!(due_after(0, 50_000_000), Duration::ZERO);
        assert_eq!(due_after(50_000_000, 50_000_000), Duration::from_secs(1));
        assert_eq!(due_after(125_000_000, 50_000_000), Duration::from_millis(2500));
        assert_eq!(
            due_after(10, 0),
            Duration::from_secs(10),
            "a zero rate is treated as 1 B/s, never a division by zero"
        );
    }

    #[test]
    fn repeated_query_parameters_are_ambiguous() {
        let q = QueryParams::parse("expires=1&token=a&token=b");
        assert_eq!(q.single("expires"), Some("1"));
        assert_eq!(q.single("token"), None);
    }
}
