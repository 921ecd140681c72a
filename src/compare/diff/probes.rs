//! Probe by probe: readiness, HTTP status and failure kind, and latency per request phase.
//!
//! Readiness decides the class (Ready → not Ready is a regression); a status or failure-kind move while the
//! readiness stays is neutral. Latency is flagged only past both bars of [`DiffOptions`] and the spread of
//! earlier runs ([`NoiseFloor`]).

use std::collections::BTreeMap;

use super::{Change, ChangeClass, DiffOptions, NoiseFloor, change};
use crate::evidence::status::RunStatus;
use crate::evidence::wording::problem_ja;
use crate::evidence::{ProbeRecord, Timings};

pub(super) fn probes_by_id(s: &RunStatus) -> BTreeMap<&str, &ProbeRecord> {
    s.serverinfo.iter().chain(&s.probes).map(|p| (p.id.as_str(), p)).collect()
}

/// `HTTP 200 Ready`, `HTTP 404 Not Ready`, `000 tls_failure Not Ready`.
fn describe_result(p: &ProbeRecord) -> String {
    let http = p.http_status.map_or_else(|| format!("HTTP 000（{}）", p.outcome.kind()), |s| format!("HTTP {s}"));
    format!("{http} {}", if p.ready { "Ready" } else { "Not Ready" })
}

pub(super) fn compare_probe(
    phase: Option<&str>,
    id: &str,
    a: Option<&ProbeRecord>,
    b: Option<&ProbeRecord>,
    (options, noise): (&DiffOptions, &NoiseFloor),
    out: &mut Vec<Change>,
) {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => {
            out.push(Change {
                before: describe_result(a),
                note: "今回の実行にはないプローブ".to_owned(),
                ..change(ChangeClass::Neutral, phase, id, "probe")
            });
            return;
        }
        (None, Some(b)) => {
            out.push(Change {
                after: describe_result(b),
                note: "今回の実行で追加されたプローブ".to_owned(),
                ..change(ChangeClass::Neutral, phase, id, "probe")
            });
            return;
        }
        (None, None) => return,
    };
    let (before, after) = (describe_result(a), describe_result(b));
    let class = match (a.ready, b.ready) {
        (true, false) => Some(ChangeClass::Regression),
        (false, true) => Some(ChangeClass::Improvement),
        _ if a.http_status != b.http_status || a.outcome.kind() != b.outcome.kind() => Some(ChangeClass::Neutral),
        _ => None,
    };
    if let Some(class) = class {
        let note = if b.ready { String::new() } else { problem_ja(b) };
        out.push(Change { before, after, note, ..change(class, phase, id, "status") });
    }
    if a.retried.len() != b.retried.len() {
        out.push(Change {
            before: retries(a),
            after: retries(b),
            note: "接続レベルの失敗で再試行した回数（status.json の `retried`）".to_owned(),
            ..change(ChangeClass::Neutral, phase, id, "retries")
        });
    }
    if a.http_status.is_some() && b.http_status.is_some() {
        compare_latency(phase, id, (&a.timings, &b.timings), (options, noise), out);
    }
}

/// `再試行 0 回`, `再試行 1 回`: how many failed attempts came before the recorded one.
fn retries(p: &ProbeRecord) -> String {
    format!("再試行 {} 回", p.retried.len())
}

pub(super) fn timing_fields(t: &Timings) -> [(&'static str, f64); 5] {
    [
        ("dns_ms", t.dns_ms),
        ("connect_ms", t.connect_ms),
        ("tls_ms", t.tls_ms),
        ("ttfb_ms", t.ttfb_ms),
        ("total_ms", t.total_ms),
    ]
}

/// True when the move from `before` to `after` clears both the relative and the absolute bar.
pub fn latency_moved(before: f64, after: f64, options: &DiffOptions) -> bool {
    let delta = (after - before).abs();
    delta > options.latency_min_ms && delta > options.latency_ratio * before.min(after).max(0.0)
}

fn compare_latency(
    phase: Option<&str>,
    id: &str,
    (a, b): (&Timings, &Timings),
    (options, noise): (&DiffOptions, &NoiseFloor),
    out: &mut Vec<Change>,
) {
    for ((name, before), (_, after)) in timing_fields(a).into_iter().zip(timing_fields(b)) {
        if !latency_moved(before, after, options) || (after - before).abs() <= noise.of(id, name) {
            continue;
        }
        let class = if after > before { ChangeClass::Regression } else { ChangeClass::Improvement };
        let percent =
            if before > 0.0 { format!("（{:+.0}%）", (after - before) / before * 100.0) } else { String::new() };
        out.push(Change {
            before: format!("{before:.1} ms"),
            after: format!("{after:.1} ms"),
            note: format!("{:+.1} ms{percent}", after - before),
            ..change(class, phase, id, &format!("latency.{name}"))
        });
    }
}
