//! The size of every value and table of a targets file, checked when the file is validated.
//!
//! A target's timeout ends up in a deadline, its headers and variables in every request, its names in keys
//! and messages; a value too big for any of them is refused here, with file, line, key and the accepted
//! range, instead of failing a run later. The limits are listed in [`crate::evidence::limits`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::check::Checker;
use super::{RawTarget, TargetError};
use crate::evidence::limits::{
    self, BoundedReadError, MAX_HEADERS, MAX_NAME_CHARS, MAX_TARGETS, MAX_TIMEOUT_SECONDS, MAX_VALUE_BYTES,
    MAX_VARIABLES, MIN_TIMEOUT_SECONDS, TARGETS_FILE, too_many_bytes, too_many_chars,
};
use crate::plan::diag::{Collector, Problem, Problems};

/// The text of a targets file, read within [`TARGETS_FILE`]; a larger file is refused by name.
pub(super) fn read_targets_file(file: &Path) -> Result<String, TargetError> {
    limits::read_bounded_string(file, &TARGETS_FILE).map_err(|error| match error {
        BoundedReadError::Io(source) => TargetError::Read { path: file.to_owned(), source },
        BoundedReadError::TooLarge(message) => {
            let problem = Problem { file: file.to_owned(), line: None, column: None, key: String::new(), message };
            TargetError::Invalid(Problems(vec![problem]))
        }
    })
}

/// Refuses more than [`MAX_TARGETS`] targets and target names longer than [`MAX_NAME_CHARS`].
pub(super) fn count_targets<T>(diag: &mut Collector<'_>, targets: &BTreeMap<String, Spanned<T>>) {
    if let Some(first_over) = targets.values().nth(MAX_TARGETS) {
        let message = format!("{} targets; at most {MAX_TARGETS} are allowed in one file", targets.len());
        diag.at(Some(first_over.span()), "targets", message);
    }
    for (name, target) in targets {
        if let Some(message) = too_many_chars(name, MAX_NAME_CHARS) {
            let shown: String = name.chars().take(MAX_NAME_CHARS).collect();
            diag.at(Some(target.span()), format!("targets.{shown}…"), format!("the name {message}"));
        }
    }
}

impl Checker<'_, '_> {
    /// The per-probe timeout override, within [`MIN_TIMEOUT_SECONDS`]..=[`MAX_TIMEOUT_SECONDS`]; `None`
    /// (the template's own timeouts) when it is not given or refused.
    pub(super) fn timeout(&mut self, raw: Option<&Spanned<u64>>) -> Option<Duration> {
        let given = raw?;
        let seconds = *given.get_ref();
        if (MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
            return Some(Duration::from_secs(seconds));
        }
        let message = format!(
            "{seconds} is out of range: a timeout is {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS} seconds \
             (one hour at most; a probe is one request, like curl --max-time)"
        );
        self.problem(given.span(), "timeout_seconds", &message);
        None
    }

    /// Every length and count of one target.
    pub(super) fn bound_target(&mut self, raw: &RawTarget) {
        let values = [
            (Some(&raw.base_url), "base_url"),
            (raw.readyz_url.as_ref(), "readyz_url"),
            (raw.tls.ca_bundle.as_ref(), "tls.ca_bundle"),
        ];
        for (value, key) in values {
            self.max_bytes(value, key);
        }
        if let Some(identity) = raw.identity.as_ref().map(Spanned::get_ref) {
            for (value, key) in [(&identity.p12, "p12"), (&identity.cert, "cert"), (&identity.key, "key")] {
                self.max_bytes(value.as_ref(), &format!("identity.{key}"));
            }
            self.max_bytes(identity.password_file.as_ref(), "identity.password_file");
            self.max_name(identity.password_env.as_ref(), "identity.password_env");
        }
        if let Some(basic) = raw.basic.as_ref().map(Spanned::get_ref) {
            self.max_bytes(Some(&basic.user), "basic.user");
            self.max_bytes(basic.password_file.as_ref(), "basic.password_file");
            self.max_name(basic.password_env.as_ref(), "basic.password_env");
        }
        if let Some(audit) = raw.audit.as_ref().map(Spanned::get_ref) {
            self.max_bytes(audit.url.as_ref(), "audit.url");
            self.max_bytes(audit.url_file.as_ref(), "audit.url_file");
            self.max_name(audit.url_env.as_ref(), "audit.url_env");
            self.max_bytes(audit.public_key.as_ref(), "audit.public_key");
            self.max_bytes(audit.checkpoint_url.as_ref(), "audit.checkpoint_url");
            self.max_bytes(audit.checkpoint_dir.as_ref(), "audit.checkpoint_dir");
        }
        if let Some(proxy) = raw.proxy.as_ref().map(Spanned::get_ref) {
            self.max_bytes(Some(&proxy.url), "proxy.url");
            self.max_bytes(proxy.user.as_ref(), "proxy.user");
            self.max_bytes(proxy.password_file.as_ref(), "proxy.password_file");
            self.max_name(proxy.password_env.as_ref(), "proxy.password_env");
        }
        self.string_table(&raw.headers, "headers", MAX_HEADERS);
        self.string_table(&raw.variables, "variables", MAX_VARIABLES);
    }

    /// A `name = "value"` table: at most `max_entries`, short names, values of at most [`MAX_VALUE_BYTES`].
    fn string_table(&mut self, table: &BTreeMap<String, Spanned<String>>, key: &str, max_entries: usize) {
        if let Some(first_over) = table.values().nth(max_entries) {
            let message = format!("{} {key}; at most {max_entries} are allowed", table.len());
            self.problem(first_over.span(), key, &message);
        }
        for (name, value) in table {
            let shown: String = name.chars().take(MAX_NAME_CHARS).collect();
            let entry = format!("{key}.{shown}");
            if let Some(message) = too_many_chars(name, MAX_NAME_CHARS) {
                self.problem(value.span(), &entry, &format!("the name {message}"));
            }
            self.max_bytes(Some(value), &entry);
            if key == "headers" && value.get_ref().contains(['\r', '\n', '\0']) {
                self.problem(value.span(), &entry, "header values cannot contain line breaks or NUL");
            }
        }
    }

    fn max_bytes(&mut self, value: Option<&Spanned<String>>, key: &str) {
        if let Some(value) = value
            && let Some(message) = too_many_bytes(value.get_ref(), MAX_VALUE_BYTES)
        {
            self.problem(value.span(), key, &message);
        }
    }

    fn max_name(&mut self, value: Option<&Spanned<String>>, key: &str) {
        if let Some(value) = value
            && let Some(message) = too_many_chars(value.get_ref(), MAX_NAME_CHARS)
        {
            self.problem(value.span(), key, &message);
        }
    }
}
