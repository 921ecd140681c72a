//! Server configuration: raw flags and environment variables in, one validated [`Config`] out.
//!
//! Operators configure the server through environment variables (the names the ops logs and Vault paths
//! use), each also a flag, all documented by `phr-server --help`. [`ServeArgs`] is the raw form clap fills;
//! [`ServeArgs::validate`] reads the files it names and checks every value once, so a mistake stops the server
//! at start-up with a message that names the variable, never halfway through a request. Tests and
//! `connrun demo` skip the raw form and build a [`Config`] directly with [`Config::new`]. The export settings
//! are in [`export`], the shared error in [`error`]; this module depends on nothing but the clock, so every
//! subsystem can read its settings from here.

pub mod audit;
pub mod auth;
pub mod connections;
pub mod error;
pub mod export;
pub mod proxy;
pub mod revocation;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::clock::Clock;
use audit::{ChainPolicy, CheckpointArgs, CheckpointConfig};
use auth::{AuthArgs, AuthLimits};
use connections::{ConnectionArgs, ConnectionLimits};
pub use error::ConfigError;
use export::{ExportArgs, ExportConfig};
use proxy::{ProxyArgs, ProxyProtocol};
use revocation::{RevocationArgs, RevocationConfig};

/// Flags and variables of `phr-server serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the PHR listener (HTTPS, client certificate required).
    #[arg(long, env = "PHR_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,

    /// Address of the operational listener (/healthz, /readyz, /metrics; plain HTTP, keep it on loopback).
    #[arg(long, env = "PHR_OPS_LISTEN", default_value = "127.0.0.1:9464")]
    pub ops_listen: SocketAddr,

    /// Server certificate chain, PEM (leaf first).
    #[arg(long, env = "PHR_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// Server private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "PHR_TLS_KEY")]
    pub tls_key: PathBuf,

    /// CA bundle, PEM, that client certificates must chain to (mutual TLS).
    #[arg(long, env = "PHR_TLS_CLIENT_CA")]
    pub tls_client_ca: PathBuf,

    /// Comma-separated peer IPs whose X-Forwarded-For (and -Proto, -Host) is trusted for the audit row's
    /// ip_address: only for a proxy that terminates HTTP itself. Behind a TCP (L4) balancer, which cannot add
    /// headers to a TLS stream, use PHR_PROXY_PROTOCOL instead.
    #[arg(long, env = "PHR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,

    #[command(flatten)]
    pub layer: LayerKeyArgs,

    /// Largest image PHR-07 serves, in bytes; larger ones answer 413.
    #[arg(long, env = "PHR_IMAGE_MAX_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub image_max_bytes: u64,

    /// Image bytes one client (certificate + facility) may receive in any sliding window.
    #[arg(long, env = "PHR_IMAGE_BURST", default_value_t = 200 * 1024 * 1024)]
    pub image_burst_bytes: u64,

    /// Length of the image burst window, in seconds.
    #[arg(long, env = "PHR_IMAGE_BURST_WINDOW_SECONDS", default_value_t = 300)]
    pub image_burst_window_seconds: u64,

    /// Folder holding image blobs (the database stores their keys).
    #[arg(long, env = "PHR_IMAGE_STORE_DIR", default_value = "data/images")]
    pub image_store_dir: PathBuf,

    #[command(flatten)]
    pub server_info: ServerInfoArgs,

    #[command(flatten)]
    pub export: ExportArgs,

    #[command(flatten)]
    pub connections: ConnectionArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub revocation: RevocationArgs,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    #[command(flatten)]
    pub checkpoints: CheckpointArgs,

    /// Which chain an audit row joins: `facility` (a chain per authenticated facility, `main` for the rest,
    /// so facilities do not wait for each other) or `single` (every row in `main`).
    #[arg(long, env = "PHR_AUDIT_CHAINS", value_enum, default_value_t = ChainPolicy::Facility)]
    pub audit_chains: ChainPolicy,

    /// Seconds in-flight requests get to finish after SIGTERM or ctrl-c.
    #[arg(long, env = "PHR_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
}

/// Where the Layer ID signing key comes from (PHR-06).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LayerKeyArgs {
    /// RSA private key, PKCS#8 DER, base64 (whitespace ignored). Takes precedence over the path.
    #[arg(long, env = "PHR_LAYER_PRIVATE_KEY_BASE64", hide_env_values = true)]
    pub layer_private_key_base64: Option<String>,

    /// RSA private key file, PKCS#8 DER or PEM.
    #[arg(long, env = "PHR_LAYER_PRIVATE_KEY_PATH")]
    pub layer_private_key_path: Option<PathBuf>,

    /// `kid` header of issued tokens.
    #[arg(long, env = "PHR_LAYER_KEY_ID")]
    pub layer_key_id: Option<String>,

    /// `iss` claim of issued tokens.
    #[arg(long, env = "PHR_LAYER_PROVIDER_ID")]
    pub layer_provider_id: Option<String>,

    /// Start without a Layer ID key; PHR-06 then answers 503 error.phr.layerKeyMissing.
    #[arg(long, env = "PHR_LAYER_KEY_OPTIONAL", default_value_t = false)]
    pub layer_key_optional: bool,
}

/// Values served by `/serverinfo/*`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerInfoArgs {
    /// `serverinfo/jamri`: the JAMRI code of this installation.
    #[arg(long, env = "PHR_SERVERINFO_JAMRI", default_value = "")]
    pub jamri: String,

    /// `serverinfo/claim/conn`: how CLAIM is sent (`server` or `client`).
    #[arg(long, env = "PHR_SERVERINFO_CLAIM_CONN", default_value = "server")]
    pub claim_conn: String,

    /// `serverinfo/cloud/zero`: the cloud-zero flag.
    #[arg(long, env = "PHR_SERVERINFO_CLOUD_ZERO", default_value = "")]
    pub cloud_zero: String,
}

impl Default for ServerInfoArgs {
    fn default() -> Self {
        Self { jamri: String::new(), claim_conn: "server".into(), cloud_zero: String::new() }
    }
}

/// Certificates and key for the PHR listener, already read and parsed.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: std::sync::Arc<PrivateKeyDer<'static>>,
    /// Client certificates must chain to one of these.
    pub client_ca: Vec<CertificateDer<'static>>,
}

/// PHR-07's limits.
#[derive(Debug, Clone, Copy)]
pub struct ImagePolicy {
    pub max_bytes: u64,
    pub burst_bytes: u64,
    pub burst_window: Duration,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        Self { max_bytes: 5 * 1024 * 1024, burst_bytes: 200 * 1024 * 1024, burst_window: Duration::from_secs(300) }
    }
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub tls: TlsMaterial,
    /// CRL files client certificates are checked against, and how often they are re-read.
    pub revocation: RevocationConfig,
    /// Peers whose `X-Forwarded-*` headers are trusted (HTTP-terminating proxies only).
    pub trusted_proxies: Vec<IpAddr>,
    /// The PROXY protocol on the PHR listener (an L4 balancer announcing the client address).
    pub proxy_protocol: ProxyProtocol,
    /// Raw sources; `layer_key` loads and checks them at start-up (fail fast).
    pub layer: LayerKeyArgs,
    pub image: ImagePolicy,
    pub image_store_dir: PathBuf,
    pub server_info: ServerInfoArgs,
    pub shutdown_grace: Duration,
    /// The PHR listener's connection cap, timeouts and HTTP/2 stream limit.
    pub connections: ConnectionLimits,
    /// How many password checks run and wait at once, and the per-certificate failure throttle.
    pub auth: AuthLimits,
    /// Phase F: artifact storage, signed URLs, worker pool.
    pub export: ExportConfig,
    /// Signed audit checkpoints; `None` writes none (no `PHR_AUDIT_SIGNING_KEY`).
    pub audit_checkpoints: Option<CheckpointConfig>,
    /// Which chain each audit row joins.
    pub audit_chains: ChainPolicy,
    /// The time source; tests inject a manual clock.
    pub clock: Clock,
}

impl Config {
    /// A configuration with defaults for everything but the database and the TLS material.
    pub fn new(database_url: impl Into<String>, tls: TlsMaterial, image_store_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: database_url.into(),
            tls,
            revocation: RevocationConfig::default(),
            trusted_proxies: Vec::new(),
            proxy_protocol: ProxyProtocol::default(),
            layer: LayerKeyArgs::default(),
            image: ImagePolicy::default(),
            image_store_dir: image_store_dir.into(),
            server_info: ServerInfoArgs::default(),
            shutdown_grace: Duration::from_secs(30),
            connections: ConnectionLimits::default(),
            auth: AuthLimits::default(),
            export: ExportConfig::default(),
            audit_checkpoints: None,
            audit_chains: ChainPolicy::default(),
            clock: Clock::System,
        }
    }
}

impl ServeArgs {
    /// Reads the files the arguments name and checks every value.
    pub fn validate(&self, database_url: &str) -> Result<Config, ConfigError> {
        let cert_chain = read_certs(&self.tls_cert, "PHR_TLS_CERT")?;
        let key = PrivateKeyDer::from_pem_file(&self.tls_key)
            .map_err(|e| ConfigError::new("PHR_TLS_KEY", format!("{}: {e}", self.tls_key.display())))?;
        let client_ca = read_certs(&self.tls_client_ca, "PHR_TLS_CLIENT_CA")?;
        if self.image_max_bytes == 0 {
            return Err(ConfigError::new("PHR_IMAGE_MAX_BYTES", "must be greater than 0"));
        }
        if self.image_burst_bytes < self.image_max_bytes {
            return Err(ConfigError::new(
                "PHR_IMAGE_BURST",
                format!("{} is smaller than PHR_IMAGE_MAX_BYTES ({})", self.image_burst_bytes, self.image_max_bytes),
            ));
        }
        if self.image_burst_window_seconds == 0 {
            return Err(ConfigError::new("PHR_IMAGE_BURST_WINDOW_SECONDS", "must be greater than 0"));
        }
        Ok(Config {
            database_url: database_url.to_owned(),
            tls: TlsMaterial { cert_chain, key: std::sync::Arc::new(key), client_ca },
            revocation: self.revocation.validate()?,
            trusted_proxies: self.trusted_proxies.clone(),
            proxy_protocol: self.proxy.validate()?,
            layer: self.layer.clone(),
            image: ImagePolicy {
                max_bytes: self.image_max_bytes,
                burst_bytes: self.image_burst_bytes,
                burst_window: Duration::from_secs(self.image_burst_window_seconds),
            },
            image_store_dir: self.image_store_dir.clone(),
            server_info: self.server_info.clone(),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            connections: self.connections.validate()?,
            auth: self.auth.validate()?,
            export: self.export.validate()?,
            audit_checkpoints: self.checkpoints.validate()?,
            audit_chains: self.audit_chains,
            clock: Clock::System,
        })
    }
}

fn read_certs(path: &Path, variable: &'static str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError::new(variable, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(variable, format!("{}: no CERTIFICATE block found", path.display())));
    }
    Ok(certs)
}
