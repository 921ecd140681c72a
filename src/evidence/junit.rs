//! `junit.xml`: one test case per probe, grouped by phase, so CI systems can show a run's result.
//!
//! A probe that is not Ready is a `<failure>` with its outcome and check failures as the message; the XML is
//! written by hand, test case by test case straight into the file, with every value escaped.

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
pub fn write(mut out: impl Write, status: &RunStatus) -> io::Result<()> {
    let failures = status.probes.iter().filter(|p| !p.ready).count();
    let total_seconds: f64 = status.probes.iter().map(|p| p.timings.total_ms / 1000.0).sum();
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{total_seconds:.3}\">",
        xml_escape(&status.run_id),
        status.probes.len()
    )?;
    for phase in &status.phases {
        let probes: Vec<&ProbeRecord> = status.probes_of(&phase.id).collect();
        let phase_failures = probes.iter().filter(|p| !p.ready).count();
        let phase_seconds: f64 = probes.iter().map(|p| p.timings.total_ms / 1000.0).sum();
        writeln!(
            out,
            "  <testsuite name=\"Phase-{} {}\" tests=\"{}\" failures=\"{phase_failures}\" errors=\"0\" time=\"{phase_seconds:.3}\" timestamp=\"{}\">",
            xml_escape(&phase.id),
            xml_escape(&phase.name),
            probes.len(),
            phase.started_at.format("%Y-%m-%dT%H:%M:%S")
        )?;
        for probe in probes {
            write!(
                out,
                "    <testcase classname=\"{}.Phase-{}\" name=\"{} {}\" time=\"{:.3}\"",
                xml_escape(&status.template),
                xml_escape(&phase.id),
                xml_escape(&probe.id),
                xml_escape(&probe.name),
                probe.timings.total_ms / 1000.0
            )?;
            if probe.ready {
                writeln!(out, "/>")?;
            } else {
                let message = xml_escape(&failure_message(probe));
                writeln!(
                    out,
                    ">\n      <failure message=\"{message}\" type=\"{}\">{} {}: {message}</failure>\n    </testcase>",
                    probe.outcome.kind(),
                    xml_escape(&probe.method),
                    xml_escape(&probe.url)
                )?;
            }
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
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
