//! The probe engine: one curl-equivalent HTTPS request per probe, recorded as evidence.
//!
//! Each probe opens a fresh connection (DNS, TCP, TLS through rustls, HTTP/1.1 through a hyper client
//! connection), times every phase, keeps the exact bytes written and read, streams the response body to
//! disk and classifies any failure into an [`Outcome`]. It never returns an error: a failed probe is data.
//!
//! The folder owns the engine and what it needs to send: identity and trust (`identity.rs`), certificate
//! facts (`certinfo.rs`), `{{placeholders}}` (`placeholder.rs`), captures and polls. It writes its records
//! with the types of [`crate::evidence`] and masks through [`crate::redact`]; it imports nothing else of
//! the crate.

mod body;
pub mod capture;
pub mod certinfo;
mod chain;
mod checks;
pub(crate) mod classify;
pub(crate) mod connect;
mod dump;
pub(crate) mod exchange;
pub mod identity;
pub mod placeholder;
pub mod poll;
pub mod proxy;
pub(crate) mod request;
pub mod retry;
pub mod wire;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::evidence::curl::CurlRecipe;
use crate::evidence::{EvidenceLayout, FailedAttempt, Outcome, ProbeRecord, Timings};

use crate::redact::Redactor;
use exchange::Exchange;
use wire::SharedWireLog;

/// One probe, fully resolved by the plan (variables substituted, files checked).
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// Probe id, e.g. `PHR-06`; also names the evidence files.
    pub id: String,
    /// Endpoint name, e.g. `identityToken`.
    pub name: String,
    /// Phase label, e.g. `C`.
    pub phase: String,
    /// HTTP method to send.
    pub method: http::Method,
    /// Absolute `https://` URL.
    pub url: String,
    /// Template headers plus target extra headers; the client adds Host, Authorization and Content-Length.
    pub headers: Vec<(String, String)>,
    /// What to send as the request body.
    pub body: ProbeBody,
    /// Statuses that count as Ready (e.g. `[200, 403]`).
    pub ready_statuses: Vec<u16>,
    /// Extra conditions on the response body for Ready.
    pub body_checks: Vec<BodyCheck>,
    /// Audit actions the probe should produce, carried into the record.
    pub audit_expected: Vec<String>,
    /// Overall limit for the probe, like curl's `--max-time`; a timeout names the phase that was waiting.
    pub timeout: Duration,
}

/// The request body of a probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeBody {
    /// No body (no Content-Length for GET/HEAD/DELETE).
    #[default]
    Empty,
    /// A small body given in the template.
    Inline(Vec<u8>),
    /// A body streamed from a file (e.g. an image upload).
    File(PathBuf),
}

/// A condition on the response body that must hold for the probe to be Ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyCheck {
    /// The body contains this text (searched in a streaming way, across chunk boundaries).
    Contains(String),
    /// The body is JSON and this JSON pointer (RFC 6901, e.g. `/token`) exists in it.
    JsonField(String),
    /// The body is at most this many bytes.
    MaxBytes(u64),
}

/// What the run layer needs from a probe beyond its evidence.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inspect {
    /// Keep the response body (up to 1 MiB) and parse it as JSON for the caller.
    pub keep_json: bool,
    /// The attempt number of a polled probe, recorded in the record and in `status.txt`.
    pub attempt: Option<u32>,
}

/// A probe's record plus what [`Inspect`] asked for.
#[derive(Debug)]
pub struct Inspected {
    /// The record, as [`ProbeClient::run`] returns it.
    pub record: ProbeRecord,
    /// The unredacted response body as JSON (may hold secrets: never write it), or why there is none.
    pub json: exchange::KeptJson,
}

/// Basic credentials added to every probe's Authorization header.
#[derive(Clone)]
pub struct BasicCredentials {
    /// User name.
    pub user: String,
    /// Password; never printed (Debug is redacted).
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials").field("user", &self.user).field("password", &"<MASKED>").finish()
    }
}

/// How a target's probes travel beyond TLS and Basic: the proxy, the retries, and how to write `curl.sh`.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// Which probes go through which proxy (the target's `proxy`, `HTTPS_PROXY`, `NO_PROXY`).
    pub proxy: proxy::ProxyRules,
    /// Retries after connection-level failures.
    pub retry: retry::RetryPolicy,
    /// Trust, identity and Basic by reference, for `httpdump/<id>/curl.sh`; no script without it.
    pub curl: Option<CurlRecipe>,
}

/// Runs probes with one TLS configuration, one set of credentials and one redactor.
#[derive(Clone)]
pub struct ProbeClient {
    /// Trust roots, client identity, ALPN; shared by all probes of a run.
    tls: Arc<rustls::ClientConfig>,
    /// Basic credentials, if the target uses them.
    basic: Option<BasicCredentials>,
    /// Masks secrets in everything the probe writes.
    redactor: Arc<Redactor>,
    /// Proxy, retries and the curl recipe (direct, no retries, no `curl.sh` by default).
    transport: Arc<Transport>,
}

impl ProbeClient {
    /// A client for one target.
    pub fn new(tls: Arc<rustls::ClientConfig>, basic: Option<BasicCredentials>, redactor: Arc<Redactor>) -> Self {
        Self { tls, basic, redactor, transport: Arc::default() }
    }

    /// The same client with a proxy, retries and a curl recipe.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = Arc::new(transport);
        self
    }

    /// Runs one probe on a fresh connection; writes `httpdump/<id>/{request.http,response.headers,
    /// response.body[.gz],status.txt}` and `trace/<id>_trace.log` under `run_dir`. Never returns Err:
    /// failures are outcomes.
    pub async fn run(&self, spec: &ProbeSpec, run_id: &str, run_dir: &Path) -> ProbeRecord {
        self.run_inspected(spec, run_id, run_dir, Inspect::default()).await.record
    }

    /// Like [`ProbeClient::run`], and also hands back the response body as JSON (when asked, for
    /// captures and polls) and numbers the attempt in the record (for polls). The evidence written is the
    /// same as `run`'s; the JSON is the unredacted body and is never written.
    pub async fn run_inspected(&self, spec: &ProbeSpec, run_id: &str, run_dir: &Path, inspect: Inspect) -> Inspected {
        let file_id = file_safe(&spec.id);
        let dump_rel = EvidenceLayout::probe_dump(&file_id);
        let dump_dir = run_dir.join(&dump_rel);
        let trace_dir = run_dir.join(EvidenceLayout::TRACE_DIR);
        let route = request::endpoint(&spec.url).ok().and_then(|e| self.transport.proxy.route(&e.host, e.port));
        let mut delays = self.transport.retry.delays();
        let mut retried: Vec<FailedAttempt> = Vec::new();
        let (mut record, log, ended) = loop {
            let log = SharedWireLog::default();
            for earlier in &retried {
                log.info(format!("attempt {} failed: {}", earlier.attempt, earlier.outcome.describe()));
            }
            let (record, ended) = self.attempt(spec, inspect, route, (&dump_dir, &trace_dir), &log, &retried).await;
            match delays.next().filter(|_| ended.transient) {
                None => break (record, log, ended),
                Some(delay) => {
                    let attempt = u32::try_from(retried.len()).unwrap_or(u32::MAX).saturating_add(1);
                    let (started_at, timings, outcome) = (record.started_at, record.timings, ended.outcome);
                    retried.push(FailedAttempt { attempt, started_at, outcome, timings });
                    tokio::time::sleep(delay).await;
                }
            }
        };
        if !retried.is_empty() {
            log.info(format!("attempt {} of this probe, after {} retried", retried.len() + 1, retried.len()));
        }
        record.retried = retried;
        if ended.outcome != Outcome::Http {
            log.info(ended.outcome.describe());
        }
        record.outcome = ended.outcome;
        if let Some(file) = &record.response_body_file {
            record.response_body_file = Some(format!("{dump_rel}/{file}"));
        }
        let status_ok = record.http_status.is_some_and(|s| spec.ready_statuses.contains(&s));
        record.ready = record.outcome == Outcome::Http && status_ok && record.check_failures.is_empty();
        let curl = self.transport.curl.as_ref().map(|recipe| dump::curl_sh(recipe, spec, route, &self.redactor));
        let files = EvidenceFiles { run_id, dump_dir: &dump_dir, trace_dir: &trace_dir, file_id: &file_id };
        self.write_evidence(&mut record, &files, &log, curl).await;
        Inspected { record, json: ended.json }
    }

    /// One attempt of a probe on a fresh connection: its record (outcome still to be set) and how it ended.
    async fn attempt(
        &self,
        spec: &ProbeSpec,
        inspect: Inspect,
        route: Option<&proxy::ProxyRoute>,
        (dump_dir, trace_dir): (&Path, &Path),
        log: &SharedWireLog,
        retried: &[FailedAttempt],
    ) -> (ProbeRecord, exchange::Ended) {
        let started = Instant::now();
        let mut record = self.empty_record(spec);
        record.attempts = inspect.attempt;
        if inspect.attempt.is_some_and(|n| n > 1) || !retried.is_empty() {
            // A repeated attempt replaces the previous one's evidence; its body may have had the other name.
            for stale in [EvidenceLayout::RESPONSE_BODY, &format!("{}.gz", EvidenceLayout::RESPONSE_BODY)] {
                let _ = tokio::fs::remove_file(dump_dir.join(stale)).await;
            }
        }
        let ended = match create_dirs(dump_dir, trace_dir).await {
            Err(message) => exchange::Ended {
                outcome: Outcome::LocalError { message: message.clone() },
                json: Err(message),
                transient: false,
            },
            Ok(()) => {
                let exchange = Exchange {
                    spec,
                    tls: &self.tls,
                    basic: self.basic.as_ref(),
                    redactor: &self.redactor,
                    keep_json: inspect.keep_json,
                    proxy: route,
                };
                exchange.run(&mut record, dump_dir, log, started).await
            }
        };
        record.timings.total_ms = connect::elapsed_ms(started);
        (record, ended)
    }

    /// Records a probe that was not sent (e.g. it needs a variable an earlier probe failed to capture):
    /// outcome [`Outcome::LocalError`] with `reason`, and the usual dump files, so the run goes on and the
    /// evidence says why.
    pub async fn not_sent(&self, spec: &ProbeSpec, run_id: &str, run_dir: &Path, reason: &str) -> ProbeRecord {
        let file_id = file_safe(&spec.id);
        let dump_dir = run_dir.join(EvidenceLayout::probe_dump(&file_id));
        let trace_dir = run_dir.join(EvidenceLayout::TRACE_DIR);
        let log = SharedWireLog::default();
        let mut record = self.empty_record(spec);
        let reason = self.redactor.text(reason);
        log.info(format!("not sent: {reason}"));
        record.outcome = Outcome::LocalError { message: reason };
        if let Err(message) = create_dirs(&dump_dir, &trace_dir).await {
            record.check_failures.push(message);
            return record;
        }
        let files = EvidenceFiles { run_id, dump_dir: &dump_dir, trace_dir: &trace_dir, file_id: &file_id };
        self.write_evidence(&mut record, &files, &log, None).await;
        record
    }

    /// Rewrites `httpdump/<id>/status.txt` after the caller changed the record (a failed capture or poll
    /// makes a probe not Ready); the record's texts must already be redacted.
    pub async fn rewrite_status(&self, record: &mut ProbeRecord, run_id: &str, run_dir: &Path) {
        let dump_dir = run_dir.join(EvidenceLayout::probe_dump(&file_safe(&record.id)));
        if let Err(e) = dump::write(&dump_dir, EvidenceLayout::STATUS_TXT, dump::status_txt(record, run_id)).await {
            record.ready = false;
            record.check_failures.push(e);
        }
    }

    fn empty_record(&self, spec: &ProbeSpec) -> ProbeRecord {
        ProbeRecord {
            id: spec.id.clone(),
            name: spec.name.clone(),
            phase: spec.phase.clone(),
            method: spec.method.to_string(),
            url: self.redactor.text(&spec.url),
            started_at: chrono::Utc::now(),
            outcome: Outcome::Http,
            http_status: None,
            ready: false,
            check_failures: Vec::new(),
            timings: Timings::default(),
            tls: None,
            server_chain: Vec::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            request_body_bytes: 0,
            response_body_bytes: 0,
            response_body_sha256: None,
            response_body_file: None,
            audit_expected: spec.audit_expected.clone(),
            attempts: None,
            proxy: None,
            retried: Vec::new(),
        }
    }

    /// Writes the dump files (and `curl.sh` when given); a write failure is noted on the record (and makes
    /// it not Ready).
    async fn write_evidence(
        &self,
        record: &mut ProbeRecord,
        files: &EvidenceFiles<'_>,
        log: &SharedWireLog,
        curl: Option<Vec<u8>>,
    ) {
        let EvidenceFiles { run_id, dump_dir, trace_dir, file_id } = *files;
        let (request, response, trace) = {
            let log = log.lock();
            (
                dump::request_http(&log, &self.redactor),
                dump::response_headers(&log, record, &self.redactor),
                dump::trace(&log, &self.redactor),
            )
        };
        // status.txt is rendered as if the other files were written; should one fail, it is rendered again.
        let status = dump::status_txt(record, run_id);
        let mut writes = vec![
            (dump_dir.join("request.http"), request),
            (dump_dir.join("response.headers"), response),
            (trace_dir.join(format!("{file_id}_trace.log")), trace.into_bytes()),
        ];
        if let Some(curl) = curl {
            writes.push((dump_dir.join(EvidenceLayout::CURL_SH), curl));
        }
        writes.push((dump_dir.join(EvidenceLayout::STATUS_TXT), status.into_bytes()));
        let mut results = dump::write_all(writes).await;
        let status_written = results.pop().unwrap_or(Ok(()));
        let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        match status_written {
            Err(e) => {
                record.ready = false;
                record.check_failures.extend(failures);
                record.check_failures.push(e);
            }
            Ok(()) if !failures.is_empty() => {
                record.ready = false;
                record.check_failures.extend(failures);
                if let Err(e) =
                    dump::write(dump_dir, EvidenceLayout::STATUS_TXT, dump::status_txt(record, run_id)).await
                {
                    record.check_failures.push(e);
                }
            }
            Ok(()) => {}
        }
    }
}

/// Where one probe's files go.
#[derive(Clone, Copy)]
struct EvidenceFiles<'a> {
    /// The RUN_ID, for `status.txt`.
    run_id: &'a str,
    /// `httpdump/<id>/` in the run folder.
    dump_dir: &'a Path,
    /// `trace/` in the run folder.
    trace_dir: &'a Path,
    /// The probe id as a file name.
    file_id: &'a str,
}

async fn create_dirs(dump_dir: &Path, trace_dir: &Path) -> Result<(), String> {
    dump::create_dirs(vec![dump_dir.to_owned(), trace_dir.to_owned()]).await
}

/// A probe id as a file name: anything but letters, digits, `-`, `_` and `.` becomes `_`.
fn file_safe(id: &str) -> String {
    let safe: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') { "probe".to_owned() } else { safe }
}
