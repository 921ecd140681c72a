//! The check of one row against its chain so far: what `phr-server audit verify` applies to every row of the
//! table and connrun applies to the segment that holds a run's rows, so the two cannot disagree.
//!
//! A version-2 hash says only that some sealed column changed, not which one. So before recomputing it the
//! check looks at what can be told apart: the payload against `payload_hash`, the payload's copies of columns
//! (`action`, `status`, `traceId`) against the columns, the link to the chain's previous row, and the
//! version itself (a version-1 row after version-2 rows of its chain is a downgrade). Only what is left is
//! reported as "one of these columns".

use serde_json::Value;

use crate::seal::{self, StoredRow, column_text};

/// What a walk remembers of one chain.
#[derive(Debug, Default, Clone)]
pub struct ChainState {
    /// Rows of the chain walked so far (from its first row, or from a known count before a segment).
    pub rows: u64,
    /// The id and `event_hash` of the chain's previous row, if any.
    pub last: Option<(i64, String)>,
    /// Whether a version-2 row has been seen (a later version-1 row is a downgrade).
    pub sealed_all_columns: bool,
}

impl ChainState {
    /// The state just after `anchor`, the row before a segment, when `rows` rows of the chain (the anchor
    /// included) precede the segment: the anchor's own seal is checked by the caller with [`check`] and an
    /// unlinked state.
    pub fn after(anchor: &StoredRow, rows: u64) -> Self {
        Self { rows, last: Some((anchor.id, anchor.event_hash.clone())), sealed_all_columns: anchor.hash_version >= 2 }
    }

    /// Moves past a row that held.
    pub fn advance(&mut self, row: &StoredRow) {
        self.rows += 1;
        self.sealed_all_columns |= row.hash_version >= 2;
        self.last = Some((row.id, row.event_hash.clone()));
    }
}

/// Why a row does not hold: the column (as precisely as the checks can tell) and the problem in words.
pub type RowProblem = (String, String);

/// Checks one row against its chain so far: `(column, problem)` for the first thing that does not hold.
/// With `linked` false the link to the previous row is not checked (the first row of a segment).
pub fn check(state: &ChainState, row: &StoredRow, linked: bool) -> Result<(), RowProblem> {
    let fail = |column: &str, problem: String| Err((column.to_owned(), problem));
    if !matches!(row.hash_version, 1 | 2) {
        return fail("hash_version", format!("unknown hash version {}", row.hash_version));
    }
    if row.hash_version == 1 && state.sealed_all_columns {
        return fail(
            "hash_version",
            "version 1 after version-2 rows of the same chain: the row was downgraded to escape the column seal"
                .to_owned(),
        );
    }
    let payload = row.payload.as_deref().unwrap_or("");
    if seal::sha256_hex(payload.as_bytes()) != row.payload_hash {
        return fail("payload", "the payload does not match payload_hash (payload or payload_hash changed)".into());
    }
    if let Some((column, problem)) = copy_mismatch(row) {
        return fail(column, problem);
    }
    let previous = row.previous_hash.as_deref().unwrap_or("");
    match &state.last {
        Some((last_id, last_hash)) if linked && previous != last_hash => {
            return fail(
                "previous_hash",
                format!(
                    "does not match the event_hash of row {last_id}, the chain's row before it: rows between \
                     them were deleted, or rows were reordered or rewritten"
                ),
            );
        }
        None if linked && !previous.is_empty() => {
            return fail(
                "previous_hash",
                "the chain's first row links to an earlier row: the rows before it were deleted".to_owned(),
            );
        }
        _ => {}
    }
    if row.expected_event_hash().as_deref() != Some(row.event_hash.as_str()) {
        let columns = if row.hash_version == 1 {
            "event_time, actor_id or event_hash (the columns version 1 seals)"
        } else {
            "one of id, chain_id, event_time, actor_id, actor_display_name, actor_role, resource, patient_id, \
             request_id, ip_address, user_agent, run_id or event_hash (version 2 seals every column; the \
             others were checked one by one)"
        };
        return fail("event_hash", format!("the hash does not match the row's columns: changed is {columns}"));
    }
    Ok(())
}

/// The first column whose copy in the payload disagrees with it: `action`, `outcome` (`status`),
/// `trace_id` (`traceId`). A copy the payload does not carry is not compared.
fn copy_mismatch(row: &StoredRow) -> Option<(&'static str, String)> {
    let Ok(Value::Object(payload)) = serde_json::from_str::<Value>(row.payload.as_deref()?) else {
        return None;
    };
    let copies: [(&str, &str, Option<&str>, usize); 3] = [
        ("action", "action", Some(row.action.as_str()), 64),
        ("outcome", "status", Some(row.outcome.as_str()), 16),
        ("trace_id", "traceId", row.trace_id.as_deref(), 256),
    ];
    for (column, key, stored, width) in copies {
        let copied = match payload.get(key) {
            None => continue,
            Some(Value::Null) => None,
            Some(Value::String(text)) => Some(column_text(text, width).into_owned()),
            Some(other) => Some(other.to_string()),
        };
        if copied.as_deref() != stored {
            return Some((
                column,
                format!("the column holds {stored:?} but the payload's {key} says {:?}", copied.as_deref()),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(payload: &str) -> StoredRow {
        let mut row = StoredRow {
            id: 1,
            chain_id: "main".into(),
            hash_version: 2,
            event_time: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
            actor_id: None,
            actor_display_name: None,
            actor_role: None,
            action: "PHR_ALLERGY_TEXT".into(),
            outcome: "failed".into(),
            resource: None,
            patient_id: None,
            request_id: None,
            trace_id: Some("t1".into()),
            ip_address: None,
            user_agent: None,
            run_id: None,
            payload: Some(payload.into()),
            payload_hash: seal::sha256_hex(payload.as_bytes()),
            previous_hash: Some(String::new()),
            event_hash: String::new(),
        };
        row.event_hash = seal::v2(&row);
        row
    }

    const PAYLOAD: &str = r#"{"action":"PHR_ALLERGY_TEXT","status":"failed","traceId":"t1"}"#;

    #[test]
    fn an_intact_row_holds() {
        assert_eq!(check(&ChainState::default(), &row(PAYLOAD), true), Ok(()));
    }

    #[test]
    fn a_changed_column_with_a_payload_copy_is_named() {
        let mut changed = row(PAYLOAD);
        changed.action = "PHR_IMAGE_STREAM".into();
        assert_eq!(check(&ChainState::default(), &changed, true).unwrap_err().0, "action");
        let mut changed = row(PAYLOAD);
        changed.outcome = "success".into();
        assert_eq!(check(&ChainState::default(), &changed, true).unwrap_err().0, "outcome");
    }

    #[test]
    fn a_changed_column_without_a_copy_is_caught_by_the_seal() {
        let mut changed = row(PAYLOAD);
        changed.resource = Some("/elsewhere".into());
        let (column, problem) = check(&ChainState::default(), &changed, true).unwrap_err();
        assert_eq!(column, "event_hash");
        assert!(problem.contains("resource"), "{problem}");
    }

    #[test]
    fn a_version_1_row_after_version_2_rows_is_a_downgrade() {
        let state = ChainState { rows: 1, last: Some((1, "h".into())), sealed_all_columns: true };
        let mut downgraded = row(PAYLOAD);
        downgraded.hash_version = 1;
        assert_eq!(check(&state, &downgraded, true).unwrap_err().0, "hash_version");
    }

    #[test]
    fn an_unlinked_first_row_of_a_segment_is_checked_for_its_own_seal_only() {
        let mut first = row(PAYLOAD);
        first.previous_hash = Some("ab".repeat(32));
        first.event_hash = seal::v2(&first);
        assert!(check(&ChainState::default(), &first, true).is_err());
        assert_eq!(check(&ChainState::default(), &first, false), Ok(()));
    }
}
