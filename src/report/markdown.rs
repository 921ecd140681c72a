//! The Markdown (and curl-style log) an operator pastes into the team's logs, rendered from `status.json`.
//!
//! Templates are tera files in `templates/`, compiled into the binary with `include_str!` and overridable
//! file by file with `--templates-dir`. Rendering reads only the run's status (no network I/O). Every value
//! that came from the network goes through the `md` filter, so a `|`, a newline, a backtick or HTML in a
//! response can neither break a table nor inject markup into the rendered page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;
use tera::{Context, Tera, Value};

use crate::evidence::status::{AuditCount, RunStatus};
use crate::evidence::{EvidenceLayout, ProbeRecord};

/// Each rendered document: template file name, output path in the run folder, embedded default.
pub const DOCUMENTS: &[(&str, &str, &str)] = &[
    ("README.md.tera", EvidenceLayout::README, include_str!("../../templates/README.md.tera")),
    ("summary.md.tera", EvidenceLayout::SUMMARY, include_str!("../../templates/summary.md.tera")),
    (
        "phr_container_summary.md.tera",
        EvidenceLayout::CONTAINER_SUMMARY,
        include_str!("../../templates/phr_container_summary.md.tera"),
    ),
    ("open_items.md.tera", EvidenceLayout::OPEN_ITEMS, include_str!("../../templates/open_items.md.tera")),
    ("curl_summary.log.tera", EvidenceLayout::CURL_SUMMARY, include_str!("../../templates/curl_summary.log.tera")),
];

/// Why templates could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An override file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A template does not parse or render; the message includes tera's cause chain.
    #[error("template {name}: {message}")]
    Template {
        /// Template file name.
        name: String,
        /// tera's message with its causes.
        message: String,
    },
}

fn tera_error(name: &str, error: &tera::Error) -> ReportError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ReportError::Template { name: name.to_owned(), message }
}

/// Escapes text for a Markdown table cell or inline Markdown: HTML is entity-encoded, `|`, backticks and link
/// brackets are backslash-escaped, line breaks become `<br>` and other control characters are dropped.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '|' | '`' | '[' | ']' | '\\' | '*' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Renders text as one inline code span that is safe inside a Markdown table: backticks become `'`, line
/// breaks become spaces and `|` is escaped (GitHub tables split on it even inside code spans).
pub fn markdown_code(text: &str) -> String {
    let inner: String = text
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    format!("`{}`", inner.replace('|', "\\|"))
}

/// Collapses text to one line for plain-text logs (line breaks and control characters become spaces).
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Registers the escaping filters every Markdown document uses: `md` (table cells), `md_code` (inline code)
/// and `oneline` (plain-text logs).
pub fn register_markdown_filters(tera: &mut Tera) {
    tera.register_filter("md", string_filter(escape_markdown));
    tera.register_filter("md_code", string_filter(markdown_code));
    tera.register_filter("oneline", string_filter(one_line));
}

fn string_filter(f: fn(&str) -> String) -> impl tera::Filter {
    move |value: &Value, _: &std::collections::HashMap<String, Value>| -> tera::Result<Value> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        Ok(Value::String(f(&text)))
    }
}

/// The compiled templates.
#[derive(Debug)]
pub struct Reports {
    /// tera with every document and the `md` / `oneline` filters registered.
    tera: Tera,
}

impl Reports {
    /// The embedded templates, with files of the same name in `overrides` (if given) taking their place.
    pub fn load(overrides: Option<&Path>) -> Result<Reports, ReportError> {
        let mut tera = Tera::default();
        tera.autoescape_on(Vec::new());
        register_markdown_filters(&mut tera);
        for (name, _, embedded) in DOCUMENTS {
            let text = match overrides.map(|dir| dir.join(name)).filter(|path| path.is_file()) {
                Some(path) => std::fs::read_to_string(&path).map_err(|source| ReportError::Read { path, source })?,
                None => (*embedded).to_owned(),
            };
            tera.add_raw_template(name, &text).map_err(|e| tera_error(name, &e))?;
        }
        Ok(Reports { tera })
    }

    /// Renders every document for a run; returns (path in the run folder, text).
    pub fn render_all(&self, status: &RunStatus) -> Result<Vec<(&'static str, String)>, ReportError> {
        let context = self.context(status)?;
        DOCUMENTS
            .iter()
            .map(|(name, output, _)| {
                self.tera.render(name, &context).map(|text| (*output, text)).map_err(|e| tera_error(name, &e))
            })
            .collect()
    }

    /// What every document renders from; built once per run and shared by [`Reports::render_to`].
    pub fn context(&self, status: &RunStatus) -> Result<Context, ReportError> {
        Context::from_serialize(ReportContext::new(status)).map_err(|e| tera_error("context", &e))
    }

    /// Renders one document (its template file name, see [`DOCUMENTS`]) straight into `out`.
    pub fn render_to(&self, name: &str, context: &Context, out: impl std::io::Write) -> Result<(), ReportError> {
        self.tera.render_to(name, context, out).map_err(|e| tera_error(name, &e))
    }
}

/// What every document template sees at the top level (`run`, `phases`, `serverinfo`, `audit`, ...);
/// field names are the template variable names, documented in `templates/`.
#[derive(Serialize)]
struct ReportContext<'a> {
    run: RunFacts<'a>,
    phases: Vec<PhaseView<'a>>,
    serverinfo: Option<ProbeView<'a>>,
    serverinfo_body: Option<&'a str>,
    audit: Vec<&'a AuditCount>,
    audit_errors: &'a [String],
    open_items: Vec<String>,
}

/// `run.*` in templates: identity, timing (pre-formatted UTC + JST) and the overall verdict of the run.
#[derive(Serialize)]
struct RunFacts<'a> {
    run_id: &'a str,
    template: &'a str,
    description: &'a str,
    suite: &'a str,
    target: &'a str,
    base_url: &'a str,
    tool_version: &'a str,
    started: String,
    finished: String,
    duration_seconds: String,
    evidence_dir: String,
    ok: bool,
    all_ready: bool,
    audit_ok: bool,
    audit_checked: bool,
    probe_count: usize,
    ready_count: usize,
}

/// One entry of `phases` in templates: the phase, its probes and its audit counts.
#[derive(Serialize)]
struct PhaseView<'a> {
    id: &'a str,
    name: &'a str,
    probes: Vec<ProbeView<'a>>,
    audit: Vec<&'a AuditCount>,
}

/// One probe as templates see it: display-ready strings (`http` is `000` without a response, like curl)
/// plus relative evidence paths (`evidence`, `trace`, `body_file`) for links.
#[derive(Serialize)]
struct ProbeView<'a> {
    id: &'a str,
    name: &'a str,
    method: &'a str,
    url: &'a str,
    path: String,
    request_line: String,
    http: String,
    ready: bool,
    outcome: &'static str,
    problem: String,
    memo: &'a str,
    tls: String,
    total_ms: String,
    response_bytes: u64,
    evidence: String,
    trace: String,
    body_file: Option<&'a str>,
    audit_expected: &'a [String],
}

/// Whether an audit count is worth a line: the phase expected it or it changed. Rows of earlier phases that a
/// broad query sees again (delta 0, nothing expected) are left to `audit/counts.json`.
fn is_relevant(count: &AuditCount) -> bool {
    count.expected > 0 || count.delta != Some(0)
}

fn when(at: DateTime<Utc>) -> String {
    let jst = FixedOffset::east_opt(9 * 3600)
        .map(|offset| at.with_timezone(&offset).format("%Y-%m-%d %H:%M JST").to_string());
    format!("{} ({})", at.format("%Y-%m-%d %H:%M:%S UTC"), jst.unwrap_or_default())
}

fn probe_view<'a>(probe: &'a ProbeRecord, memos: &'a BTreeMap<String, String>, dump_dir: &str) -> ProbeView<'a> {
    let mut problems: Vec<String> = Vec::new();
    let described = probe.outcome.describe();
    if !described.is_empty() {
        problems.push(described);
    }
    if let Some(status) = probe.http_status
        && !probe.ready
        && probe.check_failures.is_empty()
    {
        problems.push(format!("HTTP {status} is not a Ready status"));
    }
    problems.extend(probe.check_failures.iter().cloned());
    let path = probe.url.find("://").and_then(|scheme| probe.url[scheme + 3..].find('/').map(|p| scheme + 3 + p));
    let path = path.map_or_else(|| probe.url.clone(), |p| probe.url[p..].to_owned());
    ProbeView {
        request_line: format!("{} {path}", probe.method),
        id: &probe.id,
        name: &probe.name,
        method: &probe.method,
        url: &probe.url,
        path,
        http: probe.http_status.map_or_else(|| "000".to_owned(), |s| s.to_string()),
        ready: probe.ready,
        outcome: probe.outcome.kind(),
        problem: problems.join("; "),
        memo: memos.get(&probe.id).map_or("", String::as_str),
        tls: probe.tls.as_ref().map(|tls| tls.version.clone()).unwrap_or_default(),
        total_ms: format!("{:.0}", probe.timings.total_ms),
        response_bytes: probe.response_body_bytes,
        evidence: format!("{dump_dir}/"),
        trace: EvidenceLayout::trace(&probe.id),
        body_file: probe.response_body_file.as_deref(),
        audit_expected: &probe.audit_expected,
    }
}

impl<'a> ReportContext<'a> {
    fn new(status: &'a RunStatus) -> Self {
        let memos = &status.probe_memos;
        let phases: Vec<PhaseView<'a>> = status
            .phases
            .iter()
            .map(|phase| PhaseView {
                id: &phase.id,
                name: &phase.name,
                probes: status
                    .probes_of(&phase.id)
                    .map(|p| probe_view(p, memos, &EvidenceLayout::probe_dump(&p.id)))
                    .collect(),
                audit: status.audit.iter().filter(|c| c.phase == phase.id && is_relevant(c)).collect(),
            })
            .collect();
        let mut open_items = Vec::new();
        for probe in phases.iter().flat_map(|phase| phase.probes.iter()).filter(|p| !p.ready) {
            open_items.push(format!("{} {}: HTTP {} ({})", probe.id, probe.name, probe.http, probe.problem));
        }
        for count in status.audit.iter().filter(|c| c.is_missing()) {
            let delta = count.delta.map_or_else(|| "?".to_owned(), |d| d.to_string());
            open_items.push(format!(
                "Phase-{} audit {}: delta {delta}, expected {}",
                count.phase, count.action, count.expected
            ));
        }
        open_items.extend(status.audit_errors.iter().map(|e| format!("audit: {e}")));
        for check in status.preflight.iter().filter(|c| !c.ok || c.detail.contains("renew soon")) {
            open_items.push(format!("preflight {}: {}", check.name, check.detail));
        }
        let ready_count = status.probes.iter().filter(|p| p.ready).count();
        ReportContext {
            run: RunFacts {
                run_id: &status.run_id,
                template: &status.template,
                description: &status.template_description,
                suite: &status.suite,
                target: &status.target,
                base_url: &status.base_url,
                tool_version: &status.tool_version,
                started: when(status.started_at),
                finished: when(status.finished_at),
                duration_seconds: format!(
                    "{:.1}",
                    (status.finished_at - status.started_at).num_milliseconds() as f64 / 1000.0
                ),
                evidence_dir: format!("artifacts/{}/{}/", status.suite, status.run_id),
                ok: status.is_ok(),
                all_ready: status.all_ready,
                audit_ok: status.audit_ok,
                audit_checked: status.audit_checked,
                probe_count: status.probes.len(),
                ready_count,
            },
            serverinfo: status.serverinfo.as_ref().map(|p| probe_view(p, memos, EvidenceLayout::SERVERINFO_DIR)),
            serverinfo_body: status.serverinfo_body.as_deref(),
            phases,
            audit: status.audit.iter().filter(|c| is_relevant(c)).collect(),
            audit_errors: &status.audit_errors,
            open_items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_and_newlines_cannot_break_a_table_row() {
        let escaped = escape_markdown("a|b\nc\r\nd");
        assert_eq!(escaped, "a\\|b<br>c<br>d");
        assert!(!escaped.contains('\n'));
    }

    #[test]
    fn html_is_entity_encoded() {
        assert_eq!(escape_markdown("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
    }

    #[test]
    fn backticks_and_links_are_neutralised() {
        assert_eq!(escape_markdown("`x` [a](http://e)"), "\\`x\\` \\[a\\](http://e)");
    }

    #[test]
    fn code_spans_cannot_be_closed_or_split() {
        assert_eq!(markdown_code("a`b|c\nd"), "`a'b\\|c d`");
    }

    #[test]
    fn one_line_removes_line_breaks() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
    }
}
