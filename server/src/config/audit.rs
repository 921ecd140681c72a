//! Signed-checkpoint settings: the Ed25519 key, where checkpoints go, how often.
//!
//! A checkpoint is only worth something where the database role cannot reach it, so the destination is a
//! directory or an S3 prefix named apart from the database (`PHR_AUDIT_CHECKPOINT_DEST`). Without a key the
//! server writes none (and says so at start-up); with a key and no destination it refuses to start, naming
//! the variable. The frequency is bounded both ways: every row would make a document per request, and
//! a very long interval would leave a long unprotected tail.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auditchain::checkpoint::SigningKey;

use super::error::ConfigError;
use super::export::{S3Settings, is_loopback_host};

/// The accepted range of `PHR_AUDIT_CHECKPOINT_ROWS`.
pub const ROWS_RANGE: std::ops::RangeInclusive<u64> = 1..=1_000_000;
/// The accepted range of `PHR_AUDIT_CHECKPOINT_SECONDS` (one day at most).
pub const SECONDS_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;

/// Flags and variables of the checkpoints (flattened into `serve`, `check-secrets`).
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointArgs {
    /// Ed25519 private key, PKCS#8 PEM or DER, that signs audit checkpoints; without it none are written.
    #[arg(long, env = "PHR_AUDIT_SIGNING_KEY")]
    pub audit_signing_key: Option<PathBuf>,

    /// Where checkpoints go: a directory, or s3://bucket/prefix. Somewhere the database role cannot write.
    #[arg(long, env = "PHR_AUDIT_CHECKPOINT_DEST")]
    pub audit_checkpoint_dest: Option<String>,

    /// A checkpoint after this many rows were appended (1-1000000).
    #[arg(long, env = "PHR_AUDIT_CHECKPOINT_ROWS", default_value_t = 1000)]
    pub audit_checkpoint_rows: u64,

    /// And at least this often while rows are appended, in seconds (1-86400).
    #[arg(long, env = "PHR_AUDIT_CHECKPOINT_SECONDS", default_value_t = 60)]
    pub audit_checkpoint_seconds: u64,

    /// S3 region of an s3:// destination.
    #[arg(long, env = "PHR_AUDIT_CHECKPOINT_S3_REGION")]
    pub audit_checkpoint_s3_region: Option<String>,

    /// S3-compatible endpoint of an s3:// destination; plain http only for loopback hosts.
    #[arg(long, env = "PHR_AUDIT_CHECKPOINT_S3_ENDPOINT")]
    pub audit_checkpoint_s3_endpoint: Option<String>,
}

/// Which chain a row joins (`PHR_AUDIT_CHAINS`): one chain serialises every append in the server, one per
/// facility lets the facilities' batches commit side by side (PHR_API.md §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ChainPolicy {
    /// An authenticated caller's rows join the chain named by its facility id; rows without an
    /// authenticated facility (a failed login, a rejected request) join `main`.
    #[default]
    Facility,
    /// Every row joins `main`, as before chains per facility.
    Single,
}

/// Where checkpoints are written (and read back by `audit verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointDest {
    /// A local directory, created if missing.
    Dir(PathBuf),
    /// An S3 bucket and a key prefix (relative, ending with `/` or empty).
    S3 {
        /// Bucket, region, endpoint, credentials as for exports.
        settings: S3Settings,
        /// Key prefix inside the bucket.
        prefix: String,
    },
}

impl CheckpointDest {
    /// `s3://bucket/prefix` or a directory path; `region`/`endpoint` apply to S3 and name their variables.
    pub fn parse(dest: &str, region: Option<&str>, endpoint: Option<&str>) -> Result<Self, ConfigError> {
        let dest = dest.trim();
        if dest.is_empty() {
            return Err(ConfigError::new("PHR_AUDIT_CHECKPOINT_DEST", "is empty"));
        }
        let Some(rest) = dest.strip_prefix("s3://") else {
            return Ok(Self::Dir(PathBuf::from(dest)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ConfigError::new("PHR_AUDIT_CHECKPOINT_DEST", format!("{dest:?} names no bucket")));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|s| s == "." || s == ".." || (s.is_empty() && !prefix.is_empty())) {
            return Err(ConfigError::new("PHR_AUDIT_CHECKPOINT_DEST", format!("{dest:?}: bad prefix")));
        }
        let region = region.map(str::trim).filter(|r| !r.is_empty()).ok_or_else(|| {
            ConfigError::new("PHR_AUDIT_CHECKPOINT_S3_REGION", "is required with an s3:// PHR_AUDIT_CHECKPOINT_DEST")
        })?;
        let endpoint = endpoint.map(str::trim).filter(|e| !e.is_empty());
        if let Some(endpoint) = endpoint {
            let uri: http::Uri = endpoint
                .parse()
                .map_err(|e| ConfigError::new("PHR_AUDIT_CHECKPOINT_S3_ENDPOINT", format!("{endpoint:?}: {e}")))?;
            let http_ok = uri.scheme_str() == Some("http") && uri.host().is_some_and(is_loopback_host);
            if uri.scheme_str() != Some("https") && !http_ok {
                return Err(ConfigError::new(
                    "PHR_AUDIT_CHECKPOINT_S3_ENDPOINT",
                    format!("{endpoint:?} must be https (plain http only for loopback)"),
                ));
            }
        }
        Ok(Self::S3 {
            settings: S3Settings {
                bucket: bucket.to_owned(),
                region: region.to_owned(),
                endpoint: endpoint.map(str::to_owned),
                kms_key: None,
                static_credentials: None,
            },
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
        })
    }
}

/// The validated checkpoint settings.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// The loaded signing key.
    pub key: Arc<SigningKey>,
    /// Where documents go.
    pub dest: CheckpointDest,
    /// A checkpoint after this many appended rows.
    pub every_rows: u64,
    /// And at least this often (when the head moved).
    pub every: Duration,
}

impl CheckpointArgs {
    /// `None` without a key; the settings, or the variable of the first bad value.
    pub fn validate(&self) -> Result<Option<CheckpointConfig>, ConfigError> {
        let Some(path) = &self.audit_signing_key else { return Ok(None) };
        let key = SigningKey::from_file(path).map_err(|e| ConfigError::new("PHR_AUDIT_SIGNING_KEY", e.0))?;
        let dest = self.audit_checkpoint_dest.as_deref().ok_or_else(|| {
            ConfigError::new(
                "PHR_AUDIT_CHECKPOINT_DEST",
                "is required with PHR_AUDIT_SIGNING_KEY: a directory or s3://bucket/prefix the database role cannot write",
            )
        })?;
        let dest = CheckpointDest::parse(
            dest,
            self.audit_checkpoint_s3_region.as_deref(),
            self.audit_checkpoint_s3_endpoint.as_deref(),
        )?;
        let bounded = |value: u64, range: std::ops::RangeInclusive<u64>, variable: &'static str| {
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::new(variable, format!("{value} is outside {}-{}", range.start(), range.end())))
            }
        };
        Ok(Some(CheckpointConfig {
            key: Arc::new(key),
            dest,
            every_rows: bounded(self.audit_checkpoint_rows, ROWS_RANGE, "PHR_AUDIT_CHECKPOINT_ROWS")?,
            every: Duration::from_secs(bounded(
                self.audit_checkpoint_seconds,
                SECONDS_RANGE,
                "PHR_AUDIT_CHECKPOINT_SECONDS",
            )?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_bad_ones_name_their_variable() {
        assert_eq!(
            CheckpointDest::parse("/var/lib/cp", None, None).unwrap(),
            CheckpointDest::Dir("/var/lib/cp".into())
        );
        match CheckpointDest::parse("s3://audit/phr/cp/", Some("ap-northeast-1"), None).unwrap() {
            CheckpointDest::S3 { settings, prefix } => {
                assert_eq!((settings.bucket.as_str(), prefix.as_str()), ("audit", "phr/cp/"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            CheckpointDest::parse("s3://audit/x", None, None).unwrap_err().variable,
            "PHR_AUDIT_CHECKPOINT_S3_REGION"
        );
        assert_eq!(
            CheckpointDest::parse("s3://audit/x", Some("r"), Some("http://s3.example.com")).unwrap_err().variable,
            "PHR_AUDIT_CHECKPOINT_S3_ENDPOINT"
        );
        assert_eq!(
            CheckpointDest::parse("s3:///x", Some("r"), None).unwrap_err().variable,
            "PHR_AUDIT_CHECKPOINT_DEST"
        );
    }
}
