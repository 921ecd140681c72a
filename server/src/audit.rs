//! The tamper-evident audit trail in `d_audit_event`.
//!
//! Every PHR call leaves exactly one row, success or failure, and the weekly connectivity run proves the API
//! works by counting those rows (joined on `trace_id`). Rows form hash chains (PHR_API.md §5): each row's
//! `event_hash` seals every stored column together with the previous row's hash ([`seal`], hash version 2;
//! rows written before it keep verifying under version 1), so a changed, removed or reordered row breaks the
//! chain, and [`AuditLog::verify`] names the first row and column that do not hold ([`verify`]).
//!
//! An authenticated caller's rows join its facility's chain, all others `main` ([`chains`]). Appends to a
//! chain are serialised so it never forks: an in-process mutex keeps concurrent requests from queueing on
//! database connections, and on PostgreSQL a transaction-scoped advisory lock per chain extends the same
//! guarantee to several server processes ([`tx`]), while different chains commit side by side. Plain
//! appends are group-committed by a writer task (many calls' rows, one transaction, one flush); a data
//! change and its rows share a transaction of their own, so one never commits without the other. The table itself refuses UPDATE and DELETE (a trigger, see the
//! migrations).

mod chains;
pub mod checkpoint;
pub use auditchain::seal;
pub mod tx;
pub mod verify;
mod writer;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use chains::MAIN_CHAIN;
pub use seal::{StoredRow, column_text, sha256_hex};
pub use tx::AuditTx;
pub use verify::{BrokenLink, ChainHead, VerifyReport};
use writer::GroupWriter;

use crate::clock::Clock;
use crate::config::audit::ChainPolicy;
use crate::db::Db;

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
    /// An answer on a PHR path that no endpoint gave: the router's 404/405, an extractor's rejection, a limit.
    RequestRejected,
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
            Self::RequestRejected => "PHR_REQUEST_REJECTED",
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
    /// The authenticated caller's facility, which picks the row's chain; `None` when nobody authenticated
    /// (a facility the caller only claims never picks a chain).
    pub facility_id: Option<String>,
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
    /// The group-commit writer task is gone (the runtime is shutting down).
    #[error("the audit writer has stopped")]
    WriterStopped,
}

/// Appends to and verifies the audit chain.
#[derive(Debug)]
pub struct AuditLog {
    /// Where `d_audit_event` lives.
    db: Db,
    /// Stamps each row's `event_time`.
    clock: Clock,
    /// Which chain a row joins, and each lane's lock and group-commit writer.
    chains: chains::Chains,
    /// Told after every commit how many rows it appended to which chain (wakes the checkpoint task).
    signal: Arc<checkpoint::AppendSignal>,
}

impl AuditLog {
    /// An audit log with a chain per facility (the default policy).
    pub fn new(db: Db, clock: Clock) -> Self {
        Self::with_chains(db, clock, ChainPolicy::default())
    }

    /// An audit log whose rows join chains by `policy`.
    pub fn with_chains(db: Db, clock: Clock, policy: ChainPolicy) -> Self {
        let lane_per_chain = matches!(db, Db::Postgres(_));
        Self { db, clock, chains: chains::Chains::new(policy, lane_per_chain), signal: Arc::default() }
    }

    /// What the checkpoint task listens to.
    pub fn append_signal(&self) -> Arc<checkpoint::AppendSignal> {
        self.signal.clone()
    }

    /// Begins a transaction on the chain of the caller authenticated for `facility`: the data change of a
    /// call and its rows then commit together.
    pub async fn begin(&self, facility: Option<&str>) -> Result<AuditTx, AuditError> {
        let chain = self.chains.chain_of(facility);
        let lock = self.chains.lane(&chain).lock.clone();
        Ok(AuditTx::begin(&self.db, lock, chain, self.clock.clone(), self.signal.clone()).await?)
    }

    /// Appends one row on its own and returns its id. The row is committed when this returns `Ok`.
    pub async fn append(&self, event: AuditEvent) -> Result<i64, AuditError> {
        let ids = self.append_all(vec![event]).await?;
        ids.first().copied().ok_or(AuditError::WriterStopped)
    }

    /// Appends a call's rows, in order and all or none, through its chain's group-commit writer; returns their
    /// ids once committed (together with whatever other calls were waiting). A call's rows stay together:
    /// they join the chain of the first row's facility.
    pub async fn append_all(&self, events: Vec<AuditEvent>) -> Result<Vec<i64>, AuditError> {
        let Some(first) = events.first() else { return Ok(Vec::new()) };
        let chain = self.chains.chain_of(first.facility_id.as_deref());
        let lane = self.chains.lane(&chain);
        let writer = lane.writer.get_or_init(|| {
            GroupWriter::start(self.db.clone(), self.clock.clone(), lane.lock.clone(), self.signal.clone())
        });
        writer.append(chain, events).await
    }

    /// Walks every chain in id order and reports the first row, and column, that does not hold.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify::verify(&self.db, auditchain::watch::CheckpointWatch::default()).await
    }

    /// [`AuditLog::verify`], and holds the walk to signed checkpoints (already signature-checked).
    pub async fn verify_against(&self, watch: auditchain::watch::CheckpointWatch) -> Result<VerifyReport, AuditError> {
        verify::verify(&self.db, watch).await
    }
}

/// The row the writer inserts for `event`: every column as stored (fitted to its width), the payload with
/// its copies of `action` and `status`, sealed with the current hash version.
pub(crate) fn sealed_row(
    event: &AuditEvent,
    id: i64,
    chain_id: &str,
    previous_hash: String,
    event_time: DateTime<Utc>,
) -> StoredRow {
    let text = |value: &Option<String>, width: usize| value.as_deref().map(|v| column_text(v, width).into_owned());
    let mut payload = event.payload.clone();
    payload.insert("action".into(), event.action.as_str().into());
    payload.insert("status".into(), event.outcome.as_str().into());
    let payload = Value::Object(payload).to_string();
    let mut row = StoredRow {
        id,
        chain_id: chain_id.to_owned(),
        hash_version: seal::CURRENT_VERSION,
        event_time,
        actor_id: text(&event.actor_id, 128),
        actor_display_name: text(&event.actor_display_name, 255),
        actor_role: text(&event.actor_role, 64),
        action: event.action.as_str().to_owned(),
        outcome: event.outcome.as_str().to_owned(),
        resource: text(&event.resource, 512),
        patient_id: text(&event.patient_id, 64),
        request_id: text(&event.request_id, 128),
        trace_id: text(&event.trace_id, 256),
        ip_address: text(&event.ip_address, 64),
        user_agent: text(&event.user_agent, 512),
        run_id: text(&event.run_id, 128),
        payload_hash: sha256_hex(payload.as_bytes()),
        payload: Some(payload),
        previous_hash: Some(previous_hash),
        event_hash: String::new(),
    };
    row.event_hash = seal::v2(&row);
    row
}
