//! Preflight: everything that must hold before a run is worth starting (HARNESS.md §7, issue item 9).
//!
//! The seed logs lost days to a PKCS#12 password, an expired certificate and a CA nobody had imported,
//! each found only when the first curl failed. Preflight checks them one by one and says which one is
//! wrong: the client identity decodes (and its key matches), its validity and fingerprint, the CA bundle,
//! TCP connect, the TLS handshake with the server's chain (and whether the server then accepts our client
//! certificate, which TLS 1.3 only reveals after the handshake), the audit database, and `/readyz`.
//! It is defined over plain parameters so callers can build it from any target description.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout_at;

use crate::audit::{AuditDb, masked_url};
use crate::evidence::{CertFacts, CheckResult, Outcome};
use crate::probe::certinfo;
use crate::probe::identity::{ClientIdentitySource, TrustSource, client_tls_config, load_identity, load_trust};
use crate::probe::{classify, connect, request};

/// A client certificate closer than this to its end of validity gets a renewal warning.
/// Limit for each preflight network check when the target sets no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const RENEW_WARNING_DAYS: i64 = 30;

/// What to check.
#[derive(Clone)]
pub struct PreflightInput {
    /// The target's base URL (`https://host:port`); host and port of the TCP/TLS checks.
    pub base_url: String,
    /// CA bundle or system roots.
    pub trust: TrustSource,
    /// Client identity, if the target uses mTLS.
    pub identity: Option<ClientIdentitySource>,
    /// Audit database URL (secret), if the target has one.
    pub audit_db_url: Option<String>,
    /// Operational readiness URL, if the target names one.
    pub readyz_url: Option<String>,
    /// Limit for each network check.
    pub timeout: Duration,
}

impl PreflightInput {
    /// The checks for a resolved target (secrets already read).
    pub fn for_target(target: &crate::plan::target::Target, timeout: Duration) -> Self {
        Self {
            base_url: target.spec.base_url.clone(),
            trust: target.spec.trust.clone(),
            identity: target.identity.clone(),
            audit_db_url: target.audit_db_url.clone(),
            readyz_url: target.spec.readyz_url.clone(),
            timeout: target.spec.timeout.unwrap_or(timeout),
        }
    }
}

impl std::fmt::Debug for PreflightInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreflightInput")
            .field("base_url", &self.base_url)
            .field("trust", &self.trust)
            .field("identity", &self.identity)
            .field("audit_db_url", &self.audit_db_url.as_deref().map(masked_url))
            .field("readyz_url", &self.readyz_url)
            .finish()
    }
}

/// Runs every check in order; never fails as a whole, each problem is one failed [`CheckResult`].
pub async fn preflight(input: &PreflightInput) -> Vec<CheckResult> {
    let mut results = identity_checks(input.identity.as_ref());
    results.push(trust_check(&input.trust));
    let config = client_tls_config(&input.trust, input.identity.as_ref());
    let config = match config {
        Ok(config) => Ok(Arc::new(config)),
        Err(e) => Err(e.to_string()),
    };
    results.extend(connection_checks(input, config.clone()).await);
    if let Some(url) = &input.audit_db_url {
        results.push(audit_check(url).await);
    }
    if let Some(url) = &input.readyz_url {
        results.push(readyz_check(url, config, input.timeout).await);
    }
    results
}

fn identity_checks(identity: Option<&ClientIdentitySource>) -> Vec<CheckResult> {
    let Some(source) = identity else {
        return vec![CheckResult::new("identity", true, "no client identity configured (no mTLS)")];
    };
    let loaded = match load_identity(source) {
        Ok(loaded) => loaded,
        Err(e) => return vec![CheckResult::new("identity", false, e.to_string())],
    };
    let chain: Vec<CertFacts> = loaded.chain.iter().filter_map(|der| certinfo::cert_facts(der).ok()).collect();
    let Some(leaf) = chain.first().cloned() else {
        return vec![CheckResult::new("identity", false, "the client certificate cannot be parsed as X.509")];
    };
    let mut decoded = CheckResult::new(
        "identity",
        true,
        format!("{} decodes: {} with its private key, {} certificate(s)", describe(source), leaf.subject, chain.len()),
    );
    decoded.certificates = chain;
    let now = chrono::Utc::now();
    let (ok, verdict) = if leaf.not_after < now {
        (false, "EXPIRED".to_owned())
    } else if leaf.not_before > now {
        (false, "NOT YET VALID".to_owned())
    } else if leaf.days_left < RENEW_WARNING_DAYS {
        (true, format!("{} days left, renew soon", leaf.days_left))
    } else {
        (true, format!("{} days left", leaf.days_left))
    };
    let mut validity = CheckResult::new(
        "client_certificate",
        ok,
        format!(
            "{verdict}: valid {} to {}, issuer {}, serial {}, SHA-256 {}",
            leaf.not_before, leaf.not_after, leaf.issuer, leaf.serial, leaf.sha256
        ),
    );
    validity.certificates = vec![leaf];
    vec![decoded, validity]
}

fn describe(source: &ClientIdentitySource) -> String {
    match source {
        ClientIdentitySource::Pkcs12 { path, .. } => format!("PKCS#12 {}", path.display()),
        ClientIdentitySource::Pem { cert, key } => format!("PEM {} + {}", cert.display(), key.display()),
    }
}

fn trust_check(trust: &TrustSource) -> CheckResult {
    let what = match trust {
        TrustSource::CaBundle(path) => format!("CA bundle {}", path.display()),
        TrustSource::SystemRoots => "system roots".to_owned(),
    };
    match load_trust(trust) {
        Ok(roots) => CheckResult::new("trust", true, format!("{what}: {} CA certificate(s)", roots.len())),
        Err(e) => CheckResult::new("trust", false, e.to_string()),
    }
}

/// TCP connect, TLS handshake, then one HEAD request to learn whether the server accepts our certificate.
async fn connection_checks(
    input: &PreflightInput,
    config: Result<Arc<rustls::ClientConfig>, String>,
) -> Vec<CheckResult> {
    let endpoint = match request::endpoint(&input.base_url) {
        Ok(endpoint) => endpoint,
        Err(outcome) => return vec![CheckResult::new("tcp_connect", false, outcome.describe())],
    };
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + input.timeout);
    let log = crate::probe::wire::SharedWireLog::default();
    let tcp = match connect::resolve(&endpoint.host, endpoint.port, deadline).await {
        Ok(addrs) => connect::tcp_connect(&addrs, deadline, &log).await,
        Err(outcome) => Err(outcome),
    };
    let tcp = match tcp {
        Ok(tcp) => tcp,
        Err(outcome) => return vec![CheckResult::new("tcp_connect", false, outcome.describe())],
    };
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| endpoint.authority.clone());
    let connected =
        CheckResult::new("tcp_connect", true, format!("connected to {peer} in {:.1} ms", connect::elapsed_ms(started)));
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            return vec![connected, CheckResult::new("tls_handshake", false, format!("no TLS configuration: {e}"))];
        }
    };
    let handshake = match connect::tls_handshake(config, &endpoint.host, tcp, deadline).await {
        Ok(handshake) => handshake,
        Err(outcome) => return vec![connected, CheckResult::new("tls_handshake", false, outcome.describe())],
    };
    let facts = &handshake.facts;
    let mut detail =
        format!("{} {} ALPN {}", facts.version, facts.cipher_suite, facts.alpn.as_deref().unwrap_or("none"));
    if let Some(leaf) = handshake.chain.first() {
        detail.push_str(&format!("; server {} ({} days left, SHA-256 {})", leaf.subject, leaf.days_left, leaf.sha256));
    }
    let chain = handshake.chain.clone();
    let accepted = first_response_byte(handshake.stream, &endpoint.authority, deadline).await;
    let mut tls = match accepted {
        Ok(()) => {
            CheckResult::new("tls_handshake", true, format!("{detail}; the server answered over this connection"))
        }
        Err(outcome) => CheckResult::new("tls_handshake", false, format!("{detail}; then: {}", outcome.describe())),
    };
    tls.certificates = chain;
    vec![connected, tls]
}

/// Sends `HEAD /` and waits for the first byte of the answer: with TLS 1.3 a rejected client certificate
/// only shows here, as an alert on the first read.
async fn first_response_byte(
    mut stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    authority: &str,
    deadline: tokio::time::Instant,
) -> Result<(), Outcome> {
    let request =
        format!("HEAD / HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: connrun-preflight\r\nConnection: close\r\n\r\n");
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut first = [0u8; 1];
        stream.read(&mut first).await
    };
    match timeout_at(deadline, exchange).await {
        Err(_) => Err(Outcome::Timeout { during: "response".to_owned() }),
        Ok(Err(e)) => Err(classify::handshake_error(&e)),
        Ok(Ok(0)) => {
            Err(Outcome::ProtocolError { message: "the server closed the connection without answering".to_owned() })
        }
        Ok(Ok(_)) => Ok(()),
    }
}

async fn audit_check(url: &str) -> CheckResult {
    let started = Instant::now();
    let db = match AuditDb::connect(url).await {
        Ok(db) => db,
        Err(e) => return CheckResult::new("audit_db", false, e.to_string()),
    };
    let outcome = db.query_text("select 1").await;
    match outcome.error {
        None => CheckResult::new(
            "audit_db",
            true,
            format!("{}: select 1 answered in {:.1} ms", masked_url(url), connect::elapsed_ms(started)),
        ),
        Some(error) => CheckResult::new("audit_db", false, format!("{}: select 1 failed: {error}", masked_url(url))),
    }
}

async fn readyz_check(url: &str, config: Result<Arc<rustls::ClientConfig>, String>, timeout: Duration) -> CheckResult {
    let config = match config {
        Ok(config) => (*config).clone(),
        Err(e) => return CheckResult::new("readyz", false, format!("{url}: no TLS configuration: {e}")),
    };
    let client = match reqwest::Client::builder().tls_backend_preconfigured(config).timeout(timeout).build() {
        Ok(client) => client,
        Err(e) => return CheckResult::new("readyz", false, format!("{url}: HTTP client: {e}")),
    };
    match client.get(url).send().await {
        Err(e) => CheckResult::new("readyz", false, format!("{url}: {}", error_chain(&e))),
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            CheckResult::new("readyz", status.is_success(), format!("{url}: HTTP {} {}", status.as_u16(), body.trim()))
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
