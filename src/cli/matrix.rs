//! `connrun run --target a --target b …`: one template against several targets, then one matrix.
//!
//! Each target gets the same complete run as `connrun run --target a` alone (its own RUN_ID, evidence,
//! audit state, seal), at most `--parallel-targets` at a time; a RUN_ID allocated concurrently is safe because
//! allocation takes the artifacts root's lock and claims with an atomic `create_dir`
//! ([`crate::evidence::runid`]). A target whose configuration, secrets or identity fail gets no RUN_ID and a
//! row saying why. Afterwards the matrix (targets × probes, [`crate::report::matrix`]) is written to
//! `<artifacts>/<suite>/matrix/<stamp>/matrix.md` and `matrix.html`, in a folder created new (never
//! overwriting an earlier matrix). Exit code: the worst target's (0, 1, or 2 when one could not run).
//! `connrun weekly --target a --target b` runs the weekly routine per target in turn and writes the same
//! matrix of the runs it made.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde_json::json;

use crate::cli::args::{GlobalArgs, RunArgs, WeeklyArgs};
use crate::cli::error::{CliError, Verdict};
use crate::cli::output::{emit, load_template};
use crate::cli::run_one::{OneRun, read_reserved_template, run_one};
use crate::cli::weekly;
use crate::compare::runindex::{self, LoadedRun};
use crate::evidence::runid::RunId;
use crate::evidence::status::RunStatus;
use crate::evidence::{self, EvidenceLayout, RunLocation, limits};
use crate::report::matrix::{self, Matrix, TargetResult};
use crate::report::views::Views;
use crate::run::RunOutcome;

/// Most `-2`, `-3`, … suffixes tried when a matrix folder's stamp is taken (several matrices in one second).
const MAX_STAMP_SUFFIX: u32 = 1000;

/// Runs the template against every `--target` and writes the matrix.
pub async fn run_targets(global: &GlobalArgs, args: &RunArgs, targets: &[String]) -> Result<Verdict, CliError> {
    check_targets(args, targets)?;
    let template_name = template_name(global, args)?;
    let template = load_template(global, &template_name)?;
    let parallel = usize::from(args.parallel_targets);
    eprintln!("connrun: {} targets, {parallel} at a time", targets.len());
    let results: Vec<(String, Result<RunOutcome, CliError>)> = futures::stream::iter(targets.iter().enumerate())
        .map(|(index, target)| {
            let one = OneRun {
                run_id: args.run_ids.get(index).map(String::as_str),
                template: Some(&template_name),
                target,
                jobs: args.jobs,
                label: args.label.as_deref(),
                progress: false,
            };
            async move {
                let result = run_one(global, &one).await;
                match &result {
                    Ok(outcome) => eprintln!(
                        "connrun: {target}: RUN_ID={} {}",
                        outcome.status.run_id,
                        if outcome.status.is_ok() { "OK" } else { "PROBLEM" }
                    ),
                    Err(error) => eprintln!("connrun: {target}: could not run: {error}"),
                }
                (target.clone(), result)
            }
        })
        .buffered(parallel)
        .collect()
        .await;
    // A run of more than 1,000 probes keeps only those not Ready in memory: its row is built from its sealed
    // status.json instead, so no Ready probe shows as absent.
    let whole: Vec<Option<Result<RunStatus, String>>> = results
        .iter()
        .map(|(_, result)| match result {
            Ok(outcome) if outcome.excerpt.is_some() => {
                Some(runindex::read_status(&outcome.dir).map_err(|e| e.to_string()))
            }
            _ => None,
        })
        .collect();
    let shown: Vec<(String, TargetResult<'_>)> = results
        .iter()
        .zip(&whole)
        .map(|((target, result), whole)| {
            let shown = match (result, whole) {
                (Ok(_), Some(Ok(status))) => TargetResult::Ran(status),
                (Ok(_), Some(Err(error))) => TargetResult::Failed(error.clone()),
                (Ok(outcome), None) => TargetResult::Ran(&outcome.status),
                (Err(error), _) => TargetResult::Failed(error.to_string()),
            };
            (target.clone(), shown)
        })
        .collect();
    let (matrix, md, html) = write_matrix(global, (&template_name, &template.suite), &shown)?;
    print(global, &matrix, &results, (&md, &html))?;
    Ok(match matrix.exit_code() {
        0 => Verdict::Ok,
        1 => Verdict::Problem,
        _ => Verdict::Incomplete,
    })
}

/// Builds the matrix of `template` (in `suite`) and writes it into a new matrix folder.
fn write_matrix(
    global: &GlobalArgs,
    (template, suite): (&str, &str),
    results: &[(String, TargetResult<'_>)],
) -> Result<(Matrix, PathBuf, PathBuf), CliError> {
    let dir = matrix_dir(&global.artifacts.join(suite))?;
    let folder = format!("{}/", dir.display());
    let matrix = matrix::build(template, suite, &folder, results, chrono::Utc::now(), global.tz);
    let (md, html) = write(global, &dir, &matrix)?;
    Ok((matrix, md, html))
}

/// `connrun weekly --target a --target b …`: the routine for each target in turn (one `connrun weekly`
/// child each, with its own RUN_ID, record and notice; in turn because they append to the same log), then
/// the matrix of their runs. Exit code: the worst child's.
pub fn weekly_targets(global: &GlobalArgs, args: &WeeklyArgs) -> Result<Verdict, CliError> {
    unique_targets(&args.target_names)?;
    let template = load_template(global, &args.template)?;
    let (jobs, retry) = (args.jobs.to_string(), args.notify_retry_ms.to_string());
    let log = args.log.as_ref().map(|l| l.display().to_string());
    let mut children = Vec::new();
    for target in &args.target_names {
        let mut child_args = vec![
            "weekly",
            "--target",
            target,
            "--template",
            &args.template,
            "--jobs",
            &jobs,
            "--notify-retry-ms",
            &retry,
        ];
        if let Some(log) = &log {
            child_args.extend(["--log", log]);
        }
        let child = weekly::child(global, &child_args)?;
        eprintln!("connrun: weekly {target}: exit {}", child.code);
        children.push((target.clone(), child));
    }
    let runs: Vec<(String, Result<LoadedRun, String>)> = children
        .iter()
        .map(|(target, child)| {
            let run = match child.json["run_id"].as_str() {
                Some(run_id) => runindex::load_verified(&global.artifacts, run_id).map_err(|e| e.to_string()),
                None => Err(child.json["error"]
                    .as_str()
                    .map_or_else(|| format!("weekly ended with exit {} without a run", child.code), str::to_owned)),
            };
            (target.clone(), run)
        })
        .collect();
    let shown: Vec<(String, TargetResult<'_>)> = runs
        .iter()
        .map(|(target, run)| match run {
            Ok(run) => (target.clone(), TargetResult::Ran(&run.status)),
            Err(error) => (target.clone(), TargetResult::Failed(error.clone())),
        })
        .collect();
    let (matrix, md, html) = write_matrix(global, (&args.template, &template.suite), &shown)?;
    let worst = children.iter().map(|(_, c)| c.code.clamp(0, 2)).max().unwrap_or(0);
    let mut text = format!("weekly {} ({} targets)\n", matrix.template, children.len());
    for ((target, child), row) in children.iter().zip(&matrix.rows) {
        let run = row.run_id.as_deref().unwrap_or("-");
        text.push_str(&format!("  {target:<20} exit {}  RUN_ID={run} {}\n", child.code, row.verdict_ja));
    }
    text.push_str(&format!("matrix: {}\n        {}\nresult: exit {worst}\n", md.display(), html.display()));
    let targets: Vec<serde_json::Value> = children
        .iter()
        .map(|(target, child)| json!({ "target": target, "exit_code": child.code, "weekly": child.json }))
        .collect();
    let value = json!({ "ok": worst == 0, "exit_code": worst, "matrix": md, "html": html, "targets": targets });
    emit(global, &value, &text)?;
    Ok(match worst {
        0 => Verdict::Ok,
        1 => Verdict::Problem,
        _ => Verdict::Incomplete,
    })
}

/// Refuses more than [`limits::MAX_MATRIX_TARGETS`] targets and a target given twice.
fn unique_targets(targets: &[String]) -> Result<(), CliError> {
    if targets.len() > limits::MAX_MATRIX_TARGETS {
        return Err(CliError::Usage(format!(
            "{} targets given; at most {} targets run in one matrix",
            targets.len(),
            limits::MAX_MATRIX_TARGETS
        )));
    }
    for (index, target) in targets.iter().enumerate() {
        if targets[..index].contains(target) {
            return Err(CliError::Usage(format!("target {target} given twice (--target or --group); each runs once")));
        }
    }
    Ok(())
}

/// [`unique_targets`], and RUN_IDs that pair with the targets.
fn check_targets(args: &RunArgs, targets: &[String]) -> Result<(), CliError> {
    unique_targets(targets)?;
    if !args.run_ids.is_empty() && args.run_ids.len() != targets.len() {
        return Err(CliError::Usage(format!(
            "{} RUN_IDs for {} targets: give one reserved RUN_ID per target, in the same order, or none and \
             --template",
            args.run_ids.len(),
            targets.len()
        )));
    }
    Ok(())
}

/// `--template`, or the template the first RUN_ID was reserved for (every run of a matrix is of one
/// template: a RUN_ID reserved for another is refused in its row).
fn template_name(global: &GlobalArgs, args: &RunArgs) -> Result<String, CliError> {
    if let Some(name) = &args.template {
        return Ok(name.clone());
    }
    let Some(first) = args.run_ids.first() else {
        return Err(CliError::Usage("give --template, or one reserved RUN_ID per --target".to_owned()));
    };
    let run_id: RunId = first.parse()?;
    match evidence::locate(&global.artifacts, &run_id)? {
        Some(RunLocation::Partial(dir)) => read_reserved_template(&dir),
        _ => Err(CliError::Usage(format!(
            "{run_id} is not a reserved run under {}; reserve it with `connrun new` or pass --template",
            global.artifacts.display()
        ))),
    }
}

/// Creates `<suite>/matrix/<stamp>/` new: the UTC second's stamp, or `<stamp>-2`, `-3`, … when taken.
fn matrix_dir(suite_dir: &Path) -> Result<PathBuf, CliError> {
    let stamp = RunId::timestamp_now().to_string();
    let base = suite_dir.join(EvidenceLayout::matrix_dir(&stamp));
    if let Some(parent) = base.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|source| evidence::EvidenceError::Io { path: parent.to_owned(), source })?;
    }
    for n in 1..=MAX_STAMP_SUFFIX {
        let dir = if n == 1 { base.clone() } else { base.with_file_name(format!("{stamp}-{n}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(evidence::EvidenceError::Io { path: dir, source }.into()),
        }
    }
    Err(CliError::Usage(format!("{}: {MAX_STAMP_SUFFIX} matrices in one second already", base.display())))
}

/// Writes `matrix.md` and `matrix.html` into the new folder (created new: nothing is overwritten).
fn write(global: &GlobalArgs, dir: &Path, matrix: &Matrix) -> Result<(PathBuf, PathBuf), CliError> {
    let views = Views::load(global.templates_dir.as_deref())?;
    let md = dir.join(EvidenceLayout::MATRIX_MD);
    let html = dir.join(EvidenceLayout::MATRIX_HTML);
    for (path, view) in [(&md, "matrix.md.tera"), (&html, "matrix.html.tera")] {
        let text = views.render(view, matrix)?;
        let io = |source| evidence::EvidenceError::Io { path: path.clone(), source };
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    }
    Ok((md, html))
}

/// Prints one line per target and where the matrix is, or the JSON document.
fn print(
    global: &GlobalArgs,
    matrix: &Matrix,
    results: &[(String, Result<RunOutcome, CliError>)],
    (md, html): (&Path, &Path),
) -> Result<(), CliError> {
    let mut text = format!("matrix {} ({} targets)\n", matrix.template, matrix.rows.len());
    let mut targets = Vec::new();
    for (target, result) in results {
        match result {
            Ok(outcome) => {
                let ok = outcome.status.is_ok();
                text.push_str(&format!(
                    "  {target:<20} RUN_ID={} {}  evidence: {}\n",
                    outcome.status.run_id,
                    if ok { "OK" } else { "PROBLEM" },
                    outcome.dir.display()
                ));
                targets.push(json!({
                    "target": target, "run_id": outcome.status.run_id, "ok": ok, "evidence": outcome.dir,
                    "exit_code": u8::from(!ok),
                }));
            }
            Err(error) => {
                text.push_str(&format!("  {target:<20} could not run: {error}\n"));
                targets.push(json!({ "target": target, "ok": false, "exit_code": 2, "error": error.to_string() }));
            }
        }
    }
    text.push_str(&format!("matrix: {}\n        {}\n", md.display(), html.display()));
    text.push_str(match matrix.exit_code() {
        0 => "result: OK\n",
        1 => "result: PROBLEM\n",
        _ => "result: ERROR (a target could not run)\n",
    });
    let value = json!({
        "ok": matrix.exit_code() == 0, "exit_code": matrix.exit_code(), "template": matrix.template,
        "matrix": md, "html": html, "targets": targets,
    });
    emit(global, &value, &text)
}
