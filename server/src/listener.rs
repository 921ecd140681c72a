//! The PHR listener's accept loop: a cap on open connections, one task per connection, and a shutdown that
//! waits only for work in flight.
//!
//! axum's `serve` hides the TLS session and has no connection limits, so connections are accepted here.
//! Each accepted socket takes a permit of a semaphore sized `PHR_MAX_CONNECTIONS`; when none is left the
//! socket is closed at once, before any TLS work, and counted (`phr_connections_refused_total`), so a flood
//! of connections costs the server a descriptor for a moment and never exhausts them. What happens on one
//! connection (handshake, timeouts, idle close, draining) is [`connection`]; which state a connection is in
//! is [`activity`]; the PROXY protocol header an L4 balancer sends first is [`proxy`], and the bytes read
//! past it are put back in front of the socket by [`rewind`]. The rustls configuration is read from
//! [`LiveTls`] for every connection, so a reloaded CRL applies to the next handshake.
//!
//! Shutdown is injected as a future: when it resolves the loop stops accepting and tells every connection;
//! quiet ones close at once, the others finish their responses for up to the grace period, and whatever is
//! left then is aborted before this function returns.

mod activity;
mod connection;
pub mod proxy;
mod rewind;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::connections::ConnectionLimits;
use crate::config::proxy::ProxyProtocol;
use crate::metrics::Metrics;
use crate::tls::{LiveTls, OnRefusedHead};

/// What the accept loop needs besides the socket and the router.
pub struct Settings {
    /// The PHR listener's rustls configuration in force (client certificate required, CRLs reloadable).
    pub tls: Arc<LiveTls>,
    /// The PROXY protocol settings (off unless an L4 balancer announces client addresses).
    pub proxy: ProxyProtocol,
    /// Connection cap, timeouts and HTTP/2 stream limit.
    pub limits: ConnectionLimits,
    /// How long in-flight requests may run on after shutdown begins.
    pub grace: Duration,
    /// Where connections are counted.
    pub metrics: Arc<Metrics>,
    /// Audits an HTTP/1.1 request head hyper refused itself (malformed, or over hyper's own limits).
    pub on_refused: OnRefusedHead,
}

/// HTTP/2 header-list bytes hyper accepts (its default, 16 KiB, is the guard's own limit, and hyper would
/// answer 431 with no body and no audit row). Above it hyper still refuses; under it `phr::guard` answers.
const HTTP2_MAX_HEADER_LIST: u32 = 256 * 1024;

/// Accepts TLS connections on `listener` and serves `router` on them until `shutdown` resolves.
pub async fn serve(listener: TcpListener, router: Router, settings: Settings, shutdown: impl Future<Output = ()>) {
    let limits = settings.limits;
    let permits = Arc::new(Semaphore::new(usize::try_from(limits.max_connections).unwrap_or(usize::MAX)));
    let shared = Arc::new(connection::Shared {
        tls: settings.tls,
        proxy: settings.proxy,
        router,
        http: http_builder(&limits),
        limits,
        metrics: settings.metrics.clone(),
        on_refused: settings.on_refused.clone(),
    });
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning (the cap should keep this from happening).
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            settings.metrics.connection_refused();
            tracing::debug!(%addr, "connection refused: PHR_MAX_CONNECTIONS reached");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let open = settings.metrics.connection_opened();
        let (shared, stop) = (shared.clone(), stop.child_token());
        connections.spawn(async move {
            // Held for as long as the connection lives, aborted or not: its slot under the cap and the gauge.
            let _held = (permit, open);
            connection::run(shared, tcp, addr, stop).await;
        });
    }
    drop(listener);
    stop.cancel();
    finish(connections, settings.grace).await;
}

/// Waits up to `grace` for the connections still busy, then aborts the rest.
async fn finish(mut connections: JoinSet<()>, grace: Duration) {
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_ok() {
        tracing::info!("all connections closed");
        return;
    }
    tracing::warn!(remaining = connections.len(), "grace period over; closing remaining connections");
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// HTTP/1.1 with the header-read timeout, HTTP/2 with the stream limit; both need a timer.
fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST);
    builder
}
