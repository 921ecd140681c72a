//! The team's log entries, generated from runs: the daily connectivity log entry, the weekly summary and
//! the status-table row (date, who, main changes, next action).
//!
//! These replace what the seed log shows being typed by hand: `| API | HTTP | メモ | 証跡 |` tables with
//! evidence paths, "PHR-06 went from 405 to 200" lines, investigation and contact (連絡先) blocks, TODO
//! checkboxes. Each entry is built from `status.json` plus the comparison with the previous run of the same
//! template and target ([`crate::compare::diff`]); the text comes from the tera views, so teams can restyle it.
//! Times are the operator's [`Zone`]; the audit state and open items come from [`crate::report::items`], so a
//! log entry says exactly what the run's own summary says.

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::compare::diff::{ChangeClass, DiffOptions, RunDiff};
use crate::compare::runindex::LoadedRun;
use crate::evidence::EvidenceLayout;
use crate::evidence::status::RunStatus;
use crate::report::clock::Zone;
use crate::report::history::{StatusMove, status_moves};
use crate::report::items::{self, AuditSummary, evidence_root};
use crate::report::wording;

/// One probe line of a log entry.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeLine {
    /// Probe id.
    pub id: String,
    /// Endpoint name.
    pub name: String,
    /// Phase id.
    pub phase: String,
    /// `200` or `000 tls_failure`.
    pub http: String,
    /// Ready or not.
    pub ready: bool,
    /// Template memo and, when not Ready, what went wrong.
    pub memo: String,
    /// Evidence folder of the probe, relative to the repository.
    pub evidence: String,
}

/// Context of the daily entry.
#[derive(Debug, Clone, Serialize)]
pub struct DailyEntry {
    /// The RUN_ID.
    pub run_id: String,
    /// Template name.
    pub template: String,
    /// Template description: the purpose (目的) of the run, not a claim of what was collected.
    pub description: String,
    /// Target name and base URL.
    pub target: String,
    /// Base URL.
    pub base_url: String,
    /// Date of the run in the operator's zone, `YYYY-MM-DD`.
    pub date: String,
    /// Time of the run in the operator's zone, `HH:MM JST`.
    pub time: String,
    /// Evidence folder.
    pub evidence: String,
    /// Every probe (serverinfo first).
    pub probes: Vec<ProbeLine>,
    /// `PHR-06=HTTP 200, ...` for the result line.
    pub codes: String,
    /// Ready count / probe count.
    pub ready: String,
    /// The audit state as the run's summary shows it (採取済み / 未採取 / 採取失敗, findings).
    pub audit: AuditSummary,
    /// The previous run of the same template and target, if any.
    pub previous: Option<String>,
    /// Probes whose HTTP code moved since `previous`.
    pub moves: Vec<StatusMove>,
    /// Regressions and improvements since `previous`, one line each.
    pub changes: Vec<String>,
    /// Open items (probes not Ready, audit failure and findings, preflight).
    pub open_items: Vec<String>,
    /// Contact lines (`役割: @who (#channel)`).
    pub contacts: Vec<String>,
}

fn probe_lines(status: &RunStatus) -> Vec<ProbeLine> {
    status
        .serverinfo
        .iter()
        .chain(&status.probes)
        .map(|p| {
            let mut memo = status.probe_memos.get(&p.id).cloned().unwrap_or_default();
            if !p.ready {
                let problem = wording::problem_ja(p);
                memo = if memo.is_empty() { problem } else { format!("{memo}: {problem}") };
            }
            let dump = EvidenceLayout::dump_link(&p.id, status.serverinfo.as_ref().is_some_and(|s| s.id == p.id));
            ProbeLine {
                id: p.id.clone(),
                name: p.name.clone(),
                phase: p.phase.clone(),
                http: p.http_code(),
                ready: p.ready,
                memo,
                evidence: format!("{}{dump}", evidence_root(status)),
            }
        })
        .collect()
}

/// Open items of a run, as the TODO lines of the logs (the same lines as the run's own open items).
pub fn open_items(status: &RunStatus) -> Vec<String> {
    items::open_items(status).into_iter().map(|i| i.text).collect()
}

fn change_lines(diff: &RunDiff) -> Vec<String> {
    diff.changes
        .iter()
        .filter(|c| c.class != ChangeClass::Neutral || c.aspect == "status")
        .map(|c| {
            let class = wording::change_class_ja(c.class.label());
            format!("{} {}: {} → {}（{class}）", c.subject, wording::aspect_ja(&c.aspect), c.before, c.after)
        })
        .collect()
}

/// The run before `run` with the same template and target, from `runs` (oldest first).
pub fn previous_of<'a>(runs: &'a [LoadedRun], run: &RunStatus) -> Option<&'a LoadedRun> {
    runs.iter()
        .rev()
        .filter(|r| r.status.run_id != run.run_id && r.status.started_at <= run.started_at)
        .find(|r| r.status.template == run.template && r.status.target == run.target)
}

/// Builds the daily entry for `run`, compared with `previous` when given; times in `zone`.
pub fn daily(run: &RunStatus, previous: Option<&RunStatus>, contacts: &[String], zone: Zone) -> DailyEntry {
    let probes = probe_lines(run);
    let diff = previous.map(|p| RunDiff::new((p, String::new()), (run, String::new()), DiffOptions::default()));
    DailyEntry {
        run_id: run.run_id.clone(),
        template: run.template.clone(),
        description: run.template_description.clone(),
        target: run.target.clone(),
        base_url: run.base_url.clone(),
        date: zone.date(run.started_at).to_string(),
        time: zone.time(run.started_at),
        evidence: evidence_root(run),
        codes: probes.iter().map(|p| format!("{}=HTTP {}", p.id, p.http)).collect::<Vec<_>>().join(", "),
        ready: format!("{}/{}", run.probes.iter().filter(|p| p.ready).count(), run.probes.len()),
        audit: AuditSummary::of(run),
        probes,
        previous: previous.map(|p| p.run_id.clone()),
        moves: previous.map(|p| status_moves(p, run)).unwrap_or_default(),
        changes: diff.as_ref().map(change_lines).unwrap_or_default(),
        open_items: open_items(run),
        contacts: contacts.to_vec(),
    }
}

/// The status-table row.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// Date of the run in the operator's zone.
    pub date: String,
    /// Who ran it / owns the row.
    pub who: String,
    /// Main changes since the previous run (or the result when there is none), with the audit state.
    pub changes: String,
    /// Next action.
    pub next: String,
    /// The RUN_ID, for the evidence reference.
    pub run_id: String,
}

/// Builds the status row for `run`; its date in `zone`.
pub fn status_row(run: &RunStatus, previous: Option<&RunStatus>, who: &str, zone: Zone) -> StatusRow {
    let moves = previous.map(|p| status_moves(p, run)).unwrap_or_default();
    let ready = run.probes.iter().filter(|p| p.ready).count();
    let mut changes: Vec<String> = moves.iter().map(|m| format!("{} {}→{}", m.probe, m.before, m.after)).collect();
    if let Some(previous) = previous {
        let diff = RunDiff::new((previous, String::new()), (run, String::new()), DiffOptions::default());
        changes.extend(
            diff.changes
                .iter()
                .filter(|c| c.aspect == "audit.delta")
                .map(|c| format!("監査 {} {}→{}", c.subject, c.before, c.after)),
        );
    }
    let result = format!("{ready}/{} API Ready、監査 {}", run.probes.len(), AuditSummary::of(run).short);
    if changes.is_empty() {
        changes.push(format!("{result}、前回から変化なし"));
    } else {
        changes.insert(0, result);
    }
    let items = items::open_items(run);
    let next = if items.is_empty() {
        "次回 RUN_ID で定常確認".to_owned()
    } else {
        format!("{} の対応", items.iter().map(|i| i.subject.as_str()).collect::<Vec<_>>().join(", "))
    };
    StatusRow {
        date: zone.date(run.started_at).to_string(),
        who: who.to_owned(),
        changes: changes.join("; "),
        next,
        run_id: run.run_id.clone(),
    }
}

/// One run in the weekly summary.
#[derive(Debug, Clone, Serialize)]
pub struct WeeklyRun {
    /// The RUN_ID.
    pub run_id: String,
    /// When it started, `2025-11-19 09:30 JST`.
    pub date: String,
    /// Template.
    pub template: String,
    /// Target.
    pub target: String,
    /// Ready / probes.
    pub ready: String,
    /// Collected and exactly as expected (false when not collected: read `audit` for why).
    pub audit_ok: bool,
    /// The audit state in a cell: 採取済み（期待どおり） / 採取済み・所見 n 件 / 未採取（監査 DB 未設定） / 採取失敗.
    pub audit: String,
    /// `PHR-06=HTTP 200, ...`.
    pub codes: String,
    /// Evidence folder.
    pub evidence: String,
}

/// The weekly summary (JSON and Markdown).
#[derive(Debug, Clone, Serialize)]
pub struct WeeklySummary {
    /// ISO week label, e.g. `2025-W47`.
    pub week: String,
    /// First day (Monday, operator's zone).
    pub from: String,
    /// Last day (Sunday, operator's zone).
    pub to: String,
    /// Runs of the week, newest first.
    pub runs: Vec<WeeklyRun>,
    /// Probes whose HTTP code moved during the week (first run of the week vs last, per template+target).
    pub moves: Vec<StatusMove>,
    /// Open items of the newest run of each template+target.
    pub open_items: Vec<String>,
}

fn weekly_run(s: &RunStatus, zone: Zone) -> WeeklyRun {
    WeeklyRun {
        run_id: s.run_id.clone(),
        date: zone.moment(s.started_at),
        template: s.template.clone(),
        target: s.target.clone(),
        ready: format!("{}/{}", s.probes.iter().filter(|p| p.ready).count(), s.probes.len()),
        audit_ok: s.audit_ok,
        audit: AuditSummary::of(s).short,
        codes: s.probes.iter().map(|p| format!("{}={}", p.id, p.http_code())).collect::<Vec<_>>().join(", "),
        evidence: evidence_root(s),
    }
}

/// Builds the weekly summary for the ISO week containing `day` (in `zone`), from all runs (oldest first).
pub fn weekly(runs: &[LoadedRun], day: NaiveDate, template: Option<&str>, zone: Zone) -> WeeklySummary {
    let week = day.iso_week();
    let monday = NaiveDate::from_isoywd_opt(week.year(), week.week(), chrono::Weekday::Mon).unwrap_or(day);
    let sunday = monday + chrono::Duration::days(6);
    let in_week: Vec<&LoadedRun> = runs
        .iter()
        .filter(|r| template.is_none_or(|t| r.status.template == t))
        .filter(|r| zone.date(r.status.started_at).iso_week() == week)
        .collect();
    let mut groups: Vec<(String, String)> = Vec::new();
    for r in &in_week {
        let key = (r.status.template.clone(), r.status.target.clone());
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    let mut moves = Vec::new();
    let mut items = Vec::new();
    for (template, target) in &groups {
        let group: Vec<&&LoadedRun> =
            in_week.iter().filter(|r| &r.status.template == template && &r.status.target == target).collect();
        if let (Some(first), Some(last)) = (group.first(), group.last()) {
            moves.extend(status_moves(&first.status, &last.status));
            items.extend(
                open_items(&last.status).into_iter().map(|i| format!("{} ({}): {i}", last.status.run_id, target)),
            );
        }
    }
    WeeklySummary {
        week: format!("{}-W{:02}", week.year(), week.week()),
        from: monday.to_string(),
        to: sunday.to_string(),
        runs: in_week.iter().rev().map(|r| weekly_run(&r.status, zone)).collect(),
        moves,
        open_items: items,
    }
}
