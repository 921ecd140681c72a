//! Comparing a walk of the table with signed checkpoints: which checkpoint the table no longer agrees with,
//! and how.
//!
//! The walk (the server's `audit verify`, or connrun over a run's segment) reports every row that held, in
//! id order, with the number of rows of its chain so far. Each checkpoint names a row id, its hash and the
//! chain's row count up to it. At that row the two must agree: a different count means rows were deleted
//! (or inserted) and the rest re-hashed; the same count with a different hash means rows were rewritten and
//! re-hashed. A checkpointed id the walk passes without meeting means that row is gone while the chain goes
//! on; one beyond the chain's last row means the tail was cut off.

use std::collections::{BTreeMap, VecDeque};

use crate::checkpoint::Checkpoint;

/// A checkpoint to hold the walk to, and where it came from (a file or object name, or a URL).
#[derive(Debug, Clone)]
pub struct Expected {
    /// Where the document was read, for the report.
    pub source: String,
    /// The signed (and already verified) checkpoint.
    pub checkpoint: Checkpoint,
}

/// How the table disagrees with a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// The document's signature does not verify with the public key.
    BadSignature,
    /// Same row count, different hash at the checkpointed row: rows rewritten and re-hashed.
    Rewritten,
    /// The chain ends before the checkpointed row: its tail was deleted.
    Truncated,
    /// A different row count up to the checkpointed row, or that row is gone: rows deleted.
    RowsDeleted,
}

impl FindingKind {
    /// The word the reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadSignature => "bad signature",
            Self::Rewritten => "chain rewritten",
            Self::Truncated => "tail truncated",
            Self::RowsDeleted => "rows deleted",
        }
    }
}

/// One disagreement, naming the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The checkpoint's file, object or URL.
    pub source: String,
    /// What kind of tampering it shows.
    pub kind: FindingKind,
    /// The row and values, in words.
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "checkpoint {}: {}: {}", self.source, self.kind.as_str(), self.detail)
    }
}

/// Follows a walk and compares it with checkpoints that lie within the walked range.
#[derive(Debug, Default)]
pub struct CheckpointWatch {
    /// Per chain, the checkpoints not yet met, by id.
    pending: BTreeMap<String, VecDeque<Expected>>,
    /// Per chain, the last row walked and the chain's row count there.
    ends: BTreeMap<String, (i64, u64)>,
    /// Checkpoints met and agreed with.
    matched: usize,
    /// Disagreements so far.
    findings: Vec<Finding>,
}

impl CheckpointWatch {
    /// Watches for `checkpoints` (any order).
    pub fn new(mut checkpoints: Vec<Expected>) -> Self {
        checkpoints.sort_by_key(|e| e.checkpoint.last_id);
        let mut pending: BTreeMap<String, VecDeque<Expected>> = BTreeMap::new();
        for expected in checkpoints {
            pending.entry(expected.checkpoint.chain_id.clone()).or_default().push_back(expected);
        }
        Self { pending, ..Self::default() }
    }

    /// Records a document whose signature did not verify (it is not held against the table).
    pub fn bad_signature(&mut self, source: String, problem: String) {
        self.findings.push(Finding { source, kind: FindingKind::BadSignature, detail: problem });
    }

    /// A row that held, in id order, with its chain's row count including it.
    pub fn row(&mut self, chain_id: &str, id: i64, event_hash: &str, rows: u64) {
        self.ends.insert(chain_id.to_owned(), (id, rows));
        let Some(queue) = self.pending.get_mut(chain_id) else { return };
        while let Some(front) = queue.front() {
            let cp = &front.checkpoint;
            let finding = |kind, detail| Finding { source: front.source.clone(), kind, detail };
            let found = if cp.last_id < id {
                Some(finding(
                    FindingKind::RowsDeleted,
                    format!(
                        "row {} (chain {:?}), the checkpoint's head, is gone; row {id} follows",
                        cp.last_id, cp.chain_id
                    ),
                ))
            } else if cp.last_id > id {
                break;
            } else if cp.rows != rows {
                Some(finding(
                    FindingKind::RowsDeleted,
                    format!(
                        "chain {:?} has {rows} rows up to row {id}, the checkpoint signed {}: rows were deleted \
                         (or inserted) and the rest re-hashed",
                        cp.chain_id, cp.rows
                    ),
                ))
            } else if cp.event_hash != event_hash {
                Some(finding(
                    FindingKind::Rewritten,
                    format!(
                        "row {id} (chain {:?}) has event_hash {event_hash}, the checkpoint signed {}: rows up to \
                         it were rewritten and re-hashed",
                        cp.chain_id, cp.event_hash
                    ),
                ))
            } else {
                None
            };
            match found {
                Some(finding) => self.findings.push(finding),
                None => self.matched += 1,
            }
            queue.pop_front();
        }
    }

    /// Ends the watch. After a complete walk (`complete`: every row up to the chain's end was walked and held)
    /// a checkpoint not yet met lies beyond its chain's end: the tail was cut off. After a walk that stopped
    /// at a broken row nothing more is claimed.
    pub fn finish(mut self, complete: bool) -> (usize, Vec<Finding>) {
        if complete {
            for (chain, queue) in std::mem::take(&mut self.pending) {
                let end = self.ends.get(&chain).copied();
                for expected in queue {
                    let cp = &expected.checkpoint;
                    let ends = match end {
                        Some((id, rows)) => format!("ends at row {id} ({rows} rows)"),
                        None => "has no rows".to_owned(),
                    };
                    self.findings.push(Finding {
                        source: expected.source.clone(),
                        kind: FindingKind::Truncated,
                        detail: format!(
                            "the checkpoint names row {} ({} rows) but chain {chain:?} {ends}: its tail was deleted",
                            cp.last_id, cp.rows
                        ),
                    });
                }
            }
        }
        (self.matched, self.findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(last_id: i64, rows: u64, hash: &str) -> Expected {
        Expected {
            source: format!("cp-{last_id}"),
            checkpoint: Checkpoint {
                chain_id: "main".into(),
                event_hash: hash.into(),
                format: crate::checkpoint::FORMAT.into(),
                key_id: "k".into(),
                last_id,
                rows,
                signed_at: "t".into(),
            },
        }
    }

    fn walk(rows: &[(i64, &str)], checkpoints: Vec<Expected>) -> (usize, Vec<FindingKind>) {
        let mut watch = CheckpointWatch::new(checkpoints);
        for (index, (id, hash)) in rows.iter().enumerate() {
            watch.row("main", *id, hash, index as u64 + 1);
        }
        let (matched, findings) = watch.finish(true);
        (matched, findings.into_iter().map(|f| f.kind).collect())
    }

    #[test]
    fn each_kind_of_tampering_is_told_apart() {
        let table = [(1, "a"), (2, "b"), (3, "c")];
        assert_eq!(walk(&table, vec![expect(2, 2, "b"), expect(3, 3, "c")]), (2, vec![]));
        assert_eq!(walk(&table, vec![expect(3, 3, "x")]), (0, vec![FindingKind::Rewritten]));
        assert_eq!(walk(&table[..2], vec![expect(3, 3, "c")]), (0, vec![FindingKind::Truncated]));
        assert_eq!(walk(&[(1, "a"), (3, "c2")], vec![expect(3, 3, "c")]), (0, vec![FindingKind::RowsDeleted]));
        assert_eq!(walk(&[(1, "a"), (3, "c")], vec![expect(2, 2, "b")]), (0, vec![FindingKind::RowsDeleted]));
    }
}
