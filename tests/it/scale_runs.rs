//! Runs larger than the old bound of 1,000 probes, end to end against phr-server: accepted, every probe in
//! `status.json` in template order, documents that say they list an excerpt, a diff that finds the one probe
//! that changed, and an HTML report paged so that each probe is on exactly one page. Nothing here is timed;
//! `bench/harness-scale.sh` measures time and memory.

use std::path::{Path, PathBuf};

use crate::routine_support::{connrun, run_against, text};

use connrun::cli::demo::DemoEnvironment;
use connrun::evidence::limits::DOCUMENT_PROBES;
use connrun::report::html::PAGE_PROBES;

/// One more probe than a document lists whole and than a page holds (and than templates used to allow).
const PROBES: usize = if DOCUMENT_PROBES > PAGE_PROBES { DOCUMENT_PROBES + 1 } else { PAGE_PROBES + 1 };

/// A template of [`PROBES`] GETs of PHR-04; probe `broken`, if any, asks for a patient that does not exist.
fn template(root: &Path, broken: Option<usize>) -> PathBuf {
    let dir = root.join(format!("scale-{}", broken.map_or("ok".to_owned(), |b| b.to_string())));
    std::fs::create_dir_all(&dir).expect("template folder");
    let mut toml = String::from(
        "schema_version = 1\nname = \"scale\"\nlabel = \"scale\"\nsuite = \"scale\"\n\n[headers]\nX-Facility-Id = \"F001\"\n\n[[phases]]\nid = \"S\"\nname = \"scale\"\n",
    );
    for i in 0..PROBES {
        let patient = if Some(i) == broken { "P9999" } else { "P0001" };
        toml.push_str(&format!(
            "\n[[phases.probes]]\nid = \"P{i:05}\"\nname = \"allergy\"\nmethod = \"GET\"\npath = \"/openDolphin/resources/20/adm/phr/allergy/{patient}\"\nready = [200]\n"
        ));
    }
    std::fs::write(dir.join("template.toml"), toml).expect("template.toml");
    dir
}

fn probe_ids(status: &serde_json::Value) -> Vec<String> {
    status["probes"].as_array().expect("probes").iter().map(|p| p["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_the_old_bound_records_every_probe_and_diff_and_report_stay_exact() {
    // Arrange: two runs of the same large template, the second with one probe answering 404.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let templates = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let healthy = run_against(&environment, artifacts.path(), &template(templates.path(), None)).await;
    let broken = run_against(&environment, artifacts.path(), &template(templates.path(), Some(700))).await;
    environment.stop().await;

    // Assert: status.json has every probe, in template order, and the documents say what they list.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(healthy.dir.join("status.json")).expect("status.json")).expect("json");
    let expected: Vec<String> = (0..PROBES).map(|i| format!("P{i:05}")).collect();
    assert_eq!(probe_ids(&status), expected);
    assert_eq!(status["all_ready"], true);
    assert!(!healthy.dir.join(".probes.ndjson").exists(), "the spool is not part of the sealed evidence");
    let excerpt = broken.excerpt.expect("a run over DOCUMENT_PROBES lists an excerpt");
    assert_eq!((excerpt.total, excerpt.ready, excerpt.listed), (PROBES, PROBES - 1, 1));
    assert_eq!(broken.status.probes.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["P00700"]);
    let readme = std::fs::read_to_string(broken.dir.join("README.md")).expect("README.md");
    assert!(readme.contains(&format!("全 {PROBES} 件中 Ready {} 件", PROBES - 1)), "{readme}");
    assert!(readme.contains(&format!("Ready {}/{PROBES}", PROBES - 1)), "{readme}");
    let junit = std::fs::read_to_string(broken.dir.join("junit.xml")).expect("junit.xml");
    assert_eq!(junit.matches("<testcase ").count(), PROBES);
    let (a, b) = (healthy.status.run_id.clone(), broken.status.run_id.clone());
    assert!(connrun(artifacts.path(), &["verify", &b]).status.success());

    // Act + Assert: diff finds exactly the probe that changed.
    let diff = connrun(artifacts.path(), &["--json", "diff", &a, &b, "--latency-min-ms", "3600000"]);
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let json: serde_json::Value = serde_json::from_slice(&diff.stdout).expect("diff --json");
    let changes: Vec<(String, String, String)> = json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap_or("").into(),
                c["subject"].as_str().unwrap_or("").into(),
                c["aspect"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(changes, [("regression".to_owned(), "P00700".to_owned(), "status".to_owned())]);

    // Act + Assert: the HTML report is a summary linking every page, each probe on exactly one page.
    let output = artifacts.path().join("big.html");
    let report = connrun(artifacts.path(), &["report", "html", &b, "--output", &output.to_string_lossy()]);
    assert!(report.status.success(), "{}", text(&report));
    let summary = std::fs::read_to_string(&output).expect("summary page");
    let pages: Vec<PathBuf> =
        (1..=PROBES.div_ceil(PAGE_PROBES)).map(|n| artifacts.path().join(format!("big-p{n:04}.html"))).collect();
    let mut rows = String::new();
    for page in &pages {
        let name = page.file_name().expect("name").to_string_lossy();
        assert!(summary.contains(&format!("href=\"{name}\"")), "the summary links {name}");
        rows.push_str(&std::fs::read_to_string(page).expect("page"));
    }
    assert!(!artifacts.path().join(format!("big-p{:04}.html", pages.len() + 1)).exists());
    for id in &expected {
        assert_eq!(rows.matches(&format!("<tr id=\"probe-{id}\">")).count(), 1, "{id} is on exactly one page");
    }
}
