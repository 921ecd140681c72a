//! The PHR listener's TLS configuration as it is *now*: read by the accept loop for every new connection, and
//! replaced whole when the CRL files change or the process gets SIGHUP.
//!
//! A revocation must take effect without a restart (a restart drops every connection of every clinic user,
//! and in a container service it is a deployment). So the rustls `ServerConfig` sits behind a lock that the
//! accept loop only reads (one `Arc` clone per connection), and a reload builds a complete new configuration
//! from the TLS material loaded at start-up plus freshly read CRLs, then swaps it in. The swap is atomic: a
//! reload that fails (a missing, truncated, foreign or unparsable file) changes nothing, logs the file and the
//! problem, and counts `phr_tls_crl_reloads_total{result="failed"}`; connections keep being checked against
//! the CRLs in force. Connections already open keep the configuration they were accepted with.
//!
//! Changes are found by polling each file's size, modification time and inode every
//! `PHR_TLS_CLIENT_CRL_RELOAD_SECONDS`, which also sees a file replaced by rename or a symlink swap (how
//! configuration management and mounted secrets update files); SIGHUP reloads at once, changed or not.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use super::crl::{self, CrlError, LoadedCrls};
use super::{TlsSetupError, build_server_config};
use crate::config::TlsMaterial;
use crate::config::revocation::RevocationConfig;
use crate::metrics::Metrics;

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// New CRLs are in force.
    Swapped,
    /// Nothing changed on disk (or no CRLs are configured); nothing was read.
    Unchanged,
}

/// The configuration in force plus what is needed to build the next one.
pub struct LiveTls {
    /// What new connections are accepted with.
    current: RwLock<Arc<ServerConfig>>,
    /// Server certificate, key and client CAs, loaded once at start-up.
    material: TlsMaterial,
    /// The CRL files and the polling interval.
    revocation: RevocationConfig,
    /// Each file's stamp when last read, successfully or not: a failed file is retried once it changes.
    seen: Mutex<Vec<Option<Stamp>>>,
    /// Where reloads and the CRLs' facts are reported.
    metrics: Arc<Metrics>,
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    /// Size in bytes.
    len: u64,
    /// Last modification.
    modified: Option<SystemTime>,
    /// `(device, inode)`: a file replaced by rename is a new inode even with the same size and time.
    inode: (u64, u64),
}

impl LiveTls {
    /// Reads the CRLs and builds the first configuration; any problem is a start-up error naming the file.
    pub fn new(
        material: TlsMaterial,
        revocation: RevocationConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, TlsSetupError> {
        let stamps = stamps(&revocation.files);
        let crls = crl::load(&revocation.files, &material.client_ca, now_unix()).map_err(TlsSetupError::ClientCrl)?;
        let config = build_server_config(&material, crls.crls.clone())?;
        report_loaded(&crls, &metrics);
        Ok(Arc::new(Self { current: RwLock::new(config), material, revocation, seen: Mutex::new(stamps), metrics }))
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the CRL files when one has changed (`force`: in any case) and swaps the new configuration in.
    /// On an error the configuration in force stays; the error names the file.
    pub fn reload(&self, force: bool) -> Result<Reloaded, CrlError> {
        if self.revocation.files.is_empty() {
            return Ok(Reloaded::Unchanged);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamps(&self.revocation.files);
        if !force && *seen == now {
            return Ok(Reloaded::Unchanged);
        }
        *seen = now;
        let result = crl::load(&self.revocation.files, &self.material.client_ca, now_unix()).and_then(|crls| {
            let config = build_server_config(&self.material, crls.crls.clone()).map_err(|e| CrlError {
                file: self.revocation.files.first().cloned().unwrap_or_default(),
                problem: e.to_string(),
            })?;
            Ok((crls, config))
        });
        match result {
            Ok((crls, config)) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
                report_loaded(&crls, &self.metrics);
                self.metrics.crl_reload(true);
                tracing::info!(crls = crls.crls.len(), revoked = crls.revoked, "PHR_TLS_CLIENT_CRL reloaded");
                Ok(Reloaded::Swapped)
            }
            Err(error) => {
                self.metrics.crl_reload(false);
                tracing::error!(
                    file = %error.file.display(),
                    problem = %error.problem,
                    "PHR_TLS_CLIENT_CRL reload failed; the CRLs in force stay"
                );
                Err(error)
            }
        }
    }

    /// Polls the files for changes until `stop` (when an interval is configured and there are files).
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let Some(every) = self.revocation.poll_interval.filter(|_| !self.revocation.files.is_empty()) else {
            return;
        };
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            let live = self.clone();
            // Reading files is blocking I/O; an error has been logged and counted by `reload`.
            let _ = tokio::task::spawn_blocking(move || live.reload(false)).await;
        }
    }
}

/// Logs and publishes what the CRLs now in force say: how many revocations, and when they go stale.
fn report_loaded(crls: &LoadedCrls, metrics: &Metrics) {
    if crls.crls.is_empty() {
        return;
    }
    metrics.crl_loaded(crls.revoked, crls.next_update);
    for (file, next_update) in &crls.stale {
        tracing::warn!(
            file = %file.display(),
            next_update,
            "a CRL of PHR_TLS_CLIENT_CRL is past its nextUpdate; it is still enforced, but certificates revoked \
             since it was issued are not: publish a fresh CRL"
        );
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<Stamp>> {
    files.iter().map(|f| std::fs::metadata(f).ok().map(|m| stamp(&m))).collect()
}

#[cfg(unix)]
fn stamp(metadata: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    Stamp { len: metadata.len(), modified: metadata.modified().ok(), inode: (metadata.dev(), metadata.ino()) }
}

#[cfg(not(unix))]
fn stamp(metadata: &std::fs::Metadata) -> Stamp {
    Stamp { len: metadata.len(), modified: metadata.modified().ok(), inode: (0, 0) }
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
