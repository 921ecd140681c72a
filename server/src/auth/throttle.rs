//! Failed password checks per client certificate, in a sliding window: after `max_failures` of them, calls
//! from that certificate that need a check are refused until the oldest failure leaves the window.
//!
//! Every caller on the PHR listener has proved a client certificate, so the certificate (its SHA-256) names
//! the client far better than an address behind a balancer does. A certificate guessing passwords is slowed
//! to `max_failures` argon2 runs per window and costs nothing after that; other certificates are unaffected.
//! A success does not wipe the record (failures only age out), so interleaving one known password with
//! guesses does not reset the count. Memory stays bounded: each certificate keeps at most `max_failures`
//! times, and certificates with nothing left in the window are swept out once per window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Failures per client certificate in a sliding window.
#[derive(Debug)]
pub struct FailureThrottle {
    /// Failures allowed in any window before a certificate is refused.
    max_failures: usize,
    /// The window's length.
    window: chrono::Duration,
    /// What is remembered, under one lock.
    state: Mutex<State>,
}

/// The throttle's memory.
#[derive(Debug, Default)]
struct State {
    /// Times of recent failures per certificate, oldest first.
    failures: HashMap<String, VecDeque<DateTime<Utc>>>,
    /// When certificates with nothing left in the window were last swept out.
    last_sweep: Option<DateTime<Utc>>,
}

impl FailureThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX).max(1),
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
            state: Mutex::new(State::default()),
        }
    }

    /// `Err(wait)` when `client` has used up its failures at `now`: how long until the oldest leaves the
    /// window, in whole seconds rounded up (the `Retry-After`).
    pub fn check(&self, client: &str, now: DateTime<Utc>) -> Result<(), Duration> {
        let mut state = self.lock();
        self.sweep(&mut state, now);
        let Some(failures) = state.failures.get_mut(client) else { return Ok(()) };
        self.expire(failures, now);
        match failures.front() {
            Some(oldest) if failures.len() >= self.max_failures => {
                let millis = (*oldest + self.window - now).num_milliseconds().max(1);
                Err(Duration::from_secs(u64::try_from(millis).unwrap_or(1).div_ceil(1000)))
            }
            _ => Ok(()),
        }
    }

    /// Records one failed check by `client` at `now`.
    pub fn record_failure(&self, client: &str, now: DateTime<Utc>) {
        let mut state = self.lock();
        let failures = state.failures.entry(client.to_owned()).or_default();
        self.expire(failures, now);
        failures.push_back(now);
        while failures.len() > self.max_failures {
            failures.pop_front();
        }
    }

    /// Certificates currently remembered (for tests of the memory bound).
    pub fn tracked_clients(&self) -> usize {
        self.lock().failures.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expire(&self, failures: &mut VecDeque<DateTime<Utc>>, now: DateTime<Utc>) {
        while failures.front().is_some_and(|at| now - *at >= self.window) {
            failures.pop_front();
        }
    }

    fn sweep(&self, state: &mut State, now: DateTime<Utc>) {
        if state.last_sweep.is_some_and(|at| now - at < self.window) {
            return;
        }
        state.last_sweep = Some(now);
        state.failures.retain(|_, failures| {
            self.expire(failures, now);
            !failures.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_763_500_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_nth_failure_throttles_until_the_oldest_leaves_the_window() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        for second in [0, 10, 20] {
            assert_eq!(throttle.check("a", at(second)), Ok(()));
            throttle.record_failure("a", at(second));
        }

        assert_eq!(throttle.check("a", at(21)), Err(Duration::from_secs(39)));
        assert_eq!(throttle.check("b", at(21)), Ok(()), "other certificates are not affected");
        assert_eq!(throttle.check("a", at(59)), Err(Duration::from_secs(1)));
        assert_eq!(throttle.check("a", at(60)), Ok(()), "the failure at 0 has left the window");
    }

    #[test]
    fn memory_is_bounded_per_certificate_and_idle_certificates_are_forgotten() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        for client in 0..100 {
            for _ in 0..50 {
                throttle.record_failure(&format!("c{client}"), at(0));
            }
        }
        assert_eq!(throttle.lock().failures["c7"].len(), 2);

        assert_eq!(throttle.check("late", at(61)), Ok(()));

        assert_eq!(throttle.tracked_clients(), 0);
    }
}
