//! What each command does: load and validate input, call the library, print text or `--json`.
//!
//! Every input is validated before a RUN_ID is claimed or a request is sent: the template, the targets file,
//! the target's secrets, the plan and the TLS identity. Output goes to stdout (results) and stderr (progress).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::json;

use crate::cli::{Cli, CliError, Command, GlobalArgs, NewArgs, RunArgs, TemplatesCommand, Verdict};
use crate::evidence::{self, RunFolder, RunLocation};
use crate::plan::Plan;
use crate::report::Reports;
use crate::run::{self, RunOptions, RunOutcome};
use crate::runid::RunId;
use crate::target::{Target, Targets};
use crate::template::Template;

/// Runs one parsed command line.
pub fn dispatch(cli: Cli) -> Result<Verdict, CliError> {
    let global = &cli.global;
    match cli.command {
        Command::New(args) => new(global, &args),
        Command::Run(args) => runtime()?.block_on(run(global, &args)),
        Command::Verify(args) if crate::archive::looks_like_archive(&args.run_id) => {
            crate::routine::verify_archive(global, &args.run_id)
        }
        Command::Verify(args) => verify(global, &args.run_id),
        Command::Templates(TemplatesCommand::Check) => templates_check(global),
        Command::Preflight(args) => runtime()?.block_on(preflight(global, &args.target)),
        Command::Demo(args) => runtime()?.block_on(crate::demo::demo(global, &args)),
        Command::Diff(args) => crate::routine::diff(global, &args),
        Command::Parity(args) => runtime()?.block_on(crate::routine::parity(global, &args)),
        Command::History(args) => crate::routine::history(global, &args),
        Command::Report(command) => crate::routine::report(global, &command),
        Command::Archive(args) => crate::routine::archive(global, &args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Prints `value` as JSON or `text`, depending on `--json`. The JSON is serialised straight to stdout: for a
/// run it holds every probe's record.
pub fn emit(global: &GlobalArgs, value: &impl serde::Serialize, text: &str) -> Result<(), CliError> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if global.json {
        serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}

/// Loads `<run-templates>/<name>`, refusing names that are not a plain folder name.
pub fn load_template(global: &GlobalArgs, name: &str) -> Result<Template, CliError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(CliError::Usage(format!(
            "template `{name}`: give a folder name under {}",
            global.run_templates.display()
        )));
    }
    let dir = global.run_templates.join(name);
    if !dir.join("template.toml").is_file() {
        return Err(CliError::Usage(format!(
            "no template {} (expected {})",
            name,
            dir.join("template.toml").display()
        )));
    }
    Ok(Template::load(&dir)?)
}

fn new(global: &GlobalArgs, args: &NewArgs) -> Result<Verdict, CliError> {
    let template = load_template(global, &args.template)?;
    let (run_id, dir) = if args.timestamp {
        let run_id = RunId::timestamp_now();
        let dir = evidence::reserve_exact(&global.artifacts, &template.suite, &args.template, &run_id)?;
        (run_id, dir)
    } else {
        let label = args.label.as_deref().unwrap_or(&template.label);
        let date = args.date.unwrap_or_else(|| Utc::now().date_naive());
        evidence::reserve_next(&global.artifacts, &template.suite, &args.template, date, label)?
    };
    let value =
        json!({ "run_id": run_id.to_string(), "template": args.template, "suite": template.suite, "reserved": dir });
    emit(global, &value, &format!("{run_id}\n"))?;
    Ok(Verdict::Ok)
}

/// Loads the targets file and resolves one target (secrets read).
pub fn load_target(global: &GlobalArgs, name: &str) -> Result<Target, CliError> {
    Ok(Targets::load(&global.targets)?.resolve(name)?)
}

async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<Verdict, CliError> {
    let requested = args.run_id.as_deref().map(str::parse::<RunId>).transpose()?;
    let location = match &requested {
        Some(run_id) => evidence::locate(&global.artifacts, run_id)?,
        None => None,
    };
    let template_name = match (&location, &args.template) {
        (Some(RunLocation::Partial(dir)), given) => {
            let reserved = read_reserved_template(dir)?;
            if let Some(given) = given.as_ref().filter(|g| **g != reserved) {
                return Err(CliError::Usage(format!("RUN_ID was reserved for template `{reserved}`, not `{given}`")));
            }
            reserved
        }
        (Some(RunLocation::Finished(dir)), _) => {
            return Err(CliError::Usage(format!(
                "{} already ran ({}); allocate a new RUN_ID",
                args.run_id.as_deref().unwrap_or(""),
                dir.display()
            )));
        }
        (None, Some(template)) => template.clone(),
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
    let target = load_target(global, &args.target)?;
    let label = args.label.clone().unwrap_or_else(|| template.label.clone());
    // Validate the plan with a provisional id before any RUN_ID is claimed.
    let provisional = requested.clone().map_or_else(|| RunId::label(Utc::now().date_naive(), &label, 1), Ok)?;
    Plan::build(&template, &target, &provisional)?;
    let prepared = run::prepare(&target)?;
    let reports = Reports::load(global.templates_dir.as_deref())?;
    let run_id = match (requested, &location) {
        (Some(run_id), Some(_)) => run_id,
        (Some(run_id), None) => {
            evidence::reserve_exact(&global.artifacts, &template.suite, &template_name, &run_id)?;
            run_id
        }
        (None, _) => {
            evidence::reserve_next(&global.artifacts, &template.suite, &template_name, Utc::now().date_naive(), &label)?
                .0
        }
    };
    let plan = Plan::build(&template, &target, &run_id)?;
    let (folder, _) = RunFolder::start(&global.artifacts, &run_id)?;
    let options =
        RunOptions { jobs: usize::from(args.jobs), progress: std::io::stderr().is_terminal() && !global.json, reports };
    let outcome = run::execute(&plan, &prepared, folder, &options).await?;
    print_outcome(global, &outcome)?;
    Ok(Verdict::from_ok(outcome.status.is_ok()))
}

fn read_reserved_template(dir: &Path) -> Result<String, CliError> {
    let path = dir.join(evidence::RESERVATION_FILE);
    let text = std::fs::read(&path).map_err(|source| evidence::EvidenceError::Io { path: path.clone(), source })?;
    let reservation: evidence::Reservation =
        serde_json::from_slice(&text).map_err(|e| evidence::EvidenceError::Corrupt { path, message: e.to_string() })?;
    Ok(reservation.template)
}

/// Prints RUN_ID, evidence folder and per-probe results (or the status as JSON).
pub fn print_outcome(global: &GlobalArgs, outcome: &RunOutcome) -> Result<(), CliError> {
    let status = &outcome.status;
    let mut text = format!("RUN_ID={}\nevidence: {}\n", status.run_id, outcome.dir.display());
    for probe in status.serverinfo.iter().chain(&status.probes) {
        let http = probe.http_status.map_or_else(|| "000".to_owned(), |s| s.to_string());
        let verdict = if probe.ready { "ready".to_owned() } else { format!("NOT READY {}", probe.outcome.describe()) };
        text.push_str(&format!("  {:<14} {:<20} HTTP {http}  {}\n", probe.id, probe.name, verdict.trim_end()));
    }
    for count in status.audit.iter().filter(|c| c.expected > 0 || c.delta.is_some_and(|d| d != 0)) {
        let delta = count.delta.map_or_else(|| "?".to_owned(), |d| format!("{d:+}"));
        text.push_str(&format!(
            "  audit Phase-{} {} {}: {delta} (expected {})\n",
            count.phase,
            count.action,
            count.outcome.as_deref().unwrap_or(""),
            count.expected
        ));
    }
    for error in &status.audit_errors {
        text.push_str(&format!("  audit error: {error}\n"));
    }
    text.push_str(if status.is_ok() { "result: OK\n" } else { "result: PROBLEM (see todo/PHR_OPEN_ITEMS.md)\n" });
    let value = RunJson { evidence: &outcome.dir, ok: status.is_ok(), run_id: &status.run_id, status };
    emit(global, &value, &text)
}

/// What `run --json` prints (fields in the order they have always had).
#[derive(serde::Serialize)]
struct RunJson<'a> {
    /// The sealed run folder.
    evidence: &'a Path,
    /// Everything as expected (exit code 0).
    ok: bool,
    /// The RUN_ID.
    run_id: &'a str,
    /// The whole `status.json` content.
    status: &'a crate::status::RunStatus,
}

/// Default limit for each preflight network check when the target sets none.
const PREFLIGHT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn preflight(global: &GlobalArgs, target_name: &str) -> Result<Verdict, CliError> {
    let target = load_target(global, target_name)?;
    let results =
        crate::preflight::preflight(&crate::preflight::PreflightInput::for_target(&target, PREFLIGHT_TIMEOUT)).await;
    let ok = results.iter().all(|r| r.ok);
    let mut text = format!("preflight {} ({})\n", target.spec.name, target.spec.base_url);
    for result in &results {
        text.push_str(&format!(
            "  {} {:<18} {}\n",
            if result.ok { "ok  " } else { "FAIL" },
            result.name,
            result.detail
        ));
    }
    text.push_str(if ok { "result: OK\n" } else { "result: PROBLEM\n" });
    emit(global, &json!({ "target": target.spec.name, "ok": ok, "checks": results }), &text)?;
    Ok(Verdict::from_ok(ok))
}

fn verify(global: &GlobalArgs, run_id: &str) -> Result<Verdict, CliError> {
    let run_id: RunId = run_id.parse()?;
    let report = evidence::verify(&global.artifacts, &run_id)?;
    let text = match &report.first_mismatch {
        None => {
            format!("OK: {} files match {}\n", report.files_listed, report.dir.join(evidence::MANIFEST_FILE).display())
        }
        Some(mismatch) => format!("MISMATCH in {}: {mismatch}\n", report.dir.display()),
    };
    emit(global, &serde_json::to_value(&report).unwrap_or_default(), &text)?;
    Ok(Verdict::from_ok(report.first_mismatch.is_none()))
}

fn templates_check(global: &GlobalArgs) -> Result<Verdict, CliError> {
    let mut lines = Vec::new();
    let mut results = Vec::new();
    let mut ok = true;
    for loaded in Template::load_all(&global.run_templates)? {
        match loaded {
            Ok(template) => {
                let probes = template.probes().count();
                lines.push(format!(
                    "ok   run template {} ({} phases, {probes} probes)",
                    template.name,
                    template.phases.len()
                ));
                results.push(json!({ "kind": "run_template", "name": template.name, "ok": true }));
            }
            Err(error) => {
                ok = false;
                lines.push(format!("FAIL {error}"));
                results.push(json!({ "kind": "run_template", "ok": false, "error": error.to_string() }));
            }
        }
    }
    let rendered = Reports::load(global.templates_dir.as_deref())
        .and_then(|reports| reports.render_all(&crate::report::sample_status()));
    match rendered {
        Ok(documents) => {
            for (path, _) in documents {
                lines.push(format!("ok   markdown template for {path}"));
                results.push(json!({ "kind": "markdown", "name": path, "ok": true }));
            }
        }
        Err(error) => {
            ok = false;
            lines.push(format!("FAIL {error}"));
            results.push(json!({ "kind": "markdown", "ok": false, "error": error.to_string() }));
        }
    }
    let text = lines.join("\n") + "\n";
    emit(global, &json!({ "ok": ok, "results": results }), &text)?;
    Ok(Verdict::from_ok(ok))
}

/// The artifacts folder as an absolute path, for messages.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
