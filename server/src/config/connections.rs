//! Limits on the PHR listener's connections: how many may be open, how long a client may take to finish its
//! TLS handshake and its request headers, how long an idle connection is kept, and how many HTTP/2 streams one
//! connection may run at once.
//!
//! Clients sit on the open network, and a client holding a valid certificate can otherwise keep a connection
//! (and its file descriptor) forever by sending half a request, or open more connections than the process
//! has descriptors. Every limit here is finite, validated at start-up, and named by its environment variable.
//! [`ConnectionArgs`] is the raw clap form flattened into `phr-server serve`; [`ConnectionLimits`] is the
//! validated form the accept loop reads, with the same defaults for tests and `connrun demo`.

use std::time::Duration;

use super::error::ConfigError;

/// Descriptors kept free beside the connection cap: the database pool, blob files, S3 connections, logs.
pub const FD_HEADROOM: u64 = 128;

/// Upper bound of every timeout here: an hour is already far longer than any client should need.
const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// Upper bound of `PHR_HTTP2_MAX_CONCURRENT_STREAMS` (each stream may hold a request in flight).
const MAX_STREAMS: u32 = 1000;

/// Flags and variables of the PHR listener's connection limits.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Open PHR connections at most; one more is closed at once (before TLS) and counted in
    /// phr_connections_refused_total. Must stay below the open-file limit (ulimit -n) minus 128.
    #[arg(long, env = "PHR_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: u32,

    /// Seconds a client may take to complete the TLS handshake.
    #[arg(long, env = "PHR_TLS_HANDSHAKE_TIMEOUT_SECONDS", default_value_t = 10)]
    pub tls_handshake_timeout_seconds: u64,

    /// Seconds a client may take to send a request's headers (HTTP/1.1, counted from when the server starts
    /// waiting for them, so also between kept-alive requests) and to start its first request (both protocols).
    /// A client too slow is closed (HTTP/1.1 gets 408 first).
    #[arg(long, env = "PHR_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10)]
    pub header_read_timeout_seconds: u64,

    /// Seconds a connection with no request in flight is kept open. HTTP/1.1 connections are closed earlier by
    /// the header-read timeout, which also runs between requests.
    #[arg(long, env = "PHR_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub idle_timeout_seconds: u64,

    /// HTTP/2 streams (requests) one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, env = "PHR_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 64)]
    pub http2_max_concurrent_streams: u32,
}

/// The validated connection limits of the PHR listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most (TLS handshakes included); more are closed at once and counted.
    pub max_connections: u32,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for a request's headers, and for the first request to start.
    pub header_read_timeout: Duration,
    /// Time a connection with nothing in flight is kept.
    pub idle_timeout: Duration,
    /// HTTP/2 streams per connection at once.
    pub http2_max_concurrent_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            http2_max_concurrent_streams: 64,
        }
    }
}

impl ConnectionArgs {
    /// Checks every limit, and the connection cap against the process's open-file limit.
    pub fn validate(&self) -> Result<ConnectionLimits, ConfigError> {
        let limits = ConnectionLimits {
            max_connections: self.max_connections,
            handshake_timeout: timeout(self.tls_handshake_timeout_seconds, "PHR_TLS_HANDSHAKE_TIMEOUT_SECONDS")?,
            header_read_timeout: timeout(self.header_read_timeout_seconds, "PHR_HEADER_READ_TIMEOUT_SECONDS")?,
            idle_timeout: timeout(self.idle_timeout_seconds, "PHR_IDLE_TIMEOUT_SECONDS")?,
            http2_max_concurrent_streams: self.http2_max_concurrent_streams,
        };
        if !(1..=MAX_STREAMS).contains(&limits.http2_max_concurrent_streams) {
            return Err(ConfigError::new(
                "PHR_HTTP2_MAX_CONCURRENT_STREAMS",
                format!("{} is outside 1..={MAX_STREAMS}", limits.http2_max_concurrent_streams),
            ));
        }
        check_connection_cap(limits.max_connections, open_file_limit())?;
        Ok(limits)
    }
}

fn timeout(seconds: u64, variable: &'static str) -> Result<Duration, ConfigError> {
    if (1..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
        Ok(Duration::from_secs(seconds))
    } else {
        Err(ConfigError::new(variable, format!("{seconds} is outside 1..={MAX_TIMEOUT_SECONDS} seconds")))
    }
}

/// The cap must be positive and leave [`FD_HEADROOM`] descriptors under the soft open-file limit, so excess
/// connections are refused by the cap, cleanly, instead of by `accept` failing with EMFILE.
fn check_connection_cap(max_connections: u32, open_files: Option<u64>) -> Result<(), ConfigError> {
    if max_connections == 0 {
        return Err(ConfigError::new("PHR_MAX_CONNECTIONS", "must be greater than 0"));
    }
    if let Some(limit) = open_files
        && u64::from(max_connections) + FD_HEADROOM > limit
    {
        let fits = limit.saturating_sub(FD_HEADROOM);
        return Err(ConfigError::new(
            "PHR_MAX_CONNECTIONS",
            format!(
                "{max_connections} connections need {} open files, but the open-file limit (ulimit -n) is {limit}: \
                 raise the limit or set PHR_MAX_CONNECTIONS to at most {fits}",
                u64::from(max_connections) + FD_HEADROOM
            ),
        ));
    }
    Ok(())
}

/// The soft `RLIMIT_NOFILE` of this process, when it is known and finite.
fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConnectionArgs {
        ConnectionArgs {
            max_connections: 16,
            tls_handshake_timeout_seconds: 10,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            http2_max_concurrent_streams: 64,
        }
    }

    #[test]
    fn every_limit_is_checked_and_named() {
        let zero_header = ConnectionArgs { header_read_timeout_seconds: 0, ..args() }.validate().unwrap_err();
        let huge_idle = ConnectionArgs { idle_timeout_seconds: 86_400, ..args() }.validate().unwrap_err();
        let no_streams = ConnectionArgs { http2_max_concurrent_streams: 0, ..args() }.validate().unwrap_err();
        let no_connections = ConnectionArgs { max_connections: 0, ..args() }.validate().unwrap_err();

        assert_eq!(zero_header.variable, "PHR_HEADER_READ_TIMEOUT_SECONDS");
        assert_eq!(huge_idle.variable, "PHR_IDLE_TIMEOUT_SECONDS");
        assert_eq!(no_streams.variable, "PHR_HTTP2_MAX_CONCURRENT_STREAMS");
        assert_eq!(no_connections.variable, "PHR_MAX_CONNECTIONS");
        assert_eq!(args().validate().unwrap().idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn the_cap_must_fit_under_the_open_file_limit() {
        let error = check_connection_cap(1000, Some(1024)).unwrap_err();

        assert_eq!(error.variable, "PHR_MAX_CONNECTIONS");
        assert!(error.problem.contains("ulimit -n) is 1024") && error.problem.contains("at most 896"), "{error}");
        assert!(check_connection_cap(896, Some(1024)).is_ok());
        assert!(check_connection_cap(100_000, None).is_ok(), "an unlimited or unknown limit is not checked");
    }
}
