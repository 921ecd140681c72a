//! The Markdown of a real phr-seq run against phr-server, compared with golden files after filtering what
//! changes from run to run (RUN_ID, date, times, port, milliseconds). `UPDATE_SNAPSHOTS=1` rewrites them.

use std::path::Path;

use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};
use connrun::evidence::{self, RunFolder};
use connrun::plan::Plan;
use connrun::plan::target::Targets;
use connrun::plan::template::Template;
use connrun::report::Reports;
use connrun::run::{self, RunOptions};

/// Replaces the digits that follow `marker` (up to the next non-digit) with `placeholder`.
fn mask_number_after(text: &str, marker: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        let digits = rest[after..].find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len() - after);
        out.push_str(if digits > 0 { placeholder } else { "" });
        rest = &rest[after + digits..];
    }
    out.push_str(rest);
    out
}

/// Masks durations written as ` 12 ms` (the number before the unit).
fn mask_milliseconds(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" ms") {
        let digits_start = rest[..at].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |p| p + 1);
        let is_number = digits_start < at && rest[..digits_start].ends_with(' ');
        out.push_str(if is_number { &rest[..digits_start] } else { &rest[..at] });
        out.push_str(if is_number { "N ms" } else { " ms" });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

/// Replaces the `YYYY-MM-DD HH:MM JST` after each `marker` (a deadline that moves with the day of the run).
fn mask_moment_after(text: &str, marker: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        let moment: String = rest[after..].chars().take("2025-11-19 09:30 JST".chars().count()).collect();
        out.push_str("<MOMENT>");
        rest = &rest[after + moment.len()..];
    }
    out.push_str(rest);
    out
}

fn normalise(text: &str, run_id: &str) -> String {
    let text = text.replace(run_id, "<RUN_ID>");
    let text = mask_moment_after(&mask_moment_after(&text, "Deadline: "), "期限: ");
    let text = mask_number_after(&text, "127.0.0.1:", "<PORT>");
    let text = text
        .lines()
        .map(|line| if line.starts_with("- 実施: ") { "- 実施: <TIMES>" } else { line })
        .collect::<Vec<_>>()
        .join("\n");
    mask_milliseconds(&text) + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_run_markdown_matches_the_snapshots() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("server starts");
    let target = Targets::load(environment.targets_file()).expect("targets").resolve(DEMO_TARGET).expect("target");
    let template =
        Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates/phr-seq")).expect("template");
    let date = chrono::Utc::now().date_naive();
    let (run_id, _) =
        evidence::reserve_next(artifacts.path(), &template.suite, "phr-seq", date, &template.label).expect("reserve");
    let plan = Plan::build(&template, &target, &run_id).expect("plan");
    let prepared = run::prepare(&target).expect("identity");
    let (folder, _) = RunFolder::start(artifacts.path(), &run_id).expect("start");
    let options = RunOptions { jobs: 1, progress: false, reports: Reports::load(None).expect("reports") };

    let outcome = run::execute(&plan, &prepared, folder, &options).await.expect("run");
    environment.stop().await;

    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for (document, snapshot) in
        [("logs/summary.md", "demo__summary.md"), ("logs/phr_container_summary.md", "demo__phr_container_summary.md")]
    {
        let text = std::fs::read_to_string(outcome.dir.join(document)).expect("rendered document");
        let normalised = normalise(&text, &run_id.to_string());
        let file = snapshots.join(snapshot);
        if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
            std::fs::write(&file, &normalised).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)", file.display()));
        assert_eq!(normalised, expected, "{document} differs from {}", file.display());
    }
}
