//! Limits on password checking: how many argon2id verifications run at once, how many may wait for a turn,
//! and how many failed ones one client certificate may cause before it is told to wait.
//!
//! argon2id is memory-hard on purpose (about 19 MiB and tens of milliseconds per check), so every Basic
//! credential the server has not verified recently costs real memory and CPU. Unbounded, a flood of distinct
//! wrong passwords took the server from 41 MB to gigabytes. These limits make the cost of such a flood a
//! constant: at most `max_concurrent` checks hold memory, at most `max_queued` wait, the rest are answered
//! 503 at once, and a certificate that keeps failing is answered 429 without any check at all.

use std::time::Duration;

use super::error::ConfigError;

/// Upper bound of `PHR_AUTH_MAX_CONCURRENT`: each running check holds about 19 MiB.
const MAX_CONCURRENT: u32 = 64;
/// Upper bound of `PHR_AUTH_MAX_QUEUED`.
const MAX_QUEUED: u32 = 10_000;
/// Upper bound of `PHR_AUTH_MAX_FAILURES`.
const MAX_FAILURES: u32 = 1_000_000;
/// Upper bound of `PHR_AUTH_FAILURE_WINDOW_SECONDS`: one day.
const MAX_WINDOW_SECONDS: u64 = 86_400;

/// Flags and variables of the password-check limits.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// argon2id verifications running at once (each holds about 19 MiB); default: the machine's available
    /// parallelism (CPU cores, or the container's CPU quota).
    #[arg(long, env = "PHR_AUTH_MAX_CONCURRENT")]
    pub auth_max_concurrent: Option<u32>,

    /// Verifications waiting for a turn; one more is answered 503 error.phr.throttled with Retry-After.
    #[arg(long, env = "PHR_AUTH_MAX_QUEUED", default_value_t = 32)]
    pub auth_max_queued: u32,

    /// Failed password checks one client certificate may cause per window; then its calls needing a check
    /// are answered 429 error.phr.throttled with Retry-After until the oldest failure leaves the window.
    #[arg(long, env = "PHR_AUTH_MAX_FAILURES", default_value_t = 10)]
    pub auth_max_failures: u32,

    /// Length of the failure window, in seconds.
    #[arg(long, env = "PHR_AUTH_FAILURE_WINDOW_SECONDS", default_value_t = 300)]
    pub auth_failure_window_seconds: u64,
}

/// The validated password-check limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// argon2id verifications at once.
    pub max_concurrent: u32,
    /// Verifications waiting for a turn, at most.
    pub max_queued: u32,
    /// Failed checks per certificate per window before it is throttled.
    pub max_failures: u32,
    /// The sliding window of failures.
    pub failure_window: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            max_concurrent: machine_parallelism(),
            max_queued: 32,
            max_failures: 10,
            failure_window: Duration::from_secs(300),
        }
    }
}

impl AuthArgs {
    pub fn validate(&self) -> Result<AuthLimits, ConfigError> {
        let max_concurrent = self.auth_max_concurrent.unwrap_or_else(machine_parallelism);
        within(u64::from(max_concurrent), 1, u64::from(MAX_CONCURRENT), "PHR_AUTH_MAX_CONCURRENT")?;
        within(u64::from(self.auth_max_queued), 0, u64::from(MAX_QUEUED), "PHR_AUTH_MAX_QUEUED")?;
        within(u64::from(self.auth_max_failures), 1, u64::from(MAX_FAILURES), "PHR_AUTH_MAX_FAILURES")?;
        within(self.auth_failure_window_seconds, 1, MAX_WINDOW_SECONDS, "PHR_AUTH_FAILURE_WINDOW_SECONDS")?;
        Ok(AuthLimits {
            max_concurrent,
            max_queued: self.auth_max_queued,
            max_failures: self.auth_max_failures,
            failure_window: Duration::from_secs(self.auth_failure_window_seconds),
        })
    }
}

fn within(value: u64, min: u64, max: u64, variable: &'static str) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(variable, format!("{value} is outside {min}..={max}")))
    }
}

/// The CPUs this process may use (respecting cgroup quotas), capped at [`MAX_CONCURRENT`].
fn machine_parallelism() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores).unwrap_or(MAX_CONCURRENT).min(MAX_CONCURRENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AuthArgs {
        AuthArgs {
            auth_max_concurrent: None,
            auth_max_queued: 32,
            auth_max_failures: 10,
            auth_failure_window_seconds: 300,
        }
    }

    #[test]
    fn defaults_follow_the_machine_and_every_limit_is_named() {
        let limits = args().validate().unwrap();
        let zero = AuthArgs { auth_max_concurrent: Some(0), ..args() }.validate().unwrap_err();
        let no_failures = AuthArgs { auth_max_failures: 0, ..args() }.validate().unwrap_err();
        let long_window = AuthArgs { auth_failure_window_seconds: 90_000, ..args() }.validate().unwrap_err();

        assert!((1..=MAX_CONCURRENT).contains(&limits.max_concurrent));
        assert_eq!(zero.variable, "PHR_AUTH_MAX_CONCURRENT");
        assert_eq!(no_failures.variable, "PHR_AUTH_MAX_FAILURES");
        assert_eq!(long_window.variable, "PHR_AUTH_FAILURE_WINDOW_SECONDS");
        assert_eq!(AuthArgs { auth_max_queued: 0, ..args() }.validate().unwrap().max_queued, 0, "no queue is allowed");
    }
}
