//! Markdown rendering: hostile network text cannot break tables or inject HTML, overrides replace templates.

use connrun::evidence::status::sample_status;
use connrun::report::{Reports, escape_markdown};

/// Counts `|` not preceded by a backslash: the cell separators of a Markdown table row.
fn separators(row: &str) -> usize {
    let bytes = row.as_bytes();
    (0..bytes.len()).filter(|&i| bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\')).count()
}

fn hostile_status() -> connrun::evidence::status::RunStatus {
    let mut status = sample_status();
    status.serverinfo_body = Some("srv|x\n<script>alert(1)</script>`code`".to_owned());
    status.probes[1].check_failures = vec!["a|b\nc<img src=x onerror=alert(1)>".to_owned()];
    status
}

#[test]
fn every_table_row_keeps_its_column_count() {
    let reports = Reports::load(None).expect("embedded templates");

    let documents = reports.render_all(&hostile_status()).expect("render");

    for (path, text) in documents.iter().filter(|(p, _)| p.ends_with(".md")) {
        let mut expected = None;
        for line in text.lines() {
            if line.starts_with('|') {
                let count = separators(line);
                let expected = *expected.get_or_insert(count);
                assert_eq!(count, expected, "{path}: row has a different column count: {line}");
            } else {
                expected = None;
            }
        }
    }
}

#[test]
fn no_raw_html_from_the_network_reaches_markdown() {
    let reports = Reports::load(None).expect("embedded templates");

    let documents = reports.render_all(&hostile_status()).expect("render");

    for (path, text) in &documents {
        if path.ends_with(".md") {
            assert!(!text.contains("<script>"), "{path} contains a raw <script>");
            assert!(!text.contains("<img"), "{path} contains a raw <img>");
        }
    }
}

#[test]
fn the_container_summary_has_the_seed_log_table_and_evidence_links() {
    let reports = Reports::load(None).expect("embedded templates");

    let documents = reports.render_all(&sample_status()).expect("render");

    let (_, summary) = documents.iter().find(|(p, _)| *p == "logs/phr_container_summary.md").expect("document");
    assert!(summary.contains("| API | HTTP | メモ | 証跡 |"));
    assert!(summary.contains("[httpdump](../httpdump/PHR-06/)"));
    assert!(summary.contains("## 監査"));
    let (_, todo) = documents.iter().find(|(p, _)| *p == "todo/PHR_OPEN_ITEMS.md").expect("document");
    assert!(todo.contains("- [ ] PHR-07"), "{todo}");
    let (_, curl) = documents.iter().find(|(p, _)| *p == "logs/curl_summary.log").expect("document");
    assert!(curl.lines().any(|l| l.starts_with("PHR-06 ") && l.contains(": HTTP 200 (")), "{curl}");
    assert!(curl.lines().any(|l| l.starts_with("PHR-07 ") && l.contains(": HTTP 000 (")), "{curl}");
}

#[test]
fn a_templates_dir_file_replaces_the_embedded_one() {
    let overrides = tempfile::tempdir().expect("temp dir");
    std::fs::write(overrides.path().join("summary.md.tera"), "custom {{ run.run_id }}\n").expect("write");

    let reports = Reports::load(Some(overrides.path())).expect("templates");
    let documents = reports.render_all(&sample_status()).expect("render");

    let (_, summary) = documents.iter().find(|(p, _)| *p == "logs/summary.md").expect("document");
    assert_eq!(summary, "custom 20251119TorcaPHRSeqZ1\n");
}

#[test]
fn a_broken_override_is_reported_with_its_name() {
    let overrides = tempfile::tempdir().expect("temp dir");
    std::fs::write(overrides.path().join("README.md.tera"), "{% if %}").expect("write");

    let error = Reports::load(Some(overrides.path())).expect_err("must fail");

    assert!(error.to_string().contains("README.md.tera"), "{error}");
}

#[test]
fn escaping_covers_pipes_newlines_backticks_and_html() {
    assert_eq!(escape_markdown("a|b"), "a\\|b");
    assert_eq!(escape_markdown("a\nb"), "a<br>b");
    assert_eq!(escape_markdown("`rm -rf`"), "\\`rm -rf\\`");
    assert_eq!(escape_markdown("<b>x</b>"), "&lt;b&gt;x&lt;/b&gt;");
}
