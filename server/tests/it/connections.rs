//! The PHR listener's connection limits against real clients over real mTLS: a client that never finishes
//! its headers is closed by the header-read timeout, connections over the cap are refused at once and
//! counted, HTTP/2 advertises its stream limit, and shutdown does not wait for idle connections.
//!
//! Durations below are limits handed to the server, or generous guards that turn a hang into a failure;
//! no assertion depends on how fast anything ran.

use std::sync::Arc;
use std::time::Duration;

use phr_server::config::connections::ConnectionLimits;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::{self, Options, TestServer};

/// How long a test waits for something that should happen at once before calling it a hang.
const GUARD: Duration = Duration::from_secs(60);

fn options(limits: ConnectionLimits) -> Options {
    Options { connections: limits, seed_patients: 1, ..Options::default() }
}

/// A TLS connection with the test client certificate, offering `alpn`.
async fn connect(server: &TestServer, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = support::client_tls(&server.pki.ca, Some(&server.pki.client));
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(server.phr_addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// Reads until the server closes the connection (a reset counts as closed); returns what arrived.
async fn read_until_closed(stream: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(GUARD, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server did not close the connection within {GUARD:?}");
    received
}

/// One complete HTTP/1.1 exchange on `stream`, which stays open (keep-alive) afterwards.
async fn http1_exchange(stream: &mut TlsStream<TcpStream>) {
    stream.write_all(b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    assert!(head.starts_with("http/1.1 404"), "{head}");
}

/// An HTTP/2 connection after one complete request, kept open, and the stream limit the server announced.
async fn http2_exchange(
    server: &TestServer,
) -> (h2::client::SendRequest<bytes::Bytes>, usize, tokio::task::JoinHandle<()>) {
    let stream = connect(server, b"h2").await.expect("TLS");
    let (client, mut connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(format!("{}/nowhere", server.base)).body(()).unwrap();
    let (response, _) = client.send_request(request, true).expect("send");
    let response = tokio::select! {
        response = response => response.expect("response"),
        result = &mut connection => panic!("connection ended first: {result:?}"),
    };
    assert_eq!(response.status(), 404);
    let limit = connection.max_concurrent_send_streams();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, limit, driver)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
    // Arrange
    let limits = ConnectionLimits { header_read_timeout: Duration::from_secs(1), ..ConnectionLimits::default() };
    let server = TestServer::start(support::sqlite(), options(limits)).await;
    let mut slow = connect(&server, b"http/1.1").await.expect("TLS");

    // Act: the request line, and nothing more.
    slow.write_all(b"GET /x HTTP/1.1\r\n").await.unwrap();
    let received = read_until_closed(&mut slow).await;

    // Assert: closed (at most with hyper's bare 408 first), and counted.
    let text = String::from_utf8_lossy(&received);
    assert!(received.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    server.wait_for_metric("phr_connections_closed_total{reason=\"header_timeout\"} 1").await;
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_at_once_and_counted() {
    // Arrange: the cap is three, and three connections are open (and not closed by a timeout meanwhile).
    let hour = Duration::from_secs(3600);
    let limits = ConnectionLimits { max_connections: 3, header_read_timeout: hour, ..ConnectionLimits::default() };
    let server = TestServer::start(support::sqlite(), options(limits)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&server, b"http/1.1").await.expect("under the cap"));
    }

    // Act
    let fourth = tokio::time::timeout(GUARD, connect(&server, b"http/1.1")).await.expect("refused at once");

    // Assert: the fourth never got TLS and was counted before it was closed; the first three still work.
    assert!(fourth.is_err(), "the fourth connection must be refused");
    let metrics = server.metrics().await;
    assert!(metrics.contains("phr_connections_refused_total 1\n"), "{metrics}");
    assert!(metrics.contains("phr_connections_open 3\n"), "{metrics}");
    http1_exchange(&mut held[0]).await;
    drop(held);
    server.wait_for_metric("phr_connections_open 0").await;
    let response = server.get("allergy/P0001").send().await.expect("a slot is free again");
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn http2_announces_the_stream_limit() {
    let limits = ConnectionLimits { http2_max_concurrent_streams: 7, ..ConnectionLimits::default() };
    let server = TestServer::start(support::sqlite(), options(limits)).await;

    let (_client, limit, driver) = http2_exchange(&server).await;

    assert_eq!(limit, 7);
    driver.abort();
    server.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_connections() {
    // Arrange: limits and grace far beyond the guard, so only closing idle connections at once can pass.
    let hour = Duration::from_secs(3600);
    let limits = ConnectionLimits { header_read_timeout: hour, idle_timeout: hour, ..ConnectionLimits::default() };
    let options = Options { shutdown_grace: hour, ..options(limits) };
    let mut server = TestServer::start(support::sqlite(), options).await;
    let mut kept_alive = connect(&server, b"http/1.1").await.unwrap();
    http1_exchange(&mut kept_alive).await;
    let (_h2_client, _, h2_driver) = http2_exchange(&server).await;
    let mut silent = connect(&server, b"http/1.1").await.unwrap();
    let mut half_request = connect(&server, b"http/1.1").await.unwrap();
    half_request.write_all(b"GET /x HTTP/1.1\r\n").await.unwrap();
    server.wait_for_metric("phr_connections_open 4").await;

    // Act
    let finished = tokio::time::timeout(GUARD, server.shutdown()).await;

    // Assert: the server finished, and every one of those connections was closed.
    assert!(finished.is_ok(), "shutdown waited on idle connections");
    for stream in [&mut kept_alive, &mut silent, &mut half_request] {
        read_until_closed(stream).await;
    }
    assert!(tokio::time::timeout(GUARD, h2_driver).await.is_ok(), "the HTTP/2 connection was closed");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    // Arrange
    let limits = ConnectionLimits { idle_timeout: Duration::from_secs(1), ..ConnectionLimits::default() };
    let server = TestServer::start(support::sqlite(), options(limits)).await;

    // Act: one request, then nothing.
    let (_client, _, driver) = http2_exchange(&server).await;

    // Assert: the server ended the connection by itself, and said why.
    assert!(tokio::time::timeout(GUARD, driver).await.is_ok(), "the idle connection was not closed");
    server.wait_for_metric("phr_connections_closed_total{reason=\"idle\"} 1").await;
    server.stop().await;
}
