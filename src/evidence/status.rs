//! `status.json` and `audit/counts.json`: the machine-readable record of a run.
//!
//! Reports, HAR, JUnit, and later commands (diff, archive) read these types back instead of re-parsing
//! Markdown, so they carry a `schema_version` and only plain data. Probe entries are H2's `ProbeRecord`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::evidence::ProbeRecord;

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
    pub preflight: Vec<crate::evidence::CheckResult>,
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

/// A representative run (one Ready probe, one failed one with hostile text, audit counts) used by
/// `connrun templates check` to render every template before a real run needs them.
pub fn sample_status() -> RunStatus {
    use crate::evidence::{Outcome, Timings};
    let at = DateTime::<Utc>::UNIX_EPOCH;
    let probe = |id: &str, ready: bool, outcome: Outcome, http_status: Option<u16>| ProbeRecord {
        id: id.to_owned(),
        name: format!("{id} <name> | `x`"),
        phase: "C".to_owned(),
        method: "GET".to_owned(),
        url: format!("https://127.0.0.1:8443/openDolphin/resources/20/adm/phr/{id}"),
        started_at: at,
        outcome,
        http_status,
        ready,
        check_failures: if ready { Vec::new() } else { vec!["body does not contain `x|y`\n<script>".to_owned()] },
        timings: Timings { dns_ms: 0.1, connect_ms: 0.4, tls_ms: 3.0, ttfb_ms: 2.0, total_ms: 6.0 },
        tls: None,
        server_chain: Vec::new(),
        request_headers: Vec::new(),
        response_headers: Vec::new(),
        request_body_bytes: 0,
        response_body_bytes: 12,
        response_body_sha256: None,
        response_body_file: Some(format!("httpdump/{id}/response.body")),
        audit_expected: vec!["PHR_LAYER_ID_TOKEN_ISSUE".to_owned()],
        attempts: None,
    };
    RunStatus {
        schema_version: STATUS_SCHEMA_VERSION,
        tool_version: crate::evidence::TOOL_VERSION.to_owned(),
        run_id: "20251119TorcaPHRSeqZ1".to_owned(),
        template: "phr-seq".to_owned(),
        template_description: "sample".to_owned(),
        suite: "orca-connectivity".to_owned(),
        target: "sample".to_owned(),
        base_url: "https://127.0.0.1:8443".to_owned(),
        started_at: at,
        finished_at: at,
        all_ready: false,
        audit_ok: false,
        audit_checked: true,
        preflight: Vec::new(),
        phases: vec![PhaseStatus { id: "C".to_owned(), name: "Layer ID".to_owned(), started_at: at, finished_at: at }],
        serverinfo: Some(probe("serverinfo", true, Outcome::Http, Some(200))),
        serverinfo_body: Some("server".to_owned()),
        probe_memos: BTreeMap::from([("PHR-06".to_owned(), "memo | with pipe".to_owned())]),
        probes: vec![
            probe("PHR-06", true, Outcome::Http, Some(200)),
            probe("PHR-07", false, Outcome::TlsFailure { reason: "unknown CA".to_owned() }, None),
        ],
        audit: vec![AuditCount {
            phase: "C".to_owned(),
            action: "PHR_LAYER_ID_TOKEN_ISSUE".to_owned(),
            outcome: Some("success".to_owned()),
            before: Some(0),
            after: Some(1),
            delta: Some(1),
            expected: 2,
        }],
        audit_errors: vec!["sample error".to_owned()],
    }
}
