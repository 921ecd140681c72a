//! What each command does: load and validate input, call the library, print text or `--json`.
//!
//! Every input is validated before a RUN_ID is claimed or a request is sent: the template, the targets file,
//! the target's secrets, the plan and the TLS identity. Output goes to stdout (results) and stderr (progress).

use std::io::IsTerminal;

use serde_json::json;

use crate::cli::args::{Cli, Command, GlobalArgs, NewArgs, PkiCommand, PreflightArgs, RunArgs, TemplatesCommand};
use crate::cli::error::{CliError, Verdict};
use crate::cli::output::{emit, load_target, load_template, print_outcome};
use crate::cli::run_one::{OneRun, run_one};
use crate::cli::{demo, pki, routine, schedule, weekly};
use crate::evidence;
use crate::evidence::runid::RunId;
use crate::plan::Plan;
use crate::plan::template::Template;
use crate::run::preflight::{self, PreflightInput};

/// Runs one parsed command line.
pub fn dispatch(cli: Cli) -> Result<Verdict, CliError> {
    let global = &cli.global;
    match cli.command {
        Command::New(args) => new(global, &args),
        Command::Run(args) => runtime()?.block_on(run(global, &args)),
        Command::Verify(args) if crate::compare::archive::looks_like_archive(&args.run_id) => {
            routine::verify_archive(global, &args.run_id)
        }
        Command::Verify(args) => verify(global, &args.run_id),
        Command::Templates(TemplatesCommand::Check) => templates_check(global),
        Command::Preflight(args) => runtime()?.block_on(preflight(global, &args)),
        Command::Demo(args) => runtime()?.block_on(demo::demo(global, &args)),
        Command::Pki(PkiCommand::Init(args)) => pki::init(global, &args),
        Command::Weekly(args) if args.target_names.len() > 1 => crate::cli::matrix::weekly_targets(global, &args),
        Command::Weekly(args) => weekly::weekly(global, &args, &args.target_names[0]),
        Command::Schedule(args) => schedule::print(global, &args),
        Command::Diff(args) => routine::diff(global, &args),
        Command::Parity(args) => runtime()?.block_on(routine::parity(global, &args)),
        Command::History(args) => routine::history(global, &args),
        Command::Report(command) => routine::report(global, &command),
        Command::Archive(args) => routine::archive(global, &args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn new(global: &GlobalArgs, args: &NewArgs) -> Result<Verdict, CliError> {
    let template = load_template(global, &args.template)?;
    let (run_id, dir) = if args.timestamp {
        let run_id = RunId::timestamp_now();
        let dir = evidence::reserve_exact(&global.artifacts, &template.suite, &args.template, &run_id)?;
        (run_id, dir)
    } else {
        let label = args.label.as_deref().unwrap_or(&template.label);
        let date = args.date.unwrap_or_else(|| global.tz.today());
        evidence::reserve_next(&global.artifacts, &template.suite, &args.template, date, label)?
    };
    let value =
        json!({ "run_id": run_id.to_string(), "template": args.template, "suite": template.suite, "reserved": dir });
    emit(global, &value, &format!("{run_id}\n"))?;
    Ok(Verdict::Ok)
}

async fn run(global: &GlobalArgs, args: &RunArgs) -> Result<Verdict, CliError> {
    let targets = match &args.group {
        None => args.target_names.clone(),
        Some(group) => {
            let file = crate::plan::target::Targets::load(&global.targets)?;
            args.target_names.iter().chain(file.group(group)?).cloned().collect()
        }
    };
    if targets.len() > 1 {
        return crate::cli::matrix::run_targets(global, args, &targets).await;
    }
    if args.run_ids.len() > 1 {
        return Err(CliError::Usage(format!(
            "{} RUN_IDs given for one --target; give one RUN_ID per --target",
            args.run_ids.len()
        )));
    }
    let one = OneRun {
        run_id: args.run_ids.first().map(String::as_str),
        template: args.template.as_deref(),
        target: &targets[0],
        jobs: args.jobs,
        label: args.label.as_deref(),
        progress: std::io::stderr().is_terminal() && !global.json,
    };
    let outcome = run_one(global, &one).await?;
    print_outcome(global, &outcome)?;
    Ok(Verdict::from_ok(outcome.status.is_ok()))
}

/// `connrun preflight`: the target's checks, with `--template` those of that template's run.
async fn preflight(global: &GlobalArgs, args: &PreflightArgs) -> Result<Verdict, CliError> {
    let target = load_target(global, &args.target)?;
    let input = match &args.template {
        None => PreflightInput::for_target(&target, preflight::DEFAULT_TIMEOUT),
        Some(name) => {
            let template = load_template(global, name)?;
            // A provisional RUN_ID only resolves the plan; the request's trace id is preflight's own.
            let plan = Plan::build(&template, &target, &RunId::timestamp_now())?;
            PreflightInput::for_plan(&plan, preflight::DEFAULT_TIMEOUT).outside_a_run()
        }
    };
    let results = preflight::preflight(&input).await;
    let ok = results.iter().all(|r| r.ok);
    let mut text = format!("preflight {} ({})", target.spec.name, target.spec.base_url);
    if let Some(name) = &args.template {
        text.push_str(&format!(" for template {name}"));
    }
    text.push('\n');
    for result in &results {
        text.push_str(&format!(
            "  {} {:<18} {}\n",
            if result.ok { "ok  " } else { "FAIL" },
            result.name,
            result.detail
        ));
    }
    text.push_str(if ok { "result: OK\n" } else { "result: PROBLEM\n" });
    let value = json!({ "target": target.spec.name, "template": args.template, "ok": ok, "checks": results });
    emit(global, &value, &text)?;
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
    for check in crate::report::check::check_templates(global.templates_dir.as_deref()) {
        ok &= check.ok;
        match &check.error {
            None => lines.push(format!("ok   template {} ({})", check.name, check.source)),
            Some(error) => lines.push(format!("FAIL template {} ({}): {error}", check.name, check.source)),
        }
        results.push(json!({ "kind": "template", "name": check.name, "source": check.source, "ok": check.ok, "error": check.error }));
    }
    let text = lines.join("\n") + "\n";
    emit(global, &json!({ "ok": ok, "results": results }), &text)?;
    Ok(Verdict::from_ok(ok))
}
