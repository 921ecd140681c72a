//! TLS to PostgreSQL for tokio-postgres, with libpq's `sslmode` and `sslrootcert`, on rustls (aws-lc-rs).
//!
//! Production audit databases (RDS with `rds.force_ssl=1`) refuse plain-text connections, and operators
//! hand the harness the same connection string that works with psql: `sslmode=verify-full` with
//! `sslrootcert=` the RDS CA bundle. tokio-postgres parses only `disable`/`prefer`/`require` and needs a TLS
//! connector from outside; this crate reads the string as libpq does ([`settings`]), builds a rustls
//! connector with the matching certificate checks ([`connector`]), connects, and turns a failure into a
//! message that names the setting and says what to do ([`PgTlsError`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgtls::PgTlsError> {
//! let (client, connection) =
//!     pgtls::connect("postgres://audit@db.example:5432/phr?sslmode=verify-full&sslrootcert=/etc/rds-ca.pem").await?;
//! tokio::spawn(connection);
//! client.simple_query("SELECT 1").await.ok();
//! # Ok(()) }
//! ```
//!
//! | sslmode | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow` | only if the plain-text connection is refused | chain, if a root certificate is configured |
//! | `prefer` (default) | if the server accepts it | chain, if a root certificate is configured |
//! | `require` | always | chain, if a root certificate is configured (libpq's rule), else nothing |
//! | `verify-ca` | always | chain against `sslrootcert`; any host name |
//! | `verify-full` | always | chain and host name |
//!
//! Root certificates: `sslrootcert=<PEM file>`, `sslrootcert=system` (the OS store; implies and needs
//! `verify-full`), else `PGSSLROOTCERT`, else libpq's default `~/.postgresql/root.crt` when it exists.
//! `sslmode` falls back to `PGSSLMODE`, then `prefer`. A server that refuses TLS under `prefer` is used in
//! plain text; a failed handshake is an error (no silent downgrade).

pub mod connector;
pub mod settings;

use std::path::PathBuf;

pub use connector::{MakeRustlsConnect, RustlsConnect, TlsStream};
pub use settings::{RootCerts, SslMode, TlsSettings, Verification};
use tokio_postgres::error::SqlState;

/// The connection future tokio-postgres hands back; spawn it (it runs the protocol) and keep the client.
pub type Connection = tokio_postgres::Connection<tokio_postgres::Socket, TlsStream<tokio_postgres::Socket>>;

/// Why a connection could not be set up or made. Messages never contain the connection string (it may
/// hold a password); they name the setting at fault and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    /// A TLS setting (or the connection string around it) is malformed or not supported.
    #[error("{setting}: {problem}")]
    InvalidSetting {
        /// The key or variable at fault, e.g. `sslmode`.
        setting: &'static str,
        /// What is wrong and what to write instead.
        problem: String,
    },
    /// The root certificate file cannot be used.
    #[error("sslrootcert={}: {problem}", path.display())]
    RootCert {
        /// The file named by `sslrootcert` / `PGSSLROOTCERT` / the libpq default.
        path: PathBuf,
        /// Why it cannot be used.
        problem: String,
    },
    /// rustls refused the configuration (not expected with the built-in provider).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The server could not be reached, refused us, or failed the certificate checks.
    #[error("sslmode={mode}: {message}")]
    Connect {
        /// The mode in force, named in the message because it decides what was checked.
        mode: SslMode,
        /// What kind of failure, for callers that react differently (tests, retries).
        kind: ConnectFailure,
        /// The driver's or server's message, with a hint where the cause is known.
        message: String,
    },
}

impl PgTlsError {
    /// The kind of connection failure, `None` for configuration errors.
    pub fn connect_failure(&self) -> Option<ConnectFailure> {
        match self {
            Self::Connect { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// The connection failures worth telling apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The certificate chain does not lead to a trusted root (`sslrootcert` is not the server's CA).
    UntrustedCertificate,
    /// The certificate is valid but not for the host name connected to (`verify-full`).
    WrongHostName,
    /// Any other problem with the server certificate (expired, wrong key usage, …).
    BadCertificate,
    /// The server answered the SSL request with "no" (`ssl=off`) while the mode needs TLS.
    ServerRefusedTls,
    /// The server (pg_hba.conf `hostssl`) refused a plain-text connection.
    ServerRequiresTls,
    /// The TLS handshake failed for another reason.
    Handshake,
    /// The server refused the login or reported another error.
    Server,
    /// The network: refused, unreachable, timed out, closed.
    Network,
}

/// A parsed connection string: tokio-postgres' configuration plus the TLS settings it cannot hold.
#[derive(Debug, Clone)]
pub struct PgTlsConfig {
    /// Everything but the TLS keys, with `sslmode` translated to the three modes tokio-postgres knows.
    pub postgres: tokio_postgres::Config,
    /// The libpq TLS settings.
    pub tls: TlsSettings,
}

impl PgTlsConfig {
    /// Parses `conn` (a `postgres://` URL or `key=value` pairs), reading `PGSSLMODE`, `PGSSLROOTCERT` and
    /// `HOME` from the process environment as libpq does.
    pub fn parse(conn: &str) -> Result<Self, PgTlsError> {
        Self::parse_with_env(conn, &|name| std::env::var(name).ok())
    }

    /// [`PgTlsConfig::parse`] with the environment given explicitly (tests, embedding).
    pub fn parse_with_env(conn: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, PgTlsError> {
        let tls = TlsSettings::parse(conn, env)?;
        let mut postgres: tokio_postgres::Config = tls.remainder.parse().map_err(|e: tokio_postgres::Error| {
            PgTlsError::InvalidSetting { setting: "connection string", problem: error_chain(&e) }
        })?;
        postgres.ssl_mode(match tls.mode {
            SslMode::Disable | SslMode::Allow => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        Ok(Self { postgres, tls })
    }

    /// The connector for these settings (reads the root certificate file now).
    pub fn connector(&self) -> Result<MakeRustlsConnect, PgTlsError> {
        MakeRustlsConnect::from_settings(&self.tls)
    }

    /// Connects; the returned [`Connection`] must be spawned (or polled) for the client to work.
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, Connection), PgTlsError> {
        let connector = self.connector()?;
        let first = self.postgres.connect(connector.clone()).await;
        match first {
            // libpq's `allow`: plain text first, TLS when the server turns the plain-text attempt down.
            Err(error) if self.tls.mode == SslMode::Allow && error.as_db_error().is_some() => {
                let mut with_tls = self.postgres.clone();
                with_tls.ssl_mode(tokio_postgres::config::SslMode::Require);
                with_tls.connect(connector).await.map_err(|e| self.connect_error(&e))
            }
            other => other.map_err(|e| self.connect_error(&e)),
        }
    }

    /// Names the mode and, where the cause is known, what to change.
    fn connect_error(&self, error: &tokio_postgres::Error) -> PgTlsError {
        let mode = self.tls.mode;
        let (kind, hint) = classify(error, &self.tls);
        let mut message = describe(error);
        if let Some(hint) = hint {
            message.push_str(" — ");
            message.push_str(&hint);
        }
        PgTlsError::Connect { mode, kind, message }
    }
}

/// Parses `conn` and connects: the one call most callers need.
///
/// `conn` is a `postgres://` URL or `key=value` pairs with libpq's `sslmode` / `sslrootcert`; spawn the
/// returned [`Connection`].
pub async fn connect(conn: &str) -> Result<(tokio_postgres::Client, Connection), PgTlsError> {
    PgTlsConfig::parse(conn)?.connect().await
}

fn classify(error: &tokio_postgres::Error, tls: &TlsSettings) -> (ConnectFailure, Option<String>) {
    let roots = match &tls.roots {
        RootCerts::File(path) => format!("sslrootcert={}", path.display()),
        RootCerts::System => "the system trust store (sslrootcert=system)".to_owned(),
        RootCerts::None => "no sslrootcert".to_owned(),
    };
    if let Some(db) = error.as_db_error() {
        if *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION && db.message().contains("no encryption") {
            return (
                ConnectFailure::ServerRequiresTls,
                Some(format!(
                    "the server accepts only TLS connections: use sslmode=verify-full with sslrootcert=<its CA> \
                     (or sslmode=require to encrypt without verifying) instead of sslmode={}",
                    tls.mode
                )),
            );
        }
        return (ConnectFailure::Server, None);
    }
    if let Some(certificate) = rustls_certificate_error(error) {
        use rustls::CertificateError as E;
        return match certificate {
            E::UnknownIssuer | E::BadSignature | E::UnhandledCriticalExtension => (
                ConnectFailure::UntrustedCertificate,
                Some(format!(
                    "the server's certificate is not issued by a CA in {roots}: point sslrootcert at the PEM file \
                     of the CA that signed it (for RDS, the region's CA bundle)"
                )),
            ),
            E::NotValidForName | E::NotValidForNameContext { .. } => (
                ConnectFailure::WrongHostName,
                Some(
                    "the certificate is not issued for the host name in the connection string: connect by a name \
                     the certificate lists (the endpoint's DNS name, not its IP address), or use sslmode=verify-ca \
                     to check the CA only"
                        .to_owned(),
                ),
            ),
            _ => (ConnectFailure::BadCertificate, None),
        };
    }
    let chain = error_chain(error);
    if chain.contains("server does not support TLS") {
        return (
            ConnectFailure::ServerRefusedTls,
            Some(format!(
                "the server has TLS turned off (ssl=off); sslmode={} needs it: enable ssl on the server, or use \
                 sslmode=prefer/disable only on a network you trust",
                tls.mode
            )),
        );
    }
    if error.to_string() == "error performing TLS handshake" {
        return (ConnectFailure::Handshake, None);
    }
    (ConnectFailure::Network, None)
}

/// The rustls certificate verdict inside a tokio-postgres TLS error, if that is what failed.
fn rustls_certificate_error(error: &tokio_postgres::Error) -> Option<&rustls::CertificateError> {
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        let found = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| current.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(certificate)) = found {
            return Some(certificate);
        }
        source = current.source();
    }
    None
}

/// The server's message with its detail and hint, or the driver's error chain.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut message = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                message.push_str(&format!(" (DETAIL: {detail})"));
            }
            if let Some(hint) = db.hint() {
                message.push_str(&format!(" (HINT: {hint})"));
            }
            message
        }
        None => error_chain(error),
    }
}

/// Every message of an error chain once, joined with `: ` (an outer message that already ends with the
/// inner one is not repeated).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if let Some(last) = messages.last_mut()
            && let Some(head) = last.strip_suffix(&text)
        {
            *last = head.trim_end_matches([':', ' ']).to_owned();
            if last.is_empty() {
                messages.pop();
            }
        }
        if !messages.iter().any(|m| m == &text) {
            messages.push(text);
        }
        current = e.source();
    }
    // sqlx wraps a configuration error in another one with the same prefix.
    messages.dedup();
    messages.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn error_chain_says_each_message_once() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
        assert_eq!(error_chain(&Inner), "inner");
    }

    #[test]
    fn sslmode_is_translated_for_tokio_postgres() {
        let no_env = |_: &str| None;
        let c = PgTlsConfig::parse_with_env("host=h sslmode=verify-ca sslrootcert=/ca.pem", &no_env).unwrap();
        assert_eq!(c.postgres.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(c.postgres.get_hosts(), &[tokio_postgres::config::Host::Tcp("h".into())]);
        let c = PgTlsConfig::parse_with_env("postgres://h/db?sslmode=allow", &no_env).unwrap();
        assert_eq!(c.postgres.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        let e = PgTlsConfig::parse_with_env("postgres://h/db?bogus=1", &no_env).unwrap_err();
        assert_eq!(e.to_string(), "connection string: invalid connection string: unknown option `bogus`");
    }
}
