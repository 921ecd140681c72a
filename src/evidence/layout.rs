//! Where every file of a run folder lives: the one place a path of HARNESS.md §4 is spelled.
//!
//! The probe engine, the orchestrator, the Markdown and the comparison commands all name evidence files;
//! when each spelled its own paths they could drift apart (a report linking `httpdump/X/` while the engine
//! wrote elsewhere). They now ask [`EvidenceLayout`], and a unit test below pins the layout to the spec.

/// The evidence tree of one run, relative to its folder `artifacts/<suite>/<RUN_ID>/`.
#[derive(Debug, Clone, Copy)]
pub struct EvidenceLayout;

impl EvidenceLayout {
    /// What was run, when, against what, the outcome (rendered).
    pub const README: &'static str = "README.md";
    /// The resolved plan, secrets given by reference, tool version.
    pub const RUN_TOML: &'static str = "run.toml";
    /// Every probe's machine-readable result: the input of diff and reports.
    pub const STATUS: &'static str = "status.json";
    /// The preflight checks' results.
    pub const PREFLIGHT: &'static str = "preflight.json";
    /// Size and SHA-256 of every other file but [`Self::SEAL_STAT`]; written last but for that file's last line.
    pub const MANIFEST: &'static str = "manifest.json";
    /// Each file's stat as it was hashed at the seal (`seal_stat.rs`): a cache beside the manifest, not in it.
    pub const SEAL_STAT: &'static str = "manifest.stat";
    /// Which template a reserved (not yet run) RUN_ID was reserved for.
    pub const RESERVATION: &'static str = "reservation.json";
    /// Taken with `create_new` when a run starts, so a RUN_ID runs at most once.
    pub const STARTED_MARKER: &'static str = ".started";
    /// Finished probe records, one JSON line each, while the run is written (`spool.rs`); removed at the seal.
    pub const PROBE_SPOOL: &'static str = ".probes.ndjson";
    /// The server-info probe's dump folder.
    pub const SERVERINFO_DIR: &'static str = "serverinfo";
    /// Parent of every probe's dump folder.
    pub const HTTPDUMP_DIR: &'static str = "httpdump";
    /// Parent of every probe's trace log.
    pub const TRACE_DIR: &'static str = "trace";
    /// HAR 1.2 of all probes.
    pub const HAR: &'static str = "har/run.har";
    /// Per action: before, after, delta, expected.
    pub const AUDIT_COUNTS: &'static str = "audit/counts.json";
    /// The audit chain proof (HARNESS.md §6): segment, checkpoint, verdict.
    pub const AUDIT_CHAIN: &'static str = "audit/chain.json";
    /// Parent of the audit queries' evidence.
    pub const AUDIT_SQL_DIR: &'static str = "audit/sql";
    /// The run's structured log (JSON lines, one gzip member per event).
    pub const EVENT_LOG: &'static str = "logs/run.ndjson.gz";
    /// One line per probe.
    pub const CURL_SUMMARY: &'static str = "logs/curl_summary.log";
    /// The run memo.
    pub const SUMMARY: &'static str = "logs/summary.md";
    /// The Phase-C/D/E table with the audit section.
    pub const CONTAINER_SUMMARY: &'static str = "logs/phr_container_summary.md";
    /// Open items with checkboxes.
    pub const OPEN_ITEMS: &'static str = "todo/PHR_OPEN_ITEMS.md";
    /// One test case per probe, for CI systems.
    pub const JUNIT: &'static str = "junit.xml";
    /// A parity run's comparison (machine-readable).
    pub const PARITY_JSON: &'static str = "parity.json";
    /// A parity run's comparison (Markdown).
    pub const PARITY_MD: &'static str = "parity.md";
    /// In a probe's dump folder: `key=value` facts about the probe.
    pub const STATUS_TXT: &'static str = "status.txt";
    /// In a probe's dump folder: the same request as one curl command, secrets by reference.
    pub const CURL_SH: &'static str = "curl.sh";
    /// In a probe's dump folder: the response body (`.gz` appended when compressed).
    pub const RESPONSE_BODY: &'static str = "response.body";

    /// The suite folder of `connrun demo` runs (`artifacts/demo/`), kept apart from every real suite so a
    /// demo never takes a real RUN_ID's label sequence nor shows up in history, weekly or `diff --latest`.
    pub const DEMO_SUITE: &'static str = "demo";
    /// Appended to a template's label for demo RUN_IDs (`20251119TorcaPHRSeqDemoZ1`).
    pub const DEMO_LABEL_SUFFIX: &'static str = "Demo";

    /// `weekly/<RUN_ID>.json`, beside the sealed run in its suite folder: what `connrun weekly` did around
    /// the run (each step's exit code, the notice), written after the run was sealed.
    pub fn weekly_record(run_id: &str) -> String {
        format!("weekly/{run_id}.json")
    }

    /// `matrix/<stamp>/`, in the suite folder: one run of a template against several targets, a matrix of
    /// targets × probes linking to each target's own run (`matrix.md`, `matrix.html`). Never inside a run
    /// folder (each run is sealed on its own) and never overwritten (a taken stamp gets `-2`, `-3`, …).
    pub fn matrix_dir(stamp: &str) -> String {
        format!("matrix/{stamp}")
    }

    /// The matrix in Markdown, inside [`EvidenceLayout::matrix_dir`].
    pub const MATRIX_MD: &'static str = "matrix.md";
    /// The matrix as one self-contained HTML file, beside [`EvidenceLayout::MATRIX_MD`].
    pub const MATRIX_HTML: &'static str = "matrix.html";

    /// `httpdump/<probe>`: one probe's dump folder (the id already file-safe).
    pub fn probe_dump(probe: &str) -> String {
        format!("{}/{probe}", Self::HTTPDUMP_DIR)
    }

    /// `trace/<probe>_trace.log`.
    pub fn trace(probe: &str) -> String {
        format!("{}/{probe}_trace.log", Self::TRACE_DIR)
    }

    /// `audit/sql/<name>.sql`.
    pub fn audit_sql(name: &str) -> String {
        format!("{}/{name}.sql", Self::AUDIT_SQL_DIR)
    }

    /// Where a probe's dump is linked from the Markdown: `serverinfo/` or `httpdump/<probe>/`.
    pub fn dump_link(probe: &str, is_serverinfo: bool) -> String {
        if is_serverinfo { format!("{}/", Self::SERVERINFO_DIR) } else { format!("{}/", Self::probe_dump(probe)) }
    }
}

#[cfg(test)]
mod tests {
    use super::EvidenceLayout as L;

    /// HARNESS.md §4, as the spec lists it.
    #[test]
    fn layout_matches_harness_section_4() {
        let spec = [
            L::README,
            L::RUN_TOML,
            L::STATUS,
            L::MANIFEST,
            L::HAR,
            L::AUDIT_COUNTS,
            L::EVENT_LOG,
            L::CURL_SUMMARY,
            L::SUMMARY,
            L::CONTAINER_SUMMARY,
            L::JUNIT,
            L::OPEN_ITEMS,
        ];
        assert_eq!(
            spec,
            [
                "README.md",
                "run.toml",
                "status.json",
                "manifest.json",
                "har/run.har",
                "audit/counts.json",
                "logs/run.ndjson.gz",
                "logs/curl_summary.log",
                "logs/summary.md",
                "logs/phr_container_summary.md",
                "junit.xml",
                "todo/PHR_OPEN_ITEMS.md",
            ]
        );
        assert_eq!(L::probe_dump("PHR-06"), "httpdump/PHR-06");
        assert_eq!(L::trace("PHR-06"), "trace/PHR-06_trace.log");
        assert_eq!(L::audit_sql("Q"), "audit/sql/Q.sql");
        assert_eq!(L::dump_link("serverinfo", true), "serverinfo/");
    }
}
