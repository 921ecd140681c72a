//! Shared fixtures for the probe and identity tests: a generated PKI written to a temp folder and real
//! TLS listeners on 127.0.0.1 that behave the way operators meet servers in the field (good, unknown CA,
//! expired, wrong host, demanding a client certificate from another CA, silent, answering 404/405).

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use devpki::{Authority, Identity, LeafSpec, Pkcs12Flavor};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::server::WebPkiClientVerifier;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const P12_PASSWORD: &str = "p12-pass/word+1";
/// The Basic user and password the test server's server-info route accepts (PHR_API.md §1: `F:U` + password).
pub const BASIC_USER: &str = "F001:ops";
pub const BASIC_PASSWORD: &str = "basic-pass/word+2";
/// A JWT-shaped token the test server hands out; its signature must never reach the evidence.
pub const ISSUED_JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcHMtY2xpZW50In0.U2lnbmF0dXJlLW11c3Qtbm90LWxlYWs";

/// A CA trusted by the probes, a foreign CA, and files written for them.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Authority,
    pub foreign_ca: Authority,
    pub client: Identity,
    pub ca_bundle: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::new("probe-test").unwrap();
        let foreign_ca = Authority::new("foreign").unwrap();
        let client = ca.issue(&LeafSpec::client("ops-client")).unwrap();
        let ca_bundle = dir.path().join("ca.pem");
        std::fs::write(&ca_bundle, ca.cert_pem()).unwrap();
        Self { dir, ca, foreign_ca, client, ca_bundle }
    }

    /// Writes the client identity as a PKCS#12 file of the given flavor.
    pub fn client_p12(&self, flavor: Pkcs12Flavor) -> PathBuf {
        let path = self.dir.path().join(format!("client-{flavor:?}.p12"));
        std::fs::write(&path, self.client.to_pkcs12(P12_PASSWORD, flavor).unwrap()).unwrap();
        path
    }

    /// Writes the client identity as PEM cert + key files.
    pub fn client_pem(&self) -> (PathBuf, PathBuf) {
        let cert = self.dir.path().join("client.crt");
        let key = self.dir.path().join("client.key");
        std::fs::write(&cert, self.client.chain_pem()).unwrap();
        std::fs::write(&key, self.client.key_pem()).unwrap();
        (cert, key)
    }
}

/// How a test listener behaves.
pub enum ServerKind<'a> {
    /// Speaks TLS with this certificate; requires a client certificate from `client_ca` when given.
    Tls { cert: Identity, client_ca: Option<&'a Authority>, tls12_only: bool },
    /// Accepts TCP connections and never sends a byte.
    Silent,
    /// Completes the TLS handshake with this certificate, then answers with bytes that are not HTTP.
    NotHttp { cert: Identity },
    /// Closes the first `drops` connections at once (a blip), then serves like `Tls` without client auth.
    DropsFirst { cert: Identity, drops: usize },
}

/// Starts a listener on 127.0.0.1:0 and returns its address; it lives as long as the test's runtime.
pub async fn start(kind: ServerKind<'_>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match kind {
        ServerKind::Silent => {
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((stream, _)) = listener.accept().await {
                    held.push(stream);
                }
            });
        }
        ServerKind::NotHttp { cert } => {
            let acceptor = TlsAcceptor::from(Arc::new(server_config(&cert, None, false)));
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let Ok(mut tls) = acceptor.accept(stream).await else { continue };
                    let _ = tls.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
        ServerKind::DropsFirst { cert, drops } => {
            let acceptor = TlsAcceptor::from(Arc::new(server_config(&cert, None, false)));
            tokio::spawn(async move {
                let mut dropped = 0;
                while let Ok((stream, _)) = listener.accept().await {
                    if dropped < drops {
                        dropped += 1;
                        // Read nothing, close at once: the client's handshake meets an early close or a reset.
                        drop(stream);
                        continue;
                    }
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service_fn(answer))
                            .await;
                    });
                }
            });
        }
        ServerKind::Tls { cert, client_ca, tls12_only } => {
            let acceptor = TlsAcceptor::from(Arc::new(server_config(&cert, client_ca, tls12_only)));
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service_fn(answer))
                            .await;
                    });
                }
            });
        }
    }
    addr
}

/// A loopback port that refuses connections for as long as it lives.
///
/// The socket is bound but never listens: connecting gets a reset, and since the port stays in use no other
/// test's `bind(0)` (nor a client's ephemeral port, which could connect to itself) can take it meanwhile, as it
/// could the port of a listener that was bound and dropped.
pub struct RefusedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

/// A plain `GET url` probe, Ready on 200, with a timeout that holds on a loaded machine.
pub fn get_spec(id: &str, name: &str, phase: &str, url: String) -> connrun::probe::ProbeSpec {
    connrun::probe::ProbeSpec {
        id: id.to_owned(),
        name: name.to_owned(),
        phase: phase.to_owned(),
        method: http::Method::GET,
        url,
        headers: Vec::new(),
        body: connrun::probe::ProbeBody::Empty,
        ready_statuses: vec![200],
        body_checks: Vec::new(),
        audit_expected: Vec::new(),
        timeout: std::time::Duration::from_secs(30),
    }
}

/// See [`RefusedPort`]; keep the value alive until the connection attempt is over.
pub fn refused_port() -> RefusedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    RefusedPort { port: socket.local_addr().unwrap().port(), _socket: socket }
}

fn server_config(cert: &Identity, client_ca: Option<&Authority>, tls12_only: bool) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12_only { &[&rustls::version::TLS12] } else { rustls::DEFAULT_VERSIONS };
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions).unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(cert.chain.clone(), cert.private_key()).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The test server's routes, after the PHR paths of the seed log.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let respond = |status: u16, content_type: &str, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    Ok(match path.as_str() {
        "/ok" => {
            let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let body = serde_json::json!({ "token": ISSUED_JWT, "echo_authorization": auth });
            let mut response = respond(200, "application/json", body.to_string().into_bytes());
            response.headers_mut().insert("set-cookie", "session=abc123; Path=/; HttpOnly".parse().unwrap());
            response
        }
        "/large" => respond(200, "application/octet-stream", vec![b'z'; 200 * 1024]),
        "/upload" => {
            let received = request.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            respond(200, "text/plain", format!("received {received} bytes").into_bytes())
        }
        "/20/adm/phr/identityToken" => {
            let mut response = respond(405, "text/plain", b"Method Not Allowed".to_vec());
            response.headers_mut().insert("allow", "GET".parse().unwrap());
            response
        }
        "/readyz" => respond(200, "text/plain", b"ready".to_vec()),
        // Like phr-server's server info: Basic required, 401 with the JSON error body otherwise.
        "/openDolphin/resources/serverinfo/claim/conn" => {
            use base64::Engine as _;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"))
            );
            let given = request.headers().get("authorization").and_then(|v| v.to_str().ok());
            if given == Some(expected.as_str()) {
                respond(200, "text/plain", b"server".to_vec())
            } else {
                let body =
                    br#"{"type":"error.phr.unauthenticated","message":"Basic authentication failed","status":401}"#;
                respond(401, "application/json", body.to_vec())
            }
        }
        "/slow" => std::future::pending().await,
        _ => respond(404, "text/plain", b"Not Found".to_vec()),
    })
}
