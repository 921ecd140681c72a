//! Where a statement runs: an open transaction of either backend ([`DbTx`]), or, for statements that may
//! run either way, the pool or such a transaction ([`Target`]).
//!
//! A PHR call that changes data commits the change together with its audit rows, in the audit chain's
//! transaction (`audit::AuditTx`), so the queries that make such changes take that transaction instead of
//! the pool. [`with_tx!`] and [`with_target!`] expand one statement expression per backend (and per kind
//! of executor), as [`with_pool!`] does for pools, so each arm is type-checked against its own driver.

use sqlx::{Postgres, Sqlite, Transaction};

use crate::db::Db;

/// An open database transaction of either backend.
#[derive(Debug)]
pub enum DbTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs the same statement expression against whichever transaction `$tx` (a `&mut DbTx`) holds; `$conn`
/// is the connection inside it (a `&mut PgConnection` or `&mut SqliteConnection`).
///
/// `with_tx!(tx, |conn| sqlx::query("…").bind(x).execute(&mut *conn).await)`
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::dbtx::DbTx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::dbtx::DbTx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

/// The pool, or the transaction of the call that makes the change.
#[derive(Debug)]
pub enum Target<'a> {
    /// A statement of its own (autocommit).
    Pool(&'a Db),
    /// Part of an open transaction; commits or rolls back with it.
    Tx(&'a mut DbTx),
}

impl<'a> From<&'a Db> for Target<'a> {
    fn from(db: &'a Db) -> Self {
        Self::Pool(db)
    }
}

impl<'a> From<&'a mut DbTx> for Target<'a> {
    fn from(tx: &'a mut DbTx) -> Self {
        Self::Tx(tx)
    }
}

/// Runs one statement expression against whatever a [`Target`] holds; `$exec` is used exactly once.
///
/// `with_target!(target, |exec| sqlx::query("…").bind(x).execute(exec).await)`
#[macro_export]
macro_rules! with_target {
    ($target:expr, |$exec:ident| $body:expr) => {
        match $target {
            $crate::dbtx::Target::Pool($crate::db::Db::Postgres($exec)) => $body,
            $crate::dbtx::Target::Pool($crate::db::Db::Sqlite($exec)) => $body,
            $crate::dbtx::Target::Tx($crate::dbtx::DbTx::Postgres(tx)) => {
                let $exec = &mut **tx;
                $body
            }
            $crate::dbtx::Target::Tx($crate::dbtx::DbTx::Sqlite(tx)) => {
                let $exec = &mut **tx;
                $body
            }
        }
    };
}
