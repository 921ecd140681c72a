//! `connrun weekly`: the team's weekly routine as one command with one exit code and one summary.
//!
//! The routine is the documented commands, in order: preflight → run (a new RUN_ID) → diff against the
//! previous run of the same template and target → `report daily --append` (when a log file is given) →
//! archive → notice. Each step is the same `connrun` command an operator would type, run as a child process
//! with `--json`, so the weekly routine can never drift from the manual one and a step's crash cannot take
//! the others down. The outcome of every step is kept in `artifacts/<suite>/weekly/<RUN_ID>.json` beside the
//! sealed run (the run folder itself is sealed before the notice is sent, so it is never changed after).
//!
//! Exit code: 0 when preflight and the run are OK and nothing regressed; 1 when preflight or the run found
//! a problem or diff a regression; 2 when a step could not do its job. A notice that cannot be delivered is recorded and shown,
//! and does not change the verdict.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::args::{GlobalArgs, WeeklyArgs};
use crate::cli::error::{CliError, Verdict};
use crate::cli::output::{emit, load_target};
use crate::evidence::EvidenceLayout;
use crate::plan::notify::NotifySpec;

/// One step of the routine, as recorded.
#[derive(Debug, Serialize)]
struct Step {
    /// `preflight`, `run`, `diff`, `report daily`, `archive`, `notify`.
    name: &'static str,
    /// The child's exit code (0 ok, 1 problem found, 2 could not run); `None` when skipped.
    exit_code: Option<i32>,
    /// One line for the summary.
    summary: String,
}

/// The weekly record, `artifacts/<suite>/weekly/<RUN_ID>.json`.
#[derive(Debug, Serialize)]
struct WeeklyRecord<'a> {
    /// The new run.
    run_id: &'a str,
    /// Template and target.
    template: &'a str,
    /// Target name.
    target: &'a str,
    /// The exit code of the whole routine.
    exit_code: u8,
    /// Every step in order.
    steps: &'a [Step],
    /// The notice, when one was due.
    notice: Option<&'a crate::notify::NoticeOutcome>,
}

/// Runs the routine.
pub fn weekly(global: &GlobalArgs, args: &WeeklyArgs, target_name: &str) -> Result<Verdict, CliError> {
    let target = load_target(global, target_name)?;
    let mut steps = Vec::new();
    let preflight = child(global, &["preflight", "--target", target_name])?;
    steps.push(step("preflight", &preflight, |v| format!("ok={}", v["ok"])));
    let jobs = args.jobs.to_string();
    let run = child(global, &["run", "--template", &args.template, "--target", target_name, "--jobs", &jobs])?;
    let Some(run_id) = run.json["run_id"].as_str().map(str::to_owned) else {
        steps.push(step("run", &run, |_| "the run did not start".to_owned()));
        return finish(global, (args, target_name), &steps, None, None, 2);
    };
    let run_ok = run.code == 0;
    steps.push(step("run", &run, |v| format!("{run_id} ok={}", v["ok"])));
    let (regression, previous_red) =
        match crate::compare::runindex::latest_pair(&global.artifacts, Some(&args.template)) {
            Ok((before, after)) if after.status.run_id == run_id && after.status.target == target_name => {
                let diff = child(global, &["diff", &before.status.run_id, &run_id])?;
                let against = before.status.run_id.clone();
                steps.push(step("diff", &diff, |v| format!("against {against}: {} regressions", v["regressions"])));
                (diff.code == 1, Some(!before.status.is_ok()))
            }
            _ => {
                let summary = format!("no earlier run of {} against {target_name}: nothing to compare", args.template);
                steps.push(Step { name: "diff", exit_code: None, summary });
                (false, None)
            }
        };
    if let Some(log) = &args.log {
        let file = log.display().to_string();
        let daily = child(global, &["report", "daily", &run_id, "--append", &file])?;
        steps.push(step("report daily", &daily, |_| format!("appended to {file}")));
    }
    let archive = child(global, &["archive", &run_id])?;
    steps.push(step("archive", &archive, |v| v["archive"].as_str().unwrap_or_default().to_owned()));
    let red = preflight.code == 1 || !run_ok || regression;
    let notice = match &target.spec.notify {
        Some(spec) if spec.when.wants(red, previous_red) => Some(notify(spec, &run_id, (args, target_name), red)),
        _ => None,
    };
    let failed_step = steps.iter().any(|s| s.exit_code.is_some_and(|c| c >= 2));
    let code = if failed_step { 2 } else { u8::from(red) };
    finish(global, (args, target_name), &steps, Some(&run_id), notice.as_ref(), code)
}

/// A finished child command: its exit code and its `--json` document.
pub(crate) struct Child {
    /// Exit code (2 when killed by a signal).
    pub code: i32,
    /// The first JSON document on stdout (`Null` when there is none).
    pub json: Value,
}

/// Runs `connrun --json <global options> <args>` as a child process, its stderr passed through.
pub(crate) fn child(global: &GlobalArgs, args: &[&str]) -> Result<Child, CliError> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.arg("--json").arg("--artifacts").arg(&global.artifacts).arg("--run-templates").arg(&global.run_templates);
    command.arg("--targets").arg(&global.targets);
    if let Some(dir) = &global.templates_dir {
        command.arg("--templates-dir").arg(dir);
    }
    let output = command.args(args).stderr(std::process::Stdio::inherit()).output()?;
    // A command that ends in an error after printing its result adds the error as a second document.
    let json = serde_json::Deserializer::from_slice(&output.stdout).into_iter::<Value>().next();
    let json = json.and_then(Result::ok).unwrap_or(Value::Null);
    Ok(Child { code: output.status.code().unwrap_or(2), json })
}

fn step(name: &'static str, child: &Child, summary: impl Fn(&Value) -> String) -> Step {
    let summary = match child.json.get("error").and_then(Value::as_str) {
        Some(error) => error.to_owned(),
        None => summary(&child.json),
    };
    Step { name, exit_code: Some(child.code), summary }
}

/// Sends the notice on a runtime of its own; the text names the run, never a secret.
fn notify(
    spec: &NotifySpec,
    run_id: &str,
    (args, target): (&WeeklyArgs, &str),
    red: bool,
) -> crate::notify::NoticeOutcome {
    let url = match spec.url.read() {
        Ok(url) => url,
        Err(message) => {
            return crate::notify::NoticeOutcome {
                delivered: false,
                attempts: 0,
                http_status: None,
                error: Some(message),
            };
        }
    };
    let verdict = if red { "要対応 (NG)" } else { "正常 (OK)" };
    let text = format!("connrun weekly: {} / {target} / RUN_ID={run_id}: {verdict}", args.template);
    let first_delay = Duration::from_millis(args.notify_retry_ms);
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(crate::notify::send(&url, &text, first_delay)),
        Err(e) => crate::notify::NoticeOutcome {
            delivered: false,
            attempts: 0,
            http_status: None,
            error: Some(format!("cannot start the async runtime: {e}")),
        },
    }
}

/// Writes the weekly record, prints the summary, returns the verdict (exit 2 as an error).
fn finish(
    global: &GlobalArgs,
    (args, target): (&WeeklyArgs, &str),
    steps: &[Step],
    run_id: Option<&str>,
    notice: Option<&crate::notify::NoticeOutcome>,
    code: u8,
) -> Result<Verdict, CliError> {
    let mut text = format!("weekly {} / {target}\n", args.template);
    for s in steps {
        let code = s.exit_code.map_or_else(|| "-".to_owned(), |c| c.to_string());
        text.push_str(&format!("  {:<13} exit {code}  {}\n", s.name, s.summary));
    }
    if let Some(notice) = notice {
        let how = if notice.delivered {
            "delivered".to_owned()
        } else {
            format!("NOT delivered: {}", notice.error.as_deref().unwrap_or(""))
        };
        text.push_str(&format!("  {:<13} {how} ({} attempts)\n", "notify", notice.attempts));
    }
    let record_file = match run_id {
        Some(run_id) => {
            let record = WeeklyRecord { run_id, template: &args.template, target, exit_code: code, steps, notice };
            Some(write_record(&global.artifacts, run_id, &record)?)
        }
        None => None,
    };
    if let Some(file) = &record_file {
        text.push_str(&format!("record: {}\n", file.display()));
    }
    text.push_str(match code {
        0 => "result: OK\n",
        1 => "result: PROBLEM\n",
        _ => "result: ERROR (a step could not run)\n",
    });
    emit(
        global,
        &json!({ "exit_code": code, "run_id": run_id, "steps": steps, "notice": notice, "record": record_file }),
        &text,
    )?;
    match code {
        0 => Ok(Verdict::Ok),
        1 => Ok(Verdict::Problem),
        _ => Err(CliError::Usage(format!(
            "weekly: a step could not run (see above){}",
            record_file.map(|f| format!("; record {}", f.display())).unwrap_or_default()
        ))),
    }
}

/// `artifacts/<suite>/weekly/<RUN_ID>.json`, created new (a RUN_ID runs once, so its record is written once).
fn write_record(artifacts: &Path, run_id: &str, record: &WeeklyRecord<'_>) -> Result<PathBuf, CliError> {
    let run_id: crate::evidence::runid::RunId = run_id.parse()?;
    let run_dir = match crate::evidence::locate(artifacts, &run_id)? {
        Some(crate::evidence::RunLocation::Finished(dir)) => dir,
        _ => return Err(CliError::Usage(format!("weekly: the run {run_id} is not sealed"))),
    };
    let suite = run_dir.parent().unwrap_or(artifacts);
    let file = suite.join(EvidenceLayout::weekly_record(&run_id.to_string()));
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::from)?;
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&file)?;
    std::io::Write::write_all(&mut out, &bytes)?;
    Ok(file)
}
