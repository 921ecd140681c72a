//! Single-use signed download URLs for export artifacts (PHR_API.md Phase F).
//!
//! `downloadUrl` = `https://<public host><PHR base>/export/{jobId}/artifact?expires=<unix s>&token=<t>` with
//! `t = base64url-no-pad(HMAC-SHA256(secret, "path|facilityId|expires|nonce"))`. The nonce is random per issue
//! and stored server-side (`phr_export_signed_url`) together with the facility and expiry; the token is never
//! stored or logged, it is recomputed from the row when the URL comes back. Redeeming is two steps so the
//! handler can check the artifact before spending the URL: [`verify`] finds the issue whose HMAC matches
//! (constant-time) and checks expiry, then [`consume`] spends it with ONE conditional UPDATE (`… WHERE
//! consumed_at_ms IS NULL`): of any number of concurrent requests, exactly one sees `rows_affected = 1`.
//! Issuing and spending run in the calling request's transaction, which also holds its audit rows.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use uuid::Uuid;

use crate::config::export::SigningSecret;
use crate::db::Db;
use crate::dbtx::DbTx;
use crate::paths;

/// Random bytes of a nonce (stored base64url, 22 characters).
const NONCE_BYTES: usize = 16;

/// Why a URL could not be redeemed; each maps to one spec error.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// Missing, malformed, altered or foreign token: 403 invalidSignature.
    #[error("the download URL's signature is not valid")]
    InvalidSignature,
    /// Past `expires`: 410 signedUrlExpired.
    #[error("the download URL has expired")]
    Expired,
    /// Already downloaded once: 410 signedUrlUsed.
    #[error("the download URL has already been used")]
    Used,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// An issued URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedUrl {
    /// The absolute https URL (contains the token: never log it).
    pub url: String,
    /// Unix seconds.
    pub expires: i64,
}

/// A verified, not yet consumed, issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUrl {
    pub nonce: String,
}

/// The path every URL of `job_id` signs (and the route it is served on).
pub fn artifact_path(job_id: Uuid) -> String {
    paths::export_artifact(job_id)
}

fn signing_input(path: &str, facility_id: &str, expires: i64, nonce: &str) -> String {
    format!("{path}|{facility_id}|{expires}|{nonce}")
}

/// `base64url-no-pad(HMAC-SHA256(secret, "path|facilityId|expires|nonce"))`.
pub fn token(secret: &SigningSecret, path: &str, facility_id: &str, expires: i64, nonce: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, signing_input(path, facility_id, expires, nonce).as_bytes()))
}

/// What one URL is issued for.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// `https://host[:port]`, already checked to be https.
    pub public_base: &'a str,
    pub job_id: Uuid,
    /// The job's facility, bound into the signature.
    pub facility_id: &'a str,
    /// `facilityId:userId` of the caller, recorded with the issue.
    pub issued_to: &'a str,
    pub now_ms: i64,
    pub ttl_seconds: i64,
}

/// Issues a URL: stores a fresh nonce with its facility and expiry (in the issuing call's transaction, so the
/// issue exists only together with its audit row), and signs the URL.
pub async fn issue(
    tx: &mut DbTx,
    secret: &SigningSecret,
    request: &IssueRequest<'_>,
) -> Result<IssuedUrl, sqlx::Error> {
    let IssueRequest { public_base, job_id, facility_id, issued_to, now_ms, ttl_seconds } = *request;
    const SQL: &str = "INSERT INTO phr_export_signed_url (nonce, job_id, facility_id, expires_at, issued_at_ms, \
         issued_to) VALUES ($1, $2, $3, $4, $5, $6)";
    let mut bytes = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let nonce = URL_SAFE_NO_PAD.encode(bytes);
    let expires = now_ms.div_euclid(1000) + ttl_seconds;
    crate::with_tx!(tx, |conn| {
        sqlx::query(SQL)
            .bind(&nonce)
            .bind(job_id.to_string())
            .bind(facility_id)
            .bind(expires)
            .bind(now_ms)
            .bind(issued_to)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    let path = artifact_path(job_id);
    let token = token(secret, &path, facility_id, expires, &nonce);
    Ok(IssuedUrl { url: format!("{public_base}{path}?expires={expires}&token={token}"), expires })
}

#[derive(Debug, sqlx::FromRow)]
struct IssueRow {
    nonce: String,
    facility_id: String,
}

/// Finds the issue of `job_id` whose token matches and checks it has not expired. Does not consume it.
pub async fn verify(
    db: &Db,
    secret: &SigningSecret,
    job_id: Uuid,
    expires: Option<&str>,
    token: Option<&str>,
    now_ms: i64,
) -> Result<VerifiedUrl, RedeemError> {
    const SQL: &str = "SELECT nonce, facility_id FROM phr_export_signed_url WHERE job_id = $1 AND expires_at = $2";
    let expires: i64 = expires.and_then(|e| e.parse().ok()).ok_or(RedeemError::InvalidSignature)?;
    let presented = token.and_then(|t| URL_SAFE_NO_PAD.decode(t).ok()).ok_or(RedeemError::InvalidSignature)?;
    let candidates: Vec<IssueRow> = with_pool!(db, |pool| {
        sqlx::query_as::<_, IssueRow>(SQL).bind(job_id.to_string()).bind(expires).fetch_all(pool).await
    })?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose());
    let path = artifact_path(job_id);
    let issue = candidates
        .into_iter()
        .find(|row| {
            let input = signing_input(&path, &row.facility_id, expires, &row.nonce);
            hmac::verify(&key, input.as_bytes(), &presented).is_ok()
        })
        .ok_or(RedeemError::InvalidSignature)?;
    if now_ms.div_euclid(1000) > expires {
        return Err(RedeemError::Expired);
    }
    Ok(VerifiedUrl { nonce: issue.nonce })
}

/// Spends a verified URL: one statement, exactly one caller wins. It runs in the downloading call's
/// transaction, so a URL is spent only together with its audit row.
pub async fn consume(tx: &mut DbTx, url: &VerifiedUrl, consumed_by: &str, now_ms: i64) -> Result<(), RedeemError> {
    const SQL: &str = "UPDATE phr_export_signed_url SET consumed_at_ms = $2, consumed_by = $3 \
         WHERE nonce = $1 AND consumed_at_ms IS NULL";
    let done = crate::with_tx!(tx, |conn| sqlx::query(SQL)
        .bind(&url.nonce)
        .bind(now_ms)
        .bind(consumed_by)
        .execute(&mut *conn)
        .await
        .map(|done| done.rows_affected()))?;
    if done == 1 { Ok(()) } else { Err(RedeemError::Used) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_base64url_hmac_of_the_spec_string() {
        let secret = SigningSecret::new(b"k".repeat(32)).unwrap();
        let t = token(&secret, "/p", "F001", 1_700_000_300, "n1");
        let key = hmac::Key::new(hmac::HMAC_SHA256, &b"k".repeat(32));
        let expected = URL_SAFE_NO_PAD.encode(hmac::sign(&key, b"/p|F001|1700000300|n1"));
        assert_eq!(t, expected);
        assert!(!t.contains('=') && !t.contains('+') && !t.contains('/'));
        assert_ne!(t, token(&secret, "/p", "F002", 1_700_000_300, "n1"), "facility is signed");
    }
}
