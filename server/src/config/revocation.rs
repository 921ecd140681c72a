//! Client certificate revocation: which CRL files the PHR listener checks client certificates against, and how
//! often it looks for new ones.
//!
//! A clinic revokes a client certificate when a laptop is lost or a staff member leaves; until the server
//! knows, that certificate still completes the handshake. `PHR_TLS_CLIENT_CRL` names the CRL files (PEM or
//! DER, one or more, comma-separated like every list variable of the server); the TLS layer (`tls::crl`)
//! reads them at start-up, where a missing or garbled file stops the server, and again whenever a file
//! changes or the process gets SIGHUP. This module only validates the shape of the setting; reading the files
//! is the TLS layer's job, so that start-up and reload read them the same way.

use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;

/// Upper bound of `PHR_TLS_CLIENT_CRL_RELOAD_SECONDS`: a day; SIGHUP reloads at once anyway.
const MAX_RELOAD_SECONDS: u64 = 86_400;

/// Upper bound of the number of CRL files: one per issuing CA is the norm; more is a mistake.
pub const MAX_CRL_FILES: usize = 64;

/// Flags and variables of client certificate revocation.
#[derive(Debug, Clone, clap::Args)]
pub struct RevocationArgs {
    /// CRL files (PEM "X509 CRL" blocks or one DER CRL each), comma-separated, one per CA of
    /// PHR_TLS_CLIENT_CA. When set, a client certificate listed as revoked fails the TLS handshake, and so does
    /// one whose CA has no CRL here. Files are re-read when they change and on SIGHUP; a bad new file keeps
    /// the CRLs in force and logs the file.
    #[arg(long, env = "PHR_TLS_CLIENT_CRL", value_delimiter = ',')]
    pub tls_client_crl: Vec<PathBuf>,

    /// Seconds between checks of the CRL files for changes; 0 = reload on SIGHUP only.
    #[arg(long, env = "PHR_TLS_CLIENT_CRL_RELOAD_SECONDS", default_value_t = 30)]
    pub tls_client_crl_reload_seconds: u64,
}

/// The validated revocation settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationConfig {
    /// The CRL files; empty means no revocation checking.
    pub files: Vec<PathBuf>,
    /// How often the files are checked for changes; `None` means on SIGHUP (or the reload handle) only.
    pub poll_interval: Option<Duration>,
}

impl RevocationConfig {
    /// CRL checking on `files`, polled every `interval`.
    pub fn polling(files: Vec<PathBuf>, interval: Duration) -> Self {
        Self { files, poll_interval: Some(interval) }
    }
}

impl RevocationArgs {
    /// Checks the list and the interval (the files themselves are read by the TLS layer).
    pub fn validate(&self) -> Result<RevocationConfig, ConfigError> {
        if self.tls_client_crl.len() > MAX_CRL_FILES {
            return Err(ConfigError::new(
                "PHR_TLS_CLIENT_CRL",
                format!("{} files listed; at most {MAX_CRL_FILES}", self.tls_client_crl.len()),
            ));
        }
        if let Some(empty) = self.tls_client_crl.iter().position(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError::new(
                "PHR_TLS_CLIENT_CRL",
                format!("entry {} is empty (a stray comma?); list the CRL files separated by commas", empty + 1),
            ));
        }
        let seconds = self.tls_client_crl_reload_seconds;
        if seconds > MAX_RELOAD_SECONDS {
            return Err(ConfigError::new(
                "PHR_TLS_CLIENT_CRL_RELOAD_SECONDS",
                format!("{seconds} is outside 0..={MAX_RELOAD_SECONDS} (0 = on SIGHUP only)"),
            ));
        }
        Ok(RevocationConfig {
            files: self.tls_client_crl.clone(),
            poll_interval: (seconds > 0).then(|| Duration::from_secs(seconds)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(files: &[&str], seconds: u64) -> RevocationArgs {
        RevocationArgs {
            tls_client_crl: files.iter().map(PathBuf::from).collect(),
            tls_client_crl_reload_seconds: seconds,
        }
    }

    #[test]
    fn the_list_and_the_interval_are_checked_and_named() {
        let stray_comma = args(&["a.crl", ""], 30).validate().unwrap_err();
        let huge = args(&["a.crl"], 86_401).validate().unwrap_err();
        let sighup_only = args(&["a.crl", "b.der"], 0).validate().unwrap();

        assert_eq!(stray_comma.variable, "PHR_TLS_CLIENT_CRL");
        assert!(stray_comma.problem.contains("entry 2"), "{stray_comma}");
        assert_eq!(huge.variable, "PHR_TLS_CLIENT_CRL_RELOAD_SECONDS");
        assert_eq!(sighup_only.poll_interval, None);
        assert_eq!(sighup_only.files.len(), 2);
        assert_eq!(args(&[], 30).validate().unwrap().files, Vec::<PathBuf>::new());
    }
}
