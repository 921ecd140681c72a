//! The one error type of configuration: a value that cannot be used, named by its environment variable.
//!
//! A leaf of its own so that both the server's settings (`config`) and the export settings
//! (`config::export`) return it without importing each other.

/// A configuration value that cannot be used, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable (or flag) the operator has to fix.
    pub variable: &'static str,
    /// What is wrong with its value, never the value itself when it is a secret.
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self { variable, problem: problem.into() }
    }
}
