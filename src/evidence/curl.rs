//! `httpdump/<probe>/curl.sh`: the probe as one curl command, so anyone can reproduce it by hand.
//!
//! The seed logs end with "curl で再現" more often than not, and the command people typed by hand was never the
//! one the harness sent. This writes the equivalent command next to each probe's dump: method, URL, headers,
//! body, the client identity (PKCS#12 or PEM), the CA bundle, Basic credentials, the proxy or `--noproxy`, and
//! `--max-time`. Secrets are written as references the shell expands when the script runs (`"${VAR}"`,
//! `"$(cat 'file')"`), never as values; every literal is single-quoted so no URL or header can break out of
//! its argument. The script is plain text built here; the probe engine fills in the [`CurlCall`].

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a secret comes from, as the script reads it when it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretExpr {
    /// An environment variable's name.
    Env(String),
    /// A file holding the secret (trailing newlines dropped, as connrun reads it).
    File(PathBuf),
}

impl SecretExpr {
    /// The double-quoted shell expansion of the secret: `"${NAME}"` or `"$(cat 'file')"`.
    fn shell(&self) -> String {
        match self {
            SecretExpr::Env(name) if is_shell_name(name) => format!("\"${{{name}}}\""),
            SecretExpr::Env(name) => format!("\"$(printenv {})\"", quote(name)),
            SecretExpr::File(path) => format!("\"$(cat {})\"", quote(&path.display().to_string())),
        }
    }

    /// What the script needs set or readable, for its header comment.
    fn needs(&self) -> String {
        match self {
            SecretExpr::Env(name) => format!("environment variable {name}"),
            SecretExpr::File(path) => format!("file {}", path.display()),
        }
    }
}

/// The client identity as curl takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurlIdentity {
    /// `--cert-type P12 --cert file:password`.
    Pkcs12 {
        /// The `.p12` file.
        path: PathBuf,
        /// Its password.
        password: SecretExpr,
    },
    /// `--cert chain.pem --key key.pem`.
    Pem {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

/// What every probe of a target shares: trust, identity, Basic user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurlRecipe {
    /// `--cacert`; `None` for the system roots (curl's default).
    pub cacert: Option<PathBuf>,
    /// The client identity, when the target uses mTLS.
    pub identity: Option<CurlIdentity>,
    /// `--user user:password`.
    pub basic: Option<(String, SecretExpr)>,
}

/// The proxy a probe went through, as curl should use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurlProxy {
    /// The proxy came from an environment variable, which may hold credentials: `--proxy "${HTTPS_PROXY}"`.
    FromEnv(String),
    /// A target's `proxy`: its URL and, with credentials, `--proxy-user user:password`.
    Configured {
        /// `http://host:port`, no credentials.
        url: String,
        /// The proxy user and password.
        credentials: Option<(String, SecretExpr)>,
    },
}

/// The request body as curl sends it.
#[derive(Debug, Clone, Copy)]
pub enum CurlBody<'a> {
    /// No body.
    Empty,
    /// A body given in the template.
    Inline(&'a [u8]),
    /// A body streamed from a file.
    File(&'a Path),
}

/// One probe's request.
#[derive(Debug, Clone, Copy)]
pub struct CurlCall<'a> {
    /// Probe id, for the comment.
    pub id: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Absolute URL.
    pub url: &'a str,
    /// Headers the template and target add (Host, Authorization and Content-Length are curl's to set).
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: CurlBody<'a>,
    /// The probe's time limit (`--max-time`).
    pub max_time: Duration,
    /// The `User-Agent` connrun sent.
    pub user_agent: &'a str,
    /// `None` when the probe connected directly (`--noproxy '*'`, so an environment proxy is not used).
    pub proxy: Option<&'a CurlProxy>,
}

/// The script: `#!/bin/sh`, comments naming what must be set, then one `exec curl …`.
pub fn script(recipe: &CurlRecipe, call: &CurlCall<'_>) -> String {
    let mut needs: Vec<String> = Vec::new();
    let mut args: Vec<String> = vec![
        "--silent --show-error --include".to_owned(),
        "--write-out '\\nconnrun-replay: HTTP %{http_code}\\n'".to_owned(),
        format!("--max-time {}", seconds(call.max_time)),
    ];
    match call.proxy {
        None => args.push("--noproxy '*'".to_owned()),
        Some(CurlProxy::FromEnv(var)) => {
            needs.push(format!("environment variable {var} (the proxy)"));
            args.push(format!("--proxy {}", SecretExpr::Env(var.clone()).shell()));
        }
        Some(CurlProxy::Configured { url, credentials }) => {
            args.push(format!("--proxy {}", quote(url)));
            if let Some((user, password)) = credentials {
                needs.push(password.needs());
                args.push(format!("--proxy-user {}{}", quote(&format!("{user}:")), password.shell()));
            }
        }
    }
    if let Some(cacert) = &recipe.cacert {
        args.push(format!("--cacert {}", quote(&cacert.display().to_string())));
    }
    match &recipe.identity {
        Some(CurlIdentity::Pkcs12 { path, password }) => {
            needs.push(password.needs());
            let file = quote(&format!("{}:", cert_file(path)));
            args.push(format!("--cert-type P12 --cert {file}{}", password.shell()));
        }
        Some(CurlIdentity::Pem { cert, key }) => {
            args.push(format!("--cert {}", quote(&cert_file(cert))));
            args.push(format!("--key {}", quote(&key.display().to_string())));
        }
        None => {}
    }
    if let Some((user, password)) = &recipe.basic {
        needs.push(password.needs());
        args.push(format!("--user {}{}", quote(&format!("{user}:")), password.shell()));
    }
    args.push(format!("--request {}", quote(call.method)));
    args.push(format!("--user-agent {}", quote(call.user_agent)));
    for (name, value) in call.headers {
        args.push(format!("--header {}", quote(&format!("{name}: {value}"))));
    }
    let mut comments = Vec::new();
    match call.body {
        CurlBody::Empty => {}
        CurlBody::File(path) => args.push(format!("--data-binary {}", quote(&format!("@{}", path.display())))),
        CurlBody::Inline(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => args.push(format!("--data-binary {}", quote(text))),
            _ => comments.push(format!("# The inline body ({} bytes) is not text and is left out.", bytes.len())),
        },
    }
    args.push(format!("--url {}", quote(call.url)));

    let mut out = String::from("#!/bin/sh\n");
    out.push_str(&format!("# connrun probe {}: the same request as one curl command.\n", one_line(call.id)));
    if needs.is_empty() {
        out.push_str("# It needs no secret.\n");
    } else {
        out.push_str(&format!("# Secrets are read when it runs, from: {}.\n", one_line(&needs.join(", "))));
    }
    for comment in comments {
        out.push_str(&comment);
        out.push('\n');
    }
    out.push_str("set -eu\nexec curl");
    for arg in args {
        out.push_str(" \\\n  ");
        out.push_str(&arg);
    }
    out.push('\n');
    out
}

/// `s` as one single-quoted shell word: nothing inside is expanded (`'` is written `'\''`).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A certificate file for `--cert`, where curl reads `:` as the start of the password: escaped as `\:`.
fn cert_file(path: &Path) -> String {
    path.display().to_string().replace('\\', r"\\").replace(':', r"\:")
}

/// A limit in seconds as curl takes it (`30`, `0.5`).
fn seconds(limit: Duration) -> String {
    let millis = limit.as_millis();
    if millis.is_multiple_of(1000) { (millis / 1000).to_string() } else { format!("{:.3}", limit.as_secs_f64()) }
}

/// A comment's text on one line.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A name `${NAME}` can expand: letters, digits and `_`, not starting with a digit.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(url: &'a str, headers: &'a [(String, String)], body: CurlBody<'a>) -> CurlCall<'a> {
        CurlCall {
            id: "PHR-06",
            method: "POST",
            url,
            headers,
            body,
            max_time: Duration::from_secs(30),
            user_agent: "connrun/0.1.0",
            proxy: None,
        }
    }

    /// Runs the script with a `curl` shell function that prints each argument on its own line.
    fn arguments_as_the_shell_sees_them(script: &str, env: &[(&str, &str)]) -> Vec<String> {
        let body = script.replacen("exec curl", "curl", 1);
        let wrapped = format!("curl() {{ for a in \"$@\"; do printf '%s\\0' \"$a\"; done; }}\n{body}");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(wrapped)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().split('\0').filter(|a| !a.is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn hostile_characters_stay_inside_their_argument_and_secrets_are_references() {
        let url = "https://h.example:8443/a?q='$(touch /tmp/x)'&b=\"`id`\"&c=\\";
        let headers = vec![("X-Note".to_owned(), "it's $HOME; \"quoted\" `id` \\ $(id) !x".to_owned())];
        let recipe = CurlRecipe {
            cacert: Some(PathBuf::from("/ca's dir/ca.pem")),
            identity: Some(CurlIdentity::Pkcs12 {
                path: PathBuf::from("/c:dir/client.p12"),
                password: SecretExpr::Env("P12_PASS".to_owned()),
            }),
            basic: Some(("F001:o'ps".to_owned(), SecretExpr::Env("BASIC_PASS".to_owned()))),
        };
        let body = b"{\"a\": \"'$x'\"}";
        let script = script(&recipe, &call(url, &headers, CurlBody::Inline(body)));

        let args = arguments_as_the_shell_sees_them(&script, &[("P12_PASS", "p w'$1"), ("BASIC_PASS", "s3cr\"et")]);

        assert!(!script.contains("p w'$1") && !script.contains("s3cr\"et"), "{script}");
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(after("--url"), url);
        assert_eq!(after("--header"), format!("X-Note: {}", headers[0].1));
        assert_eq!(after("--cacert"), "/ca's dir/ca.pem");
        assert_eq!(after("--cert"), "/c\\:dir/client.p12:p w'$1");
        assert_eq!(after("--user"), "F001:o'ps:s3cr\"et");
        assert_eq!(after("--data-binary"), "{\"a\": \"'$x'\"}");
        assert_eq!(after("--noproxy"), "*");
        assert_eq!(after("--max-time"), "30");
    }

    #[test]
    fn an_unset_secret_variable_stops_the_script_naming_it() {
        let recipe = CurlRecipe {
            basic: Some(("u".to_owned(), SecretExpr::Env("MISSING_PASS".to_owned()))),
            ..Default::default()
        };
        let script = script(&recipe, &call("https://h/", &[], CurlBody::Empty));
        let output = std::process::Command::new("sh").arg("-c").arg(&script).env_clear().output().unwrap();

        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("MISSING_PASS"));
    }

    #[test]
    fn a_proxy_is_named_with_its_credentials_by_reference() {
        let proxy = CurlProxy::Configured {
            url: "http://proxy.example:3128".to_owned(),
            credentials: Some(("ops".to_owned(), SecretExpr::File(PathBuf::from("/s/proxy.pass")))),
        };
        let mut c = call("https://h/", &[], CurlBody::Empty);
        c.proxy = Some(&proxy);
        let script = script(&CurlRecipe::default(), &c);

        assert!(script.contains("--proxy 'http://proxy.example:3128'"), "{script}");
        assert!(script.contains("--proxy-user 'ops:'\"$(cat '/s/proxy.pass')\""), "{script}");
        assert!(!script.contains("--noproxy"));
        let env = CurlProxy::FromEnv("HTTPS_PROXY".to_owned());
        c.proxy = Some(&env);
        assert!(super::script(&CurlRecipe::default(), &c).contains("--proxy \"${HTTPS_PROXY}\""));
    }
}
