//! Each way a server rejects the client's certificate, probed many times: TLS 1.3 reports the rejection
//! after the client considers the handshake done, so the server's alert races the request write and hyper's
//! connection task, and a classification that depends on who wins is wrong some of the time (the foreign-CA
//! case once read "protocol error: operation was canceled: connection was not ready" in 3 of 32 probes).
//! Real listeners on 127.0.0.1 with generated certificates, a multi-threaded runtime as the CLI uses.

use crate::probe_support;

use std::sync::Arc;

use connrun::evidence::{Outcome, ProbeRecord};
use connrun::probe::ProbeClient;
use connrun::probe::identity::{ClientIdentitySource, TrustSource, client_tls_config};
use connrun::redact::Redactor;
use devpki::LeafSpec;
use probe_support::{Pki, ServerKind};

/// A probe client with `identity` (or none), trusting the test CA.
fn client_with(pki: &Pki, identity: Option<ClientIdentitySource>) -> ProbeClient {
    let tls = client_tls_config(&TrustSource::CaBundle(pki.ca_bundle.clone()), identity.as_ref()).unwrap();
    ProbeClient::new(Arc::new(tls), None, Arc::new(Redactor::new(Vec::new())))
}

/// Foreign CA, no certificate and an expired one, over TLS 1.3 and 1.2: 32 probes each, 4 at a time, and
/// every one must be "client certificate rejected" naming the server's alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_rejection_is_classified_the_same_on_every_one_of_32_probes() {
    use futures::StreamExt as _;
    let pki = Pki::new();
    let (cert, key) = pki.client_pem();
    let expired = pki.ca.issue(&LeafSpec::client("ops-client").expired()).unwrap();
    let (expired_cert, expired_key) = (pki.dir.path().join("expired.crt"), pki.dir.path().join("expired.key"));
    std::fs::write(&expired_cert, expired.chain_pem()).unwrap();
    std::fs::write(&expired_key, expired.key_pem()).unwrap();
    let ours = Some(ClientIdentitySource::Pem { cert, key });
    let cases = [
        ("foreign CA, TLS 1.3", &pki.foreign_ca, false, ours.clone(), "unknown_ca"),
        ("foreign CA, TLS 1.2", &pki.foreign_ca, true, ours, "unknown_ca"),
        ("no certificate, TLS 1.3", &pki.ca, false, None, "certificate_required"),
        ("no certificate, TLS 1.2", &pki.ca, true, None, "certificate_required"),
        (
            "expired, TLS 1.3",
            &pki.ca,
            false,
            Some(ClientIdentitySource::Pem { cert: expired_cert, key: expired_key }),
            "certificate_expired",
        ),
    ];
    let run_dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (name, client_ca, tls12_only, identity, alert) in cases {
        let cert = pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
        let port = probe_support::start(ServerKind::Tls { cert, client_ca: Some(client_ca), tls12_only }).await.port();
        let client = client_with(&pki, identity);
        let probes = (0..32).map(|n| {
            let url = format!("https://127.0.0.1:{port}/ok");
            let spec = probe_support::get_spec(&format!("R{n:02}"), "identityToken", "C", url);
            let (client, dir) = (client.clone(), run_dir.path().to_owned());
            async move { client.run(&spec, "20251119TorcaPHRSeqZ1", &dir).await }
        });
        let records: Vec<ProbeRecord> = futures::stream::iter(probes).buffer_unordered(4).collect().await;

        let wrong: Vec<String> = records
            .iter()
            .filter(|r| {
                !matches!(&r.outcome, Outcome::ClientCertRejected { reason } if reason.contains(alert)) || r.ready
            })
            .map(|r| format!("  {}: {}", r.id, r.outcome.describe()))
            .collect();
        if !wrong.is_empty() {
            problems.push(format!(
                "{name}: {} of 32 not \"client certificate rejected ({alert})\":\n{}",
                wrong.len(),
                wrong.join("\n")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
