//! SIGHUP to a real `phr-server` process reloads `PHR_TLS_CLIENT_CRL`: the binary as an operator runs it, with
//! polling switched off (`PHR_TLS_CLIENT_CRL_RELOAD_SECONDS=0`) so that only the signal can have done it.

use std::time::Duration;

use devpki::{CrlSpec, LeafSpec};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::support::{self, Pki};

/// How long anything that should happen at once may take before it is called a hang.
const GUARD: Duration = Duration::from_secs(60);

/// Starts `phr-server serve` with `env` and returns it with its PHR and ops addresses (from its log line).
async fn spawn(env: &[(&str, String)]) -> (Child, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_phr-server"));
    command.arg("serve").env_clear().env("PHR_LOG_FORMAT", "json").env("PHR_LOG", "info");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.stderr(std::process::Stdio::piped()).kill_on_drop(true).spawn().expect("spawn phr-server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let listening = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if json["fields"]["message"] == "phr-server listening" {
                return json["fields"].clone();
            }
        }
        panic!("phr-server exited before listening");
    })
    .await
    .expect("phr-server did not start listening in time");
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let address = |key: &str| listening[key].as_str().expect("address in the log line").to_owned();
    (child, address("phr"), address("ops"))
}

/// The ops listener's `/metrics` of the process, polled until it has a line starting with `line`.
async fn wait_for_metric(ops: &str, line: &str) {
    let mut last = String::new();
    for _ in 0..3000 {
        last = reqwest::get(format!("http://{ops}/metrics")).await.expect("metrics").text().await.expect("text");
        if last.lines().any(|l| l.starts_with(line)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/metrics never showed {line:?}:\n{last}");
}

#[tokio::test]
async fn sighup_makes_a_running_server_process_reload_its_crl() {
    // Arrange: a server process whose CRL revokes nobody yet, and a client certificate about to be revoked.
    let pki = Pki::new();
    let leaving = pki.ca.issue(&LeafSpec::client("staff-leaving")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, contents: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    let crl = file("clients.crl", devpki::crl_pem(&pki.ca.revocation_list(&[], CrlSpec::current(1)).unwrap()));
    let env = [
        ("PHR_DATABASE_URL", format!("sqlite:{}", dir.path().join("phr.db").display())),
        ("PHR_LISTEN", "127.0.0.1:0".to_owned()),
        ("PHR_OPS_LISTEN", "127.0.0.1:0".to_owned()),
        ("PHR_TLS_CERT", file("server.pem", pki.server.chain_pem())),
        ("PHR_TLS_KEY", file("server.key", pki.server.key_pem())),
        ("PHR_TLS_CLIENT_CA", file("ca.pem", pki.ca.cert_pem())),
        ("PHR_TLS_CLIENT_CRL", crl.clone()),
        ("PHR_TLS_CLIENT_CRL_RELOAD_SECONDS", "0".to_owned()),
        ("PHR_LAYER_KEY_OPTIONAL", "true".to_owned()),
        ("PHR_IMAGE_STORE_DIR", dir.path().join("images").display().to_string()),
    ];
    let (mut child, phr, ops) = spawn(&env).await;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(support::client_tls(&pki.ca, Some(&leaving)))
        .resolve("localhost", phr.parse().unwrap())
        .build()
        .unwrap();
    let url =
        format!("https://localhost:{}/openDolphin/resources/20/adm/phr/allergy/P0001", phr.rsplit(':').next().unwrap());
    assert!(client.get(&url).send().await.is_ok(), "not yet revoked: the handshake completes");

    // Act: the CRL is replaced by one revoking the certificate, and the process gets SIGHUP.
    let next = dir.path().join("clients.crl.new");
    std::fs::write(&next, devpki::crl_pem(&pki.ca.revocation_list(&[&leaving], CrlSpec::current(2)).unwrap())).unwrap();
    std::fs::rename(&next, &crl).unwrap();
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id().expect("pid")).unwrap()).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP");
    wait_for_metric(&ops, "phr_tls_crl_reloads_total{result=\"ok\"} 1").await;

    // Assert: revoked without a restart, and counted.
    let fresh = reqwest::Client::builder()
        .tls_backend_preconfigured(support::client_tls(&pki.ca, Some(&leaving)))
        .resolve("localhost", phr.parse().unwrap())
        .build()
        .unwrap();
    assert!(fresh.get(&url).send().await.is_err(), "a revoked certificate completed the handshake");
    wait_for_metric(&ops, "phr_connections_closed_total{reason=\"certificate_revoked\"} 1").await;
    assert_eq!(child.try_wait().unwrap(), None, "SIGHUP must not end the process");
    child.kill().await.unwrap();
}
