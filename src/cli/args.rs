//! What can be typed: the clap definitions of every command and its arguments.
//!
//! Only declarations live here (no behaviour), so the dispatcher, the routine commands and the demo can all
//! read them without depending on each other.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::compare::diff::DiffOptions;
use crate::evidence::limits;

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
    /// Time zone (IANA name) of every time shown and of the date in new RUN_IDs.
    #[arg(long, global = true, default_value = "Asia/Tokyo", env = "CONNRUN_TZ")]
    pub tz: crate::report::clock::Zone,
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
        after_help = "Examples:\n  connrun run 20251119TorcaPHRSeqZ1 --target orca-stage\n  connrun run --template phr-seq --target orca-stage --jobs 8\n  connrun --json run --template phr-full --target local\n  connrun run --template phr-seq --target clinic-a --target clinic-b --parallel-targets 2\n  connrun run 20251119TorcaPHRSeqZ1 20251119TorcaPHRSeqZ2 --target clinic-a --target clinic-b\n  connrun run --template phr-seq --group weekly\n\nWith several targets (--target repeated, or a [groups] entry of targets.toml such as\nweekly = [\"clinic-a\", \"clinic-b\"]) each target gets its own complete run (RUN_ID,\nevidence, audit state), at most --parallel-targets at a time, and one matrix of\ntargets × probes is written to <artifacts>/<suite>/matrix/<timestamp>/matrix.md and\nmatrix.html (a new folder each time). A target that could not run is a row saying why.\nExit code: the worst target's (2 when one could not run)."
    )]
    Run(RunArgs),
    /// Re-hash every file of a finished run against its manifest.json; exit 1 on the first difference.
    #[command(after_help = "Example:\n  connrun verify 20251119TorcaPHRSeqZ1")]
    Verify(VerifyArgs),
    /// Work with run templates.
    #[command(subcommand, after_help = "Example:\n  connrun templates check")]
    Templates(TemplatesCommand),
    /// Check a target before a run: identity, certificates, CA, TCP/TLS, Basic credentials, audit database
    /// and tables, readyz.
    #[command(
        after_help = "Examples:\n  connrun preflight --target orca-stage\n  connrun preflight --target orca-stage --template phr-seq"
    )]
    Preflight(PreflightArgs),
    /// The whole job on this machine: start phr-server on loopback with generated certificates, run phr-seq.
    #[command(
        after_help = "Examples:\n  connrun demo\n  connrun demo --database-url postgres://postgres@127.0.0.1:5432/phr_demo"
    )]
    Demo(DemoArgs),
    /// Make the PKI and settings for a real phr-server and connrun: CA, server certificate, client .p12,
    /// Layer ID key, targets.toml and phr-server.env that work together.
    #[command(
        subcommand,
        after_help = "Examples:\n  connrun pki init pki\n  connrun pki init /etc/phr --host phr.example.jp --host 10.0.0.5 --listen 0.0.0.0:8443"
    )]
    Pki(PkiCommand),
    /// The weekly routine in one command: preflight, run, diff against the previous run, report daily
    /// --append (with --log), archive, notice (the target's [notify]); one exit code, one summary.
    #[command(
        after_help = "Examples:\n  connrun weekly --target orca-stage\n  connrun weekly --target orca-stage --template phr-full --log docs/logs/2025-11-connectivity.md\n  connrun weekly --target clinic-a --target clinic-b --log docs/logs/2025-11-connectivity.md"
    )]
    Weekly(WeeklyArgs),
    /// Print a systemd unit and timer, or a crontab line, that runs `connrun weekly` on the team's
    /// schedule (Asia/Tokyo), with absolute paths.
    #[command(
        after_help = "Examples:\n  connrun schedule --systemd --target orca-stage > /etc/systemd/system/connrun-weekly.service\n  connrun schedule --cron --target orca-stage --at 'Mon 09:00'"
    )]
    Schedule(ScheduleArgs),
    /// Compare two runs (status, outcome, audit deltas, latency, certificates); exit 1 on a regression.
    #[command(
        after_help = "Examples:\n  connrun diff 20251112TorcaPHRSeqZ1 20251119TorcaPHRSeqZ1\n  connrun diff --latest --template phr-seq\n  connrun --json diff A B --latency-min-ms 500\n  connrun diff 20251119TorcaPHRSeqZ1 20251119TorcaPHRFullZ1 --allow-mismatch\n  connrun diff 20251119TorcaPHRSeqParityZ1/legacy 20251119TorcaPHRSeqParityZ1/modern --allow-mismatch\n\nRuns of different templates or targets are refused (exit 2) unless --allow-mismatch is given. A parity run is compared one side at a time, given as <RUN_ID>/<target>."
    )]
    Diff(DiffArgs),
    /// Run a template against two targets side by side and compare status, headers and JSON bodies.
    #[command(
        after_help = "Example:\n  connrun parity --target legacy --target modern --template phr-seq --ignore generatedAt --ignore /meta/traceId"
    )]
    Parity(ParityArgs),
    /// One row per run over time: Ready counts and the probes whose status changed; with --html, per probe
    /// status and latency across runs drawn as inline SVG.
    #[command(
        after_help = "Examples:\n  connrun history --template phr-seq --last 10\n  connrun history --html trends.html --template phr-seq --last 12"
    )]
    History(HistoryArgs),
    /// Documents from finished runs: html, daily, weekly, status-row (Markdown; --append inserts into a file).
    #[command(subcommand)]
    Report(ReportCommand),
    /// Pack a finished run into one .tar.gz with its manifest (check it with `connrun verify <ARCHIVE>`).
    #[command(after_help = "Example:\n  connrun archive 20251119TorcaPHRSeqZ1 --output /tmp/run.tar.gz")]
    Archive(ArchiveArgs),
}

/// `connrun new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Template folder name under --run-templates, e.g. `phr-seq`.
    pub template: String,
    /// RUN_ID label (ASCII letters and digits, starting with a letter); default: the template's label.
    #[arg(long)]
    pub label: Option<String>,
    /// Date of the run as YYYYMMDD; default: today in --tz (Asia/Tokyo unless set).
    #[arg(long, value_parser = parse_date)]
    pub date: Option<chrono::NaiveDate>,
    /// Allocate a timestamp-form RUN_ID (YYYYMMDDThhmmssZ, now) instead of the label form.
    #[arg(long, conflicts_with_all = ["label", "date"])]
    pub timestamp: bool,
}

/// `connrun run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A RUN_ID reserved with `connrun new` (or a new one, together with --template). With several
    /// --target: one reserved RUN_ID per target, in the same order, or none with --template.
    pub run_ids: Vec<String>,
    /// Template to run; without a RUN_ID, a new one is allocated for it (one per target).
    #[arg(long)]
    pub template: Option<String>,
    /// Target name in the targets file. Repeat it to run the same template against several targets, each
    /// as a complete run of its own, and get one matrix (targets × probes) under
    /// `<artifacts>/<suite>/matrix/<timestamp>/`.
    #[arg(long = "target", required_unless_present = "group", num_args = 1, action = clap::ArgAction::Append)]
    pub target_names: Vec<String>,
    /// A `[groups]` entry of the targets file (e.g. `weekly = ["clinic-a", "clinic-b"]`): its targets are
    /// run after any --target, as if each were given with --target.
    #[arg(long)]
    pub group: Option<String>,
    /// Probes of one phase that may run at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// With several --target: how many targets run at the same time (1 to 16).
    #[arg(
        long,
        default_value_t = limits::DEFAULT_PARALLEL_TARGETS,
        value_parser = clap::value_parser!(u8).range(1..=i64::from(limits::MAX_PARALLEL_TARGETS))
    )]
    pub parallel_targets: u8,
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
    /// Check what this template's run needs: its server-info request (path, headers, Ready statuses) for
    /// the Basic check and its audit SQL files for the audit check. Without it preflight requests
    /// /openDolphin/resources/serverinfo/claim/conn and checks d_audit_event (trace_id, action, outcome).
    #[arg(long)]
    pub template: Option<String>,
}

/// `connrun pki …`.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the folder with a CA, a server certificate, a client .p12 (its generated password in a file
    /// with mode 0600), the Layer ID key, targets.toml (target `local`) and phr-server.env.
    Init(PkiInitArgs),
}

/// `connrun pki init`.
#[derive(Debug, Args)]
pub struct PkiInitArgs {
    /// The folder to create; it must not exist yet or be empty, so nothing is ever overwritten.
    pub dir: PathBuf,
    /// DNS names and IP addresses the server certificate is valid for (repeat the flag).
    #[arg(long = "host", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
    pub hosts: Vec<String>,
    /// Where phr-server listens (PHR_LISTEN); the target's base URL uses this port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// phr-server's plain-HTTP ops listener (PHR_OPS_LISTEN), checked by preflight's readyz.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub ops_listen: std::net::SocketAddr,
    /// The Basic user as `facility:user` (phr-server seeds F001:ops … F003:viewer).
    #[arg(long, default_value = "F001:ops")]
    pub user: String,
    /// phr-server's database (PHR_DATABASE_URL), also the target's audit database. Default: a SQLite file
    /// in the folder.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Validity of the server and client certificates, in days (1 to 825).
    #[arg(long, default_value_t = 397, value_parser = clap::value_parser!(u32).range(1..=825))]
    pub days: u32,
}

/// `connrun weekly`.
#[derive(Debug, Args)]
pub struct WeeklyArgs {
    /// The target to probe. Repeat it for several targets: the routine runs for each in turn (each its own
    /// RUN_ID, record and notice), then one matrix of targets × probes is written as `run` does.
    #[arg(long = "target", required = true, num_args = 1, action = clap::ArgAction::Append)]
    pub target_names: Vec<String>,
    /// The run template.
    #[arg(long, default_value = "phr-seq")]
    pub template: String,
    /// Append the daily entry to this Markdown log (after its `<!-- connrun:daily -->` marker).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Probes of one phase that may run at the same time.
    #[arg(long, default_value_t = 4)]
    pub jobs: u16,
    /// First pause before re-sending a notice that failed (doubles each time; 4 attempts in all).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub notify_retry_ms: u64,
}

/// `connrun schedule`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["systemd", "cron"])))]
pub struct ScheduleArgs {
    /// Print a systemd service and timer.
    #[arg(long)]
    pub systemd: bool,
    /// Print a crontab entry.
    #[arg(long)]
    pub cron: bool,
    /// The target `connrun weekly` probes.
    #[arg(long)]
    pub target: String,
    /// The run template.
    #[arg(long, default_value = "phr-seq")]
    pub template: String,
    /// When, in Asia/Tokyo time: a weekday and a time (the team's weekly is Monday 09:00 JST).
    #[arg(long, default_value = "Mon 09:00")]
    pub at: String,
    /// The daily log to append to (passed to `weekly --log`).
    #[arg(long)]
    pub log: Option<PathBuf>,
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

/// `connrun diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier run: a RUN_ID, `<RUN_ID>/<target>` for one side of a parity run, or a sealed run folder.
    #[arg(required_unless_present = "latest")]
    pub run_a: Option<String>,
    /// The later run, given the same ways.
    #[arg(required_unless_present = "latest")]
    pub run_b: Option<String>,
    /// Compare the newest run with the previous run of the same template and target.
    #[arg(long, conflicts_with_all = ["run_a", "run_b"])]
    pub latest: bool,
    /// With --latest: the newest run of this template.
    #[arg(long, requires = "latest")]
    pub template: Option<String>,
    /// Flag latency only when it moved by more than this fraction of the earlier value (1.0 = 100%).
    #[arg(long, default_value_t = DiffOptions::default().latency_ratio)]
    pub latency_ratio: f64,
    /// ...and by more than this many milliseconds.
    #[arg(long, default_value_t = DiffOptions::default().latency_min_ms)]
    pub latency_min_ms: f64,
    /// A server certificate that newly has fewer days left than this is a regression (one that had fewer
    /// already in the earlier run is not: diff judges change).
    #[arg(long, default_value_t = DiffOptions::default().cert_min_days)]
    pub cert_min_days: i64,
    /// Compare runs of different templates or different targets anyway (refused by default, exit 2), e.g.
    /// the two sides of a parity run: `connrun diff 20251119TorcaPHRSeqParityZ1/legacy
    /// 20251119TorcaPHRSeqParityZ1/modern --allow-mismatch`.
    #[arg(long)]
    pub allow_mismatch: bool,
}

/// `connrun parity`.
#[derive(Debug, Args)]
pub struct ParityArgs {
    /// The two targets to compare (give --target twice: the reference first).
    #[arg(long = "target", required = true, num_args = 1, action = clap::ArgAction::Append)]
    pub sides: Vec<String>,
    /// Template to run against both.
    #[arg(long)]
    pub template: String,
    /// Response header to compare (repeatable); default: content-type.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// JSON field to ignore: a key name at any depth, or a JSON pointer like /meta/generatedAt (repeatable).
    #[arg(long = "ignore")]
    pub ignore: Vec<String>,
    /// Probes of one phase that may run at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
}

/// `connrun history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs of this template.
    #[arg(long)]
    pub template: Option<String>,
    /// Only the newest N runs (1 to 200); with --html, per template and target (default 20).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=limits::MAX_HISTORY_RUNS as i64))]
    pub last: Option<u16>,
    /// Write the trends page (per probe: status and latency across runs, inline SVG, no script, no
    /// network) to this file instead of printing the table.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `connrun archive`.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The RUN_ID of a finished run, ordinary or parity (a parity run is packed whole).
    pub run_id: String,
    /// Where to write the archive; default `<suite folder>/<RUN_ID>.tar.gz`.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `--append` and where to insert.
#[derive(Debug, Clone, Args)]
pub struct AppendArgs {
    /// Insert the entry into this Markdown file instead of printing it.
    #[arg(long)]
    pub append: Option<PathBuf>,
    /// Insert after the first line containing this text (default `<!-- connrun:<kind> -->`).
    #[arg(long, requires = "append", conflicts_with = "under")]
    pub marker: Option<String>,
    /// Insert under this heading line (e.g. "## 日次ログ"); a status row goes into the table below it.
    #[arg(long, requires = "append")]
    pub under: Option<String>,
}

/// `connrun report ...`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// One self-contained HTML file: probes, timings waterfall, certificates, latency across runs.
    #[command(after_help = "Example:\n  connrun report html 20251119TorcaPHRSeqZ1 --output run.html")]
    Html {
        /// The RUN_ID (`<RUN_ID>/<target>` for one side of a parity run).
        run_id: String,
        /// Output file; default `<suite folder>/<RUN_ID>.html`.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The daily connectivity log entry (HTTP codes, evidence paths, investigation, contacts).
    #[command(
        after_help = "Example:\n  connrun report daily 20251119TorcaPHRSeqZ1 --contact \"PHR 実装: @Codex (#server-modernized)\" --append docs/logs/daily.md"
    )]
    Daily {
        /// The RUN_ID (`<RUN_ID>/<target>` for one side of a parity run).
        run_id: String,
        /// Contact line for the 連絡先 block (repeatable).
        #[arg(long = "contact")]
        contacts: Vec<String>,
        /// Where to insert it.
        #[command(flatten)]
        append: AppendArgs,
    },
    /// The weekly summary across the week's runs (Markdown, or JSON with --json).
    #[command(after_help = "Example:\n  connrun report weekly --date 20251119 --append docs/logs/weekly.md")]
    Weekly {
        /// A day of the week to summarise (YYYYMMDD, in --tz); default: today.
        #[arg(long)]
        date: Option<String>,
        /// Only runs of this template.
        #[arg(long)]
        template: Option<String>,
        /// Where to insert it.
        #[command(flatten)]
        append: AppendArgs,
    },
    /// The row for the team's status table: date, who, main changes, next action.
    #[command(
        after_help = "Example:\n  connrun report status-row 20251119TorcaPHRSeqZ1 --who @Codex --append DOC_STATUS.md --under \"## W22\""
    )]
    StatusRow {
        /// The RUN_ID (`<RUN_ID>/<target>` for one side of a parity run).
        run_id: String,
        /// Who (default: $USER).
        #[arg(long)]
        who: Option<String>,
        /// Where to insert it.
        #[command(flatten)]
        append: AppendArgs,
    },
}
