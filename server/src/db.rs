//! One database handle for the two stores the server supports: PostgreSQL (production) and SQLite (the
//! embedded default), chosen by the scheme of `PHR_DATABASE_URL`.
//!
//! Queries are runtime SQL written once with `$N` placeholders, which both drivers accept; the
//! [`with_pool!`] macro expands a query expression once per backend so each arm is type-checked against its
//! own driver. Where the dialects really differ (row locking, advisory locks) the caller matches on [`Db`]
//! itself. Migrations are embedded per backend and applied at start-up; `migrate --dry-run` ([`dry_run`])
//! applies the pending ones inside a transaction and rolls back, the BEGIN…ROLLBACK routine of the operations
//! logs, leaving nothing behind.
//!
//! PostgreSQL URLs take libpq's TLS settings (`sslmode=disable|prefer|require|verify-ca|verify-full`,
//! `sslrootcert=<PEM file>`, else `PGSSLMODE` / `PGSSLROOTCERT`), as production databases such as RDS with
//! `rds.force_ssl=1` need; TLS is sqlx's rustls on aws-lc-rs. As in libpq, `require` with a root certificate
//! verifies the chain (`verify-ca`). Unlike libpq, `verify-ca`/`verify-full` without `sslrootcert` trust the
//! Mozilla roots sqlx bundles, and those roots stay trusted beside `sslrootcert`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A connection pool to whichever store the URL named.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs the same query expression against whichever pool `$db` holds.
///
/// `with_pool!(db, |pool| sqlx::query("…").bind(x).execute(pool).await)`
#[macro_export]
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

pub mod dry_run;
pub mod privilege;

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PHR_DATABASE_URL: unsupported scheme in {0:?} (expected postgres://, postgresql:// or sqlite:)")]
    UnsupportedUrl(String),
    /// The database could not be opened. The message is complete in itself (no `source`), so a caller that
    /// prints the error chain shows the driver's message once, not once per wrapping level.
    #[error("PHR_DATABASE_URL ({target}): cannot connect: {problem}")]
    Connect {
        /// The URL with its password masked, and for PostgreSQL the sslmode in force.
        target: String,
        /// The driver's message chain, each part once, with what to change where the cause is known.
        problem: String,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// One migration the dry run (or the real run) applied.
#[derive(Debug, Clone)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub backend: &'static str,
    /// Highest applied migration version.
    pub schema_version: i64,
    /// Highest embedded migration version; equal to `schema_version` when up to date.
    pub expected_version: i64,
}

impl Db {
    /// Opens a pool for `url` without touching the schema.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (options, tls) = postgres_options(url)?;
            // No ping on acquire: the audit writer acquires under the chain lock, and a dead connection
            // fails its first statement anyway (the pool still tests connections when they come back).
            let pool = PgPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(|e| tls.connect_error(url, &e))?;
            Ok(Self::Postgres(pool))
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let sqlite_error = |e: &sqlx::Error| DbError::Connect { target: redact_url(url), problem: error_chain(e) };
            create_parent_folder(rest).map_err(|e| DbError::Connect {
                target: redact_url(url),
                problem: format!("cannot create the database's folder: {e}"),
            })?;
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| sqlite_error(&e))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: an acknowledged commit (an audit row and its data change) survives power loss;
                // NORMAL in WAL mode may lose the last commits.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| sqlite_error(&e))?;
            Ok(Self::Sqlite(pool))
        } else {
            Err(DbError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// `postgres` or `sqlite`, for logs and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self {
            Self::Postgres(_) => &POSTGRES_MIGRATIONS,
            Self::Sqlite(_) => &SQLITE_MIGRATIONS,
        }
    }

    /// Applies every pending embedded migration and commits. With nothing pending it only reads, so a serving
    /// role without DDL privileges ([`privilege`]) starts on a migrated schema.
    pub async fn migrate(&self) -> Result<Vec<AppliedMigration>, DbError> {
        let pending = self.pending_migrations().await?;
        if !pending.is_empty() {
            with_pool!(self, |pool| self.migrator().run(pool).await)?;
        }
        Ok(pending)
    }

    /// Embedded migrations not yet recorded as applied; reads only (a missing bookkeeping table means every
    /// migration is pending).
    pub async fn pending_migrations(&self) -> Result<Vec<AppliedMigration>, DbError> {
        let migrator = self.migrator();
        let exists_sql = match self {
            Self::Postgres(_) => "SELECT to_regclass('_sqlx_migrations') IS NOT NULL",
            Self::Sqlite(_) => {
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')"
            }
        };
        let exists: bool = with_pool!(self, |pool| sqlx::query_scalar(exists_sql).fetch_one(pool).await)?;
        let applied: Vec<i64> = if exists {
            with_pool!(self, |pool| {
                let mut conn = pool.acquire().await?;
                conn.list_applied_migrations(&migrator.table_name).await?.into_iter().map(|m| m.version).collect()
            })
        } else {
            Vec::new()
        };
        Ok(migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .map(|m| AppliedMigration { version: m.version, description: m.description.to_string() })
            .collect())
    }

    /// Proves the database answers a read and reports the schema version.
    pub async fn readiness(&self) -> Result<Readiness, DbError> {
        let expected_version = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let schema_version: Option<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await
        })?;
        Ok(Readiness { backend: self.backend(), schema_version: schema_version.unwrap_or(0), expected_version })
    }

    /// Closes every pooled connection (used on shutdown).
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }
}

/// Creates the folder of an SQLite file URL (`sqlite:data/phr.db`, `sqlite://data/phr.db?mode=rwc`).
fn create_parent_folder(rest: &str) -> std::io::Result<()> {
    let path = rest.trim_start_matches("//").split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
        _ => Ok(()),
    }
}

/// The TLS settings a PostgreSQL URL ended up with, for the libpq rule below and for error messages.
#[derive(Debug, Clone)]
struct PgTls {
    /// The mode in force after the URL, `PGSSLMODE` and the libpq rule.
    mode: PgSslMode,
    /// `sslrootcert` from the URL or `PGSSLROOTCERT`, as written.
    root_cert: Option<String>,
}

/// Parses a PostgreSQL URL as sqlx does (URL first, then `PGSSLMODE`/`PGSSLROOTCERT`), and applies libpq's
/// rule sqlx lacks: `require` with a root certificate verifies the certificate chain (`verify-ca`).
fn postgres_options(url: &str) -> Result<(PgConnectOptions, PgTls), DbError> {
    let target = redact_url(url);
    let mut options = PgConnectOptions::from_str(url).map_err(|e| {
        let mut problem = error_chain(&e);
        if problem.contains("ssl_mode") {
            problem.push_str(" (sslmode takes disable, allow, prefer, require, verify-ca or verify-full)");
        }
        DbError::Connect { target: target.clone(), problem }
    })?;
    let root_cert = url
        .split_once('?')
        .into_iter()
        .flat_map(|(_, query)| query.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| matches!(*key, "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
        .map(|(_, value)| percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned())
        .next_back()
        .or_else(|| std::env::var("PGSSLROOTCERT").ok())
        .filter(|value| !value.is_empty());
    if matches!(options.get_ssl_mode(), PgSslMode::Require) && root_cert.is_some() {
        options = options.ssl_mode(PgSslMode::VerifyCa);
    }
    // sqlx reads the file only during the handshake and then reports a bare "No such file or directory".
    if let Some(root) = &root_cert
        && !root.trim_start().starts_with("-----BEGIN")
        && !matches!(options.get_ssl_mode(), PgSslMode::Disable)
        && let Err(e) = std::fs::File::open(root)
    {
        return Err(DbError::Connect {
            target,
            problem: format!(
                "sslrootcert={root}: cannot read it: {e} — give the PEM file of the CA that signed the server's \
                 certificate (for RDS, the region's CA bundle)"
            ),
        });
    }
    let mode = options.get_ssl_mode();
    // Sent in the startup packet: a commit is acknowledged only once flushed, whatever the database's or
    // role's default says (an acknowledged audit row must survive a crash).
    let options = options.options([("synchronous_commit", "on")]);
    Ok((options, PgTls { mode, root_cert }))
}

impl PgTls {
    fn mode_name(&self) -> &'static str {
        match self.mode {
            PgSslMode::Disable => "disable",
            PgSslMode::Allow => "allow",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }

    /// The connect error, naming the sslmode and, where the cause is known, what to change.
    fn connect_error(&self, url: &str, error: &sqlx::Error) -> DbError {
        let mode = self.mode_name();
        let roots = match &self.root_cert {
            Some(root) => format!("sslrootcert={root}"),
            None => "sqlx's bundled public roots (no sslrootcert)".to_owned(),
        };
        let hint = match error {
            sqlx::Error::Database(db)
                if db.code().as_deref() == Some("28000") && db.message().contains("no encryption") =>
            {
                Some(format!(
                    "the server accepts only TLS connections: add sslmode=verify-full&sslrootcert=<its CA> to \
                     PHR_DATABASE_URL (or sslmode=require to encrypt without verifying) instead of sslmode={mode}"
                ))
            }
            sqlx::Error::Tls(inner) if inner.to_string().contains("server does not support TLS") => Some(format!(
                "the server has TLS turned off (ssl=off); sslmode={mode} needs it: enable ssl on the server, or \
                 use sslmode=prefer/disable only on a network you trust"
            )),
            _ => match rustls_certificate_error(error) {
                Some(rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature) => {
                    Some(format!(
                        "the server's certificate is not issued by a CA in {roots}: set sslrootcert in \
                         PHR_DATABASE_URL to the PEM file of the CA that signed it (for RDS, the region's CA bundle)"
                    ))
                }
                Some(
                    rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
                ) => Some(
                    "the certificate is not issued for the host in PHR_DATABASE_URL: connect by a name it lists \
                     (the endpoint's DNS name, not an IP address), or use sslmode=verify-ca to check the CA only"
                        .to_owned(),
                ),
                _ => None,
            },
        };
        let mut problem = error_chain(error);
        if let Some(hint) = hint {
            problem.push_str(" — ");
            problem.push_str(&hint);
        }
        DbError::Connect { target: format!("{}, sslmode={mode}", redact_url(url)), problem }
    }
}

/// The rustls certificate verdict inside a connect error, if the handshake failed on the certificate.
fn rustls_certificate_error(error: &sqlx::Error) -> Option<&rustls::CertificateError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let found = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| e.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(certificate)) = found {
            return Some(certificate);
        }
        current = e.source();
    }
    None
}

/// Every message of an error chain once, joined with `: `. sqlx's errors repeat their source in their own
/// message, so printing the plain chain would say the same thing once per level.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

/// A database URL with any password replaced, safe for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:<MASKED>{}", &url[..scheme_end + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_as_libpq_does() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let url = format!("postgres://u@h/db?sslmode=require&sslrootcert={}", ca.display());
        let (options, tls) = postgres_options(&url).unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyCa));
        assert_eq!(tls.root_cert, Some(ca.display().to_string()));
        let url = format!("postgres://u@h/db?sslmode=verify-full&sslrootcert={}", ca.display());
        assert!(matches!(postgres_options(&url).unwrap().0.get_ssl_mode(), PgSslMode::VerifyFull));
        let (options, _) = postgres_options("postgres://u@h/db?sslmode=require").unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::Require));
    }

    #[test]
    fn a_bad_sslmode_is_named_once() {
        let e = postgres_options("postgres://u:pw@h/db?sslmode=verify_full").unwrap_err().to_string();
        assert!(
            e.starts_with("PHR_DATABASE_URL (postgres://u:<MASKED>@h/db?sslmode=verify_full): cannot connect: "),
            "{e}"
        );
        assert!(e.contains("verify_full") && e.contains("sslmode takes disable"), "{e}");
        assert_eq!(e.matches("error with configuration").count(), 1, "{e}");
    }

    #[test]
    fn an_unreadable_root_certificate_is_named_before_connecting() {
        let e = postgres_options("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot connect: sslrootcert=/nonexistent/ca.pem: cannot read it: "), "{e}");
    }

    #[test]
    fn error_chain_says_each_message_once() {
        let tls = sqlx::Error::Tls("server does not support TLS".into());
        assert_eq!(
            error_chain(&tls),
            "error occurred while attempting to establish a TLS connection: server does not support TLS"
        );
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:<MASKED>@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:phr.db"), "sqlite:phr.db");
    }

    #[tokio::test]
    async fn sqlite_dry_run_leaves_nothing_and_real_run_applies() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("phr.db").display());
        let db = Db::connect(&url).await.unwrap();

        let dry = db.migrate_dry_run().await.unwrap();
        assert!(!dry.is_empty());
        assert_eq!(db.pending_migrations().await.unwrap().len(), dry.len(), "dry run must not commit");

        let applied = db.migrate().await.unwrap();
        assert_eq!(applied.len(), dry.len());
        assert!(db.pending_migrations().await.unwrap().is_empty());
        let ready = db.readiness().await.unwrap();
        assert_eq!(ready.schema_version, ready.expected_version);
    }
}
