//! `phr-server audit verify`: walks every chain of `d_audit_event` and names the first row, and as far as the
//! formula allows the column, that does not hold; given signed checkpoints, also the checkpoints the table
//! no longer agrees with (rewritten, truncated, rows deleted).
//!
//! The check of each row is `auditchain::walk::check` (shared with connrun, which checks its run's segment
//! the same way); the comparison with checkpoints is `auditchain::watch`. Rows are streamed in id order with
//! one state per chain, so any number of chains is walked in one pass and memory does not grow with the table.

use std::collections::BTreeMap;

use auditchain::walk::{ChainState, check};
use auditchain::watch::{CheckpointWatch, Finding};
use futures::TryStreamExt;
use sqlx::AssertSqlSafe;

use super::AuditError;
use super::seal::{self, StoredRow};
use crate::db::Db;

/// The first row of the walk that does not hold, as `audit verify` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The row's id.
    pub id: i64,
    /// The chain the row claims to belong to.
    pub chain_id: String,
    /// The column (or columns) found to disagree, as precisely as the checks can tell.
    pub column: String,
    /// What disagrees with what, in words an operator can act on.
    pub problem: String,
}

impl std::fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "id {} (chain {:?}), column {}: {}", self.id, self.chain_id, self.column, self.problem)
    }
}

/// The head of one chain after the walk: what a checkpoint would sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain's name.
    pub chain_id: String,
    /// Rows walked in the chain (up to the first broken one).
    pub rows: u64,
    /// The id of the chain's newest row walked.
    pub last_id: i64,
    /// Its `event_hash`.
    pub last_hash: String,
}

/// The result of walking the whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows walked, over all chains (the broken one included).
    pub rows_checked: u64,
    /// The first row in id order that does not hold.
    pub first_broken: Option<BrokenLink>,
    /// Every chain seen, by name.
    pub chains: Vec<ChainHead>,
    /// Checkpoints met in the walk that agreed with the table.
    pub checkpoints_matched: usize,
    /// Checkpoints the table disagrees with, and documents whose signature did not verify.
    pub checkpoint_findings: Vec<Finding>,
}

impl VerifyReport {
    /// Whether nothing was found.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none() && self.checkpoint_findings.is_empty()
    }
}

/// Walks every row in id order, following each row's chain, and holds the walk to `watch`'s checkpoints.
pub async fn verify(db: &Db, mut watch: CheckpointWatch) -> Result<VerifyReport, AuditError> {
    let sql = format!("SELECT {} FROM d_audit_event ORDER BY id", seal::COLUMNS);
    let mut chains: BTreeMap<String, ChainState> = BTreeMap::new();
    let mut rows_checked = 0u64;
    let first_broken = with_pool!(db, |pool| {
        let mut rows = sqlx::query_as::<_, StoredRow>(AssertSqlSafe(sql.as_str())).fetch(pool);
        let mut broken = None;
        while let Some(row) = rows.try_next().await? {
            rows_checked += 1;
            let state = chains.entry(row.chain_id.clone()).or_default();
            if let Err((column, problem)) = check(state, &row, true) {
                broken = Some(BrokenLink { id: row.id, chain_id: row.chain_id.clone(), column, problem });
                break;
            }
            state.advance(&row);
            watch.row(&row.chain_id, row.id, &row.event_hash, state.rows);
        }
        Ok::<_, sqlx::Error>(broken)
    })?;
    let chains = chains
        .into_iter()
        .filter_map(|(chain_id, state)| {
            let (last_id, last_hash) = state.last?;
            Some(ChainHead { chain_id, rows: state.rows, last_id, last_hash })
        })
        .collect();
    let (checkpoints_matched, checkpoint_findings) = watch.finish(first_broken.is_none());
    Ok(VerifyReport { rows_checked, first_broken, chains, checkpoints_matched, checkpoint_findings })
}
