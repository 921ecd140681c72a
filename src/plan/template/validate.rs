//! From raw TOML to a [`Template`]: the serde shapes of `template.toml` and the one validation pass.
//!
//! Raw structs keep `toml::Spanned` values so that every semantic mistake (bad method, status, header,
//! missing file, undefined variable) is reported with its line; the validator records every problem it
//! finds instead of stopping at the first. The bounds of every value and list (`bounds.rs`, limits in
//! [`crate::evidence::limits`]) are checked in the same pass.

mod bounds;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    AuditQuery, BUILTIN_VARIABLES, DEFAULT_SUITE, DEFAULT_TIMEOUT_SECONDS, Phase, Probe, RESERVED_HEADERS,
    SCHEMA_VERSION, SQL_WINDOW_VARIABLES, Template, TemplateBody,
};
use crate::evidence::limits::{self, AUDIT_SQL_FILE};
use crate::plan::diag::{Collector, Problem, line_col};
use crate::probe::BodyCheck;
use crate::probe::placeholder;

/// `template.toml` as written; keys mirror the fields of [`Template`] (see there for their meaning).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTemplate {
    schema_version: Spanned<u32>,
    name: Spanned<String>,
    description: Option<Spanned<String>>,
    label: Spanned<String>,
    suite: Option<Spanned<String>>,
    timeout_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    serverinfo: Option<RawProbe>,
    phases: Spanned<Vec<RawPhase>>,
}

/// One `[[phases]]` table as written; keys mirror [`Phase`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhase {
    id: Spanned<String>,
    name: Spanned<String>,
    #[serde(default)]
    audit: Vec<Spanned<String>>,
    probes: Vec<RawProbe>,
}

/// One `[[phases.probes]]` (or `[serverinfo]`) table as written; keys mirror [`Probe`], `ready` is the
/// Ready status list and `audit` the expected audit actions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    id: Spanned<String>,
    name: Spanned<String>,
    memo: Option<Spanned<String>>,
    method: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    body_file: Option<Spanned<String>>,
    ready: Spanned<Vec<Spanned<i64>>>,
    #[serde(default)]
    checks: Vec<Spanned<RawCheck>>,
    #[serde(default)]
    audit: Vec<Spanned<String>>,
    timeout_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    capture: BTreeMap<String, Spanned<toml::Value>>,
    poll: Option<RawPoll>,
}

/// One body check: exactly one of the keys is set (checked by the validator, named in the error).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    contains: Option<String>,
    json_field: Option<String>,
    max_bytes: Option<u64>,
}

/// Which captured variables the probe being validated may use.
#[derive(Debug, Default)]
pub(super) struct CaptureScope {
    /// Captured by earlier phases: usable.
    pub(super) earlier: BTreeSet<String>,
    /// Captured by the current phase: usable only from the next phase on.
    pub(super) this_phase: BTreeSet<String>,
}

impl CaptureScope {
    /// Moves the current phase's captures into the usable set.
    pub(super) fn next_phase(&mut self) {
        let this_phase = std::mem::take(&mut self.this_phase);
        self.earlier.extend(this_phase);
    }
}

/// `poll = { pointer, equals, attempts, interval_ms }` as written; see [`Poll`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoll {
    pub(super) pointer: Spanned<String>,
    pub(super) equals: Spanned<toml::Value>,
    pub(super) attempts: Option<Spanned<i64>>,
    pub(super) interval_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) audit_each_attempt: Vec<Spanned<String>>,
}

pub(super) struct Validator<'a, 'd> {
    /// The template folder, for `bodies/` and `audit/` files.
    pub(super) dir: &'a Path,
    /// Where problems are recorded.
    pub(super) diag: &'a mut Collector<'d>,
    /// Variable names defined so far (built-ins, then the template's).
    pub(super) known: BTreeSet<String>,
    /// Variables captured by probes so far, and which of them the current phase may use.
    pub(super) captures: CaptureScope,
}

impl Validator<'_, '_> {
    pub(super) fn template(mut self, raw: RawTemplate) -> Template {
        if *raw.schema_version.get_ref() != SCHEMA_VERSION {
            self.diag.at(
                Some(raw.schema_version.span()),
                "schema_version",
                format!(
                    "unsupported schema_version {} (this connrun reads {SCHEMA_VERSION})",
                    raw.schema_version.get_ref()
                ),
            );
        }
        self.bound_template(&raw);
        let suite = raw.suite.map_or_else(|| DEFAULT_SUITE.to_owned(), |s| self.folder_name(s, "suite"));
        let name = self.folder_name(raw.name, "name");
        let variables = self.variables(&raw.variables);
        let default_timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECONDS);
        let timeout = self.timeout(raw.timeout_seconds.as_ref(), "timeout_seconds", default_timeout);
        let common = self.headers(&raw.headers, "headers");
        let mut ids = BTreeSet::new();
        let serverinfo = raw.serverinfo.map(|p| {
            if !p.capture.is_empty() || p.poll.is_some() {
                self.diag.at(Some(p.id.span()), "serverinfo", "the server-info probe cannot capture or poll");
            }
            self.probe(p, "serverinfo", &common, timeout, &mut ids)
        });
        if raw.phases.get_ref().is_empty() {
            self.diag.at(Some(raw.phases.span()), "phases", "a template needs at least one phase");
        }
        let mut phase_ids = BTreeSet::new();
        let phases = raw
            .phases
            .into_inner()
            .into_iter()
            .map(|phase| {
                if !phase_ids.insert(phase.id.get_ref().clone()) {
                    let key = format!("phases[{}].id", phase.id.get_ref());
                    self.diag.at(Some(phase.id.span()), key, "duplicate phase id");
                }
                self.phase(phase, &common, timeout, &mut ids)
            })
            .collect();
        Template {
            dir: self.dir.to_owned(),
            schema_version: raw.schema_version.into_inner(),
            name,
            description: raw.description.map(Spanned::into_inner).unwrap_or_default(),
            label: raw.label.into_inner(),
            suite,
            variables,
            serverinfo,
            phases,
        }
    }

    /// The template's own variables; built-in names are refused. Every name becomes known to later keys.
    fn variables(&mut self, raw: &BTreeMap<String, Spanned<String>>) -> BTreeMap<String, String> {
        self.known = BUILTIN_VARIABLES.iter().map(|v| (*v).to_owned()).collect();
        let mut variables = BTreeMap::new();
        for (key, value) in raw {
            if BUILTIN_VARIABLES.contains(&key.as_str()) {
                self.diag.at(Some(value.span()), format!("variables.{key}"), "this name is built in and set per run");
            }
            self.check_placeholders(value, &format!("variables.{key}"));
            variables.insert(key.clone(), value.get_ref().clone());
        }
        self.known.extend(variables.keys().cloned());
        variables
    }

    /// One phase: its audit queries, then its probes; captures become usable from the next phase on.
    fn phase(
        &mut self,
        phase: RawPhase,
        common: &[(String, String)],
        timeout: Duration,
        ids: &mut BTreeSet<String>,
    ) -> Phase {
        let key = format!("phases[{}]", phase.id.get_ref());
        let audit_queries = phase.audit.iter().map(|file| self.audit_query(file, &key)).collect::<Vec<_>>();
        let probes = phase
            .probes
            .into_iter()
            .map(|probe| {
                let probe_key = format!("{key}.probes[{}]", probe.id.get_ref());
                self.probe(probe, &probe_key, common, timeout, ids)
            })
            .collect();
        self.captures.next_phase();
        Phase {
            id: phase.id.into_inner(),
            name: phase.name.into_inner(),
            audit_queries: audit_queries.into_iter().flatten().collect(),
            probes,
        }
    }

    fn folder_name(&mut self, value: Spanned<String>, key: &str) -> String {
        let ok = !value.get_ref().is_empty()
            && !value.get_ref().starts_with('.')
            && value.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            self.diag.at(Some(value.span()), key, "use ASCII letters, digits, `-`, `_`, `.` (not starting with `.`)");
        }
        value.into_inner()
    }

    fn check_placeholders(&mut self, value: &Spanned<String>, key: &str) {
        match placeholder::scan(value.get_ref()) {
            Err(error) => self.diag.at(Some(value.span()), key, error.message),
            Ok(found) => {
                let usable = |name: &String| self.known.contains(name) || self.captures.earlier.contains(name);
                for unknown in found.iter().filter(|p| !usable(&p.name)) {
                    let message = if self.captures.this_phase.contains(&unknown.name) {
                        format!(
                            "`{{{{{}}}}}` is captured in this same phase; probes of a phase run concurrently, \
                             so use it from a later phase",
                            unknown.name
                        )
                    } else {
                        format!("undefined variable `{{{{{}}}}}` (defined: {})", unknown.name, self.known_list())
                    };
                    self.diag.at(Some(value.span()), key, message);
                }
            }
        }
    }

    fn known_list(&self) -> String {
        self.known.iter().chain(&self.captures.earlier).cloned().collect::<Vec<_>>().join(", ")
    }

    fn headers(&mut self, raw: &BTreeMap<String, Spanned<String>>, key: &str) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        for (name, value) in raw {
            let header_key = format!("{key}.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.diag.at(Some(value.span()), &header_key, "not a valid HTTP header name");
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.diag.at(
                    Some(value.span()),
                    &header_key,
                    "set by connrun itself (Authorization comes from the target)",
                );
            }
            if value.get_ref().contains(['\r', '\n']) {
                self.diag.at(Some(value.span()), &header_key, "header values cannot contain line breaks");
            }
            if name.eq_ignore_ascii_case("x-trace-id")
                && !placeholder::scan(value.get_ref()).is_ok_and(|found| found.iter().any(|p| p.name == "run_id"))
            {
                self.diag.at(
                    Some(value.span()),
                    &header_key,
                    "X-Trace-Id must carry the RUN_ID, e.g. `{{run_id}}-PHR-06`",
                );
            }
            self.check_placeholders(value, &header_key);
            headers.push((name.clone(), value.get_ref().clone()));
        }
        headers
    }

    fn probe(
        &mut self,
        raw: RawProbe,
        key: &str,
        common: &[(String, String)],
        default_timeout: Duration,
        ids: &mut BTreeSet<String>,
    ) -> Probe {
        self.probe_id(&raw.id, key, ids);
        let method = self.method(&raw.method, key);
        let path_text = raw.path.get_ref();
        if !(path_text.starts_with('/') || path_text.starts_with("{{")) || path_text.contains(char::is_whitespace) {
            self.diag.at(Some(raw.path.span()), format!("{key}.path"), "a path starts with `/` and has no spaces");
        }
        self.check_placeholders(&raw.path, &format!("{key}.path"));
        let mut headers: Vec<(String, String)> = common.to_vec();
        for (name, value) in self.headers(&raw.headers, &format!("{key}.headers")) {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            headers.push((name, value));
        }
        let body = self.body(raw.body, raw.body_file, key);
        let ready_statuses = self.ready_statuses(&raw.ready, key);
        let body_checks = raw.checks.iter().filter_map(|check| self.check(check, &format!("{key}.checks"))).collect();
        let audit_expected = self.audit_actions(&raw.audit, key);
        let captures = self.captures(&raw.capture, key);
        let poll = raw.poll.as_ref().and_then(|p| self.poll(p, key, &audit_expected));
        let timeout = self.timeout(raw.timeout_seconds.as_ref(), &format!("{key}.timeout_seconds"), default_timeout);
        Probe {
            id: raw.id.into_inner(),
            name: raw.name.into_inner(),
            memo: raw.memo.map(Spanned::into_inner).unwrap_or_default(),
            method,
            path: raw.path.into_inner(),
            headers,
            body,
            ready_statuses,
            body_checks,
            audit_expected,
            timeout,
            captures,
            poll,
        }
    }

    /// A probe id names its evidence folder: a plain file name, unique (ignoring case).
    fn probe_id(&mut self, id: &Spanned<String>, key: &str, ids: &mut BTreeSet<String>) {
        let text = id.get_ref();
        let id_ok = !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !text.starts_with('.');
        if !id_ok {
            self.diag.at(Some(id.span()), format!("{key}.id"), "probe ids are ASCII letters, digits, `-`, `_`, `.`");
        } else if !ids.insert(text.to_ascii_lowercase()) {
            self.diag.at(Some(id.span()), format!("{key}.id"), "duplicate probe id (it names the evidence folder)");
        }
    }

    fn method(&mut self, method: &Spanned<String>, key: &str) -> http::Method {
        match http::Method::from_bytes(method.get_ref().as_bytes()) {
            Ok(m) if ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"].contains(&m.as_str()) => m,
            _ => {
                self.diag.at(
                    Some(method.span()),
                    format!("{key}.method"),
                    "expected one of GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS",
                );
                http::Method::GET
            }
        }
    }

    fn body(&mut self, body: Option<Spanned<String>>, body_file: Option<Spanned<String>>, key: &str) -> TemplateBody {
        match (body, body_file) {
            (Some(_), Some(file)) => {
                self.diag.at(
                    Some(file.span()),
                    format!("{key}.body_file"),
                    "give either `body` or `body_file`, not both",
                );
                TemplateBody::Empty
            }
            (Some(body), None) => {
                self.check_placeholders(&body, &format!("{key}.body"));
                TemplateBody::Inline(body.into_inner())
            }
            (None, Some(file)) => {
                let key = format!("{key}.body_file");
                let Some(path) = self.template_file(&file, "bodies", &key) else { return TemplateBody::Empty };
                self.bound_body_file(&path, file.span(), &key);
                TemplateBody::File(path)
            }
            (None, None) => TemplateBody::Empty,
        }
    }

    fn ready_statuses(&mut self, ready: &Spanned<Vec<Spanned<i64>>>, key: &str) -> Vec<u16> {
        let mut statuses = Vec::new();
        if ready.get_ref().is_empty() {
            self.diag.at(Some(ready.span()), format!("{key}.ready"), "list at least one Ready status, e.g. [200, 403]");
        }
        for status in ready.get_ref() {
            match u16::try_from(*status.get_ref()) {
                Ok(code @ 100..=599) => statuses.push(code),
                _ => self.diag.at(
                    Some(status.span()),
                    format!("{key}.ready"),
                    format!("{} is not an HTTP status (100-599)", status.get_ref()),
                ),
            }
        }
        statuses
    }

    fn audit_actions(&mut self, actions: &[Spanned<String>], key: &str) -> Vec<String> {
        actions
            .iter()
            .map(|action| {
                let (name, outcome) = action.get_ref().split_once(':').unwrap_or((action.get_ref(), "success"));
                if name.is_empty()
                    || !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    || !["success", "failed"].contains(&outcome)
                {
                    self.diag.at(
                        Some(action.span()),
                        format!("{key}.audit"),
                        "audit actions look like PHR_IMAGE_STREAM, or PHR_EXPORT_ARTIFACT:failed for a failed row",
                    );
                }
                action.get_ref().clone()
            })
            .collect()
    }

    fn check(&mut self, raw: &Spanned<RawCheck>, key: &str) -> Option<BodyCheck> {
        let check = raw.get_ref();
        let given = [check.contains.is_some(), check.json_field.is_some(), check.max_bytes.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.diag.at(Some(raw.span()), key, "each check sets exactly one of contains, json_field, max_bytes");
            return None;
        }
        if let Some(pointer) = &check.json_field
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            self.diag.at(Some(raw.span()), key, "json_field is a JSON pointer starting with `/`, e.g. `/docList`");
        }
        check
            .contains
            .clone()
            .map(BodyCheck::Contains)
            .or_else(|| check.json_field.clone().map(BodyCheck::JsonField))
            .or(check.max_bytes.map(BodyCheck::MaxBytes))
    }

    /// Resolves a file named by the template inside `<dir>/<folder>/`; refuses escapes and missing files.
    fn template_file(&mut self, name: &Spanned<String>, folder: &str, key: &str) -> Option<PathBuf> {
        let relative = Path::new(name.get_ref());
        let inside = relative.components().all(|c| matches!(c, Component::Normal(_)));
        if !inside || relative.components().next().and_then(|c| c.as_os_str().to_str()) != Some(folder) {
            self.diag.at(Some(name.span()), key, format!("name a file under `{folder}/`, e.g. `{folder}/example`"));
            return None;
        }
        let path = self.dir.join(relative);
        if !path.is_file() {
            self.diag.at(Some(name.span()), key, format!("file not found: {}", path.display()));
            return None;
        }
        Some(path)
    }

    fn audit_query(&mut self, file: &Spanned<String>, phase_key: &str) -> Option<AuditQuery> {
        let key = format!("{phase_key}.audit");
        let path = self.template_file(file, "audit", &key)?;
        let sql = match limits::read_bounded_string(&path, &AUDIT_SQL_FILE) {
            Ok(sql) => sql,
            Err(error) => {
                self.diag.at(Some(file.span()), key, format!("{}: {error}", path.display()));
                return None;
            }
        };
        let problem = |offset: usize, message: String| {
            let (line, column) = line_col(&sql, offset);
            Problem { file: path.clone(), line: Some(line), column: Some(column), key: "sql".into(), message }
        };
        match placeholder::scan(&sql) {
            Err(error) => self.diag.push(problem(error.offset, error.message)),
            Ok(found) => {
                for unknown in found
                    .iter()
                    .filter(|p| !self.known.contains(&p.name) && !SQL_WINDOW_VARIABLES.contains(&p.name.as_str()))
                {
                    let message = format!(
                        "undefined variable `{{{{{}}}}}` (defined: {}, since, until)",
                        unknown.name,
                        self.known_list()
                    );
                    self.diag.push(problem(unknown.range.start, message));
                }
            }
        }
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("query").to_owned();
        Some(AuditQuery { name, file: path, sql })
    }
}
