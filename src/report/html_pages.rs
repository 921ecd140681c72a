//! `connrun report html` of a run larger than one page: a summary page and detail pages, each probe on one.
//!
//! A 10,000-probe run made a 9.7 MB page through tera in 3.5 s. A run of more than [`PAGE_PROBES`] probes
//! now gets the summary page from `report.html.tera` (identity, counts, audit, certificates, latency chart, a
//! link to every detail page and a sentence saying the probes are paged), and detail pages of at most
//! [`PAGE_PROBES`] probes in template order (the server-info probe first), written row by row without a
//! template: a table and the page's waterfall, linked to the summary and to their neighbours. Pages are
//! named after the summary file: `R.html` has `R-p0001.html`, `R-p0002.html`, ….

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::evidence::ProbeRecord;
use crate::evidence::status::RunStatus;
use crate::report::ReportError;
use crate::report::clock::Zone;
use crate::report::html::{self, PAGE_PROBES, PageLink, ProbeRow, RunLatency, xml_escape};
use crate::report::views::Views;

/// The page at `output` and, for a run of more than [`PAGE_PROBES`] probes, its detail pages beside it.
/// Returns every file written, the summary first.
pub fn write(
    views: &Views,
    status: &RunStatus,
    series: &[RunLatency],
    zone: Zone,
    output: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    let probes: Vec<&ProbeRecord> = status.serverinfo.iter().chain(&status.probes).collect();
    let chunks: Vec<&[&ProbeRecord]> =
        if probes.len() > PAGE_PROBES { probes.chunks(PAGE_PROBES).collect() } else { Vec::new() };
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "report".to_owned());
    let names: Vec<String> = (1..=chunks.len()).map(|n| format!("{stem}-p{n:04}.html")).collect();
    let links = chunks.iter().zip(&names).map(|(chunk, name)| link(chunk, name)).collect();
    let summary = views.render("report.html.tera", &html::context(status, series, zone, links))?;
    write_file(output, |out| out.write_all(summary.as_bytes()))?;
    let mut written = vec![output.to_owned()];
    let summary_name = output.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    for (index, chunk) in chunks.iter().enumerate() {
        let path = output.with_file_name(&names[index]);
        let page = Page { status, probes: chunk, number: index + 1, names: &names, summary: &summary_name };
        write_file(&path, |out| page.write(out))?;
        written.push(path);
    }
    Ok(written)
}

fn link(chunk: &[&ProbeRecord], name: &str) -> PageLink {
    PageLink {
        href: name.to_owned(),
        first: chunk.first().map(|p| p.id.clone()).unwrap_or_default(),
        last: chunk.last().map(|p| p.id.clone()).unwrap_or_default(),
        count: chunk.len(),
        not_ready: chunk.iter().filter(|p| !p.ready).count(),
    }
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), ReportError> {
    let error = |source| ReportError::Write { path: path.to_owned(), source };
    let mut out = BufWriter::with_capacity(256 << 10, std::fs::File::create(path).map_err(error)?);
    body(&mut out).and_then(|()| out.flush()).map_err(error)
}

/// One detail page.
struct Page<'a> {
    /// The run.
    status: &'a RunStatus,
    /// Its probes on this page, in template order.
    probes: &'a [&'a ProbeRecord],
    /// 1-based.
    number: usize,
    /// Every page's file name, in order.
    names: &'a [String],
    /// The summary page's file name.
    summary: &'a str,
}

impl Page<'_> {
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let run = xml_escape(&self.status.run_id);
        let total = self.names.len();
        writeln!(out, "<!DOCTYPE html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">")?;
        writeln!(
            out,
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        )?;
        writeln!(
            out,
            "<title>RUN_ID={run} — {} / {total}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
            self.number
        )?;
        writeln!(out, "<h1>RUN_ID={run} — プローブ {} / {total} ページ</h1>", self.number)?;
        self.navigation(out)?;
        writeln!(
            out,
            "<table id=\"probes\">\n<tr><th>フェーズ</th><th>API</th><th>リクエスト</th><th>HTTP</th><th>判定</th><th>TLS</th><th>所要 (ms)</th><th>メモ</th></tr>"
        )?;
        for probe in self.probes {
            row(out, &ProbeRow::of(probe))?;
        }
        writeln!(out, "</table>\n<h2>タイミング（ウォーターフォール、このページのプローブ）</h2>")?;
        writeln!(out, "{}", html::waterfall_of(self.probes, self.status.started_at))?;
        self.navigation(out)?;
        writeln!(out, "</body>\n</html>")
    }

    /// Links to the summary and the neighbouring pages.
    fn navigation(&self, out: &mut impl Write) -> std::io::Result<()> {
        let href = |n: usize| xml_escape(&self.names[n - 1]);
        write!(out, "<p class=\"nav\"><a href=\"{}\">概要</a>", xml_escape(self.summary))?;
        if self.number > 1 {
            write!(out, " | <a rel=\"prev\" href=\"{}\">前のページ</a>", href(self.number - 1))?;
        }
        if self.number < self.names.len() {
            write!(out, " | <a rel=\"next\" href=\"{}\">次のページ</a>", href(self.number + 1))?;
        }
        writeln!(out, "</p>")
    }
}

/// One table row, every value escaped.
fn row(out: &mut impl Write, p: &ProbeRow<'_>) -> std::io::Result<()> {
    let (class, verdict) = if p.ready { ("ready", "Ready") } else { ("not-ready", "Not Ready") };
    writeln!(
        out,
        "<tr id=\"probe-{}\"><td>{}</td><td>{} {}</td><td><code>{} {}</code></td><td>{}</td>\n<td class=\"{class}\">{verdict}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        xml_escape(p.id),
        xml_escape(p.phase),
        xml_escape(p.id),
        xml_escape(p.name),
        xml_escape(p.method),
        xml_escape(p.url),
        xml_escape(&p.http),
        xml_escape(&p.tls),
        xml_escape(&p.total_ms),
        xml_escape(&p.problem)
    )
}

/// The summary page's look, so the pages read as one report.
const STYLE: &str = "body { font-family: sans-serif; margin: 2em; color: #222; background: #fff; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; }
th { background: #f0f0f0; } .ready { color: #1b7f2a; font-weight: bold; } .not-ready { color: #b3261e; font-weight: bold; }
code { font-size: 0.9em; word-break: break-all; } svg { background: #fafafa; border: 1px solid #ddd; }";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::status::sample_status;

    #[test]
    fn a_paged_run_links_every_page_and_lists_each_probe_exactly_once() {
        let mut status = sample_status();
        let template = status.probes[0].clone();
        status.probes = (0..2 * PAGE_PROBES + 1)
            .map(|i| ProbeRecord { id: format!("P{i:05}"), ready: i != 1500, ..template.clone() })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let output = dir.path().join("R.html");
        let views = Views::load(None).expect("views");
        let written = write(&views, &status, &[RunLatency::of(&status)], Zone::default(), &output).expect("write");

        let names: Vec<String> =
            written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["R.html", "R-p0001.html", "R-p0002.html", "R-p0003.html"]);
        let summary = std::fs::read_to_string(&output).expect("summary");
        for name in &names[1..] {
            assert!(summary.contains(&format!("href=\"{name}\"")), "the summary links {name}");
        }
        assert!(summary.contains("3 ページ"), "the summary says the probes are paged");
        assert!(!summary.contains("<tr id=\"probe-"), "the summary lists no probe row");
        let pages: String = written[1..].iter().map(|p| std::fs::read_to_string(p).expect("page")).collect();
        for probe in status.serverinfo.iter().chain(&status.probes) {
            let row = format!("<tr id=\"probe-{}\">", probe.id);
            assert_eq!(pages.matches(&row).count(), 1, "{} appears exactly once", probe.id);
        }
        assert_eq!(pages.matches("class=\"not-ready\">Not Ready").count(), 1);
        assert!(!pages.contains("<script"), "pages run nothing");
    }

    #[test]
    fn a_run_of_one_page_is_one_file_with_every_probe() {
        let status = sample_status();
        let dir = tempfile::tempdir().expect("tempdir");
        let output = dir.path().join("R.html");
        let views = Views::load(None).expect("views");
        let written = write(&views, &status, &[RunLatency::of(&status)], Zone::default(), &output).expect("write");
        assert_eq!(written, std::slice::from_ref(&output));
        let page = std::fs::read_to_string(&output).expect("page");
        assert!(page.contains("PHR-06") && page.contains("PHR-07") && page.contains("id=\"waterfall\""));
    }
}
