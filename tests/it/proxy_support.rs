//! A real HTTP CONNECT proxy on loopback for the proxy tests: Debian's `tinyproxy`, started in the
//! foreground with a configuration written to a temporary folder, killed when the value is dropped.
//!
//! tinyproxy cannot listen on port 0, so a free port is found by binding port 0 and closing it; should
//! another process take it in between, tinyproxy exits and the start is tried again on another port.
//! Without tinyproxy the tests are skipped loudly; `REQUIRE_TINYPROXY=1` (set by `.ci/run`) makes that a
//! failure.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running tinyproxy.
pub struct Tinyproxy {
    /// The foreground process; killed on drop.
    child: Child,
    /// Where it listens (127.0.0.1).
    pub port: u16,
    /// Its log (CONNECT lines at `LogLevel Connect` and above).
    pub log: PathBuf,
    /// The folder of its configuration, log and pid file.
    _dir: tempfile::TempDir,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tinyproxy {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts tinyproxy allowing CONNECT to `connect_port` only, with Basic credentials when given; `None`
    /// (after a loud message) when tinyproxy is not installed and not required.
    pub fn start(connect_port: u16, basic: Option<(&str, &str)>) -> Option<Self> {
        let Some(binary) = binary() else {
            assert!(
                std::env::var("REQUIRE_TINYPROXY").as_deref() != Ok("1"),
                "REQUIRE_TINYPROXY=1 but tinyproxy is not installed (Debian: apt-get install tinyproxy)"
            );
            eprintln!(
                "!!! SKIPPING: tinyproxy is not installed (apt-get install tinyproxy); the proxy tests did NOT run !!!"
            );
            return None;
        };
        for _ in 0..10 {
            if let Some(proxy) = Self::try_start(&binary, connect_port, basic) {
                return Some(proxy);
            }
        }
        panic!("tinyproxy did not start on any of 10 free ports");
    }

    fn try_start(binary: &PathBuf, connect_port: u16, basic: Option<(&str, &str)>) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.path().join("tinyproxy.log");
        let mut config = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nConnectPort {connect_port}\n\
             MaxClients 32\nLogLevel Connect\nLogFile \"{}\"\nPidFile \"{}\"\n",
            log.display(),
            dir.path().join("tinyproxy.pid").display()
        );
        if let Some((user, password)) = basic {
            config.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let config_file = dir.path().join("tinyproxy.conf");
        std::fs::write(&config_file, config).unwrap();
        let mut child = Command::new(binary)
            .arg("-d")
            .arg("-c")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tinyproxy");
        // Ready when it accepts a connection; a port taken meanwhile makes it exit, and another is tried.
        for _ in 0..200 {
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Self { child, port, log, _dir: dir });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("tinyproxy"))
        .find(|candidate| candidate.is_file())
}
