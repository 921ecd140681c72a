//! Retries of a probe after a connection-level failure, and only after one.
//!
//! A one-off blip (a refused or reset connection, a handshake cut off, a timeout before any answer) used to
//! become a regression in the weekly diff. A target may now allow a few more attempts (`retries`, 0 to 5)
//! with a bounded exponential backoff (backon, no jitter, so runs are reproducible). What is never retried:
//! any HTTP status, a certificate or alert verdict of TLS, a proxy's refusal, a DNS failure and local errors:
//! they are deterministic, and sending again would only hide them. A request already on the wire is retried
//! only for idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE): a POST the server may have processed would
//! write its audit rows twice. Every failed attempt stays in the record (`retried`).

use std::time::Duration;

use backon::BackoffBuilder as _;

use crate::evidence::Outcome;

/// How often, and after how long, a probe is sent again after a connection-level failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further attempts after the first (0: none).
    pub retries: u32,
    /// The pause before the first retry; each further one doubles it, up to 8 times this.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The pauses before each retry, in order (`retries` of them).
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        backon::ExponentialBuilder::new()
            .with_min_delay(self.backoff)
            .with_max_delay(self.backoff.saturating_mul(8))
            .with_max_times(self.retries as usize)
            .build()
    }
}

/// Whether another attempt may cure `outcome`. `tls_io`: the handshake failed on an I/O error, not a TLS
/// verdict; `sent`: request bytes reached the TLS stream.
pub fn is_transient(outcome: &Outcome, tls_io: bool, sent: bool, method: &http::Method) -> bool {
    let repeatable = !sent || method.is_idempotent();
    match outcome {
        Outcome::ConnectionRefused { .. } | Outcome::ConnectFailed { .. } => true,
        Outcome::Timeout { during } => match during.as_str() {
            "dns" | "connect" | "proxy" | "tls" => true,
            "response" => repeatable,
            _ => false,
        },
        Outcome::TlsFailure { .. } => tls_io,
        Outcome::ProtocolError { .. } => !sent,
        Outcome::Http
        | Outcome::DnsFailure { .. }
        | Outcome::ClientCertRejected { .. }
        | Outcome::LocalError { .. }
        | Outcome::ProxyFailure { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded_and_counted() {
        let policy = RetryPolicy { retries: 5, backoff: Duration::from_millis(100) };
        let delays: Vec<u128> = policy.delays().map(|d| d.as_millis()).collect();

        assert_eq!(delays, [100, 200, 400, 800, 800]);
        assert_eq!(RetryPolicy::default().delays().count(), 0);
    }

    #[test]
    fn only_connection_failures_are_transient() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        let refused = Outcome::ConnectionRefused { message: "m".to_owned() };
        let waiting = Outcome::Timeout { during: "response".to_owned() };
        let verdict = Outcome::TlsFailure { reason: "unknown CA".to_owned() };

        assert!(is_transient(&refused, false, false, &post));
        assert!(is_transient(&verdict, true, false, &get), "a handshake cut off is the connection's");
        assert!(!is_transient(&verdict, false, false, &get), "a certificate verdict is never retried");
        assert!(!is_transient(&Outcome::ClientCertRejected { reason: "r".to_owned() }, false, false, &get));
        assert!(!is_transient(&Outcome::Http, false, true, &get), "an HTTP status is never retried");
        assert!(is_transient(&waiting, false, true, &get));
        assert!(!is_transient(&waiting, false, true, &post), "a POST the server may have processed is not resent");
        assert!(!is_transient(&Outcome::ProxyFailure { message: "407".to_owned() }, false, false, &get));
    }
}
