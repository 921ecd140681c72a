//! Probes against real TLS listeners on loopback, one per way a server can misbehave (hurl-style table).
//!
//! Each case starts its own listener with devpki certificates, runs one probe through the real client
//! (rustls + hyper) and checks the classified outcome, the HTTP status, Ready, and that the evidence files
//! exist. The failure message names every case that went wrong, not only the first.

use crate::probe_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use connrun::evidence::{Outcome, ProbeRecord};
use connrun::probe::identity::{ClientIdentitySource, TrustSource, client_tls_config};
use connrun::probe::{BasicCredentials, BodyCheck, ProbeBody, ProbeClient, ProbeSpec};
use connrun::redact::Redactor;
use devpki::LeafSpec;
use probe_support::{Pki, ServerKind};

const BASIC_PASSWORD: &str = "basic-Secret/9";
const CONSENT_TOKEN: &str = "consent-tok-42";

fn client(pki: &Pki) -> ProbeClient {
    let (cert, key) = pki.client_pem();
    let tls = client_tls_config(
        &TrustSource::CaBundle(pki.ca_bundle.clone()),
        Some(&ClientIdentitySource::Pem { cert, key }),
    )
    .unwrap();
    let basic = BasicCredentials { user: "ops".to_owned(), password: BASIC_PASSWORD.to_owned() };
    let redactor =
        Redactor::new([BASIC_PASSWORD.to_owned(), CONSENT_TOKEN.to_owned(), probe_support::P12_PASSWORD.to_owned()]);
    ProbeClient::new(Arc::new(tls), Some(basic), Arc::new(redactor))
}

fn spec(id: &str, url: String, timeout_ms: u64) -> ProbeSpec {
    ProbeSpec {
        id: id.to_owned(),
        name: "identityToken".to_owned(),
        phase: "C".to_owned(),
        method: http::Method::GET,
        url,
        headers: vec![
            ("X-Trace-Id".to_owned(), "20251119TorcaPHRSeqZ1".to_owned()),
            ("X-Consent-Token".to_owned(), CONSENT_TOKEN.to_owned()),
        ],
        body: ProbeBody::Empty,
        ready_statuses: vec![200, 403],
        body_checks: Vec::new(),
        audit_expected: vec!["PHR_LAYER_ID_TOKEN_ISSUE".to_owned()],
        timeout: Duration::from_millis(timeout_ms),
    }
}

/// What a case expects.
#[derive(Debug)]
enum Expect {
    Http { status: u16, ready: bool },
    Tls(&'static str),
    ClientCertRejected,
    Refused,
    Dns,
    Protocol,
    Timeout(&'static str),
}

/// Which listener a case runs against.
enum Server {
    Good,
    UnknownCa,
    Expired,
    OtherHost,
    WantsForeignClientCert {
        tls12_only: bool,
    },
    Silent,
    Refused,
    /// No server: the host name does not resolve (`.invalid` is reserved to never resolve).
    Nowhere,
    NotHttp,
}

struct Case {
    name: &'static str,
    server: Server,
    host: &'static str,
    path: &'static str,
    expect: Expect,
}

/// The URL to probe for `case`; a refused port is kept reserved in `held` until the test ends.
async fn url_for(pki: &Pki, case: &Case, held: &mut Vec<probe_support::RefusedPort>) -> String {
    let issue = |spec: LeafSpec| pki.ca.issue(&spec).unwrap();
    let tls = |cert| ServerKind::Tls { cert, client_ca: None, tls12_only: false };
    let port = match &case.server {
        Server::Good => probe_support::start(tls(issue(LeafSpec::loopback_server()))).await.port(),
        Server::UnknownCa => {
            let cert = pki.foreign_ca.issue(&LeafSpec::loopback_server()).unwrap();
            probe_support::start(tls(cert)).await.port()
        }
        Server::Expired => probe_support::start(tls(issue(LeafSpec::loopback_server().expired()))).await.port(),
        Server::OtherHost => {
            let spec = LeafSpec {
                common_name: "other.example".to_owned(),
                subject_alt_names: vec!["other.example".to_owned()],
                ..LeafSpec::loopback_server()
            };
            probe_support::start(tls(issue(spec))).await.port()
        }
        Server::WantsForeignClientCert { tls12_only } => {
            let kind = ServerKind::Tls {
                cert: issue(LeafSpec::loopback_server()),
                client_ca: Some(&pki.foreign_ca),
                tls12_only: *tls12_only,
            };
            probe_support::start(kind).await.port()
        }
        Server::Silent => probe_support::start(ServerKind::Silent).await.port(),
        Server::NotHttp => {
            probe_support::start(ServerKind::NotHttp { cert: issue(LeafSpec::loopback_server()) }).await.port()
        }
        Server::Refused | Server::Nowhere => {
            let refused = probe_support::refused_port();
            let port = refused.port;
            held.push(refused);
            port
        }
    };
    format!("https://{}:{port}{}", case.host, case.path)
}

/// Why `record` does not match `expect`, if it does not.
fn mismatch(expect: &Expect, record: &ProbeRecord) -> Option<String> {
    let ok = match (expect, &record.outcome) {
        (Expect::Http { status, ready }, Outcome::Http) => {
            record.http_status == Some(*status) && record.ready == *ready
        }
        (Expect::Tls(words), Outcome::TlsFailure { reason }) => {
            reason.contains(words) && !record.server_chain.is_empty()
        }
        (Expect::ClientCertRejected, Outcome::ClientCertRejected { .. }) => true,
        (Expect::Refused, Outcome::ConnectionRefused { .. }) => true,
        (Expect::Dns, Outcome::DnsFailure { .. }) => true,
        (Expect::Protocol, Outcome::ProtocolError { .. }) => true,
        (Expect::Timeout(phase), Outcome::Timeout { during }) => during == phase,
        _ => false,
    };
    let failed_is_not_ready = matches!(expect, Expect::Http { .. }) || !record.ready;
    (!ok || !failed_is_not_ready).then(|| {
        format!("expected {expect:?}, got {:?} status {:?} ready {}", record.outcome, record.http_status, record.ready)
    })
}

fn assert_evidence_files(run_dir: &Path, id: &str) -> Vec<String> {
    let files = [
        format!("httpdump/{id}/status.txt"),
        format!("httpdump/{id}/request.http"),
        format!("httpdump/{id}/response.headers"),
        format!("trace/{id}_trace.log"),
    ];
    files.iter().filter(|f| !run_dir.join(f).is_file()).map(|f| format!("missing {f}")).collect()
}

#[tokio::test]
async fn each_kind_of_server_gives_its_outcome_and_complete_evidence() {
    let pki = Pki::new();
    let client = client(&pki);
    let run_dir = tempfile::tempdir().unwrap();
    let cases = [
        Case {
            name: "valid chain",
            server: Server::Good,
            host: "localhost",
            path: "/ok",
            expect: Expect::Http { status: 200, ready: true },
        },
        Case {
            name: "PHR path missing (404)",
            server: Server::Good,
            host: "127.0.0.1",
            path: "/20/adm/phr/image",
            expect: Expect::Http { status: 404, ready: false },
        },
        Case {
            name: "method not allowed (405)",
            server: Server::Good,
            host: "127.0.0.1",
            path: "/20/adm/phr/identityToken",
            expect: Expect::Http { status: 405, ready: false },
        },
        Case {
            name: "unknown CA",
            server: Server::UnknownCa,
            host: "127.0.0.1",
            path: "/ok",
            expect: Expect::Tls("unknown CA"),
        },
        Case {
            name: "expired server certificate",
            server: Server::Expired,
            host: "127.0.0.1",
            path: "/ok",
            expect: Expect::Tls("certificate expired"),
        },
        Case {
            name: "certificate for another host",
            server: Server::OtherHost,
            host: "127.0.0.1",
            path: "/ok",
            expect: Expect::Tls("name mismatch"),
        },
        Case {
            name: "client cert from another CA (TLS 1.3)",
            server: Server::WantsForeignClientCert { tls12_only: false },
            host: "127.0.0.1",
            path: "/ok",
            expect: Expect::ClientCertRejected,
        },
        Case {
            name: "client cert from another CA (TLS 1.2)",
            server: Server::WantsForeignClientCert { tls12_only: true },
            host: "127.0.0.1",
            path: "/ok",
            expect: Expect::ClientCertRejected,
        },
        Case { name: "refused port", server: Server::Refused, host: "127.0.0.1", path: "/ok", expect: Expect::Refused },
        Case {
            name: "TLS then something that is not HTTP",
            server: Server::NotHttp,
            host: "127.0.0.1",
            path: "/ok",
            expect: Expect::Protocol,
        },
        Case {
            name: "host name does not resolve",
            server: Server::Nowhere,
            host: "no-such-host.invalid",
            path: "/ok",
            expect: Expect::Dns,
        },
        Case {
            name: "accepts but never speaks TLS",
            server: Server::Silent,
            host: "127.0.0.1",
            path: "/ok",
            expect: Expect::Timeout("tls"),
        },
        Case {
            name: "TLS but never answers HTTP",
            server: Server::Good,
            host: "127.0.0.1",
            path: "/slow",
            expect: Expect::Timeout("response"),
        },
    ];

    let mut problems = Vec::new();
    let mut held = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let id = format!("CASE-{index:02}");
        let url = url_for(&pki, case, &mut held).await;
        // Cases that must time out wait a few seconds: "TLS but never answers HTTP" has to finish its handshake
        // within the limit, or it times out during "tls" instead (400 ms was not enough on a loaded CI machine).
        // The others only wait when something is broken, so they get ample room (a resolver that is slow to
        // say that `.invalid` does not exist, a loaded machine).
        let timeout_ms = if matches!(case.expect, Expect::Timeout(_)) { 3_000 } else { 60_000 };
        let record = client.run(&spec(&id, url, timeout_ms), "20251119TorcaPHRSeqZ1", run_dir.path()).await;
        println!("{}: {:?} {}", case.name, record.http_status, record.outcome.describe());
        if let Some(why) = mismatch(&case.expect, &record) {
            problems.push(format!("{}: {why}", case.name));
        }
        problems.extend(assert_evidence_files(run_dir.path(), &id).into_iter().map(|m| format!("{}: {m}", case.name)));
    }

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn successful_probe_records_tls_chain_timings_and_redacted_evidence() {
    let pki = Pki::new();
    let server = pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
    let addr =
        probe_support::start(ServerKind::Tls { cert: server, client_ca: Some(&pki.ca), tls12_only: false }).await;
    let run_dir = tempfile::tempdir().unwrap();
    let mut spec = spec("PHR-06", format!("https://127.0.0.1:{}/ok?token=signed-url-secret", addr.port()), 30_000);
    spec.body_checks =
        vec![BodyCheck::JsonField("/token".to_owned()), BodyCheck::Contains("echo_authorization".to_owned())];

    let record = client(&pki).run(&spec, "20251119TorcaPHRSeqZ1", run_dir.path()).await;

    assert_eq!(record.outcome, Outcome::Http);
    assert_eq!(record.http_status, Some(200));
    assert!(record.ready, "{:?}", record.check_failures);
    let tls = record.tls.as_ref().unwrap();
    assert_eq!((tls.version.as_str(), tls.alpn.as_deref()), ("TLSv1.3", Some("http/1.1")));
    assert_eq!(record.server_chain.len(), 2);
    assert!(record.server_chain[0].subject.contains("CN=localhost"));
    assert!(record.server_chain[1].subject.contains("probe-test Test CA"));
    assert!(record.timings.total_ms >= record.timings.tls_ms);
    assert!(record.url.ends_with("?token=<MASKED>"), "{}", record.url);
    assert!(record.request_headers.contains(&("Authorization".to_owned(), "Basic <MASKED>".to_owned())));
    assert_eq!(record.response_body_file.as_deref(), Some("httpdump/PHR-06/response.body"));
    let dump = run_dir.path().join("httpdump/PHR-06");
    let request = std::fs::read_to_string(dump.join("request.http")).unwrap();
    assert!(request.starts_with("GET /ok?token=<MASKED> HTTP/1.1\r\n"), "{request}");
    assert!(request.contains("Authorization: Basic <MASKED>\r\n"), "{request}");
    assert!(request.contains("X-Consent-Token: <MASKED>\r\n"), "{request}");
    assert!(request.contains("X-Trace-Id: 20251119TorcaPHRSeqZ1\r\n"), "{request}");
    let headers = std::fs::read_to_string(dump.join("response.headers")).unwrap();
    assert!(headers.starts_with("HTTP/1.1 200 OK\r\n"), "{headers}");
    assert!(headers.contains("set-cookie: session=<MASKED>; Path=/; HttpOnly"), "{headers}");
    let status = std::fs::read_to_string(dump.join("status.txt")).unwrap();
    for line in ["run_id=20251119TorcaPHRSeqZ1", "api=PHR-06", "http_code=200", "error=", "method=GET", "ready=true"] {
        assert!(status.lines().any(|l| l == line), "{line} missing in\n{status}");
    }
    let trace = std::fs::read_to_string(run_dir.path().join("trace/PHR-06_trace.log")).unwrap();
    assert!(trace.contains("== Info: TLS connection using TLSv1.3"), "{trace}");
    assert!(trace.contains("=> Send data") && trace.contains("<= Recv data"), "{trace}");
    assert_no_secret_anywhere(run_dir.path());
}

/// Scans every byte of every file under `dir` for each secret in raw, base64 and URL-encoded form.
fn assert_no_secret_anywhere(dir: &Path) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let needles = [
        BASIC_PASSWORD.to_owned(),
        b64.encode(format!("ops:{BASIC_PASSWORD}")),
        b64.encode(BASIC_PASSWORD),
        "basic-Secret%2F9".to_owned(),
        CONSENT_TOKEN.to_owned(),
        "signed-url-secret".to_owned(),
        "abc123".to_owned(),
        probe_support::ISSUED_JWT.rsplit('.').next().unwrap().to_owned(),
    ];
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} found in {}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn large_response_is_gzipped_and_file_body_is_streamed() {
    let pki = Pki::new();
    let addr = probe_support::start(ServerKind::Tls {
        cert: pki.ca.issue(&LeafSpec::loopback_server()).unwrap(),
        client_ca: None,
        tls12_only: false,
    })
    .await;
    let run_dir = tempfile::tempdir().unwrap();
    let upload = pki.dir.path().join("image.bin");
    std::fs::write(&upload, vec![0xA5u8; 300 * 1024]).unwrap();
    let client = client(&pki);
    let mut post = spec("PHR-07", format!("https://127.0.0.1:{}/upload", addr.port()), 30_000);
    post.method = http::Method::POST;
    post.body = ProbeBody::File(upload);
    post.body_checks = vec![BodyCheck::Contains(format!("received {} bytes", 300 * 1024))];

    let large = client
        .run(&spec("PHR-11", format!("https://127.0.0.1:{}/large", addr.port()), 30_000), "R", run_dir.path())
        .await;
    let uploaded = client.run(&post, "R", run_dir.path()).await;

    assert_eq!(large.response_body_file.as_deref(), Some("httpdump/PHR-11/response.body.gz"));
    assert_eq!(large.response_body_bytes, 200 * 1024);
    assert!(!run_dir.path().join("httpdump/PHR-11/response.body").exists());
    let trace = std::fs::read(run_dir.path().join("trace/PHR-11_trace.log")).unwrap();
    assert!(String::from_utf8_lossy(&trace).contains("more bytes received (not shown)"));
    assert!(trace.len() < 150 * 1024, "the trace holds {} bytes of a 200 KiB body", trace.len());
    assert!(uploaded.ready, "{:?} {:?}", uploaded.outcome, uploaded.check_failures);
    assert_eq!(uploaded.request_body_bytes, 300 * 1024);
    let request = std::fs::read(run_dir.path().join("httpdump/PHR-07/request.http")).unwrap();
    let request = String::from_utf8_lossy(&request);
    assert!(request.contains("Content-Length: 307200\r\n"), "{}", &request[..200]);
    assert!(request.contains("more bytes sent (not shown)"));
}

#[tokio::test]
async fn unreadable_body_file_is_a_local_error_not_a_panic() {
    let pki = Pki::new();
    let run_dir = tempfile::tempdir().unwrap();
    let mut post = spec("PHR-07", "https://127.0.0.1:9/upload".to_owned(), 1000);
    post.method = http::Method::POST;
    post.body = ProbeBody::File(pki.dir.path().join("missing.bin"));

    let record = client(&pki).run(&post, "R", run_dir.path()).await;

    assert!(
        matches!(&record.outcome, Outcome::LocalError { message } if message.contains("missing.bin")),
        "{:?}",
        record.outcome
    );
    assert!(!record.ready);
    assert!(run_dir.path().join("httpdump/PHR-07/status.txt").is_file());
}

#[tokio::test]
async fn failed_body_check_keeps_the_http_outcome_but_is_not_ready() {
    let pki = Pki::new();
    let addr = probe_support::start(ServerKind::Tls {
        cert: pki.ca.issue(&LeafSpec::loopback_server()).unwrap(),
        client_ca: None,
        tls12_only: false,
    })
    .await;
    let run_dir = tempfile::tempdir().unwrap();
    let mut spec = spec("PHR-06", format!("https://127.0.0.1:{}/ok", addr.port()), 30_000);
    spec.body_checks = vec![BodyCheck::JsonField("/layerId".to_owned())];

    let record = client(&pki).run(&spec, "R", run_dir.path()).await;

    assert_eq!((record.outcome, record.http_status, record.ready), (Outcome::Http, Some(200), false));
    assert_eq!(record.check_failures, ["JSON field /layerId is missing"]);
    let status = std::fs::read_to_string(run_dir.path().join("httpdump/PHR-06/status.txt")).unwrap();
    assert!(status.contains("check_failures=JSON field /layerId is missing\n"), "{status}");
}

#[test]
fn probe_futures_can_run_on_any_worker_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let pki = Pki::new();
    let client = client(&pki);
    let spec = spec("PHR-06", "https://127.0.0.1:9/ok".to_owned(), 10);
    let run_dir = tempfile::tempdir().unwrap();

    let future = client.run(&spec, "R", run_dir.path());

    assert_send(&future);
}

/// `timeout_seconds = 18446744073709551615` once panicked with "overflow when adding duration to instant":
/// a limit that large means "no limit", never a crash.
#[tokio::test]
async fn a_limit_too_large_for_the_clock_is_no_limit_not_a_panic() {
    let pki = Pki::new();
    let cert = pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
    let addr = probe_support::start(ServerKind::Tls { cert, client_ca: None, tls12_only: false }).await;
    let run_dir = tempfile::tempdir().unwrap();
    let mut spec = spec("PHR-06", format!("https://127.0.0.1:{}/ok", addr.port()), 0);
    spec.timeout = Duration::from_secs(u64::MAX);

    let record = client(&pki).run(&spec, "R", run_dir.path()).await;

    assert_eq!((record.outcome, record.http_status), (Outcome::Http, Some(200)));
}
