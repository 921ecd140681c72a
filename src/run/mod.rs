//! The orchestrator: executes a [`Plan`] into a run folder, phase by phase, and seals the evidence.
//!
//! For each phase in template order: the audit queries run (before), the probes run concurrently up to
//! `--jobs`, the audit queries run again (after), and the before/after/delta/expected counts are kept, so a
//! delta belongs to that phase's probes. A failed probe or a failed query is recorded and the run goes on;
//! only a harness failure (evidence cannot be written, templates do not render) is an error. Everything
//! written here passes through the target's [`Redactor`] first.
//!
//! The folder owns executing a plan: this orchestrator, preflight (`preflight.rs`), sending one probe with
//! its flow (`sending.rs`) and parity runs (`parity.rs`). It drives the engine, the audit pulls and the
//! evidence, and renders the Markdown at the end; only the command line imports it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::audit::AuditDb;
use crate::audit::chain::{self, ChainInput};
use crate::audit::counting::{self, PhaseQueries, Round, SqlEvidence};
use crate::evidence::CheckResult;
use crate::evidence::ProbeRecord;
use crate::evidence::TOOL_VERSION;
use crate::evidence::chain::ChainProof;
use crate::evidence::spool::{Excerpt, ProbeSpool};
use crate::evidence::status::{AuditCount, AuditState, PhaseStatus, RunStatus, STATUS_SCHEMA_VERSION};
use crate::evidence::{EventLog, EvidenceError, EvidenceLayout, RunFolder};
use crate::plan::target::Target;
use crate::plan::{Plan, PlannedPhase};
use crate::probe::capture::Captured;
use crate::probe::identity::{self, IdentityError};
use crate::probe::{ProbeClient, ProbeSpec};
use crate::redact::Redactor;
use crate::report::{ReportError, Reports};
use sending::Sending;

mod documents;
pub mod parity;
pub mod preflight;
mod sending;

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
    /// What the run found; for a run too large to list whole, `status.probes` holds only what `excerpt` says.
    pub status: RunStatus,
    /// Set when `status.probes` is not every probe (see [`Excerpt`]); `status.json` always has every one.
    pub excerpt: Option<Excerpt>,
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
    let client =
        ProbeClient::new(Arc::new(tls), target.basic.clone(), redactor.clone()).with_transport(target.transport());
    Ok(Prepared { client, redactor })
}

/// Runs the plan into `folder` and seals it: preflight, server info, then each phase (audit before,
/// probes, audit after), then the documents, then the manifest and the rename.
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
    folder.write(EvidenceLayout::RUN_TOML, redactor.text(&plan.to_run_toml()).as_bytes())?;
    let progress = progress_bar(plan, options);
    let mut audit = AuditSession::connect(plan, redactor, &log).await?;

    progress.set_message("preflight");
    let preflight = run_preflight(plan, &log).await?;
    let sending = Sending { client: &prepared.client, redactor, run_id: &run_id, dir: &dir };
    let serverinfo = match &plan.serverinfo {
        Some(spec) => Some(run_serverinfo(&sending, spec, &progress, &log).await?),
        None => None,
    };
    let serverinfo_body = serverinfo.as_ref().and_then(|r| body_preview(&dir, r)).map(|b| redactor.text(&b));
    let mut spool = ProbeSpool::create(&dir, plan.probes().count())?;
    let (phases, ready) = run_phases(plan, &sending, options.jobs, &mut audit, &progress, &log, &mut spool).await?;
    progress.finish_and_clear();

    for (name, text) in audit.sql.files() {
        folder.write(&EvidenceLayout::audit_sql(name), redactor.text(text).as_bytes())?;
    }
    let chain = audit.prove_chain(plan, &run_id, &log).await?;
    documents::write_json(&folder, redactor, EvidenceLayout::AUDIT_CHAIN, &chain)?;
    let audit_state = AuditState::derive(plan.target.audit_db_url.is_some(), &audit.errors, &audit.counts);
    let audit_ok = audit_state == AuditState::Collected && audit.counts.iter().all(|c| c.finding().is_none());
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
        all_ready: ready == spool.total() && serverinfo.as_ref().is_none_or(|s| s.ready),
        audit_ok,
        audit_checked: plan.target.audit_db_url.is_some(),
        audit_state: Some(audit_state),
        phases,
        preflight,
        serverinfo,
        serverinfo_body,
        probe_memos: plan.phases.iter().flat_map(|p| p.memos.clone()).collect(),
        probes: (),
        audit: audit.counts,
        audit_errors: audit.errors,
        audit_chain: Some(chain.verdict),
    };
    let (status, excerpt) = documents::write(&folder, redactor, status, &spool, &options.reports)?;
    drop(spool);
    log.event(
        "run_finished",
        json!({ "ok": status.is_ok(), "all_ready": status.all_ready, "audit_ok": status.audit_ok }),
    )?;
    drop(log);
    let dir = folder.finish()?;
    Ok(RunOutcome { dir, status, excerpt })
}

/// A progress bar on stderr (hidden unless asked for) counting every probe and the server info.
fn progress_bar(plan: &Plan, options: &RunOptions) -> ProgressBar {
    let total = plan.probes().count() as u64 + u64::from(plan.serverinfo.is_some());
    let progress = if options.progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {pos}/{len} {wide_msg}") {
        progress.set_style(style);
    }
    progress
}

/// The run's audit database (when the target has one) and everything counted so far.
struct AuditSession {
    /// The connection; `None` when the target has no `[audit]` or the connection failed.
    db: Option<AuditDb>,
    /// Connection and query failures, redacted, in the order met.
    errors: Vec<String>,
    /// Counts of every phase that has queries, in phase order.
    counts: Vec<AuditCount>,
    /// The `audit/sql/*.sql` evidence.
    sql: SqlEvidence,
    /// The largest audit id before the run: where the chain segment of `audit/chain.json` starts.
    start_head: Option<i64>,
}

impl AuditSession {
    async fn connect(plan: &Plan, redactor: &Redactor, log: &EventLog) -> Result<Self, RunError> {
        let sql = SqlEvidence::new(plan.phases.iter().map(|p| p.audit_queries.as_slice()));
        let mut session = Self { db: None, errors: Vec::new(), counts: Vec::new(), sql, start_head: None };
        if let Some(url) = &plan.target.audit_db_url {
            match AuditDb::connect(url).await {
                Ok(db) => {
                    session.start_head = chain::head_id(&db).await;
                    session.db = Some(db);
                }
                Err(error) => {
                    let message = redactor.text(&error.to_string());
                    log.event("audit_connect_failed", json!({ "error": message }))?;
                    session.errors.push(message);
                }
            }
        }
        Ok(session)
    }

    /// Proves the run's rows in the audit chain against the newest signed checkpoint (`audit/chain.json`).
    async fn prove_chain(&self, plan: &Plan, run_id: &str, log: &EventLog) -> Result<ChainProof, RunError> {
        let input = ChainInput {
            db: self.db.as_ref(),
            spec: plan.target.spec.audit_chain.as_ref(),
            run_id,
            start_head: self.start_head,
        };
        let proof = chain::prove(&input).await;
        log.event("audit_chain", json!({ "verdict": proof.verdict }))?;
        Ok(proof)
    }

    /// One round of the phase's queries (`before` or `after` its probes).
    async fn round(
        &mut self,
        phase: &PlannedPhase,
        since: DateTime<Utc>,
        when: &str,
        log: &EventLog,
    ) -> Result<Round, RunError> {
        let queries = PhaseQueries { id: &phase.id, queries: &phase.audit_queries };
        Ok(counting::run_round(self.db.as_ref(), &queries, since, when, &mut self.sql, log).await?)
    }

    /// Keeps the phase's counts and the rounds' errors. Each probe is expected to write one row of each
    /// action it declares; a polled probe one per attempt of those its poll names in `audit_each_attempt`.
    fn settle(
        &mut self,
        phase: &PlannedPhase,
        expected: &Expected,
        (before, after): (&Round, &Round),
        redactor: &Redactor,
    ) {
        if self.db.is_some() && !phase.audit_queries.is_empty() {
            self.counts.extend(counting::phase_counts(&phase.id, expected, before, after));
        }
        self.errors.extend(before.errors.iter().chain(&after.errors).map(|e| redactor.text(e)));
    }
}

/// Audit rows a phase's probes should have written, per (action, outcome).
type Expected = BTreeMap<(String, String), u64>;

/// Adds one finished probe's rows to its phase's expectation: one row of each action it declares, a polled
/// probe one per attempt of those its poll names in `audit_each_attempt`.
fn expect_rows(expected: &mut Expected, phase: &PlannedPhase, record: &ProbeRecord) {
    let poll = phase.flows.get(&record.id).and_then(|flow| flow.poll.as_ref());
    for declared in &record.audit_expected {
        let each_attempt = poll.is_some_and(|p| p.audit_each_attempt.contains(declared));
        let rows = if each_attempt { record.attempts.unwrap_or(1) } else { 1 };
        *expected.entry(counting::expected_key(declared)).or_default() += u64::from(rows);
    }
}

/// Runs the preflight checks and logs which failed.
async fn run_preflight(plan: &Plan, log: &EventLog) -> Result<Vec<CheckResult>, RunError> {
    let input = preflight::PreflightInput::for_plan(plan, preflight::DEFAULT_TIMEOUT);
    let checks = preflight::preflight(&input).await;
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    log.event("preflight_finished", json!({ "checks": checks.len(), "failed": failed }))?;
    Ok(checks)
}

/// Runs every phase in template order: audit before, probes, audit after. Every probe's record goes to the
/// spool at its template position; returns the phases' times and how many probes were Ready.
async fn run_phases(
    plan: &Plan,
    sending: &Sending<'_>,
    jobs: usize,
    audit: &mut AuditSession,
    progress: &ProgressBar,
    log: &EventLog,
    spool: &mut ProbeSpool,
) -> Result<(Vec<PhaseStatus>, usize), RunError> {
    let (mut ready, mut first) = (0, 0);
    let mut phases = Vec::new();
    let mut captured = Captured::default();
    for phase in &plan.phases {
        let phase_started = Utc::now();
        log.event("phase_started", json!({ "phase": phase.id, "name": phase.name }))?;
        let before = audit.round(phase, phase_started, "before", log).await?;
        progress.set_message(format!("Phase-{} {}", phase.id, phase.name));
        let spooling = Spooling { spool: &mut *spool, first, expected: Expected::new(), ready: 0 };
        let (finished, taken) = run_probes(sending, phase, jobs, &captured, progress, log, spooling).await?;
        (first, ready) = (first + phase.probes.len(), ready + finished.ready);
        if !taken.names().is_empty() {
            log.event("captured", json!({ "phase": phase.id, "variables": taken.names() }))?;
        }
        captured.merge(taken);
        let after = audit.round(phase, phase_started, "after", log).await?;
        audit.settle(phase, &finished.expected, (&before, &after), sending.redactor);
        phases.push(PhaseStatus {
            id: phase.id.clone(),
            name: phase.name.clone(),
            started_at: phase_started,
            finished_at: Utc::now(),
        });
        log.event("phase_finished", json!({ "phase": phase.id }))?;
    }
    Ok((phases, ready))
}

/// Where a phase's finished records go, and what is kept of them in memory.
struct Spooling<'s> {
    /// The run's spool.
    spool: &'s mut ProbeSpool,
    /// Template position of the phase's first probe.
    first: usize,
    /// The audit rows the phase's probes should have written.
    expected: Expected,
    /// How many of the phase's probes were Ready.
    ready: usize,
}

/// Runs a phase's probes, at most `jobs` at a time, spooling each record at its template position as it
/// finishes (only the counts stay in memory); returns those counts and the values the probes captured, merged
/// in template order (usable from the next phase on). A record that cannot be spooled stops the run.
async fn run_probes<'s>(
    sending: &Sending<'_>,
    phase: &PlannedPhase,
    jobs: usize,
    captured: &Captured,
    progress: &ProgressBar,
    log: &EventLog,
    mut spooling: Spooling<'s>,
) -> Result<(Spooling<'s>, Captured), RunError> {
    let mut finished = futures::stream::iter(phase.probes.iter().enumerate())
        .map(|(index, spec)| async move {
            let (record, taken) = sending.probe(spec, phase.flows.get(&spec.id), captured).await;
            (index, record, taken)
        })
        .buffer_unordered(jobs.max(1));
    let mut captures: Vec<(usize, Captured)> = Vec::new();
    while let Some((index, record, taken)) = finished.next().await {
        progress.inc(1);
        // A log line that cannot be written must not lose the probe's result; the evidence files remain.
        let _ = log.event("probe_finished", probe_event(&record));
        expect_rows(&mut spooling.expected, phase, &record);
        spooling.ready += usize::from(record.ready);
        spooling.spool.push(spooling.first + index, &record, sending.redactor)?;
        if !taken.names().is_empty() {
            captures.push((index, taken));
        }
    }
    captures.sort_by_key(|(index, _)| *index);
    let mut taken = Captured::default();
    for (_, captured) in captures {
        taken.merge(captured);
    }
    Ok((spooling, taken))
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
    sending: &Sending<'_>,
    spec: &ProbeSpec,
    progress: &ProgressBar,
    log: &EventLog,
) -> Result<ProbeRecord, RunError> {
    progress.set_message(format!("{} {}", spec.id, spec.name));
    let dir = sending.dir;
    let scratch = dir.join(".serverinfo-scratch");
    let mut record = sending.client.run(spec, sending.run_id, &scratch).await;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RunError::Evidence(EvidenceError::Io { path, source })
    };
    let dump = scratch.join(EvidenceLayout::probe_dump(&spec.id));
    let target = dir.join(EvidenceLayout::SERVERINFO_DIR);
    if dump.is_dir() {
        std::fs::rename(&dump, &target).map_err(io(&target))?;
    }
    let trace = scratch.join(EvidenceLayout::trace(&spec.id));
    if trace.is_file() {
        std::fs::create_dir_all(dir.join(EvidenceLayout::TRACE_DIR)).map_err(io(dir))?;
        let moved = dir.join(EvidenceLayout::trace(&spec.id));
        std::fs::rename(&trace, &moved).map_err(io(&moved))?;
    }
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    }
    let prefix = EvidenceLayout::dump_link(&spec.id, false);
    if let Some(file) = record.response_body_file.as_mut()
        && let Some(rest) = file.strip_prefix(&prefix)
    {
        *file = format!("{}{rest}", EvidenceLayout::dump_link(&spec.id, true));
    }
    log.event("probe_finished", probe_event(&record))?;
    progress.inc(1);
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
