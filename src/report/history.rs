//! `connrun history`: one row per run over time, with Ready counts and the probes whose status moved.
//!
//! The team's status tables track the same few probes week after week (PHR-06 405 → 200, ...). This
//! module turns the `status.json` of every finished run into that table: runs of the same template and
//! target are compared with the run before them, so "changed" always means "since the last time we ran
//! exactly this". It also computes the per-request-phase latency series that the HTML report charts.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::evidence::status::RunStatus;
use crate::report::clock::Zone;
use crate::report::items::{AuditSummary, evidence_root};

/// A probe whose HTTP result differs from the previous run of the same template and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusMove {
    /// Probe id.
    pub probe: String,
    /// `405`, or `000 tls_failure`, or `-` when the probe was absent.
    pub before: String,
    /// Same, for this run.
    pub after: String,
}

/// One row of the history table.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    /// The RUN_ID.
    pub run_id: String,
    /// Template name.
    pub template: String,
    /// Target name.
    pub target: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// The start in the operator's zone, `2025-11-19 09:30 JST`, for the table.
    pub started: String,
    /// Ready probes.
    pub ready: usize,
    /// All probes.
    pub probes: usize,
    /// Collected and exactly as expected (false when not collected: read `audit_state` for why).
    pub audit_ok: bool,
    /// `collected` / `not_configured` / `failed`.
    pub audit_state: &'static str,
    /// The audit cell: 採取済み（期待どおり） / 採取済み・所見 n 件 / 未採取（監査 DB 未設定） / 採取失敗.
    pub audit: String,
    /// The run the moves are relative to (previous run of the same template and target).
    pub previous: Option<String>,
    /// Probes whose result moved since `previous`.
    pub changed: Vec<StatusMove>,
    /// Probes that needed retries, with how many (`PHR-06 再試行 1 回`): such a run is not a clean one.
    pub retried: Vec<String>,
    /// The evidence folder.
    pub evidence: String,
}

/// Probes whose HTTP code moved from `before` to `after` (added and removed probes included).
pub fn status_moves(before: &RunStatus, after: &RunStatus) -> Vec<StatusMove> {
    // Maps and a set, not lookups in lists: two 10,000-probe runs made the list version quadratic (seconds).
    let (before_codes, after_codes) = (http_codes(before), http_codes(after));
    let code = |codes: &std::collections::HashMap<&str, String>, id: &str| {
        codes.get(id).cloned().unwrap_or_else(|| "-".to_owned())
    };
    let mut seen = std::collections::HashSet::new();
    let mut ids: Vec<&str> = Vec::new();
    for p in after.serverinfo.iter().chain(&after.probes).chain(before.serverinfo.iter()).chain(&before.probes) {
        if seen.insert(p.id.as_str()) {
            ids.push(&p.id);
        }
    }
    ids.into_iter()
        .filter_map(|id| {
            let (b, a) = (code(&before_codes, id), code(&after_codes, id));
            (b != a).then(|| StatusMove { probe: id.to_owned(), before: b, after: a })
        })
        .collect()
}

/// Each probe's `HTTP code` by id (the first probe of an id when a run repeats one).
fn http_codes(s: &RunStatus) -> std::collections::HashMap<&str, String> {
    let mut codes = std::collections::HashMap::new();
    for p in s.serverinfo.iter().chain(&s.probes) {
        codes.entry(p.id.as_str()).or_insert_with(|| p.http_code());
    }
    codes
}

/// One history row for `status`, compared with `previous` (the run before it of the same template and target).
pub fn row(status: &RunStatus, previous: Option<&RunStatus>, zone: Zone) -> HistoryRow {
    let audit = AuditSummary::of(status);
    HistoryRow {
        run_id: status.run_id.clone(),
        template: status.template.clone(),
        target: status.target.clone(),
        started_at: status.started_at,
        started: zone.moment(status.started_at),
        ready: status.probes.iter().filter(|p| p.ready).count(),
        probes: status.probes.len(),
        audit_ok: status.audit_ok && audit.confirmed,
        audit_state: audit.state,
        audit: audit.short,
        previous: previous.map(|p| p.run_id.clone()),
        changed: previous.map(|p| status_moves(p, status)).unwrap_or_default(),
        retried: status
            .probes
            .iter()
            .filter(|p| !p.retried.is_empty())
            .map(|p| format!("{} 再試行 {} 回", p.id, p.retried.len()))
            .collect(),
        evidence: evidence_root(status),
    }
}

/// The history rows, newest first, built one run at a time (runs come oldest first), optionally of one
/// template, at most `last` ([`Rows::finish`]). Each run is compared with the previous run of its template
/// and target and only that one is kept, so a history of many large runs holds one status per template and
/// target, not every run.
#[derive(Debug)]
pub struct Rows<'t> {
    /// Only runs of this template, when given.
    template: Option<&'t str>,
    /// How times are shown.
    zone: Zone,
    /// The newest run seen of each template and target.
    previous: std::collections::HashMap<(String, String), RunStatus>,
    /// The rows so far, oldest first.
    rows: Vec<HistoryRow>,
}

impl<'t> Rows<'t> {
    /// An empty history of `template`'s runs (every template's when None).
    pub fn new(template: Option<&'t str>, zone: Zone) -> Self {
        Self { template, zone, previous: Default::default(), rows: Vec::new() }
    }

    /// Adds the next run (runs come oldest first).
    pub fn push(&mut self, status: RunStatus) {
        if self.template.is_some_and(|t| status.template != t) {
            return;
        }
        let kind = (status.template.clone(), status.target.clone());
        self.rows.push(row(&status, self.previous.get(&kind), self.zone));
        self.previous.insert(kind, status);
    }

    /// The rows, newest first, at most `last` of them.
    pub fn finish(self, last: Option<usize>) -> Vec<HistoryRow> {
        let mut out = self.rows;
        out.reverse();
        if let Some(last) = last {
            out.truncate(last);
        }
        out
    }
}

/// Request phases charted across runs, in wire order.
pub const REQUEST_PHASES: [&str; 5] = ["dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms"];

/// Mean of each request phase over a run's probes (serverinfo excluded), in [`REQUEST_PHASES`] order.
pub fn mean_phase_latency(status: &RunStatus) -> [f64; 5] {
    let mut sums = [0.0; 5];
    let answered: Vec<_> = status.probes.iter().filter(|p| p.http_status.is_some()).collect();
    for p in &answered {
        let t = &p.timings;
        for (sum, value) in sums.iter_mut().zip([t.dns_ms, t.connect_ms, t.tls_ms, t.ttfb_ms, t.total_ms]) {
            *sum += value;
        }
    }
    let n = answered.len().max(1) as f64;
    sums.map(|s| s / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_needed_a_retry_says_so_even_when_nothing_moved() {
        let clean = crate::evidence::status::sample_status();
        let mut retried = clean.clone();
        retried.probes[0].retried.push(crate::evidence::FailedAttempt {
            attempt: 1,
            started_at: clean.started_at,
            outcome: crate::evidence::Outcome::ConnectionRefused { message: "m".to_owned() },
            timings: crate::evidence::Timings::default(),
        });

        let row = row(&retried, Some(&clean), Zone::default());

        assert!(row.changed.is_empty());
        assert_eq!(row.retried, vec![format!("{} 再試行 1 回", clean.probes[0].id)]);
        assert!(super::row(&clean, None, Zone::default()).retried.is_empty());
    }

    #[test]
    fn each_row_is_compared_with_the_previous_run_of_its_own_template_and_target() {
        // Arrange: runs of two targets interleaved, oldest first; the second run of `a` moves a probe.
        let run = |id: &str, target: &str, code: Option<u16>| {
            let mut status = crate::evidence::status::sample_status();
            status.run_id = id.to_owned();
            status.target = target.to_owned();
            status.probes[0].http_status = code;
            status
        };
        let mut rows = Rows::new(None, Zone::default());

        // Act
        for status in [run("R1", "a", Some(200)), run("R2", "b", Some(200)), run("R3", "a", Some(500))] {
            rows.push(status);
        }
        let rows = rows.finish(None);

        // Assert: newest first; R3 against R1 (not R2), R2 and R1 against nothing.
        let previous: Vec<_> = rows.iter().map(|r| (r.run_id.as_str(), r.previous.as_deref())).collect();
        assert_eq!(previous, [("R3", Some("R1")), ("R2", None), ("R1", None)]);
        assert_eq!(rows[0].changed.len(), 1, "{:?}", rows[0].changed);
        assert!(rows[1].changed.is_empty() && rows[2].changed.is_empty());
    }

    #[test]
    fn a_template_filter_and_last_keep_the_newest_rows_of_that_template() {
        let run = |id: &str, template: &str| {
            let mut status = crate::evidence::status::sample_status();
            status.run_id = id.to_owned();
            status.template = template.to_owned();
            status
        };
        let mut rows = Rows::new(Some("t"), Zone::default());
        for status in [run("R1", "t"), run("R2", "u"), run("R3", "t"), run("R4", "t")] {
            rows.push(status);
        }

        let ids: Vec<_> = rows.finish(Some(2)).into_iter().map(|r| r.run_id).collect();

        assert_eq!(ids, ["R4", "R3"]);
    }
}
