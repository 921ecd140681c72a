//! Audit pulls (HARNESS.md §6): SQL against the target's audit database, results as psql-like text tables.
//!
//! Operators used to run `psql -c "select ... from d_audit_event ..."` and paste screenshots. The harness
//! runs the same SQL files and stores the result as the text psql would print, whatever the column types:
//! PostgreSQL through tokio-postgres' simple-query protocol (the server sends every value as text, exactly
//! what psql shows), SQLite (the embedded default) through sqlx with every storage class rendered as text.
//! A failing query is recorded as a [`QueryOutcome`] with its error; it never aborts the run.
//!
//! The folder owns audit pulls and the before/after counting around a phase (`counting.rs`). It imports only
//! [`crate::evidence`] (counts, the event log); the orchestrator calls it, reports read its counts back.

pub mod chain;
pub mod counting;
mod table;

use std::str::FromStr;
use std::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Column as _, Executor as _, Row as _, SqlSafeStr as _, TypeInfo as _, ValueRef as _};
use tokio::task::JoinHandle;
use tokio_postgres::SimpleQueryMessage;

/// A connection to the audit database: PostgreSQL or SQLite, chosen by URL scheme.
pub struct AuditDb {
    /// The connected backend.
    backend: Backend,
}

enum Backend {
    /// tokio-postgres over one connection.
    Postgres {
        /// Sends the queries.
        client: tokio_postgres::Client,
        /// Runs the connection; aborted when the db is dropped.
        driver: JoinHandle<()>,
    },
    /// A small read-only pool on the SQLite file.
    Sqlite(SqlitePool),
}

impl Drop for AuditDb {
    fn drop(&mut self) {
        if let Backend::Postgres { driver, .. } = &self.backend {
            driver.abort();
        }
    }
}

/// Why the audit database could not be reached; the URL is shown with its password masked.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused or could not be reached.
    #[error("audit database {url}: {problem}")]
    Connect {
        /// The URL, password masked.
        url: String,
        /// The driver's message.
        problem: String,
    },
    /// The URL is neither PostgreSQL nor SQLite.
    #[error("audit database URL {url}: unsupported scheme (expected postgres://, postgresql:// or sqlite:)")]
    Scheme {
        /// The URL, password masked.
        url: String,
    },
}

/// The result of one audit query, every value as text like psql prints it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryOutcome {
    /// Column names in order.
    pub columns: Vec<String>,
    /// Rows; `None` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// The database's error message, if the query failed.
    pub error: Option<String>,
    /// Wall time of the query.
    pub elapsed_ms: f64,
}

impl AuditDb {
    /// Connects by URL: `postgres://` / `postgresql://` (TLS as libpq reads `sslmode` and `sslrootcert`
    /// from the URL or `PGSSLMODE` / `PGSSLROOTCERT`, through [`pgtls`]) or `sqlite:` (opened read-only; a
    /// missing file is an error, never silently created).
    pub async fn connect(url: &str) -> Result<AuditDb, AuditError> {
        let connect_error = |problem: String| AuditError::Connect { url: masked_url(url), problem };
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (client, connection) = pgtls::connect(url).await.map_err(|e| connect_error(e.to_string()))?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            Backend::Postgres { client, driver }
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| connect_error(e.to_string()))?
                .read_only(true)
                .create_if_missing(false);
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            Backend::Sqlite(pool)
        } else {
            return Err(AuditError::Scheme { url: masked_url(url) });
        };
        Ok(AuditDb { backend })
    }

    /// Whether this is PostgreSQL (some SQL differs by backend).
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// Runs `sql` (parameters already substituted with [`sql_literal`]). For several statements, the last
    /// one that returns rows is the result.
    pub async fn query_text(&self, sql: &str) -> QueryOutcome {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Postgres { client, .. } => postgres_query(client, sql).await,
            Backend::Sqlite(pool) => sqlite_query(pool, sql).await,
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok((columns, rows)) => QueryOutcome { columns, rows, error: None, elapsed_ms },
            Err(error) => QueryOutcome { error: Some(error), elapsed_ms, ..QueryOutcome::default() },
        }
    }
}

type Table = (Vec<String>, Vec<Vec<Option<String>>>);

async fn postgres_query(client: &tokio_postgres::Client, sql: &str) -> Result<Table, String> {
    let messages = client.simple_query(sql).await.map_err(|e| pg_message(&e))?;
    let mut table: Table = (Vec::new(), Vec::new());
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                table = (columns.iter().map(|c| c.name().to_owned()).collect(), Vec::new());
            }
            SimpleQueryMessage::Row(row) => {
                table.1.push((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect());
            }
            _ => {}
        }
    }
    Ok(table)
}

async fn sqlite_query(pool: &SqlitePool, sql: &str) -> Result<Table, String> {
    let rows: Vec<SqliteRow> =
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).fetch_all(pool).await.map_err(|e| e.to_string())?;
    let Some(first) = rows.first() else {
        // No rows: ask the statement for its columns so the table still has a header.
        let described = pool.describe(AssertSqlSafe(sql.to_owned()).into_sql_str()).await;
        let columns = described.map(|d| d.columns().iter().map(|c| c.name().to_owned()).collect());
        return Ok((columns.unwrap_or_default(), Vec::new()));
    };
    let columns = first.columns().iter().map(|c| c.name().to_owned()).collect();
    let rows = rows.iter().map(|row| (0..row.len()).map(|i| sqlite_text(row, i)).collect()).collect();
    Ok((columns, rows))
}

/// Any SQLite value as text: numbers and text as SQLite prints them, blobs as psql prints bytea (`\x..`).
fn sqlite_text(row: &SqliteRow, index: usize) -> Option<String> {
    let raw = row.try_get_raw(index).ok()?;
    if raw.is_null() {
        return None;
    }
    let is_blob = raw.type_info().name() == "BLOB";
    if !is_blob && let Ok(text) = row.try_get_unchecked::<String, _>(index) {
        return Some(text);
    }
    row.try_get_unchecked::<Vec<u8>, _>(index).ok().map(|bytes| format!("\\x{}", hex::encode(bytes)))
}

/// The server's message (with detail and hint) rather than tokio-postgres' generic "db error".
fn pg_message(error: &tokio_postgres::Error) -> String {
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
        None => {
            let mut message = error.to_string();
            if let Some(source) = std::error::Error::source(error) {
                message.push_str(&format!(": {source}"));
            }
            message
        }
    }
}

/// The URL with its password masked, for error messages and evidence.
pub fn masked_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let password = if userinfo.contains(':') { ":<MASKED>" } else { "" };
            format!("{scheme}://{user}{password}@{host}{}", mask_password_param(tail))
        }
        None => format!("{scheme}://{authority}{}", mask_password_param(tail)),
    }
}

fn mask_password_param(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=<MASKED>"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// Quotes a value as an SQL string literal (`'` doubled), for substituting `{{run_id}}` and friends.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl QueryOutcome {
    /// The number of rows, the figure audit counts use.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// The result as an aligned text table with a `(N rows)` footer, like psql; an error as psql's
    /// `ERROR:` line.
    pub fn psql_table(&self) -> String {
        table::render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_url_hides_passwords_in_userinfo_and_query() {
        assert_eq!(masked_url("postgres://ops:pw@db:5432/audit"), "postgres://ops:<MASKED>@db:5432/audit");
        assert_eq!(
            masked_url("postgres://db/audit?user=a&password=pw"),
            "postgres://db/audit?user=a&password=<MASKED>"
        );
        assert_eq!(masked_url("postgres://ops@db/audit"), "postgres://ops@db/audit");
        assert_eq!(masked_url("sqlite:/tmp/a.db"), "sqlite:/tmp/a.db");
    }

    #[test]
    fn sql_literal_doubles_quotes() {
        assert_eq!(sql_literal("a'b"), "'a''b'");
    }
}
