//! The routine commands on a parity run's RUN_ID: each works on it or refuses it with a sentence, never with an
//! OS "No such file or directory". `archive` and `verify` take the parity run whole; `diff` and `report` take
//! one side as `<RUN_ID>/<target>` and refuse the bare RUN_ID naming its sides.

use std::path::{Path, PathBuf};

use crate::routine_support;

use routine_support::{connrun, text};

use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};

/// A targets file next to the demo's with two targets, `left` and `right`, both the demo server.
fn two_targets(environment: &DemoEnvironment) -> PathBuf {
    let original = environment.targets_file();
    let text = std::fs::read_to_string(original).expect("demo targets");
    let from = format!("[targets.{DEMO_TARGET}");
    assert!(text.contains(&from), "the demo targets file no longer names its target {DEMO_TARGET}");
    let both = text.replace(&from, "[targets.left") + &text.replace(&from, "[targets.right");
    let path = original.with_file_name("targets-parity.toml");
    std::fs::write(&path, both).expect("write targets");
    path
}

/// Runs `connrun parity` with phr-seq against `left` and `right`; returns the parity run's folder.
fn parity_run(artifacts: &Path, targets: &Path) -> PathBuf {
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates");
    let args = [
        "--targets",
        targets.to_str().expect("utf-8"),
        "--run-templates",
        templates.to_str().expect("utf-8"),
        "--json",
        "--tz",
        "Etc/GMT-14",
        "parity",
        "--target",
        "left",
        "--target",
        "right",
        "--template",
        "phr-seq",
    ];
    let output = connrun(artifacts, &args);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("parity --json");
    PathBuf::from(json["evidence"].as_str().expect("evidence"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_routine_command_works_on_a_parity_run_or_refuses_it_with_a_sentence() {
    // Arrange
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let targets = two_targets(&environment);
    let parity = tokio::task::block_in_place(|| parity_run(artifacts.path(), &targets));
    environment.stop().await;
    let id = parity.file_name().expect("name").to_string_lossy().into_owned();
    // The parity RUN_ID is dated in the operator's zone (`--tz`, here UTC+14), like `connrun new`.
    let zone: chrono_tz::Tz = "Etc/GMT-14".parse().expect("zone");
    let today = chrono::Utc::now().with_timezone(&zone).format("%Y%m%d").to_string();
    assert!(id.starts_with(&today), "{id} is not dated {today} (UTC+14)");
    let (left, right) = (format!("{id}/left"), format!("{id}/right"));
    let archive = artifacts.path().join("parity.tar.gz");
    let archive_arg = archive.to_str().expect("utf-8");

    // Act
    let packed = connrun(artifacts.path(), &["archive", &id, "--output", archive_arg]);
    let unpacked_verify = connrun(artifacts.path(), &["verify", archive_arg]);
    let whole_diff = connrun(artifacts.path(), &["diff", &id, &id]);
    let whole_daily = connrun(artifacts.path(), &["report", "daily", &id]);
    let side_daily = connrun(artifacts.path(), &["report", "daily", &left]);
    let side_html = connrun(artifacts.path(), &["report", "html", &left]);
    let sides_refused = connrun(artifacts.path(), &["diff", &left, &right]);
    let sides_allowed = connrun(
        artifacts.path(),
        &["--json", "diff", &left, &right, "--allow-mismatch", "--latency-min-ms", "3600000"],
    );
    let no_side = connrun(artifacts.path(), &["diff", &format!("{id}/elsewhere"), &left]);
    let side_archive = connrun(artifacts.path(), &["archive", &left]);
    let verified = connrun(artifacts.path(), &["verify", &id]);

    // Assert: archive packs the parity run whole, and the archive verifies.
    assert_eq!(packed.status.code(), Some(0), "{}", text(&packed));
    assert_eq!(unpacked_verify.status.code(), Some(0), "{}", text(&unpacked_verify));
    // Assert: the bare parity RUN_ID is refused by diff and report with a sentence naming the sides.
    let sentence = format!("{id} is a parity run of targets left and right; give one side as {left} or {right}");
    for refused in [&whole_diff, &whole_daily] {
        assert_eq!(refused.status.code(), Some(2), "{}", text(refused));
        assert!(text(refused).contains(&sentence), "{}", text(refused));
        assert!(!text(refused).contains("No such file"), "{}", text(refused));
    }
    // Assert: one side is a run like any other.
    assert_eq!(side_daily.status.code(), Some(0), "{}", text(&side_daily));
    let daily = String::from_utf8_lossy(&side_daily.stdout);
    assert!(daily.contains(&format!("`artifacts/orca-connectivity/{left}/httpdump/PHR-06/`")), "{daily}");
    assert!(parity.join("left/httpdump/PHR-06").is_dir(), "the daily entry links the side's own evidence");
    assert_eq!(side_html.status.code(), Some(0), "{}", text(&side_html));
    assert!(parity.with_file_name(format!("{id}-left.html")).is_file(), "{}", text(&side_html));
    // Assert: the two sides are different targets: refused unless asked, then compared.
    assert_eq!(sides_refused.status.code(), Some(2), "{}", text(&sides_refused));
    let refusal = text(&sides_refused);
    assert!(refusal.contains(&format!("{left} is a run of template phr-seq against target left")), "{refusal}");
    assert!(refusal.contains("--allow-mismatch"), "{refusal}");
    let json: serde_json::Value = serde_json::from_slice(&sides_allowed.stdout).expect("diff --json");
    assert_eq!((json["before"]["target"].as_str(), json["after"]["target"].as_str()), (Some("left"), Some("right")));
    // Assert: a side that does not exist and a side given to archive are sentences too.
    assert_eq!(no_side.status.code(), Some(2), "{}", text(&no_side));
    assert!(text(&no_side).contains(&format!("parity run {id} has no side `elsewhere`")), "{}", text(&no_side));
    assert_eq!(side_archive.status.code(), Some(2), "{}", text(&side_archive));
    assert!(text(&side_archive).contains(&format!("give {id}")), "{}", text(&side_archive));
    // Assert: nothing above wrote inside the sealed parity folder.
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
}
