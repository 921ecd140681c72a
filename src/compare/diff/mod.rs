//! `connrun diff`: what moved between two runs, classed as regression, improvement or neutral.
//!
//! The weekly routine is "compare with last week and say what moved" (PHR-06 went from 405 to 200, the audit
//! query went from 0 rows to 3). This module does that from two `status.json` files only, probe by probe
//! (matched by id) and phase by phase: HTTP status and readiness, failure kind, latency per request phase
//! (`probes.rs`), audit state and counts (`audit.rs`), the server certificate (`certs.rs`), probes and phases
//! added or removed. It judges change, not state: a value that did not move is never a regression, however
//! bad it is (that is the run's own finding). Only runs of the same template and target are compared unless
//! the caller says otherwise ([`comparable`]). It is pure: loading (and the manifest check that must come
//! first) lives in [`crate::compare::runindex`], rendering in [`crate::report::views`].

mod audit;
mod certs;
mod probes;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::evidence::status::RunStatus;

pub use audit::AuditSides;
pub use probes::latency_moved;
use probes::{compare_probe, probes_by_id, timing_fields};

/// Whether a change is good, bad or just worth knowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeClass {
    /// Worse than before: makes `diff` exit 1.
    Regression,
    /// Better than before.
    Improvement,
    /// Different, neither better nor worse (e.g. 405 → 404 while still not Ready, a new certificate).
    Neutral,
}

impl ChangeClass {
    /// The label used in the Markdown table.
    pub fn label(self) -> &'static str {
        match self {
            ChangeClass::Regression => "regression",
            ChangeClass::Improvement => "improvement",
            ChangeClass::Neutral => "neutral",
        }
    }
}

/// One thing that moved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Good, bad or neutral.
    pub class: ChangeClass,
    /// Phase id the change belongs to; None for run-wide facts (certificate, audit state).
    pub phase: Option<String>,
    /// What changed: a probe id (`PHR-07`), an audit action (`PHR_IMAGE_STREAM`) or `certificate`.
    pub subject: String,
    /// Which aspect: `status`, `latency.ttfb_ms`, `audit.delta`, `audit.state`, `certificate.fingerprint`, `probe`, ...
    pub aspect: String,
    /// The value in the first run (`-` when absent).
    pub before: String,
    /// The value in the second run (`-` when absent).
    pub after: String,
    /// One line of explanation for the reader.
    pub note: String,
}

/// Thresholds; the defaults keep two runs of the same healthy server free of latency flags.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiffOptions {
    /// A latency change is flagged only when it exceeds this fraction of the earlier value (1.0 = +100%)...
    pub latency_ratio: f64,
    /// ...and also this many milliseconds. One sample per probe per run cannot show the network's noise, so
    /// both bars must be cleared: small absolute jitter and big relative jumps of tiny numbers never flag.
    pub latency_min_ms: f64,
    /// A server certificate that newly has fewer days left than this is a regression.
    pub cert_min_days: i64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions { latency_ratio: 1.0, latency_min_ms: 250.0, cert_min_days: 30 }
    }
}

/// Which run a side of the comparison is.
#[derive(Debug, Clone, Serialize)]
pub struct RunRef {
    /// The RUN_ID.
    pub run_id: String,
    /// Template name.
    pub template: String,
    /// Target name.
    pub target: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Evidence folder, as given to diff.
    pub evidence: String,
    /// Ready probes / all probes.
    pub ready: String,
}

impl RunRef {
    /// Describes a run for the report.
    pub fn new(status: &RunStatus, evidence: String) -> RunRef {
        let ready = status.probes.iter().filter(|p| p.ready).count();
        RunRef {
            run_id: status.run_id.clone(),
            template: status.template.clone(),
            target: status.target.clone(),
            started_at: status.started_at,
            evidence,
            ready: format!("{ready}/{}", status.probes.len()),
        }
    }
}

/// The comparison of run A (before) with run B (after).
#[derive(Debug, Clone, Serialize)]
pub struct RunDiff {
    /// The earlier run.
    pub before: RunRef,
    /// The later run.
    pub after: RunRef,
    /// Thresholds used.
    pub options: DiffOptions,
    /// Both runs' audit state: a run without an audit database shows 未採取 rather than a silent "no change".
    pub audit: AuditSides,
    /// Every change, in phase order, run-wide facts last.
    pub changes: Vec<Change>,
    /// Count of regressions.
    pub regressions: usize,
    /// Count of improvements.
    pub improvements: usize,
    /// Count of neutral changes.
    pub neutral: usize,
    /// Earlier runs whose timing spread raised the latency bar (0 or 1: no history used).
    pub noise_runs: usize,
}

impl RunDiff {
    /// Compares two runs.
    pub fn new(before: (&RunStatus, String), after: (&RunStatus, String), options: DiffOptions) -> RunDiff {
        RunDiff::with_noise(before, after, options, &NoiseFloor::default())
    }

    /// Compares two runs, also requiring latency moves to exceed the spread seen in earlier runs.
    pub fn with_noise(
        before: (&RunStatus, String),
        after: (&RunStatus, String),
        options: DiffOptions,
        noise: &NoiseFloor,
    ) -> RunDiff {
        let changes = compare(before.0, after.0, &options, noise);
        let count = |class| changes.iter().filter(|c| c.class == class).count();
        RunDiff {
            before: RunRef::new(before.0, before.1),
            after: RunRef::new(after.0, after.1),
            options,
            audit: AuditSides::of(before.0, after.0),
            regressions: count(ChangeClass::Regression),
            improvements: count(ChangeClass::Improvement),
            neutral: count(ChangeClass::Neutral),
            noise_runs: noise.runs,
            changes,
        }
    }

    /// True when anything got worse (exit 1).
    pub fn has_regression(&self) -> bool {
        self.regressions > 0
    }
}

/// Whether two runs may be compared without the operator asking: only runs of the same template against the
/// same target. Between templates every probe reads as added or removed, and between targets a difference is
/// two servers differing, not a change of either. The error is the sentence to show.
pub fn comparable(before: &RunStatus, after: &RunStatus) -> Result<(), String> {
    if before.template == after.template && before.target == after.target {
        return Ok(());
    }
    Err(format!(
        "{} is a run of template {} against target {}, but {} is a run of template {} against target {}; \
         diff compares runs of the same template and target (add --allow-mismatch to compare them anyway)",
        before.run_id, before.template, before.target, after.run_id, after.template, after.target
    ))
}

/// How much each probe's timings moved between earlier runs of the same template and target: a latency
/// change smaller than that spread is the network's noise, not a finding.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NoiseFloor {
    /// How many runs the spread was measured over.
    pub runs: usize,
    /// `max - min` per `"<probe> <timing>"`, e.g. `"PHR-07 total_ms"`.
    pub spread_ms: BTreeMap<String, f64>,
}

impl NoiseFloor {
    /// The spread of every probe timing over `runs` (a spread needs at least two runs answering the probe).
    pub fn from_runs(runs: &[&RunStatus]) -> NoiseFloor {
        let mut noise = NoiseAccumulator::default();
        for run in runs {
            noise.add(run);
        }
        noise.finish()
    }

    fn of(&self, probe: &str, timing: &str) -> f64 {
        self.spread_ms.get(&format!("{probe} {timing}")).copied().unwrap_or(0.0)
    }
}

/// A [`NoiseFloor`] measured one run at a time, so the earlier runs need not be held together: each adds
/// its probes' timings to the lowest and highest seen, and is dropped.
#[derive(Debug, Default)]
pub struct NoiseAccumulator {
    /// Runs added.
    runs: usize,
    /// Lowest and highest value, and how many runs answered, per `"<probe> <timing>"`.
    seen: BTreeMap<String, (f64, f64, usize)>,
}

impl NoiseAccumulator {
    /// Adds one run's answered probes.
    pub fn add(&mut self, run: &RunStatus) {
        self.runs += 1;
        for probe in run.probes.iter().filter(|p| p.http_status.is_some()) {
            for (name, value) in timing_fields(&probe.timings) {
                let slot = self.seen.entry(format!("{} {name}", probe.id)).or_insert((f64::MAX, f64::MIN, 0));
                *slot = (slot.0.min(value), slot.1.max(value), slot.2 + 1);
            }
        }
    }

    /// The spreads of the timings at least two runs answered.
    pub fn finish(self) -> NoiseFloor {
        let spread_ms =
            self.seen.into_iter().filter(|(_, (_, _, n))| *n >= 2).map(|(k, (lo, hi, _))| (k, hi - lo)).collect();
        NoiseFloor { runs: self.runs, spread_ms }
    }
}

fn change(class: ChangeClass, phase: Option<&str>, subject: &str, aspect: &str) -> Change {
    Change {
        class,
        phase: phase.map(str::to_owned),
        subject: subject.to_owned(),
        aspect: aspect.to_owned(),
        before: "-".to_owned(),
        after: "-".to_owned(),
        note: String::new(),
    }
}

/// Every change from `a` to `b`.
pub fn compare(a: &RunStatus, b: &RunStatus, options: &DiffOptions, noise: &NoiseFloor) -> Vec<Change> {
    let mut changes = Vec::new();
    let phase_order: Vec<String> = {
        let mut seen = BTreeSet::new();
        b.phases.iter().chain(&a.phases).map(|p| p.id.clone()).filter(|id| seen.insert(id.clone())).collect()
    };
    let a_phases: BTreeSet<&str> = a.phases.iter().map(|p| p.id.as_str()).collect();
    let b_phases: BTreeSet<&str> = b.phases.iter().map(|p| p.id.as_str()).collect();
    let (a_probes, b_probes) = (probes_by_id(a), probes_by_id(b));
    let in_phase = |phase: Option<&str>| {
        let mut ids: Vec<&str> = Vec::new();
        // A set beside the list: a 10,000-probe phase looked each id up in the list (quadratic, seconds).
        let mut listed: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for s in [b, a] {
            for p in s.serverinfo.iter().chain(&s.probes) {
                let matches = match phase {
                    Some(phase) => p.phase == phase && s.serverinfo.as_ref().is_none_or(|si| si.id != p.id),
                    None => s.serverinfo.as_ref().is_some_and(|si| si.id == p.id),
                };
                if matches && listed.insert(p.id.as_str()) {
                    ids.push(&p.id);
                }
            }
        }
        ids
    };
    for id in in_phase(None) {
        compare_probe(None, id, a_probes.get(id).copied(), b_probes.get(id).copied(), (options, noise), &mut changes);
    }
    let audit_compared = AuditSides::of(a, b).compared;
    for phase in &phase_order {
        match (a_phases.contains(phase.as_str()), b_phases.contains(phase.as_str())) {
            (true, false) => changes.push(Change {
                before: "あり".to_owned(),
                note: "今回の実行にはないフェーズ".to_owned(),
                ..change(ChangeClass::Neutral, Some(phase), &format!("Phase-{phase}"), "phase")
            }),
            (false, true) => changes.push(Change {
                after: "あり".to_owned(),
                note: "今回の実行で追加されたフェーズ".to_owned(),
                ..change(ChangeClass::Neutral, Some(phase), &format!("Phase-{phase}"), "phase")
            }),
            _ => {}
        }
        for id in in_phase(Some(phase)) {
            let (pa, pb) = (a_probes.get(id).copied(), b_probes.get(id).copied());
            compare_probe(Some(phase), id, pa, pb, (options, noise), &mut changes);
        }
        if audit_compared {
            audit::compare_audit(phase, &a.audit, &b.audit, &mut changes);
        }
    }
    audit::compare_state(a, b, &mut changes);
    certs::compare_certificates(a, b, options, &mut changes);
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_needs_both_the_relative_and_the_absolute_bar() {
        let options = DiffOptions::default();
        assert!(!latency_moved(2.0, 40.0, &options), "20x but only 38 ms");
        assert!(!latency_moved(900.0, 1300.0, &options), "400 ms but only +44%");
        assert!(latency_moved(200.0, 700.0, &options), "+500 ms and +250%");
        assert!(latency_moved(700.0, 200.0, &options), "faster by as much counts too");
    }

    #[test]
    fn a_move_within_the_spread_of_earlier_runs_is_noise() {
        let mut slow = crate::evidence::status::sample_status();
        slow.probes[0].timings.total_ms = 900.0;
        let mut fast = slow.clone();
        fast.probes[0].timings.total_ms = 100.0;
        let strict = DiffOptions { latency_ratio: 0.0, latency_min_ms: 0.0, cert_min_days: 0 };
        let flagged = compare(&fast, &slow, &strict, &NoiseFloor::default());
        assert!(flagged.iter().any(|c| c.aspect == "latency.total_ms"), "{flagged:?}");
        let noise = NoiseFloor::from_runs(&[&fast, &slow]);
        assert_eq!(noise.of("PHR-06", "total_ms"), 800.0);
        let within = compare(&fast, &slow, &strict, &noise);
        assert!(!within.iter().any(|c| c.aspect == "latency.total_ms"), "{within:?}");
    }

    #[test]
    fn a_run_compared_with_itself_has_no_changes() {
        let status = crate::evidence::status::sample_status();
        assert!(compare(&status, &status, &DiffOptions::default(), &NoiseFloor::default()).is_empty());
    }

    #[test]
    fn readiness_decides_the_class_and_a_status_move_while_not_ready_is_neutral() {
        let before = crate::evidence::status::sample_status();
        let mut after = before.clone();
        after.probes[0].ready = false;
        after.probes[0].http_status = Some(404);
        after.probes[1].outcome = crate::evidence::Outcome::Timeout { during: "tls".to_owned() };
        let changes = compare(&before, &after, &DiffOptions::default(), &NoiseFloor::default());
        let summary: Vec<(&str, ChangeClass)> = changes.iter().map(|c| (c.subject.as_str(), c.class)).collect();
        assert_eq!(summary, vec![("PHR-06", ChangeClass::Regression), ("PHR-07", ChangeClass::Neutral)]);
    }

    #[test]
    fn a_run_that_needed_a_retry_is_not_silently_identical_to_a_clean_one() {
        let clean = crate::evidence::status::sample_status();
        let mut retried = clean.clone();
        let first = crate::evidence::FailedAttempt {
            attempt: 1,
            started_at: retried.probes[0].started_at,
            outcome: crate::evidence::Outcome::ConnectionRefused { message: "127.0.0.1:8443".to_owned() },
            timings: crate::evidence::Timings::default(),
        };
        retried.probes[0].retried.push(first);

        let changes = compare(&clean, &retried, &DiffOptions::default(), &NoiseFloor::default());

        let retry = changes.iter().find(|c| c.aspect == "retries").expect("the retry is listed");
        assert_eq!(
            (retry.class, retry.before.as_str(), retry.after.as_str()),
            (ChangeClass::Neutral, "再試行 0 回", "再試行 1 回")
        );
    }
}
