//! The command line: clap definitions and the typed result that becomes the exit code.
//!
//! Exit codes follow HARNESS.md §7: 0 everything as expected, 1 a probe/check found a problem
//! ([`Verdict::Problem`]), 2 the harness could not do its job (any [`CliError`]). Each command's work lives
//! in [`crate::commands`]; this file only says what can be typed and what it means.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// What a command concluded (errors are [`CliError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything as expected: exit 0.
    Ok,
    /// A probe, check or comparison found a problem: exit 1.
    Problem,
}

impl Verdict {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Problem => 1,
        }
    }

    /// `Ok` when `ok`, otherwise `Problem`.
    pub fn from_ok(ok: bool) -> Verdict {
        if ok { Verdict::Ok } else { Verdict::Problem }
    }
}

/// The harness could not do its job (exit 2); every variant names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// A RUN_ID that does not parse.
    #[error(transparent)]
    RunId(#[from] crate::runid::RunIdError),
    /// A template that does not load.
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    /// A targets file or target that does not load.
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
    /// A plan that cannot be built.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// Evidence folder problems.
    #[error(transparent)]
    Evidence(#[from] crate::evidence::EvidenceError),
    /// A run that could not complete.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// Markdown templates that do not render.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// The demo could not start its server or write its files.
    #[error("demo: {0}")]
    Demo(String),
    /// Writing to stdout or starting the async runtime failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// diff / parity / history / report / archive could not do their job (bad or tampered runs, ...).
    #[error(transparent)]
    Routine(#[from] crate::routine::RoutineError),
}

/// connrun: RUN_ID-driven connectivity runs with evidence (HTTP dumps, traces, HAR, audit counts, Markdown).
#[derive(Debug, Parser)]
#[command(
    name = "connrun",
    version,
    after_help = "Examples:\n  connrun demo\n  connrun new phr-seq --label orcaPHRSeq\n  connrun run 20251119TorcaPHRSeqZ1 --target orca-stage --jobs 4\n  connrun run --template phr-seq --target orca-stage\n  connrun verify 20251119TorcaPHRSeqZ1\n  connrun preflight --target orca-stage\n  connrun templates check\n\nExit codes: 0 everything as expected, 1 a probe or check found a problem, 2 connrun could not do its job."
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Folder that holds `<suite>/<RUN_ID>/` run folders.
    #[arg(long, global = true, default_value = "artifacts", env = "CONNRUN_ARTIFACTS")]
    pub artifacts: PathBuf,
    /// Folder of run templates (`<name>/template.toml`).
    #[arg(long, global = true, default_value = "run-templates", env = "CONNRUN_RUN_TEMPLATES")]
    pub run_templates: PathBuf,
    /// The targets file.
    #[arg(long, global = true, default_value = "targets.toml", env = "CONNRUN_TARGETS")]
    pub targets: PathBuf,
    /// Folder with Markdown templates (`*.md.tera`) that replace the built-in ones of the same name.
    #[arg(long, global = true, env = "CONNRUN_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Allocate the next free RUN_ID for a template and reserve its folder; prints the RUN_ID.
    #[command(
        after_help = "Examples:\n  connrun new phr-seq\n  connrun new phr-seq --label orcaPHRSeq --date 20251119\n  connrun new phr-full --timestamp"
    )]
    New(NewArgs),
    /// Run a reserved RUN_ID (or allocate one from --template) against a target and seal the evidence.
    #[command(
        after_help = "Examples:\n  connrun run 20251119TorcaPHRSeqZ1 --target orca-stage\n  connrun run --template phr-seq --target orca-stage --jobs 8\n  connrun --json run --template phr-full --target local"
    )]
    Run(RunArgs),
    /// Re-hash every file of a finished run against its manifest.json; exit 1 on the first difference.
    #[command(after_help = "Example:\n  connrun verify 20251119TorcaPHRSeqZ1")]
    Verify(VerifyArgs),
    /// Work with run templates.
    #[command(subcommand, after_help = "Example:\n  connrun templates check")]
    Templates(TemplatesCommand),
    /// Check a target before a run: identity, certificates, CA, TCP/TLS, audit database, readyz.
    #[command(after_help = "Example:\n  connrun preflight --target orca-stage")]
    Preflight(PreflightArgs),
    /// The whole job on this machine: start phr-server on loopback with generated certificates, run phr-seq.
    #[command(
        after_help = "Examples:\n  connrun demo\n  connrun demo --database-url postgres://postgres@127.0.0.1:5432/phr_demo"
    )]
    Demo(DemoArgs),
    /// Compare two runs (status, outcome, audit deltas, latency, certificates); exit 1 on a regression.
    #[command(
        after_help = "Examples:\n  connrun diff 20251112TorcaPHRSeqZ1 20251119TorcaPHRSeqZ1\n  connrun diff --latest --template phr-seq\n  connrun --json diff A B --latency-min-ms 500"
    )]
    Diff(crate::routine::DiffArgs),
    /// Run a template against two targets side by side and compare status, headers and JSON bodies.
    #[command(
        after_help = "Example:\n  connrun parity --target legacy --target modern --template phr-seq --ignore generatedAt --ignore /meta/traceId"
    )]
    Parity(crate::routine::ParityArgs),
    /// One row per run over time: Ready counts and the probes whose status changed.
    #[command(after_help = "Example:\n  connrun history --template phr-seq --last 10")]
    History(crate::routine::HistoryArgs),
    /// Documents from finished runs: html, daily, weekly, status-row (Markdown; --append inserts into a file).
    #[command(subcommand)]
    Report(crate::routine::ReportCommand),
    /// Pack a finished run into one .tar.gz with its manifest (check it with `connrun verify <ARCHIVE>`).
    #[command(after_help = "Example:\n  connrun archive 20251119TorcaPHRSeqZ1 --output /tmp/run.tar.gz")]
    Archive(crate::routine::ArchiveArgs),
}

/// `connrun new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Template folder name under --run-templates, e.g. `phr-seq`.
    pub template: String,
    /// RUN_ID label (ASCII letters and digits, starting with a letter); default: the template's label.
    #[arg(long)]
    pub label: Option<String>,
    /// Date of the run as YYYYMMDD; default: today (UTC).
    #[arg(long, value_parser = parse_date)]
    pub date: Option<chrono::NaiveDate>,
    /// Allocate a timestamp-form RUN_ID (YYYYMMDDThhmmssZ, now) instead of the label form.
    #[arg(long, conflicts_with_all = ["label", "date"])]
    pub timestamp: bool,
}

/// `connrun run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A RUN_ID reserved with `connrun new` (or a new one, together with --template).
    pub run_id: Option<String>,
    /// Template to run; without a RUN_ID, a new one is allocated for it.
    #[arg(long)]
    pub template: Option<String>,
    /// Target name in the targets file.
    #[arg(long)]
    pub target: String,
    /// Probes of one phase that may run at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Label for a RUN_ID allocated from --template; default: the template's label.
    #[arg(long, requires = "template")]
    pub label: Option<String>,
}

/// `connrun verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The RUN_ID of a finished run, or a `.tar.gz` written by `connrun archive`.
    pub run_id: String,
}

/// `connrun templates ...`.
#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Parse every run template and render every Markdown template; report every mistake.
    #[command(
        after_help = "Example:\n  connrun templates check --run-templates ./run-templates --templates-dir ./my-templates"
    )]
    Check,
}

/// `connrun preflight`.
#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// Target name in the targets file.
    #[arg(long)]
    pub target: String,
}

/// `connrun demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Use this PostgreSQL database for the server's audit store instead of a temporary SQLite file.
    #[arg(long, env = "CONNRUN_DEMO_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Template to run.
    #[arg(long, default_value = "phr-seq")]
    pub template: String,
    /// Probes of one phase that may run at the same time.
    #[arg(long, default_value_t = 4)]
    pub jobs: u16,
}

fn parse_date(text: &str) -> Result<chrono::NaiveDate, String> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not YYYYMMDD, e.g. 20251119"));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y%m%d").map_err(|_| format!("`{text}` is not a real date"))
}
