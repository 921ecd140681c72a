//! `connrun diff` over real runs against phr-server: regressions, improvements, latency noise, tampering.

use crate::routine_support;

use routine_support::{connrun, phr_seq, phr_seq_variant, run_against, text};

use connrun::cli::demo::DemoEnvironment;

/// phr-seq with PHR-07 pointed at a patient that does not exist (HTTP 404) and Phase-E's audit query
/// dropped, so PHR_CONTAINER_FETCH is no longer recorded.
const BROKEN: &[(&str, &str)] = &[
    ("path = \"{{phr_base}}/image/{{patient}}\"", "path = \"{{phr_base}}/image/P9999\""),
    ("audit = [\"audit/PHR_CONTAINER_FETCH.sql\"]\n", ""),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_and_a_missing_audit_action_are_regressions_and_the_reverse_is_an_improvement() {
    // Arrange: a healthy run, then a run with PHR-07 → 404 and PHR_CONTAINER_FETCH gone.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let variants = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let healthy = run_against(&environment, artifacts.path(), &phr_seq()).await;
    let broken = run_against(&environment, artifacts.path(), &phr_seq_variant(variants.path(), BROKEN)).await;
    environment.stop().await;
    let (a, b) = (healthy.status.run_id.clone(), broken.status.run_id.clone());

    // Act: latency is left out (it has its own test below). The healthy run is the first against a fresh
    // server and pays one-off costs (the argon2 check of the Basic password, cached afterwards), its PHR-07
    // streams 1 MiB where the broken one gets a 404, and a loaded machine adds jitter: any of these can clear
    // the default bars and show up as a latency improvement forward and a regression in reverse.
    let without_latency = |args: &[&str]| connrun(artifacts.path(), &[args, &["--latency-min-ms", "3600000"]].concat());
    let forward = without_latency(&["--json", "diff", &a, &b]);
    let reverse = without_latency(&["--json", "diff", &b, &a]);
    let markdown = without_latency(&["diff", &a, &b]);

    // Assert: forward exit 1 with exactly the planted regressions.
    assert_eq!(forward.status.code(), Some(1), "{}", text(&forward));
    let json: serde_json::Value = serde_json::from_slice(&forward.stdout).expect("diff --json");
    let of_class = |json: &serde_json::Value, class: &str| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = json["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .filter(|c| c["class"] == class)
            .map(|c| (c["subject"].as_str().unwrap_or("").to_owned(), c["aspect"].as_str().unwrap_or("").to_owned()))
            .collect();
        found.sort();
        found
    };
    let regressions = of_class(&json, "regression");
    let planted: Vec<(String, String)> = [
        ("PHR-07", "status"),
        ("PHR_CONTAINER_FETCH (success)", "audit.delta"),
        ("PHR_IMAGE_STREAM (failed)", "audit.delta"),
        ("PHR_IMAGE_STREAM (success)", "audit.delta"),
    ]
    .iter()
    .map(|(s, a)| (s.to_string(), a.to_string()))
    .collect();
    assert_eq!(regressions, planted, "the 404 (with its audit rows) and the removed action, nothing else");
    assert!(of_class(&json, "improvement").is_empty(), "{}", text(&forward));
    let md = String::from_utf8_lossy(&markdown.stdout);
    assert!(
        md.contains(
            "| Phase-D | PHR-07 | ステータス | HTTP 200 Ready | HTTP 404 Not Ready | **退行** | HTTP 404（エンドポイントなし）は Ready ステータスではない |"
        ),
        "{md}"
    );
    assert!(md.contains("**退行 4 件**"), "{md}");

    // Assert: reverse exit 0, the same items as improvements.
    assert_eq!(reverse.status.code(), Some(0), "{}", text(&reverse));
    let json: serde_json::Value = serde_json::from_slice(&reverse.stdout).expect("diff --json");
    assert!(of_class(&json, "regression").is_empty(), "{}", text(&reverse));
    let improvements = of_class(&json, "improvement");
    assert_eq!(improvements, planted);

    // Assert: --latest compares the newest run of the template+target with the one before it.
    let latest = connrun(artifacts.path(), &["--json", "diff", "--latest", "--template", "phr-seq"]);
    let json: serde_json::Value = serde_json::from_slice(&latest.stdout).expect("diff --latest --json");
    assert_eq!(
        (json["before"]["run_id"].as_str(), json["after"]["run_id"].as_str()),
        (Some(a.as_str()), Some(b.as_str()))
    );

    // Assert: history shows the status move.
    let history = connrun(artifacts.path(), &["history", "--template", "phr-seq"]);
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains(&format!("| `{b}` |")) && history.contains("PHR-07 200→404"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_the_same_healthy_server_show_no_latency_regression_with_defaults() {
    // Arrange: a warm-up run first, so the two compared runs meet the server in the same state (the first run
    // against a fresh server pays one-off costs, e.g. the argon2 check of the Basic password, cached afterwards).
    // It goes to its own folder: in `artifacts` it would become history and raise diff's latency noise floor.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let warm_up = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    run_against(&environment, warm_up.path(), &phr_seq()).await;
    let first = run_against(&environment, artifacts.path(), &phr_seq()).await;
    let second = run_against(&environment, artifacts.path(), &phr_seq()).await;
    environment.stop().await;

    // Act
    let output = connrun(artifacts.path(), &["--json", "diff", &first.status.run_id, &second.status.run_id]);

    // Assert
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("diff --json");
    let changes = json["changes"].as_array().expect("changes");
    assert!(changes.is_empty(), "same server, same certificate, defaults: {changes:?}");
    // The thresholds can fail: a 1 ms bar flags the same runs' jitter somewhere (proving latency is compared).
    let strict = connrun(
        artifacts.path(),
        &[
            "--json",
            "diff",
            &first.status.run_id,
            &second.status.run_id,
            "--latency-min-ms",
            "0",
            "--latency-ratio",
            "0",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&strict.stdout).expect("diff --json");
    assert!(
        json["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["aspect"].as_str().unwrap_or("").starts_with("latency.")),
        "{}",
        text(&strict)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_in_the_evidence_makes_diff_verify_and_archive_refuse_naming_the_file() {
    // Arrange
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let first = run_against(&environment, artifacts.path(), &phr_seq()).await;
    let second = run_against(&environment, artifacts.path(), &phr_seq()).await;
    environment.stop().await;
    let body = second.dir.join("httpdump/PHR-11/response.body");
    let mut bytes = std::fs::read(&body).expect("body");
    bytes[10] ^= 0x01;
    std::fs::write(&body, bytes).expect("tamper");

    // Act
    let diff = connrun(artifacts.path(), &["diff", &first.status.run_id, &second.status.run_id]);
    let verify = connrun(artifacts.path(), &["verify", &second.status.run_id]);
    let archive = connrun(artifacts.path(), &["archive", &second.status.run_id]);

    // Assert
    assert_eq!(diff.status.code(), Some(2), "{}", text(&diff));
    assert!(text(&diff).contains("httpdump/PHR-11/response.body"), "{}", text(&diff));
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(text(&verify).contains("httpdump/PHR-11/response.body"), "{}", text(&verify));
    assert_eq!(archive.status.code(), Some(2), "{}", text(&archive));
    assert!(text(&archive).contains("httpdump/PHR-11/response.body"), "{}", text(&archive));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_run_whose_status_changed_is_left_out_of_the_noise_floor_and_named() {
    // Arrange: three runs; the earliest one's status.json is edited (a timing widened) after its seal, as if
    // to widen the noise floor and hide a slowdown.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let earliest = run_against(&environment, artifacts.path(), &phr_seq()).await;
    let before = run_against(&environment, artifacts.path(), &phr_seq()).await;
    let after = run_against(&environment, artifacts.path(), &phr_seq()).await;
    environment.stop().await;
    let diff = |run_ids: &[&str]| connrun(artifacts.path(), &[&["--json", "diff"], run_ids].concat());
    let ids = [before.status.run_id.as_str(), after.status.run_id.as_str()];
    let untouched = diff(&ids);
    let status = earliest.dir.join("status.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).expect("read")).expect("json");
    json["probes"][0]["timings"]["total_ms"] = serde_json::json!(99_999.0);
    std::fs::write(&status, serde_json::to_vec_pretty(&json).expect("json")).expect("edit");

    // Act
    let edited = diff(&ids);

    // Assert: the earlier run counted before the edit and not after, and the edit is named on stderr.
    let noise_runs = |output: &std::process::Output| {
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("diff --json");
        json["noise_runs"].as_u64().expect("noise_runs")
    };
    assert_eq!(noise_runs(&untouched), 2, "{}", text(&untouched));
    assert_eq!(noise_runs(&edited), 1, "{}", text(&edited));
    let stderr = String::from_utf8_lossy(&edited.stderr);
    assert!(stderr.contains(&earliest.status.run_id) && stderr.contains("status.json: changed"), "{stderr}");
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_schema_version_and_an_unknown_run_are_bad_input() {
    // Arrange: a real run, and a re-sealed copy whose status.json claims a future layout.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let run = run_against(&environment, artifacts.path(), &phr_seq()).await;
    environment.stop().await;
    let copy_id: connrun::evidence::runid::RunId = "20250101TfutureZ1".parse().expect("run id");
    let copy = elsewhere.path().join(copy_id.to_string());
    copy_tree(&run.dir, &copy);
    let status_path = copy.join("status.json");
    let mut status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status_path).expect("status")).expect("json");
    status["schema_version"] = serde_json::json!(99);
    std::fs::write(&status_path, serde_json::to_vec_pretty(&status).expect("json")).expect("write");
    connrun::evidence::write_manifest(&copy, &copy_id).expect("re-seal");
    let (original, future) = (run.dir.to_str().expect("utf-8"), copy.to_str().expect("utf-8"));

    // Act
    let schema = connrun(artifacts.path(), &["diff", original, future]);
    let unknown = connrun(artifacts.path(), &["diff", &run.status.run_id, "20250101TnothingZ1"]);

    // Assert
    assert_eq!(schema.status.code(), Some(2), "{}", text(&schema));
    assert!(text(&schema).contains("schema_version 99"), "{}", text(&schema));
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(text(&unknown).contains("no run 20250101TnothingZ1"), "{}", text(&unknown));
}
