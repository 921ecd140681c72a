//! One PHR connection from accept to close: the TLS handshake under its timeout, HTTP on top of it, and the
//! moment it is closed: when the client goes, when it starts no request in time, when it has been idle too
//! long, or when the server shuts down.
//!
//! Closing follows one rule: a connection is dropped only when it is *quiet* (see [`Activity::is_quiet`]),
//! after hyper's graceful shutdown has had the chance to finish what is in flight (HTTP/1.1 finishes the
//! current response and closes; HTTP/2 sends GOAWAY and finishes open streams). So an idle keep-alive
//! connection, a TLS session that never sent a byte and a client stuck halfway through its headers are all
//! closed at once on shutdown, while a download in progress is allowed to complete within the grace period.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::activity::{Activity, GuardedBody, Tracked};
use super::proxy;
use super::rewind::Rewind;
use crate::config::connections::ConnectionLimits;
use crate::config::proxy::ProxyProtocol;
use crate::metrics::{ConnectionClose, Metrics};
use crate::tls::{LiveTls, OnRefusedHead, PeerInfo, describe_certificate};

/// What every connection task shares.
pub struct Shared {
    /// The server's rustls configuration in force (replaced when the client CRLs are reloaded).
    pub tls: Arc<LiveTls>,
    /// Whether connections start with a PROXY protocol header, and from which balancers.
    pub proxy: ProxyProtocol,
    /// The PHR router every request goes to.
    pub router: Router,
    /// HTTP/1.1 and HTTP/2 settings (header-read timeout, stream limits).
    pub http: auto::Builder<TokioExecutor>,
    /// The limits this connection runs under.
    pub limits: ConnectionLimits,
    /// Where connection events are counted.
    pub metrics: Arc<Metrics>,
    /// Audits a request head hyper refused itself, so that refusal still leaves a row.
    pub on_refused: OnRefusedHead,
}

/// Why the serving phase of a connection ended.
enum Ended {
    /// The connection finished on its own (client closed, error, header timeout).
    Finished,
    /// The server should close it: idle too long, never started a request, or shutting down.
    Close(ConnectionClose),
}

/// Serves one accepted TCP connection until it is closed.
pub async fn run(shared: Arc<Shared>, mut tcp: TcpStream, socket: SocketAddr, shutdown: CancellationToken) {
    let timeout = shared.limits.handshake_timeout;
    let Some((addr, early)) = proxy::admit(&shared.proxy, &mut tcp, socket, timeout, &shared.metrics, &shutdown).await
    else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls.current());
    let handshake = tokio::time::timeout(timeout, acceptor.accept(Rewind::new(tcp, early)));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                let reason = refusal(&error);
                tracing::info!(%addr, %error, reason = reason.as_str(), "TLS handshake refused");
                shared.metrics.connection_closed(reason);
                return;
            }
            Err(_) => {
                tracing::info!(%addr, "TLS handshake timed out");
                shared.metrics.connection_closed(ConnectionClose::HandshakeTimeout);
                return;
            }
        },
        () = shutdown.cancelled() => return,
    };
    let client_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Arc::new(describe_certificate(leaf)));
    let peer = PeerInfo { addr, client_cert };
    let refused_peer = peer.clone();
    let activity = Activity::new();
    let service = {
        let (router, activity) = (shared.router.clone(), activity.clone());
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let guard = activity.request_started();
            request.extensions_mut().insert(peer.clone());
            let response = router.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| GuardedBody::new(body, guard)))
            }
        })
    };
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let connection = shared.http.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let reason = match serve(connection.as_mut(), &activity, &shared, &shutdown, refused_peer).await {
        Ended::Finished => return,
        Ended::Close(reason) => reason,
    };
    shared.metrics.connection_closed(reason);
    drain(connection, &activity, |c| c.graceful_shutdown()).await;
}

/// Why rustls refused a handshake, as counted: a revoked client certificate apart from everything else.
fn refusal(error: &std::io::Error) -> ConnectionClose {
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => {
            ConnectionClose::CertificateRevoked
        }
        _ => ConnectionClose::HandshakeFailed,
    }
}

/// Polls the connection until it ends, or until it should be closed.
async fn serve<C>(
    mut connection: Pin<&mut C>,
    activity: &Activity,
    shared: &Shared,
    shutdown: &CancellationToken,
    peer: PeerInfo,
) -> Ended
where
    C: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let opened = Instant::now();
    loop {
        // Before any request the header timeout applies (a client that never starts one); after, the idle one.
        let (deadline, reason) = match activity.idle_since() {
            None => (None, ConnectionClose::Idle),
            Some(_) if !activity.started_any() => {
                (Some(opened + shared.limits.header_read_timeout), ConnectionClose::HeaderTimeout)
            }
            Some(since) => (Some(since + shared.limits.idle_timeout), ConnectionClose::Idle),
        };
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    let hyper_error = error.downcast_ref::<hyper::Error>();
                    if hyper_error.is_some_and(hyper::Error::is_timeout) {
                        shared.metrics.connection_closed(ConnectionClose::HeaderTimeout);
                    }
                    match hyper_error.filter(|e| e.is_parse()) {
                        Some(refused) => (shared.on_refused)(peer, refused.is_parse_too_large(), refused.to_string()),
                        None => tracing::debug!(%error, "connection ended with an error"),
                    }
                }
                return Ended::Finished;
            }
            () = shutdown.cancelled() => return Ended::Close(ConnectionClose::Shutdown),
            () = expired => {
                // A request may have started since the deadline was computed; only close if still idle.
                if activity.idle_since().is_some() {
                    return Ended::Close(reason);
                }
            }
            () = activity.changed() => {}
        }
    }
}

/// Starts hyper's graceful shutdown (`begin`) and keeps the connection going only while something is in
/// flight or unflushed; as soon as it is quiet it is dropped (closed). The grace period is the caller's.
async fn drain<C: Future>(mut connection: Pin<&mut C>, activity: &Activity, begin: impl FnOnce(Pin<&mut C>)) {
    begin(connection.as_mut());
    loop {
        // Poll once first, so a GOAWAY or the end of a response is written before quiet is judged.
        if futures::poll!(connection.as_mut()).is_ready() || activity.is_quiet() {
            return;
        }
        tokio::select! {
            _ = connection.as_mut() => return,
            () = activity.changed() => {}
        }
    }
}
