//! `connrun weekly` against the real phr-server, with a real webhook receiver on loopback: the routine's
//! steps, one exit code, the notice (retried after a 503, never carrying a secret), and a receiver that is
//! down (the verdict does not change; the failure is recorded beside the run).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};

/// A webhook receiver: answers each POST with the next status of `answers` (then 200) and keeps the bodies.
struct Receiver {
    /// `http://127.0.0.1:<port>/hook`.
    url: String,
    /// Bodies received, in order.
    bodies: Arc<Mutex<Vec<String>>>,
}

fn receiver(answers: Vec<u16>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            kept.lock().expect("lock").push(String::from_utf8_lossy(&body).into_owned());
            let status = answers.next().unwrap_or(200);
            let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Receiver { url, bodies }
}

/// The demo's targets file with a `[targets.demo.notify]` table, beside it (its paths are relative).
fn targets_with_notice(environment: &DemoEnvironment) -> PathBuf {
    let text = std::fs::read_to_string(environment.targets_file()).expect("targets");
    let path = environment.targets_file().with_file_name("targets-notify.toml");
    let notify = format!("\n[targets.{DEMO_TARGET}.notify]\nurl_env = \"CONNRUN_TEST_WEBHOOK\"\non = \"always\"\n");
    std::fs::write(&path, text + &notify).expect("write targets");
    path
}

fn weekly(artifacts: &Path, targets: &Path, webhook: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connrun"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CONNRUN_TEST_WEBHOOK", webhook)
        .arg("--artifacts")
        .arg(artifacts)
        .arg("--targets")
        .arg(targets)
        .args(["--json", "weekly", "--target", DEMO_TARGET, "--notify-retry-ms", "10"])
        .output()
        .expect("run connrun weekly")
}

fn record(output: &Output) -> serde_json::Value {
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("weekly --json");
    let file = printed["record"].as_str().expect("record path");
    serde_json::from_slice(&std::fs::read(file).expect("weekly record")).expect("record is JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn weekly_runs_the_routine_and_notifies_once_with_retries_and_no_secret() {
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let targets = targets_with_notice(&environment);
    let artifacts = tempfile::tempdir().expect("artifacts");
    let hook = receiver(vec![503]);

    let first = tokio::task::block_in_place(|| weekly(artifacts.path(), &targets, &hook.url));
    let second = tokio::task::block_in_place(|| weekly(artifacts.path(), &targets, &hook.url));

    for output in [&first, &second] {
        assert!(output.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&output.stderr));
    }
    assert_eq!(second.status.code(), Some(0), "{}", String::from_utf8_lossy(&second.stdout));
    let record = record(&second);
    let steps: Vec<&str> =
        record["steps"].as_array().expect("steps").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(steps, ["preflight", "run", "diff", "archive"]);
    assert_eq!(record["notice"]["delivered"], true);
    let bodies = hook.bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 3, "first weekly: 503 then 200; second: 200: {bodies:?}");
    let run_id = record["run_id"].as_str().expect("run id");
    let notice: serde_json::Value = serde_json::from_str(&bodies[2]).expect("Slack/Teams JSON");
    assert!(notice["text"].as_str().is_some_and(|t| t.contains(run_id)), "{notice}");
    for body in &bodies {
        for secret in environment.secrets() {
            assert!(!body.contains(secret.as_str()), "a notice carried a secret");
        }
    }
    environment.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_is_down_changes_no_verdict_and_is_recorded() {
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let targets = targets_with_notice(&environment);
    let artifacts = tempfile::tempdir().expect("artifacts");
    // A bound socket that never listens: connections to it are refused, and no other test can take it.
    let refusing = tokio::net::TcpSocket::new_v4().expect("socket");
    refusing.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let port = refusing.local_addr().expect("addr").port();

    let output =
        tokio::task::block_in_place(|| weekly(artifacts.path(), &targets, &format!("http://127.0.0.1:{port}/hook")));

    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.code().is_some_and(|c| c <= 1), "{printed}");
    let record = record(&output);
    assert_eq!(record["notice"]["delivered"], false);
    assert_eq!(record["notice"]["attempts"], 4, "retried with backoff before giving up");
    assert!(!record["notice"]["error"].as_str().unwrap_or_default().contains("/hook"), "the URL leaked: {record}");
    let run = record["steps"].as_array().expect("steps").iter().find(|s| s["name"] == "run").expect("run step").clone();
    assert_eq!(
        i64::from(output.status.code().unwrap_or(2)),
        run["exit_code"].as_i64().unwrap_or(-1),
        "the verdict is the run's"
    );
    drop(refusing);
    environment.stop().await;
}

#[test]
fn schedule_prints_a_systemd_timer_and_a_crontab_line_in_tokyo_time_with_absolute_paths() {
    let run = |kind: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_connrun"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "--targets",
                "targets.example.toml",
                "schedule",
                kind,
                "--target",
                "orca-stage",
                "--at",
                "Mon 09:30",
            ])
            .output()
            .expect("run connrun schedule");
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_connrun")).expect("exe");
    let manifest = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).expect("checkout");

    let systemd = run("--systemd");
    assert!(systemd.contains("OnCalendar=Mon *-*-* 09:30:00 Asia/Tokyo"), "{systemd}");
    assert!(systemd.contains(&format!("ExecStart='{}'", exe.display())), "{systemd}");
    assert!(systemd.contains(&format!("--targets '{}/targets.example.toml'", manifest.display())), "{systemd}");
    assert!(systemd.contains("weekly --target orca-stage --template phr-seq"), "{systemd}");

    let cron = run("--cron");
    assert!(cron.contains("CRON_TZ=Asia/Tokyo\n30 9 * * 1 cd "), "{cron}");

    let bad = Command::new(env!("CARGO_BIN_EXE_connrun"))
        .args(["schedule", "--cron", "--target", "orca-stage", "--at", "Monday 9am"])
        .output()
        .expect("run connrun schedule");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--at"), "the message names the flag");
}
