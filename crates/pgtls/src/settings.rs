//! The TLS settings of a PostgreSQL connection string, read as libpq reads them.
//!
//! tokio-postgres' own parser knows `sslmode=disable|prefer|require` only and rejects every other `ssl*`
//! key, while operators copy connection strings that work with psql: `sslmode=verify-full` and
//! `sslrootcert=/etc/ssl/rds-ca.pem`, in a URL or as `key=value` pairs, or `PGSSLMODE`/`PGSSLROOTCERT` in the
//! environment. This module takes those keys out of the string (both forms), leaves every other key for
//! tokio-postgres to parse as before, and decides what libpq would: which mode, which CA certificates, and
//! whether the server's certificate and host name are checked.

use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::percent_decode_str;

use crate::PgTlsError;

/// libpq's `sslmode`: whether TLS is used and what of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// Plain text first; TLS when the server refuses the plain-text connection.
    Allow,
    /// TLS when the server offers it, plain text when it answers the SSL request with "no" (the default).
    Prefer,
    /// TLS or fail; the certificate is not checked unless a root certificate is configured, in which case
    /// this behaves like [`SslMode::VerifyCa`] (as libpq does).
    Require,
    /// TLS, and the server's certificate chain must lead to a trusted CA; the host name is not checked.
    VerifyCa,
    /// TLS, a trusted chain, and a certificate issued for the host name connected to.
    VerifyFull,
}

impl SslMode {
    /// The spelling libpq uses, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = PgTlsError;

    fn from_str(value: &str) -> Result<Self, PgTlsError> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(PgTlsError::InvalidSetting {
                    setting: "sslmode",
                    problem: format!(
                        "{other:?} is not a mode: use disable, allow, prefer, require, verify-ca or verify-full"
                    ),
                });
            }
        })
    }
}

/// Where the CA certificates that verify the server come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// None configured: the certificate cannot be verified.
    None,
    /// A PEM file: `sslrootcert` / `PGSSLROOTCERT`, or libpq's default `~/.postgresql/root.crt` when it exists.
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trust store.
    System,
}

/// What is checked of the server's certificate once TLS is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Nothing: the connection is encrypted but the server is not authenticated.
    None,
    /// The chain must lead to one of the root certificates; any host name is accepted.
    Chain,
    /// The chain, and the host name connected to must be one the certificate lists.
    Full,
}

/// The TLS part of a connection string, and the rest for tokio-postgres.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The mode asked for (URL/`key=value`, else `PGSSLMODE`, else `prefer`).
    pub mode: SslMode,
    /// The CA certificates to verify against.
    pub roots: RootCerts,
    /// What is checked of the server certificate.
    pub verification: Verification,
    /// `sslsni=0` turns off Server Name Indication (libpq sends it by default).
    pub sni: bool,
    /// The connection string without the keys handled here, in its original form.
    pub remainder: String,
}

/// The keys this module takes out of the connection string.
const HANDLED: [&str; 3] = ["sslmode", "sslrootcert", "sslsni"];

/// libpq `ssl*` keys tokio-postgres does not know and this connector does not implement; named in the error
/// rather than tokio-postgres' bare "unknown option".
const UNSUPPORTED: [&str; 10] = [
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslcrl",
    "sslcrldir",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
];

impl TlsSettings {
    /// Reads the TLS keys of `conn` (a `postgres://` URL or `key=value` pairs), with `env` standing for the
    /// process environment (`PGSSLMODE`, `PGSSLROOTCERT`, `HOME`).
    pub fn parse(conn: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, PgTlsError> {
        let (pairs, remainder) = if is_url(conn) { split_url(conn)? } else { split_key_values(conn)? };
        let mut mode_text = None;
        let mut root_text = None;
        let mut sni = true;
        for (key, value) in pairs {
            match key.as_str() {
                "sslmode" => mode_text = Some(value),
                "sslrootcert" => root_text = Some(value),
                "sslsni" => sni = value != "0",
                _ => unreachable!("only handled keys are split off"),
            }
        }
        let mode_text = mode_text.or_else(|| env("PGSSLMODE"));
        let explicit_mode = mode_text.as_deref().map(SslMode::from_str).transpose()?;
        let root_text = root_text.or_else(|| env("PGSSLROOTCERT")).filter(|value| !value.is_empty());

        let roots = match root_text.as_deref() {
            Some("system") => RootCerts::System,
            Some(path) => RootCerts::File(PathBuf::from(path)),
            None => match env("HOME").map(|home| PathBuf::from(home).join(".postgresql/root.crt")) {
                Some(default) if default.is_file() => RootCerts::File(default),
                _ => RootCerts::None,
            },
        };
        let mode = match (explicit_mode, &roots) {
            // libpq 16: the system store only makes sense with host name checks, and implies them.
            (None, RootCerts::System) => SslMode::VerifyFull,
            (Some(mode), RootCerts::System) if mode != SslMode::VerifyFull && mode != SslMode::Disable => {
                return Err(PgTlsError::InvalidSetting {
                    setting: "sslrootcert",
                    problem: format!(
                        "sslrootcert=system trusts every public CA, so it needs sslmode=verify-full (got sslmode={mode})"
                    ),
                });
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        let verification = match mode {
            SslMode::Disable => Verification::None,
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::Chain,
            // libpq verifies the chain whenever a root certificate is configured, whatever the mode.
            _ if roots != RootCerts::None => Verification::Chain,
            _ => Verification::None,
        };
        if verification != Verification::None && roots == RootCerts::None {
            return Err(PgTlsError::InvalidSetting {
                setting: "sslrootcert",
                problem: format!(
                    "sslmode={mode} checks the server's certificate, so it needs the CA that issued it: set \
                     sslrootcert=/path/to/ca.pem in the connection string (or PGSSLROOTCERT; for RDS the region's \
                     CA bundle), or use sslmode=require to encrypt without verifying"
                ),
            });
        }
        Ok(Self { mode, roots, verification, sni, remainder })
    }
}

/// Whether `conn` is a URL (libpq's two schemes) rather than `key=value` pairs.
pub(crate) fn is_url(conn: &str) -> bool {
    conn.starts_with("postgres://") || conn.starts_with("postgresql://")
}

type Split = (Vec<(String, String)>, String);

/// Takes the handled keys out of a URL's query, leaving every other pair exactly as written.
fn split_url(conn: &str) -> Result<Split, PgTlsError> {
    let Some((base, query)) = conn.split_once('?') else { return Ok((Vec::new(), conn.to_owned())) };
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key)?;
        check_supported(&key)?;
        if HANDLED.contains(&key.as_str()) {
            taken.push((key, decode(raw_value)?));
        } else {
            kept.push(pair);
        }
    }
    let remainder = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((taken, remainder))
}

fn decode(text: &str) -> Result<String, PgTlsError> {
    percent_decode_str(text).decode_utf8().map(|s| s.into_owned()).map_err(|_| PgTlsError::InvalidSetting {
        setting: "connection string",
        problem: "a URL query parameter is not valid percent-encoded UTF-8".to_owned(),
    })
}

/// Takes the handled keys out of `key=value` pairs (libpq's quoting: `'…'`, backslash escapes), and writes
/// the others back quoted.
fn split_key_values(conn: &str) -> Result<Split, PgTlsError> {
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    let mut chars = conn.chars().peekable();
    let syntax = |problem: &str| PgTlsError::InvalidSetting {
        setting: "connection string",
        problem: format!("{problem} (expected key=value pairs separated by spaces, or a postgres:// URL)"),
    };
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            if chars.peek().is_some() {
                return Err(syntax("a key is missing before `=`"));
            }
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(syntax(&format!("`{key}` has no `=value`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(syntax(&format!("the quoted value of `{key}` is not closed"))),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        check_supported(&key)?;
        if HANDLED.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok((taken, kept.join(" ")))
}

fn check_supported(key: &str) -> Result<(), PgTlsError> {
    if UNSUPPORTED.contains(&key) {
        return Err(PgTlsError::InvalidSetting {
            setting: "connection string",
            problem: format!(
                "`{key}` is not supported by this PostgreSQL connector (client certificates, CRLs and protocol \
                 bounds are not implemented); the TLS keys it reads are sslmode, sslrootcert and sslsni"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(conn: &str) -> TlsSettings {
        TlsSettings::parse(conn, &no_env).unwrap_or_else(|e| panic!("{conn}: {e}"))
    }

    #[test]
    fn url_keys_are_taken_out_and_the_rest_kept_as_written() {
        let s = parse(
            "postgres://u:p%40ss@db.example:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=a%20b",
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.roots, RootCerts::File("/etc/ca.pem".into()));
        assert_eq!(s.verification, Verification::Full);
        assert_eq!(s.remainder, "postgres://u:p%40ss@db.example:5432/app?application_name=a%20b");

        let s = parse("postgresql://h/db?sslmode=require");
        assert_eq!((s.mode, s.verification), (SslMode::Require, Verification::None));
        assert_eq!(s.remainder, "postgresql://h/db");
    }

    #[test]
    fn key_value_pairs_with_quotes_and_escapes() {
        let s = parse("host=h  user = 'o\\'brien' password='a b\\\\c' sslmode = verify-ca sslrootcert='/x y/ca.pem'");
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(s.roots, RootCerts::File("/x y/ca.pem".into()));
        assert_eq!(s.remainder, "host='h' user='o\\'brien' password='a b\\\\c'");
        let config: tokio_postgres::Config = s.remainder.parse().unwrap();
        assert_eq!(config.get_user(), Some("o'brien"));
        assert_eq!(config.get_password(), Some(&b"a b\\c"[..]));
    }

    #[test]
    fn default_is_prefer_and_environment_fills_what_the_string_lacks() {
        assert_eq!(parse("postgres://h/db").mode, SslMode::Prefer);
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("verify-ca".to_owned()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_owned()),
            _ => None,
        };
        let s = TlsSettings::parse("postgres://h/db", &env).unwrap();
        assert_eq!((s.mode, s.roots), (SslMode::VerifyCa, RootCerts::File("/env/ca.pem".into())));
        let s = TlsSettings::parse("postgres://h/db?sslmode=require", &env).unwrap();
        assert_eq!(s.mode, SslMode::Require, "the string wins over the environment");
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_as_libpq_does() {
        let s = parse("postgres://h/db?sslmode=require&sslrootcert=/ca.pem");
        assert_eq!(s.verification, Verification::Chain);
        let s = parse("postgres://h/db?sslmode=prefer&sslrootcert=/ca.pem");
        assert_eq!(s.verification, Verification::Chain);
    }

    #[test]
    fn libpq_default_root_certificate_is_used_when_present() {
        let home = std::env::temp_dir().join(format!("pgtls-home-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".postgresql")).unwrap();
        let env = |name: &str| (name == "HOME").then(|| home.display().to_string());
        let s = TlsSettings::parse("sslmode=require", &env).unwrap();
        assert_eq!(s.verification, Verification::None, "no root.crt yet");
        std::fs::write(home.join(".postgresql/root.crt"), "x").unwrap();
        let s = TlsSettings::parse("sslmode=require", &env).unwrap();
        assert_eq!(s.roots, RootCerts::File(home.join(".postgresql/root.crt")));
        assert_eq!(s.verification, Verification::Chain);
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn system_roots_imply_and_need_verify_full() {
        let s = parse("host=h sslrootcert=system");
        assert_eq!((s.mode, s.roots), (SslMode::VerifyFull, RootCerts::System));
        let e = TlsSettings::parse("host=h sslrootcert=system sslmode=require", &no_env).unwrap_err();
        assert!(e.to_string().contains("needs sslmode=verify-full"), "{e}");
    }

    #[test]
    fn clear_errors_for_bad_or_unsupported_settings() {
        let e = TlsSettings::parse("postgres://h/db?sslmode=verify_full", &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sslmode: \"verify_full\" is not a mode: use disable, allow, prefer, require, verify-ca or verify-full"
        );
        let e = TlsSettings::parse("postgres://h/db?sslmode=verify-full", &no_env).unwrap_err();
        assert!(e.to_string().starts_with("sslrootcert: sslmode=verify-full checks the server's certificate"), "{e}");
        let e = TlsSettings::parse("host=h sslcert=/c.pem", &no_env).unwrap_err();
        assert!(e.to_string().contains("`sslcert` is not supported"), "{e}");
        let e = TlsSettings::parse("host='h", &no_env).unwrap_err();
        assert!(e.to_string().contains("not closed"), "{e}");
    }

    #[test]
    fn sni_can_be_turned_off() {
        assert!(parse("host=h").sni);
        assert!(!parse("postgres://h/db?sslsni=0").sni);
    }
}
