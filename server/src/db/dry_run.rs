//! `phr-server migrate --dry-run`: the pending migrations applied inside one transaction and rolled back, the
//! BEGIN…ROLLBACK routine of the operations logs, leaving nothing behind.
//!
//! Nothing means nothing: not the migrations' tables, not sqlx's `_sqlx_migrations` bookkeeping table (it is
//! created, read and dropped inside the same transaction), and on SQLite not even the database file. A
//! missing SQLite file is not created: the migrations are tried on an empty in-memory database instead, which
//! is exactly what the real run would start from; an existing one is opened as it is, without changing its
//! journal mode. Both backends have transactional DDL, so the statements run are exactly the real run's.

use std::str::FromStr;

use sqlx::Acquire;
use sqlx::migrate::Migrate;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::{AppliedMigration, Db, DbError, error_chain, redact_url};

/// What a dry run did.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// `postgres` or `sqlite`.
    pub backend: &'static str,
    /// The migrations applied inside the transaction before it was rolled back, oldest first.
    pub applied: Vec<AppliedMigration>,
    /// Set when the SQLite file did not exist and an in-memory database stood in for it.
    pub note: Option<String>,
}

/// Opens the database `url` names without creating anything, and runs the dry run on it.
pub async fn migrate_dry_run(url: &str) -> Result<DryRun, DbError> {
    let (db, note) = match url.strip_prefix("sqlite:") {
        Some(rest) => open_sqlite_as_is(url, rest).await?,
        None => (Db::connect(url).await?, None),
    };
    let applied = db.migrate_dry_run().await;
    db.close().await;
    Ok(DryRun { backend: db.backend(), applied: applied?, note })
}

/// An existing SQLite file as it is (no folder, no file, no journal-mode change), or an empty in-memory
/// database when there is no file.
async fn open_sqlite_as_is(url: &str, rest: &str) -> Result<(Db, Option<String>), DbError> {
    let path = rest.trim_start_matches("//").split('?').next().unwrap_or_default();
    let exists = path.is_empty() || path == ":memory:" || std::path::Path::new(path).exists();
    let (options, note) = if exists {
        (SqliteConnectOptions::from_str(url), None)
    } else {
        let note = format!("{path} does not exist (not created): the migrations ran on an empty in-memory database");
        (SqliteConnectOptions::from_str("sqlite::memory:"), Some(note))
    };
    let connect_error = |e: &sqlx::Error| DbError::Connect { target: redact_url(url), problem: error_chain(e) };
    let options = options.map_err(|e| connect_error(&e))?.create_if_missing(false).foreign_keys(true);
    let pool =
        SqlitePoolOptions::new().max_connections(1).connect_with(options).await.map_err(|e| connect_error(&e))?;
    Ok((Db::Sqlite(pool), note))
}

impl Db {
    /// In one transaction: make sure of the bookkeeping table, read what is applied, apply the rest, roll back.
    pub async fn migrate_dry_run(&self) -> Result<Vec<AppliedMigration>, DbError> {
        let migrator = self.migrator();
        with_pool!(self, |pool| {
            let mut conn = pool.acquire().await?;
            let mut tx = conn.begin().await?;
            tx.ensure_migrations_table(&migrator.table_name).await?;
            let done: Vec<i64> =
                tx.list_applied_migrations(&migrator.table_name).await?.into_iter().map(|m| m.version).collect();
            let mut applied = Vec::new();
            for migration in
                migrator.iter().filter(|m| m.migration_type.is_up_migration() && !done.contains(&m.version))
            {
                sqlx::raw_sql(migration.sql.as_ref()).execute(&mut *tx).await?;
                applied.push(AppliedMigration {
                    version: migration.version,
                    description: migration.description.to_string(),
                });
            }
            tx.rollback().await?;
            Ok::<_, DbError>(applied)
        })
    }
}
