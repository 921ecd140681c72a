//! Phase F settings: where artifacts go, how download URLs are signed, how the worker pool behaves.
//!
//! The variable names are the ones the ops logs and Vault paths use (`PHR_EXPORT_STORAGE_TYPE`,
//! `PHR_EXPORT_S3_*`, `PHR_EXPORT_SIGNING_SECRET`, `PHR_EXPORT_TOKEN_TTL_SECONDS`), so `check-secrets
//! --profile phr-export` and the server read the same things. [`ExportArgs`] is the raw clap form, flattened
//! into `phr-server serve`; [`ExportArgs::validate`] turns it into an [`ExportConfig`] or a [`ConfigError`]
//! naming the variable, so a bad value stops the server at start-up rather than at the first export.
//! [`ExportConfig::default`] is what `Config::new` uses: filesystem storage, no signing secret (download URLs
//! are then omitted, the NULL fallback), the spec's TTL and bandwidth. These settings live with the rest of
//! the configuration (not in `export`), so configuration never depends on the subsystem it configures.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;

/// The minimum signing-secret length, in bytes (the `check-secrets` rule).
pub const MIN_SECRET_BYTES: usize = 32;

/// The default key prefix; `{facilityId}` is replaced by the job's facility.
pub const DEFAULT_PREFIX: &str = "facility/{facilityId}/jobs/";

/// The folder artifacts go to when `PHR_EXPORT_FS_BASE` is not set.
pub const DEFAULT_FS_BASE: &str = "data/exports";

/// `PHR_EXPORT_MAX_QUEUED_PER_FACILITY` by default: enough for a clinic's daily batches, far from a flood.
pub const DEFAULT_MAX_QUEUED_PER_FACILITY: u32 = 10;
/// Accepted range of `PHR_EXPORT_MAX_QUEUED_PER_FACILITY` (0 would refuse every export).
pub const MAX_QUEUED_PER_FACILITY_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
/// `PHR_EXPORT_MAX_RUNNING_PER_FACILITY` by default: one facility's exports run one after the other, so the
/// default two workers serve two facilities at once.
pub const DEFAULT_MAX_RUNNING_PER_FACILITY: u32 = 1;
/// Accepted range of `PHR_EXPORT_MAX_RUNNING_PER_FACILITY` (0 would never run a job).
pub const MAX_RUNNING_PER_FACILITY_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000;

/// `PHR_EXPORT_STORAGE_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "UPPER")]
pub enum StorageType {
    Filesystem,
    S3,
}

impl StorageType {
    /// The name used in configuration and audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filesystem => "FILESYSTEM",
            Self::S3 => "S3",
        }
    }
}

/// Flags and variables of the export subsystem (flattened into `phr-server serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Where export artifacts are stored: FILESYSTEM (dev only) or S3.
    #[arg(long, env = "PHR_EXPORT_STORAGE_TYPE", value_enum, ignore_case = true, default_value = "FILESYSTEM")]
    pub export_storage_type: StorageType,

    /// Folder holding artifacts with FILESYSTEM storage.
    #[arg(long, env = "PHR_EXPORT_FS_BASE", default_value = DEFAULT_FS_BASE)]
    pub export_fs_base: PathBuf,

    /// S3 bucket of the artifacts.
    #[arg(long, env = "PHR_EXPORT_S3_BUCKET")]
    pub export_s3_bucket: Option<String>,

    /// S3 region of the bucket.
    #[arg(long, env = "PHR_EXPORT_S3_REGION")]
    pub export_s3_region: Option<String>,

    /// Key prefix of the artifacts; `{facilityId}` is replaced by the job's facility (both storage types).
    #[arg(long, env = "PHR_EXPORT_S3_PREFIX", default_value = DEFAULT_PREFIX)]
    pub export_s3_prefix: String,

    /// S3-compatible endpoint (e.g. a local test server); plain http is allowed only for loopback hosts.
    #[arg(long, env = "PHR_EXPORT_S3_ENDPOINT")]
    pub export_s3_endpoint: Option<String>,

    /// KMS key (id, ARN or alias such as alias/opd/phr-export) for SSE-KMS on every object.
    #[arg(long, env = "PHR_EXPORT_S3_KMS_KEY")]
    pub export_s3_kms_key: Option<String>,

    /// HMAC-SHA256 key for download URLs, at least 32 bytes. Without it no download URL is issued.
    #[arg(long, env = "PHR_EXPORT_SIGNING_SECRET", hide_env_values = true)]
    pub export_signing_secret: Option<String>,

    /// Lifetime of a download URL, in seconds.
    #[arg(long, env = "PHR_EXPORT_TOKEN_TTL_SECONDS", default_value_t = 300)]
    pub export_token_ttl_seconds: u64,

    /// Public https base of download URLs (e.g. https://phr.example.jp); else the request's Host with https.
    #[arg(long, env = "PHR_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,

    /// Download pacing of artifacts, in bytes per second.
    #[arg(long, env = "PHR_EXPORT_DOWNLOAD_BPS", default_value_t = 50_000_000)]
    pub export_download_bps: u64,

    /// Export jobs built concurrently by this process; 0 makes an API-only node (another process builds).
    #[arg(long, env = "PHR_EXPORT_WORKERS", default_value_t = 2)]
    pub export_workers: usize,

    /// Seconds between heartbeats of a running job.
    #[arg(long, env = "PHR_EXPORT_HEARTBEAT_SECONDS", default_value_t = 5)]
    pub export_heartbeat_seconds: u64,

    /// A RUNNING job whose heartbeat is older than this many seconds is taken back from its (dead) worker.
    #[arg(long, env = "PHR_EXPORT_STALE_SECONDS", default_value_t = 60)]
    pub export_stale_seconds: u64,

    /// Runs a job gets before a lost worker marks it FAILED instead of requeueing it.
    #[arg(long, env = "PHR_EXPORT_MAX_ATTEMPTS", default_value_t = 3)]
    pub export_max_attempts: u32,

    /// Seconds a finished artifact is kept; then it is deleted and the job becomes EXPIRED.
    #[arg(long, env = "PHR_EXPORT_ARTIFACT_RETENTION_SECONDS", default_value_t = 86_400)]
    pub export_artifact_retention_seconds: u64,

    /// Largest number of patients one export may name; more is 400 invalidPayload naming patientIds.
    #[arg(long, env = "PHR_EXPORT_MAX_PATIENTS", default_value_t = 100_000)]
    pub export_max_patients: usize,

    /// PENDING jobs one facility may have; one more submit is 429 throttled with Retry-After (1..=10000).
    #[arg(long, env = "PHR_EXPORT_MAX_QUEUED_PER_FACILITY", default_value_t = DEFAULT_MAX_QUEUED_PER_FACILITY)]
    pub export_max_queued_per_facility: u32,

    /// RUNNING jobs one facility may have across every instance; its next job waits for a slot (1..=1000).
    #[arg(long, env = "PHR_EXPORT_MAX_RUNNING_PER_FACILITY", default_value_t = DEFAULT_MAX_RUNNING_PER_FACILITY)]
    pub export_max_running_per_facility: u32,
}

/// The HMAC key of download URLs. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// A secret of at least [`MIN_SECRET_BYTES`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::new(
                "PHR_EXPORT_SIGNING_SECRET",
                format!("is {} bytes; at least {MIN_SECRET_BYTES} are required", bytes.len()),
            ));
        }
        Ok(Self(bytes))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningSecret(<{} bytes redacted>)", self.0.len())
    }
}

/// S3 settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    /// `None` is AWS itself.
    pub endpoint: Option<String>,
    /// SSE-KMS key; `None` writes without SSE-KMS (check-secrets warns).
    pub kms_key: Option<String>,
    /// Static credentials (tests against a local S3); `None` takes them from the AWS environment / IAM role.
    pub static_credentials: Option<StaticCredentials>,
}

/// An access key pair given in code rather than by the AWS environment. Its `Debug` hides the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticCredentials({}, <secret redacted>)", self.access_key_id)
    }
}

/// Where artifacts are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSettings {
    Filesystem { base: PathBuf },
    S3(S3Settings),
}

impl StorageSettings {
    pub fn storage_type(&self) -> StorageType {
        match self {
            Self::Filesystem { .. } => StorageType::Filesystem,
            Self::S3(_) => StorageType::S3,
        }
    }

    /// The KMS key objects are encrypted with, for audit rows.
    pub fn kms_key(&self) -> Option<&str> {
        match self {
            Self::S3(s3) => s3.kms_key.as_deref(),
            Self::Filesystem { .. } => None,
        }
    }
}

/// The validated export configuration.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub storage: StorageSettings,
    /// Key prefix template containing `{facilityId}`; always ends with `/`.
    pub prefix: String,
    /// `None`: download URLs are omitted and `PHR_SIGNED_URL_NULL_FALLBACK` is audited.
    pub signing_secret: Option<SigningSecret>,
    pub token_ttl: Duration,
    /// `https://host[:port]` without a trailing slash; anything else is refused when a URL is minted.
    pub public_base_url: Option<String>,
    pub download_bytes_per_second: u64,
    /// Workers in this process; 0 runs none (recovery still runs).
    pub workers: usize,
    pub heartbeat_interval: Duration,
    /// Heartbeat age after which a RUNNING job is considered abandoned.
    pub stale_after: Duration,
    pub max_attempts: u32,
    /// How long a SUCCEEDED job's artifact is kept before the job becomes EXPIRED.
    pub artifact_retention: Duration,
    /// Patients one job may name (`PHR_EXPORT_MAX_PATIENTS`).
    pub max_patients: usize,
    /// PENDING jobs one facility may have; checked with the insert, atomically across instances.
    pub max_queued_per_facility: u32,
    /// RUNNING jobs one facility may have; the claim skips a facility at its cap.
    pub max_running_per_facility: u32,
    /// How often idle workers look for jobs submitted by other processes.
    pub poll_interval: Duration,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            storage: StorageSettings::Filesystem { base: PathBuf::from(DEFAULT_FS_BASE) },
            prefix: DEFAULT_PREFIX.to_owned(),
            signing_secret: None,
            token_ttl: Duration::from_secs(300),
            public_base_url: None,
            download_bytes_per_second: 50_000_000,
            workers: 2,
            heartbeat_interval: Duration::from_secs(5),
            stale_after: Duration::from_secs(60),
            max_attempts: 3,
            artifact_retention: Duration::from_secs(86_400),
            max_patients: 100_000,
            max_queued_per_facility: DEFAULT_MAX_QUEUED_PER_FACILITY,
            max_running_per_facility: DEFAULT_MAX_RUNNING_PER_FACILITY,
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl ExportConfig {
    /// `max-export-download-burst=50MB/s`, the ops' notation of the pacing, for audit rows.
    pub fn bandwidth_profile(&self) -> String {
        let bps = self.download_bytes_per_second;
        if bps.is_multiple_of(1_000_000) {
            format!("max-export-download-burst={}MB/s", bps / 1_000_000)
        } else {
            format!("max-export-download-burst={bps}B/s")
        }
    }
}

impl ExportArgs {
    /// Checks every value and names the variable of the first bad one.
    pub fn validate(&self) -> Result<ExportConfig, ConfigError> {
        let storage = self.storage()?;
        let signing_secret = match self.export_signing_secret.as_deref().filter(|s| !s.is_empty()) {
            Some(secret) => Some(SigningSecret::new(secret.as_bytes())?),
            None => None,
        };
        if let Some(base) = &self.public_base_url {
            normalise_public_base(base).map_err(|problem| ConfigError::new("PHR_PUBLIC_BASE_URL", problem))?;
        }
        let positive = |value: u64, variable: &'static str| {
            if value == 0 { Err(ConfigError::new(variable, "must be greater than 0")) } else { Ok(value) }
        };
        let heartbeat = positive(self.export_heartbeat_seconds, "PHR_EXPORT_HEARTBEAT_SECONDS")?;
        let stale = positive(self.export_stale_seconds, "PHR_EXPORT_STALE_SECONDS")?;
        if stale <= heartbeat {
            return Err(ConfigError::new(
                "PHR_EXPORT_STALE_SECONDS",
                "must be longer than PHR_EXPORT_HEARTBEAT_SECONDS",
            ));
        }
        Ok(ExportConfig {
            storage,
            prefix: normalise_prefix(&self.export_s3_prefix)
                .map_err(|problem| ConfigError::new("PHR_EXPORT_S3_PREFIX", problem))?,
            signing_secret,
            token_ttl: Duration::from_secs(positive(self.export_token_ttl_seconds, "PHR_EXPORT_TOKEN_TTL_SECONDS")?),
            public_base_url: self.public_base_url.clone(),
            download_bytes_per_second: positive(self.export_download_bps, "PHR_EXPORT_DOWNLOAD_BPS")?,
            workers: self.export_workers,
            heartbeat_interval: Duration::from_secs(heartbeat),
            stale_after: Duration::from_secs(stale),
            max_attempts: u32::try_from(positive(u64::from(self.export_max_attempts), "PHR_EXPORT_MAX_ATTEMPTS")?)
                .unwrap_or(1),
            artifact_retention: Duration::from_secs(positive(
                self.export_artifact_retention_seconds,
                "PHR_EXPORT_ARTIFACT_RETENTION_SECONDS",
            )?),
            max_patients: usize::try_from(positive(self.export_max_patients as u64, "PHR_EXPORT_MAX_PATIENTS")?)
                .unwrap_or(1),
            max_queued_per_facility: within(
                self.export_max_queued_per_facility,
                MAX_QUEUED_PER_FACILITY_RANGE,
                "PHR_EXPORT_MAX_QUEUED_PER_FACILITY",
            )?,
            max_running_per_facility: within(
                self.export_max_running_per_facility,
                MAX_RUNNING_PER_FACILITY_RANGE,
                "PHR_EXPORT_MAX_RUNNING_PER_FACILITY",
            )?,
            poll_interval: Duration::from_secs(2),
        })
    }

    /// Where artifacts go: the filesystem base, or the S3 settings with the ones S3 cannot do without.
    fn storage(&self) -> Result<StorageSettings, ConfigError> {
        if self.export_storage_type == StorageType::Filesystem {
            return Ok(StorageSettings::Filesystem { base: self.export_fs_base.clone() });
        }
        let required = |value: &Option<String>, variable: &'static str| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ConfigError::new(variable, "is required with PHR_EXPORT_STORAGE_TYPE=S3"))
        };
        let endpoint = self.export_s3_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty());
        if let Some(endpoint) = endpoint {
            check_endpoint(endpoint)?;
        }
        Ok(StorageSettings::S3(S3Settings {
            bucket: required(&self.export_s3_bucket, "PHR_EXPORT_S3_BUCKET")?,
            region: required(&self.export_s3_region, "PHR_EXPORT_S3_REGION")?,
            endpoint: endpoint.map(str::to_owned),
            kms_key: self.export_s3_kms_key.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned),
            static_credentials: None,
        }))
    }
}

/// `value` when it lies in `range`, else an error naming `variable` and the range.
fn within(value: u32, range: std::ops::RangeInclusive<u32>, variable: &'static str) -> Result<u32, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(variable, format!("is {value}; it must be {}..={}", range.start(), range.end())))
    }
}

/// A prefix template that is relative, has no empty, `.` or `..` segments, and ends with `/`.
pub fn normalise_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.is_empty() || prefix.trim().starts_with('/') {
        return Err("must be a relative, non-empty path such as facility/{facilityId}/jobs/".into());
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("segment {segment:?} is not allowed"));
        }
        let template_free = segment.replace("{facilityId}", "");
        if !template_free.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(format!(
                "segment {segment:?} may only contain letters, digits, '-', '_', '.' and {{facilityId}}"
            ));
        }
    }
    Ok(format!("{trimmed}/"))
}

/// `https://host[:port]` with any trailing slash removed, or why it is unusable.
pub fn normalise_public_base(base: &str) -> Result<String, String> {
    let base = base.trim().trim_end_matches('/');
    let uri: http::Uri = base.parse().map_err(|e| format!("{base:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{base:?} must use https"));
    }
    if uri.authority().is_none() || uri.path_and_query().is_some_and(|p| !p.as_str().is_empty() && p.as_str() != "/") {
        return Err(format!("{base:?} must be https://host[:port] without a path"));
    }
    Ok(base.to_owned())
}

/// An S3 endpoint must be https, except plain http to a loopback address (a local test server).
fn check_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let problem = |p: String| ConfigError::new("PHR_EXPORT_S3_ENDPOINT", p);
    let uri: http::Uri = endpoint.parse().map_err(|e| problem(format!("{endpoint:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if uri.host().is_some_and(is_loopback_host) => Ok(()),
        _ => Err(problem(format!("{endpoint:?} must be https (plain http only for loopback)"))),
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cannot_escape() {
        assert_eq!(normalise_prefix("facility/{facilityId}/jobs").unwrap(), "facility/{facilityId}/jobs/");
        for bad in ["", "/abs/", "a/../b/", "a//b/", "a/ b/", "./x/"] {
            assert!(normalise_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn public_base_must_be_https_without_path() {
        assert_eq!(normalise_public_base("https://phr.example.jp/").unwrap(), "https://phr.example.jp");
        assert!(normalise_public_base("http://phr.example.jp").is_err());
        assert!(normalise_public_base("https://phr.example.jp/x").is_err());
    }

    #[test]
    fn secrets_are_long_and_never_printed() {
        assert!(SigningSecret::new(vec![1u8; 31]).is_err());
        let secret = SigningSecret::new(b"s".repeat(40)).unwrap();
        assert!(!format!("{secret:?}").contains("sss"));
    }

    #[test]
    fn static_s3_credentials_are_never_printed() {
        let credentials =
            StaticCredentials { access_key_id: "AKIDEXAMPLE".into(), secret_access_key: "wJalrXUtnFEMI".into() };
        let printed = format!("{credentials:?}");
        assert!(printed.contains("AKIDEXAMPLE") && !printed.contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn http_endpoints_only_on_loopback() {
        assert!(check_endpoint("http://127.0.0.1:9321").is_ok());
        assert!(check_endpoint("http://localhost:9321").is_ok());
        assert!(check_endpoint("http://s3.example.com").is_err());
        assert!(check_endpoint("https://s3.example.com").is_ok());
    }

    #[test]
    fn per_facility_caps_are_bounded_and_a_bad_one_names_its_variable() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            export: ExportArgs,
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["phr-server"], args].concat()).unwrap().export.validate();
        let defaults = parse(&[]).unwrap();
        assert_eq!((defaults.max_queued_per_facility, defaults.max_running_per_facility), (10, 1));
        let set = parse(&["--export-max-queued-per-facility", "3", "--export-max-running-per-facility", "2"]).unwrap();
        assert_eq!((set.max_queued_per_facility, set.max_running_per_facility), (3, 2));
        for (flag, value, variable, range) in [
            ("--export-max-queued-per-facility", "0", "PHR_EXPORT_MAX_QUEUED_PER_FACILITY", "1..=10000"),
            ("--export-max-queued-per-facility", "10001", "PHR_EXPORT_MAX_QUEUED_PER_FACILITY", "1..=10000"),
            ("--export-max-running-per-facility", "0", "PHR_EXPORT_MAX_RUNNING_PER_FACILITY", "1..=1000"),
            ("--export-max-running-per-facility", "1001", "PHR_EXPORT_MAX_RUNNING_PER_FACILITY", "1..=1000"),
        ] {
            let message = parse(&[flag, value]).unwrap_err().to_string();
            assert!(message.contains(variable) && message.contains(range), "{flag} {value}: {message}");
        }
    }

    #[test]
    fn bandwidth_profile_uses_the_ops_notation() {
        assert_eq!(ExportConfig::default().bandwidth_profile(), "max-export-download-burst=50MB/s");
    }
}
