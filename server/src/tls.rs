//! The PHR listener: rustls with a required client certificate, and our own accept loop.
//!
//! axum's `serve` hides the TLS session, but handlers and the audit trail need the verified client
//! certificate (its subject for the record, its fingerprint to key the image burst budget). So connections
//! are accepted here, the TLS handshake is done with tokio-rustls under a timeout, and each request of the
//! connection gets a [`PeerInfo`] extension before the router sees it. A client without a certificate, with
//! one from another CA, or with an expired one fails the handshake itself and never reaches HTTP.
//!
//! Every answer on a PHR path must be audited (`phr::guard`), but hyper answers some requests itself. Its
//! HTTP/2 header limit is raised above the guard's, so the guard answers those; an HTTP/1.1 head hyper
//! refuses (malformed, or over hyper's own limits) ends the connection with a parse error, which is handed
//! to [`OnRefusedHead`] so it still leaves a row. A malformed HTTP/2 header block is a stream reset inside
//! the h2 codec, never surfaced here: that is the one refusal without a row.
//!
//! Shutdown is injected as a future: when it resolves the loop stops accepting, in-flight requests finish
//! (hyper-util's graceful shutdown) for up to the configured grace period, and then the loop returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::config::TlsMaterial;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 header-list bytes hyper accepts (its default, 16 KiB, is the guard's own limit, and hyper would
/// answer 431 with no body and no audit row). Above it hyper still refuses; under it `phr::guard` answers.
const HTTP2_MAX_HEADER_LIST: u32 = 256 * 1024;

/// The verified client certificate of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// RFC 4514 subject, e.g. `CN=ops-client, O=…`.
    pub subject: String,
    /// Lower-case hex SHA-256 of the certificate DER.
    pub sha256: String,
}

/// Who is on the other end of a connection; inserted into every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub client_cert: Option<Arc<ClientCert>>,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("PHR_TLS_CLIENT_CA: {0}")]
    ClientCa(String),
    #[error("PHR_TLS_CERT / PHR_TLS_KEY: {0}")]
    ServerIdentity(String),
}

/// The rustls server configuration: aws-lc-rs, TLS 1.2 and 1.3, client certificate required, ALPN h2/http1.1.
pub fn server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in &material.client_ca {
        roots.add(ca.clone()).map_err(|e| TlsSetupError::ClientCa(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::ClientCa(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::ServerIdentity(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.cert_chain.clone(), material.key.clone_key())
        .map_err(|e| TlsSetupError::ServerIdentity(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Called when hyper refused an HTTP/1.1 request head itself (a malformed header, an oversize head): hyper
/// has already answered 400 or 431 without a body and without calling the router, so this is the only
/// place the refusal can still be audited. Gets the peer, whether the head was too large, and hyper's reason.
pub type OnRefusedHead = Arc<dyn Fn(PeerInfo, bool, String) + Send + Sync>;

/// Facts about a DER certificate for [`ClientCert`].
pub fn describe_certificate(der: &[u8]) -> ClientCert {
    let sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der));
    let subject = x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_else(|_| "<unparseable subject>".to_owned());
    ClientCert { subject, sha256 }
}

/// Accepts TLS connections on `listener` and serves `router` on them until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    on_refused: OnRefusedHead,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_header_list_size(HTTP2_MAX_HEADER_LIST);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let on_refused = on_refused.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::info!(%addr, %error, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%addr, "TLS handshake timed out");
                    return;
                }
            };
            let client_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Arc::new(describe_certificate(leaf)));
            let peer = PeerInfo { addr, client_cert };
            let refused_peer = peer.clone();
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(peer.clone());
                router.clone().oneshot(request.map(axum::body::Body::new))
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                match error.downcast_ref::<hyper::Error>().filter(|e| e.is_parse()) {
                    Some(refused) => on_refused(refused_peer, refused.is_parse_too_large(), refused.to_string()),
                    None => tracing::debug!(%addr, %error, "connection ended with an error"),
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}
