//! Preflight: everything that must hold before a run is worth starting (HARNESS.md §7, issue item 9).
//!
//! The seed logs lost days to a PKCS#12 password, an expired certificate, a CA nobody had imported and a
//! Basic password that had been rotated, each found only when the first curl failed. Preflight checks what
//! the run will need, one thing at a time, and says which one is wrong and where its value came from: the
//! client identity decodes (and its key matches), its validity and fingerprint, the CA bundle, TCP connect,
//! the TLS handshake with the server's chain, one authenticated request over that same connection (which also
//! shows whether the server accepts our client certificate, something TLS 1.3 only reveals after the
//! handshake), the audit database and the tables and columns the run's SQL reads, and `/readyz`.
//!
//! Each check reports on what it really used: the host and port it connected to, the URL it requested, the
//! SQL files it ran. A check that could not run because an earlier one failed is left out rather than
//! reported. The inputs are plain values so callers can build them from a plan, a target or a test.

mod audit;
mod connection;

use std::sync::Arc;
use std::time::Duration;

use crate::evidence::{CertFacts, CheckResult};
use crate::plan::Plan;
use crate::plan::target::Target;
use crate::probe::identity::{ClientIdentitySource, TrustSource, client_tls_config, load_identity, load_trust};
use crate::probe::{BasicCredentials, certinfo, connect};

pub use audit::{DEFAULT_SCHEMA_SQL, SchemaQuery};

/// Limit for each preflight network check when the target sets no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The request preflight authenticates with when the template names no server-info probe (or there is no
/// template): the server-info path of PHR_API.md §3, which takes mTLS and Basic like every PHR call, answers
/// a few bytes of configuration and touches no patient data. It writes one `SERVER_INFO_FETCH` audit row.
pub const DEFAULT_AUTH_PATH: &str = "/openDolphin/resources/serverinfo/claim/conn";

/// A client certificate closer than this to its end of validity gets a renewal warning.
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
    /// The authenticated request sent over the checked TLS connection.
    pub auth: AuthRequest,
    /// The SQL that must run on the audit database without error: the run's queries, or the built-in check.
    pub audit_queries: Vec<SchemaQuery>,
    /// The proxy rules the probes follow, so the TCP/TLS checks take the probes' path. The audit database is
    /// reached directly (an HTTP CONNECT proxy is for HTTPS); `readyz_url` goes through reqwest, which
    /// follows the environment's proxy variables itself.
    pub proxy: crate::probe::proxy::ProxyRules,
}

/// The one authenticated request of preflight (the `basic_auth` check).
#[derive(Clone)]
pub struct AuthRequest {
    /// Path and query on the base URL, e.g. [`DEFAULT_AUTH_PATH`] or the template's server-info path.
    pub path: String,
    /// Headers to send (the template's and the target's, with a preflight X-Trace-Id).
    pub headers: Vec<(String, String)>,
    /// The target's Basic credentials, if it has any.
    pub basic: Option<BasicCredentials>,
    /// Where the Basic password was read from, named when the server refuses it.
    pub password_from: Option<String>,
    /// Statuses that mean the request went through (the server-info probe's Ready statuses; 200 by default).
    pub accepted: Vec<u16>,
}

impl PreflightInput {
    /// The checks `connrun preflight --target X` runs without a template: the default authenticated request
    /// and the built-in audit table check ([`DEFAULT_SCHEMA_SQL`]).
    pub fn for_target(target: &Target, timeout: Duration) -> Self {
        let mut headers = target.spec.headers.clone();
        set_header(&mut headers, "X-Trace-Id", &standalone_trace_id());
        if let Some(facility) = basic_user_facility(target) {
            add_header(&mut headers, "X-Facility-Id", &facility);
        }
        Self {
            base_url: target.spec.base_url.clone(),
            trust: target.spec.trust.clone(),
            identity: target.identity.clone(),
            audit_db_url: target.audit_db_url.clone(),
            readyz_url: target.spec.readyz_url.clone(),
            timeout: target.spec.timeout.unwrap_or(timeout),
            auth: AuthRequest {
                path: DEFAULT_AUTH_PATH.to_owned(),
                headers,
                basic: target.basic.clone(),
                password_from: target.spec.basic_password_origin(),
                accepted: vec![200],
            },
            audit_queries: vec![SchemaQuery::built_in()],
            proxy: target.proxy.clone(),
        }
    }

    /// The checks of a run's preflight: the template's server-info request (its path, headers and Ready
    /// statuses) with X-Trace-Id `<RUN_ID>-preflight`, and each of the template's audit queries on an empty
    /// time window.
    pub fn for_plan(plan: &Plan, timeout: Duration) -> Self {
        let mut input = Self::for_target(&plan.target, timeout);
        let trace_id = format!("{}-preflight", plan.run_id);
        match &plan.serverinfo {
            Some(spec) => {
                input.auth.path = crate::probe::request::endpoint(&spec.url)
                    .map_or_else(|_| DEFAULT_AUTH_PATH.to_owned(), |endpoint| endpoint.target);
                input.auth.headers = spec.headers.clone();
                input.auth.accepted = spec.ready_statuses.clone();
            }
            None => {
                if let Some(facility) = plan.variables.get("facility") {
                    add_header(&mut input.auth.headers, "X-Facility-Id", facility);
                }
            }
        }
        set_header(&mut input.auth.headers, "X-Trace-Id", &trace_id);
        input.audit_queries = audit::plan_queries(plan);
        input
    }

    /// The same checks outside a run (`connrun preflight --template T`): the request's X-Trace-Id becomes
    /// `connrun-preflight-<UTC time>` and no X-Run-Id claims a run that does not exist.
    pub fn outside_a_run(mut self) -> Self {
        self.auth.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("X-Run-Id"));
        set_header(&mut self.auth.headers, "X-Trace-Id", &standalone_trace_id());
        self
    }

    /// Every secret value of the input, masked in whatever a check quotes from the server.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(ClientIdentitySource::Pkcs12 { password, .. }) = &self.identity {
            secrets.push(password.clone());
        }
        if let Some(basic) = &self.auth.basic {
            secrets.push(basic.password.clone());
        }
        if let Some(password) = self.audit_db_url.as_deref().and_then(crate::plan::target::url_password) {
            secrets.push(password);
        }
        secrets.extend(self.proxy.secrets());
        secrets.retain(|s| !s.is_empty());
        secrets
    }
}

impl std::fmt::Debug for PreflightInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreflightInput")
            .field("base_url", &self.base_url)
            .field("trust", &self.trust)
            .field("identity", &self.identity)
            .field("audit_db_url", &self.audit_db_url.as_deref().map(crate::audit::masked_url))
            .field("readyz_url", &self.readyz_url)
            .field("auth_path", &self.auth.path)
            .field("audit_queries", &self.audit_queries.len())
            .finish()
    }
}

/// `connrun-preflight-20251119T013000Z`: joins no run's audit rows, and says when and what it was.
fn standalone_trace_id() -> String {
    format!("connrun-preflight-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// The facility of a Basic user written `F001:ops` (PHR_API.md §1), which phr-server also wants as
/// X-Facility-Id; the shipped templates send it from their `facility` variable.
fn basic_user_facility(target: &Target) -> Option<String> {
    let (user, _) = target.spec.basic.as_ref()?;
    user.split_once(':').map(|(facility, _)| facility.to_owned()).filter(|f| !f.is_empty())
}

/// Replaces the header `name` (any case) or adds it.
fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value.to_owned()));
}

/// Adds the header `name` unless one is already there.
fn add_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
        headers.push((name.to_owned(), value.to_owned()));
    }
}

/// Runs every check in order; never fails as a whole, each problem is one failed [`CheckResult`].
pub async fn preflight(input: &PreflightInput) -> Vec<CheckResult> {
    let mut results = identity_checks(input.identity.as_ref());
    results.push(trust_check(&input.trust));
    // An error already reported by the identity or trust check is only referred to by the checks that need it.
    let reported = results.iter().any(|r| !r.ok);
    let config = client_tls_config(&input.trust, input.identity.as_ref()).map(Arc::new).map_err(|e| {
        if reported {
            "no TLS configuration, because the identity or trust check failed".to_owned()
        } else {
            format!("no TLS configuration: {e}")
        }
    });
    let redactor = crate::redact::Redactor::new(input.secrets());
    results.extend(connection::checks(input, config.clone(), &redactor).await);
    if let Some(url) = &input.audit_db_url {
        results.extend(audit::checks(url, &input.audit_queries).await);
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

/// `GET readyz_url`: plain HTTP needs no TLS configuration; HTTPS uses the target's (trust and identity).
async fn readyz_check(url: &str, config: Result<Arc<rustls::ClientConfig>, String>, timeout: Duration) -> CheckResult {
    // The same bound as every other deadline: a limit beyond it means "no limit", never an overflow.
    let builder = reqwest::Client::builder().timeout(timeout.min(connect::LONGEST_LIMIT));
    let builder = match config {
        _ if url.starts_with("http://") => builder,
        Ok(config) => builder.tls_backend_preconfigured((*config).clone()),
        Err(e) => return CheckResult::new("readyz", false, format!("{url}: not attempted: {e}")),
    };
    let client = match builder.build() {
        Ok(client) => client,
        Err(e) => return CheckResult::new("readyz", false, format!("{url}: HTTP client: {e}")),
    };
    match client.get(url).send().await {
        Err(e) => CheckResult::new("readyz", false, format!("{url}: {}", crate::evidence::text::error_chain(&e))),
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            CheckResult::new("readyz", status.is_success(), format!("{url}: HTTP {} {}", status.as_u16(), body.trim()))
        }
    }
}
