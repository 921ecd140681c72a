//! The binary's contract: exit codes 0 / 1 / 2, `--json`, help with examples, RUN_ID messages.

use std::path::Path;
use std::process::{Command, Output};

fn connrun(artifacts: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connrun"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--artifacts")
        .arg(artifacts)
        .args(args)
        .output()
        .expect("run connrun")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A loopback port that refuses connections while the returned socket lives: the socket is bound, so no
/// concurrent test can be given the port, but never listens. (The port of a listener that was bound and
/// dropped could be reused by another test's server before this test connects to it.)
fn refused_port() -> (u16, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    (socket.local_addr().expect("addr").port(), socket)
}

#[test]
fn templates_check_passes_for_the_shipped_templates() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let output = connrun(artifacts.path(), &["templates", "check"]);

    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout(&output).contains("run template phr-seq"));
}

#[test]
fn templates_check_fails_with_exit_1_naming_the_broken_file() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let templates = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(templates.path().join("bad")).expect("mkdir");
    std::fs::write(
        templates.path().join("bad/template.toml"),
        "schema_version = 1\nname = \"bad\"\nlabel = \"b\"\nphases = []\nextra = 1\n",
    )
    .expect("write");

    let output = connrun(
        artifacts.path(),
        &["--run-templates", templates.path().to_str().expect("utf-8"), "templates", "check"],
    );

    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("template.toml:5"), "{}", stdout(&output));
}

#[test]
fn new_allocates_z1_then_z2_and_json_is_machine_readable() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let first = connrun(artifacts.path(), &["new", "phr-seq", "--date", "20251119"]);
    let second = connrun(artifacts.path(), &["--json", "new", "phr-seq", "--date", "20251119"]);

    assert_eq!(stdout(&first).trim(), "20251119TorcaPHRSeqZ1");
    let json: serde_json::Value = serde_json::from_slice(&second.stdout).expect("json");
    assert_eq!(json["run_id"], "20251119TorcaPHRSeqZ2");
}

#[test]
fn a_bad_run_id_exits_2_and_shows_both_forms() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let output = connrun(artifacts.path(), &["verify", "20251119-PHR"]);

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("YYYYMMDDT<label>Z<n>") && stderr.contains("YYYYMMDDThhmmssZ"), "{stderr}");
}

#[test]
fn verify_exits_1_on_a_tampered_run() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let date = chrono::NaiveDate::from_ymd_opt(2025, 11, 19).expect("date");
    let (run_id, _) = connrun::evidence::reserve_next(artifacts.path(), "s", "phr-seq", date, "cli").expect("reserve");
    let (folder, _) = connrun::evidence::RunFolder::start(artifacts.path(), &run_id).expect("start");
    folder.write("status.json", b"{\"ok\":true}").expect("write");
    let dir = folder.finish().expect("finish");

    let clean = connrun(artifacts.path(), &["verify", &run_id.to_string()]);
    std::fs::write(dir.join("status.json"), b"{\"ok\":false}").expect("tamper");
    let tampered = connrun(artifacts.path(), &["verify", &run_id.to_string()]);

    assert_eq!(clean.status.code(), Some(0));
    assert_eq!(tampered.status.code(), Some(1));
    assert!(stdout(&tampered).contains("status.json"));
}

#[test]
fn run_with_an_unknown_target_exits_2_before_claiming_a_run_id() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let targets = artifacts.path().join("targets.toml");
    std::fs::write(&targets, "[targets.stage]\nbase_url = \"https://127.0.0.1:9\"\n").expect("write");

    let output = connrun(
        artifacts.path(),
        &["--targets", targets.to_str().expect("utf-8"), "run", "--template", "phr-seq", "--target", "prod"],
    );

    assert_eq!(output.status.code(), Some(2));
    assert!(!artifacts.path().join("orca-connectivity").exists(), "no RUN_ID may be claimed for bad input");
}

#[test]
fn every_command_has_an_example_in_its_help() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    for command in [&["new"][..], &["run"], &["verify"], &["templates", "check"], &["preflight"], &["demo"]] {
        let mut args: Vec<&str> = command.to_vec();
        args.push("--help");

        let output = connrun(artifacts.path(), &args);

        assert!(stdout(&output).contains("connrun "), "{command:?} help has no example");
        assert!(stdout(&output).contains("Example"), "{command:?} help has no example");
    }
}

#[test]
fn preflight_against_a_refused_port_exits_1_and_names_the_failed_check() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (port, _refusing) = refused_port();
    let ca = devpki::Authority::new("preflight-test").expect("CA");
    std::fs::write(artifacts.path().join("ca.pem"), ca.cert_pem()).expect("write CA");
    let targets = artifacts.path().join("targets.toml");
    let text =
        format!("[targets.t]\nbase_url = \"https://127.0.0.1:{port}\"\n[targets.t.tls]\nca_bundle = \"ca.pem\"\n");
    std::fs::write(&targets, text).expect("write targets");

    let output = connrun(
        artifacts.path(),
        &["--json", "--targets", targets.to_str().expect("utf-8"), "preflight", "--target", "t"],
    );

    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let failed: Vec<&str> = result["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(failed.contains(&"tcp_connect"), "{failed:?}");
}

#[test]
fn with_json_a_harness_error_is_one_json_document_on_stdout() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let output = connrun(artifacts.path(), &["--json", "new", "no-such-template"]);

    assert_eq!(output.status.code(), Some(2));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json on stdout");
    assert_eq!(value["exit_code"], 2);
    assert!(value["error"].as_str().is_some_and(|e| e.contains("no-such-template")), "{value}");
}
