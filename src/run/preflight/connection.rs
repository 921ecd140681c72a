//! The network checks of preflight: TCP connect, the TLS handshake, then one authenticated request over that
//! same connection.
//!
//! The request is the proof the run needs: that the server accepts our client certificate (TLS 1.3 says so
//! only after the handshake, as an alert on the first read) and our Basic credentials (a rotated password
//! used to pass preflight and fail every probe with 401). It goes through the probe engine's HTTP path, so
//! a rejected certificate is classified exactly as a probe would classify it. Each check's detail names
//! what it used: the host and port it connected to, the URL it requested and as whom.

use std::sync::Arc;
use std::time::Instant;

use http_body_util::BodyExt as _;
use tokio::time::timeout_at;

use super::{AuthRequest, PreflightInput};
use crate::evidence::{CheckResult, Outcome, Timings};
use crate::probe::request::{self, Endpoint, RequestBody};
use crate::probe::wire::SharedWireLog;
use crate::probe::{ProbeBody, ProbeSpec, connect, exchange};
use crate::redact::Redactor;

/// How much of the answer's body a check quotes (an error type, a server-info value).
const QUOTED_BODY_BYTES: usize = 300;

/// TCP connect, TLS handshake and the authenticated request, each a check; a check that could not run
/// because an earlier one failed is left out.
pub(super) async fn checks(
    input: &PreflightInput,
    config: Result<Arc<rustls::ClientConfig>, String>,
    redactor: &Redactor,
) -> Vec<CheckResult> {
    let endpoint = match request::endpoint(&input.base_url) {
        Ok(endpoint) => endpoint,
        Err(outcome) => return vec![CheckResult::new("tcp_connect", false, outcome.describe())],
    };
    let place = format!("{}:{}", endpoint.host, endpoint.port);
    let started = Instant::now();
    let deadline = connect::deadline(started, input.timeout);
    let log = SharedWireLog::default();
    let route = input.proxy.route(&endpoint.host, endpoint.port);
    let (mut timings, mut hop) = (Timings::default(), None);
    let opened = connect::open((&endpoint.host, endpoint.port), route, deadline, &log, &mut timings, &mut hop).await;
    let tcp = match opened {
        Ok(tcp) => tcp,
        Err(outcome) => {
            return vec![CheckResult::new("tcp_connect", false, format!("{place}: {}", outcome.describe()))];
        }
    };
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| endpoint.authority.clone());
    let ms = connect::elapsed_ms(started);
    let via = route.map_or_else(String::new, |r| format!(" through proxy {} ({}), tunnel open", r.url, r.source));
    let connected = CheckResult::new("tcp_connect", true, format!("{place}: connected to {peer}{via} in {ms:.1} ms"));
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            let failed = CheckResult::new("tls_handshake", false, format!("{place}: not attempted: {e}"));
            return vec![connected, failed];
        }
    };
    let handshake = match connect::tls_handshake(config, &endpoint.host, tcp, deadline).await {
        Ok(handshake) => handshake,
        Err(outcome) => {
            let failed = CheckResult::new("tls_handshake", false, format!("{place}: {}", outcome.describe()));
            return vec![connected, failed];
        }
    };
    let facts = &handshake.facts;
    let mut detail =
        format!("{place}: {} {} ALPN {}", facts.version, facts.cipher_suite, facts.alpn.as_deref().unwrap_or("none"));
    if let Some(leaf) = handshake.chain.first() {
        detail.push_str(&format!("; server {} ({} days left, SHA-256 {})", leaf.subject, leaf.days_left, leaf.sha256));
    }
    let chain = handshake.chain.clone();
    let url = format!("{}{}", input.base_url, input.auth.path);
    let (mut tls, auth) = match build_request(input, &url).await {
        Err(outcome) => {
            let tls = CheckResult::new("tls_handshake", true, format!("{detail}; no request was sent over it"));
            (tls, Some(CheckResult::new("basic_auth", false, redactor.text(&format!("{url}: {}", outcome.describe())))))
        }
        Ok(request) => match exchange::send_over(handshake.stream, request, &log, deadline).await {
            Err(outcome) => {
                let failed = format!("{detail}; then, on the first request: {}", outcome.describe());
                (CheckResult::new("tls_handshake", false, failed), None)
            }
            Ok(mut response) => {
                let body = quoted_body(&mut response.body, deadline, redactor).await;
                let tls = CheckResult::new("tls_handshake", true, format!("{detail}; {}", accepted(input)));
                (tls, Some(auth_check(&input.auth, &redactor.text(&url), response.head.status.as_u16(), &body)))
            }
        },
    };
    tls.certificates = chain;
    [connected, tls].into_iter().chain(auth).collect()
}

/// What the server's answer proves about the connection.
fn accepted(input: &PreflightInput) -> &'static str {
    match input.identity {
        Some(_) => "the server accepted the client certificate and answered over this connection",
        None => "the server answered over this connection",
    }
}

/// `GET <url>` with the request's headers and Basic credentials, built as a probe builds its requests.
async fn build_request(input: &PreflightInput, url: &str) -> Result<http::Request<RequestBody>, Outcome> {
    let spec = ProbeSpec {
        id: "preflight".to_owned(),
        name: "basic_auth".to_owned(),
        phase: "preflight".to_owned(),
        method: http::Method::GET,
        url: url.to_owned(),
        headers: input.auth.headers.clone(),
        body: ProbeBody::Empty,
        ready_statuses: input.auth.accepted.clone(),
        body_checks: Vec::new(),
        audit_expected: Vec::new(),
        timeout: input.timeout,
    };
    let endpoint: Endpoint = request::endpoint(url)?;
    let (request, _) = request::build(&spec, &endpoint, input.auth.basic.as_ref()).await?;
    Ok(request)
}

/// The start of the answer's body on one line, secrets masked (empty when there is none or it is late).
async fn quoted_body(body: &mut hyper::body::Incoming, deadline: tokio::time::Instant, redactor: &Redactor) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < QUOTED_BODY_BYTES {
        match timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(QUOTED_BODY_BYTES);
    let text = String::from_utf8_lossy(&bytes);
    redactor.text(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The `basic_auth` verdict on the answer's status: accepted, refused (naming where the password came
/// from), or not confirmed.
fn auth_check(auth: &AuthRequest, url: &str, status: u16, body: &str) -> CheckResult {
    let who = match &auth.basic {
        Some(basic) => format!(" as Basic user `{}`", basic.user),
        None => " without Basic credentials (the target has no [basic] section)".to_owned(),
    };
    let answer = if body.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status} (body: {body})") };
    let said = format!("GET {url}{who}: {answer}");
    match (status, &auth.basic) {
        (401, Some(_)) => {
            let from = auth.password_from.as_deref().unwrap_or("the target's [basic] password");
            let detail = format!(
                "{said}: the server refused the Basic credentials; check the password in {from} (and the user)"
            );
            CheckResult::new("basic_auth", false, detail)
        }
        (401, None) => CheckResult::new(
            "basic_auth",
            false,
            format!("{said}: the server asks for Basic credentials; add a [basic] section to the target"),
        ),
        (status, _) if auth.accepted.contains(&status) => {
            CheckResult::new("basic_auth", true, format!("{said}: accepted"))
        }
        _ => CheckResult::new(
            "basic_auth",
            false,
            format!("{said}: expected HTTP {:?}, so the credentials are not confirmed", auth.accepted),
        ),
    }
}
