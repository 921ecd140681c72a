//! The connection phases of a probe: DNS, TCP connect, TLS handshake, each timed and classified.
//!
//! Each phase runs against the probe's overall deadline (like curl's `--max-time`); when it passes, the
//! outcome names the phase that was waiting. The handshake result carries what the evidence needs: the
//! negotiated version, cipher suite, ALPN and the server's full certificate chain. Through a proxy, DNS and
//! TCP reach the proxy and a CONNECT phase (`proxy.rs`) opens the tunnel the handshake then runs over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::classify;
use super::proxy::{self, ProxyRoute};
use super::wire::SharedWireLog;
use crate::evidence::{CertFacts, Outcome, ProxyFacts, Timings, TlsFacts};
use crate::probe::certinfo;

/// Milliseconds since `since`, as recorded in timings.
pub fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// The longest limit a deadline keeps (30 years, tokio's own "far future"); longer ones mean "never".
pub const LONGEST_LIMIT: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The instant `timeout` after `start`, for the phases' deadlines. A limit beyond [`LONGEST_LIMIT`] (e.g.
/// `timeout_seconds = 18446744073709551615`) is cut to it, and one the clock still cannot add is halved until
/// it fits, so no input can make it panic.
pub fn deadline(start: Instant, timeout: Duration) -> tokio::time::Instant {
    let mut limit = timeout.min(LONGEST_LIMIT);
    loop {
        if let Some(at) = start.checked_add(limit) {
            return tokio::time::Instant::from_std(at);
        }
        limit /= 2;
    }
}

/// Resolves `host:port`; an IP literal resolves to itself.
pub async fn resolve(host: &str, port: u16, deadline: tokio::time::Instant) -> Result<Vec<SocketAddr>, Outcome> {
    match timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(Outcome::Timeout { during: "dns".to_owned() }),
        Ok(Err(e)) => Err(Outcome::DnsFailure { message: format!("{host}: {e}") }),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(Outcome::DnsFailure { message: format!("{host}: no addresses") })
            } else {
                Ok(addrs)
            }
        }
    }
}

/// Connects to the first address that accepts, in resolver order (as curl does without happy eyeballs).
pub async fn tcp_connect(
    addrs: &[SocketAddr],
    deadline: tokio::time::Instant,
    log: &SharedWireLog,
) -> Result<TcpStream, Outcome> {
    let mut last = Outcome::ConnectFailed { message: "no address to connect to".to_owned() };
    for addr in addrs {
        log.info(format!("Trying {addr}..."));
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(Outcome::Timeout { during: "connect".to_owned() }),
            Ok(Ok(stream)) => {
                // Small writes (request head) should leave at once; the timings depend on it.
                let _ = stream.set_nodelay(true);
                log.info(format!("Connected to {addr}"));
                return Ok(stream);
            }
            Ok(Err(e)) => {
                log.info(format!("connect to {addr} failed: {e}"));
                last = classify::connect_error(&e, &addr.to_string());
            }
        }
    }
    Err(last)
}

/// DNS, TCP and (through a proxy) the CONNECT tunnel to `host:port`, each phase timed into `timings`; the
/// proxy hop, when there is one, is noted in `hop` as soon as it is tried.
pub async fn open(
    (host, port): (&str, u16),
    route: Option<&ProxyRoute>,
    deadline: tokio::time::Instant,
    log: &SharedWireLog,
    timings: &mut Timings,
    hop: &mut Option<ProxyFacts>,
) -> Result<TcpStream, Outcome> {
    let (connect_host, connect_port) = route.map_or((host, port), |r| (r.host.as_str(), r.port));
    let phase = Instant::now();
    let resolved = resolve(connect_host, connect_port, deadline).await;
    timings.dns_ms = elapsed_ms(phase);
    let addrs = resolved.map_err(|outcome| through(route, outcome))?;
    let listed: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    log.info(format!("Resolved {connect_host} to {}", listed.join(", ")));

    let phase = Instant::now();
    let tcp = tcp_connect(&addrs, deadline, log).await;
    timings.connect_ms = elapsed_ms(phase);
    let tcp = tcp.map_err(|outcome| through(route, outcome))?;
    let Some(route) = route else { return Ok(tcp) };
    *hop = Some(route.facts(None));
    let phase = Instant::now();
    let (tunnel, status) = proxy::tunnel(tcp, route, host, port, deadline, log).await;
    timings.proxy_ms = elapsed_ms(phase);
    *hop = Some(route.facts(status));
    tunnel
}

/// A DNS or TCP failure on the way to a proxy names the proxy, so nobody looks for the fault at the server.
fn through(route: Option<&ProxyRoute>, outcome: Outcome) -> Outcome {
    let Some(route) = route else { return outcome };
    let via = |m: String| format!("proxy {} ({}): {m}", route.url, route.source);
    match outcome {
        Outcome::DnsFailure { message } => Outcome::DnsFailure { message: via(message) },
        Outcome::ConnectionRefused { message } => Outcome::ConnectionRefused { message: via(message) },
        Outcome::ConnectFailed { message } => Outcome::ConnectFailed { message: via(message) },
        other => other,
    }
}

/// What a completed handshake tells about the server.
pub struct Handshake {
    /// The encrypted stream, ready for HTTP.
    pub stream: TlsStream<TcpStream>,
    /// Version, cipher, ALPN.
    pub facts: TlsFacts,
    /// The chain the server presented, leaf first.
    pub chain: Vec<CertFacts>,
}

/// Runs the TLS handshake for `host` (SNI and name check) over `tcp`.
pub async fn tls_handshake(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
    deadline: tokio::time::Instant,
) -> Result<Handshake, Outcome> {
    tls_handshake_io(config, host, tcp, deadline).await.map_err(|(outcome, _)| outcome)
}

/// [`tls_handshake`], also telling whether a failure was the connection's (an I/O error such as a reset or
/// an early close, worth another attempt) rather than a TLS verdict (a rejected certificate, never retried).
pub async fn tls_handshake_io(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
    deadline: tokio::time::Instant,
) -> Result<Handshake, (Outcome, bool)> {
    let server_name = ServerName::try_from(host.to_owned()).map_err(|e| {
        (Outcome::LocalError { message: format!("host {host:?} is not a valid TLS server name: {e}") }, false)
    })?;
    let connecting = TlsConnector::from(config).connect(server_name, tcp);
    let stream = match timeout_at(deadline, connecting).await {
        Err(_) => return Err((Outcome::Timeout { during: "tls".to_owned() }, true)),
        Ok(Err(e)) => return Err((classify::handshake_error(&e), classify::is_connection_io(&e))),
        Ok(Ok(stream)) => stream,
    };
    let (_, connection) = stream.get_ref();
    let facts = TlsFacts {
        version: connection.protocol_version().map_or_else(|| "unknown".to_owned(), version_name),
        cipher_suite: connection
            .negotiated_cipher_suite()
            .map_or_else(|| "unknown".to_owned(), |s| format!("{:?}", s.suite())),
        alpn: connection.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
    };
    let chain = connection
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .filter_map(|der| certinfo::cert_facts(der).ok())
        .collect();
    Ok(Handshake { stream, facts, chain })
}

/// `TLSv1_3` -> `TLSv1.3`, the spelling of curl and OpenSSL.
fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    }
}
