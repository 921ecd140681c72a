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
    assert!(summary.contains("`artifacts/orca-connectivity/20251119TorcaPHRSeqZ1/httpdump/PHR-06/`"), "{summary}");
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

/// The documents a person pastes into `docs/…/logs/*.md` (the README stays with its folder).
const PASTED: [&str; 3] = ["logs/summary.md", "logs/phr_container_summary.md", "todo/PHR_OPEN_ITEMS.md"];

#[test]
fn pasted_markdown_points_at_evidence_from_the_repository_root() {
    let reports = Reports::load(None).expect("embedded templates");

    let documents = reports.render_all(&sample_status()).expect("render");

    for (path, text) in documents.iter().filter(|(p, _)| PASTED.contains(p)) {
        assert!(!text.contains("](../") && !text.contains("](httpdump"), "{path} has a relative link:\n{text}");
        // Every evidence path in a code span starts at the repository root.
        for span in text.split('`').skip(1).step_by(2) {
            let names_evidence = ["httpdump/", "trace/", "serverinfo/", "audit/"].iter().any(|d| span.contains(d));
            if names_evidence && !span.contains(' ') {
                assert!(span.starts_with("artifacts/orca-connectivity/20251119TorcaPHRSeqZ1/"), "{path}: `{span}`");
            }
        }
    }
}

#[test]
fn generated_sentences_are_japanese_and_times_are_written_once_in_jst() {
    let mut status = sample_status();
    status.probes[0].ready = false;
    status.probes[0].http_status = Some(401);
    status.probes[1].check_failures.clear();
    status.probes[1].outcome = connrun::evidence::Outcome::ConnectionRefused { message: "os error 111".to_owned() };
    let reports = Reports::load(None).expect("embedded templates");

    let documents = reports.render_all(&status).expect("render");

    for (path, text) in documents.iter().filter(|(p, _)| PASTED.contains(p)) {
        for english in ["is not a Ready status", "connection refused:", "audit:", "expected", "UTC", "not ready"] {
            assert!(!text.contains(english), "{path} contains {english:?}:\n{text}");
        }
    }
    let (_, summary) = documents.iter().find(|(p, _)| *p == "logs/summary.md").expect("summary");
    for needle in [
        "## 1. 目的",
        "## 6. Pending / 解除条件",
        "| 項目 | 状態 | 解除条件 / 期限 |",
        "Pending（HTTP 401 認証失敗）",
        "Basic 認証情報の確認",
        "接続が拒否された（os error 111）",
        "## 7. 次アクション",
        "（Owner: 未設定, Deadline: 1970-01-02 10:00 JST）",
        "## 8. 連絡先",
        "- 実施: 1970-01-01 09:00 JST 〜 1970-01-01 09:00 JST",
    ] {
        assert!(summary.contains(needle), "missing {needle:?} in:\n{summary}");
    }
}

#[test]
fn a_failed_serverinfo_row_reads_as_a_sentence() {
    let mut status = sample_status();
    if let Some(serverinfo) = status.serverinfo.as_mut() {
        serverinfo.ready = false;
        serverinfo.http_status = None;
        serverinfo.outcome = connrun::evidence::Outcome::Timeout { during: "connect".to_owned() };
    }
    let reports = Reports::load(None).expect("embedded templates");

    let documents = reports.render_all(&status).expect("render");

    let (_, container) = documents.iter().find(|(p, _)| *p == "logs/phr_container_summary.md").expect("document");
    let row = container.lines().find(|l| l.starts_with("| ServerInfo")).expect("server-info row");
    assert!(row.contains("| 000 | ServerInfo（GET /openDolphin/resources/20/adm/phr/serverinfo）は応答なし: TCP 接続中にタイムアウト。 |"), "{row}");
}

#[test]
fn the_html_report_shows_the_audit_state_counts_and_findings_in_japanese() {
    let views = connrun::report::views::Views::load(None).expect("views");
    let status = sample_status();

    let html = connrun::report::html::render(
        &views,
        &status,
        &[connrun::report::html::RunLatency::of(&status)],
        Default::default(),
    )
    .expect("html");

    for needle in [
        "<h2>監査（d_audit_event）: 採取済み</h2>",
        "data-state=\"collected\"",
        "<table id=\"audit\">",
        "<td>PHR_LAYER_ID_TOKEN_ISSUE</td>",
        "所見: Phase-C PHR_LAYER_ID_TOKEN_ISSUE（success）: 期待 2 行に対し 1 行（不足）",
        "<h2>プローブ</h2>",
        "TLS ハンドシェイクに失敗（unknown CA）",
        "1970-01-01 09:00 JST",
    ] {
        assert!(html.contains(needle), "missing {needle:?}");
    }
    for english in ["Timings waterfall", "<h2>Probes</h2>", "TLS failure:", "UTC"] {
        assert!(!html.contains(english), "the page still says {english:?}");
    }
}

/// `connrun templates check --templates-dir DIR`.
fn templates_check(dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_connrun"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["templates", "check", "--templates-dir"])
        .arg(dir)
        .env_remove("CONNRUN_TEMPLATES_DIR")
        .output()
        .expect("connrun runs")
}

#[test]
fn templates_check_renders_every_override_and_refuses_a_broken_daily_entry() {
    let overrides = tempfile::tempdir().expect("temp dir");
    std::fs::write(overrides.path().join("daily.md.tera"), "### {{ run_id }} {{ no_such.field }}\n").expect("write");

    let output = templates_check(overrides.path());

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let line = stdout.lines().find(|l| l.contains("daily.md.tera")).expect("a line for daily.md.tera");
    assert!(line.starts_with("FAIL") && line.contains("override"), "{line}");
    assert!(stdout.contains("ok   template weekly.md.tera (built-in)"), "{stdout}");
}

#[test]
fn templates_check_names_a_misspelt_override_and_lists_the_known_names() {
    let overrides = tempfile::tempdir().expect("temp dir");
    std::fs::write(overrides.path().join("summery.md.tera"), "custom {{ run.run_id }}\n").expect("write");

    let output = templates_check(overrides.path());

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let line = stdout.lines().find(|l| l.contains("summery.md.tera")).expect("a line for the misspelt file");
    assert!(line.starts_with("FAIL") && line.contains("summary.md.tera") && line.contains("daily.md.tera"), "{line}");
}
