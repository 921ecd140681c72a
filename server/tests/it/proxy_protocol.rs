//! The PROXY protocol on the PHR listener, with real headers built by the `ppp` crate in front of real mTLS,
//! and through a real nginx `stream {}` proxy with `proxy_protocol on;`: the audit row gets the client's
//! address, a balancer connection without a valid header is refused and counted, and so is any connection
//! from outside `PHR_PROXY_PROTOCOL_FROM`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use phr_server::config::connections::ConnectionLimits;
use phr_server::config::proxy::{ProxyProtocol, ProxyProtocolMode};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{self, Options, TestServer};

/// How long anything that should happen at once may take before it is called a hang.
const GUARD: Duration = Duration::from_secs(60);

/// A server expecting `mode` headers from `trusted`.
async fn start(mode: ProxyProtocolMode, trusted: &str) -> TestServer {
    let proxy_protocol = ProxyProtocol::new(mode, vec![trusted.parse().unwrap()]);
    let connections = ConnectionLimits { handshake_timeout: Duration::from_secs(1), ..ConnectionLimits::default() };
    let options = Options { proxy_protocol, connections, seed_patients: 1, ..Options::default() };
    TestServer::start(support::sqlite(), options).await
}

/// A v2 `PROXY` (or `LOCAL`) header for a client at `source`, built with the crate.
fn v2_header(local: bool, source: &str) -> Vec<u8> {
    let addresses = (source.parse::<SocketAddr>().unwrap(), "10.0.0.9:8443".parse::<SocketAddr>().unwrap());
    let command = if local { 0x20 } else { 0x21 };
    ppp::v2::Builder::with_addresses(command, ppp::v2::Protocol::Stream, addresses).build().unwrap()
}

/// Connects to `to` (from `from` when given), sends `header`, then does a GET of PHR allergy over mTLS with
/// `trace`; the HTTP status, or the error that stopped it.
async fn call(
    server: &TestServer,
    to: SocketAddr,
    from: Option<IpAddr>,
    header: &[u8],
    trace: &str,
) -> Result<u16, String> {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    let mut tcp = socket.connect(to).await.map_err(|e| e.to_string())?;
    tcp.write_all(header).await.map_err(|e| e.to_string())?;
    let mut tls_config = support::client_tls(&server.pki.ca, Some(&server.pki.client));
    tls_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(tls_config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let authorization = format!("Basic {}", base64_credentials());
    let request = http::Request::get(format!("{}/openDolphin/resources/20/adm/phr/allergy/P0001", server.base))
        .header("host", "localhost")
        .header("authorization", authorization)
        .header("x-trace-id", trace)
        .header("x-facility-id", support::FACILITY)
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(GUARD, sender.send_request(request)).await.expect("an answer in time");
    response.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
}

fn base64_credentials() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}:{}",
        support::FACILITY,
        support::USER,
        support::PASSWORD
    ))
}

/// `ip_address` of the audit rows with `trace`.
async fn audited_ips(server: &TestServer, trace: &str) -> Vec<Option<String>> {
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_scalar("SELECT ip_address FROM d_audit_event WHERE trace_id = $1 ORDER BY id")
            .bind(trace)
            .fetch_all(pool)
            .await
            .expect("audit query")
    })
}

#[tokio::test]
async fn a_v2_header_from_the_balancer_gives_the_audit_row_the_client_address() {
    // Arrange
    let server = start(ProxyProtocolMode::V2, "127.0.0.1/32").await;

    // Act
    let proxied = call(&server, server.phr_addr, None, &v2_header(false, "203.0.113.77:51000"), "pp-v2").await;
    let health = call(&server, server.phr_addr, None, &v2_header(true, "203.0.113.78:51000"), "pp-local").await;

    // Assert: PROXY gives the claimed client; LOCAL (a balancer's own check) keeps the socket's address.
    assert_eq!(proxied, Ok(200));
    assert_eq!(audited_ips(&server, "pp-v2").await, [Some("203.0.113.77".to_owned())]);
    assert_eq!(health, Ok(200));
    assert_eq!(audited_ips(&server, "pp-local").await, [Some("127.0.0.1".to_owned())]);
    server.stop().await;
}

#[tokio::test]
async fn a_balancer_connection_without_a_valid_header_is_refused_and_counted() {
    // Arrange
    let server = start(ProxyProtocolMode::V2, "127.0.0.1/32").await;
    let before = server.audit_count().await;
    let v1 = b"PROXY TCP4 203.0.113.77 10.0.0.9 51000 8443\r\n";

    // Act: no header at all (TLS at once), garbage, and a v1 header where only v2 is accepted.
    for (name, header) in [("none", &b""[..]), ("garbage", &b"HELLO balancer\r\n\r\n"[..]), ("v1 for v2", &v1[..])] {
        let result = call(&server, server.phr_addr, None, header, "pp-refused").await;
        assert!(result.is_err(), "{name}: served without a valid header: {result:?}");
    }
    // … and a client that sends nothing: closed when the (1 s) handshake timeout ends.
    let mut silent = TcpStream::connect(server.phr_addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(GUARD, silent.read_to_end(&mut rest)).await;

    // Assert
    assert!(closed.is_ok(), "a silent connection was kept open");
    server.wait_for_metric("phr_connections_closed_total{reason=\"proxy_header_invalid\"} 3").await;
    server.wait_for_metric("phr_connections_closed_total{reason=\"proxy_header_timeout\"} 1").await;
    assert_eq!(server.audit_count().await, before, "nothing reached HTTP");
    server.stop().await;
}

#[tokio::test]
async fn a_connection_from_outside_the_balancer_list_is_refused_even_with_a_header() {
    // Arrange: the balancer is 192.0.2.0/24; the test connects from loopback.
    let server = start(ProxyProtocolMode::Any, "192.0.2.0/24").await;

    // Act
    let result = call(&server, server.phr_addr, None, &v2_header(false, "203.0.113.77:51000"), "pp-untrusted").await;

    // Assert
    assert!(result.is_err(), "an untrusted source was served: {result:?}");
    server.wait_for_metric("phr_connections_closed_total{reason=\"proxy_untrusted_source\"} 1").await;
    assert!(audited_ips(&server, "pp-untrusted").await.is_empty());
    server.stop().await;
}
