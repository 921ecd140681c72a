//! The machine-readable records of a run: what one probe found and what one preflight check found.
//!
//! `ProbeRecord` is what `status.json` stores for each probe and what every later command (reports, HAR,
//! JUnit, `diff`) reads back, so it is plain serde data with no behaviour: a failed probe is an [`Outcome`]
//! value here, never an error that stops the run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything recorded about one probe; `status.json`'s per-probe entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// Probe id from the template (e.g. `PHR-06`), the key operators use in logs and tables.
    pub id: String,
    /// Human name of the endpoint (e.g. `identityToken`).
    pub name: String,
    /// Phase the probe belongs to (e.g. `C`), so reports can group by phase.
    pub phase: String,
    /// HTTP method as sent.
    pub method: String,
    /// Request URL with secrets (e.g. `token=`) masked.
    pub url: String,
    /// When the probe started (UTC); joins the probe to audit rows by time window.
    pub started_at: DateTime<Utc>,
    /// How the probe ended: an HTTP response or a classified failure.
    pub outcome: Outcome,
    /// Status code when an HTTP response arrived.
    pub http_status: Option<u16>,
    /// Status in the probe's ready list and every body check passed.
    pub ready: bool,
    /// One line per failed body check, for the report's memo column.
    pub check_failures: Vec<String>,
    /// Phase timings in milliseconds, curl `-w` style.
    pub timings: Timings,
    /// Negotiated TLS parameters, when the handshake completed.
    pub tls: Option<TlsFacts>,
    /// The server's certificate chain as presented (leaf first), for expiry and fingerprint tracking.
    pub server_chain: Vec<CertFacts>,
    /// Request headers as sent on the wire, redacted.
    pub request_headers: Vec<(String, String)>,
    /// Response headers as received, redacted.
    pub response_headers: Vec<(String, String)>,
    /// Request body size in bytes.
    pub request_body_bytes: u64,
    /// Response body size in bytes (before any gzip of the evidence file).
    pub response_body_bytes: u64,
    /// Lower-case hex SHA-256 of the response body, so runs can be compared without the bodies.
    pub response_body_sha256: Option<String>,
    /// Body file relative to the run folder, e.g. `httpdump/PHR-06/response.body.gz`.
    pub response_body_file: Option<String>,
    /// Audit actions the probe should produce, copied from the template for the audit comparison.
    pub audit_expected: Vec<String>,
    /// Requests sent for a polled probe (the evidence is the last one's); absent for single-shot probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The proxy the probe went through (HTTP CONNECT), so the evidence shows the hop; absent when direct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyFacts>,
    /// Attempts that failed at the connection level and were retried, oldest first; the record itself is
    /// the last attempt. Empty when the first attempt stood (a retry is never silent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<FailedAttempt>,
}

impl ProbeRecord {
    /// `HTTP code` of a probe as the logs write it: `200`, or `000 <failure kind>`.
    pub fn http_code(&self) -> String {
        self.http_status.map_or_else(|| format!("000 {}", self.outcome.kind()), |s| s.to_string())
    }
}

/// How a probe ended. Every failure mode an operator meets with curl has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// An HTTP response arrived (any status; readiness is judged separately).
    Http,
    /// The host name did not resolve.
    DnsFailure { message: String },
    /// The TCP connection was actively refused (nothing listening).
    ConnectionRefused { message: String },
    /// Any other TCP connect error (unreachable network, reset, ...).
    ConnectFailed { message: String },
    /// The TLS handshake failed on our side, e.g. "unknown CA", "certificate expired", "name mismatch".
    TlsFailure { reason: String },
    /// The server alerted on our client certificate (bad_certificate, unknown_ca, certificate_required, ...).
    ClientCertRejected { reason: String },
    /// The probe's timeout elapsed; `during` is "dns", "connect", "tls", "response" or "body".
    Timeout { during: String },
    /// The server spoke something that is not valid HTTP/1.1, or closed the connection early.
    ProtocolError { message: String },
    /// Something on our side failed, e.g. the request body file is unreadable or evidence could not be written.
    LocalError { message: String },
    /// The proxy refused the tunnel (407 proxy authentication required, 403, 5xx) or broke it off; the
    /// message names the proxy and, for 407, where the proxy password comes from.
    ProxyFailure { message: String },
}

impl Outcome {
    /// Short label for tables and summaries, e.g. `tls_failure`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Http => "http",
            Outcome::DnsFailure { .. } => "dns_failure",
            Outcome::ConnectionRefused { .. } => "connection_refused",
            Outcome::ConnectFailed { .. } => "connect_failed",
            Outcome::TlsFailure { .. } => "tls_failure",
            Outcome::ClientCertRejected { .. } => "client_cert_rejected",
            Outcome::Timeout { .. } => "timeout",
            Outcome::ProtocolError { .. } => "protocol_error",
            Outcome::LocalError { .. } => "local_error",
            Outcome::ProxyFailure { .. } => "proxy_failure",
        }
    }

    /// One-line human description, e.g. `TLS failure: unknown CA`; empty for [`Outcome::Http`].
    pub fn describe(&self) -> String {
        match self {
            Outcome::Http => String::new(),
            Outcome::DnsFailure { message } => format!("DNS failure: {message}"),
            Outcome::ConnectionRefused { message } => format!("connection refused: {message}"),
            Outcome::ConnectFailed { message } => format!("connect failed: {message}"),
            Outcome::TlsFailure { reason } => format!("TLS failure: {reason}"),
            Outcome::ClientCertRejected { reason } => format!("client certificate rejected: {reason}"),
            Outcome::Timeout { during } => format!("timeout during {during}"),
            Outcome::ProtocolError { message } => format!("protocol error: {message}"),
            Outcome::LocalError { message } => format!("local error: {message}"),
            Outcome::ProxyFailure { message } => format!("proxy failure: {message}"),
        }
    }
}

/// Phase timings in milliseconds; a phase that never happened stays 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Name resolution.
    pub dns_ms: f64,
    /// TCP connect.
    pub connect_ms: f64,
    /// TLS handshake.
    pub tls_ms: f64,
    /// From sending the request to the response head (curl's time_starttransfer minus pretransfer).
    pub ttfb_ms: f64,
    /// From the start of the probe until the body was fully stored.
    pub total_ms: f64,
    /// The HTTP CONNECT exchange with the proxy (after the TCP connect to it, before TLS); 0 when direct.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub proxy_ms: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

/// The proxy hop of a probe, without any credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyFacts {
    /// The proxy as `http://host:port` (user info never kept).
    pub url: String,
    /// Where the proxy came from: `HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`, or `targets.<name>.proxy`.
    pub source: String,
    /// The proxy user sent in `Proxy-Authorization`, when there was one (the password never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The proxy's answer to CONNECT (200, 407, 403, ...); absent when it gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_status: Option<u16>,
}

/// One attempt of a probe that failed at the connection level and was sent again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedAttempt {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it started (UTC).
    pub started_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// Its phase timings.
    pub timings: Timings,
}

/// Negotiated TLS parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFacts {
    /// e.g. `TLSv1.3`.
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// Negotiated ALPN protocol, e.g. `http/1.1`, if any.
    pub alpn: Option<String>,
}

/// Facts about one X.509 certificate, enough to track expiry and spot a swapped certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFacts {
    /// Subject distinguished name (RFC 4514 style).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, colon-free lower-case hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the DER, colon-separated upper-case hex like `openssl x509 -fingerprint -sha256`.
    pub sha256: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// Public key type and size, e.g. `RSA 2048` or `EC 256`, so `diff` can tell a weaker replacement.
    /// Absent in runs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyFacts>,
    /// Signature algorithm's short name, e.g. `sha256WithRSAEncryption` (dotted OID when unnamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_algorithm: Option<String>,
}

/// A certificate's public key: its type and size in bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFacts {
    /// `RSA`, `EC`, `DSA` or `other`.
    pub kind: String,
    /// Key size in bits (the modulus for RSA, the field for EC).
    pub bits: u32,
}

impl std::fmt::Display for KeyFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.bits)
    }
}

/// One preflight check's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    /// Short check name: `identity`, `client_certificate`, `trust`, `tcp_connect`, `tls_handshake`,
    /// `basic_auth`, `audit_db`, `audit_schema`, `readyz`.
    pub name: String,
    /// Whether the check passed.
    pub ok: bool,
    /// Human detail (fingerprint, days left, error message).
    pub detail: String,
    /// Certificates the check looked at (client chain or server chain), for the evidence.
    #[serde(default)]
    pub certificates: Vec<CertFacts>,
}

impl CheckResult {
    /// A check with no certificates attached.
    pub fn new(name: &str, ok: bool, detail: impl Into<String>) -> Self {
        Self { name: name.to_owned(), ok, detail: detail.into(), certificates: Vec::new() }
    }
}
