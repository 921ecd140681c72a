//! One run of `connrun run`: a template against one target, alone or as one row of a matrix
//! ([`crate::cli::matrix`]).
//!
//! Everything is validated before a RUN_ID is claimed or a request is sent: the RUN_ID and its reservation,
//! the template, the targets file, the target's secrets, the plan and the TLS identity. Then the run is
//! executed and sealed; a failed probe is in the outcome, an `Err` means the run could not be done.

use std::path::Path;

use crate::cli::args::GlobalArgs;
use crate::cli::error::CliError;
use crate::cli::output::{load_target, load_template};
use crate::evidence::runid::RunId;
use crate::evidence::{self, RunFolder, RunLocation};
use crate::plan::Plan;
use crate::report::Reports;
use crate::run::{self, RunOptions, RunOutcome};

/// One run of `connrun run`, alone or as one target of a matrix.
pub struct OneRun<'a> {
    /// A reserved (or new) RUN_ID; `None` allocates one from the template.
    pub run_id: Option<&'a str>,
    /// The template; required without a reserved RUN_ID.
    pub template: Option<&'a str>,
    /// The target name.
    pub target: &'a str,
    /// Probes of one phase at a time.
    pub jobs: u16,
    /// Label of an allocated RUN_ID; default the template's.
    pub label: Option<&'a str>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// Validates everything (template, target, secrets, plan, identity) before a RUN_ID is claimed, then runs
/// and seals. A failed probe is in the outcome; an `Err` means the run could not be done.
pub async fn run_one(global: &GlobalArgs, args: &OneRun<'_>) -> Result<RunOutcome, CliError> {
    let requested = args.run_id.map(str::parse::<RunId>).transpose()?;
    let location = match &requested {
        Some(run_id) => evidence::locate(&global.artifacts, run_id)?,
        None => None,
    };
    let template_name = match (&location, args.template) {
        (Some(RunLocation::Partial(dir)), given) => {
            let reserved = read_reserved_template(dir)?;
            if let Some(given) = given.filter(|g| *g != reserved) {
                return Err(CliError::Usage(format!("RUN_ID was reserved for template `{reserved}`, not `{given}`")));
            }
            reserved
        }
        (Some(RunLocation::Finished(dir)), _) => {
            return Err(CliError::Usage(format!(
                "{} already ran ({}); allocate a new RUN_ID",
                args.run_id.unwrap_or(""),
                dir.display()
            )));
        }
        (None, Some(template)) => template.to_owned(),
        (None, None) => {
            return Err(CliError::Usage(match &requested {
                Some(run_id) => format!(
                    "no reserved run {run_id} under {}; reserve it with `connrun new` or pass --template",
                    global.artifacts.display()
                ),
                None => "give a RUN_ID (from `connrun new`) or --template".to_owned(),
            }));
        }
    };
    let template = load_template(global, &template_name)?;
    let target = load_target(global, args.target)?;
    let label = args.label.map_or_else(|| template.label.clone(), str::to_owned);
    // Validate the plan with a provisional id before any RUN_ID is claimed.
    let provisional = requested.clone().map_or_else(|| RunId::label(global.tz.today(), &label, 1), Ok)?;
    Plan::build(&template, &target, &provisional)?;
    let prepared = run::prepare(&target)?;
    let reports = Reports::load(global.templates_dir.as_deref())?.with_settings(report_settings(global, &target));
    let run_id = match (requested, &location) {
        (Some(run_id), Some(_)) => run_id,
        (Some(run_id), None) => {
            evidence::reserve_exact(&global.artifacts, &template.suite, &template_name, &run_id)?;
            run_id
        }
        (None, _) => {
            evidence::reserve_next(&global.artifacts, &template.suite, &template_name, global.tz.today(), &label)?.0
        }
    };
    let plan = Plan::build(&template, &target, &run_id)?;
    let (folder, _) = RunFolder::start(&global.artifacts, &run_id)?;
    let options = RunOptions { jobs: usize::from(args.jobs), progress: args.progress, reports };
    Ok(run::execute(&plan, &prepared, folder, &options).await?)
}

/// How the run's Markdown is filled in: the operator's zone and the target's owner and contacts.
fn report_settings(global: &GlobalArgs, target: &crate::plan::target::Target) -> crate::report::ReportSettings {
    crate::report::ReportSettings {
        zone: global.tz,
        owner: target.spec.owner.clone(),
        contacts: target.spec.contacts.clone(),
    }
}

pub fn read_reserved_template(dir: &Path) -> Result<String, CliError> {
    let path = dir.join(evidence::RESERVATION_FILE);
    let text = std::fs::read(&path).map_err(|source| evidence::EvidenceError::Io { path: path.clone(), source })?;
    let reservation: evidence::Reservation =
        serde_json::from_slice(&text).map_err(|e| evidence::EvidenceError::Corrupt { path, message: e.to_string() })?;
    Ok(reservation.template)
}
