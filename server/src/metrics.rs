//! Prometheus metrics for `/metrics`: requests by route and status, a latency histogram, audit writes,
//! throttle decisions, export jobs by state, the PHR listener's connections (open, refused over the cap,
//! closed by a limit, a revoked certificate or a missing PROXY header), and the client CRLs in force.
//!
//! The set is small and fixed, so it is kept in a few mutex-guarded maps and rendered in the text
//! exposition format by hand rather than pulling in a metrics framework. Each update takes one short,
//! uncontended lock; nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::Outcome;

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
struct Histogram {
    /// Cumulative counts per bucket, then the +Inf bucket.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    audit_writes: Mutex<BTreeMap<&'static str, u64>>,
    throttle: Mutex<BTreeMap<&'static str, u64>>,
    export_jobs: Mutex<BTreeMap<String, i64>>,
    /// PHR connections open now (TLS handshakes included).
    connections_open: AtomicI64,
    /// Connections closed at once because `PHR_MAX_CONNECTIONS` were open.
    connections_refused: AtomicU64,
    /// Connections the server closed, by the limit that closed them.
    connections_closed: Mutex<BTreeMap<&'static str, u64>>,
    /// argon2 verifications holding a slot now.
    auth_in_flight: AtomicI64,
    /// The most that ever held a slot at once since start (never above `PHR_AUTH_MAX_CONCURRENT`).
    auth_in_flight_peak: AtomicI64,
    /// Verifications waiting for a slot now.
    auth_waiting: AtomicI64,
    /// Finished verifications by result, and calls refused before one by reason.
    auth_results: Mutex<BTreeMap<&'static str, u64>>,
    auth_refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Whether client CRLs are in force (their gauges are rendered only then).
    crl_in_force: AtomicBool,
    /// Revoked certificates listed by the CRLs in force.
    crl_revoked: AtomicI64,
    /// The earliest `nextUpdate` of the CRLs in force, Unix seconds (0: none has one).
    crl_next_update: AtomicI64,
    /// CRL reloads by result (`ok`, `failed`); the load at start-up is not counted.
    crl_reloads: Mutex<BTreeMap<&'static str, u64>>,
}

/// Why a call needing a password check was refused before the check ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// Every slot was busy and `PHR_AUTH_MAX_QUEUED` were already waiting (503).
    QueueFull,
    /// The client certificate used up `PHR_AUTH_MAX_FAILURES` (429).
    CertificateThrottled,
}

/// Why the server closed a PHR connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClose {
    /// The TLS handshake failed (no, foreign or expired certificate, bad protocol).
    HandshakeFailed,
    /// The client certificate is listed as revoked by a CRL of `PHR_TLS_CLIENT_CRL`.
    CertificateRevoked,
    /// PROXY protocol on, and the connection came from a source outside `PHR_PROXY_PROTOCOL_FROM`.
    ProxyUntrusted,
    /// PROXY protocol on, and a trusted source sent no valid header (or one of a version not accepted).
    ProxyHeaderInvalid,
    /// PROXY protocol on, and the header did not arrive within `PHR_TLS_HANDSHAKE_TIMEOUT_SECONDS`.
    ProxyHeaderTimeout,
    /// The TLS handshake did not finish within `PHR_TLS_HANDSHAKE_TIMEOUT_SECONDS`.
    HandshakeTimeout,
    /// A request's headers did not arrive within `PHR_HEADER_READ_TIMEOUT_SECONDS` (hyper's HTTP/1.1 timer),
    /// or no request started that long after the handshake (the accept loop's, for either protocol).
    HeaderTimeout,
    /// Nothing in flight for `PHR_IDLE_TIMEOUT_SECONDS`.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

impl ConnectionClose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HandshakeFailed => "handshake_failed",
            Self::CertificateRevoked => "certificate_revoked",
            Self::ProxyUntrusted => "proxy_untrusted_source",
            Self::ProxyHeaderInvalid => "proxy_header_invalid",
            Self::ProxyHeaderTimeout => "proxy_header_timeout",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::HeaderTimeout => "header_timeout",
            Self::Idle => "idle",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Counts one open connection in the gauge until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// One finished request on `route` (the router's pattern, never the raw path).
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        *lock(&self.requests).entry((route.to_owned(), status)).or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        let mut latency = lock(&self.latency);
        let histogram = latency.entry(route.to_owned()).or_default();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.buckets[i] += 1;
            }
        }
        histogram.buckets[LATENCY_BUCKETS.len()] += 1;
        histogram.sum_seconds += seconds;
        histogram.count += 1;
    }

    /// One audit row written (or attempted) with the call's outcome.
    pub fn audit_write(&self, outcome: Outcome) {
        *lock(&self.audit_writes).entry(outcome.as_str()).or_default() += 1;
    }

    /// One burst-budget decision: `allowed` or `throttled`.
    pub fn throttle_decision(&self, allowed: bool) {
        *lock(&self.throttle).entry(if allowed { "allowed" } else { "throttled" }).or_default() += 1;
    }

    /// Replaces the gauge of export jobs per state.
    pub fn set_export_jobs(&self, counts: impl IntoIterator<Item = (String, i64)>) {
        let mut jobs = lock(&self.export_jobs);
        jobs.clear();
        jobs.extend(counts);
    }

    /// A connection was accepted under the cap; it counts as open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    /// A connection was closed at once because the cap was reached.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The server closed a connection because of `reason`.
    pub fn connection_closed(&self, reason: ConnectionClose) {
        *lock(&self.connections_closed).entry(reason.as_str()).or_default() += 1;
    }

    /// An argon2 verification took a slot.
    pub fn auth_verification_started(&self) {
        let now = self.auth_in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.auth_in_flight_peak.fetch_max(now, Ordering::AcqRel);
    }

    /// An argon2 verification gave its slot back.
    pub fn auth_verification_finished(&self) {
        self.auth_in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// `delta` callers joined (+1) or left (-1) the queue for a slot.
    pub fn auth_waiting(&self, delta: i64) {
        self.auth_waiting.fetch_add(delta, Ordering::AcqRel);
    }

    /// A verification finished: the credential matched an account, or not.
    pub fn auth_verified(&self, matched: bool) {
        *lock(&self.auth_results).entry(if matched { "match" } else { "mismatch" }).or_default() += 1;
    }

    /// A call was refused before its password check.
    pub fn auth_refused(&self, reason: AuthRefusal) {
        let reason = match reason {
            AuthRefusal::QueueFull => "queue_full",
            AuthRefusal::CertificateThrottled => "certificate_throttled",
        };
        *lock(&self.auth_refusals).entry(reason).or_default() += 1;
    }

    /// The client CRLs now in force list `revoked` certificates; the first goes stale at `next_update`.
    pub fn crl_loaded(&self, revoked: usize, next_update: Option<i64>) {
        self.crl_revoked.store(i64::try_from(revoked).unwrap_or(i64::MAX), Ordering::Relaxed);
        self.crl_next_update.store(next_update.unwrap_or(0), Ordering::Relaxed);
        self.crl_in_force.store(true, Ordering::Release);
    }

    /// A reload of the client CRLs succeeded (new CRLs in force) or failed (the old ones stay).
    pub fn crl_reload(&self, ok: bool) {
        *lock(&self.crl_reloads).entry(if ok { "ok" } else { "failed" }).or_default() += 1;
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP phr_http_requests_total PHR requests by route and status.\n");
        out.push_str("# TYPE phr_http_requests_total counter\n");
        for ((route, status), count) in lock(&self.requests).iter() {
            let _ = writeln!(out, "phr_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}", escape(route));
        }
        out.push_str("# HELP phr_http_request_duration_seconds PHR request latency.\n");
        out.push_str("# TYPE phr_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.latency).iter() {
            let route = escape(route);
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "phr_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "phr_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.buckets[LATENCY_BUCKETS.len()]
            );
            let _ = writeln!(out, "phr_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum_seconds);
            let _ = writeln!(out, "phr_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        render_counter(
            &mut out,
            "phr_audit_writes_total",
            "Audit rows written, by outcome.",
            "outcome",
            &self.audit_writes,
        );
        render_counter(
            &mut out,
            "phr_image_throttle_total",
            "Image burst-budget decisions.",
            "decision",
            &self.throttle,
        );
        out.push_str("# HELP phr_export_jobs Export jobs by state.\n# TYPE phr_export_jobs gauge\n");
        for (state, count) in lock(&self.export_jobs).iter() {
            let _ = writeln!(out, "phr_export_jobs{{state=\"{}\"}} {count}", escape(state));
        }
        self.render_connections(&mut out);
        self.render_auth(&mut out);
        self.render_crl(&mut out);
        out
    }

    fn render_crl(&self, out: &mut String) {
        render_counter(
            out,
            "phr_tls_crl_reloads_total",
            "Reloads of PHR_TLS_CLIENT_CRL by result (failed: the CRLs in force stayed).",
            "result",
            &self.crl_reloads,
        );
        if !self.crl_in_force.load(Ordering::Acquire) {
            return;
        }
        for (name, help, value) in [
            ("phr_tls_crl_revoked_certificates", "Certificates revoked by the CRLs in force.", &self.crl_revoked),
            (
                "phr_tls_crl_next_update_timestamp_seconds",
                "Earliest nextUpdate of the CRLs in force (0: none); alert before it passes.",
                &self.crl_next_update,
            ),
        ] {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", value.load(Ordering::Relaxed));
        }
    }

    fn render_auth(&self, out: &mut String) {
        for (name, help, value) in [
            ("phr_auth_verifications_in_flight", "argon2 password checks running now.", &self.auth_in_flight),
            (
                "phr_auth_verifications_in_flight_peak",
                "Most argon2 checks ever running at once.",
                &self.auth_in_flight_peak,
            ),
            ("phr_auth_verifications_waiting", "Password checks waiting for a slot.", &self.auth_waiting),
        ] {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", value.load(Ordering::Acquire));
        }
        render_counter(
            out,
            "phr_auth_verifications_total",
            "argon2 password checks by result.",
            "result",
            &self.auth_results,
        );
        render_counter(
            out,
            "phr_auth_refused_total",
            "Calls refused before their password check, by reason.",
            "reason",
            &self.auth_refusals,
        );
    }

    fn render_connections(&self, out: &mut String) {
        let open = self.connections_open.load(Ordering::Relaxed);
        let refused = self.connections_refused.load(Ordering::Relaxed);
        let _ =
            writeln!(out, "# HELP phr_connections_open PHR connections open now.\n# TYPE phr_connections_open gauge");
        let _ = writeln!(out, "phr_connections_open {open}");
        let _ = writeln!(
            out,
            "# HELP phr_connections_refused_total PHR connections closed at once because PHR_MAX_CONNECTIONS were \
             open.\n# TYPE phr_connections_refused_total counter\nphr_connections_refused_total {refused}"
        );
        render_counter(
            out,
            "phr_connections_closed_total",
            "PHR connections the server closed, by reason.",
            "reason",
            &self.connections_closed,
        );
    }
}

fn render_counter(out: &mut String, name: &str, help: &str, label: &str, map: &Mutex<BTreeMap<&'static str, u64>>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, count) in lock(map).iter() {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("/x/{id}", 200, Duration::from_millis(3));
        m.request("/x/{id}", 200, Duration::from_millis(30));
        m.audit_write(Outcome::Failed);
        let text = m.render();
        assert!(text.contains("phr_http_requests_total{route=\"/x/{id}\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains("phr_audit_writes_total{outcome=\"failed\"} 1"));
    }
}
