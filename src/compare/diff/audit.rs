//! Audit deltas and errors between two runs.

use std::collections::{BTreeMap, BTreeSet};

use super::{Change, ChangeClass, change};
use crate::evidence::status::{AuditCount, RunStatus};

/// An audit outcome counted as a success (more is better) rather than a failure (more is worse).
fn success_like(count: &AuditCount) -> bool {
    let failed_action = ["_FAILED", "_THROTTLED", "_DENIED", "_REJECTED"].iter().any(|s| count.action.ends_with(s));
    !failed_action && count.outcome.as_deref().is_none_or(|o| o == "success")
}

fn audit_label(count: &AuditCount) -> String {
    match &count.outcome {
        Some(outcome) => format!("{} ({outcome})", count.action),
        None => count.action.clone(),
    }
}

fn delta_text(count: Option<&AuditCount>) -> String {
    match count {
        None => "-".to_owned(),
        Some(c) => match c.delta {
            Some(d) => format!("delta {d} (expected {})", c.expected),
            None => format!("query failed (expected {})", c.expected),
        },
    }
}

pub(super) fn compare_audit(phase: &str, a: &[AuditCount], b: &[AuditCount], out: &mut Vec<Change>) {
    let key = |c: &AuditCount| (c.action.clone(), c.outcome.clone());
    let of = |counts: &[AuditCount]| -> BTreeMap<(String, Option<String>), AuditCount> {
        counts.iter().filter(|c| c.phase == phase).map(|c| (key(c), c.clone())).collect()
    };
    let (a, b) = (of(a), of(b));
    let keys: BTreeSet<&(String, Option<String>)> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (ca, cb) = (a.get(k), b.get(k));
        let sample = ca.or(cb);
        let Some(sample) = sample else { continue };
        let good_up = success_like(sample);
        let value = |c: Option<&AuditCount>| c.and_then(|c| c.delta);
        let (va, vb) = (value(ca), value(cb));
        let (class, note) = match (ca, cb) {
            (Some(_), None) if va.unwrap_or(0) != 0 || sample.expected > 0 => {
                let class = if good_up { ChangeClass::Regression } else { ChangeClass::Improvement };
                (class, "audit action no longer recorded".to_owned())
            }
            (None, Some(_)) if vb.unwrap_or(0) != 0 => {
                let class = if good_up { ChangeClass::Improvement } else { ChangeClass::Regression };
                (class, "audit action new in this run".to_owned())
            }
            (Some(_), Some(_)) if va != vb => match (va, vb) {
                (Some(_), None) => (ChangeClass::Regression, "audit query failed".to_owned()),
                (None, Some(_)) => (ChangeClass::Improvement, "audit query works again".to_owned()),
                (Some(x), Some(y)) => {
                    let up = y > x;
                    let class = if up == good_up { ChangeClass::Improvement } else { ChangeClass::Regression };
                    (class, format!("{:+} rows", y - x))
                }
                (None, None) => continue,
            },
            _ => continue,
        };
        out.push(Change {
            before: delta_text(ca),
            after: delta_text(cb),
            note,
            ..change(class, Some(phase), &audit_label(sample), "audit.delta")
        });
    }
}

pub(super) fn compare_audit_errors(a: &RunStatus, b: &RunStatus, out: &mut Vec<Change>) {
    let (ea, eb) = (a.audit_errors.len(), b.audit_errors.len());
    if (ea == 0) == (eb == 0) {
        return;
    }
    let class = if eb > 0 { ChangeClass::Regression } else { ChangeClass::Improvement };
    out.push(Change {
        before: format!("{ea} errors"),
        after: format!("{eb} errors"),
        note: b.audit_errors.first().cloned().unwrap_or_default(),
        ..change(class, None, "audit", "audit.errors")
    });
}
