//! `--append`: entries go to the right place in a hand-written Markdown file; every other byte stays.

use std::path::Path;

use connrun::report::append::{Anchor, AppendOutcome, EntryKind, append_to_file, insert};

const HAND_WRITTEN: &str = "# ORCA 接続ログ\n\n## 1. 目的\n- 手書きの段落 | パイプ入り `code`\n\n## 日次ログ\n<!-- connrun:daily -->\n\n### RUN_ID=`20251118TphrLayerPrepZ1` — 旧エントリ\n- 旧い内容\n\n## ステータス\n| 日付 | 担当 | 主な変更 | 次アクション |\n| --- | --- | --- | --- |\n| 2025-11-18 | @OpsLead | 旧い行 | なし |\n\n## 7. 連絡先\n- @Codex (#server-modernized)";

#[test]
fn a_daily_entry_goes_after_the_marker_and_every_other_byte_is_kept() {
    // Arrange
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("log.md");
    std::fs::write(&file, HAND_WRITTEN).expect("write");
    let entry = "### RUN_ID=`20251119TorcaPHRSeqZ1` — 新エントリ\n- 新しい内容\n";

    // Act
    let outcome = append_to_file(&file, entry, &Anchor::Marker("<!-- connrun:daily -->".into()), EntryKind::Block)
        .expect("append");
    let again = append_to_file(&file, entry, &Anchor::Marker("<!-- connrun:daily -->".into()), EntryKind::Block)
        .expect("append twice");

    // Assert: the file is the original with the entry spliced in after the marker line, nothing else.
    assert_eq!((outcome, again), (AppendOutcome::Inserted, AppendOutcome::AlreadyPresent));
    let after = std::fs::read_to_string(&file).expect("read");
    let split = HAND_WRITTEN.find("<!-- connrun:daily -->\n").expect("marker") + "<!-- connrun:daily -->\n".len();
    let expected = format!("{}\n{entry}{}", &HAND_WRITTEN[..split], &HAND_WRITTEN[split..]);
    assert_eq!(after, expected);
    assert!(after.find("新エントリ") < after.find("旧エントリ"), "newest first");
}

#[test]
fn a_status_row_goes_to_the_top_of_the_table_under_its_heading() {
    // Arrange
    let row = "| 2025-11-19 | @Codex | PHR-06 405→200 | なし |\n";

    // Act
    let after =
        insert(HAND_WRITTEN, row, &Anchor::Heading("## ステータス".into()), EntryKind::TableRow, Path::new("x.md"))
            .expect("insert");

    // Assert
    let separator = "| --- | --- | --- | --- |\n";
    let split = HAND_WRITTEN.find(separator).expect("separator") + separator.len();
    assert_eq!(after, format!("{}{row}{}", &HAND_WRITTEN[..split], &HAND_WRITTEN[split..]));
}

#[test]
fn crlf_files_get_crlf_entries_and_keep_their_bytes() {
    // Arrange
    let original = HAND_WRITTEN.replace('\n', "\r\n");

    // Act
    let after = insert(
        &original,
        "### new\n- a\n",
        &Anchor::Heading("## 日次ログ".into()),
        EntryKind::Block,
        Path::new("x.md"),
    )
    .expect("insert");

    // Assert
    let split = original.find("## 日次ログ\r\n").expect("heading") + "## 日次ログ\r\n".len();
    assert_eq!(after, format!("{}\r\n### new\r\n- a\r\n{}", &original[..split], &original[split..]));
}

#[test]
fn a_missing_anchor_is_refused_naming_the_file_and_the_marker() {
    // Arrange / Act
    let error = insert(
        "# nothing here\n",
        "x\n",
        &Anchor::Marker("<!-- connrun:weekly -->".into()),
        EntryKind::Block,
        Path::new("docs/log.md"),
    )
    .expect_err("refused");

    // Assert
    let message = error.to_string();
    assert!(message.contains("docs/log.md") && message.contains("<!-- connrun:weekly -->"), "{message}");
}
