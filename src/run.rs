//! The orchestrator: executes a [`Plan`] into a run folder, phase by phase, and seals the evidence.
//!
//! For each phase in template order: the audit queries run (before), the probes run concurrently up to
//! `--jobs`, the audit queries run again (after), and the before/after/delta/expected counts are kept, so a
//! delta belongs to that phase's probes. A failed probe or a failed query is recorded and the run goes on;
//! only a harness failure (evidence cannot be written, templates do not render) is an error. Everything
//! written here passes through the target's [`Redactor`] first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::audit::{AuditDb, QueryOutcome};
use crate::capture::Captured;
use crate::evidence::{EventLog, EvidenceError, RunFolder};
use crate::identity::{self, IdentityError};
use crate::plan::{Plan, PlannedPhase, TOOL_VERSION};
use crate::probe::{ProbeClient, ProbeRecord, ProbeSpec};
use crate::redact::Redactor;
use crate::report::{ReportError, Reports};
use crate::status::{AuditCount, AuditCounts, PhaseStatus, RunStatus, STATUS_SCHEMA_VERSION};
use crate::target::Target;
use sending::Sending;

mod sending;

/// Limit for each preflight network check when the target sets no timeout.
const PREFLIGHT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How to run.
#[derive(Debug)]
pub struct RunOptions {
    /// Probes of one phase run at most this many at a time (at least 1).
    pub jobs: usize,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Markdown templates to render at the end.
    pub reports: Reports,
}

/// Why a run could not be completed (as opposed to probes that failed, which are results).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The TLS identity or trust could not be loaded.
    #[error("target {target}: {source}")]
    Identity {
        /// Target name.
        target: String,
        /// The identity error (names the file).
        source: IdentityError,
    },
    /// Evidence could not be written.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// Reports could not be rendered.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// A completed run.
#[derive(Debug)]
pub struct RunOutcome {
    /// The final (sealed) run folder.
    pub dir: std::path::PathBuf,
    /// What the run found.
    pub status: RunStatus,
}

/// Everything needed to send probes for one target, built before any folder is claimed so that a bad
/// identity file never burns a RUN_ID.
#[derive(Clone)]
pub struct Prepared {
    /// The probe client (TLS config, Basic credentials, redactor).
    pub client: ProbeClient,
    /// The redactor for everything else written.
    pub redactor: Arc<Redactor>,
}

/// Loads the target's identity and trust and builds the probe client.
pub fn prepare(target: &Target) -> Result<Prepared, RunError> {
    let redactor = Arc::new(Redactor::new(target.secrets()));
    let tls = identity::client_tls_config(&target.spec.trust, target.identity.as_ref())
        .map_err(|source| RunError::Identity { target: target.spec.name.clone(), source })?;
    let client = ProbeClient::new(Arc::new(tls), target.basic.clone(), redactor.clone());
    Ok(Prepared { client, redactor })
}

/// Runs the plan into `folder` and seals it.
pub async fn execute(
    plan: &Plan,
    prepared: &Prepared,
    folder: RunFolder,
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    let started_at = Utc::now();
    let run_id = plan.run_id.to_string();
    let redactor = &prepared.redactor;
    let dir = folder.dir().to_owned();
    let log = EventLog::open(&dir)?;
    log.event(
        "run_started",
        json!({ "run_id": run_id, "template": plan.template.name, "target": plan.target.spec.name }),
    )?;
    folder.write("run.toml", redactor.text(&plan.to_run_toml()).as_bytes())?;

    let total = plan.probes().count() as u64 + u64::from(plan.serverinfo.is_some());
    let progress = if options.progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {pos}/{len} {wide_msg}") {
        progress.set_style(style);
    }

    let audit = match &plan.target.audit_db_url {
        Some(url) => Some(AuditDb::connect(url).await.map_err(|e| redactor.text(&e.to_string()))),
        None => None,
    };
    let mut audit_errors = Vec::new();
    if let Some(Err(message)) = &audit {
        log.event("audit_connect_failed", json!({ "error": message }))?;
        audit_errors.push(message.clone());
    }
    let db = audit.as_ref().and_then(|a| a.as_ref().ok());

    progress.set_message("preflight");
    let preflight_input = crate::preflight::PreflightInput::for_target(&plan.target, PREFLIGHT_TIMEOUT);
    let preflight = crate::preflight::preflight(&preflight_input).await;
    let failed: Vec<&str> = preflight.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    log.event("preflight_finished", json!({ "checks": preflight.len(), "failed": failed }))?;

    let serverinfo = match &plan.serverinfo {
        Some(spec) => {
            progress.set_message(format!("{} {}", spec.id, spec.name));
            let record = run_serverinfo(&prepared.client, spec, &run_id, &dir).await?;
            log.event("probe_finished", probe_event(&record))?;
            progress.inc(1);
            Some(record)
        }
        None => None,
    };
    let serverinfo_body = serverinfo.as_ref().and_then(|r| body_preview(&dir, r)).map(|b| redactor.text(&b));

    let mut probes = Vec::new();
    let mut phases = Vec::new();
    let mut counts = Vec::new();
    let mut sql_files: BTreeMap<String, String> = BTreeMap::new();
    let shared = queries_in_several_phases(plan);
    let mut captured = Captured::default();
    for phase in &plan.phases {
        let phase_started = Utc::now();
        log.event("phase_started", json!({ "phase": phase.id, "name": phase.name }))?;
        let before = run_queries(db, phase, phase_started, "before", &shared, &mut sql_files, &log).await?;
        progress.set_message(format!("Phase-{} {}", phase.id, phase.name));
        let sending = Sending { client: &prepared.client, redactor, run_id: &run_id, dir: &dir };
        let (finished, taken) = run_probes(&sending, phase, options.jobs, &captured, &progress, &log).await;
        if !taken.names().is_empty() {
            log.event("captured", json!({ "phase": phase.id, "variables": taken.names() }))?;
        }
        captured.merge(taken);
        let after = run_queries(db, phase, phase_started, "after", &shared, &mut sql_files, &log).await?;
        if db.is_some() && !phase.audit_queries.is_empty() {
            counts.extend(phase_counts(phase, &before, &after));
        }
        audit_errors.extend(before.errors.iter().chain(&after.errors).map(|e| redactor.text(e)));
        phases.push(PhaseStatus {
            id: phase.id.clone(),
            name: phase.name.clone(),
            started_at: phase_started,
            finished_at: Utc::now(),
        });
        probes.extend(finished);
        log.event("phase_finished", json!({ "phase": phase.id }))?;
    }
    progress.finish_and_clear();

    for (name, text) in &sql_files {
        folder.write(&format!("audit/sql/{name}.sql"), redactor.text(text).as_bytes())?;
    }
    let audit_ok = audit_errors.is_empty() && !counts.iter().any(AuditCount::is_missing);
    let status = RunStatus {
        schema_version: STATUS_SCHEMA_VERSION,
        tool_version: TOOL_VERSION.to_owned(),
        run_id: run_id.clone(),
        template: plan.template.name.clone(),
        template_description: plan.template.description.clone(),
        suite: plan.template.suite.clone(),
        target: plan.target.spec.name.clone(),
        base_url: plan.target.spec.base_url.clone(),
        started_at,
        finished_at: Utc::now(),
        all_ready: probes.iter().all(|p| p.ready) && serverinfo.as_ref().is_none_or(|s| s.ready),
        audit_ok,
        audit_checked: plan.target.audit_db_url.is_some(),
        phases,
        preflight,
        serverinfo,
        serverinfo_body,
        probe_memos: plan.phases.iter().flat_map(|p| p.memos.clone()).collect(),
        probes,
        audit: counts,
        audit_errors,
    };
    write_documents(&folder, redactor, &status, &options.reports)?;
    log.event(
        "run_finished",
        json!({ "ok": status.is_ok(), "all_ready": status.all_ready, "audit_ok": status.audit_ok }),
    )?;
    drop(log);
    let dir = folder.finish()?;
    Ok(RunOutcome { dir, status })
}

/// Writes everything derived from the status: status.json, preflight.json, audit/counts.json, the HAR,
/// junit.xml and the rendered Markdown. Each is serialised straight into its file through the redactor, so
/// no document is held in memory whole.
fn write_documents(
    folder: &RunFolder,
    redactor: &Redactor,
    status: &RunStatus,
    reports: &Reports,
) -> Result<(), RunError> {
    write_json(folder, redactor, "status.json", status)?;
    write_json(folder, redactor, "preflight.json", &status.preflight)?;
    let counts = AuditCounts {
        schema_version: STATUS_SCHEMA_VERSION,
        run_id: status.run_id.clone(),
        counts: status.audit.clone(),
    };
    write_json(folder, redactor, "audit/counts.json", &counts)?;
    let mut har = folder.create_redacted("har/run.har", redactor)?;
    crate::har::write(&mut har, &status.run_id, status.serverinfo.iter().chain(&status.probes))
        .map_err(|e| har.error(e.into()))?;
    har.finish()?;
    let mut junit = folder.create_redacted("junit.xml", redactor)?;
    crate::junit::write(&mut junit, status).map_err(|e| junit.error(e))?;
    junit.finish()?;
    let context = reports.context(status)?;
    for (name, path, _) in crate::report::DOCUMENTS {
        let mut file = folder.create_redacted(path, redactor)?;
        reports.render_to(name, &context, &mut file)?;
        file.finish()?;
    }
    Ok(())
}

/// Runs a phase's probes, at most `jobs` at a time, and returns their records in template order and the
/// values they captured (usable from the next phase on).
async fn run_probes(
    sending: &Sending<'_>,
    phase: &PlannedPhase,
    jobs: usize,
    captured: &Captured,
    progress: &ProgressBar,
    log: &EventLog,
) -> (Vec<ProbeRecord>, Captured) {
    let mut finished: Vec<(usize, ProbeRecord, Captured)> = futures::stream::iter(phase.probes.iter().enumerate())
        .map(|(index, spec)| async move {
            let (record, taken) = sending.probe(spec, phase.flows.get(&spec.id), captured).await;
            (index, record, taken)
        })
        .buffer_unordered(jobs.max(1))
        .inspect(|(_, record, _)| {
            progress.inc(1);
            // A log line that cannot be written must not lose the probe's result; the evidence files remain.
            let _ = log.event("probe_finished", probe_event(record));
        })
        .collect()
        .await;
    finished.sort_by_key(|(index, _, _)| *index);
    let mut taken = Captured::default();
    let records = finished
        .into_iter()
        .map(|(_, record, captured)| {
            taken.merge(captured);
            record
        })
        .collect();
    (records, taken)
}

/// Serialises `value` as pretty JSON into `path`, redacting on the way.
fn write_json(
    folder: &RunFolder,
    redactor: &Redactor,
    path: &str,
    value: &impl serde::Serialize,
) -> Result<(), RunError> {
    let mut file = folder.create_redacted(path, redactor)?;
    serde_json::to_writer_pretty(&mut file, value).map_err(|e| file.error(e.into()))?;
    file.finish()?;
    Ok(())
}

fn probe_event(record: &ProbeRecord) -> serde_json::Value {
    json!({
        "probe": record.id, "phase": record.phase, "method": record.method, "url": record.url,
        "outcome": record.outcome.kind(), "error": record.outcome.describe(), "http_status": record.http_status,
        "ready": record.ready, "total_ms": record.timings.total_ms,
    })
}

/// Runs the server-info probe in a scratch folder and moves its dump to `serverinfo/` (trace to `trace/`).
async fn run_serverinfo(
    client: &ProbeClient,
    spec: &ProbeSpec,
    run_id: &str,
    dir: &Path,
) -> Result<ProbeRecord, RunError> {
    let scratch = dir.join(".serverinfo-scratch");
    let mut record = client.run(spec, run_id, &scratch).await;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RunError::Evidence(EvidenceError::Io { path, source })
    };
    let dump = scratch.join("httpdump").join(&spec.id);
    let target = dir.join("serverinfo");
    if dump.is_dir() {
        std::fs::rename(&dump, &target).map_err(io(&target))?;
    }
    let trace = scratch.join("trace").join(format!("{}_trace.log", spec.id));
    if trace.is_file() {
        std::fs::create_dir_all(dir.join("trace")).map_err(io(dir))?;
        let moved = dir.join("trace").join(format!("{}_trace.log", spec.id));
        std::fs::rename(&trace, &moved).map_err(io(&moved))?;
    }
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    }
    let prefix = format!("httpdump/{}/", spec.id);
    if let Some(file) = record.response_body_file.as_mut()
        && let Some(rest) = file.strip_prefix(&prefix)
    {
        *file = format!("serverinfo/{rest}");
    }
    Ok(record)
}

/// The first 200 bytes of a recorded response body (gunzipped when stored as `.gz`), as text.
fn body_preview(dir: &Path, record: &ProbeRecord) -> Option<String> {
    let path = dir.join(record.response_body_file.as_ref()?);
    let file = std::fs::File::open(&path).ok()?;
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut buffer = Vec::new();
    reader.by_ref().take(200).read_to_end(&mut buffer).ok()?;
    let text = String::from_utf8_lossy(&buffer).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Counts per (action, outcome) from one round of a phase's queries, plus the errors met.
#[derive(Debug, Default)]
struct Round {
    /// Rows per (action, outcome); outcome is None when a query does not group by it.
    counts: BTreeMap<(String, Option<String>), u64>,
    /// True when any query reported an outcome column.
    has_outcome: bool,
    /// Query failures (connection or SQL), recorded as text.
    errors: Vec<String>,
    /// True when every query ran without error.
    complete: bool,
}

async fn run_queries(
    db: Option<&AuditDb>,
    phase: &PlannedPhase,
    since: DateTime<Utc>,
    when: &str,
    shared: &BTreeSet<String>,
    sql_files: &mut BTreeMap<String, String>,
    log: &EventLog,
) -> Result<Round, RunError> {
    let mut round = Round { complete: true, ..Round::default() };
    let Some(db) = db else {
        round.complete = false;
        return Ok(round);
    };
    for query in &phase.audit_queries {
        let until = Utc::now();
        let sql = query
            .sql
            .replace("{{since}}", &since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .replace("{{until}}", &until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let outcome = db.query_text(&sql).await;
        log.event(
            "audit_query",
            json!({ "phase": phase.id, "query": query.name, "when": when, "rows": outcome.rows.len(), "error": outcome.error }),
        )?;
        let key = if shared.contains(&query.name) {
            format!("Phase-{}_{}", phase.id, query.name)
        } else {
            query.name.clone()
        };
        let entry = sql_files
            .entry(key)
            .or_insert_with(|| format!("-- connrun audit query `{}` (Phase-{})\n", query.name, phase.id));
        entry.push_str(&sql_section(&sql, &outcome, when, until));
        if let Some(error) = &outcome.error {
            round.complete = false;
            round.errors.push(format!("Phase-{} {} ({when}): {error}", phase.id, query.name));
            continue;
        }
        tally(&outcome, &mut round);
    }
    Ok(round)
}

/// Query names used by more than one phase: their evidence files get the phase in the name.
fn queries_in_several_phases(plan: &Plan) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut shared = BTreeSet::new();
    for phase in &plan.phases {
        let names: BTreeSet<&String> = phase.audit_queries.iter().map(|q| &q.name).collect();
        for name in names {
            if !seen.insert(name.clone()) {
                shared.insert(name.clone());
            }
        }
    }
    shared
}

fn sql_section(sql: &str, outcome: &QueryOutcome, when: &str, ran_at: DateTime<Utc>) -> String {
    let result = match &outcome.error {
        Some(error) => format!("ERROR: {error}\n"),
        None => outcome.psql_table(),
    };
    format!(
        "\n-- {when} the phase: ran at {} ({:.1} ms), {} rows\n{}\n/*\n{}*/\n",
        ran_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        outcome.elapsed_ms,
        outcome.rows.len(),
        sql.trim_end(),
        result.replace("*/", "* /")
    )
}

/// Adds a query's rows to the round: columns `action`, optional `outcome`, and `count` (or the last column).
fn tally(outcome: &QueryOutcome, round: &mut Round) {
    let column = |name: &str| outcome.columns.iter().position(|c| c.eq_ignore_ascii_case(name));
    let Some(action) = column("action") else { return };
    let outcome_column = column("outcome");
    let count_column = column("count").unwrap_or(outcome.columns.len().saturating_sub(1));
    round.has_outcome |= outcome_column.is_some();
    for row in &outcome.rows {
        let Some(Some(action)) = row.get(action) else { continue };
        let result = outcome_column.and_then(|i| row.get(i).cloned().flatten());
        let count = row.get(count_column).cloned().flatten().and_then(|c| c.trim().parse::<u64>().ok()).unwrap_or(0);
        let slot = round.counts.entry((action.clone(), result)).or_default();
        *slot = (*slot).max(count);
    }
}

fn phase_counts(phase: &PlannedPhase, before: &Round, after: &Round) -> Vec<AuditCount> {
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for action in phase.probes.iter().flat_map(|p| p.audit_expected.iter()) {
        *expected.entry(action.clone()).or_default() += 1;
    }
    let success = (before.has_outcome || after.has_outcome).then(|| "success".to_owned());
    let mut keys: BTreeSet<(String, Option<String>)> =
        before.counts.keys().chain(after.counts.keys()).cloned().collect();
    keys.extend(expected.keys().map(|action| (action.clone(), success.clone())));
    keys.into_iter()
        .map(|(action, outcome)| {
            let value = |round: &Round| {
                round.complete.then(|| round.counts.get(&(action.clone(), outcome.clone())).copied().unwrap_or(0))
            };
            let (before_count, after_count) = (value(before), value(after));
            let is_success = outcome.is_none() || outcome.as_deref() == Some("success");
            AuditCount {
                phase: phase.id.clone(),
                expected: if is_success { expected.get(&action).copied().unwrap_or(0) } else { 0 },
                delta: before_count.zip(after_count).map(|(b, a)| a as i64 - b as i64),
                before: before_count,
                after: after_count,
                action,
                outcome,
            }
        })
        .collect()
}
