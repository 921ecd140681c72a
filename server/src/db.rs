//! One database handle for the two stores the server supports: PostgreSQL (production) and SQLite (the
//! embedded default), chosen by the scheme of `PHR_DATABASE_URL`.
//!
//! Queries are runtime SQL written once with `$N` placeholders, which both drivers accept; the
//! [`with_pool!`] macro expands a query expression once per backend so each arm is type-checked against its
//! own driver. Where the dialects really differ (row locking, advisory locks) the caller matches on [`Db`]
//! itself. Migrations are embedded per backend and applied at start-up; `migrate --dry-run` applies the
//! pending ones inside a transaction and rolls back, the BEGIN…ROLLBACK routine of the operations logs.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Acquire;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
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

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PHR_DATABASE_URL: unsupported scheme in {0:?} (expected postgres://, postgresql:// or sqlite:)")]
    UnsupportedUrl(String),
    #[error("PHR_DATABASE_URL: cannot connect: {0}")]
    Connect(#[source] sqlx::Error),
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
            let options = PgConnectOptions::from_str(url).map_err(DbError::Connect)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(DbError::Connect)?;
            Ok(Self::Postgres(pool))
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            create_parent_folder(rest)?;
            let options = SqliteConnectOptions::from_str(url)
                .map_err(DbError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(DbError::Connect)?;
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

    /// Applies every pending embedded migration and commits.
    pub async fn migrate(&self) -> Result<Vec<AppliedMigration>, DbError> {
        let pending = self.pending_migrations().await?;
        with_pool!(self, |pool| self.migrator().run(pool).await)?;
        Ok(pending)
    }

    /// Applies the pending migrations inside one transaction, then rolls it back.
    ///
    /// Both PostgreSQL and SQLite have transactional DDL, so the dry run exercises exactly the statements the
    /// real run would, and leaves nothing behind.
    pub async fn migrate_dry_run(&self) -> Result<Vec<AppliedMigration>, DbError> {
        let pending = self.pending_migrations().await?;
        let migrator = self.migrator();
        with_pool!(self, |pool| {
            let mut conn = pool.acquire().await?;
            let mut tx = conn.begin().await?;
            for migration in migrator.iter().filter(|m| pending.iter().any(|p| p.version == m.version)) {
                sqlx::raw_sql(migration.sql.as_ref()).execute(&mut *tx).await?;
            }
            tx.rollback().await?;
            Ok::<_, DbError>(())
        })?;
        Ok(pending)
    }

    /// Embedded migrations not yet recorded as applied.
    pub async fn pending_migrations(&self) -> Result<Vec<AppliedMigration>, DbError> {
        let migrator = self.migrator();
        let applied: Vec<i64> = with_pool!(self, |pool| {
            let mut conn = pool.acquire().await?;
            conn.ensure_migrations_table(&migrator.table_name).await?;
            conn.list_applied_migrations(&migrator.table_name).await?.into_iter().map(|m| m.version).collect()
        });
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
fn create_parent_folder(rest: &str) -> Result<(), DbError> {
    let path = rest.trim_start_matches("//").split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| DbError::Connect(sqlx::Error::Io(e)))
        }
        _ => Ok(()),
    }
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
