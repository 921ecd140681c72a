//! Watching a streamed response body until its last byte has left, so a download that breaks off is audited.
//!
//! PHR-07 images and Phase F artifacts are streamed, and their success row is written before the first byte
//! (fail closed: no answer without its audit row). A storage error in the middle of the stream, or a client
//! that goes away, would otherwise leave only that success row. [`WatchedBody`] wraps the body, counts the
//! bytes handed to hyper, and when the stream fails, ends short of its `Content-Length`, or is dropped before
//! its end, calls its [`Incomplete`] callback once; the pipeline ([`super::pipeline::handle`]) turns that into
//! a second, `failed` audit row of the same call. This module knows nothing of audit rows, so it is tested on
//! its own.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Why a watched body did not arrive whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// A sentence for the audit row's `reason`.
    pub reason: String,
    /// Bytes handed to the connection before it broke off.
    pub bytes_sent: u64,
    /// The `Content-Length` that was promised.
    pub bytes_expected: u64,
}

/// Called at most once, when the body does not arrive whole.
pub type OnIncomplete = Box<dyn FnOnce(Incomplete) + Send + Sync>;

/// A response body that reports when it breaks off before `expected` bytes.
pub struct WatchedBody {
    inner: Body,
    /// Data bytes yielded so far.
    sent: u64,
    /// The promised length; reaching it is success even if hyper never polls for the end of the stream.
    expected: u64,
    /// Taken when the outcome is known, so a body reports at most once and a whole body never does.
    on_incomplete: Option<OnIncomplete>,
}

impl WatchedBody {
    pub fn new(inner: Body, expected: u64, on_incomplete: OnIncomplete) -> Self {
        Self { inner, sent: 0, expected, on_incomplete: Some(on_incomplete) }
    }

    fn report(&mut self, reason: impl FnOnce(u64, u64) -> String) {
        if let Some(callback) = self.on_incomplete.take() {
            callback(Incomplete {
                reason: reason(self.sent, self.expected),
                bytes_sent: self.sent,
                bytes_expected: self.expected,
            });
        }
    }
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.sent += frame.data_ref().map_or(0, |data| data.len() as u64);
                if this.sent >= this.expected {
                    this.on_incomplete = None;
                }
            }
            Poll::Ready(Some(Err(error))) => {
                this.report(|sent, expected| format!("the stream failed after {sent} of {expected} bytes: {error}"));
            }
            Poll::Ready(None) if this.sent < this.expected => {
                this.report(|sent, expected| format!("the stored object ended after {sent} of {expected} bytes"));
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.report(|sent, expected| format!("the connection closed after {sent} of {expected} bytes"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::stream;
    use http_body_util::BodyExt;

    use super::*;

    fn watched(chunks: Vec<Result<&'static [u8], std::io::Error>>, expected: u64) -> (WatchedBody, Reports) {
        let reports = Reports::default();
        let sink = reports.clone();
        let body = Body::from_stream(stream::iter(chunks.into_iter().map(|c| c.map(Bytes::from_static))));
        (WatchedBody::new(body, expected, Box::new(move |incomplete| sink.0.lock().unwrap().push(incomplete))), reports)
    }

    #[derive(Clone, Default)]
    struct Reports(Arc<Mutex<Vec<Incomplete>>>);

    impl Reports {
        fn taken(&self) -> Vec<Incomplete> {
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn a_whole_body_reports_nothing() {
        let (body, reports) = watched(vec![Ok(b"abc"), Ok(b"de")], 5);

        let bytes = body.collect().await.expect("body").to_bytes();

        assert_eq!(&bytes[..], b"abcde");
        assert!(reports.taken().is_empty());
    }

    #[tokio::test]
    async fn reaching_the_length_is_success_even_if_the_body_is_dropped_before_its_end() {
        let (mut body, reports) = watched(vec![Ok(b"abcde"), Ok(b"")], 5);

        let first = body.frame().await.expect("frame").expect("data");
        drop(body);

        assert_eq!(first.into_data().expect("data").len(), 5);
        assert!(reports.taken().is_empty());
    }

    #[tokio::test]
    async fn a_storage_error_mid_stream_is_reported_once_with_the_bytes_sent() {
        let (body, reports) = watched(vec![Ok(b"abc"), Err(std::io::Error::other("disk gone"))], 10);

        let result = body.collect().await;

        assert!(result.is_err());
        let reports = reports.taken();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!((reports[0].bytes_sent, reports[0].bytes_expected), (3, 10));
        assert!(reports[0].reason.contains("disk gone"), "{}", reports[0].reason);
    }

    #[tokio::test]
    async fn a_stream_that_ends_short_is_reported() {
        let (body, reports) = watched(vec![Ok(b"abc")], 10);

        body.collect().await.expect("body");

        let reports = reports.taken();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].reason.contains("ended after 3 of 10 bytes"), "{}", reports[0].reason);
    }

    #[tokio::test]
    async fn a_body_dropped_part_way_is_a_closed_connection() {
        let (mut body, reports) = watched(vec![Ok(b"abc"), Ok(b"def")], 6);

        body.frame().await.expect("frame").expect("data");
        drop(body);

        let reports = reports.taken();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].reason.contains("connection closed after 3 of 6 bytes"), "{}", reports[0].reason);
    }
}
