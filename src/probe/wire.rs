//! A tee over the TLS stream that records the exact plaintext bytes a probe writes and reads.
//!
//! curl's `--trace-ascii` is what operators used to prove what went over the wire; this is its equivalent.
//! The tee sits between hyper and tokio-rustls, so it sees the HTTP/1.1 bytes exactly as sent and received
//! (request line, headers, chunked framing, body). To keep memory flat on large transfers it keeps only the
//! first [`CAPTURE_LIMIT`] bytes per direction and counts the rest. Informational lines (resolved address,
//! TLS parameters, failures) go into the same timeline so the trace reads in order. Because it sits on the
//! TLS stream, it is also where a failed write looks for the TLS alert that explains it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes kept per direction for `request.http` and the trace; the rest is only counted.
pub const CAPTURE_LIMIT: usize = 64 * 1024;

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

/// One entry of the probe's timeline.
#[derive(Debug, Clone)]
pub enum WireEvent {
    /// A human note, e.g. "Connected to 127.0.0.1:8443".
    Info { at: DateTime<Utc>, text: String },
    /// Bytes written or read (only the captured part).
    Data { at: DateTime<Utc>, direction: Direction, bytes: Vec<u8> },
}

/// The timeline of one probe, shared between the tee and the probe driver.
#[derive(Debug, Default)]
pub struct WireLog {
    /// Everything captured, in order.
    pub events: Vec<WireEvent>,
    /// All bytes written, captured or not.
    pub sent_total: u64,
    /// All bytes read, captured or not.
    pub received_total: u64,
    /// When the first request byte was written; the start of time-to-first-byte.
    pub first_sent: Option<Instant>,
    /// When the first response byte arrived; the end of time-to-first-byte.
    pub first_received: Option<Instant>,
}

impl WireLog {
    /// Captured bytes in one direction, concatenated.
    pub fn captured(&self, direction: Direction) -> Vec<u8> {
        let mut out = Vec::new();
        for event in &self.events {
            if let WireEvent::Data { direction: d, bytes, .. } = event
                && *d == direction
            {
                out.extend_from_slice(bytes);
            }
        }
        out
    }

    /// Total bytes in one direction (captured or not).
    pub fn total(&self, direction: Direction) -> u64 {
        match direction {
            Direction::Sent => self.sent_total,
            Direction::Received => self.received_total,
        }
    }

    fn record(&mut self, direction: Direction, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let now = Instant::now();
        let total = match direction {
            Direction::Sent => {
                self.first_sent.get_or_insert(now);
                &mut self.sent_total
            }
            Direction::Received => {
                self.first_received.get_or_insert(now);
                &mut self.received_total
            }
        };
        let already = usize::try_from(*total).unwrap_or(usize::MAX);
        *total += bytes.len() as u64;
        let room = CAPTURE_LIMIT.saturating_sub(already);
        if room > 0 {
            let kept = bytes[..bytes.len().min(room)].to_vec();
            self.events.push(WireEvent::Data { at: Utc::now(), direction, bytes: kept });
        }
    }
}

/// A cloneable handle to a probe's [`WireLog`].
#[derive(Debug, Clone, Default)]
pub struct SharedWireLog(Arc<Mutex<WireLog>>);

impl SharedWireLog {
    /// Adds an informational line to the timeline.
    pub fn info(&self, text: impl Into<String>) {
        self.lock().events.push(WireEvent::Info { at: Utc::now(), text: text.into() });
    }

    /// Locks the log. A poisoned lock (a panic elsewhere) still yields the data: evidence beats purity.
    pub fn lock(&self) -> MutexGuard<'_, WireLog> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An IO wrapper that records every byte read and written into a [`SharedWireLog`].
pub struct TeeIo<S> {
    /// The TLS stream.
    inner: S,
    /// Where bytes are recorded.
    log: SharedWireLog,
}

impl<S> TeeIo<S> {
    /// Wraps `inner`, recording into `log`.
    pub fn new(inner: S, log: SharedWireLog) -> Self {
        Self { inner, log }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TeeIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.log.lock().record(Direction::Received, &buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> TeeIo<S> {
    /// After a failed write, reads what the peer sent before it went away. With TLS that is the alert that
    /// says why (e.g. the client certificate was rejected, which TLS 1.3 reports after the handshake); a
    /// write that meets the closed connection first would otherwise hide it behind "broken pipe" or
    /// "connection reset", depending on timing. Returns the read's error when it carries a rustls error.
    fn pending_tls_error(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let mut scratch = [0u8; 1024];
        // Bounded: a peer that keeps sending plaintext after our write failed gets a few reads, not a loop.
        for _ in 0..16 {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Err(e)) if carries_tls_error(&e) => return Some(e),
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    self.log.lock().record(Direction::Received, buf.filled());
                }
                _ => return None,
            }
        }
        None
    }
}

/// Whether an io error wraps a rustls error (tokio-rustls reports TLS failures, alerts included, this way).
fn carries_tls_error(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TeeIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                self.log.lock().record(Direction::Sent, &buf[..written]);
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.pending_tls_error(cx).unwrap_or(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.pending_tls_error(cx).unwrap_or(e))),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn records_both_directions_in_order() {
        let (client, mut server) = tokio::io::duplex(1024);
        let log = SharedWireLog::default();
        let mut tee = TeeIo::new(client, log.clone());

        tee.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = tee.read(&mut buf).await.unwrap();

        let log = log.lock();
        assert_eq!(log.captured(Direction::Sent), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(log.captured(Direction::Received), &buf[..n]);
        assert!(log.first_sent.unwrap() <= log.first_received.unwrap());
    }

    /// A stream whose writes fail as on a connection the server reset, with the server's alert still
    /// unread: what a client meets when its request races a TLS 1.3 client-certificate rejection.
    struct ResetAfterAlert;

    impl AsyncRead for ResetAfterAlert {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
            Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, alert)))
        }
    }

    impl AsyncWrite for ResetAfterAlert {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::Error::from(io::ErrorKind::ConnectionReset)))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_failed_write_reports_the_tls_alert_waiting_to_be_read() {
        let mut tee = TeeIo::new(ResetAfterAlert, SharedWireLog::default());

        let written = tee.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap_err();
        let flushed = tee.flush().await.unwrap_err();

        for error in [written, flushed] {
            let inner = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            assert_eq!(inner, Some(&rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate)));
        }
    }

    #[tokio::test]
    async fn a_failed_write_without_an_alert_keeps_its_own_error() {
        let (client, server) = tokio::io::duplex(64);
        drop(server);
        let mut tee = TeeIo::new(client, SharedWireLog::default());

        let error = tee.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn capture_stops_at_the_limit_but_totals_keep_counting() {
        let mut log = WireLog::default();

        for _ in 0..3 {
            log.record(Direction::Received, &vec![b'x'; CAPTURE_LIMIT / 2 + 1]);
        }

        assert_eq!(log.captured(Direction::Received).len(), CAPTURE_LIMIT);
        assert_eq!(log.received_total, 3 * (CAPTURE_LIMIT as u64 / 2 + 1));
        assert_eq!(log.events.len(), 2);
    }
}
