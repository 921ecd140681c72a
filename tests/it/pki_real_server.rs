//! The README's "Running phr-server for real" commands, run exactly as written (between the
//! `real-server:begin/end` markers), against the real `phr-server` binary on loopback.
//!
//! Two things differ from a newcomer's terminal, and only these: `cargo build --release` is not re-run (the
//! test harness built both binaries already, and `./target/release/` is replaced by that folder), and
//! `pki init` gets free loopback ports so parallel tests never collide. The run templates are found through
//! `CONNRUN_RUN_TEMPLATES` because the commands run in a scratch folder, not in the checkout.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The commands of the README block, in order.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let block = readme
        .split("<!-- real-server:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- real-server:end -->").next())
        .expect("README has the real-server block");
    block.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("```")).map(str::to_owned).collect()
}

/// The folder holding the built `connrun` and `phr-server` binaries.
pub(crate) fn binaries() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_connrun")).parent().expect("bin folder").to_owned();
    if !dir.join("phr-server").is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "phr-server", "--bin", "phr-server"])
            .current_dir(root())
            .status()
            .expect("cargo build phr-server");
        assert!(status.success(), "phr-server did not build");
    }
    dir
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub(crate) fn bash(dir: &Path, script: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("CONNRUN_RUN_TEMPLATES", root().join("run-templates"))
        .env_remove("CONNRUN_TARGETS")
        .env_remove("CONNRUN_ARTIFACTS");
    command
}

/// Waits until the ops listener's `/readyz` answers 200 (the server is up and migrated).
pub(crate) fn wait_ready(port: u16, server: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        assert!(server.try_wait().expect("poll server").is_none(), "phr-server exited before it was ready");
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read as _, Write as _};
            let _ = stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("phr-server was not ready on port {port} within two minutes");
}

/// Stops the server (the process is phr-server itself: the shell `exec`s it).
pub(crate) struct Stop(pub(crate) Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_real_server_commands_work_end_to_end() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 5, "the README promises five commands: {commands:?}");
    assert_eq!(commands[0], "cargo build --release");
    let bin = binaries();
    let local = |c: &str| c.replace("./target/release/", &format!("{}/", bin.display()));
    let scratch = tempfile::tempdir().expect("temp dir");
    let (phr, ops) = (free_port(), free_port());

    let init = format!("{} --listen 127.0.0.1:{phr} --ops-listen 127.0.0.1:{ops}", local(&commands[1]));
    let made = bash(scratch.path(), &init).output().expect("pki init");
    assert!(made.status.success(), "pki init: {}", String::from_utf8_lossy(&made.stderr));
    let secrets = [
        "server.key",
        "client.p12",
        "client.p12.password",
        "layer.pk8",
        "ops.password",
        "phr-server.env",
        "audit-signing.pk8.pem",
    ];
    for secret in secrets {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(scratch.path().join("pki").join(secret)).expect(secret).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{secret} must be readable by its owner only");
    }
    let again = bash(scratch.path(), &init).output().expect("pki init again");
    assert!(!again.status.success(), "a second pki init must refuse to overwrite the folder");

    // The fourth command is `migrate && seed && serve`: the first two run to completion, then the shell
    // `exec`s the server so the test holds the server process itself and can stop exactly it.
    let steps: Vec<String> = commands[3].split(" && ").map(local).collect();
    assert_eq!(steps.len(), 3, "migrate, seed, serve: {}", commands[3]);
    let load = local(&commands[2]);
    let prepared = bash(scratch.path(), &format!("{load} && {} && {}", steps[0], steps[1])).output().expect("migrate");
    assert!(prepared.status.success(), "migrate/seed: {}", String::from_utf8_lossy(&prepared.stderr));
    let server = bash(scratch.path(), &format!("{load} && exec {}", steps[2]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start phr-server");
    let mut stop = Stop(server);
    wait_ready(ops, &mut stop.0);

    let run = bash(scratch.path(), &local(&commands[4])).output().expect("connrun run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("result: OK"), "{stdout}");
    for probe in ["serverinfo", "PHR-06", "PHR-07", "PHR-11"] {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(probe)).unwrap_or_default();
        assert!(line.contains("HTTP 200") && line.contains("ready"), "{probe}: {stdout}");
    }
    let secret = std::fs::read_to_string(scratch.path().join("pki/client.p12.password")).expect("password file");
    assert!(!stdout.contains(secret.trim()), "the .p12 password was printed");
}
