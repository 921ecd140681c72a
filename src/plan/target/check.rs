//! The validation of one `[targets.<name>]` table: every key checked against the file it came from, every
//! problem recorded with its line, secrets kept as references. Split from `target.rs`, which holds the
//! types and the loading; the bounds of every value are in `bounds.rs` beside this file.

use super::*;
use crate::audit::chain::{ChainSpec, CheckpointSource};

/// Validates one raw target, recording problems against the targets file.
pub(super) struct Checker<'c, 'd> {
    /// Where problems are recorded (with lines).
    pub(super) diag: &'c mut Collector<'d>,
    /// Folder of the targets file; relative paths resolve against it.
    pub(super) base: &'c Path,
    /// The target being checked, for key paths in messages.
    pub(super) name: &'c str,
}

impl Checker<'_, '_> {
    pub(super) fn key(&self, k: &str) -> String {
        format!("targets.{}.{k}", self.name)
    }

    pub(super) fn problem(&mut self, span: std::ops::Range<usize>, k: &str, message: &str) {
        let key = self.key(k);
        self.diag.at(Some(span), key, message);
    }

    pub(super) fn existing_file(&mut self, value: &Spanned<String>, k: &str) -> PathBuf {
        let path = self.base.join(value.get_ref());
        if !path.is_file() {
            self.problem(value.span(), k, &format!("file not found: {}", path.display()));
        }
        path
    }

    pub(super) fn secret(
        &mut self,
        inline: Option<&Spanned<toml::Value>>,
        env: Option<&Spanned<String>>,
        file: Option<&Spanned<String>>,
        table: &str,
        table_span: std::ops::Range<usize>,
    ) -> Option<SecretRef> {
        if let Some(inline) = inline {
            let message = "inline secrets are refused: use password_env = \"VAR\" or password_file = \"path\"";
            self.problem(inline.span(), &format!("{table}.password"), message);
            return None;
        }
        match (env, file) {
            (Some(env), None) if !env.get_ref().is_empty() => Some(SecretRef::Env(env.get_ref().clone())),
            (None, Some(path)) => Some(SecretRef::File(self.existing_file(path, &format!("{table}.password_file")))),
            _ => {
                self.problem(table_span, table, "give exactly one of password_env or password_file");
                None
            }
        }
    }

    pub(super) fn target(&mut self, file: &Path, raw: RawTarget, text: &str) -> TargetSpec {
        self.bound_target(&raw);
        let timeout = self.timeout(raw.timeout_seconds.as_ref());
        let retry = self.retries(raw.retries.as_ref(), raw.retry_backoff_ms.as_ref());
        let proxy = raw.proxy.as_ref().and_then(|spanned| self.proxy(spanned));
        let base_url = raw.base_url.get_ref().trim_end_matches('/').to_owned();
        if !base_url.starts_with("https://") || base_url.len() <= "https://".len() {
            self.problem(raw.base_url.span(), "base_url", "expected an https:// URL, e.g. https://phr.example.jp:8443");
        }
        if let Some(url) = &raw.readyz_url
            && !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
        {
            self.problem(url.span(), "readyz_url", "expected an http:// or https:// URL");
        }
        let trust = match (&raw.tls.ca_bundle, &raw.tls.system_roots) {
            (Some(_), Some(flag)) if *flag.get_ref() => {
                self.problem(flag.span(), "tls.system_roots", "give either tls.ca_bundle or tls.system_roots = true");
                TrustSource::SystemRoots
            }
            (Some(bundle), _) => TrustSource::CaBundle(self.existing_file(bundle, "tls.ca_bundle")),
            _ => TrustSource::SystemRoots,
        };
        let identity = raw.identity.as_ref().and_then(|spanned| self.identity(spanned));
        let basic = raw.basic.as_ref().and_then(|spanned| {
            let basic = spanned.get_ref();
            if basic.user.get_ref().is_empty() {
                self.problem(basic.user.span(), "basic.user", "empty user");
            }
            let password = self.secret(
                basic.password.as_ref(),
                basic.password_env.as_ref(),
                basic.password_file.as_ref(),
                "basic",
                spanned.span(),
            )?;
            Some((basic.user.get_ref().clone(), password))
        });
        let audit = raw.audit.as_ref().and_then(|spanned| self.audit(spanned));
        let audit_chain = raw.audit.as_ref().and_then(|spanned| self.audit_chain(spanned));
        let notify = raw.notify.as_ref().and_then(|spanned| {
            crate::plan::notify::check(spanned, self.base)
                .map_err(|(span, key, message)| self.problem(span, key, &message))
                .ok()
        });
        let mut headers = Vec::new();
        for (header, value) in &raw.headers {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() || header.eq_ignore_ascii_case("authorization")
            {
                let message = "not a header connrun can send (Authorization comes from [basic])";
                self.problem(value.span(), &format!("headers.{header}"), message);
            }
            headers.push((header.clone(), value.get_ref().clone()));
        }
        let variables = raw
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), (v.get_ref().clone(), crate::plan::diag::line_col(text, v.span().start).0)))
            .collect();
        let (owner, contacts) = self.people(&raw);
        TargetSpec {
            name: self.name.to_owned(),
            file: file.to_owned(),
            base_url,
            readyz_url: raw.readyz_url.map(Spanned::into_inner),
            timeout,
            retry,
            proxy,
            trust,
            identity,
            basic,
            audit,
            audit_chain,
            notify,
            headers,
            variables,
            owner,
            contacts,
        }
    }

    pub(super) fn identity(&mut self, spanned: &Spanned<RawIdentity>) -> Option<IdentitySpec> {
        let identity = spanned.get_ref();
        let has_password =
            identity.password.is_some() || identity.password_env.is_some() || identity.password_file.is_some();
        match (&identity.p12, &identity.cert, &identity.key) {
            (Some(p12), None, None) => {
                let path = self.existing_file(p12, "identity.p12");
                let password = self.secret(
                    identity.password.as_ref(),
                    identity.password_env.as_ref(),
                    identity.password_file.as_ref(),
                    "identity",
                    spanned.span(),
                )?;
                Some(IdentitySpec::Pkcs12 { path, password })
            }
            (None, Some(cert), Some(key)) => {
                if has_password {
                    self.problem(spanned.span(), "identity", "PEM keys are read unencrypted; remove the password keys");
                }
                Some(IdentitySpec::Pem {
                    cert: self.existing_file(cert, "identity.cert"),
                    key: self.existing_file(key, "identity.key"),
                })
            }
            _ => {
                self.problem(
                    spanned.span(),
                    "identity",
                    "give either p12 (+ password_env or password_file) or cert + key",
                );
                None
            }
        }
    }

    pub(super) fn audit(&mut self, spanned: &Spanned<RawAudit>) -> Option<AuditUrl> {
        let audit = spanned.get_ref();
        match (&audit.url, &audit.url_env, &audit.url_file) {
            (Some(url), None, None) if url_password(url.get_ref()).is_some() => {
                self.problem(url.span(), "audit.url", "this URL holds a password: use url_env or url_file instead");
                None
            }
            (Some(url), None, None) => Some(AuditUrl::Inline(url.get_ref().clone())),
            (None, Some(env), None) => Some(AuditUrl::Secret(SecretRef::Env(env.get_ref().clone()))),
            (None, None, Some(path)) => {
                Some(AuditUrl::Secret(SecretRef::File(self.existing_file(path, "audit.url_file"))))
            }
            _ => {
                self.problem(spanned.span(), "audit", "give exactly one of url, url_env, url_file");
                None
            }
        }
    }

    /// `public_key` with exactly one of `checkpoint_url` (http or https) and `checkpoint_dir`, or none of them.
    pub(super) fn audit_chain(&mut self, spanned: &Spanned<RawAudit>) -> Option<ChainSpec> {
        let audit = spanned.get_ref();
        let key = audit.public_key.as_ref();
        let checkpoint = match (&audit.checkpoint_url, &audit.checkpoint_dir) {
            (Some(url), None) => {
                let text = url.get_ref();
                if !(text.starts_with("http://") || text.starts_with("https://")) || text.parse::<http::Uri>().is_err()
                {
                    self.problem(url.span(), "audit.checkpoint_url", "expected http(s)://host:port/audit/checkpoint");
                }
                Some(CheckpointSource::Url(text.clone()))
            }
            (None, Some(dir)) => {
                let path = self.base.join(dir.get_ref());
                if !path.is_dir() {
                    self.problem(
                        dir.span(),
                        "audit.checkpoint_dir",
                        &format!("directory not found: {}", path.display()),
                    );
                }
                Some(CheckpointSource::Dir(path))
            }
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.problem(spanned.span(), "audit", "give one of checkpoint_url, checkpoint_dir");
                return None;
            }
        };
        let (default_wait, max_wait) = crate::audit::chain::WAIT_SECONDS;
        let wait = match &audit.checkpoint_wait_seconds {
            Some(seconds) if *seconds.get_ref() > max_wait => {
                let message = format!("{} is outside 0-{max_wait}", seconds.get_ref());
                self.problem(seconds.span(), "audit.checkpoint_wait_seconds", &message);
                max_wait
            }
            Some(seconds) => *seconds.get_ref(),
            None => default_wait,
        };
        match (key, checkpoint) {
            (Some(key), Some(checkpoint)) => Some(ChainSpec {
                public_key: self.existing_file(key, "audit.public_key"),
                checkpoint,
                wait: std::time::Duration::from_secs(wait),
            }),
            (None, None) => None,
            (Some(key), None) => {
                self.problem(key.span(), "audit.public_key", "needs checkpoint_url or checkpoint_dir");
                None
            }
            (None, Some(_)) => {
                self.problem(spanned.span(), "audit", "checkpoint_url / checkpoint_dir need public_key");
                None
            }
        }
    }

    /// `owner` and `contacts`, the people the run memo names; one line each, bounded so a memo stays a memo.
    pub(super) fn people(&mut self, raw: &RawTarget) -> (Option<String>, Vec<String>) {
        const MAX_CHARS: usize = 200;
        const MAX_CONTACTS: usize = 20;
        let lines = raw.owner.iter().map(|o| ("owner", o)).chain(raw.contacts.iter().map(|c| ("contacts", c)));
        for (key, line) in lines {
            let text = line.get_ref();
            if text.trim().is_empty() || text.chars().count() > MAX_CHARS || text.chars().any(char::is_control) {
                self.problem(line.span(), key, &format!("expected one line of 1 to {MAX_CHARS} characters"));
            }
        }
        if let Some(extra) = raw.contacts.get(MAX_CONTACTS) {
            self.problem(extra.span(), "contacts", &format!("at most {MAX_CONTACTS} contacts"));
        }
        let owner = raw.owner.as_ref().map(|o| o.get_ref().clone());
        (owner, raw.contacts.iter().map(|c| c.get_ref().clone()).collect())
    }
}
