//! `status.json` and `audit/counts.json`: the machine-readable record of a run.
//!
//! Reports, HAR, JUnit, and later commands (diff, archive) read these types back instead of re-parsing
//! Markdown, so they carry a `schema_version` and only plain data. Probe entries are H2's `ProbeRecord`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::probe::ProbeRecord;

/// Version of the `status.json` layout; bump on incompatible changes.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// Everything a run found out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus {
    /// Layout version of this document.
    pub schema_version: u32,
    /// connrun version that wrote it.
    pub tool_version: String,
    /// The RUN_ID.
    pub run_id: String,
    /// Template name.
    pub template: String,
    /// One-line description of the template, for the README.
    pub template_description: String,
    /// Suite folder under `artifacts/`.
    pub suite: String,
    /// Target name.
    pub target: String,
    /// Target base URL.
    pub base_url: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the last probe and query finished.
    pub finished_at: DateTime<Utc>,
    /// Every probe was Ready.
    pub all_ready: bool,
    /// Every expected audit action appeared as often as expected (true when no audit database is configured).
    pub audit_ok: bool,
    /// Whether an audit database was queried at all.
    pub audit_checked: bool,
    /// Phases in order, with their time windows.
    pub phases: Vec<PhaseStatus>,
    /// Preflight checks run before the first phase (identity, certificates, CA, TCP/TLS, audit DB, readyz).
    #[serde(default)]
    pub preflight: Vec<crate::preflight::CheckResult>,
    /// The server-info probe, if the template has one.
    pub serverinfo: Option<ProbeRecord>,
    /// The first bytes of the server-info body (redacted), e.g. `server`, for the summaries.
    #[serde(default)]
    pub serverinfo_body: Option<String>,
    /// The template's note for each probe id (what the probe shows), for the memo columns.
    #[serde(default)]
    pub probe_memos: std::collections::BTreeMap<String, String>,
    /// Every probe, in template order.
    pub probes: Vec<ProbeRecord>,
    /// Audit counts per phase, action and outcome.
    pub audit: Vec<AuditCount>,
    /// Audit problems that are not counts: connection failures, query errors.
    pub audit_errors: Vec<String>,
}

impl RunStatus {
    /// Exit-code view: everything as expected.
    pub fn is_ok(&self) -> bool {
        self.all_ready && self.audit_ok
    }

    /// Probes of one phase, in template order.
    pub fn probes_of<'a>(&'a self, phase: &'a str) -> impl Iterator<Item = &'a ProbeRecord> + 'a {
        self.probes.iter().filter(move |p| p.phase == phase)
    }
}

/// One phase's identity and time window (the audit queries' `{{since}}`/`{{until}}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseStatus {
    /// Phase id, e.g. `C`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Before the first audit query of the phase.
    pub started_at: DateTime<Utc>,
    /// After the last audit query of the phase.
    pub finished_at: DateTime<Utc>,
}

/// Count of audit rows for one action (and outcome, when the query reports it) around one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCount {
    /// Phase id.
    pub phase: String,
    /// Audit action, e.g. `PHR_IMAGE_STREAM`.
    pub action: String,
    /// `success` / `failed` when the query groups by outcome.
    pub outcome: Option<String>,
    /// Rows before the phase (None when the query failed).
    pub before: Option<u64>,
    /// Rows after the phase (None when the query failed).
    pub after: Option<u64>,
    /// after - before, when both are known.
    pub delta: Option<i64>,
    /// How many successful rows the phase's probes should have produced.
    pub expected: u64,
}

impl AuditCount {
    /// The phase expected rows here and did not get (at least) that many.
    pub fn is_missing(&self) -> bool {
        let counts_success = self.outcome.as_deref().is_none_or(|o| o == "success");
        self.expected > 0 && counts_success && self.delta.is_none_or(|d| d < self.expected as i64)
    }
}

/// `audit/counts.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditCounts {
    /// Layout version.
    pub schema_version: u32,
    /// The RUN_ID.
    pub run_id: String,
    /// Every count.
    pub counts: Vec<AuditCount>,
}
