//! Where a secret comes from: the name of an environment variable or of a file, never the value.
//!
//! Targets name their passwords, the audit database URL and the notice webhook this way, so the targets
//! file can be shared and committed without a secret in it; the value is read only when the run needs it,
//! and a failure names the variable or file, never the value. A leaf of `plan/`.

use std::path::PathBuf;

use crate::evidence::limits::{self, SECRET_FILE};

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable's name.
    Env(String),
    /// A file whose contents (trailing newline trimmed) are the secret.
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret; the error names the variable or file, never the value.
    pub fn read(&self) -> Result<String, String> {
        self.read_with(&|name| std::env::var(name).ok())
    }

    /// [`SecretRef::read`] with the environment given as a lookup (the process environment in a run).
    pub fn read_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        match self {
            SecretRef::Env(name) => env(name).ok_or_else(|| format!("environment variable {name} is not set")),
            SecretRef::File(path) => limits::read_bounded_string(path, &SECRET_FILE)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("secret file {}: {e}", path.display())),
        }
    }

    /// Where the secret comes from, in words for messages: `environment variable NAME` or `file PATH`.
    pub fn origin(&self) -> String {
        match self {
            SecretRef::Env(name) => format!("environment variable {name}"),
            SecretRef::File(path) => format!("file {}", path.display()),
        }
    }

    /// The key that names the secret in a targets table: `password_env` or `password_file`.
    pub(crate) fn password_key(&self) -> &'static str {
        match self {
            SecretRef::Env(_) => "password_env",
            SecretRef::File(_) => "password_file",
        }
    }

    /// How the secret is referenced, for run.toml (`env:NAME` or `file:PATH`).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(name) => format!("env:{name}"),
            SecretRef::File(path) => format!("file:{}", path.display()),
        }
    }
}
