//! What one connection is doing, as the accept loop needs to know it: requests in flight, bytes not yet
//! flushed, and since when it has been idle.
//!
//! hyper decides *how* to speak HTTP on a connection but not *when* a connection may be dropped: it has no
//! idle timeout, and its graceful shutdown waits for a client that has sent half a request or nothing at all.
//! The accept loop therefore watches each connection itself. A request counts as in flight from the moment
//! the service is called until its response body has been sent (the body carries a [`RequestGuard`]); the
//! transport is wrapped in [`Tracked`], which notes writes that are not yet flushed. A connection with nothing
//! in flight and nothing unflushed can be closed without losing a byte of any answer.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The shared state of one connection, updated by its requests and its transport.
#[derive(Debug)]
pub struct Activity {
    /// Requests whose response has not been sent completely yet.
    in_flight: AtomicUsize,
    /// Set by a write, cleared by a completed flush: bytes may still sit in a buffer above the socket.
    unflushed: AtomicBool,
    /// Whether any request has started on this connection (before that, the header timeout applies).
    started_any: AtomicBool,
    /// When the connection last had nothing in flight; its idle timeout counts from here.
    idle_since: std::sync::Mutex<Instant>,
    /// Woken when the connection may have become idle (a response finished, a flush completed).
    changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            unflushed: AtomicBool::new(false),
            started_any: AtomicBool::new(false),
            idle_since: std::sync::Mutex::new(Instant::now()),
            changed: Notify::new(),
        })
    }

    /// A request has reached the service; it stays in flight until the guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.started_any.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// Whether a request has ever started on this connection.
    pub fn started_any(&self) -> bool {
        self.started_any.load(Ordering::Acquire)
    }

    /// Since when nothing has been in flight, or `None` while a request is.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Nothing in flight and nothing unflushed: closing now loses no byte of any answer.
    pub fn is_quiet(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.unflushed.load(Ordering::Acquire)
    }

    /// Resolves after the next change that may have made the connection idle (or at once if one happened
    /// since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn request_finished(&self) {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.unflushed.store(true, Ordering::Release);
    }

    fn flushed(&self) {
        if self.unflushed.swap(false, Ordering::AcqRel) && self.in_flight.load(Ordering::Acquire) == 0 {
            self.changed.notify_one();
        }
    }
}

/// Keeps a request in flight; travels with the response body and is dropped when the body is done.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request in flight until it has been sent or abandoned.
pub struct GuardedBody {
    /// The router's body, forwarded frame by frame.
    inner: axum::body::Body,
    /// Dropped with the body, which ends the request's time in flight.
    _guard: RequestGuard,
}

impl GuardedBody {
    pub fn new(inner: axum::body::Body, guard: RequestGuard) -> Self {
        Self { inner, _guard: guard }
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A transport that reports writes and flushes to its connection's [`Activity`].
pub struct Tracked<T> {
    /// The TLS stream.
    inner: T,
    /// Where writes and flushes are noted.
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            self.activity.flushed();
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            self.activity.flushed();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_quiet_only_with_nothing_in_flight_and_nothing_unflushed() {
        let activity = Activity::new();
        assert!(activity.is_quiet() && !activity.started_any());

        let guard = activity.request_started();
        assert!(!activity.is_quiet() && activity.idle_since().is_none());
        activity.wrote();
        drop(guard);
        assert!(!activity.is_quiet(), "written but not flushed");
        activity.flushed();

        assert!(activity.is_quiet() && activity.started_any() && activity.idle_since().is_some());
    }
}
