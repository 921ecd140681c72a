//! The PROXY protocol header an L4 load balancer sends before the client's TLS bytes: read, bounded and
//! turned into the client's address.
//!
//! Only connections from `PHR_PROXY_PROTOCOL_FROM` get here (the caller refuses the others). The header is
//! parsed by the `ppp` crate, version 1 (text, at most 107 bytes) or 2 (binary), as `PHR_PROXY_PROTOCOL`
//! allows; reading stops at [`MAX_HEADER_BYTES`] whatever the header claims, and the caller puts the read
//! under the handshake timeout. Bytes that arrived after the header (the start of the TLS ClientHello) are
//! handed back, to be replayed in front of the socket ([`super::rewind`]). A `LOCAL` command (v2) or an
//! `UNKNOWN` protocol (v1), which balancers send for their own health checks, keeps the socket's address.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult as _, v1, v2};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::proxy::{ProxyProtocol, ProxyProtocolMode};
use crate::metrics::{ConnectionClose, Metrics};

/// Largest PROXY header read: a v2 header with addresses is at most 232 bytes before its TLVs; balancers add a
/// few dozen bytes of TLVs (AWS, GCP and Azure endpoint ids). More than this is not a balancer.
pub const MAX_HEADER_BYTES: usize = 4096;

/// A header that was read.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    /// The client's address (the header's source), or the socket's for `LOCAL` / `UNKNOWN`.
    pub client: SocketAddr,
    /// Whether the address came from the header (false for `LOCAL` / `UNKNOWN`).
    pub proxied: bool,
    /// Bytes received after the header, to be read before the socket's.
    pub rest: Vec<u8>,
}

/// Why a connection from a trusted source was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("connection closed before a complete PROXY header")]
    Closed,
    #[error("no PROXY header within {MAX_HEADER_BYTES} bytes")]
    TooLong,
    #[error("not a valid PROXY header: {0}")]
    Invalid(String),
    #[error("a PROXY protocol {0} header, but PHR_PROXY_PROTOCOL accepts {1:?} only")]
    WrongVersion(&'static str, ProxyProtocolMode),
    #[error("reading the PROXY header failed: {0}")]
    Io(String),
}

/// Who a new connection is from, and the bytes already read from it; `None` when it is refused (logged and
/// counted in `phr_connections_closed_total`) or the server is shutting down. Without the PROXY protocol this
/// is the socket's address at once.
pub async fn admit(
    config: &ProxyProtocol,
    tcp: &mut TcpStream,
    socket: SocketAddr,
    timeout: Duration,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Option<(SocketAddr, Vec<u8>)> {
    if config.mode == ProxyProtocolMode::Off {
        return Some((socket, Vec::new()));
    }
    if !config.trusts(socket.ip()) {
        tracing::warn!(%socket, "connection refused: not from PHR_PROXY_PROTOCOL_FROM (is the listener reachable around the balancer?)");
        metrics.connection_closed(ConnectionClose::ProxyUntrusted);
        return None;
    }
    let read = tokio::time::timeout(timeout, read_header(tcp, socket, config.mode));
    let refused = tokio::select! {
        result = read => match result {
            Ok(Ok(received)) => {
                tracing::debug!(%socket, client = %received.client, proxied = received.proxied, "PROXY header");
                return Some((received.client, received.rest));
            }
            Ok(Err(error)) => {
                tracing::warn!(%socket, %error, "connection refused: PROXY header");
                ConnectionClose::ProxyHeaderInvalid
            }
            Err(_) => {
                tracing::info!(%socket, "connection refused: no PROXY header in time");
                ConnectionClose::ProxyHeaderTimeout
            }
        },
        () = shutdown.cancelled() => return None,
    };
    metrics.connection_closed(refused);
    None
}

/// Reads the header at the start of `tcp` (connected from `socket`).
pub async fn read_header(
    tcp: &mut TcpStream,
    socket: SocketAddr,
    mode: ProxyProtocolMode,
) -> Result<Received, HeaderError> {
    let mut buf = vec![0u8; MAX_HEADER_BYTES];
    let mut filled = 0;
    loop {
        let n = tcp.read(&mut buf[filled..]).await.map_err(|e| HeaderError::Io(e.to_string()))?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        filled += n;
        if let Some(parsed) = parse(&buf[..filled], socket, mode)? {
            return Ok(parsed);
        }
        if filled == MAX_HEADER_BYTES {
            return Err(HeaderError::TooLong);
        }
    }
}

/// The header at the start of `input`, `None` while it is incomplete.
fn parse(input: &[u8], socket: SocketAddr, mode: ProxyProtocolMode) -> Result<Option<Received>, HeaderError> {
    let header = HeaderResult::parse(input);
    if header.is_incomplete() {
        return Ok(None);
    }
    let (client, used) = match header {
        HeaderResult::V1(Ok(h)) => {
            allow(mode, ProxyProtocolMode::V1, "v1")?;
            let client = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            (client, h.header.len())
        }
        HeaderResult::V2(Ok(h)) => {
            allow(mode, ProxyProtocolMode::V2, "v2")?;
            let client = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                // UNSPEC or a UNIX socket: the spec says to use the connection's own addresses.
                (v2::Command::Proxy, _) => None,
            };
            (client, h.len())
        }
        HeaderResult::V1(Err(e)) => return Err(HeaderError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => return Err(HeaderError::Invalid(e.to_string())),
    };
    Ok(Some(Received { client: client.unwrap_or(socket), proxied: client.is_some(), rest: input[used..].to_vec() }))
}

fn allow(mode: ProxyProtocolMode, version: ProxyProtocolMode, name: &'static str) -> Result<(), HeaderError> {
    if mode == version || mode == ProxyProtocolMode::Any { Ok(()) } else { Err(HeaderError::WrongVersion(name, mode)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> SocketAddr {
        "10.0.0.5:40000".parse().unwrap()
    }

    fn v2_header(command: u8) -> Vec<u8> {
        let addresses = ("203.0.113.9:51234".parse::<SocketAddr>().unwrap(), "10.0.0.9:8443".parse().unwrap());
        v2::Builder::with_addresses(0x20 | command, v2::Protocol::Stream, addresses).build().unwrap()
    }

    #[test]
    fn v1_and_v2_give_the_source_and_hand_back_what_follows() {
        let mut v1 = b"PROXY TCP4 198.51.100.7 10.0.0.9 50000 8443\r\n".to_vec();
        v1.extend_from_slice(&[0x16, 0x03, 0x01]);
        let mut v2 = v2_header(1);
        v2.extend_from_slice(&[0x16, 0x03]);

        let from_v1 = parse(&v1, socket(), ProxyProtocolMode::Any).unwrap().unwrap();
        let from_v2 = parse(&v2, socket(), ProxyProtocolMode::V2).unwrap().unwrap();

        assert_eq!(
            (from_v1.client, from_v1.proxied, from_v1.rest),
            ("198.51.100.7:50000".parse().unwrap(), true, vec![0x16, 0x03, 0x01])
        );
        assert_eq!((from_v2.client, from_v2.rest), ("203.0.113.9:51234".parse().unwrap(), vec![0x16, 0x03]));
    }

    #[test]
    fn local_and_unknown_keep_the_socket_address() {
        let local = parse(&v2_header(0), socket(), ProxyProtocolMode::V2).unwrap().unwrap();
        let unknown = parse(b"PROXY UNKNOWN\r\n", socket(), ProxyProtocolMode::V1).unwrap().unwrap();

        assert_eq!((local.client, local.proxied), (socket(), false));
        assert_eq!((unknown.client, unknown.proxied), (socket(), false));
    }

    #[test]
    fn partial_headers_wait_and_garbage_or_the_wrong_version_is_refused() {
        let v2 = v2_header(1);

        assert_eq!(parse(&v2[..10], socket(), ProxyProtocolMode::V2), Ok(None));
        assert_eq!(parse(b"PROXY TCP4 1.2", socket(), ProxyProtocolMode::V1), Ok(None));
        assert!(matches!(
            parse(&[0x16, 0x03, 0x01, 0x02, 0x00], socket(), ProxyProtocolMode::Any),
            Err(HeaderError::Invalid(_))
        ));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n", socket(), ProxyProtocolMode::Any), Err(HeaderError::Invalid(_))));
        assert!(matches!(
            parse(b"PROXY TCP4 198.51.100.7 10.0.0.9 50000 8443\r\n", socket(), ProxyProtocolMode::V2),
            Err(HeaderError::WrongVersion("v1", ProxyProtocolMode::V2))
        ));
    }
}
