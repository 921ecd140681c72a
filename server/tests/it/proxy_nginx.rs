//! phr-server behind a real L4 balancer: Debian's nginx with its stream module passes the TLS connection
//! through (`proxy_protocol on;` sends a v1 header), and the audit row gets the address the client connected
//! to nginx from, not nginx's. The client binds 127.0.0.2 so the two differ; nginx runs as a child process of
//! the test (`daemon off; master_process off;`, its own prefix, config, pid file and logs in a temporary
//! folder) and is killed with it. Without nginx the test is skipped loudly; `REQUIRE_NGINX=1` (CI) makes that
//! a failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use phr_server::config::proxy::{ProxyProtocol, ProxyProtocolMode};

use crate::support::{self, Options, TestServer};

/// How long nginx may take to listen before it is called a hang.
const GUARD: Duration = Duration::from_secs(60);

/// nginx on PATH or in /usr/sbin, or `None` (loudly; a panic under `REQUIRE_NGINX=1`).
fn nginx_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("nginx")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_NGINX").as_deref() != Ok("1"),
            "REQUIRE_NGINX=1 but nginx is not installed (Debian: apt-get install nginx libnginx-mod-stream)"
        );
        eprintln!(
            "\n!!! SKIPPING the nginx PROXY protocol test: nginx not found; REQUIRE_NGINX=1 makes this a failure\n"
        );
    }
    found
}

/// A running nginx, killed when dropped.
struct Nginx {
    /// The nginx process (single process: killing it leaves no worker behind).
    child: std::process::Child,
    /// Where clients connect.
    listen: SocketAddr,
    /// Prefix, configuration and logs.
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx on a free loopback port, passing TCP to `upstream` with a PROXY v1 header.
    fn start(binary: &Path, upstream: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listen = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        // Debian builds the stream module as a dynamic module; elsewhere it may be built in.
        let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
        let load = if module.is_file() { format!("load_module {};\n", module.display()) } else { String::new() };
        let d = dir.path().display();
        let config = format!(
            "{load}daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             stream {{\n  server {{\n    listen {listen};\n    proxy_pass {upstream};\n    proxy_protocol on;\n  }}\n}}\n"
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nginx");
        Self { child, listen, dir }
    }

    /// Waits until nginx accepts connections (or has exited, which is a failure with its error log).
    async fn ready(&mut self) {
        let deadline = tokio::time::Instant::now() + GUARD;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited ({status}):\n{}", self.log());
            }
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nginx did not listen on {} in time:\n{}", self.listen, self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

#[tokio::test]
async fn through_a_real_nginx_stream_proxy_the_audit_row_has_the_clients_address() {
    let Some(binary) = nginx_binary() else { return };
    // Arrange: phr-server trusts only nginx (127.0.0.1); the client comes from 127.0.0.2.
    let proxy_protocol = ProxyProtocol::new(ProxyProtocolMode::Any, vec!["127.0.0.1/32".parse().unwrap()]);
    let options = Options { proxy_protocol, seed_patients: 1, ..Options::default() };
    let server = TestServer::start(support::sqlite(), options).await;
    let mut nginx = Nginx::start(&binary, server.phr_addr);
    nginx.ready().await;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(support::client_tls(&server.pki.ca, Some(&server.pki.client)))
        .resolve("localhost", nginx.listen)
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();

    // Act
    let response = client
        .get(format!("https://localhost:{}/openDolphin/resources/20/adm/phr/allergy/P0001", nginx.listen.port()))
        .basic_auth(format!("{}:{}", support::FACILITY, support::USER), Some(support::PASSWORD))
        .header("X-Trace-Id", "pp-nginx")
        .header("X-Facility-Id", support::FACILITY)
        .send()
        .await
        .unwrap_or_else(|e| panic!("through nginx: {e:?}\n{}", nginx.log()));

    // Assert
    assert_eq!(response.status(), 200);
    let ips: Vec<Option<String>> = phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_scalar("SELECT ip_address FROM d_audit_event WHERE trace_id = 'pp-nginx'")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(ips, [Some("127.0.0.2".to_owned())], "the audit row must name the client, not nginx");
    server.stop().await;
}
