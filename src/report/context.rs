//! What the run's own documents (README, summary, container summary, open items, curl log) render from.
//!
//! The templates stay free of logic that decides truth: whether the audit was collected, what a probe's
//! failure means in Japanese, what clears it and by when, and which evidence paths exist are computed here
//! from `status.json` and the operator's [`ReportSettings`] (time zone, owner, contacts), so every document
//! agrees. Evidence paths are repo-rooted (`artifacts/<suite>/<RUN_ID>/…`), as the team's logs write them,
//! so they still point at the evidence once a document is pasted into `docs/…/logs/*.md`.

use serde::Serialize;

use crate::evidence::spool::Excerpt;
use crate::evidence::status::{AuditCount, AuditState, RunStatus};
use crate::evidence::{EvidenceLayout, ProbeRecord};
use crate::report::clock::Zone;
use crate::report::items::{AuditSummary, OpenItem, evidence_root, open_items};
use crate::report::wording;

/// How the operator wants times, owner and contacts shown; the same for every document of a run.
#[derive(Debug, Clone, Default)]
pub struct ReportSettings {
    /// The zone of every displayed time and of the next actions' deadline.
    pub zone: Zone,
    /// Who owns the next actions (the target's `owner`), e.g. `@OpsLead`.
    pub owner: Option<String>,
    /// The 連絡先 lines (the target's `contacts`), e.g. `Layer ID / Secrets: @OpsLead (#ops-secrets)`.
    pub contacts: Vec<String>,
}

/// What every document template sees at the top level; field names are the template variable names.
#[derive(Serialize)]
pub(crate) struct ReportContext<'a> {
    /// Identity, timing and verdict of the run.
    run: RunFacts<'a>,
    /// Phases in order with their probes and counts.
    phases: Vec<PhaseView<'a>>,
    /// The server-info probe, if the template has one.
    serverinfo: Option<ProbeView<'a>>,
    /// The first bytes of its body.
    serverinfo_body: Option<&'a str>,
    /// Counts worth a line (expected or changed).
    audit: Vec<&'a AuditCount>,
    /// Connection and query errors as recorded.
    audit_errors: &'a [String],
    /// The three-valued audit state with its findings and links.
    audit_status: AuditSummary,
    /// `監査チェーン検証: OK / NG (理由) / 未検証 (理由: …)`, when the run recorded a verdict.
    audit_chain: Option<String>,
    /// The same verdict without the label, for tables.
    audit_chain_value: Option<String>,
    /// The TODO lines.
    open_items: Vec<String>,
    /// The Pending / 解除条件 rows.
    pending: Vec<OpenItem>,
    /// The 次アクション entries (subject may be empty for a routine action).
    next_actions: Vec<NextAction>,
    /// Who owns the next actions, or how to set it.
    owner: String,
    /// When they are due: the next working morning after the run, in the operator's zone.
    deadline: String,
    /// The 連絡先 lines.
    contacts: &'a [String],
}

/// One 次アクション: what, and what to do about it.
#[derive(Serialize)]
struct NextAction {
    /// The item it resolves (escaped by the template), empty for a routine action.
    subject: String,
    /// What to do (written by connrun, Markdown allowed).
    action: String,
}

/// `run.*` in templates.
#[derive(Serialize)]
struct RunFacts<'a> {
    /// The RUN_ID.
    run_id: &'a str,
    /// Template name.
    template: &'a str,
    /// The template's description: the run's purpose (目的).
    description: &'a str,
    /// Suite folder under `artifacts/`.
    suite: &'a str,
    /// Target name.
    target: &'a str,
    /// Target base URL.
    base_url: &'a str,
    /// connrun version that ran it.
    tool_version: &'a str,
    /// `2025-11-19 09:30 JST`.
    started: String,
    /// Same form.
    finished: String,
    /// Seconds from start to finish, one decimal.
    duration_seconds: String,
    /// `artifacts/<suite>/<RUN_ID>/`.
    evidence_dir: String,
    /// The exit-code view: every probe Ready and the audit not failed and without findings.
    ok: bool,
    /// Every probe (and the server info) was Ready.
    all_ready: bool,
    /// Kept for older override templates: true only when collected and exactly as expected.
    audit_ok: bool,
    /// Kept for older override templates: an audit database was configured.
    audit_checked: bool,
    /// Probes of the phases (server info excluded).
    probe_count: usize,
    /// For a run too large to list whole: what the documents list and where the rest is; `None` when every
    /// probe is listed.
    excerpt: Option<String>,
    /// Of those, the Ready ones.
    ready_count: usize,
}

/// One entry of `phases`.
#[derive(Serialize)]
struct PhaseView<'a> {
    /// Phase or probe id.
    id: &'a str,
    /// Human name.
    name: &'a str,
    /// The phase's probes in template order.
    probes: Vec<ProbeView<'a>>,
    /// The phase's counts worth a line.
    audit: Vec<&'a AuditCount>,
}

/// One probe as templates see it: display-ready strings and repo-rooted evidence paths.
#[derive(Serialize)]
struct ProbeView<'a> {
    /// Phase or probe id.
    id: &'a str,
    /// Human name.
    name: &'a str,
    /// HTTP method as sent.
    method: &'a str,
    /// Redacted URL.
    url: &'a str,
    /// The URL's path and query.
    path: String,
    /// `GET /path`, for the API column.
    request_line: String,
    /// `000` without a response, like curl.
    http: String,
    /// Ready or not.
    ready: bool,
    /// Outcome kind (`connection_refused`, ...), for templates that branch on it.
    outcome: &'static str,
    /// What went wrong, in Japanese (empty when Ready).
    problem: String,
    /// The proxy hop and retries in Japanese (`プロキシ経由（…）`, `再試行 1 回で成功（…）`); empty when plain.
    transport: String,
    /// What clears it (empty when Ready).
    condition: String,
    /// The probe as one sentence (used for the server-info row).
    sentence: String,
    /// The template's note for the probe.
    memo: &'a str,
    /// Negotiated TLS version.
    tls: String,
    /// Total time in whole milliseconds.
    total_ms: String,
    /// Response body size.
    response_bytes: u64,
    /// `artifacts/<suite>/<RUN_ID>/httpdump/<probe>/` (or `serverinfo/`).
    evidence: String,
    /// `artifacts/<suite>/<RUN_ID>/trace/<probe>_trace.log`.
    trace: String,
    /// `artifacts/<suite>/<RUN_ID>/httpdump/<probe>/response.body[.gz]`, when a body was kept.
    body_file: Option<String>,
    /// Audit actions the probe should produce.
    audit_expected: &'a [String],
}

/// Whether an audit count is worth a line: the phase expected it or it changed.
fn is_relevant(count: &AuditCount) -> bool {
    count.expected > 0 || count.delta != Some(0)
}

fn request_path(url: &str) -> String {
    let at = url.find("://").and_then(|scheme| url[scheme + 3..].find('/').map(|p| scheme + 3 + p));
    at.map_or_else(|| url.to_owned(), |p| url[p..].to_owned())
}

/// The server-info probe as a sentence: what was asked and what came back.
fn serverinfo_sentence(probe: &ProbeRecord, request_line: &str, body: Option<&str>) -> String {
    match probe.http_status {
        Some(status) if probe.ready => {
            let body = body.map(|b| format!("（body={b}）")).unwrap_or_default();
            format!("ServerInfo（{request_line}）から HTTP {status} を取得{body}。")
        }
        Some(_) => format!("ServerInfo（{request_line}）は Ready ではない: {}。", wording::problem_ja(probe)),
        None => format!("ServerInfo（{request_line}）は応答なし: {}。", wording::problem_ja(probe)),
    }
}

fn probe_view<'a>(probe: &'a ProbeRecord, status: &'a RunStatus, serverinfo: bool) -> ProbeView<'a> {
    let root = evidence_root(status);
    let path = request_path(&probe.url);
    let request_line = format!("{} {path}", probe.method);
    let body = if serverinfo { status.serverinfo_body.as_deref() } else { None };
    ProbeView {
        sentence: serverinfo_sentence(probe, &request_line, body),
        request_line,
        id: &probe.id,
        name: &probe.name,
        method: &probe.method,
        url: &probe.url,
        path,
        http: probe.http_status.map_or_else(|| "000".to_owned(), |s| s.to_string()),
        ready: probe.ready,
        outcome: probe.outcome.kind(),
        problem: wording::problem_ja(probe),
        transport: wording::transport_ja(probe),
        condition: if probe.ready { String::new() } else { wording::release_condition_ja(probe) },
        memo: status.probe_memos.get(&probe.id).map_or("", String::as_str),
        tls: probe.tls.as_ref().map(|tls| tls.version.clone()).unwrap_or_default(),
        total_ms: format!("{:.0}", probe.timings.total_ms),
        response_bytes: probe.response_body_bytes,
        evidence: format!("{root}{}", EvidenceLayout::dump_link(&probe.id, serverinfo)),
        trace: format!("{root}{}", EvidenceLayout::trace(&probe.id)),
        body_file: probe.response_body_file.as_deref().map(|f| format!("{root}{f}")),
        audit_expected: &probe.audit_expected,
    }
}

/// One action per distinct 解除条件, naming every item it clears (a server that is down is one action, not
/// one per probe), then the routine ones.
fn next_actions(status: &RunStatus, items: &[OpenItem]) -> Vec<NextAction> {
    let mut actions: Vec<NextAction> = Vec::new();
    for item in items {
        match actions.iter_mut().find(|a| a.action == item.condition) {
            Some(action) => {
                action.subject.push_str(", ");
                action.subject.push_str(&item.subject);
            }
            None => actions.push(NextAction { subject: item.subject.clone(), action: item.condition.clone() }),
        }
    }
    if status.audit_state() == AuditState::NotConfigured {
        actions.push(NextAction {
            subject: String::new(),
            action: "監査 DB（ターゲットの `[audit]`）を設定し、次回 RUN_ID で d_audit_event を採取する".to_owned(),
        });
    }
    if actions.is_empty() {
        actions.push(NextAction {
            subject: String::new(),
            action: "次回の定常 RUN_ID で同じテンプレートを再実行し、`connrun diff --latest` で本 RUN_ID と比較する"
                .to_owned(),
        });
    }
    actions
}

impl<'a> ReportContext<'a> {
    pub(crate) fn new(status: &'a RunStatus, settings: &'a ReportSettings) -> Self {
        Self::excerpted(status, settings, None)
    }

    /// The context of a run whose `status.probes` lists only what `excerpt` says (the counts come from it).
    pub(crate) fn excerpted(status: &'a RunStatus, settings: &'a ReportSettings, excerpt: Option<&Excerpt>) -> Self {
        let phases = status
            .phases
            .iter()
            .map(|phase| PhaseView {
                id: &phase.id,
                name: &phase.name,
                probes: status.probes_of(&phase.id).map(|p| probe_view(p, status, false)).collect(),
                audit: status.audit.iter().filter(|c| c.phase == phase.id && is_relevant(c)).collect(),
            })
            .collect();
        let items = open_items(status);
        let zone = settings.zone;
        ReportContext {
            run: RunFacts {
                run_id: &status.run_id,
                template: &status.template,
                description: &status.template_description,
                suite: &status.suite,
                target: &status.target,
                base_url: &status.base_url,
                tool_version: &status.tool_version,
                started: zone.moment(status.started_at),
                finished: zone.moment(status.finished_at),
                duration_seconds: format!(
                    "{:.1}",
                    (status.finished_at - status.started_at).num_milliseconds() as f64 / 1000.0
                ),
                evidence_dir: evidence_root(status),
                ok: status.is_ok(),
                all_ready: status.all_ready,
                audit_ok: status.audit_ok,
                audit_checked: status.audit_checked,
                probe_count: excerpt.map_or(status.probes.len(), |e| e.total),
                excerpt: excerpt.map(Excerpt::sentence_ja),
                ready_count: excerpt.map_or_else(|| status.probes.iter().filter(|p| p.ready).count(), |e| e.ready),
            },
            serverinfo: status.serverinfo.as_ref().map(|p| probe_view(p, status, true)),
            serverinfo_body: status.serverinfo_body.as_deref(),
            phases,
            audit: status.audit.iter().filter(|c| is_relevant(c)).collect(),
            audit_errors: &status.audit_errors,
            audit_status: AuditSummary::of(status),
            audit_chain: status.audit_chain.as_ref().map(|v| v.line_ja()),
            audit_chain_value: status.audit_chain.as_ref().map(|v| v.value_ja()),
            open_items: items.iter().map(|i| i.text.clone()).collect(),
            next_actions: next_actions(status, &items),
            pending: items,
            owner: settings.owner.clone().unwrap_or_else(|| "未設定".to_owned()),
            deadline: zone.next_business_morning(status.finished_at),
            contacts: &settings.contacts,
        }
    }
}
