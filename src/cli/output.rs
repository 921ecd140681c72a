//! Shared by every command: printing results (`--json` or text) and loading the template and target a
//! command names, with messages that say where to look.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::args::GlobalArgs;
use crate::cli::error::CliError;
use crate::plan::target::{Target, Targets};
use crate::plan::template::Template;
use crate::run::RunOutcome;

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

/// Loads the targets file and resolves one target (secrets read).
pub fn load_target(global: &GlobalArgs, name: &str) -> Result<Target, CliError> {
    Ok(Targets::load(&global.targets)?.resolve(name)?)
}

/// Prints RUN_ID, evidence folder and per-probe results (or the status as JSON).
pub fn print_outcome(global: &GlobalArgs, outcome: &RunOutcome) -> Result<(), CliError> {
    let status = &outcome.status;
    let mut text = format!("RUN_ID={}\nevidence: {}\n", status.run_id, outcome.dir.display());
    if let Some(excerpt) = &outcome.excerpt {
        text.push_str(&format!(
            "  {} of {} probes Ready; the {} listed below are those not Ready (status.json has every probe)\n",
            excerpt.ready, excerpt.total, excerpt.listed
        ));
    }
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
    let probes_excerpt = outcome.excerpt.as_ref();
    let value = RunJson { evidence: &outcome.dir, ok: status.is_ok(), run_id: &status.run_id, status, probes_excerpt };
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
    /// The whole `status.json` content; for a run of more than 1,000 probes, with only the probes
    /// `probes_excerpt` says (`status.json` has every one).
    status: &'a crate::evidence::status::RunStatus,
    /// Set when `status.probes` above is not every probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    probes_excerpt: Option<&'a crate::evidence::spool::Excerpt>,
}

/// The artifacts folder as an absolute path, for messages.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
