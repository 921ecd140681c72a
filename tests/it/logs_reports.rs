//! `connrun report daily|weekly|status-row` from real runs, printed and `--append`ed into a team log.

use crate::routine_support;

use routine_support::{connrun, phr_seq, phr_seq_variant, run_against, text};

use connrun::cli::demo::DemoEnvironment;

const TEAM_LOG: &str = "# 2025-11 ORCA 接続ログ\n\n## 1. 目的\n- 手書きの説明。\n\n## 2. 日次ログ\n<!-- connrun:daily -->\n\n### 旧エントリ\n- 手書き\n\n## 3. ステータス\n| 日付 | 担当 | 主な変更 | 次アクション |\n| --- | --- | --- | --- |\n| 2025-11-18 | @OpsLead | 手書きの行 | なし |\n\n## 7. 連絡先\n- @Codex (#server-modernized)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_status_row_and_weekly_come_from_the_runs_and_append_in_place() {
    // Arrange: a run with PHR-07 at 404, then a healthy one (PHR-07 moves 404 → 200).
    let artifacts = tempfile::tempdir().expect("temp dir");
    let variants = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let broken = phr_seq_variant(
        variants.path(),
        &[("path = \"{{phr_base}}/image/{{patient}}\"", "path = \"{{phr_base}}/image/P9999\"")],
    );
    run_against(&environment, artifacts.path(), &broken).await;
    let run = run_against(&environment, artifacts.path(), &phr_seq()).await;
    environment.stop().await;
    let id = run.status.run_id.as_str();
    let log = artifacts.path().join("team-log.md");
    std::fs::write(&log, TEAM_LOG).expect("team log");
    let log_arg = log.to_str().expect("utf-8 path");

    // Act
    let daily =
        connrun(artifacts.path(), &["report", "daily", id, "--contact", "PHR 実装: @Codex (#server-modernized)"]);
    let appended = connrun(artifacts.path(), &["report", "daily", id, "--append", log_arg]);
    let row = connrun(
        artifacts.path(),
        &["report", "status-row", id, "--who", "@Codex", "--append", log_arg, "--under", "## 3. ステータス"],
    );
    let weekly = connrun(artifacts.path(), &["--json", "report", "weekly", "--template", "phr-seq"]);

    // Assert: the daily entry reads like the team's log.
    assert_eq!(daily.status.code(), Some(0), "{}", text(&daily));
    let entry = String::from_utf8_lossy(&daily.stdout);
    for needle in [
        format!("### RUN_ID=`{id}`"),
        "PHR-07 404→200".to_owned(),
        "| API | HTTP | メモ | 証跡 |".to_owned(),
        format!("`artifacts/orca-connectivity/{id}/httpdump/PHR-07/`"),
        "#### 調査".to_owned(),
        "#### 連絡先".to_owned(),
        "- PHR 実装: @Codex (#server-modernized)".to_owned(),
    ] {
        assert!(entry.contains(&needle), "missing {needle:?} in\n{entry}");
    }
    // Assert: --append inserted both pieces and left every hand-written byte in place.
    assert_eq!((appended.status.code(), row.status.code()), (Some(0), Some(0)), "{}{}", text(&appended), text(&row));
    let after = std::fs::read_to_string(&log).expect("read log");
    let daily_at = after.find(&format!("### RUN_ID=`{id}`")).expect("daily entry inserted");
    let row_at = after
        .find("| @Codex | 3/3 API Ready、監査 採取済み（期待どおり）; PHR-07 404→200")
        .expect("status row inserted");
    assert!(
        daily_at > after.find("<!-- connrun:daily -->").expect("marker")
            && daily_at < after.find("### 旧エントリ").expect("old")
    );
    assert!(
        row_at > after.find("| --- | --- | --- | --- |").expect("table")
            && row_at < after.find("手書きの行").expect("row")
    );
    let mut rest = after.clone();
    let daily_end = rest[daily_at..].find("\n\n### 旧エントリ").map(|i| daily_at + i + 1).expect("entry end");
    rest.replace_range(daily_at - 1..daily_end, "");
    let row_start = rest.find("| 20").expect("row start");
    let row_end = row_start + rest[row_start..].find('\n').expect("row end") + 1;
    rest.replace_range(row_start..row_end, "");
    assert_eq!(rest, TEAM_LOG, "only the two entries were added");
    // Assert: the weekly summary lists both runs, newest first, and the move.
    let json: serde_json::Value = serde_json::from_slice(&weekly.stdout).expect("weekly --json");
    assert_eq!(json["runs"][0]["run_id"], id);
    assert_eq!(json["runs"].as_array().expect("runs").len(), 2);
    assert_eq!(json["moves"][0]["probe"], "PHR-07");
}

/// The demo's targets file without its `[audit]` section, with an owner and a contact, beside the original
/// (its relative paths resolve against the same folder).
fn targets_without_audit(environment: &DemoEnvironment) -> std::path::PathBuf {
    let original = std::fs::read_to_string(environment.targets_file()).expect("demo targets");
    let audit = original.find("[targets.demo.audit]").expect("the demo target has an [audit] section");
    let text = original[..audit].replacen(
        "[targets.demo]\n",
        "[targets.demo]\nowner = \"@OpsLead\"\ncontacts = [\"PHR 実装: @Codex (#server-modernized)\"]\n",
        1,
    );
    let path = environment.targets_file().with_file_name("targets-no-audit.toml");
    std::fs::write(&path, text).expect("write targets");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_an_audit_database_says_not_collected_on_every_page() {
    // Arrange: a healthy run of a target that has no [audit] section.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let targets = targets_without_audit(&environment);
    let run_templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates");
    let (targets_arg, templates_arg) = (targets.to_str().expect("utf-8"), run_templates.to_str().expect("utf-8"));
    let run = connrun(
        artifacts.path(),
        &[
            "--json",
            "--targets",
            targets_arg,
            "--run-templates",
            templates_arg,
            "run",
            "--template",
            "phr-seq",
            "--target",
            "demo",
        ],
    );
    environment.stop().await;
    assert_eq!(run.status.code(), Some(0), "not configured is shown, not failed: {}", text(&run));
    let result: serde_json::Value = serde_json::from_slice(&run.stdout).expect("run --json");
    let id = result["run_id"].as_str().expect("run id").to_owned();
    let dir = std::path::PathBuf::from(result["evidence"].as_str().expect("evidence"));
    let html_path = artifacts.path().join("report.html");

    // Act
    let history = connrun(artifacts.path(), &["history"]);
    let weekly = connrun(artifacts.path(), &["report", "weekly", "--template", "phr-seq"]);
    let daily = connrun(artifacts.path(), &["report", "daily", &id]);
    let row = connrun(artifacts.path(), &["report", "status-row", &id, "--who", "@OpsLead"]);
    let html = connrun(artifacts.path(), &["report", "html", &id, "--output", html_path.to_str().expect("utf-8")]);

    // Assert: every page says 未採取 and none says OK, 採取済み or the confirmation.
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    let pages = [
        ("history", String::from_utf8_lossy(&history.stdout).into_owned()),
        ("weekly", String::from_utf8_lossy(&weekly.stdout).into_owned()),
        ("daily", String::from_utf8_lossy(&daily.stdout).into_owned()),
        ("status-row", String::from_utf8_lossy(&row.stdout).into_owned()),
        ("html", std::fs::read_to_string(&html_path).unwrap_or_else(|_| text(&html))),
        ("README", read("README.md")),
        ("summary", read("logs/summary.md")),
        ("container summary", read("logs/phr_container_summary.md")),
        ("open items", read("todo/PHR_OPEN_ITEMS.md")),
    ];
    for (page, body) in &pages {
        assert!(body.contains("未採取"), "{page} does not say 未採取:\n{body}");
        for claim in ["監査 OK", "| OK |", "採取済み", "期待した監査アクションを全て確認", "監査アクション確認済み"]
        {
            assert!(!body.contains(claim), "{page} says {claim:?} for an audit nobody collected:\n{body}");
        }
    }
    let daily = &pages[2].1;
    assert!(daily.contains("- 監査（d_audit_event）: 未採取（監査 DB 未設定）"), "{daily}");
    assert!(!daily.lines().any(|l| l.starts_with("- 実施内容") && l.contains("採取")), "{daily}");
    // Assert: the owner and contact of the target reach the memo.
    let summary = &pages[6].1;
    assert!(summary.contains("Owner: @OpsLead, Deadline: ") && summary.contains("- PHR 実装: @Codex"), "{summary}");
}

#[test]
fn a_run_whose_server_and_audit_database_are_down_reads_as_failed_not_as_zero_rows() {
    // Arrange: ports that refuse connections for the server and for the audit database.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let refused = || {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        (socket.local_addr().expect("addr").port(), socket)
    };
    let ((server_port, _server), (audit_port, _audit)) = (refused(), refused());
    let ca = devpki::Authority::new("logs-reports-red").expect("CA");
    std::fs::write(artifacts.path().join("ca.pem"), ca.cert_pem()).expect("write CA");
    let targets = artifacts.path().join("targets.toml");
    std::fs::write(
        &targets,
        format!(
            "[targets.t]\nbase_url = \"https://127.0.0.1:{server_port}\"\ntimeout_seconds = 5\n\
             [targets.t.tls]\nca_bundle = \"ca.pem\"\n\
             [targets.t.audit]\nurl = \"postgres://postgres@127.0.0.1:{audit_port}/audit\"\n"
        ),
    )
    .expect("write targets");
    let run_templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates");

    // Act
    let run = connrun(
        artifacts.path(),
        &[
            "--json",
            "--targets",
            targets.to_str().expect("utf-8"),
            "--run-templates",
            run_templates.to_str().expect("utf-8"),
            "run",
            "--template",
            "phr-seq",
            "--target",
            "t",
        ],
    );

    // Assert: a problem (exit 1) whose documents say 採取失敗 with the reason, never 0 rows, never audit/sql/.
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let result: serde_json::Value = serde_json::from_slice(&run.stdout).expect("run --json");
    let dir = std::path::PathBuf::from(result["evidence"].as_str().expect("evidence"));
    assert!(!dir.join("audit/sql").exists(), "no query ran, so no SQL evidence exists");
    for name in ["README.md", "logs/summary.md", "logs/phr_container_summary.md", "todo/PHR_OPEN_ITEMS.md"] {
        let body = std::fs::read_to_string(dir.join(name)).expect(name);
        assert!(body.contains("採取失敗"), "{name} does not say 採取失敗:\n{body}");
        assert!(!body.contains("0 rows") && !body.contains("audit/sql"), "{name}:\n{body}");
        assert!(!body.contains("期待した監査アクションを全て確認"), "{name}:\n{body}");
    }
    let container = std::fs::read_to_string(dir.join("logs/phr_container_summary.md")).expect("container summary");
    let section = &container[container.find("## 監査").expect("audit section")..];
    assert!(section.contains(&format!("127.0.0.1:{audit_port}")), "the reason names the database:\n{section}");
}
