//! `junit.xml`: one test case per probe, grouped by phase, so CI systems can show a run's result.
//!
//! A probe that is not Ready is a `<failure>` with its outcome and check failures as the message; the XML is
//! written by hand, test case by test case straight into the file, with every value escaped.

use std::borrow::Borrow;
use std::io::{self, Write};

use crate::evidence::ProbeRecord;
use crate::evidence::status::RunStatus;

/// Escapes text for XML attributes and content (control characters other than tab/newline are dropped).
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn failure_message(probe: &ProbeRecord) -> String {
    let mut parts = Vec::new();
    match probe.http_status {
        Some(status) => parts.push(format!("HTTP {status}")),
        None => parts.push(probe.outcome.describe()),
    }
    parts.extend(probe.check_failures.iter().cloned());
    parts.join("; ")
}

/// Renders `junit.xml` for a run.
pub fn render(status: &RunStatus) -> String {
    let mut xml = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write(&mut xml, status);
    String::from_utf8_lossy(&xml).into_owned()
}

/// Writes `junit.xml` for a run to `out`, test case by test case.
pub fn write(out: impl Write, status: &RunStatus) -> io::Result<()> {
    let in_phase_order =
        || status.phases.iter().flat_map(|phase| status.probes_of(&phase.id)).map(Ok::<_, std::convert::Infallible>);
    write_results(out, status, in_phase_order)
}

/// Tests, failures and seconds of a group of test cases.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    /// Test cases.
    tests: usize,
    /// Test cases that are not Ready.
    failures: usize,
    /// Seconds of every case, summed in template order.
    seconds: f64,
}

impl Totals {
    fn add(&mut self, probe: &ProbeRecord) {
        self.tests += 1;
        self.failures += usize::from(!probe.ready);
        self.seconds += probe.timings.total_ms / 1000.0;
    }
}

/// Writes `junit.xml` from records produced in template order by `records` (called twice: once for the
/// counts each `<testsuite>` opens with, once for the cases), e.g. read back from the run's spool. A record
/// that cannot be produced stops the file with an error.
pub fn write_results<P, I, R, E>(mut out: impl Write, status: &RunStatus<P>, records: impl Fn() -> I) -> io::Result<()>
where
    I: Iterator<Item = Result<R, E>>,
    R: Borrow<ProbeRecord>,
    E: std::fmt::Display,
{
    let failed = |e: E| io::Error::other(e.to_string());
    let mut all = Totals::default();
    let mut phases = vec![Totals::default(); status.phases.len()];
    for record in records() {
        let record = record.map_err(failed)?;
        let probe = record.borrow();
        all.add(probe);
        if let Some(at) = status.phases.iter().position(|p| p.id == probe.phase) {
            phases[at].add(probe);
        }
    }
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
        xml_escape(&status.run_id),
        all.tests,
        all.failures,
        all.seconds
    )?;
    let mut cases = records().peekable();
    for (phase, totals) in status.phases.iter().zip(&phases) {
        writeln!(
            out,
            "  <testsuite name=\"Phase-{} {}\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
            xml_escape(&phase.id),
            xml_escape(&phase.name),
            totals.tests,
            totals.failures,
            totals.seconds,
            phase.started_at.format("%Y-%m-%dT%H:%M:%S")
        )?;
        while let Some(record) = cases.next_if(|r| r.as_ref().map_or(true, |r| r.borrow().phase == phase.id)) {
            test_case(&mut out, &status.template, &phase.id, record.map_err(failed)?.borrow())?;
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
}

/// One `<testcase>`, with its `<failure>` when the probe is not Ready.
fn test_case(out: &mut impl Write, template: &str, phase: &str, probe: &ProbeRecord) -> io::Result<()> {
    write!(
        out,
        "    <testcase classname=\"{}.Phase-{}\" name=\"{} {}\" time=\"{:.3}\"",
        xml_escape(template),
        xml_escape(phase),
        xml_escape(&probe.id),
        xml_escape(&probe.name),
        probe.timings.total_ms / 1000.0
    )?;
    if probe.ready {
        return writeln!(out, "/>");
    }
    let message = xml_escape(&failure_message(probe));
    writeln!(
        out,
        ">\n      <failure message=\"{message}\" type=\"{}\">{} {}: {message}</failure>\n    </testcase>",
        probe.outcome.kind(),
        xml_escape(&probe.method),
        xml_escape(&probe.url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_testcase_per_probe_and_a_failure_for_each_probe_not_ready() {
        let status = crate::evidence::status::sample_status();

        let xml = render(&status);

        assert_eq!(xml.matches("<testcase ").count(), status.probes.len());
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert!(xml.contains("type=\"tls_failure\""));
        assert!(!xml.contains("<name>"), "names are escaped");
    }

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(xml_escape("<a href=\"x\">&'\u{7}"), "&lt;a href=&quot;x&quot;&gt;&amp;&apos;");
    }
}
