//! Targets (`targets.toml`): where a run connects and with which identity, kept apart from templates.
//!
//! A targets file names servers (base URL, trust, client identity, Basic user, extra headers, audit database,
//! readyz URL). Secrets are never written in it: passwords and the audit database URL are given as the name of
//! an environment variable or of a file, and an inline secret is refused with a message saying so. The file is
//! parsed raw (`deny_unknown_fields`, spans kept) and validated once; secrets are read only for the target
//! actually used, so a colleague's target with an unset variable does not block yours. Every value, table and
//! file is bounded (`target/bounds.rs`, limits in [`crate::evidence::limits`]). `[groups]` names lists of
//! targets run together (`target/groups.rs`).

mod bounds;
mod check;
mod groups;
mod transport;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::plan::diag::{Collector, Problems};
pub use crate::plan::secret::SecretRef;
use crate::probe::BasicCredentials;
use crate::probe::identity::{ClientIdentitySource, TrustSource};
use crate::probe::proxy::ProxyRules;
use crate::probe::retry::RetryPolicy;
pub use transport::{ProxySpec, env_proxy};

/// The targets file as written: `[targets.<name>]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargets {
    #[serde(default)]
    targets: BTreeMap<String, Spanned<RawTarget>>,
    #[serde(default)]
    groups: groups::RawGroups,
}

/// One `[targets.<name>]` table as written; keys mirror the fields of [`TargetSpec`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    base_url: Spanned<String>,
    readyz_url: Option<Spanned<String>>,
    timeout_seconds: Option<Spanned<u64>>,
    retries: Option<Spanned<u64>>,
    retry_backoff_ms: Option<Spanned<u64>>,
    proxy: Option<Spanned<transport::RawProxy>>,
    #[serde(default)]
    tls: RawTls,
    identity: Option<Spanned<RawIdentity>>,
    basic: Option<Spanned<RawBasic>>,
    audit: Option<Spanned<RawAudit>>,
    notify: Option<Spanned<crate::plan::notify::RawNotify>>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<String>>,
    owner: Option<Spanned<String>>,
    #[serde(default)]
    contacts: Vec<Spanned<String>>,
}

/// `[targets.<name>.tls]`: a CA bundle file or the system roots (the default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_bundle: Option<Spanned<String>>,
    system_roots: Option<Spanned<bool>>,
}

/// `[targets.<name>.identity]`: `p12` + password reference, or `cert` + `key` (PEM).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    p12: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    /// Present only to refuse inline secrets with a clear message.
    password: Option<Spanned<toml::Value>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
}

/// `[targets.<name>.basic]`: the Basic user and a password reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    user: Spanned<String>,
    /// Present only to refuse inline secrets with a clear message.
    password: Option<Spanned<toml::Value>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
}

/// `[targets.<name>.audit]`: the audit database URL, inline (no password) or by reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    url_file: Option<Spanned<String>>,
    /// The server's checkpoint public key (PEM or DER), relative to the targets file.
    public_key: Option<Spanned<String>>,
    /// `http(s)://…/audit/checkpoint` on the server's ops listener.
    checkpoint_url: Option<Spanned<String>>,
    /// The directory the server writes checkpoints to, relative to the targets file.
    checkpoint_dir: Option<Spanned<String>>,
    /// Seconds to wait for a checkpoint covering the run's rows (default 10, at most 300).
    checkpoint_wait_seconds: Option<Spanned<u64>>,
}

/// The client identity as configured (secret not yet read).
#[derive(Debug, Clone)]
pub enum IdentitySpec {
    /// `.p12` file and where its password is.
    Pkcs12 {
        /// The PKCS#12 file.
        path: PathBuf,
        /// Where its password is.
        password: SecretRef,
    },
    /// PEM certificate chain and private key.
    Pem {
        /// Certificate chain file.
        cert: PathBuf,
        /// Private key file.
        key: PathBuf,
    },
}

/// Where the audit database URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditUrl {
    /// Written in the file; only allowed when it holds no password (e.g. `sqlite:`).
    Inline(String),
    /// A secret reference.
    Secret(SecretRef),
}

/// One validated target (secrets still by reference).
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Target name in the file.
    pub name: String,
    /// The targets file, for messages.
    pub file: PathBuf,
    /// `https://host:port`, no trailing slash.
    pub base_url: String,
    /// Optional operational readiness URL.
    pub readyz_url: Option<String>,
    /// Per-probe timeout override.
    pub timeout: Option<Duration>,
    /// Retries after connection-level failures (none by default).
    pub retry: RetryPolicy,
    /// The target's own HTTP CONNECT proxy; without it the environment's `HTTPS_PROXY` rules apply.
    pub proxy: Option<ProxySpec>,
    /// CA bundle or system roots.
    pub trust: TrustSource,
    /// Client identity, if mTLS is used.
    pub identity: Option<IdentitySpec>,
    /// Basic user and where its password is.
    pub basic: Option<(String, SecretRef)>,
    /// Audit database URL source.
    pub audit: Option<AuditUrl>,
    /// The checkpoint public key and source the run's chain segment is proved against (`audit/chain.json`).
    pub audit_chain: Option<crate::audit::chain::ChainSpec>,
    /// Where `connrun weekly` sends its notice, and when.
    pub notify: Option<crate::plan::notify::NotifySpec>,
    /// Headers added to every probe.
    pub headers: Vec<(String, String)>,
    /// Overrides of template variables (checked against the template by the plan), with their line.
    pub variables: BTreeMap<String, (String, usize)>,
    /// Who owns the next actions in the run memo (e.g. `@OpsLead`); the memo says 未設定 without it.
    pub owner: Option<String>,
    /// The run memo's 連絡先 lines, e.g. `Layer ID / Secrets: @OpsLead (#ops-secrets)`.
    pub contacts: Vec<String>,
}

/// A target with its secrets read: what the run needs.
#[derive(Clone)]
pub struct Target {
    /// The validated configuration.
    pub spec: TargetSpec,
    /// Client identity for rustls.
    pub identity: Option<ClientIdentitySource>,
    /// Basic credentials.
    pub basic: Option<BasicCredentials>,
    /// Audit database URL.
    pub audit_db_url: Option<String>,
    /// Which proxy each probe goes through (the target's, or the environment's), passwords read.
    pub proxy: ProxyRules,
}

impl TargetSpec {
    /// Where the PKCS#12 password comes from, e.g. `environment variable CONNRUN_P12_PASSWORD
    /// (targets.orca-stage.identity.password_env in targets.toml)`, for a message saying which to check.
    pub fn p12_password_origin(&self) -> Option<String> {
        match &self.identity {
            Some(IdentitySpec::Pkcs12 { password, .. }) => Some(self.origin_of(password, "identity")),
            _ => None,
        }
    }

    /// Where the Basic password comes from, in the same words as [`TargetSpec::p12_password_origin`].
    pub fn basic_password_origin(&self) -> Option<String> {
        self.basic.as_ref().map(|(_, password)| self.origin_of(password, "basic"))
    }

    fn origin_of(&self, secret: &SecretRef, table: &str) -> String {
        format!(
            "{} (targets.{}.{table}.{} in {})",
            secret.origin(),
            self.name,
            secret.password_key(),
            self.file.display()
        )
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl Target {
    /// Every secret value, for the redactor: passwords, the audit URL and its password part.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(ClientIdentitySource::Pkcs12 { password, .. }) = &self.identity {
            secrets.push(password.clone());
        }
        if let Some(basic) = &self.basic {
            secrets.push(basic.password.clone());
        }
        if let Some(url) = &self.audit_db_url
            && let Some(password) = url_password(url)
        {
            secrets.push(password);
            secrets.push(url.clone());
        }
        secrets.extend(self.proxy.secrets());
        secrets.retain(|s| !s.is_empty());
        secrets
    }
}

/// The password part of `scheme://user:password@host/...`, if any.
pub fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split(['/', '?']).next()?.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p.to_owned()).filter(|p| !p.is_empty())
}

/// Why targets could not be loaded or a target used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The targets file could not be read.
    #[error("{}: cannot read targets file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Located mistakes.
    #[error("{0}")]
    Invalid(Problems),
    /// No target by that name.
    #[error("{}: no target named `{name}` (defined: {known})", file.display())]
    Unknown {
        /// The targets file.
        file: PathBuf,
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// No `[groups]` entry by that name.
    #[error("{}: no group named `{name}` under [groups] (defined: {known})", file.display())]
    UnknownGroup {
        /// The targets file.
        file: PathBuf,
        /// The name asked for.
        name: String,
        /// The groups that exist.
        known: String,
    },
    /// A secret could not be read.
    #[error("{}: targets.{target}.{key}: {message}", file.display())]
    Secret {
        /// The targets file.
        file: PathBuf,
        /// The target.
        target: String,
        /// Which key names the secret.
        key: String,
        /// What went wrong (never the value).
        message: String,
    },
}

/// A validated targets file.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The file, for messages.
    pub file: PathBuf,
    /// Targets by name.
    pub targets: BTreeMap<String, TargetSpec>,
    /// `[groups]`: target names run together (`--group`), every member a defined target.
    pub groups: BTreeMap<String, Vec<String>>,
}

impl Targets {
    /// Reads and validates a targets file.
    pub fn load(file: &Path) -> Result<Targets, TargetError> {
        Self::parse(file, &bounds::read_targets_file(file)?)
    }

    /// Validates targets text as if read from `file` (relative paths resolve against its folder).
    pub fn parse(file: &Path, text: &str) -> Result<Targets, TargetError> {
        let mut diag = Collector::new(file, text);
        let raw: RawTargets = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(error) => {
                diag.toml_error(&error);
                return Err(TargetError::Invalid(diag.into_problems()));
            }
        };
        let base = file.parent().unwrap_or(Path::new(".")).to_owned();
        bounds::count_targets(&mut diag, &raw.targets);
        let mut targets = BTreeMap::new();
        for (name, raw_target) in raw.targets {
            let spec = check::Checker { diag: &mut diag, base: &base, name: &name }.target(
                file,
                raw_target.into_inner(),
                text,
            );
            targets.insert(name, spec);
        }
        let groups = groups::check_groups(&mut diag, raw.groups, &targets);
        diag.finish(Targets { file: file.to_owned(), targets, groups }).map_err(TargetError::Invalid)
    }

    /// The members of `[groups] <name>`, in the order written.
    pub fn group(&self, name: &str) -> Result<&[String], TargetError> {
        self.groups.get(name).map(Vec::as_slice).ok_or_else(|| TargetError::UnknownGroup {
            file: self.file.clone(),
            name: name.to_owned(),
            known: self.groups.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The named target with its secrets read and the process environment's proxy variables.
    pub fn resolve(&self, name: &str) -> Result<Target, TargetError> {
        self.resolve_with_env(name, &|var| std::env::var(var).ok())
    }

    /// The named target with its secrets read through `env` (proxy rules still empty).
    fn resolve_secrets(&self, name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, TargetError> {
        let spec = self.targets.get(name).ok_or_else(|| TargetError::Unknown {
            file: self.file.clone(),
            name: name.to_owned(),
            known: self.targets.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let secret = |key: &str, reference: &SecretRef| {
            reference.read_with(env).map_err(|message| TargetError::Secret {
                file: self.file.clone(),
                target: name.to_owned(),
                key: key.to_owned(),
                message,
            })
        };
        let identity = match &spec.identity {
            Some(IdentitySpec::Pkcs12 { path, password }) => Some(ClientIdentitySource::Pkcs12 {
                path: path.clone(),
                password: secret("identity.password", password)?,
                password_from: spec.p12_password_origin(),
            }),
            Some(IdentitySpec::Pem { cert, key }) => {
                Some(ClientIdentitySource::Pem { cert: cert.clone(), key: key.clone() })
            }
            None => None,
        };
        let basic = match &spec.basic {
            Some((user, password)) => {
                Some(BasicCredentials { user: user.clone(), password: secret("basic.password", password)? })
            }
            None => None,
        };
        let audit_db_url = match &spec.audit {
            Some(AuditUrl::Inline(url)) => Some(url.clone()),
            Some(AuditUrl::Secret(reference)) => Some(secret("audit.url", reference)?),
            None => None,
        };
        Ok(Target { spec: spec.clone(), identity, basic, audit_db_url, proxy: ProxyRules::default() })
    }
}
