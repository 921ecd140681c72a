//! The matrix of one template run against several targets: one row per target, one column per probe, each
//! cell the probe's status linking to that target's own evidence.
//!
//! The ops team runs the same template against every clinic each week, and the question is "which clinic,
//! which API": a table of N separate run memos does not show it at a glance. Every target's run stays an
//! ordinary, complete, sealed run (its own RUN_ID, evidence and audit state); this page only points at them.
//! A target that could not run at all (its configuration or identity failed) is a row that says why, never a
//! missing row, so the matrix never looks greener than what was checked. Links are relative to the matrix
//! folder `artifacts/<suite>/matrix/<stamp>/`, so the folder can be opened or copied with its suite.

use serde::Serialize;

use crate::evidence::status::RunStatus;
use crate::evidence::{EvidenceLayout, ProbeRecord};
use crate::report::clock::Zone;
use crate::report::items::AuditSummary;
use crate::report::wording;

/// What happened to one target.
#[derive(Debug, Clone)]
pub enum TargetResult<'a> {
    /// The run completed and was sealed (its probes may still have failed: that is data).
    Ran(&'a RunStatus),
    /// The run could not start or complete: configuration, secrets, identity, evidence. The text says why.
    Failed(String),
}

/// One probe column, in template order (server info first).
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// Probe id, e.g. `PHR-06`.
    pub id: String,
    /// Endpoint name.
    pub name: String,
}

/// One cell: a probe's status for one target.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The column's probe id, so a line about the cell can name it.
    pub probe: String,
    /// `ready`, `not-ready` or `absent` (the probe was not in this target's run), also the HTML class.
    pub state: &'static str,
    /// `Ready 200`, `NG 401`, `NG 000 connection_refused`, or `-`.
    pub text: String,
    /// What went wrong, in Japanese (empty when Ready or absent).
    pub problem: String,
    /// The probe's dump folder, relative to the matrix folder; `None` when absent.
    pub link: Option<String>,
}

/// One row: one target.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Target name.
    pub target: String,
    /// Its RUN_ID; `None` when the run never got one.
    pub run_id: Option<String>,
    /// `ok` (everything as expected), `problem` (a probe, preflight or audit found one), `error` (no run).
    pub verdict: &'static str,
    /// `OK`, `要対応`, `実行できず`.
    pub verdict_ja: &'static str,
    /// Why the run could not be done, when `verdict` is `error`.
    pub error: Option<String>,
    /// `OK`, or `NG（tcp_tls, basic）` naming the failed checks; `-` without a run.
    pub preflight: String,
    /// `3/3` Ready probes; `-` without a run.
    pub ready: String,
    /// The audit cell (採取済み（期待どおり） / 未採取 / 採取失敗 …); `-` without a run.
    pub audit: String,
    /// The run memo `logs/summary.md`, relative to the matrix folder.
    pub summary_link: Option<String>,
    /// The run folder, relative to the matrix folder.
    pub evidence_link: Option<String>,
    /// One cell per column.
    pub cells: Vec<Cell>,
}

/// The whole matrix: what `matrix.md.tera` and `matrix.html.tera` see.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Template name.
    pub template: String,
    /// Suite folder (where the runs and the matrix live).
    pub suite: String,
    /// When the matrix was written, in the operator's zone.
    pub created: String,
    /// `artifacts/<suite>/matrix/<stamp>/`, for the text.
    pub folder: String,
    /// Probe columns, the union over every run, in template order.
    pub columns: Vec<Column>,
    /// One row per target, in the order given.
    pub rows: Vec<Row>,
    /// Targets whose run completed with everything as expected.
    pub ok: usize,
    /// Targets with a problem.
    pub problems: usize,
    /// Targets that could not run.
    pub errors: usize,
    /// Columns an error row's message spans (preflight, Ready, audit and every probe).
    pub error_span: usize,
}

impl Matrix {
    /// The exit code of the whole: 2 when a target could not run, 1 when one found a problem, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.errors > 0 { 2 } else { u8::from(self.problems > 0) }
    }
}

/// Builds the matrix of `template` in `suite` from each target's result, in the order given; `folder` is
/// the matrix folder as shown (`artifacts/<suite>/matrix/<stamp>/`).
pub fn build(
    template: &str,
    suite: &str,
    folder: &str,
    results: &[(String, TargetResult<'_>)],
    now: chrono::DateTime<chrono::Utc>,
    zone: Zone,
) -> Matrix {
    let mut columns: Vec<Column> = Vec::new();
    for (_, result) in results {
        if let TargetResult::Ran(status) = result {
            for probe in all_probes(status) {
                if !columns.iter().any(|c| c.id == probe.id) {
                    columns.push(Column { id: probe.id.clone(), name: probe.name.clone() });
                }
            }
        }
    }
    let rows: Vec<Row> = results.iter().map(|(target, result)| row(target, result, &columns)).collect();
    let count = |verdict: &str| rows.iter().filter(|r| r.verdict == verdict).count();
    Matrix {
        template: template.to_owned(),
        suite: suite.to_owned(),
        created: zone.moment(now),
        folder: folder.to_owned(),
        ok: count("ok"),
        problems: count("problem"),
        errors: count("error"),
        error_span: columns.len() + 3,
        columns,
        rows,
    }
}

fn all_probes(status: &RunStatus) -> impl Iterator<Item = &ProbeRecord> {
    status.serverinfo.iter().chain(&status.probes)
}

/// The run folder `artifacts/<suite>/<RUN_ID>/` seen from `artifacts/<suite>/matrix/<stamp>/`.
fn run_link(status: &RunStatus) -> String {
    format!("../../{}/", status.run_id)
}

fn row(target: &str, result: &TargetResult<'_>, columns: &[Column]) -> Row {
    let status = match result {
        TargetResult::Failed(error) => {
            return Row {
                target: target.to_owned(),
                run_id: None,
                verdict: "error",
                verdict_ja: "実行できず",
                error: Some(error.clone()),
                preflight: "-".to_owned(),
                ready: "-".to_owned(),
                audit: "-".to_owned(),
                summary_link: None,
                evidence_link: None,
                cells: columns.iter().map(|c| absent(&c.id)).collect(),
            };
        }
        TargetResult::Ran(status) => *status,
    };
    let failed: Vec<&str> = status.preflight.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    let ok = status.is_ok();
    let root = run_link(status);
    Row {
        target: target.to_owned(),
        run_id: Some(status.run_id.clone()),
        verdict: if ok { "ok" } else { "problem" },
        verdict_ja: if ok { "OK" } else { "要対応" },
        error: None,
        preflight: if failed.is_empty() { "OK".to_owned() } else { format!("NG（{}）", failed.join(", ")) },
        ready: format!("{}/{}", status.probes.iter().filter(|p| p.ready).count(), status.probes.len()),
        audit: AuditSummary::of(status).short,
        summary_link: Some(format!("{root}{}", EvidenceLayout::SUMMARY)),
        evidence_link: Some(root.clone()),
        cells: columns
            .iter()
            .map(|column| match all_probes(status).find(|p| p.id == column.id) {
                Some(probe) => cell(probe, &root, status.serverinfo.as_ref().is_some_and(|s| s.id == probe.id)),
                None => absent(&column.id),
            })
            .collect(),
    }
}

fn cell(probe: &ProbeRecord, root: &str, is_serverinfo: bool) -> Cell {
    Cell {
        probe: probe.id.clone(),
        state: if probe.ready { "ready" } else { "not-ready" },
        text: if probe.ready { format!("Ready {}", probe.http_code()) } else { format!("NG {}", probe.http_code()) },
        problem: if probe.ready { String::new() } else { wording::problem_ja(probe) },
        link: Some(format!("{root}{}", EvidenceLayout::dump_link(&probe.id, is_serverinfo))),
    }
}

fn absent(probe: &str) -> Cell {
    Cell { probe: probe.to_owned(), state: "absent", text: "-".to_owned(), problem: String::new(), link: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::status::sample_status;

    #[test]
    fn a_target_that_could_not_run_is_a_row_with_its_reason_and_the_worst_exit_code() {
        let good = sample_status();
        let mut bad = sample_status();
        bad.run_id = "20251119TorcaPHRSeqZ2".to_owned();
        bad.probes[0].ready = false;
        let results = vec![
            ("clinic-a".to_owned(), TargetResult::Ran(&good)),
            ("clinic-b".to_owned(), TargetResult::Ran(&bad)),
            ("clinic-c".to_owned(), TargetResult::Failed("no target named `clinic-c`".to_owned())),
        ];

        let matrix =
            build("phr-seq", "orca", "artifacts/orca/matrix/x/", &results, chrono::Utc::now(), Zone::default());

        assert_eq!(matrix.rows.len(), 3);
        assert_eq!(
            (matrix.ok, matrix.problems, matrix.errors),
            (usize::from(good.is_ok()), 2 - usize::from(good.is_ok()), 1)
        );
        assert_eq!(matrix.exit_code(), 2);
        let c = &matrix.rows[2];
        assert_eq!((c.verdict, c.run_id.as_deref()), ("error", None));
        assert!(c.error.as_deref().is_some_and(|e| e.contains("clinic-c")));
        assert_eq!(c.cells.len(), matrix.columns.len());
        let b = &matrix.rows[1];
        let first = matrix.columns.iter().position(|col| col.id == bad.probes[0].id).expect("column");
        assert_eq!(b.cells[first].state, "not-ready");
        assert_eq!(
            b.cells[first].link.as_deref(),
            Some(format!("../../20251119TorcaPHRSeqZ2/httpdump/{}/", bad.probes[0].id).as_str())
        );
    }
}
