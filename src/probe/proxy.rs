//! The proxy hop: which probes go through an HTTP CONNECT proxy, and the tunnel opened before TLS.
//!
//! A clinic's network often lets HTTPS out only through a proxy. The rules are curl's: a target's own
//! `proxy` wins; otherwise `https_proxy`/`HTTPS_PROXY` (then `all_proxy`/`ALL_PROXY`) applies unless the host
//! is listed in `no_proxy`/`NO_PROXY` (matched by hyper-util's `Matcher`: names, `.suffixes`, IPs and CIDR
//! ranges, `*`; connrun adds `host:port` entries, which bypass only that port). The tunnel is hyper-util's
//! `Tunnel` over the TCP stream already connected to the proxy, so the TLS handshake and mutual TLS run
//! end to end with the server, exactly as without a proxy. A refusal (407 or 401, 403, a broken tunnel) is an
//! [`Outcome::ProxyFailure`] naming the proxy and, for 407/401, where the password comes from. The proxy's
//! password lives only in the `Proxy-Authorization` header of the CONNECT, which is never logged.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use super::wire::SharedWireLog;
use crate::evidence::curl::CurlProxy;
use crate::evidence::{Outcome, ProxyFacts};

/// The proxy's answer kept to read its status line (a CONNECT answer is a few hundred bytes).
const ANSWER_KEPT: usize = 8 * 1024;

/// One proxy to tunnel through.
#[derive(Clone)]
pub struct ProxyRoute {
    /// Host to connect to (no brackets).
    pub host: String,
    /// Port (curl's default 1080 when the URL has none).
    pub port: u16,
    /// `http://host:port`, never with credentials: what the evidence shows.
    pub url: String,
    /// Where the proxy came from, e.g. `HTTPS_PROXY` or `targets.orca-stage.proxy`.
    pub source: String,
    /// Credentials for `Proxy-Authorization: Basic`.
    pub auth: Option<ProxyAuth>,
    /// How `curl.sh` names this proxy (credentials by reference).
    pub curl: CurlProxy,
}

/// Proxy credentials; the password is never printed.
#[derive(Clone)]
pub struct ProxyAuth {
    /// Proxy user.
    pub user: String,
    /// Proxy password (a secret: masked by the redactor, absent from Debug).
    pub password: String,
    /// Where the password comes from, for a 407 message: `environment variable X (targets.t.proxy...)`.
    pub from: String,
}

impl std::fmt::Debug for ProxyRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.auth.as_ref().map(|a| a.user.as_str());
        f.debug_struct("ProxyRoute").field("url", &self.url).field("source", &self.source).field("user", &user).finish()
    }
}

/// `NO_PROXY` as given, matched the way curl reads it.
#[derive(Clone)]
pub struct NoProxy {
    /// `no_proxy` or `NO_PROXY`, for the evidence.
    pub var: String,
    /// Every entry is `*`: nothing goes through the environment proxy.
    all: bool,
    /// Entries without a port (names, suffixes, IPs, CIDR), through hyper-util's curl-compatible matcher.
    plain: Arc<Matcher>,
    /// `host:port` entries: the host rules apply to that port only.
    ported: Arc<Vec<(Matcher, u16)>>,
}

impl std::fmt::Debug for NoProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoProxy").field("var", &self.var).finish_non_exhaustive()
    }
}

impl NoProxy {
    /// Parses a `NO_PROXY` value read from `var`.
    pub fn parse(var: &str, value: &str) -> Self {
        let mut plain = Vec::new();
        let mut ported = Vec::new();
        let mut all = false;
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                all = true;
            } else if let Some((host, port)) = split_port(entry) {
                ported.push((bypass_matcher(host), port));
            } else {
                plain.push(entry);
            }
        }
        Self { var: var.to_owned(), all, plain: Arc::new(bypass_matcher(&plain.join(","))), ported: Arc::new(ported) }
    }

    /// Whether `host:port` bypasses the proxy.
    pub fn bypasses(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let Ok(uri) = format!("https://{}:{port}/", bracketed(host)).parse::<http::Uri>() else { return false };
        self.plain.intercept(&uri).is_none()
            || self.ported.iter().any(|(matcher, p)| *p == port && matcher.intercept(&uri).is_none())
    }
}

/// A matcher that intercepts everything except what `no` lists (the proxy URL is a placeholder).
fn bypass_matcher(no: &str) -> Matcher {
    Matcher::builder().https("http://no-proxy.invalid:1").no(no.to_owned()).build()
}

/// `host:8443` or `[::1]:8443` → (host, port); a bare IPv6 address or a name has no port.
fn split_port(entry: &str) -> Option<(&str, u16)> {
    if entry.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let (host, port) = entry.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (!host.is_empty() && !host.contains(':') || host.parse::<std::net::Ipv6Addr>().is_ok()).then_some((host, port))
}

fn bracketed(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

/// Which proxy, if any, each probe of a target goes through.
#[derive(Clone, Debug, Default)]
pub struct ProxyRules {
    /// The target's own `proxy`: used for every probe of the target (`NO_PROXY` does not apply to it).
    pub configured: Option<ProxyRoute>,
    /// The environment's proxy (`https_proxy`, `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY`).
    pub env: Option<ProxyRoute>,
    /// The environment's `no_proxy`/`NO_PROXY`.
    pub no_proxy: Option<NoProxy>,
}

impl ProxyRules {
    /// The proxy for `host:port`, or `None` to connect directly.
    pub fn route(&self, host: &str, port: u16) -> Option<&ProxyRoute> {
        if let Some(configured) = &self.configured {
            return Some(configured);
        }
        let env = self.env.as_ref()?;
        match &self.no_proxy {
            Some(no) if no.bypasses(host, port) => None,
            _ => Some(env),
        }
    }

    /// Every proxy password, for the redactor.
    pub fn secrets(&self) -> Vec<String> {
        [&self.configured, &self.env]
            .into_iter()
            .flatten()
            .filter_map(|route| route.auth.as_ref().map(|a| a.password.clone()))
            .filter(|p| !p.is_empty())
            .collect()
    }
}

impl ProxyRoute {
    /// The record's `proxy` field (no password), with the CONNECT answer's status when one came.
    pub fn facts(&self, connect_status: Option<u16>) -> ProxyFacts {
        ProxyFacts {
            url: self.url.clone(),
            source: self.source.clone(),
            user: self.auth.as_ref().map(|a| a.user.clone()),
            connect_status,
        }
    }
}

/// Opens the CONNECT tunnel to `host:port` over `tcp` (already connected to the proxy). Returns the stream
/// to run TLS over, and the proxy's status either way.
pub async fn tunnel(
    tcp: TcpStream,
    route: &ProxyRoute,
    host: &str,
    port: u16,
    deadline: tokio::time::Instant,
    log: &SharedWireLog,
) -> (Result<TcpStream, Outcome>, Option<u16>) {
    let target = format!("{}:{port}", bracketed(host));
    let Ok(dst) = format!("https://{target}/").parse::<http::Uri>() else {
        return (Err(Outcome::LocalError { message: format!("{target} cannot be the target of a CONNECT") }), None);
    };
    let answer = Arc::new(Mutex::new(Vec::new()));
    let handoff = Handoff(Some(TokioIo::new(Recorder { inner: tcp, answer: Arc::clone(&answer) })));
    let proxy_uri = http::Uri::try_from(route.url.as_str()).unwrap_or_default();
    let mut tunnel = Tunnel::new(proxy_uri, handoff);
    if let Some(auth) = &route.auth {
        tunnel = tunnel.with_auth(basic_header(&auth.user, &auth.password));
    }
    let user = route.auth.as_ref().map_or_else(String::new, |a| format!(" as proxy user {}", a.user));
    log.info(format!("CONNECT {target} via proxy {} ({}){user}", route.url, route.source));
    let result = timeout_at(deadline, tower_service::Service::call(&mut tunnel, dst)).await;
    let status = status_line(&answer.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    if let Some((_, line)) = &status {
        log.info(format!("proxy answered: {line}"));
    }
    let code = status.map(|(code, _)| code);
    let outcome = match result {
        Err(_) => Err(Outcome::Timeout { during: "proxy".to_owned() }),
        Ok(Ok(io)) => Ok(io.into_inner().inner),
        Ok(Err(error)) => Err(refusal(&error, route, &target, code)),
    };
    (outcome, code)
}

/// The outcome of a tunnel that did not open.
fn refusal(error: &(dyn std::error::Error + 'static), route: &ProxyRoute, target: &str, code: Option<u16>) -> Outcome {
    let proxy = format!("proxy {} ({})", route.url, route.source);
    let message = match (error, code) {
        // 407 is the standard answer; tinyproxy, among others, answers 401 to wrong credentials.
        (_, Some(code @ (401 | 407))) => match &route.auth {
            Some(auth) => format!(
                "{proxy} answered {code} ({}) to CONNECT {target}: it refused the proxy user {} with the password \
                 from {}; check that password",
                auth_reason(code),
                auth.user,
                auth.from
            ),
            None => format!(
                "{proxy} answered {code} ({}) to CONNECT {target}: it needs credentials; give the target's \
                 proxy.user and proxy.password_env (or user:password in {})",
                auth_reason(code),
                route.source
            ),
        },
        (_, Some(403)) => {
            format!("{proxy} answered 403 Forbidden to CONNECT {target}: the proxy does not allow this host or port")
        }
        (_, Some(status)) => format!("{proxy} answered HTTP {status} to CONNECT {target} instead of 200"),
        (_, None) => match error.source().and_then(|e| e.downcast_ref::<std::io::Error>()) {
            Some(io) => return io_failure(&proxy, target, io),
            None => format!("{proxy}: CONNECT {target} failed: {error}"),
        },
    };
    Outcome::ProxyFailure { message }
}

fn auth_reason(code: u16) -> &'static str {
    if code == 407 { "Proxy Authentication Required" } else { "Unauthorized: proxy authentication refused" }
}

/// A connection-level failure while talking to the proxy: the same kind as without one, naming the proxy.
fn io_failure(proxy: &str, target: &str, error: &std::io::Error) -> Outcome {
    let message = format!("{proxy}, during CONNECT {target}: {error}");
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => Outcome::ConnectionRefused { message },
        _ => Outcome::ConnectFailed { message },
    }
}

/// `Basic base64(user:password)`, marked sensitive.
fn basic_header(user: &str, password: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = http::HeaderValue::from_str(&format!("Basic {token}"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// The status code and line of the proxy's answer (`HTTP/1.1 407 Proxy Authentication Required`).
fn status_line(answer: &[u8]) -> Option<(u16, String)> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(line).trim_end().to_owned();
    let code = line.strip_prefix("HTTP/")?.split(' ').nth(1)?.parse().ok()?;
    Some((code, line))
}

/// The connector `Tunnel` calls: hands over the one TCP stream already connected to the proxy.
struct Handoff(Option<TokioIo<Recorder>>);

impl tower_service::Service<http::Uri> for Handoff {
    type Response = TokioIo<Recorder>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        std::future::ready(self.0.take().ok_or_else(|| std::io::Error::other("the proxy connection was already used")))
    }
}

/// The TCP stream to the proxy, keeping the first bytes it answers so a refusal's status can be named
/// (hyper-util's `TunnelError` says only "unsuccessful").
struct Recorder {
    /// The stream.
    inner: TcpStream,
    /// The first [`ANSWER_KEPT`] bytes read.
    answer: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorder {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let mut answer = self.answer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let room = ANSWER_KEPT.saturating_sub(answer.len());
            let new = &buf.filled()[before..];
            answer.extend_from_slice(&new[..new.len().min(room)]);
        }
        polled
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_follows_curls_rules_with_cidr_and_ports() {
        let no = NoProxy::parse("NO_PROXY", " .internal.example, phr.example.jp ,10.0.0.0/8, ::1, stage.example:8443");

        assert!(no.bypasses("a.internal.example", 443));
        assert!(no.bypasses("phr.example.jp", 443));
        assert!(no.bypasses("api.phr.example.jp", 443), "a name matches its subdomains too");
        assert!(!no.bypasses("notphr.example.jp", 443));
        assert!(no.bypasses("10.1.2.3", 443));
        assert!(!no.bypasses("11.1.2.3", 443));
        assert!(no.bypasses("::1", 8443));
        assert!(no.bypasses("stage.example", 8443));
        assert!(!no.bypasses("stage.example", 443), "a host:port entry bypasses that port only");
        let star = NoProxy::parse("no_proxy", "*");
        assert!(star.bypasses("127.0.0.1", 1) && star.bypasses("any.example", 443));
    }

    #[test]
    fn status_lines_are_read_from_the_answer() {
        assert_eq!(
            status_line(b"HTTP/1.1 407 Proxy Authentication Required\r\nX: y\r\n\r\n"),
            Some((407, "HTTP/1.1 407 Proxy Authentication Required".to_owned()))
        );
        assert_eq!(status_line(b"garbage"), None);
    }
}
