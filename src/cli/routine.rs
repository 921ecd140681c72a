//! The commands of the weekly routine around a run: `diff`, `parity`, `history` (a table, or with `--html` the
//! trends page), `report html|daily|weekly|status-row`, `archive`, and `verify <ARCHIVE>`.
//!
//! Their clap arguments are in [`crate::cli::args`] with every other command's. Inputs are always sealed runs,
//! checked against their manifests first ([`crate::compare::runindex`]: `status.json` re-hashed, every other
//! listed file by the stat recorded at the seal or re-hashed), so a report is never produced from evidence
//! that changed after the run. Every kind of run the tool makes is accepted or refused with a
//! sentence: `diff` and `report` take one side of a parity run as `<RUN_ID>/<target>`, `archive` packs a
//! parity run whole.

use std::path::Path;

use serde_json::json;

use crate::cli::args::{AppendArgs, ArchiveArgs, DiffArgs, GlobalArgs, HistoryArgs, ParityArgs, ReportCommand};
use crate::cli::error::{CliError, Verdict};
use crate::cli::output::{emit, load_target, load_template};
use crate::compare::diff::{DiffOptions, RunDiff};
use crate::compare::runindex::{self, LoadedRun};
use crate::evidence::status::RunStatus;
use crate::report::append::{Anchor, AppendOutcome, EntryKind};
use crate::report::html::RunLatency;
use crate::report::views::Views;

fn views(global: &GlobalArgs) -> Result<Views, CliError> {
    Ok(Views::load(global.templates_dir.as_deref())?)
}

/// A run given as RUN_ID, as `<RUN_ID>/<target>` (one side of a parity run) or as a sealed folder path,
/// verified. A bare parity RUN_ID is refused with a sentence naming its sides.
fn load(global: &GlobalArgs, run: &str) -> Result<LoadedRun, CliError> {
    let path = Path::new(run);
    if run.contains(['/', '\\']) && path.is_dir() {
        return Ok(runindex::load_verified_dir(path)?);
    }
    Ok(runindex::load_verified(&global.artifacts, run)?)
}

/// Two runs loaded side by side, each on a thread of its own: a load is a check of the folder against its
/// manifest and a parse of its `status.json`, so two take about the time of one on two cores. The first
/// run's error is reported when both fail, as when they were loaded in turn.
fn load_pair(global: &GlobalArgs, a: &str, b: &str) -> Result<(LoadedRun, LoadedRun), CliError> {
    std::thread::scope(|scope| {
        let first = scope.spawn(|| load(global, a));
        let second = load(global, b);
        let first = first.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((first?, second?))
    })
}

/// How many earlier runs of the same template and target measure the latency noise for `diff`.
const NOISE_RUNS: usize = 10;

/// `connrun diff`.
pub fn diff(global: &GlobalArgs, args: &DiffArgs) -> Result<Verdict, CliError> {
    let (before, after) = match (&args.run_a, &args.run_b) {
        (Some(a), Some(b)) if !args.latest => load_pair(global, a, b)?,
        _ => runindex::latest_pair(&global.artifacts, args.template.as_deref())?,
    };
    if !args.allow_mismatch {
        crate::compare::diff::comparable(&before.status, &after.status).map_err(CliError::Usage)?;
    }
    let options = DiffOptions {
        latency_ratio: args.latency_ratio,
        latency_min_ms: args.latency_min_ms,
        cert_min_days: args.cert_min_days,
    };
    let shown = |run: &LoadedRun| crate::cli::output::absolute(&run.dir).display().to_string();
    let kind = (after.status.template.as_str(), after.status.target.as_str());
    let found = runindex::runs_of(&global.artifacts, kind, before.status.started_at, &[&before.dir, &after.dir])?;
    let mut noise = crate::compare::diff::NoiseAccumulator::default();
    visit_newest(&found, &[&before, &after], &after.status.run_id, NOISE_RUNS, |run| noise.add(run));
    let noise = noise.finish();
    let diff = RunDiff::with_noise((&before.status, shown(&before)), (&after.status, shown(&after)), options, &noise);
    let text = views(global)?.render("diff.md.tera", &diff)?;
    emit(global, &serde_json::to_value(&diff).unwrap_or_default(), &text)?;
    Ok(Verdict::from_ok(!diff.has_regression()))
}

/// `connrun history`.
pub fn history(global: &GlobalArgs, args: &HistoryArgs) -> Result<Verdict, CliError> {
    if let Some(output) = &args.html {
        let (runs, skipped) = runindex::all_runs(&global.artifacts)?;
        for problem in &skipped {
            eprintln!("connrun history: skipped: {problem}");
        }
        return history_html(global, args, &runs, output);
    }
    // One run at a time: the table keeps a row per run and one status per template and target.
    let mut rows = crate::report::history::Rows::new(args.template.as_deref(), global.tz);
    runindex::each_run(&global.artifacts, |run| match run {
        Ok(run) => rows.push(run.status),
        Err(problem) => eprintln!("connrun history: skipped: {problem}"),
    })?;
    let rows = rows.finish(args.last.map(usize::from));
    let text = views(global)?.render("history.md.tera", &json!({ "rows": rows }))?;
    emit(global, &json!({ "runs": rows }), &text)?;
    Ok(Verdict::Ok)
}

/// `connrun history --html FILE`: the trends page, the newest `--last` runs of each template and target.
fn history_html(
    global: &GlobalArgs,
    args: &HistoryArgs,
    runs: &[LoadedRun],
    output: &Path,
) -> Result<Verdict, CliError> {
    let last = args.last.map_or(crate::evidence::limits::DEFAULT_TREND_RUNS, usize::from);
    let page = crate::report::trends::page(runs, args.template.as_deref(), last, global.tz);
    let html = views(global)?.render("history.html.tera", &page)?;
    std::fs::write(output, html.as_bytes())
        .map_err(|source| crate::evidence::EvidenceError::Io { path: output.to_owned(), source })?;
    let charts: usize = page.groups.iter().map(|g| g.probes.len()).sum();
    let text = format!("{} ({} template/target groups, {charts} probe charts)\n", output.display(), page.groups.len());
    emit(global, &json!({ "html": output, "groups": page.groups.len(), "charts": charts }), &text)?;
    Ok(Verdict::Ok)
}

/// `connrun archive`: any sealed run, ordinary or parity (packed whole, both sides and the comparison).
pub fn archive(global: &GlobalArgs, args: &ArchiveArgs) -> Result<Verdict, CliError> {
    let dir = runindex::sealed_dir(&global.artifacts, &args.run_id)?;
    let output = args.output.clone().unwrap_or_else(|| crate::compare::archive::default_output(&dir));
    let summary = crate::compare::archive::create(&dir, &output)?;
    let text = format!("{} ({} files, {} bytes)\n", summary.archive.display(), summary.files, summary.bytes);
    emit(global, &serde_json::to_value(&summary).unwrap_or_default(), &text)?;
    Ok(Verdict::Ok)
}

/// `connrun verify <ARCHIVE>`: like folder verification, exit 1 on the first difference.
pub fn verify_archive(global: &GlobalArgs, archive: &str) -> Result<Verdict, CliError> {
    let report = crate::compare::archive::verify_archive(Path::new(archive))?;
    let text = match &report.first_mismatch {
        None => format!("OK: {} files match the manifest in {archive}\n", report.files_listed),
        Some(mismatch) => format!("MISMATCH in {archive}: {mismatch}\n"),
    };
    emit(global, &serde_json::to_value(&report).unwrap_or_default(), &text)?;
    Ok(Verdict::from_ok(report.first_mismatch.is_none()))
}

/// `connrun report ...`.
pub fn report(global: &GlobalArgs, command: &ReportCommand) -> Result<Verdict, CliError> {
    match command {
        ReportCommand::Html { run_id, output } => report_html(global, run_id, output.as_deref()),
        ReportCommand::Daily { run_id, contacts, append } => {
            let (run, runs) = with_history(global, run_id)?;
            let previous = crate::report::logs::previous_of(&runs, &run.status).map(|r| &r.status);
            let entry = crate::report::logs::daily(&run.status, previous, contacts, global.tz);
            let text = views(global)?.render("daily.md.tera", &entry)?;
            deliver(global, &serde_json::to_value(&entry).unwrap_or_default(), &text, append, "daily", EntryKind::Block)
        }
        ReportCommand::Weekly { date, template, append } => {
            let (runs, _) = runindex::all_runs(&global.artifacts)?;
            let day = match date {
                Some(text) => chrono::NaiveDate::parse_from_str(text, "%Y%m%d")
                    .map_err(|_| CliError::Usage(format!("--date `{text}` is not YYYYMMDD, e.g. 20251119")))?,
                None => global.tz.today(),
            };
            let summary = crate::report::logs::weekly(&runs, day, template.as_deref(), global.tz);
            let text = views(global)?.render("weekly.md.tera", &summary)?;
            deliver(
                global,
                &serde_json::to_value(&summary).unwrap_or_default(),
                &text,
                append,
                "weekly",
                EntryKind::Block,
            )
        }
        ReportCommand::StatusRow { run_id, who, append } => {
            let (run, runs) = with_history(global, run_id)?;
            let previous = crate::report::logs::previous_of(&runs, &run.status).map(|r| &r.status);
            let who = who.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "-".to_owned());
            let row = crate::report::logs::status_row(&run.status, previous, &who, global.tz);
            let text = views(global)?.render("status_row.md.tera", &row)?;
            deliver(
                global,
                &serde_json::to_value(&row).unwrap_or_default(),
                &text,
                append,
                "status",
                EntryKind::TableRow,
            )
        }
    }
}

/// The run (verified) and every finished run (oldest first) for comparisons with earlier runs.
fn with_history(global: &GlobalArgs, run_id: &str) -> Result<(LoadedRun, Vec<LoadedRun>), CliError> {
    let run = load(global, run_id)?;
    let (runs, _) = runindex::all_runs(&global.artifacts)?;
    Ok((run, runs))
}

/// Prints the entry, or inserts it into the `--append` file.
fn deliver(
    global: &GlobalArgs,
    value: &serde_json::Value,
    text: &str,
    append: &AppendArgs,
    kind_name: &str,
    kind: EntryKind,
) -> Result<Verdict, CliError> {
    let Some(file) = &append.append else {
        emit(global, value, text)?;
        return Ok(Verdict::Ok);
    };
    let anchor = match (&append.under, &append.marker) {
        (Some(heading), _) => Anchor::Heading(heading.clone()),
        (None, Some(marker)) => Anchor::Marker(marker.clone()),
        (None, None) => Anchor::Marker(format!("<!-- connrun:{kind_name} -->")),
    };
    let outcome = crate::report::append::append_to_file(file, text, &anchor, kind)?;
    let message = match outcome {
        AppendOutcome::Inserted => format!("inserted into {}\n", file.display()),
        AppendOutcome::AlreadyPresent => format!("already present in {}; left unchanged\n", file.display()),
    };
    emit(global, &json!({ "file": file, "inserted": outcome == AppendOutcome::Inserted, "entry": value }), &message)?;
    Ok(Verdict::Ok)
}

fn report_html(global: &GlobalArgs, run_id: &str, output: Option<&Path>) -> Result<Verdict, CliError> {
    let run = load(global, run_id)?;
    let kind = (run.status.template.as_str(), run.status.target.as_str());
    let found = runindex::runs_of(&global.artifacts, kind, run.status.started_at, &[&run.dir])?;
    let mut series = Vec::with_capacity(CHART_RUNS);
    visit_newest(&found, &[&run], &run.status.run_id, CHART_RUNS - 1, |earlier| series.push(RunLatency::of(earlier)));
    series.reverse();
    series.push(RunLatency::of(&run.status));
    let output = output.map_or_else(|| default_html(&run), Path::to_path_buf);
    let written = crate::report::html_pages::write(&views(global)?, &run.status, &series, global.tz, &output)?;
    let pages = &written[1..];
    let text = match pages.len() {
        0 => format!("{}\n", output.display()),
        n => format!("{} (summary; the probes on {n} pages beside it, {}…)\n", output.display(), pages[0].display()),
    };
    emit(global, &json!({ "html": output, "pages": pages }), &text)?;
    Ok(Verdict::Ok)
}

/// Runs the latency chart of `report html` shows, this one included.
const CHART_RUNS: usize = 20;

/// Hands `visit` the statuses of the newest `count` runs of `found` (newest first) other than `exclude`: the
/// caller's own (`held`) from memory, every other one read and dropped in turn, so a look back over large
/// runs holds one of them at a time. A run whose `status.json` changed after its seal, or cannot be read, is
/// left out with a line on standard error naming it and why.
fn visit_newest(
    found: &[runindex::Found],
    held: &[&LoadedRun],
    exclude: &str,
    count: usize,
    mut visit: impl FnMut(&RunStatus),
) {
    let mut visited = 0;
    for run in found.iter().rev() {
        if visited == count {
            break;
        }
        let read;
        let status = match run {
            runindex::Found::Held(index) => &held[*index].status,
            runindex::Found::Other(dir) => match runindex::read_sealed_status(dir) {
                Ok(status) => {
                    read = status;
                    &read
                }
                Err(error) => {
                    eprintln!("connrun: an earlier run was left out of the comparison: {error}");
                    continue;
                }
            },
        };
        if status.run_id != exclude {
            visit(status);
            visited += 1;
        }
    }
}

/// `<suite folder>/<RUN_ID>.html` next to the run; for a side of a parity run `<RUN_ID>-<target>.html` next to
/// the parity run, because a file written inside its sealed folder would break the seal.
fn default_html(run: &LoadedRun) -> std::path::PathBuf {
    match &run.parity {
        Some(parity) => {
            let parity_id = parity.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            parity.with_file_name(format!("{parity_id}-{}.html", run.status.target))
        }
        None => run.dir.with_file_name(format!("{}.html", run.status.run_id)),
    }
}

/// `connrun parity`.
pub async fn parity(global: &GlobalArgs, args: &ParityArgs) -> Result<Verdict, CliError> {
    let [left, right] = args.sides.as_slice() else {
        return Err(CliError::Usage(format!("give --target exactly twice (got {})", args.sides.len())));
    };
    if left == right {
        return Err(CliError::Usage(format!("--target {left} given twice; parity compares two different targets")));
    }
    let template = load_template(global, &args.template)?;
    let targets = [load_target(global, left)?, load_target(global, right)?];
    let settings = crate::compare::parity::ParitySettings {
        headers: if args.headers.is_empty() {
            vec!["content-type".to_owned()]
        } else {
            args.headers.iter().map(|h| h.to_ascii_lowercase()).collect()
        },
        ignore: args.ignore.clone(),
    };
    let request = crate::run::parity::ParityRequest {
        artifacts: &global.artifacts,
        template: &template,
        template_name: &args.template,
        targets: [&targets[0], &targets[1]],
        templates_dir: global.templates_dir.as_deref(),
        jobs: usize::from(args.jobs),
        settings: &settings,
        date: global.tz.today(),
    };
    let (dir, report) = crate::run::parity::run(&request, &views(global)?).await?;
    let text = std::fs::read_to_string(dir.join(crate::evidence::EvidenceLayout::PARITY_MD)).unwrap_or_default();
    emit(global, &json!({ "evidence": dir, "parity": report }), &format!("evidence: {}\n\n{text}", dir.display()))?;
    Ok(Verdict::from_ok(report.differences == 0))
}
