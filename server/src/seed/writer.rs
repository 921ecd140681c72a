//! Multi-row inserts for `seed`, on either backend, inside one transaction per batch.
//!
//! Seeding 100,000 patients per facility means millions of rows; one INSERT per row would take many minutes.
//! Rows are collected per table as [`Cell`]s and written as `INSERT ... VALUES (...), (...), ...` statements
//! sized to stay under both drivers' bind-parameter limits. The SQL text is built from this module's own
//! table and column names only; every value is a bound parameter.

use sqlx::{AssertSqlSafe, Postgres, Sqlite, Transaction};

use crate::db::Db;

/// Bind parameters per statement: far below SQLite's 32766 and PostgreSQL's 65535, and small enough that one
/// statement stays under sqlx's one-second slow-statement warning (which would log the whole statement).
const MAX_PARAMS: usize = 6_000;

/// One value of a seeded row, typed so PostgreSQL sees the column's type even for NULL.
#[derive(Debug, Clone)]
pub enum Cell {
    Text(Option<String>),
    Int(i64),
    Int32(i32),
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Self::Text(Some(value))
    }
}

impl From<Option<&str>> for Cell {
    fn from(value: Option<&str>) -> Self {
        Self::Text(value.map(str::to_owned))
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<i32> for Cell {
    fn from(value: i32) -> Self {
        Self::Int32(value)
    }
}

/// Rows waiting to be written to one table.
#[derive(Debug)]
pub struct TableRows {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
}

impl TableRows {
    pub fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        Self { table, columns, rows: Vec::new() }
    }

    /// Queues one row; `cells` must follow `columns`.
    pub fn push(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "row for {} has the wrong width", self.table);
        self.rows.push(cells);
    }
}

/// An open transaction on either backend.
pub enum SeedTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl SeedTx {
    pub async fn begin(db: &Db) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Db::Postgres(pool) => Self::Postgres(pool.begin().await?),
            Db::Sqlite(pool) => Self::Sqlite(pool.begin().await?),
        })
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.commit().await,
            Self::Sqlite(tx) => tx.commit().await,
        }
    }

    /// Writes every queued row of `rows` (in parameter-limited chunks) and empties it. `conflict` is appended to
    /// each statement, e.g. `ON CONFLICT DO NOTHING`.
    pub async fn insert(&mut self, rows: &mut TableRows, conflict: &str) -> Result<u64, sqlx::Error> {
        let width = rows.columns.len();
        let per_statement = (MAX_PARAMS / width).max(1);
        let mut written = 0;
        for chunk in rows.rows.chunks(per_statement) {
            let sql = insert_sql(rows.table, rows.columns, chunk.len(), conflict);
            written += match self {
                Self::Postgres(tx) => {
                    sqlx::query(AssertSqlSafe(sql)).bind_cells(chunk).execute(&mut **tx).await?.rows_affected()
                }
                Self::Sqlite(tx) => {
                    sqlx::query(AssertSqlSafe(sql)).bind_cells(chunk).execute(&mut **tx).await?.rows_affected()
                }
            };
        }
        rows.rows.clear();
        Ok(written)
    }
}

/// Binds every cell of `chunk` in order, for any backend whose argument types cover [`Cell`].
macro_rules! bind_cells {
    ($db:ty) => {
        impl BindCells for sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments> {
            fn bind_cells(mut self, chunk: &[Vec<Cell>]) -> Self {
                for cell in chunk.iter().flatten() {
                    self = match cell {
                        Cell::Text(value) => self.bind(value.clone()),
                        Cell::Int(value) => self.bind(*value),
                        Cell::Int32(value) => self.bind(*value),
                    };
                }
                self
            }
        }
    };
}

trait BindCells {
    fn bind_cells(self, chunk: &[Vec<Cell>]) -> Self;
}

bind_cells!(Postgres);
bind_cells!(Sqlite);

/// `INSERT INTO table (c1, c2) VALUES ($1, $2), ($3, $4) <conflict>`.
fn insert_sql(table: &str, columns: &[&str], rows: usize, conflict: &str) -> String {
    let width = columns.len();
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * width + column + 1).to_string());
        }
        sql.push(')');
    }
    if !conflict.is_empty() {
        sql.push(' ');
        sql.push_str(conflict);
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_parameters_row_by_row() {
        assert_eq!(
            insert_sql("t", &["a", "b"], 2, "ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
    }
}
