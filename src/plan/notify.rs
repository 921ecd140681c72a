//! `[targets.<name>.notify]`: where the weekly routine sends its notice and when.
//!
//! The webhook URL of Slack or Teams carries its own token, so it is a secret like a password: given as the
//! name of an environment variable or of a file, never inline, and read only when a notice is sent.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::plan::secret::SecretRef;

/// `[targets.<name>.notify]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    url_file: Option<Spanned<String>>,
    on: Option<Spanned<String>>,
}

/// When a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyWhen {
    /// Only when the run is red (a problem or a regression).
    Red,
    /// When the run is red, and when it is green again after a red one (the default).
    Change,
    /// After every run.
    Always,
}

impl NotifyWhen {
    /// Whether a run with this verdict, after a previous run with that one, is worth a notice.
    pub fn wants(self, red: bool, previous_red: Option<bool>) -> bool {
        match self {
            NotifyWhen::Red => red,
            NotifyWhen::Change => red || previous_red == Some(true),
            NotifyWhen::Always => true,
        }
    }
}

/// A target's notice settings, validated (the URL still by reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySpec {
    /// Where the webhook URL is.
    pub url: SecretRef,
    /// When to send.
    pub when: NotifyWhen,
}

/// A problem in the table: the span, the key under `notify`, the message.
pub(super) type NotifyProblem = (Range<usize>, &'static str, String);

/// Validates the table; relative files resolve against `base` (the targets file's folder).
pub(super) fn check(raw: &Spanned<RawNotify>, base: &Path) -> Result<NotifySpec, NotifyProblem> {
    let notify = raw.get_ref();
    let url = match (&notify.url, &notify.url_env, &notify.url_file) {
        (Some(url), _, _) => {
            let message = "a webhook URL carries its token: give url_env or url_file, never the URL".to_owned();
            return Err((url.span(), "notify.url", message));
        }
        (None, Some(env), None) => SecretRef::Env(env.get_ref().clone()),
        (None, None, Some(file)) => SecretRef::File(base.join(file.get_ref())),
        _ => return Err((raw.span(), "notify", "give exactly one of url_env, url_file".to_owned())),
    };
    let when = match notify.on.as_ref().map(|on| (on.span(), on.get_ref().as_str())) {
        None | Some((_, "change")) => NotifyWhen::Change,
        Some((_, "red")) => NotifyWhen::Red,
        Some((_, "always")) => NotifyWhen::Always,
        Some((span, other)) => {
            return Err((span, "notify.on", format!("`{other}` is not one of red, change, always")));
        }
    };
    Ok(NotifySpec { url, when })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_notifies_on_red_and_on_recovery_only() {
        assert!(NotifyWhen::Change.wants(true, Some(false)));
        assert!(NotifyWhen::Change.wants(false, Some(true)));
        assert!(!NotifyWhen::Change.wants(false, Some(false)));
        assert!(!NotifyWhen::Change.wants(false, None));
        assert!(!NotifyWhen::Red.wants(false, Some(true)));
        assert!(NotifyWhen::Always.wants(false, None));
    }
}
