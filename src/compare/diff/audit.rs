//! The audit trail between two runs: the state of the pull first, then each count against what the
//! template expects of it.
//!
//! A count is judged by its distance from the expectation, never by its direction: an extra success row is as
//! wrong as a missing one. So rows beyond the expectation ([`AuditCount::unexpected_rows`]) that grew are a
//! regression and that shrank an improvement, and the same for rows short of it; a count that moved while
//! staying exactly as expected is neutral. Counts are compared only when both runs collected their audit
//! trail; otherwise one state line says what happened ([`AuditState`]): a pull that newly failed is a
//! regression, one that works again an improvement, and a run without an audit database is shown as 未採取,
//! never compared as if its (empty) counts were fine.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Change, ChangeClass, change};
use crate::evidence::status::{AuditCount, AuditState, RunStatus};

/// The audit state of both runs, for the header of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditSides {
    /// The earlier run's state as the logs write it (採取済み / 未採取 / 採取失敗).
    pub before: String,
    /// The later run's state.
    pub after: String,
    /// Whether the counts were compared (only when both runs collected them).
    pub compared: bool,
}

impl AuditSides {
    /// The states of `a` and `b`.
    pub fn of(a: &RunStatus, b: &RunStatus) -> AuditSides {
        let (sa, sb) = (a.audit_state(), b.audit_state());
        AuditSides {
            before: sa.label_ja().to_owned(),
            after: sb.label_ja().to_owned(),
            compared: sa == AuditState::Collected && sb == AuditState::Collected,
        }
    }
}

/// The state line: only a change of state is reported (a failed pull in both runs is no change).
pub(super) fn compare_state(a: &RunStatus, b: &RunStatus, out: &mut Vec<Change>) {
    let (sa, sb) = (a.audit_state(), b.audit_state());
    let (class, note) = match (&sa, &sb) {
        (x, y) if x.key() == y.key() => return,
        (_, AuditState::Failed { reason }) => (ChangeClass::Regression, format!("監査行の採取に失敗（{reason}）")),
        (AuditState::Failed { .. }, AuditState::Collected) => {
            (ChangeClass::Improvement, "監査行を再び採取できた".to_owned())
        }
        (_, AuditState::NotConfigured) => {
            (ChangeClass::Neutral, "監査 DB が設定されていないため未採取（件数は比較していない）".to_owned())
        }
        (_, AuditState::Collected) => {
            (ChangeClass::Neutral, "監査行を採取した（比較元の実行には比較できる件数がない）".to_owned())
        }
    };
    out.push(Change {
        before: sa.label_ja().to_owned(),
        after: sb.label_ja().to_owned(),
        note,
        ..change(class, None, "audit", "audit.state")
    });
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
            Some(d) => format!("増分 {d}（期待 {}）", c.expected),
            None => format!("集計失敗（期待 {}）", c.expected),
        },
    }
}

/// How far a count is from its expectation: rows short of it (a count that is unknown is short by all it
/// expected) and rows beyond it.
fn distance(count: &AuditCount) -> (u64, u64) {
    let short = match count.delta {
        None => count.expected,
        Some(delta) => count.expected.saturating_sub(delta.max(0) as u64),
    };
    (short, count.unexpected_rows())
}

/// The count a run without this action and outcome stands for: nothing counted when the other run expected
/// rows (the action is no longer, or not yet, counted), else zero rows where none were expected.
fn absent_like(other: &AuditCount) -> AuditCount {
    let counted = other.expected == 0;
    AuditCount {
        before: counted.then_some(0),
        after: counted.then_some(0),
        delta: counted.then_some(0),
        ..other.clone()
    }
}

/// The class and note of one count's move, or None when it did not move.
fn judge(a: &AuditCount, b: &AuditCount) -> Option<(ChangeClass, String)> {
    let ((short_a, extra_a), (short_b, extra_b)) = (distance(a), distance(b));
    if extra_b > extra_a {
        let note = format!("テンプレートの期待より {extra_b} 行多い（前回 {extra_a} 行）");
        return Some((ChangeClass::Regression, note));
    }
    if short_b > short_a {
        let note = match b.delta {
            None => format!("集計できず: 期待 {} 行を 1 行も確認できていない", b.expected),
            Some(_) => format!("テンプレートの期待より {short_b} 行少ない（前回 {short_a} 行）"),
        };
        return Some((ChangeClass::Regression, note));
    }
    if extra_b < extra_a || short_b < short_a {
        let note = format!("期待に近づいた: 超過 {extra_a} → {extra_b} 行、不足 {short_a} → {short_b} 行");
        return Some((ChangeClass::Improvement, note));
    }
    (a.delta != b.delta || a.expected != b.expected)
        .then(|| (ChangeClass::Neutral, "件数は動いたが、両方の実行で期待どおり".to_owned()))
}

/// One phase's counts, matched by action and outcome (call only when both runs collected them).
pub(super) fn compare_audit(phase: &str, a: &[AuditCount], b: &[AuditCount], out: &mut Vec<Change>) {
    let key = |c: &AuditCount| (c.action.clone(), c.outcome.clone());
    let of = |counts: &[AuditCount]| -> BTreeMap<(String, Option<String>), AuditCount> {
        counts.iter().filter(|c| c.phase == phase).map(|c| (key(c), c.clone())).collect()
    };
    let (a, b) = (of(a), of(b));
    let keys: BTreeSet<&(String, Option<String>)> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (ca, cb) = (a.get(k), b.get(k));
        let (judged_a, judged_b) = match (ca, cb) {
            (Some(x), Some(y)) => (x.clone(), y.clone()),
            (Some(x), None) => (x.clone(), absent_like(x)),
            (None, Some(y)) => (absent_like(y), y.clone()),
            (None, None) => continue,
        };
        let Some((class, mut note)) = judge(&judged_a, &judged_b) else { continue };
        match (ca, cb) {
            (Some(_), None) => note.push_str("; 今回は集計されていない監査アクション"),
            (None, Some(_)) => note.push_str("; 今回から集計された監査アクション"),
            _ => {}
        }
        out.push(Change {
            before: delta_text(ca),
            after: delta_text(cb),
            note,
            ..change(class, Some(phase), &audit_label(&judged_a), "audit.delta")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DiffOptions, NoiseFloor, compare};
    use super::*;
    use crate::evidence::status::sample_status;

    fn count(outcome: &str, delta: Option<i64>, expected: u64) -> AuditCount {
        AuditCount {
            phase: "C".to_owned(),
            action: "PHR_EXPORT_STATUS".to_owned(),
            outcome: Some(outcome.to_owned()),
            before: delta.map(|_| 10),
            after: delta.map(|d| (10 + d).max(0) as u64),
            delta,
            expected,
        }
    }

    fn run(counts: Vec<AuditCount>, state: AuditState) -> RunStatus {
        let mut status = sample_status();
        status.audit = counts;
        status.audit_errors = match &state {
            AuditState::Failed { reason } => vec![reason.clone()],
            _ => Vec::new(),
        };
        status.audit_checked = state != AuditState::NotConfigured;
        status.audit_state = Some(state);
        status
    }

    fn audit_changes(a: &RunStatus, b: &RunStatus) -> Vec<(String, String, ChangeClass)> {
        let changes = compare(a, b, &DiffOptions::default(), &NoiseFloor::default());
        changes.into_iter().filter(|c| c.aspect.starts_with("audit")).map(|c| (c.subject, c.aspect, c.class)).collect()
    }

    fn one(subject: &str, aspect: &str, class: ChangeClass) -> Vec<(String, String, ChangeClass)> {
        vec![(subject.to_owned(), aspect.to_owned(), class)]
    }

    #[test]
    fn an_extra_success_row_is_a_regression_and_never_an_improvement() {
        let exact = run(vec![count("success", Some(1), 1)], AuditState::Collected);
        let extra = run(vec![count("success", Some(2), 1)], AuditState::Collected);
        let subject = "PHR_EXPORT_STATUS (success)";
        assert_eq!(audit_changes(&exact, &extra), one(subject, "audit.delta", ChangeClass::Regression));
        assert_eq!(audit_changes(&extra, &exact), one(subject, "audit.delta", ChangeClass::Improvement));
        let more_extra = run(vec![count("success", Some(3), 1)], AuditState::Collected);
        assert_eq!(audit_changes(&extra, &more_extra), one(subject, "audit.delta", ChangeClass::Regression));
    }

    #[test]
    fn rows_short_of_the_expectation_and_unexpected_failed_rows_are_regressions() {
        let exact = run(vec![count("success", Some(1), 1)], AuditState::Collected);
        let short = run(vec![count("success", Some(0), 1)], AuditState::Collected);
        let failed = run(vec![count("success", Some(1), 1), count("failed", Some(1), 0)], AuditState::Collected);
        let subject = "PHR_EXPORT_STATUS (success)";
        assert_eq!(audit_changes(&exact, &short), one(subject, "audit.delta", ChangeClass::Regression));
        assert_eq!(audit_changes(&short, &exact), one(subject, "audit.delta", ChangeClass::Improvement));
        let failed_subject = "PHR_EXPORT_STATUS (failed)";
        assert_eq!(audit_changes(&exact, &failed), one(failed_subject, "audit.delta", ChangeClass::Regression));
        assert_eq!(audit_changes(&failed, &exact), one(failed_subject, "audit.delta", ChangeClass::Improvement));
    }

    #[test]
    fn a_count_that_moved_while_exactly_as_expected_is_neutral_and_an_unmoved_one_is_silent() {
        let one_call = run(vec![count("success", Some(1), 1)], AuditState::Collected);
        let two_calls = run(vec![count("success", Some(2), 2)], AuditState::Collected);
        let subject = "PHR_EXPORT_STATUS (success)";
        assert_eq!(audit_changes(&one_call, &two_calls), one(subject, "audit.delta", ChangeClass::Neutral));
        let same_extra = run(vec![count("success", Some(2), 1)], AuditState::Collected);
        assert_eq!(audit_changes(&same_extra, &same_extra), vec![]);
    }

    #[test]
    fn a_pull_that_newly_fails_is_one_regression_and_counts_are_not_compared() {
        let collected = run(vec![count("success", Some(1), 1)], AuditState::Collected);
        let failed = run(vec![count("success", None, 1)], AuditState::Failed { reason: "refused".to_owned() });
        assert_eq!(audit_changes(&collected, &failed), one("audit", "audit.state", ChangeClass::Regression));
        assert_eq!(audit_changes(&failed, &collected), one("audit", "audit.state", ChangeClass::Improvement));
        assert_eq!(audit_changes(&failed, &failed), vec![], "still failing is no change");
    }

    #[test]
    fn not_configured_is_shown_as_not_collected_and_never_compared_as_ok() {
        let none = run(Vec::new(), AuditState::NotConfigured);
        let collected = run(vec![count("success", Some(1), 1)], AuditState::Collected);
        assert_eq!(audit_changes(&none, &none), vec![]);
        let sides = AuditSides::of(&none, &none);
        assert_eq!((sides.before.as_str(), sides.after.as_str(), sides.compared), ("未採取", "未採取", false));
        assert_eq!(audit_changes(&collected, &none), one("audit", "audit.state", ChangeClass::Neutral));
        assert_eq!(audit_changes(&none, &collected), one("audit", "audit.state", ChangeClass::Neutral));
        assert!(AuditSides::of(&collected, &collected).compared);
    }
}
