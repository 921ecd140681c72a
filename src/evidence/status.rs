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

/// Everything a run found out. `P` is how the probes are held: in memory (the default, what readers get) or
/// streamed from the run's spool while `status.json` is written (`spool::SpooledProbes`), so the file has
/// one shape whichever way it was produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus<P = Vec<ProbeRecord>> {
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
    /// The audit trail was collected and every count is exactly as expected. False when nothing was
    /// collected (see [`RunStatus::audit_state`] for why): never read it as "audit OK" without the state.
    pub audit_ok: bool,
    /// Whether an audit database is configured for the target (it may still have failed).
    pub audit_checked: bool,
    /// Collected, not configured, or failed with the reason. Absent in runs written before it existed;
    /// read it through [`RunStatus::audit_state`], which derives it for those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_state: Option<AuditState>,
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
    pub probes: P,
    /// Audit counts per phase, action and outcome.
    pub audit: Vec<AuditCount>,
    /// Audit problems that are not counts: connection failures, query errors.
    pub audit_errors: Vec<String>,
    /// The audit chain verdict (`audit/chain.json` has the proof); absent in runs before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_chain: Option<crate::evidence::chain::ChainVerdict>,
}

impl<P> RunStatus<P> {
    /// The same status with its probes held another way; returns the probes it held.
    pub fn with_probes<Q>(self, probes: Q) -> (RunStatus<Q>, P) {
        let status = RunStatus {
            schema_version: self.schema_version,
            tool_version: self.tool_version,
            run_id: self.run_id,
            template: self.template,
            template_description: self.template_description,
            suite: self.suite,
            target: self.target,
            base_url: self.base_url,
            started_at: self.started_at,
            finished_at: self.finished_at,
            all_ready: self.all_ready,
            audit_ok: self.audit_ok,
            audit_checked: self.audit_checked,
            audit_state: self.audit_state,
            phases: self.phases,
            preflight: self.preflight,
            serverinfo: self.serverinfo,
            serverinfo_body: self.serverinfo_body,
            probe_memos: self.probe_memos,
            probes,
            audit: self.audit,
            audit_errors: self.audit_errors,
            audit_chain: self.audit_chain,
        };
        (status, self.probes)
    }

    /// Exit-code view: every probe Ready, and the audit trail either not configured or collected with
    /// every count exactly as expected. A failed pull is a problem, never "0 rows".
    pub fn is_ok(&self) -> bool {
        let audit_fine = match self.audit_state() {
            AuditState::NotConfigured => true,
            AuditState::Collected => self.audit_findings().next().is_none(),
            AuditState::Failed { .. } => false,
        };
        let chain_fine = !self.audit_chain.as_ref().is_some_and(|v| v.is_ng());
        self.all_ready && audit_fine && chain_fine
    }

    /// Whether the audit trail was collected; derived from the counts and errors for runs written before
    /// the state was recorded.
    pub fn audit_state(&self) -> AuditState {
        if let Some(state) = &self.audit_state {
            return state.clone();
        }
        AuditState::derive(self.audit_checked, &self.audit_errors, &self.audit)
    }

    /// Every count that is not exactly what the template expects, in phase order.
    pub fn audit_findings(&self) -> impl Iterator<Item = (&AuditCount, AuditFinding)> {
        self.audit.iter().filter_map(|c| c.finding().map(|f| (c, f)))
    }
}

impl RunStatus {
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
    /// How many rows of this action and outcome the phase's probes should have produced: one per
    /// request for each action a probe declares (`ACTION` for a success row, `ACTION:failed` for a failed
    /// one), so a polled probe expects one per attempt.
    pub expected: u64,
}

impl AuditCount {
    /// Whether this row counts successes (`success`, or a query that does not group by outcome).
    pub fn counts_success(&self) -> bool {
        self.outcome.as_deref().is_none_or(|o| o == "success")
    }

    /// The phase expected rows here and did not get (at least) that many.
    pub fn is_missing(&self) -> bool {
        matches!(self.finding(), Some(AuditFinding::Missing { .. } | AuditFinding::NotCounted))
    }

    /// Rows the template did not expect: rows beyond the expected count of this action and outcome (so
    /// any `failed` row a probe does not declare). Unknown deltas count as none; they are
    /// [`AuditFinding::NotCounted`].
    pub fn unexpected_rows(&self) -> u64 {
        (self.delta.unwrap_or(0).max(0) as u64).saturating_sub(self.expected)
    }

    /// How this count differs from what the template expects, exactly; `None` when it matches.
    pub fn finding(&self) -> Option<AuditFinding> {
        let expected = self.expected;
        let Some(delta) = self.delta else {
            return (expected > 0).then_some(AuditFinding::NotCounted);
        };
        match delta.cmp(&(expected as i64)) {
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Less => Some(AuditFinding::Missing { delta, expected }),
            std::cmp::Ordering::Greater if expected == 0 && !self.counts_success() => {
                Some(AuditFinding::Unexpected { delta })
            }
            std::cmp::Ordering::Greater => Some(AuditFinding::Extra { delta, expected }),
        }
    }
}

/// How an audit count differs from the template's expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditFinding {
    /// Fewer successful rows than the probes should have written.
    Missing {
        /// Rows added.
        delta: i64,
        /// Rows expected.
        expected: u64,
    },
    /// More successful rows than the probes should have written.
    Extra {
        /// Rows added.
        delta: i64,
        /// Rows expected.
        expected: u64,
    },
    /// Rows of an outcome the template does not expect at all (e.g. `failed`).
    Unexpected {
        /// Rows added.
        delta: i64,
    },
    /// Rows were expected but the query failed, so nothing was counted.
    NotCounted,
}

impl AuditFinding {
    /// The finding as a sentence for the Markdown (Japanese, as the logs are written).
    pub fn describe_ja(&self) -> String {
        match self {
            AuditFinding::Missing { delta, expected } => format!("期待 {expected} 行に対し {delta} 行（不足）"),
            AuditFinding::Extra { delta, expected } => format!("期待 {expected} 行に対し {delta} 行（過剰）"),
            AuditFinding::Unexpected { delta } => format!("期待していない行が {delta} 行"),
            AuditFinding::NotCounted => "照会に失敗し件数を確認できていない".to_owned(),
        }
    }
}

/// Whether a run's audit trail was collected. Three values, so that nothing reads "OK" or "採取" for an
/// audit database that was never configured or never answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AuditState {
    /// Every query ran before and after its phase.
    Collected,
    /// The target has no `[audit]` section: nothing was checked.
    NotConfigured,
    /// The database could not be reached or a query failed.
    Failed {
        /// What went wrong (redacted), the errors joined.
        reason: String,
    },
}

impl AuditState {
    /// The state from what a run recorded.
    pub fn derive(configured: bool, errors: &[String], counts: &[AuditCount]) -> AuditState {
        if !configured {
            AuditState::NotConfigured
        } else if !errors.is_empty() {
            AuditState::Failed { reason: errors.join("; ") }
        } else if counts.iter().any(|c| c.before.is_none() || c.after.is_none()) {
            AuditState::Failed { reason: "a query returned no count".to_owned() }
        } else {
            AuditState::Collected
        }
    }

    /// `collected` / `not_configured` / `failed`, as status.json writes it.
    pub fn key(&self) -> &'static str {
        match self {
            AuditState::Collected => "collected",
            AuditState::NotConfigured => "not_configured",
            AuditState::Failed { .. } => "failed",
        }
    }

    /// The word the logs use: 採取済み / 未採取 / 採取失敗.
    pub fn label_ja(&self) -> &'static str {
        match self {
            AuditState::Collected => "採取済み",
            AuditState::NotConfigured => "未採取",
            AuditState::Failed { .. } => "採取失敗",
        }
    }
}

/// `audit/counts.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditCounts {
    /// Layout version.
    pub schema_version: u32,
    /// The RUN_ID.
    pub run_id: String,
    /// Collected, not configured, or failed with the reason: an empty `counts` means nothing only with it.
    #[serde(flatten)]
    pub state: AuditState,
    /// Connection and query errors, as in `status.json`.
    #[serde(default)]
    pub errors: Vec<String>,
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
        timings: Timings { dns_ms: 0.1, connect_ms: 0.4, tls_ms: 3.0, ttfb_ms: 2.0, total_ms: 6.0, proxy_ms: 0.0 },
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
        proxy: None,
        retried: Vec::new(),
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
        audit_state: Some(AuditState::Collected),
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
        audit_chain: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(outcome: Option<&str>, delta: Option<i64>, expected: u64) -> AuditCount {
        AuditCount {
            phase: "E".to_owned(),
            action: "PHR_EXPORT_STATUS".to_owned(),
            outcome: outcome.map(str::to_owned),
            before: delta.map(|_| 0),
            after: delta.map(|d| d.max(0) as u64),
            delta,
            expected,
        }
    }

    #[test]
    fn an_extra_row_is_a_finding_as_much_as_a_missing_one() {
        assert_eq!(count(Some("success"), Some(1), 1).finding(), None);
        assert_eq!(count(Some("success"), Some(2), 1).finding(), Some(AuditFinding::Extra { delta: 2, expected: 1 }));
        assert_eq!(count(Some("success"), Some(0), 1).finding(), Some(AuditFinding::Missing { delta: 0, expected: 1 }));
        assert_eq!(count(Some("success"), Some(2), 1).unexpected_rows(), 1);
    }

    #[test]
    fn a_failed_row_nobody_declared_is_unexpected_and_a_declared_one_is_not() {
        assert_eq!(count(Some("failed"), Some(1), 0).finding(), Some(AuditFinding::Unexpected { delta: 1 }));
        assert_eq!(count(Some("failed"), Some(1), 0).unexpected_rows(), 1);
        assert_eq!(count(Some("failed"), Some(1), 1).finding(), None);
        assert_eq!(count(Some("failed"), Some(0), 0).finding(), None);
    }

    #[test]
    fn an_expected_row_that_was_not_counted_is_a_finding() {
        assert_eq!(count(None, None, 1).finding(), Some(AuditFinding::NotCounted));
        assert_eq!(count(None, None, 0).finding(), None);
    }

    #[test]
    fn audit_state_is_three_valued_and_a_failed_pull_is_never_ok() {
        let mut status = sample_status();
        status.all_ready = true;
        status.audit = vec![count(Some("success"), Some(1), 1)];
        status.audit_errors.clear();
        status.audit_state = None;
        assert_eq!(status.audit_state(), AuditState::Collected);
        assert!(status.is_ok());

        status.audit_checked = false;
        status.audit.clear();
        assert_eq!(status.audit_state(), AuditState::NotConfigured);
        assert_eq!(status.audit_state().label_ja(), "未採取");
        assert!(status.is_ok(), "not configured is shown, not failed");

        status.audit_checked = true;
        status.audit_errors = vec!["connection refused".to_owned()];
        assert_eq!(status.audit_state(), AuditState::Failed { reason: "connection refused".to_owned() });
        assert!(!status.is_ok(), "a pull that failed is a problem, never 0 rows");

        status.audit_errors.clear();
        status.audit = vec![count(Some("success"), Some(2), 1)];
        assert!(!status.is_ok(), "an extra row is a finding");
    }

    #[test]
    fn counts_json_carries_the_state_next_to_the_counts() {
        let counts = AuditCounts {
            schema_version: STATUS_SCHEMA_VERSION,
            run_id: "R".to_owned(),
            state: AuditState::Failed { reason: "refused".to_owned() },
            errors: vec!["refused".to_owned()],
            counts: Vec::new(),
        };
        let json = serde_json::to_value(&counts).expect("serialise");
        assert_eq!(json["state"], "failed");
        assert_eq!(json["reason"], "refused");
        assert_eq!(json["counts"], serde_json::json!([]));
    }
}
