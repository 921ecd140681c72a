//! How probes travel: through a real HTTP CONNECT proxy (tinyproxy on loopback) from `HTTPS_PROXY` or a
//! target's `[proxy]`, around it with `NO_PROXY`, again after a dropped connection (`retries`), and by hand
//! with the `curl.sh` written beside each probe, run with the real `curl`.
//!
//! Targets are loaded from a `targets.toml` written in the test and resolved with the environment given as
//! a map (the process environment is shared by every test thread), then prepared exactly as a run does.

use crate::probe_support::{self, P12_PASSWORD, Pki, ServerKind};
use crate::proxy_support::Tinyproxy;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use connrun::evidence::{Outcome, ProbeRecord};
use connrun::plan::target::Targets;
use connrun::probe::ProbeSpec;
use devpki::{LeafSpec, Pkcs12Flavor};

const PROXY_USER: &str = "proxyops";
const PROXY_PASSWORD: &str = "Prx-pass-7731";
const WRONG_PROXY_PASSWORD: &str = "Wrong-pass-4410";
const BASIC_PASSWORD_VALUE: &str = probe_support::BASIC_PASSWORD;

/// A folder with the PKI files, a targets file and a run folder.
struct Setup {
    pki: Pki,
    run_dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self { pki: Pki::new(), run_dir: tempfile::tempdir().unwrap() }
    }

    /// Writes `targets.toml` with one target `t` (base URL, CA bundle, PKCS#12 identity and Basic by
    /// environment variable) plus `extra` lines, and resolves it with `env`.
    fn target(&self, base_url: &str, extra: &str, env: &[(&str, &str)]) -> connrun::plan::target::Target {
        let p12 = self.pki.client_p12(Pkcs12Flavor::Modern);
        let text = format!(
            "[targets.t]\nbase_url = \"{base_url}\"\n{extra}\n\
             [targets.t.tls]\nca_bundle = \"{}\"\n\
             [targets.t.identity]\np12 = \"{}\"\npassword_env = \"T_P12_PASSWORD\"\n\
             [targets.t.basic]\nuser = \"{}\"\npassword_env = \"T_BASIC_PASSWORD\"\n",
            self.pki.ca_bundle.display(),
            p12.display(),
            probe_support::BASIC_USER,
        );
        let file = self.pki.dir.path().join("targets.toml");
        std::fs::write(&file, &text).unwrap();
        let mut vars: HashMap<String, String> =
            [("T_P12_PASSWORD", P12_PASSWORD), ("T_BASIC_PASSWORD", BASIC_PASSWORD_VALUE)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let targets = Targets::parse(&file, &text).expect("targets");
        targets.resolve_with_env("t", &|name| vars.get(name).cloned()).expect("target")
    }

    async fn probe(&self, target: &connrun::plan::target::Target, spec: &ProbeSpec) -> ProbeRecord {
        let prepared = connrun::run::prepare(target).expect("prepare");
        prepared.client.run(spec, "20251203TproxyZ1", self.run_dir.path()).await
    }

    fn dump(&self, id: &str, file: &str) -> String {
        std::fs::read_to_string(self.run_dir.path().join("httpdump").join(id).join(file)).unwrap_or_default()
    }

    /// Every file written under the run folder, as text.
    fn all_evidence(&self) -> String {
        fn walk(dir: &Path, out: &mut String) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path: PathBuf = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
                }
            }
        }
        let mut out = String::new();
        walk(self.run_dir.path(), &mut out);
        out
    }
}

/// A loopback mTLS server demanding a client certificate of the test CA.
async fn mtls_server(pki: &Pki) -> u16 {
    let cert = pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
    probe_support::start(ServerKind::Tls { cert, client_ca: Some(&pki.ca), tls12_only: false }).await.port()
}

fn serverinfo(id: &str, port: u16) -> ProbeSpec {
    let url = format!("https://localhost:{port}/openDolphin/resources/serverinfo/claim/conn");
    probe_support::get_spec(id, "serverInfo", "A", url)
}

#[tokio::test]
async fn a_probe_through_https_proxy_reaches_the_mtls_server_and_the_proxy_saw_the_connect() {
    let setup = Setup::new();
    let port = mtls_server(&setup.pki).await;
    let Some(proxy) = Tinyproxy::start(port, None) else { return };
    let target = setup.target(&format!("https://localhost:{port}"), "", &[("HTTPS_PROXY", &proxy.url())]);

    let record = setup.probe(&target, &serverinfo("SI-1", port)).await;

    assert_eq!((record.http_status, record.ready), (Some(200), true), "{:?}", record.outcome);
    let hop = record.proxy.as_ref().expect("the record shows the proxy hop");
    assert_eq!(
        (hop.url.as_str(), hop.source.as_str(), hop.connect_status),
        (proxy.url().as_str(), "HTTPS_PROXY", Some(200))
    );
    assert!(record.timings.proxy_ms > 0.0, "the CONNECT phase is timed");
    assert!(proxy.log_text().contains(&format!("CONNECT localhost:{port}")), "{}", proxy.log_text());
    assert!(setup.dump("SI-1", "status.txt").contains(&format!("proxy={} (HTTPS_PROXY) CONNECT 200", proxy.url())));
    assert!(setup.dump("SI-1", "curl.sh").contains("--proxy \"${HTTPS_PROXY}\""));
    let note = connrun::report::wording::transport_ja(&record);
    assert!(note.starts_with(&format!("プロキシ経由（{}、HTTPS_PROXY、CONNECT 200", proxy.url())), "{note}");
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy_by_name_and_a_port_entry_only_for_its_port() {
    let setup = Setup::new();
    let port = mtls_server(&setup.pki).await;
    let Some(proxy) = Tinyproxy::start(port, None) else { return };
    let base = format!("https://localhost:{port}");

    let bypassed = setup.target(&base, "", &[("https_proxy", &proxy.url()), ("no_proxy", ".example.jp, localhost")]);
    let direct = setup.probe(&bypassed, &serverinfo("SI-direct", port)).await;
    let other_port = format!("localhost:{}", port.wrapping_add(1));
    let not_bypassed = setup.target(&base, "", &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", &other_port)]);
    let proxied = setup.probe(&not_bypassed, &serverinfo("SI-proxied", port)).await;

    assert_eq!((direct.http_status, direct.proxy.as_ref()), (Some(200), None));
    assert!(setup.dump("SI-direct", "curl.sh").contains("--noproxy '*'"));
    assert_eq!(proxied.http_status, Some(200));
    assert_eq!(proxied.proxy.as_ref().map(|p| p.source.as_str()), Some("HTTPS_PROXY"));
    assert_eq!(proxy.log_text().matches(&format!("CONNECT localhost:{port}")).count(), 1, "{}", proxy.log_text());
}

#[tokio::test]
async fn a_targets_own_proxy_with_credentials_works_and_a_wrong_password_is_a_407_naming_the_variable() {
    let setup = Setup::new();
    let port = mtls_server(&setup.pki).await;
    let Some(proxy) = Tinyproxy::start(port, Some((PROXY_USER, PROXY_PASSWORD))) else { return };
    let table = format!(
        "[targets.t.proxy]\nurl = \"{}\"\nuser = \"{PROXY_USER}\"\npassword_env = \"T_PROXY_PASSWORD\"\n",
        proxy.url()
    );
    let base = format!("https://localhost:{port}");
    // The environment's proxy is ignored for a target with its own.
    let good =
        setup.target(&base, &table, &[("T_PROXY_PASSWORD", PROXY_PASSWORD), ("HTTPS_PROXY", "http://127.0.0.1:9")]);
    let bad = setup.target(&base, &table, &[("T_PROXY_PASSWORD", WRONG_PROXY_PASSWORD)]);
    let anonymous = setup.target(&base, &format!("[targets.t.proxy]\nurl = \"{}\"\n", proxy.url()), &[]);

    let through = setup.probe(&good, &serverinfo("SI-auth", port)).await;
    let refused = setup.probe(&bad, &serverinfo("SI-401", port)).await;
    let unasked = setup.probe(&anonymous, &serverinfo("SI-407", port)).await;

    assert_eq!((through.http_status, through.ready), (Some(200), true), "{:?}", through.outcome);
    let hop = through.proxy.as_ref().unwrap();
    assert_eq!((hop.source.as_str(), hop.user.as_deref()), ("targets.t.proxy", Some(PROXY_USER)));
    // tinyproxy answers wrong credentials with 401 and missing ones with 407; both name what to fix.
    let Outcome::ProxyFailure { message } = &refused.outcome else { panic!("{:?}", refused.outcome) };
    assert!(message.contains("proxy authentication refused"), "{message}");
    assert!(
        message.contains("password from environment variable T_PROXY_PASSWORD (targets.t.proxy.password_env"),
        "{message}"
    );
    assert_eq!(refused.proxy.as_ref().and_then(|p| p.connect_status), Some(401));
    assert!(refused.retried.is_empty(), "a proxy's refusal is never retried");
    let Outcome::ProxyFailure { message } = &unasked.outcome else { panic!("{:?}", unasked.outcome) };
    assert!(message.contains("answered 407 (Proxy Authentication Required)"), "{message}");
    assert!(message.contains("give the target's proxy.user and proxy.password_env"), "{message}");
    assert!(connrun::report::wording::outcome_ja(&unasked.outcome).starts_with("プロキシが CONNECT を拒否した（"));
    let curl = setup.dump("SI-auth", "curl.sh");
    assert!(curl.contains(&format!("--proxy-user '{PROXY_USER}:'\"${{T_PROXY_PASSWORD}}\"")), "{curl}");
    let evidence = setup.all_evidence();
    for secret in [PROXY_PASSWORD, WRONG_PROXY_PASSWORD, P12_PASSWORD, BASIC_PASSWORD_VALUE] {
        assert!(!evidence.contains(secret), "a secret reached the evidence");
    }
}

#[tokio::test]
async fn a_dropped_first_connection_is_retried_and_recorded_but_a_certificate_verdict_never_is() {
    let setup = Setup::new();
    let cert = setup.pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
    let flaky = probe_support::start(ServerKind::DropsFirst { cert: cert.clone(), drops: 1 }).await.port();
    let also_flaky = probe_support::start(ServerKind::DropsFirst { cert, drops: 1 }).await.port();
    let foreign = setup.pki.foreign_ca.issue(&LeafSpec::loopback_server()).unwrap();
    let untrusted =
        probe_support::start(ServerKind::Tls { cert: foreign, client_ca: None, tls12_only: false }).await.port();
    let retrying = "retries = 3\nretry_backoff_ms = 10";

    let healed = setup.probe(&setup.target("https://localhost:1", retrying, &[]), &serverinfo("SI-retry", flaky)).await;
    let once = setup.probe(&setup.target("https://localhost:1", "", &[]), &serverinfo("SI-once", also_flaky)).await;
    let verdict =
        setup.probe(&setup.target("https://localhost:1", retrying, &[]), &serverinfo("SI-ca", untrusted)).await;

    assert_eq!((healed.http_status, healed.ready), (Some(200), true), "{:?}", healed.outcome);
    assert_eq!(healed.retried.len(), 1, "{:?}", healed.retried);
    assert_eq!(healed.retried[0].attempt, 1);
    assert!(
        matches!(healed.retried[0].outcome, Outcome::TlsFailure { .. } | Outcome::ConnectFailed { .. }),
        "{:?}",
        healed.retried[0].outcome
    );
    let note = connrun::report::wording::transport_ja(&healed);
    assert!(note.starts_with("再試行 1 回で成功（1 回目: "), "{note}");
    assert!(setup.dump("SI-retry", "status.txt").contains("retried=1: "));
    assert!(!once.ready && once.retried.is_empty(), "without retries the blip stays a failure: {:?}", once.outcome);
    assert!(matches!(verdict.outcome, Outcome::TlsFailure { ref reason } if reason.starts_with("unknown CA")));
    assert!(verdict.retried.is_empty(), "a certificate rejection is deterministic and never retried");
}

#[tokio::test]
async fn curl_sh_reproduces_the_probe_with_the_real_curl_and_holds_no_secret() {
    let setup = Setup::new();
    let port = mtls_server(&setup.pki).await;
    let target = setup.target(&format!("https://localhost:{port}"), "", &[]);
    let mut spec = serverinfo("SI-curl", port);
    spec.headers.push(("X-Note".to_owned(), "it's $(touch /nonexistent/x) \"q\" `id` \\ ;|&".to_owned()));
    let mut unauthorized = spec.clone();
    unauthorized.id = "SI-404".to_owned();
    // Every shell-special character a valid URL can hold: ' $ ( ) ; & ! *
    unauthorized.url = format!("https://localhost:{port}/missing?q='$(id)'&x=$HOME;a!*");

    let record = setup.probe(&target, &spec).await;
    let missing = setup.probe(&target, &unauthorized).await;

    for (id, expected) in [("SI-curl", record.http_status), ("SI-404", missing.http_status)] {
        let script = setup.dump(id, "curl.sh");
        for secret in [P12_PASSWORD, BASIC_PASSWORD_VALUE] {
            assert!(!script.contains(secret), "{id}: curl.sh holds a secret");
        }
        // Asynchronously: the server runs on this test's runtime.
        let output = tokio::process::Command::new("sh")
            .arg(setup.run_dir.path().join("httpdump").join(id).join("curl.sh"))
            .env("T_P12_PASSWORD", P12_PASSWORD)
            .env("T_BASIC_PASSWORD", BASIC_PASSWORD_VALUE)
            .output()
            .await
            .expect("sh curl.sh (is curl installed?)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let replayed = stdout.lines().rev().find_map(|l| l.strip_prefix("connrun-replay: HTTP ")).unwrap_or("none");
        assert_eq!(
            Some(replayed.parse::<u16>().unwrap_or(0)),
            expected,
            "{id}: {script}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!((record.http_status, missing.http_status), (Some(200), Some(404)));
}
