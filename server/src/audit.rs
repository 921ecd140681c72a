//! The tamper-evident audit trail in `d_audit_event`.
//!
//! Every PHR call leaves exactly one row, success or failure, and the weekly connectivity run proves the API
//! works by counting those rows (joined on `trace_id`). Rows form a hash chain (PHR_API.md §5):
//! `event_hash = sha256hex(previous_hash || payload_hash || epoch_millis(event_time) || actor_id)`, so a changed,
//! removed or reordered row breaks every hash after it, and [`AuditLog::verify`] names the first broken link.
//!
//! Appends are serialised so the chain never forks: an in-process mutex keeps concurrent requests from
//! queueing on database connections, and on PostgreSQL a transaction-scoped advisory lock extends the same
//! guarantee to several server processes. The lock covers one read of the chain head and one insert, nothing
//! more. The table itself refuses UPDATE and DELETE (a trigger, see the migrations).

use std::borrow::Cow;

use chrono::{DateTime, SubsecRound, Utc};
use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::Row;
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::db::Db;

/// Key of the PostgreSQL advisory lock that serialises chain appends across processes.
const CHAIN_LOCK_KEY: i64 = 0x5048_525f_4155_4454; // "PHR_AUDT"

/// Every audit action the server writes. Names are the spec's and existing audit SQL depends on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    AccessKeyUpsert,
    AccessKeyFetch,
    AccessKeyFetchByPatient,
    LabtestAbnormalText,
    AllergyText,
    DiseaseText,
    LabtestText,
    MedicationText,
    LayerIdTokenIssue,
    LayerIdCertMissing,
    ImageStream,
    ImageStreamThrottled,
    ImageStreamFailed,
    ContainerFetch,
    ServerInfo,
    ExportRequest,
    ExportStatus,
    ExportCancel,
    ExportArtifact,
    SignedUrlIssued,
    SignedUrlNullFallback,
    SignedUrlIssueFailed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessKeyUpsert => "PHR_ACCESS_KEY_UPSERT",
            Self::AccessKeyFetch => "PHR_ACCESS_KEY_FETCH",
            Self::AccessKeyFetchByPatient => "PHR_ACCESS_KEY_FETCH_BY_PATIENT",
            Self::LabtestAbnormalText => "PHR_LABTEST_ABNORMAL_TEXT",
            Self::AllergyText => "PHR_ALLERGY_TEXT",
            Self::DiseaseText => "PHR_DISEASE_TEXT",
            Self::LabtestText => "PHR_LABTEST_TEXT",
            Self::MedicationText => "PHR_MEDICATION_TEXT",
            Self::LayerIdTokenIssue => "PHR_LAYER_ID_TOKEN_ISSUE",
            Self::LayerIdCertMissing => "PHR_LAYER_ID_CERT_MISSING",
            Self::ImageStream => "PHR_IMAGE_STREAM",
            Self::ImageStreamThrottled => "PHR_IMAGE_STREAM_THROTTLED",
            Self::ImageStreamFailed => "PHR_IMAGE_STREAM_FAILED",
            Self::ContainerFetch => "PHR_CONTAINER_FETCH",
            Self::ServerInfo => "SERVER_INFO_FETCH",
            Self::ExportRequest => "PHR_EXPORT_REQUEST",
            Self::ExportStatus => "PHR_EXPORT_STATUS",
            Self::ExportCancel => "PHR_EXPORT_CANCEL",
            Self::ExportArtifact => "PHR_EXPORT_ARTIFACT",
            Self::SignedUrlIssued => "PHR_SIGNED_URL_ISSUED",
            Self::SignedUrlNullFallback => "PHR_SIGNED_URL_NULL_FALLBACK",
            Self::SignedUrlIssueFailed => "PHR_SIGNED_URL_ISSUE_FAILED",
        }
    }
}

/// Whether the audited call succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }
}

/// One row to append. Column names follow `d_audit_event`.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// `facilityId:userId` of the authenticated caller (or the certificate subject when Basic does not apply).
    pub actor_id: Option<String>,
    pub actor_display_name: Option<String>,
    pub actor_role: Option<String>,
    pub action: Action,
    /// The request path, so a row says which resource was touched.
    pub resource: Option<String>,
    pub patient_id: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// The details JSON; never a full secret.
    pub payload: Map<String, Value>,
    pub run_id: Option<String>,
    pub outcome: Outcome,
}

/// Why an audit row could not be written or read. Callers fail closed on it.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The first link of the chain that does not hold, as `audit verify` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub id: i64,
    pub problem: String,
}

/// The result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub rows_checked: u64,
    pub first_broken: Option<BrokenLink>,
}

/// Appends to and verifies the audit chain.
#[derive(Debug)]
pub struct AuditLog {
    db: Db,
    clock: Clock,
    /// Serialises appends inside this process (see the module docs).
    append_lock: Mutex<()>,
}

impl AuditLog {
    pub fn new(db: Db, clock: Clock) -> Self {
        Self { db, clock, append_lock: Mutex::new(()) }
    }

    /// Appends one row and returns its id. The row is committed when this returns `Ok`.
    pub async fn append(&self, event: AuditEvent) -> Result<i64, AuditError> {
        let payload = Value::Object(event.payload.clone()).to_string();
        let payload_hash = sha256_hex(payload.as_bytes());
        let actor_id = event.actor_id.as_deref().map(|s| column_text(s, 128));

        let _serialised = self.append_lock.lock().await;
        // Millisecond precision, so the stored time re-hashes to the same value on both backends.
        let event_time = self.clock.now().trunc_subsecs(3);
        let id = with_pool!(&self.db, |pool| {
            // SQLite: take the write lock up front; a deferred read-then-write transaction fails with
            // SQLITE_BUSY_SNAPSHOT (not retried by busy_timeout) when another connection writes in between.
            let begin = if matches!(self.db, Db::Sqlite(_)) { "BEGIN IMMEDIATE" } else { "BEGIN" };
            let mut tx = pool.begin_with(begin).await?;
            if matches!(self.db, Db::Postgres(_)) {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHAIN_LOCK_KEY).execute(&mut *tx).await?;
            }
            let previous_hash: String =
                sqlx::query_scalar("SELECT event_hash FROM d_audit_event ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or_default();
            let event_hash = chain_hash(&previous_hash, &payload_hash, event_time, actor_id.as_deref());
            let id: i64 = sqlx::query_scalar(INSERT_SQL)
                .bind(event_time)
                .bind(actor_id.as_deref())
                .bind(event.actor_display_name.as_deref().map(|s| column_text(s, 255)))
                .bind(event.actor_role.as_deref().map(|s| column_text(s, 64)))
                .bind(event.action.as_str())
                .bind(event.resource.as_deref().map(|s| column_text(s, 512)))
                .bind(event.patient_id.as_deref().map(|s| column_text(s, 64)))
                .bind(event.request_id.as_deref().map(|s| column_text(s, 128)))
                .bind(event.trace_id.as_deref().map(|s| column_text(s, 256)))
                .bind(event.ip_address.as_deref().map(|s| column_text(s, 64)))
                .bind(event.user_agent.as_deref().map(|s| column_text(s, 512)))
                .bind(&payload_hash)
                .bind(&previous_hash)
                .bind(&event_hash)
                .bind(&payload)
                .bind(event.run_id.as_deref().map(|s| column_text(s, 128)))
                .bind(event.outcome.as_str())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<i64, sqlx::Error>(id)
        })?;
        Ok(id)
    }

    /// Walks the chain in id order and reports the first row whose hashes do not hold.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        let mut expected_previous = String::new();
        let mut rows_checked = 0u64;
        let first_broken = with_pool!(&self.db, |pool| {
            let mut rows = sqlx::query(
                "SELECT id, event_time, actor_id, payload, payload_hash, previous_hash, event_hash \
                 FROM d_audit_event ORDER BY id",
            )
            .fetch(pool);
            let mut broken = None;
            while let Some(row) = rows.try_next().await? {
                rows_checked += 1;
                let id: i64 = row.try_get("id")?;
                let event_time: DateTime<Utc> = row.try_get("event_time")?;
                let actor_id: Option<String> = row.try_get("actor_id")?;
                let payload: Option<String> = row.try_get("payload")?;
                let payload_hash: String = row.try_get("payload_hash")?;
                let previous_hash: String = row.try_get::<Option<String>, _>("previous_hash")?.unwrap_or_default();
                let event_hash: String = row.try_get("event_hash")?;
                let problem = if sha256_hex(payload.unwrap_or_default().as_bytes()) != payload_hash {
                    Some("payload does not match payload_hash".to_owned())
                } else if previous_hash != expected_previous {
                    Some("previous_hash does not match the event_hash of the row before".to_owned())
                } else if chain_hash(&previous_hash, &payload_hash, event_time, actor_id.as_deref()) != event_hash {
                    Some("event_hash does not match the row's contents".to_owned())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    broken = Some(BrokenLink { id, problem });
                    break;
                }
                expected_previous = event_hash;
            }
            Ok::<_, sqlx::Error>(broken)
        })?;
        Ok(VerifyReport { rows_checked, first_broken })
    }
}

const INSERT_SQL: &str = "INSERT INTO d_audit_event (event_time, actor_id, actor_display_name, actor_role, action, \
     resource, patient_id, request_id, trace_id, ip_address, user_agent, payload_hash, previous_hash, event_hash, \
     payload, run_id, outcome) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id";

/// `sha256hex(previous_hash || payload_hash || epoch_millis(event_time) || actor_id)`.
pub fn chain_hash(
    previous_hash: &str,
    payload_hash: &str,
    event_time: DateTime<Utc>,
    actor_id: Option<&str>,
) -> String {
    let material = format!("{previous_hash}{payload_hash}{}{}", event_time.timestamp_millis(), actor_id.unwrap_or(""));
    sha256_hex(material.as_bytes())
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// Makes a value fit its column: control characters (PostgreSQL refuses NUL in text; a path parameter can
/// carry one) are written as `\u{..}` escapes, then the value is cut to the column's width on a character
/// boundary, so hostile input never fails the insert (which would fail the call closed).
fn column_text(value: &str, max_chars: usize) -> Cow<'_, str> {
    let value = if value.chars().any(char::is_control) {
        let mut escaped = String::with_capacity(value.len() + 8);
        for c in value.chars() {
            if c.is_control() {
                escaped.extend(c.escape_unicode());
            } else {
                escaped.push(c);
            }
        }
        Cow::Owned(escaped)
    } else {
        Cow::Borrowed(value)
    };
    match value.char_indices().nth(max_chars) {
        Some((byte_index, _)) => match value {
            Cow::Borrowed(v) => Cow::Borrowed(&v[..byte_index]),
            Cow::Owned(v) => Cow::Owned(v[..byte_index].to_owned()),
        },
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_hash_is_the_spec_formula() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let expected = sha256_hex(b"prevpayload1700000000123F001:ops");
        assert_eq!(chain_hash("prev", "payload", at, Some("F001:ops")), expected);
        assert_eq!(chain_hash("", "p", at, None), sha256_hex(b"p1700000000123"));
    }

    #[test]
    fn column_text_respects_character_boundaries_and_escapes_control_characters() {
        assert_eq!(column_text("ありがとう", 2), "あり");
        assert_eq!(column_text("abc", 10), "abc");
        assert_eq!(column_text("P\0x\n", 20), "P\\u{0}x\\u{a}");
    }
}
