//! The seed log's situation: the server answers, but not the PHR API (404 for every PHR path). The run must
//! finish with complete, sealed evidence, every probe Not Ready, missing audits listed as open items.

use std::path::Path;

use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};
use connrun::evidence::{self, RunFolder};
use connrun::plan::Plan;
use connrun::plan::target::Targets;
use connrun::plan::template::Template;
use connrun::report::Reports;
use connrun::run::{self, RunOptions};

/// phr-seq with its PHR base path pointing where the server has nothing.
fn template_without_the_api(dir: &Path) -> Template {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates/phr-seq");
    std::fs::create_dir_all(dir.join("audit")).expect("mkdir");
    let toml = std::fs::read_to_string(source.join("template.toml")).expect("read template");
    let moved = toml.replace("/openDolphin/resources/20/adm/phr\"", "/openDolphin/resources/20/adm/phr-not-deployed\"");
    assert_ne!(toml, moved, "the base path variable must exist in phr-seq");
    std::fs::write(dir.join("template.toml"), moved).expect("write template");
    for entry in std::fs::read_dir(source.join("audit")).expect("audit dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join("audit").join(path.file_name().expect("name"))).expect("copy sql");
    }
    Template::load(dir).expect("template loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_phr_api_gives_404_outcomes_open_items_and_sealed_evidence() {
    let work = tempfile::tempdir().expect("temp dir");
    let artifacts = work.path().join("artifacts");
    let template = template_without_the_api(&work.path().join("template"));
    let environment = DemoEnvironment::start(None).await.expect("server starts");
    let target = Targets::load(environment.targets_file()).expect("targets").resolve(DEMO_TARGET).expect("target");
    let date = chrono::Utc::now().date_naive();
    let (run_id, _) =
        evidence::reserve_next(&artifacts, &template.suite, "phr-seq", date, &template.label).expect("reserve");
    let plan = Plan::build(&template, &target, &run_id).expect("plan");
    let prepared = run::prepare(&target).expect("identity");
    let (folder, _) = RunFolder::start(&artifacts, &run_id).expect("start");
    let options = RunOptions { jobs: 2, progress: false, reports: Reports::load(None).expect("reports") };

    let outcome = run::execute(&plan, &prepared, folder, &options).await.expect("the run itself completes");
    environment.stop().await;

    let statuses: Vec<Option<u16>> = outcome.status.probes.iter().map(|p| p.http_status).collect();
    assert_eq!(statuses, [Some(404), Some(404), Some(404)]);
    assert!(!outcome.status.is_ok());
    assert!(
        outcome.status.audit.iter().filter(|c| c.expected > 0).all(|c| c.is_missing()),
        "{:?}",
        outcome.status.audit
    );
    let todo = std::fs::read_to_string(outcome.dir.join("todo/PHR_OPEN_ITEMS.md")).expect("open items");
    for expected in
        ["- [ ] PHR-06", "- [ ] PHR-07", "- [ ] PHR-11", "PHR_IMAGE_STREAM（success）: 期待 1 行に対し 0 行（不足）"]
    {
        assert!(todo.contains(expected), "missing {expected:?} in:\n{todo}");
    }
    let report = evidence::verify(&artifacts, &run_id).expect("verify");
    assert_eq!(report.first_mismatch, None);
    for file in [
        "status.json",
        "har/run.har",
        "junit.xml",
        "logs/summary.md",
        "httpdump/PHR-07/status.txt",
        "audit/counts.json",
    ] {
        assert!(outcome.dir.join(file).is_file(), "{file} missing");
    }
}
