//! The validated, typed plan of one run: template × target × RUN_ID, every placeholder resolved.
//!
//! Building the plan is the last step that may refuse input; after it, the orchestrator only sends what
//! the plan says. The plan also renders itself as `run.toml` (the resolved plan with secrets given by
//! reference only, plus the tool version), so a reviewer can see exactly what was sent.
//!
//! The folder owns what a run will do before it does it: templates (`template/`), targets (`target.rs`),
//! located diagnostics (`diag.rs`) and this typed plan. It may import the probe engine's *types* (a probe
//! spec, a body check), the audit query type and evidence (RUN_IDs); never the orchestrator, reports or
//! comparisons.

pub mod diag;
pub mod notify;
pub mod secret;
pub mod target;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::audit::counting::PlannedQuery;
use crate::evidence::limits::{MAX_VALUE_BYTES, too_many_bytes};
use crate::evidence::runid::RunId;
use crate::plan::diag::{Problem, Problems};
use crate::plan::target::{AuditUrl, IdentitySpec, Target};
use crate::plan::template::{AuditQuery, Phase, Probe, Template, TemplateBody};
use crate::probe::capture::Capture;
use crate::probe::placeholder;
use crate::probe::poll::Poll;
use crate::probe::{ProbeBody, ProbeSpec};

use crate::evidence::TOOL_VERSION;

/// Everything a run will do, resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The run's id; also in every X-Trace-Id.
    pub run_id: RunId,
    /// The template the plan came from.
    pub template: Template,
    /// Where and how to connect.
    pub target: Target,
    /// Final variable values (built-ins, template defaults, target overrides).
    pub variables: BTreeMap<String, String>,
    /// The server-info probe, if any.
    pub serverinfo: Option<ProbeSpec>,
    /// Phases in order, with resolved probes and audit SQL.
    pub phases: Vec<PlannedPhase>,
}

/// One phase, resolved.
#[derive(Debug, Clone)]
pub struct PlannedPhase {
    /// Phase id, e.g. `C`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Audit queries with variables substituted (the time window is filled in when they run).
    pub audit_queries: Vec<PlannedQuery>,
    /// Probes ready to send.
    pub probes: Vec<ProbeSpec>,
    /// Operator notes per probe id, for reports.
    pub memos: BTreeMap<String, String>,
    /// Per probe id, what the orchestrator does around the request (only probes that capture, poll or
    /// use captured variables are listed).
    pub flows: BTreeMap<String, ProbeFlow>,
}

/// What the orchestrator does around one probe besides sending it once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeFlow {
    /// Captured variables the probe's URL, headers or body use; its [`ProbeSpec`] still holds them as
    /// `{{name}}` and they are filled in just before it is sent.
    pub needs: Vec<String>,
    /// Values the probe captures from its JSON response.
    pub captures: Vec<Capture>,
    /// Repeat the request until the response says so.
    pub poll: Option<Poll>,
}

impl ProbeFlow {
    fn of(probe: &Probe, captured: &BTreeSet<String>) -> ProbeFlow {
        let mut texts: Vec<&str> = vec![&probe.path];
        texts.extend(probe.headers.iter().map(|(_, value)| value.as_str()));
        if let TemplateBody::Inline(body) = &probe.body {
            texts.push(body);
        }
        let needs: BTreeSet<String> = texts
            .into_iter()
            .filter_map(|text| placeholder::scan(text).ok())
            .flatten()
            .map(|p| p.name)
            .filter(|name| captured.contains(name))
            .collect();
        ProbeFlow { needs: needs.into_iter().collect(), captures: probe.captures.clone(), poll: probe.poll.clone() }
    }

    /// The captures as `run.toml` shows them, e.g. `artifact = /downloadUrl (path_and_query)`.
    fn describe_captures(&self) -> Vec<String> {
        self.captures
            .iter()
            .map(|c| match c.part {
                crate::probe::capture::CapturePart::Whole => format!("{} = {}", c.variable, c.pointer),
                crate::probe::capture::CapturePart::PathAndQuery => {
                    format!("{} = {} (path_and_query)", c.variable, c.pointer)
                }
            })
            .collect()
    }

    /// The poll as `run.toml` shows it, e.g. `/state == "SUCCEEDED" (40 x 250 ms)`.
    fn describe_poll(&self) -> Option<String> {
        self.poll
            .as_ref()
            .map(|p| format!("{} == {} ({} x {} ms)", p.pointer, p.equals, p.attempts, p.interval.as_millis()))
    }

    /// Whether the probe is sent once with nothing captured (the plain case).
    pub fn is_plain(&self) -> bool {
        self.needs.is_empty() && self.captures.is_empty() && self.poll.is_none()
    }
}

/// Why a plan could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub Problems);

impl Plan {
    /// Resolves `template` for `target` and `run_id`. Refuses target variables the template does not declare.
    pub fn build(template: &Template, target: &Target, run_id: &RunId) -> Result<Plan, PlanError> {
        let variables = resolve_variables(template, target, run_id)?;
        let captured: BTreeSet<String> =
            template.probes().flat_map(|(_, p)| p.captures.iter().map(|c| c.variable.clone())).collect();
        let mut resolver =
            Resolver { target, run_id, variables: &variables, captured: &captured, unresolved: Vec::new() };
        let serverinfo = template.serverinfo.as_ref().map(|probe| resolver.probe_spec("serverinfo", probe));
        let mut phases: Vec<PlannedPhase> = template.phases.iter().map(|phase| resolver.phase(phase)).collect();
        // Queries after every probe, so problems are listed in the order a reader meets them.
        for (planned, phase) in phases.iter_mut().zip(&template.phases) {
            planned.audit_queries = phase.audit_queries.iter().filter_map(|q| resolver.audit_query(q)).collect();
        }
        resolver.finish(template)?;
        Ok(Plan {
            run_id: run_id.clone(),
            template: template.clone(),
            target: target.clone(),
            variables,
            serverinfo,
            phases,
        })
    }

    /// Every probe of every phase, in order.
    pub fn probes(&self) -> impl Iterator<Item = &ProbeSpec> {
        self.phases.iter().flat_map(|phase| phase.probes.iter())
    }

    /// `http://proxy:3128 (targets.t.proxy, user ops, password env:X)` or the environment's proxy with its
    /// `NO_PROXY`; never a password.
    fn proxy_line(&self) -> Option<String> {
        let rules = &self.target.proxy;
        if let Some((route, spec)) = rules.configured.as_ref().zip(self.target.spec.proxy.as_ref()) {
            let user = match &spec.credentials {
                Some((user, password)) => format!(", user {user}, password {}", password.describe()),
                None => String::new(),
            };
            return Some(format!("{} ({}{user})", route.url, route.source));
        }
        let env = rules.env.as_ref()?;
        let user = env.auth.as_ref().map_or_else(String::new, |a| format!(", user {}", a.user));
        let no_proxy = rules.no_proxy.as_ref().map_or_else(String::new, |n| format!(", bypassed per {}", n.var));
        Some(format!("{} ({}{user}{no_proxy})", env.url, env.source))
    }

    /// `run.toml`: the resolved plan with secrets only by reference, and the tool version.
    pub fn to_run_toml(&self) -> String {
        let spec = &self.target.spec;
        let doc = RunToml {
            tool: ToolSection { name: "connrun", version: TOOL_VERSION },
            run: RunSection {
                run_id: self.run_id.to_string(),
                template: self.template.name.clone(),
                template_schema_version: self.template.schema_version,
                suite: self.template.suite.clone(),
            },
            target: TargetSection {
                name: spec.name.clone(),
                base_url: spec.base_url.clone(),
                trust: match &spec.trust {
                    crate::probe::identity::TrustSource::CaBundle(path) => format!("ca_bundle:{}", path.display()),
                    crate::probe::identity::TrustSource::SystemRoots => "system_roots".to_owned(),
                },
                identity: spec.identity.as_ref().map(|identity| match identity {
                    IdentitySpec::Pkcs12 { path, password } => {
                        format!("pkcs12:{} (password {})", path.display(), password.describe())
                    }
                    IdentitySpec::Pem { cert, key } => format!("pem:{} + {}", cert.display(), key.display()),
                }),
                basic_user: spec
                    .basic
                    .as_ref()
                    .map(|(user, password)| format!("{user} (password {})", password.describe())),
                audit_db: spec.audit.as_ref().map(|audit| match audit {
                    AuditUrl::Inline(url) => url.clone(),
                    AuditUrl::Secret(reference) => reference.describe(),
                }),
                proxy: self.proxy_line(),
                retries: (spec.retry.retries > 0)
                    .then(|| format!("{} (first pause {} ms)", spec.retry.retries, spec.retry.backoff.as_millis())),
            },
            variables: self.variables.clone(),
            phases: self
                .phases
                .iter()
                .map(|phase| PhaseSection {
                    id: phase.id.clone(),
                    name: phase.name.clone(),
                    audit_queries: phase.audit_queries.iter().map(|q| q.name.clone()).collect(),
                    probes: phase
                        .probes
                        .iter()
                        .map(|p| ProbeSection {
                            id: p.id.clone(),
                            name: p.name.clone(),
                            method: p.method.to_string(),
                            url: p.url.clone(),
                            headers: p.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect(),
                            body: match &p.body {
                                ProbeBody::Empty => None,
                                ProbeBody::Inline(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                                ProbeBody::File(path) => Some(format!("file:{}", path.display())),
                            },
                            ready: p.ready_statuses.clone(),
                            audit_expected: p.audit_expected.clone(),
                            timeout_seconds: p.timeout.as_secs(),
                            captures: phase.flows.get(&p.id).map(ProbeFlow::describe_captures).unwrap_or_default(),
                            poll: phase.flows.get(&p.id).and_then(ProbeFlow::describe_poll),
                        })
                        .collect(),
                })
                .collect(),
        };
        toml::to_string_pretty(&doc).unwrap_or_else(|e| format!("# run.toml could not be rendered: {e}\n"))
    }
}

fn target_problem(target: &Target, name: &str, message: &str) -> Problem {
    let line = target.spec.variables.get(name).map(|(_, line)| *line);
    Problem {
        file: target.spec.file.clone(),
        line,
        column: None,
        key: format!("targets.{}.variables.{name}", target.spec.name),
        message: message.to_owned(),
    }
}

/// The layout of `run.toml` (sections `tool`, `run`, `target`, `variables`, `phases`); only references to
/// secrets, never their values.
#[derive(Serialize)]
struct RunToml {
    tool: ToolSection,
    run: RunSection,
    target: TargetSection,
    variables: BTreeMap<String, String>,
    phases: Vec<PhaseSection>,
}

#[derive(Serialize)]
struct ToolSection {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct RunSection {
    run_id: String,
    template: String,
    template_schema_version: u32,
    suite: String,
}

#[derive(Serialize)]
struct TargetSection {
    name: String,
    base_url: String,
    trust: String,
    identity: Option<String>,
    basic_user: Option<String>,
    audit_db: Option<String>,
    /// The proxy probes go through (URL without credentials, where it came from); absent when direct.
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<String>,
    /// `retries` after connection-level failures; absent when 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<String>,
}

#[derive(Serialize)]
struct PhaseSection {
    id: String,
    name: String,
    audit_queries: Vec<String>,
    probes: Vec<ProbeSection>,
}

#[derive(Serialize)]
struct ProbeSection {
    id: String,
    name: String,
    method: String,
    url: String,
    headers: Vec<String>,
    body: Option<String>,
    ready: Vec<u16>,
    audit_expected: Vec<String>,
    timeout_seconds: u64,
    /// `variable = pointer [part]`, one per capture.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    captures: Vec<String>,
    /// `pointer == value (attempts x interval)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    poll: Option<String>,
}

/// The built-in variables, then the template's (target overrides first), each resolved against the
/// built-ins. Target variables the template does not declare are refused.
fn resolve_variables(
    template: &Template,
    target: &Target,
    run_id: &RunId,
) -> Result<BTreeMap<String, String>, PlanError> {
    let mut problems = Vec::new();
    let builtins = BTreeMap::from([
        ("run_id".to_owned(), run_id.to_string()),
        ("date".to_owned(), run_id.date().format("%Y-%m-%d").to_string()),
        ("suite".to_owned(), template.suite.clone()),
        ("template".to_owned(), template.name.clone()),
        ("target".to_owned(), target.spec.name.clone()),
    ]);
    let mut variables = builtins.clone();
    for (name, default) in &template.variables {
        let overridden = target.spec.variables.get(name).map(|(value, _)| value.as_str());
        let raw = overridden.unwrap_or(default);
        match placeholder::substitute(raw, |n| builtins.get(n).cloned(), str::to_owned) {
            Ok(value) => {
                variables.insert(name.clone(), value);
            }
            Err(unknown) => {
                problems.push(target_problem(target, name, &format!("undefined variable `{{{{{unknown}}}}}`")))
            }
        }
    }
    for name in target.spec.variables.keys().filter(|n| !template.variables.contains_key(*n)) {
        let declared = template.variables.keys().cloned().collect::<Vec<_>>().join(", ");
        let message = format!("template `{}` has no variable `{name}` (declared: {declared})", template.name);
        problems.push(target_problem(target, name, &message));
    }
    if problems.is_empty() { Ok(variables) } else { Err(PlanError(Problems(problems))) }
}

/// Substitutes variables into every probe and audit query of the template, collecting what it cannot
/// resolve instead of stopping at the first.
struct Resolver<'a> {
    /// The target: base URL, headers, timeout.
    target: &'a Target,
    /// The RUN_ID, for `X-Trace-Id` and `X-Run-Id`.
    run_id: &'a RunId,
    /// Resolved variables by name.
    variables: &'a BTreeMap<String, String>,
    /// Variables captured at run time: they stay `{{name}}` until the run has their values.
    captured: &'a BTreeSet<String>,
    /// `where: undefined variable` (or value too long) messages met so far.
    unresolved: Vec<String>,
}

impl Resolver<'_> {
    /// `text` with variables substituted; an unknown one is recorded against `owner` and left as written.
    fn text(&mut self, owner: &str, text: &str) -> String {
        let (variables, captured) = (self.variables, self.captured);
        let lookup =
            |n: &str| variables.get(n).cloned().or_else(|| captured.contains(n).then(|| format!("{{{{{n}}}}}")));
        placeholder::substitute(text, lookup, str::to_owned).unwrap_or_else(|unknown| {
            self.unresolved.push(format!("{owner}: undefined variable `{unknown}`"));
            text.to_owned()
        })
    }

    /// The probe's headers, then `X-Trace-Id` (unless given) and `X-Run-Id`, then the target's headers,
    /// each replacing a header of the same name.
    fn headers(&mut self, probe: &Probe) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> =
            probe.headers.iter().map(|(n, v)| (n.clone(), self.text(&probe.id, v))).collect();
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("x-trace-id")) {
            headers.push(("X-Trace-Id".to_owned(), format!("{}-{}", self.run_id, probe.id)));
        }
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("x-run-id"));
        headers.push(("X-Run-Id".to_owned(), self.run_id.to_string()));
        for (name, value) in &self.target.spec.headers {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            let value = self.text(&probe.id, value);
            headers.push((name.clone(), value));
        }
        headers
    }

    fn probe_spec(&mut self, phase: &str, probe: &Probe) -> ProbeSpec {
        let headers = self.headers(probe);
        let body = match &probe.body {
            TemplateBody::Empty => ProbeBody::Empty,
            TemplateBody::Inline(body) => ProbeBody::Inline(self.text(&probe.id, body).into_bytes()),
            TemplateBody::File(path) => ProbeBody::File(path.clone()),
        };
        let path = self.text(&probe.id, &probe.path);
        self.bounded(&probe.id, "path", &path);
        for (name, value) in &headers {
            self.bounded(&probe.id, &format!("header {name}"), value);
        }
        ProbeSpec {
            id: probe.id.clone(),
            name: probe.name.clone(),
            phase: phase.to_owned(),
            method: probe.method.clone(),
            url: format!("{}{path}", self.target.spec.base_url),
            headers,
            body,
            ready_statuses: probe.ready_statuses.clone(),
            body_checks: probe.body_checks.clone(),
            audit_expected: probe.audit_expected.clone(),
            timeout: self.target.spec.timeout.unwrap_or(probe.timeout).max(Duration::from_secs(1)),
        }
    }

    /// Records a value that grew past [`MAX_VALUE_BYTES`] once variables were filled in (each value is
    /// bounded on its own, but a value may use many variables).
    fn bounded(&mut self, owner: &str, what: &str, value: &str) {
        if let Some(problem) = too_many_bytes(value, MAX_VALUE_BYTES) {
            self.unresolved.push(format!("{owner}: {what} {problem} once variables are filled in"));
        }
    }

    fn phase(&mut self, phase: &Phase) -> PlannedPhase {
        PlannedPhase {
            id: phase.id.clone(),
            name: phase.name.clone(),
            probes: phase.probes.iter().map(|probe| self.probe_spec(&phase.id, probe)).collect(),
            memos: phase.probes.iter().map(|p| (p.id.clone(), p.memo.clone())).collect(),
            flows: phase
                .probes
                .iter()
                .map(|p| (p.id.clone(), ProbeFlow::of(p, self.captured)))
                .filter(|(_, flow)| !flow.is_plain())
                .collect(),
            audit_queries: Vec::new(),
        }
    }

    /// The query with variables substituted as SQL string contents; `{{since}}`/`{{until}}` stay.
    fn audit_query(&mut self, query: &AuditQuery) -> Option<PlannedQuery> {
        let lookup = |n: &str| match n {
            "since" | "until" => Some(format!("{{{{{n}}}}}")),
            _ => self.variables.get(n).map(|v| v.replace('\'', "''")),
        };
        match placeholder::substitute(&query.sql, lookup, str::to_owned) {
            Ok(sql) => Some(PlannedQuery { name: query.name.clone(), sql }),
            Err(unknown) => {
                self.unresolved.push(format!("{}: undefined variable `{unknown}`", query.file.display()));
                None
            }
        }
    }

    /// Every unresolved variable as a problem of the template, or nothing.
    fn finish(self, template: &Template) -> Result<(), PlanError> {
        if self.unresolved.is_empty() {
            return Ok(());
        }
        let file = template.dir.join("template.toml");
        let problems = self
            .unresolved
            .into_iter()
            .map(|message| Problem { file: file.clone(), line: None, column: None, key: String::new(), message })
            .collect();
        Err(PlanError(Problems(problems)))
    }
}
