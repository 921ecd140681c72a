//! How a target's probes travel: its `[proxy]` table, `retries` and `retry_backoff_ms`, the environment's
//! `https_proxy`/`HTTPS_PROXY`/`all_proxy`/`ALL_PROXY` and `no_proxy`/`NO_PROXY`, and the curl recipe of
//! `curl.sh`. Validated here once, with errors naming the key or the variable; the probe engine only
//! receives the typed [`Transport`].
//!
//! The environment is read as curl reads it: the lower-case name first. A proxy URL is `http://host[:port]`
//! (curl's default port 1080); credentials may sit in the variable's URL (it is a secret itself) but never
//! in `targets.toml`, where the password is `password_env` or `password_file` as everywhere else.

use std::time::Duration;

use super::check::Checker;
use super::*;
use crate::evidence::curl::{CurlIdentity, CurlProxy, CurlRecipe, SecretExpr};
use crate::evidence::limits::{MAX_RETRIES, MAX_RETRY_BACKOFF_MS};
use crate::probe::Transport;
use crate::probe::proxy::{NoProxy, ProxyAuth, ProxyRoute, ProxyRules};
use crate::probe::retry::RetryPolicy;

/// The first pause before a retry when `retry_backoff_ms` is not given.
const DEFAULT_BACKOFF_MS: u64 = 500;

/// The proxy variables, in the order curl looks at them.
const PROXY_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// The bypass variables, in the order curl looks at them.
const NO_PROXY_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// `[targets.<name>.proxy]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) url: Spanned<String>,
    pub(super) user: Option<Spanned<String>>,
    /// Present only to refuse inline secrets with a clear message.
    password: Option<Spanned<toml::Value>>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
}

/// A target's own proxy, validated (the password still by reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    /// Host (no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The proxy user and where the password is.
    pub credentials: Option<(String, SecretRef)>,
}

impl ProxySpec {
    /// `http://host:port`.
    pub fn url(&self) -> String {
        proxy_url(&self.host, self.port)
    }
}

/// A proxy URL taken apart; credentials percent-decoded.
struct ProxyUrl {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

/// Parses `http://[user:password@]host[:port][/]`; the error says what is wrong, never the value.
fn parse_proxy_url(value: &str) -> Result<ProxyUrl, String> {
    let with_scheme = if value.contains("://") { value.to_owned() } else { format!("http://{value}") };
    let uri: http::Uri = with_scheme.parse().map_err(|_| "not a URL like http://proxy.example:3128".to_owned())?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// proxies (HTTP CONNECT) are supported, not HTTPS or SOCKS proxies".to_owned());
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return Err("a proxy URL has no path or query: give http://host:port".to_owned());
    }
    let authority = uri.authority().ok_or_else(|| "no proxy host: give http://host:port".to_owned())?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err("no proxy host: give http://host:port".to_owned());
    }
    let credentials = authority.as_str().rsplit_once('@').map(|(userinfo, _)| {
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        match userinfo.split_once(':') {
            Some((user, password)) => (decode(user), decode(password)),
            None => (decode(userinfo), String::new()),
        }
    });
    Ok(ProxyUrl { host, port: authority.port_u16().unwrap_or(1080), credentials })
}

fn proxy_url(host: &str, port: u16) -> String {
    if host.contains(':') { format!("http://[{host}]:{port}") } else { format!("http://{host}:{port}") }
}

impl Checker<'_, '_> {
    /// `[proxy]`: an `http://host:port` URL without credentials, and `user` with exactly one of
    /// `password_env` or `password_file` (or neither of them and no user).
    pub(super) fn proxy(&mut self, spanned: &Spanned<RawProxy>) -> Option<ProxySpec> {
        let raw = spanned.get_ref();
        let parsed = match parse_proxy_url(raw.url.get_ref()) {
            Ok(parsed) => parsed,
            Err(message) => {
                self.problem(raw.url.span(), "proxy.url", &message);
                return None;
            }
        };
        if parsed.credentials.is_some() {
            let message = "credentials are refused in the URL: give proxy.user and proxy.password_env";
            self.problem(raw.url.span(), "proxy.url", message);
            return None;
        }
        let has_password = raw.password.is_some() || raw.password_env.is_some() || raw.password_file.is_some();
        let credentials = match &raw.user {
            Some(user) if user.get_ref().is_empty() || user.get_ref().contains(':') => {
                self.problem(user.span(), "proxy.user", "expected a user name without `:`");
                return None;
            }
            Some(user) => {
                let password = self.secret(
                    raw.password.as_ref(),
                    raw.password_env.as_ref(),
                    raw.password_file.as_ref(),
                    "proxy",
                    spanned.span(),
                )?;
                Some((user.get_ref().clone(), password))
            }
            None if has_password => {
                self.problem(spanned.span(), "proxy.user", "a proxy password needs proxy.user");
                return None;
            }
            None => None,
        };
        Some(ProxySpec { host: parsed.host, port: parsed.port, credentials })
    }

    /// `retries` (0 to [`MAX_RETRIES`]) and `retry_backoff_ms` (0 to [`MAX_RETRY_BACKOFF_MS`]).
    pub(super) fn retries(&mut self, retries: Option<&Spanned<u64>>, backoff: Option<&Spanned<u64>>) -> RetryPolicy {
        let mut bounded = |value: Option<&Spanned<u64>>, key: &str, max: u64, default: u64, what: &str| match value {
            None => default,
            Some(v) if *v.get_ref() <= max => *v.get_ref(),
            Some(v) => {
                let message = format!("{} is out of range: {what}", v.get_ref());
                self.problem(v.span(), key, &message);
                default
            }
        };
        let retries = bounded(
            retries,
            "retries",
            MAX_RETRIES,
            0,
            &format!("0 to {MAX_RETRIES} retries after a connection-level failure"),
        );
        let backoff_ms = bounded(
            backoff,
            "retry_backoff_ms",
            MAX_RETRY_BACKOFF_MS,
            DEFAULT_BACKOFF_MS,
            &format!("the first pause before a retry is 0 to {MAX_RETRY_BACKOFF_MS} milliseconds"),
        );
        RetryPolicy { retries: u32::try_from(retries).unwrap_or(0), backoff: Duration::from_millis(backoff_ms) }
    }
}

/// The environment's proxy and bypass list, read through `lookup` (the process environment in a run); an
/// error names the variable.
pub fn env_proxy(lookup: &dyn Fn(&str) -> Option<String>) -> Result<(Option<ProxyRoute>, Option<NoProxy>), String> {
    let first = |names: &[&'static str]| {
        names.iter().find_map(|name| lookup(name).filter(|v| !v.trim().is_empty()).map(|v| (*name, v)))
    };
    let route = match first(&PROXY_VARS) {
        None => None,
        Some((var, value)) => {
            let parsed =
                parse_proxy_url(value.trim()).map_err(|message| format!("environment variable {var}: {message}"))?;
            let auth = parsed.credentials.map(|(user, password)| ProxyAuth {
                user,
                password,
                from: format!("environment variable {var} (user:password in its URL)"),
            });
            Some(ProxyRoute {
                url: proxy_url(&parsed.host, parsed.port),
                host: parsed.host,
                port: parsed.port,
                source: var.to_owned(),
                auth,
                curl: CurlProxy::FromEnv(var.to_owned()),
            })
        }
    };
    let no_proxy = first(&NO_PROXY_VARS).map(|(var, value)| NoProxy::parse(var, &value));
    Ok((route, no_proxy))
}

impl Targets {
    /// The named target with its secrets read, the environment's proxy variables read through `lookup`.
    pub fn resolve_with_env(&self, name: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Target, TargetError> {
        let mut target = self.resolve_secrets(name, lookup)?;
        let spec = &target.spec;
        let (env, no_proxy) = env_proxy(lookup).map_err(|message| TargetError::Secret {
            file: self.file.clone(),
            target: name.to_owned(),
            key: "proxy (environment)".to_owned(),
            message,
        })?;
        let configured = match &spec.proxy {
            None => None,
            Some(proxy) => Some(configured_route(self, spec, proxy, lookup)?),
        };
        target.proxy = ProxyRules { configured, env, no_proxy };
        Ok(target)
    }
}

/// The target's own proxy with its password read.
fn configured_route(
    targets: &Targets,
    spec: &TargetSpec,
    proxy: &ProxySpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProxyRoute, TargetError> {
    let source = format!("targets.{}.proxy", spec.name);
    let (auth, curl_credentials) = match &proxy.credentials {
        None => (None, None),
        Some((user, reference)) => {
            let password = reference.read_with(env).map_err(|message| TargetError::Secret {
                file: targets.file.clone(),
                target: spec.name.clone(),
                key: "proxy.password".to_owned(),
                message,
            })?;
            let from =
                format!("{} ({source}.{} in {})", reference.origin(), reference.password_key(), targets.file.display());
            (Some(ProxyAuth { user: user.clone(), password, from }), Some((user.clone(), secret_expr(reference))))
        }
    };
    Ok(ProxyRoute {
        host: proxy.host.clone(),
        port: proxy.port,
        url: proxy.url(),
        source,
        auth,
        curl: CurlProxy::Configured { url: proxy.url(), credentials: curl_credentials },
    })
}

fn secret_expr(reference: &SecretRef) -> SecretExpr {
    match reference {
        SecretRef::Env(name) => SecretExpr::Env(name.clone()),
        SecretRef::File(path) => SecretExpr::File(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
    }
}

impl Target {
    /// The probe engine's transport: proxy rules, retries and the curl recipe (absolute paths, secrets by
    /// reference).
    pub fn transport(&self) -> Transport {
        let spec = &self.spec;
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let recipe = CurlRecipe {
            cacert: match &spec.trust {
                TrustSource::CaBundle(path) => Some(absolute(path)),
                _ => None,
            },
            identity: spec.identity.as_ref().map(|identity| match identity {
                IdentitySpec::Pkcs12 { path, password } => {
                    CurlIdentity::Pkcs12 { path: absolute(path), password: secret_expr(password) }
                }
                IdentitySpec::Pem { cert, key } => CurlIdentity::Pem { cert: absolute(cert), key: absolute(key) },
            }),
            basic: spec.basic.as_ref().map(|(user, password)| (user.clone(), secret_expr(password))),
        };
        Transport { proxy: self.proxy.clone(), retry: spec.retry, curl: Some(recipe) }
    }
}
