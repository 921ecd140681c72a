//! Running a parity run: one RUN_ID, the template against two targets, each side a sealed evidence tree.
//!
//! Probing is not re-implemented: each side goes through [`crate::run::execute`] exactly like `connrun run`,
//! in a scratch artifacts root inside the parity folder, and its sealed folder is then moved to
//! `<RUN_ID>/<target>/`. Both sides use the same RUN_ID, so their `X-Trace-Id` values (and audit rows)
//! match. Identities and plans for both targets are checked before the RUN_ID is claimed.

use std::path::{Path, PathBuf};

use crate::compare::parity::{ParityReport, ParitySettings, Side, compare, side_dir};
use crate::evidence::limits::DOCUMENT_PROBES;
use crate::evidence::runid::RunId;
use crate::evidence::{self, EvidenceError, EvidenceLayout, RunFolder};
use crate::plan::Plan;
use crate::plan::target::Target;
use crate::plan::template::Template;
use crate::report::Reports;
use crate::report::views::Views;
use crate::run::{self, RunOptions};

/// Why a parity run could not be completed (a side whose probes fail is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    /// A target whose name cannot be a folder inside the run.
    #[error("target name `{0}` cannot be used as a folder name")]
    FolderName(String),
    /// The parity RUN_ID could not be formed from the template's label.
    #[error(transparent)]
    RunId(#[from] crate::evidence::runid::RunIdError),
    /// A side's plan cannot be built.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// The parity folder could not be written.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// A side could not be run.
    #[error(transparent)]
    Run(#[from] run::RunError),
    /// The Markdown could not be rendered.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// The template has more probes than a parity run compares: the sides are compared from their records in
    /// memory, which a run keeps whole only up to `DOCUMENT_PROBES`.
    #[error(
        "template {template}: {probes} probes; a parity run compares at most {max} (split the template, or compare \
         two ordinary runs with `connrun diff`)"
    )]
    TooManyProbes {
        /// The template.
        template: String,
        /// Its probes.
        probes: usize,
        /// The bound.
        max: usize,
    },
}

/// Everything a parity run needs.
#[derive(Debug)]
pub struct ParityRequest<'a> {
    /// The artifacts root.
    pub artifacts: &'a Path,
    /// The loaded template.
    pub template: &'a Template,
    /// Its folder name (recorded in the reservation).
    pub template_name: &'a str,
    /// Reference target first, candidate second.
    pub targets: [&'a Target; 2],
    /// `--templates-dir` for the sides' Markdown.
    pub templates_dir: Option<&'a Path>,
    /// Concurrency inside a phase.
    pub jobs: usize,
    /// What to compare.
    /// Today in the operator's zone (`--tz`): the date of the parity RUN_ID, as for `connrun new`.
    pub date: chrono::NaiveDate,
    pub settings: &'a ParitySettings,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ParityError + '_ {
    move |source| ParityError::Evidence(EvidenceError::Io { path: path.to_owned(), source })
}

/// A target name usable as a folder name inside the run.
fn folder_name(name: &str) -> Result<&str, ParityError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok { Ok(name) } else { Err(ParityError::FolderName(name.to_owned())) }
}

/// Runs both sides, compares them, writes `parity.json` and `parity.md`, seals the folder.
pub async fn run(request: &ParityRequest<'_>, views: &Views) -> Result<(PathBuf, ParityReport), ParityError> {
    let template = request.template;
    let label = format!("{}Parity", template.label);
    let today = request.date;
    let probes = template.phases.iter().map(|p| p.probes.len()).sum::<usize>();
    if probes > DOCUMENT_PROBES {
        let (template, max) = (template.name.clone(), DOCUMENT_PROBES);
        return Err(ParityError::TooManyProbes { template, probes, max });
    }
    let provisional = RunId::label(today, &label, 1)?;
    let mut prepared = Vec::new();
    for target in request.targets {
        folder_name(&target.spec.name)?;
        Plan::build(template, target, &provisional)?;
        prepared.push(run::prepare(target)?);
    }
    let (run_id, _) = evidence::reserve_next(request.artifacts, &template.suite, request.template_name, today, &label)?;
    let (folder, _) = RunFolder::start(request.artifacts, &run_id)?;
    let mut statuses = Vec::new();
    for (target, prepared) in request.targets.iter().zip(&prepared) {
        let scratch = folder.dir().join(format!(".side-{}", target.spec.name));
        evidence::reserve_exact(&scratch, &template.suite, request.template_name, &run_id)?;
        let plan = Plan::build(template, target, &run_id)?;
        let (side_folder, _) = RunFolder::start(&scratch, &run_id)?;
        let options =
            RunOptions { jobs: request.jobs.max(1), progress: false, reports: Reports::load(request.templates_dir)? };
        let outcome = run::execute(&plan, prepared, side_folder, &options).await?;
        let destination = side_dir(folder.dir(), &target.spec.name);
        std::fs::rename(&outcome.dir, &destination).map_err(io(&destination))?;
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
        statuses.push((destination, outcome.status));
    }
    let sides: Vec<Side<'_>> = statuses
        .iter()
        .map(|(dir, status)| Side {
            dir,
            status,
            evidence: format!("artifacts/{}/{}/{}/", template.suite, run_id, status.target),
        })
        .collect();
    let report = compare(&sides[0], &sides[1], request.settings);
    let json = serde_json::to_vec_pretty(&report).map_err(|e| EvidenceError::Corrupt {
        path: folder.dir().join(EvidenceLayout::PARITY_JSON),
        message: e.to_string(),
    })?;
    folder.write(EvidenceLayout::PARITY_JSON, &json)?;
    folder.write(EvidenceLayout::PARITY_MD, views.render("parity.md.tera", &report)?.as_bytes())?;
    let dir = folder.finish()?;
    Ok((dir, report))
}
