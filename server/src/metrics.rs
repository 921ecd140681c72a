//! Prometheus metrics for `/metrics`: requests by route and status, a latency histogram, audit writes,
//! throttle decisions and export jobs by state.
//!
//! The set is small and fixed, so it is kept in a few mutex-guarded maps and rendered in the text
//! exposition format by hand rather than pulling in a metrics framework. Each update takes one short,
//! uncontended lock; nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
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
        out
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
