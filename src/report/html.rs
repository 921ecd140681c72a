//! `connrun report html`: one run as one self-contained HTML file (inline CSS and SVG, nothing fetched).
//!
//! Reviewers open evidence on machines without network access and attach reports to tickets, so the page
//! must carry everything: the probes, a timings waterfall (SVG) built from each probe's start time and
//! DNS/connect/TLS/first-byte/transfer durations, the server certificate facts, and a small chart of the
//! mean per-request-phase latency across the runs of the same template and target, and the audit table
//! (state, counts, findings) that the Markdown shows too. Like the logs, the page is in Japanese, with
//! times in the operator's zone. A Content-Security-Policy of `default-src 'none'` makes the browser refuse
//! any external load even if a value slipped in.

use serde::Serialize;

use crate::evidence::status::{AuditCount, RunStatus};
use crate::evidence::{CertFacts, ProbeRecord};
use crate::report::clock::Zone;
use crate::report::history::{REQUEST_PHASES, mean_phase_latency};
use crate::report::items::AuditSummary;
use crate::report::wording;

/// Colours of the request phases (waterfall segments and chart lines), in wire order plus transfer.
const PHASE_COLOURS: [&str; 5] = ["#8e6c8a", "#e5a93d", "#a05195", "#2f7ed8", "#4caf50"];

/// Escapes text for SVG/XML content and attribute values.
pub fn xml_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The timings waterfall: one row per probe, offset by its start, segments DNS/connect/TLS/TTFB/transfer.
pub fn waterfall_svg(status: &RunStatus) -> String {
    let probes: Vec<&ProbeRecord> = status.serverinfo.iter().chain(&status.probes).collect();
    waterfall_of(&probes, status.started_at)
}

/// The waterfall of `probes` (a page of a large run), offset from the first start (or `started_at`).
pub fn waterfall_of(probes: &[&ProbeRecord], started_at: chrono::DateTime<chrono::Utc>) -> String {
    let start = probes.iter().map(|p| p.started_at).min().unwrap_or(started_at);
    let offset = |p: &ProbeRecord| (p.started_at - start).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let end = probes.iter().map(|p| offset(p) + p.timings.total_ms).fold(1.0_f64, f64::max);
    let (label_w, bar_w, row_h) = (150.0, 560.0, 22.0);
    let scale = bar_w / end;
    let height = row_h * probes.len() as f64 + 30.0;
    let mut svg = format!(
        "<svg id=\"waterfall\" role=\"img\" aria-label=\"タイミングのウォーターフォール\" \
         width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\">",
        w = label_w + bar_w + 80.0
    );
    for (row, p) in probes.iter().enumerate() {
        let y = row as f64 * row_h + 4.0;
        let t = &p.timings;
        let transfer = (t.total_ms - t.dns_ms - t.connect_ms - t.tls_ms - t.ttfb_ms).max(0.0);
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12\">{} {}</text>",
            y + 13.0,
            xml_escape(&p.id),
            xml_escape(&p.name)
        ));
        let mut x = label_w + offset(p) * scale;
        for (i, ms) in [t.dns_ms, t.connect_ms, t.tls_ms, t.ttfb_ms, transfer].into_iter().enumerate() {
            let w = (ms * scale).max(if ms > 0.0 { 1.0 } else { 0.0 });
            svg.push_str(&format!(
                "<rect class=\"seg\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" fill=\"{}\"><title>{} {ms:.2} ms</title></rect>",
                PHASE_COLOURS[i],
                ["dns", "connect", "tls", "ttfb", "transfer"][i]
            ));
            x += w;
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{:.1} ms</text>",
            x + 4.0,
            y + 13.0,
            t.total_ms
        ));
    }
    let axis_y = row_h * probes.len() as f64 + 20.0;
    svg.push_str(&format!(
        "<text x=\"{label_w}\" y=\"{axis_y:.1}\" font-size=\"11\">0 ms</text>\
         <text x=\"{:.1}\" y=\"{axis_y:.1}\" font-size=\"11\" text-anchor=\"end\">{end:.1} ms</text></svg>",
        label_w + bar_w
    ));
    svg
}

/// What the latency chart shows of one run: its RUN_ID and the mean of each request phase over its probes.
/// Earlier runs are read one at a time and reduced to this, so a chart of 20 large runs holds 20 of these.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLatency {
    /// The run.
    pub run_id: String,
    /// Mean milliseconds of each of [`REQUEST_PHASES`].
    pub phase_ms: [f64; 5],
}

impl RunLatency {
    /// The chart's point of `status`.
    pub fn of(status: &RunStatus) -> Self {
        Self { run_id: status.run_id.clone(), phase_ms: mean_phase_latency(status) }
    }
}

/// Mean latency of each request phase across runs (oldest first), one polyline per phase.
pub fn latency_chart_svg(runs: &[RunLatency]) -> String {
    let series: Vec<[f64; 5]> = runs.iter().map(|s| s.phase_ms).collect();
    let max = series.iter().flat_map(|s| s.iter().copied()).fold(1.0_f64, f64::max);
    let (w, h, left, bottom) = (640.0, 220.0, 50.0, 30.0);
    let step = if series.len() > 1 { (w - left - 20.0) / (series.len() - 1) as f64 } else { 0.0 };
    let point = |i: usize, v: f64| (left + step * i as f64, (h - bottom) - v / max * (h - bottom - 10.0));
    let mut svg = format!(
        "<svg id=\"latency-chart\" role=\"img\" aria-label=\"実行ごとのレイテンシ\" \
         width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
         <line x1=\"{left}\" y1=\"{y0}\" x2=\"{w}\" y2=\"{y0}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"16\" font-size=\"11\">{max:.0} ms</text><text x=\"2\" y=\"{y0}\" font-size=\"11\">0</text>",
        y0 = h - bottom
    );
    for (phase, name) in REQUEST_PHASES.iter().enumerate() {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (x, y) = point(i, s[phase]);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" "),
            c = PHASE_COLOURS[phase]
        ));
        for p in &points {
            if let Some((x, y)) = p.split_once(',') {
                svg.push_str(&format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{}\"/>", PHASE_COLOURS[phase]));
            }
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{}\">{name}</text>",
            left + 10.0 + phase as f64 * 90.0,
            h - 8.0,
            PHASE_COLOURS[phase]
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// One row of the probes table.
#[derive(Serialize)]
pub(crate) struct ProbeRow<'a> {
    /// Probe id.
    pub(crate) id: &'a str,
    /// Endpoint name.
    pub(crate) name: &'a str,
    /// Phase id (`serverinfo` for the server-info probe).
    pub(crate) phase: &'a str,
    /// HTTP method.
    pub(crate) method: &'a str,
    /// Redacted URL.
    pub(crate) url: &'a str,
    /// `200` or `000 <failure kind>`.
    pub(crate) http: String,
    /// Ready or not.
    pub(crate) ready: bool,
    /// What went wrong, when not Ready (Japanese).
    pub(crate) problem: String,
    /// Negotiated TLS version and cipher.
    pub(crate) tls: String,
    /// Total time, formatted.
    pub(crate) total_ms: String,
}

impl<'a> ProbeRow<'a> {
    /// The row of one probe.
    pub(crate) fn of(p: &'a ProbeRecord) -> Self {
        ProbeRow {
            id: &p.id,
            name: &p.name,
            phase: &p.phase,
            method: &p.method,
            url: &p.url,
            http: p.http_code(),
            ready: p.ready,
            problem: wording::problem_ja(p),
            tls: p.tls.as_ref().map(|t| format!("{} {}", t.version, t.cipher_suite)).unwrap_or_default(),
            total_ms: format!("{:.1}", p.timings.total_ms),
        }
    }
}

/// The run's identity as the page shows it (not its probes: a large run's would be megabytes of context).
#[derive(Serialize)]
pub(crate) struct RunFacts<'a> {
    /// The RUN_ID.
    run_id: &'a str,
    /// Template name.
    template: &'a str,
    /// Target name.
    target: &'a str,
    /// Target base URL.
    base_url: &'a str,
    /// connrun version of the run.
    tool_version: &'a str,
    /// Suite folder.
    suite: &'a str,
}

/// What `report.html.tera` sees.
#[derive(Serialize)]
pub(crate) struct HtmlContext<'a> {
    /// The run's identity.
    run: RunFacts<'a>,
    /// Probes of the run, the server-info probe included.
    probe_count: usize,
    /// For a run of more than [`PAGE_PROBES`] probes: the detail pages, in order (then `probes` is empty and
    /// the waterfall is on each page); empty when this page lists every probe.
    pages: Vec<PageLink>,
    /// What the paged page lists and where the rest is; `None` when not paged.
    paged_note: Option<String>,
    /// Start, `2025-11-19 09:30 JST`.
    started: String,
    /// End, same form.
    finished: String,
    /// The three-valued audit state with its findings.
    audit_status: AuditSummary,
    /// Every audit count of the run, in phase order.
    audit: &'a [AuditCount],
    /// Ready probes.
    ready: usize,
    /// Every probe, serverinfo first (none when paged).
    probes: Vec<ProbeRow<'a>>,
    /// Distinct certificates the server presented (leaf first).
    certificates: Vec<&'a CertFacts>,
    /// Inline SVG (numbers and escaped labels only), inserted unescaped; empty when paged.
    waterfall: String,
    /// Inline SVG of latency across runs.
    chart: String,
    /// The RUN_IDs charted, oldest first.
    chart_runs: Vec<&'a str>,
}

/// Renders the HTML page for `status`; `series` are the runs of the same template and target, oldest first
/// (including this one), for the latency chart; times are shown in `zone`. A run of more than
/// [`PAGE_PROBES`] probes gets the summary page only here: see [`crate::report::html_pages`].
pub fn render(
    views: &crate::report::views::Views,
    status: &RunStatus,
    series: &[RunLatency],
    zone: Zone,
) -> Result<String, crate::report::ReportError> {
    views.render("report.html.tera", &context(status, series, zone, Vec::new()))
}

/// Most probes one HTML page lists; a larger run gets a summary page and detail pages of this many.
pub const PAGE_PROBES: usize = 1000;

/// A link from the summary page to one detail page.
#[derive(Debug, Clone, Serialize)]
pub struct PageLink {
    /// The page's file name, relative to the summary page.
    pub href: String,
    /// Id of the first probe on it.
    pub first: String,
    /// Id of the last probe on it.
    pub last: String,
    /// Probes on it.
    pub count: usize,
    /// Of those, not Ready.
    pub not_ready: usize,
}

/// The page's context (also rendered against sample runs by `templates check`); with `pages`, the summary of
/// a paged run: no probe rows and no waterfall, a link to each page instead.
pub(crate) fn context<'a>(
    status: &'a RunStatus,
    series: &'a [RunLatency],
    zone: Zone,
    pages: Vec<PageLink>,
) -> HtmlContext<'a> {
    let mut certificates: Vec<&CertFacts> = Vec::new();
    for cert in status.serverinfo.iter().chain(&status.probes).flat_map(|p| &p.server_chain) {
        if !certificates.iter().any(|c| c.sha256 == cert.sha256) {
            certificates.push(cert);
        }
    }
    let paged = !pages.is_empty();
    let all = || status.serverinfo.iter().chain(&status.probes);
    let probes = if paged { Vec::new() } else { all().map(ProbeRow::of).collect() };
    let probe_count = all().count();
    let paged_note = paged.then(|| {
        format!(
            "{probe_count} 件のプローブを {} ページ（1 ページ最大 {PAGE_PROBES} 件、テンプレート順）に分けて掲載。各プローブはいずれか 1 ページにだけ載る。タイミングのウォーターフォールは各ページにある。",
            pages.len()
        )
    });
    HtmlContext {
        run: RunFacts {
            run_id: &status.run_id,
            template: &status.template,
            target: &status.target,
            base_url: &status.base_url,
            tool_version: &status.tool_version,
            suite: &status.suite,
        },
        probe_count,
        pages,
        paged_note,
        started: zone.moment(status.started_at),
        finished: zone.moment(status.finished_at),
        audit_status: AuditSummary::of(status),
        audit: &status.audit,
        ready: status.probes.iter().filter(|p| p.ready).count(),
        probes,
        certificates,
        waterfall: if paged { String::new() } else { waterfall_svg(status) },
        chart: latency_chart_svg(series),
        chart_runs: series.iter().map(|s| s.run_id.as_str()).collect(),
    }
}
