//! Notices: one JSON message to a team chat webhook (Slack and Teams both accept `{"text": …}`), retried with
//! backoff, never carrying a secret.
//!
//! A notice is a courtesy on top of the run's verdict: sending it can fail (the receiver is down, the URL is
//! wrong) without changing that verdict, so the outcome is data ([`NoticeOutcome`]) that the weekly routine
//! records, never an error. The text is built by the caller from the run's status and passed through the
//! run's redactor; the URL (which carries the webhook's token) is never written anywhere. A leaf: it imports
//! nothing of the crate.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use serde::Serialize;

/// How many times a notice is sent at most.
pub const ATTEMPTS: usize = 4;
/// Limit for one attempt (connect, send, answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeOutcome {
    /// The receiver answered 2xx.
    pub delivered: bool,
    /// Attempts made (1 to [`ATTEMPTS`]).
    pub attempts: usize,
    /// The HTTP status of the last answer, if any.
    pub http_status: Option<u16>,
    /// Why the last attempt failed (no URL in it).
    pub error: Option<String>,
}

/// Why one attempt failed, and whether another is worth it.
#[derive(Debug)]
struct AttemptError {
    /// The status, when the receiver answered.
    status: Option<u16>,
    /// What went wrong, without the URL.
    message: String,
    /// 5xx, 429 and connection failures are retried; other 4xx are final.
    retry: bool,
}

/// Sends `{"text": text}` to `url`, retrying connection failures, 429 and 5xx with exponential backoff
/// starting at `first_delay`.
pub async fn send(url: &str, text: &str, first_delay: Duration) -> NoticeOutcome {
    let client = match reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => return failed(0, None, format!("cannot build an HTTP client: {}", without_url(e))),
    };
    let body = serde_json::json!({ "text": text });
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let attempt = || async {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answer = client.post(url).json(&body).send().await;
        match answer {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => {
                let status = response.status();
                let retry = status.is_server_error() || status.as_u16() == 429;
                Err(AttemptError { status: Some(status.as_u16()), message: format!("HTTP {status}"), retry })
            }
            Err(e) => Err(AttemptError { status: None, message: without_url(e), retry: true }),
        }
    };
    let backoff = ExponentialBuilder::default().with_min_delay(first_delay).with_max_times(ATTEMPTS - 1);
    let result = attempt.retry(backoff).when(|e: &AttemptError| e.retry).await;
    let made = attempts.load(std::sync::atomic::Ordering::Relaxed);
    match result {
        Ok(status) => NoticeOutcome { delivered: true, attempts: made, http_status: Some(status), error: None },
        Err(e) => failed(made, e.status, e.message),
    }
}

fn failed(attempts: usize, http_status: Option<u16>, message: String) -> NoticeOutcome {
    NoticeOutcome { delivered: false, attempts, http_status, error: Some(message) }
}

/// A reqwest error's text without the URL (which holds the webhook's token).
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
