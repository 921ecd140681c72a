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
    let row_at = after.find("| @Codex | 3/3 API Ready; PHR-07 404→200").expect("status row inserted");
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
