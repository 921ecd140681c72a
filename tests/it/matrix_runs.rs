//! `connrun run --target a --target b`: several targets, each a complete run of its own, and one matrix.
//!
//! Against the real phr-server (in-process, real mTLS, real SQLite audit table) under two target names, a
//! refused loopback port as a target that is down, and a target name the file does not define.

use std::path::{Path, PathBuf};
use std::process::Output;

use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};

use crate::routine_support::{connrun, text};

/// The demo's targets file with its one target copied as `clinic-a` and `clinic-b` (the same server under
/// two names), and `down`: a bound port that never listens, trusting the same CA. Written beside the demo's
/// file, whose relative paths it keeps.
fn targets(environment: &DemoEnvironment, down_port: u16) -> PathBuf {
    let demo = std::fs::read_to_string(environment.targets_file()).expect("demo targets");
    let header = format!("[targets.{DEMO_TARGET}");
    assert!(demo.contains(&header), "the demo targets file changed shape: {demo}");
    let mut text = String::new();
    for name in ["clinic-a", "clinic-b"] {
        text.push_str(&demo.replace(&header, &format!("[targets.{name}")));
        text.push('\n');
    }
    text.push_str(&format!(
        "[targets.down]\nbase_url = \"https://127.0.0.1:{down_port}\"\ntimeout_seconds = 5\n\
         [targets.down.tls]\nca_bundle = \"pki/ca.pem\"\n"
    ));
    let path = environment.targets_file().with_file_name("targets-matrix.toml");
    std::fs::write(&path, text).expect("write targets");
    path
}

/// A loopback port that refuses connections while the socket lives (bound, never listening).
fn refused_port() -> (u16, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    (socket.local_addr().expect("addr").port(), socket)
}

fn run_templates() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates").display().to_string()
}

/// `connrun --targets <file> --run-templates <checkout> --json <args>`, on a blocking thread.
fn matrix_run(artifacts: &Path, targets: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--targets", targets.to_str().expect("utf-8"), "--run-templates"];
    let templates = run_templates();
    all.push(&templates);
    all.push("--json");
    all.extend_from_slice(args);
    tokio::task::block_in_place(|| connrun(artifacts, &all))
}

/// The printed JSON, the matrix folder and `matrix.md` / `matrix.html`.
fn matrix_of(output: &Output) -> (serde_json::Value, PathBuf, String, String) {
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", text(output)));
    let md_path = PathBuf::from(printed["matrix"].as_str().expect("matrix path"));
    let md = std::fs::read_to_string(&md_path).expect("matrix.md");
    // tera's HTML escaping writes `/` as `&#x2F;` (the browser reads it back as `/`).
    let html = std::fs::read_to_string(printed["html"].as_str().expect("html path")).expect("matrix.html");
    let html = html.replace("&#x2F;", "/");
    let dir = md_path.parent().expect("matrix folder").to_owned();
    (printed, dir, md, html)
}

/// The Markdown row of `target` in the matrix table.
fn row<'a>(md: &'a str, target: &str) -> &'a str {
    md.lines().find(|l| l.starts_with(&format!("| {target} |"))).unwrap_or_else(|| panic!("no row for {target}:\n{md}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reserved_run_ids_run_concurrently_against_two_targets_and_one_matrix_links_both_runs() {
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let (port, _refusing) = refused_port();
    let targets = targets(&environment, port);
    let artifacts = tempfile::tempdir().expect("artifacts");
    let templates = run_templates();
    let reserve = || {
        let output = tokio::task::block_in_place(|| {
            connrun(artifacts.path(), &["--run-templates", &templates, "new", "phr-seq"])
        });
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let (first, second) = (reserve(), reserve());

    let output = matrix_run(
        artifacts.path(),
        &targets,
        &["run", &first, &second, "--target", "clinic-a", "--target", "clinic-b", "--parallel-targets", "2"],
    );
    environment.stop().await;

    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let (printed, dir, md, html) = matrix_of(&output);
    let runs: Vec<(&str, &str)> = printed["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| (t["target"].as_str().expect("target"), t["run_id"].as_str().expect("run id")))
        .collect();
    assert_eq!(runs, [("clinic-a", first.as_str()), ("clinic-b", second.as_str())], "each target its reserved RUN_ID");
    assert_ne!(first, second);
    // Both runs are complete, sealed and verifiable on their own.
    let mut windows = Vec::new();
    for (target, run_id) in &runs {
        let verify = tokio::task::block_in_place(|| connrun(artifacts.path(), &["verify", run_id]));
        assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
        let run_dir = dir.join("../..").join(run_id);
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("status.json")).expect("status.json")).expect("json");
        assert_eq!((status["target"].as_str(), status["all_ready"].as_bool()), (Some(*target), Some(true)));
        assert_eq!(status["audit_state"]["state"], "collected", "{}", status["audit_state"]);
        let at = |key: &str| {
            chrono::DateTime::parse_from_rfc3339(status[key].as_str().expect("time")).expect("RFC 3339 time")
        };
        windows.push((at("started_at"), at("finished_at")));
    }
    // They ran at the same time: each started before the other finished.
    assert!(windows[0].0 < windows[1].1 && windows[1].0 < windows[0].1, "the runs did not overlap: {windows:?}");
    // The matrix: both rows, every cell Ready and linking to that run's own evidence.
    assert!(md.starts_with("# 複数ターゲット実行マトリクス — phr-seq"), "{md}");
    assert!(md.contains("結果: OK 2 / 要対応 0 / 実行できず 0"), "{md}");
    for (target, run_id) in &runs {
        let line = row(&md, target);
        assert!(line.contains(&format!("[`{run_id}`](../../{run_id}/logs/summary.md)")), "{line}");
        assert!(line.contains("| OK | OK | 3/3 | 採取済み（期待どおり） |"), "{line}");
        for probe in ["serverinfo", "PHR-06", "PHR-07", "PHR-11"] {
            let link = if probe == "serverinfo" {
                format!("../../{run_id}/serverinfo/")
            } else {
                format!("../../{run_id}/httpdump/{probe}/")
            };
            assert!(line.contains(&format!("[Ready 200]({link})")), "{probe} in {line}");
            assert!(dir.join(&link).is_dir(), "{link} does not lead to the run's evidence");
        }
        assert!(html.contains(&format!("<a href=\"../../{run_id}/\"><code>{run_id}</code></a>")), "{html}");
    }
    assert_eq!(html.matches("class=\"cell ready\"").count(), 8, "2 targets × 4 probes Ready");
    assert!(!html.to_ascii_lowercase().contains("<script"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_is_a_row_showing_the_failure_and_the_exit_code_is_1() {
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let (port, refusing) = refused_port();
    let targets = targets(&environment, port);
    let artifacts = tempfile::tempdir().expect("artifacts");

    let output = matrix_run(
        artifacts.path(),
        &targets,
        &["run", "--template", "phr-seq", "--target", "clinic-a", "--target", "down"],
    );
    environment.stop().await;
    drop(refusing);

    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let (printed, _, md, html) = matrix_of(&output);
    assert_eq!(printed["exit_code"], 1);
    let ids: Vec<&str> =
        printed["targets"].as_array().expect("targets").iter().filter_map(|t| t["run_id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "the target that is down still has a complete run: {printed}");
    assert_ne!(ids[0], ids[1]);
    assert!(row(&md, "clinic-a").contains("| OK | OK | 3/3 |"), "{}", row(&md, "clinic-a"));
    let down = row(&md, "down");
    assert!(down.contains("| 要対応 | NG（"), "{down}");
    assert!(down.contains("| 0/3 |"), "{down}");
    assert_eq!(down.matches("NG 000 connection_refused").count(), 4, "{down}");
    assert!(md.contains("接続が拒否された"), "the failure is explained in Japanese:\n{md}");
    assert!(html.contains("<tr class=\"problem\" data-target=\"down\">"), "{html}");
    assert_eq!(html.matches("class=\"cell not-ready\"").count(), 4);
}

#[test]
fn targets_that_cannot_be_configured_are_rows_that_say_so_and_the_exit_code_is_2() {
    let dir = tempfile::tempdir().expect("dir");
    let (port, refusing) = tokio::runtime::Runtime::new().expect("runtime").block_on(async { refused_port() });
    let ca = devpki::Authority::new("matrix-test").expect("CA");
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).expect("CA file");
    let targets = dir.path().join("targets.toml");
    std::fs::write(
        &targets,
        format!(
            "[targets.down]\nbase_url = \"https://127.0.0.1:{port}\"\ntimeout_seconds = 5\n[targets.down.tls]\n\
             ca_bundle = \"ca.pem\"\n[targets.nopass]\nbase_url = \"https://127.0.0.1:{port}\"\n\
             [targets.nopass.basic]\nuser = \"F001:ops\"\npassword_env = \"CONNRUN_MATRIX_TEST_UNSET\"\n\
             [groups]\nclinics = [\"down\", \"nopass\"]\n"
        ),
    )
    .expect("targets");
    let artifacts = dir.path().join("artifacts");
    let templates = run_templates();

    let output = connrun(
        &artifacts,
        &[
            "--targets",
            targets.to_str().expect("utf-8"),
            "--run-templates",
            &templates,
            "run",
            "--template",
            "phr-seq",
            "--target",
            "nosuch",
            "--group",
            "clinics",
        ],
    );
    drop(refusing);

    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let matrix = std::fs::read_dir(artifacts.join("orca-connectivity/matrix")).expect("matrix folder").count();
    assert_eq!(matrix, 1, "the matrix is written even when a target could not run");
    let md_path =
        text(&output).lines().find_map(|l| l.trim().strip_prefix("matrix: ").map(PathBuf::from)).expect("path");
    let md = std::fs::read_to_string(md_path).expect("matrix.md");
    assert!(md.contains("結果: OK 0 / 要対応 1 / 実行できず 2"), "{md}");
    assert!(row(&md, "down").contains("| 要対応 |"));
    for (target, reason) in [("nopass", "CONNRUN_MATRIX_TEST_UNSET is not set"), ("nosuch", "no target named")] {
        let line = row(&md, target);
        assert!(line.contains("| （未割当） | 実行できず |"), "{line}");
        assert!(md.contains(&format!("- `{target}`: 実行できず（RUN_ID なし）:")) && md.contains(reason), "{md}");
    }
}

#[test]
fn a_group_naming_an_undefined_or_repeated_target_is_refused_with_its_line() {
    let text = "[targets.a]\nbase_url = \"https://127.0.0.1:1\"\n[groups]\nweekly = [\"a\", \"b\", \"a\"]\n";

    let error = connrun::plan::target::Targets::parse(Path::new("targets.toml"), text).expect_err("refused");

    let message = error.to_string();
    assert!(message.contains("targets.toml:4:") && message.contains("groups.weekly"), "{message}");
    assert!(message.contains("`b` is not a target of this file (defined: a)"), "{message}");
    assert!(message.contains("`a` is listed twice"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_with_two_targets_runs_the_routine_for_each_and_writes_one_matrix_of_their_runs() {
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let (port, _refusing) = refused_port();
    let targets = targets(&environment, port);
    let artifacts = tempfile::tempdir().expect("artifacts");
    let log = artifacts.path().join("daily.md");
    std::fs::write(&log, "# 日次ログ\n<!-- connrun:daily -->\n").expect("log");

    let output = matrix_run(
        artifacts.path(),
        &targets,
        &["weekly", "--target", "clinic-a", "--target", "clinic-b", "--log", log.to_str().expect("utf-8")],
    );
    environment.stop().await;

    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let (printed, _, md, _) = matrix_of(&output);
    let mut run_ids = Vec::new();
    for (index, target) in ["clinic-a", "clinic-b"].into_iter().enumerate() {
        let weekly = &printed["targets"][index];
        assert_eq!((weekly["target"].as_str(), weekly["exit_code"].as_i64()), (Some(target), Some(0)), "{weekly}");
        let record = weekly["weekly"]["record"].as_str().expect("the target's own weekly record");
        assert!(Path::new(record).is_file(), "{record}");
        let run_id = weekly["weekly"]["run_id"].as_str().expect("run id").to_owned();
        assert!(row(&md, target).contains(&format!("[`{run_id}`]")), "{}", row(&md, target));
        run_ids.push(run_id);
    }
    assert_ne!(run_ids[0], run_ids[1]);
    let daily = std::fs::read_to_string(&log).expect("log");
    for run_id in &run_ids {
        assert_eq!(
            daily.matches(&format!("### RUN_ID=`{run_id}`")).count(),
            1,
            "one daily entry per run, none lost:\n{daily}"
        );
    }
}

#[test]
fn too_many_targets_a_repeated_target_or_too_much_parallelism_is_refused_naming_the_bound() {
    let artifacts = tempfile::tempdir().expect("artifacts");
    let templates = run_templates();
    let names: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let mut many = vec!["--run-templates", templates.as_str(), "run", "--template", "phr-seq"];
    for name in &names {
        many.extend(["--target", name.as_str()]);
    }

    let too_many = connrun(artifacts.path(), &many);
    let twice = connrun(artifacts.path(), &["run", "--template", "phr-seq", "--target", "a", "--target", "a"]);
    let parallel = connrun(
        artifacts.path(),
        &["run", "--template", "phr-seq", "--target", "a", "--target", "b", "--parallel-targets", "17"],
    );

    assert_eq!(too_many.status.code(), Some(2));
    assert!(text(&too_many).contains("65 targets given; at most 64 targets run in one matrix"), "{}", text(&too_many));
    assert_eq!(twice.status.code(), Some(2));
    assert!(text(&twice).contains("target a given twice"), "{}", text(&twice));
    assert_eq!(parallel.status.code(), Some(2));
    assert!(text(&parallel).contains("17 is not in 1..=16"), "{}", text(&parallel));
    assert!(!artifacts.path().join("orca-connectivity").exists(), "nothing is run or written when refused");
}
