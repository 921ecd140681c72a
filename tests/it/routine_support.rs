//! Shared helpers for the routine tests: real runs against the in-process phr-server, template variants,
//! and the connrun binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};
use connrun::evidence::{self, RunFolder};
use connrun::plan::Plan;
use connrun::plan::target::Targets;
use connrun::plan::template::Template;
use connrun::report::Reports;
use connrun::run::{self, RunOptions, RunOutcome};

/// The checkout's phr-seq template folder.
pub fn phr_seq() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates/phr-seq")
}

/// Copies phr-seq into `dir` and applies text replacements to its template.toml.
pub fn phr_seq_variant(dir: &Path, replacements: &[(&str, &str)]) -> PathBuf {
    let target = dir.join("phr-seq");
    std::fs::create_dir_all(target.join("audit")).expect("variant folder");
    for entry in std::fs::read_dir(phr_seq().join("audit")).expect("audit folder") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), target.join("audit").join(entry.file_name())).expect("copy sql");
    }
    let mut text = std::fs::read_to_string(phr_seq().join("template.toml")).expect("template");
    for (from, to) in replacements {
        assert!(text.contains(from), "phr-seq template.toml no longer contains {from:?}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(target.join("template.toml"), text).expect("write variant");
    target
}

/// Runs the template in `template_dir` against the demo server into `artifacts`.
pub async fn run_against(environment: &DemoEnvironment, artifacts: &Path, template_dir: &Path) -> RunOutcome {
    let target = Targets::load(environment.targets_file()).expect("targets").resolve(DEMO_TARGET).expect("target");
    let template = Template::load(template_dir).expect("template");
    let date = chrono::Utc::now().date_naive();
    let (run_id, _) =
        evidence::reserve_next(artifacts, &template.suite, &template.name, date, &template.label).expect("reserve");
    let plan = Plan::build(&template, &target, &run_id).expect("plan");
    let prepared = run::prepare(&target).expect("identity");
    let (folder, _) = RunFolder::start(artifacts, &run_id).expect("start");
    let options = RunOptions { jobs: 2, progress: false, reports: Reports::load(None).expect("reports") };
    run::execute(&plan, &prepared, folder, &options).await.expect("run completes")
}

/// Runs the connrun binary with `--artifacts`.
pub fn connrun(artifacts: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connrun"))
        .arg("--artifacts")
        .arg(artifacts)
        .args(args)
        .env_remove("CONNRUN_TEMPLATES_DIR")
        .output()
        .expect("connrun runs")
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
