//! `connrun history --html`: status and latency per probe across the last runs, drawn as inline SVG.
//!
//! "Comparing more than two runs is only a table; nobody can see a trend at a glance." This page draws, for
//! each template and target, one small chart per probe: a point per run coloured by its status (Ready, Not
//! Ready with an HTTP answer, no answer at all) on a line of its total latency, each point carrying a
//! `<title>` (RUN_ID, time, HTTP code, verdict, milliseconds) that screen readers and tooltips show. Like the
//! HTML report it is one self-contained file: no script, no network, no external font, a
//! Content-Security-Policy of `default-src 'none'`, and every string that reaches SVG escaped here (the page
//! template escapes the rest), because probe names and memos are free text from templates.

use serde::Serialize;

use crate::compare::runindex::LoadedRun;
use crate::evidence::ProbeRecord;
use crate::evidence::status::RunStatus;
use crate::report::clock::Zone;
use crate::report::html::xml_escape;
use crate::report::wording;

/// Colour of a Ready point.
pub const READY_COLOUR: &str = "#1b7f2a";
/// Colour of a point that got an HTTP answer that is not Ready (or failed a check).
pub const NOT_READY_COLOUR: &str = "#d93025";
/// Colour of a point without any HTTP answer (DNS, TCP, TLS failure, timeout).
pub const NO_ANSWER_COLOUR: &str = "#7b1fa2";
/// Colour of the latency line.
const LINE_COLOUR: &str = "#2f7ed8";

/// One probe's chart within a group.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeTrend {
    /// Probe id.
    pub id: String,
    /// Endpoint name (from the newest run that has the probe).
    pub name: String,
    /// Runs in which the probe was sent (the points drawn).
    pub points: usize,
    /// Of those, Ready.
    pub ready: usize,
    /// The chart: numbers and escaped text only, inserted unescaped by the page.
    pub svg: String,
}

/// The runs of one template against one target.
#[derive(Debug, Clone, Serialize)]
pub struct TrendGroup {
    /// Template name.
    pub template: String,
    /// Target name.
    pub target: String,
    /// RUN_IDs charted, oldest first.
    pub run_ids: Vec<String>,
    /// Start of the oldest charted run, in the operator's zone.
    pub from: String,
    /// Start of the newest.
    pub to: String,
    /// One chart per probe, in the newest run's order (probes only older runs had come after).
    pub probes: Vec<ProbeTrend>,
}

/// What `history.html.tera` sees.
#[derive(Debug, Clone, Serialize)]
pub struct TrendPage {
    /// At most this many runs per template and target.
    pub last: usize,
    /// The template filter, when given.
    pub template: Option<String>,
    /// One group per template and target, sorted by template then target.
    pub groups: Vec<TrendGroup>,
}

/// Builds the page from every finished run (oldest first): the newest `last` runs of each template and
/// target, optionally of one template only.
pub fn page(runs: &[LoadedRun], template: Option<&str>, last: usize, zone: Zone) -> TrendPage {
    let mut keys: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.status.template.as_str(), r.status.target.as_str()))
        .filter(|(t, _)| template.is_none_or(|wanted| *t == wanted))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let groups = keys
        .into_iter()
        .map(|(t, target)| {
            let series: Vec<&RunStatus> =
                runs.iter().map(|r| &r.status).filter(|s| s.template == t && s.target == target).collect();
            group(&series[series.len().saturating_sub(last)..], zone)
        })
        .collect();
    TrendPage { last, template: template.map(str::to_owned), groups }
}

fn probes_of(status: &RunStatus) -> impl Iterator<Item = &ProbeRecord> {
    status.serverinfo.iter().chain(&status.probes)
}

fn group(series: &[&RunStatus], zone: Zone) -> TrendGroup {
    let mut ids: Vec<(&str, &str)> = Vec::new();
    for status in series.iter().rev() {
        for probe in probes_of(status) {
            if !ids.iter().any(|(id, _)| *id == probe.id) {
                ids.push((&probe.id, &probe.name));
            }
        }
    }
    let (first, last) = (series.first(), series.last());
    TrendGroup {
        template: first.map(|s| s.template.clone()).unwrap_or_default(),
        target: first.map(|s| s.target.clone()).unwrap_or_default(),
        run_ids: series.iter().map(|s| s.run_id.clone()).collect(),
        from: first.map(|s| zone.moment(s.started_at)).unwrap_or_default(),
        to: last.map(|s| zone.moment(s.started_at)).unwrap_or_default(),
        probes: ids.into_iter().map(|(id, name)| probe_trend(series, id, name, zone)).collect(),
    }
}

/// How a point is drawn: its class and colour.
fn point_style(probe: &ProbeRecord) -> (&'static str, &'static str) {
    match (probe.ready, probe.http_status) {
        (true, _) => ("ready", READY_COLOUR),
        (false, Some(_)) => ("not-ready", NOT_READY_COLOUR),
        (false, None) => ("no-answer", NO_ANSWER_COLOUR),
    }
}

/// The `<title>` of a point: RUN_ID, time, HTTP code, verdict and latency (and what went wrong).
fn point_title(status: &RunStatus, probe: &ProbeRecord, zone: Zone) -> String {
    let verdict = if probe.ready { "Ready".to_owned() } else { format!("Not Ready: {}", wording::problem_ja(probe)) };
    format!(
        "{} {} — HTTP {} {verdict}（{:.1} ms）",
        status.run_id,
        zone.moment(status.started_at),
        probe.http_code(),
        probe.timings.total_ms
    )
}

/// One probe's chart: x is the run (every run of the group has its slot, so a gap shows a run without
/// the probe), y the total latency scaled to the probe's slowest run.
fn probe_trend(series: &[&RunStatus], id: &str, name: &str, zone: Zone) -> ProbeTrend {
    let (w, h, left, right, top, bottom) = (420.0, 110.0, 56.0, 12.0, 12.0, 22.0);
    let found: Vec<(usize, &RunStatus, &ProbeRecord)> =
        series.iter().enumerate().filter_map(|(i, s)| probes_of(s).find(|p| p.id == id).map(|p| (i, *s, p))).collect();
    let max = found.iter().map(|(_, _, p)| p.timings.total_ms).fold(1.0_f64, f64::max);
    let step = if series.len() > 1 { (w - left - right) / (series.len() - 1) as f64 } else { 0.0 };
    let x = |i: usize| if series.len() > 1 { left + step * i as f64 } else { (left + w - right) / 2.0 };
    let y = |ms: f64| top + (h - top - bottom) * (1.0 - ms / max);
    let label = format!("{id} {name}: 実行ごとの判定とレイテンシ（{} 回）", found.len());
    let mut svg = format!(
        "<svg class=\"trend\" data-probe=\"{}\" role=\"img\" aria-label=\"{}\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\"><title>{}</title>\
         <line x1=\"{left}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"{ty:.1}\" font-size=\"10\">{max:.0} ms</text>\
         <text x=\"2\" y=\"{y0}\" font-size=\"10\">0 ms</text>",
        xml_escape(id),
        xml_escape(&label),
        xml_escape(&label),
        y0 = h - bottom,
        x1 = w - right,
        ty = top + 4.0,
    );
    let line: Vec<String> =
        found.iter().map(|(i, _, p)| format!("{:.1},{:.1}", x(*i), y(p.timings.total_ms))).collect();
    if line.len() > 1 {
        svg.push_str(&format!(
            "<polyline class=\"latency\" fill=\"none\" stroke=\"{LINE_COLOUR}\" stroke-width=\"1.5\" points=\"{}\"/>",
            line.join(" ")
        ));
    }
    for (i, status, probe) in &found {
        let (class, colour) = point_style(probe);
        svg.push_str(&format!(
            "<circle class=\"pt {class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4.5\" fill=\"{colour}\"><title>{}</title></circle>",
            x(*i),
            y(probe.timings.total_ms),
            xml_escape(&point_title(status, probe, zone))
        ));
    }
    let (oldest, newest) = (series.first().map(|s| s.run_id.as_str()), series.last().map(|s| s.run_id.as_str()));
    svg.push_str(&format!(
        "<text x=\"{left}\" y=\"{:.1}\" font-size=\"10\">{}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text></svg>",
        h - 6.0,
        xml_escape(oldest.unwrap_or_default()),
        w - right,
        h - 6.0,
        xml_escape(if series.len() > 1 { newest.unwrap_or_default() } else { "" })
    ));
    ProbeTrend {
        id: id.to_owned(),
        name: name.to_owned(),
        points: found.len(),
        ready: found.iter().filter(|(_, _, p)| p.ready).count(),
        svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::status::sample_status;

    fn loaded(status: RunStatus) -> LoadedRun {
        LoadedRun { dir: std::path::PathBuf::new(), status, parity: None }
    }

    #[test]
    fn hostile_probe_names_are_escaped_and_each_run_is_one_point_in_its_colour() {
        let mut first = sample_status();
        first.probes[0].name = "<script>alert('x')</script> & \"q\"".to_owned();
        let mut second = first.clone();
        second.run_id = "20251120TorcaPHRSeqZ1".to_owned();
        second.started_at += chrono::Duration::days(1);
        second.probes[0].ready = false;
        second.probes[0].http_status = None;

        let page = page(&[loaded(first.clone()), loaded(second)], None, 20, Zone::default());

        let chart = &page.groups[0].probes.iter().find(|p| p.id == first.probes[0].id).expect("probe").svg;
        assert!(!chart.contains("<script") && chart.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{chart}");
        assert_eq!(chart.matches("<circle").count(), 2);
        assert_eq!(chart.matches(NO_ANSWER_COLOUR).count(), 1);
        assert!(!chart.contains("http://") && !chart.contains("https://"), "{chart}");
    }
}
