//! Audit counting around a phase: the same queries before and after its probes, the rows tallied per
//! (action, outcome), and the before/after/delta/expected counts that make a delta belong to the phase.
//!
//! Every query and its result (or its error) is kept as SQL evidence (`audit/sql/*.sql`), so a reviewer can
//! re-run it with psql. A query that fails is part of the round's result, never an error of the run.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{AuditDb, QueryOutcome};
use crate::evidence::status::AuditCount;
use crate::evidence::{EventLog, EvidenceError};

/// An audit query whose template variables are substituted; `{{since}}`/`{{until}}` remain.
#[derive(Debug, Clone)]
pub struct PlannedQuery {
    /// File stem, e.g. `PHR_IMAGE_STREAM`.
    pub name: String,
    /// The SQL text.
    pub sql: String,
}

/// One phase's queries, as the counting needs them.
#[derive(Debug, Clone, Copy)]
pub struct PhaseQueries<'a> {
    /// Phase id, e.g. `C`.
    pub id: &'a str,
    /// The queries, in template order.
    pub queries: &'a [PlannedQuery],
}

/// Counts per (action, outcome) from one round of a phase's queries, plus the errors met.
#[derive(Debug, Default)]
pub struct Round {
    /// Rows per (action, outcome); outcome is None when a query does not group by it.
    counts: BTreeMap<(String, Option<String>), u64>,
    /// True when any query reported an outcome column.
    has_outcome: bool,
    /// Query failures (connection or SQL), recorded as text.
    pub errors: Vec<String>,
    /// True when every query ran without error.
    complete: bool,
}

/// Runs one round (`when` is `before` or `after`) of a phase's queries, appends each query with its result
/// to the phase's SQL evidence, and tallies the rows. A query that fails is recorded in the round, not
/// returned as an error: only an event log that cannot be written is.
pub async fn run_round(
    db: Option<&AuditDb>,
    phase: &PhaseQueries<'_>,
    since: DateTime<Utc>,
    when: &str,
    sql: &mut SqlEvidence,
    log: &EventLog,
) -> Result<Round, EvidenceError> {
    let mut round = Round { complete: true, ..Round::default() };
    let Some(db) = db else {
        round.complete = false;
        return Ok(round);
    };
    for query in phase.queries {
        let until = Utc::now();
        let text = query
            .sql
            .replace("{{since}}", &since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .replace("{{until}}", &until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let outcome = db.query_text(&text).await;
        log.event(
            "audit_query",
            json!({ "phase": phase.id, "query": query.name, "when": when, "rows": outcome.rows.len(), "error": outcome.error }),
        )?;
        sql.record(phase.id, &query.name, sql_section(&text, &outcome, when, until));
        if let Some(error) = &outcome.error {
            round.complete = false;
            round.errors.push(format!("Phase-{} {} ({when}): {error}", phase.id, query.name));
            continue;
        }
        tally(&outcome, &mut round);
    }
    Ok(round)
}

/// The `audit/sql/<name>.sql` files of a run: each query's SQL and result, round by round.
#[derive(Debug, Default)]
pub struct SqlEvidence {
    /// Query names used by more than one phase: their files get the phase in the name.
    shared: BTreeSet<String>,
    /// File stem → text so far.
    files: BTreeMap<String, String>,
}

impl SqlEvidence {
    /// Evidence for a run whose phases use these query lists (one slice per phase, in order).
    pub fn new<'a>(phases: impl IntoIterator<Item = &'a [PlannedQuery]>) -> Self {
        let mut seen = BTreeSet::new();
        let mut shared = BTreeSet::new();
        for queries in phases {
            let names: BTreeSet<&String> = queries.iter().map(|q| &q.name).collect();
            for name in names {
                if !seen.insert(name.clone()) {
                    shared.insert(name.clone());
                }
            }
        }
        Self { shared, files: BTreeMap::new() }
    }

    fn record(&mut self, phase: &str, name: &str, section: String) {
        let key = if self.shared.contains(name) { format!("Phase-{phase}_{name}") } else { name.to_owned() };
        self.files
            .entry(key)
            .or_insert_with(|| format!("-- connrun audit query `{name}` (Phase-{phase})\n"))
            .push_str(&section);
    }

    /// `(file stem, text)` of every file, in name order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn sql_section(sql: &str, outcome: &QueryOutcome, when: &str, ran_at: DateTime<Utc>) -> String {
    let result = match &outcome.error {
        Some(error) => format!("ERROR: {error}\n"),
        None => outcome.psql_table(),
    };
    format!(
        "\n-- {when} the phase: ran at {} ({:.1} ms), {} rows\n{}\n/*\n{}*/\n",
        ran_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        outcome.elapsed_ms,
        outcome.rows.len(),
        sql.trim_end(),
        result.replace("*/", "* /")
    )
}

/// Adds a query's rows to the round: columns `action`, optional `outcome`, and `count` (or the last column).
fn tally(outcome: &QueryOutcome, round: &mut Round) {
    let column = |name: &str| outcome.columns.iter().position(|c| c.eq_ignore_ascii_case(name));
    let Some(action) = column("action") else { return };
    let outcome_column = column("outcome");
    let count_column = column("count").unwrap_or(outcome.columns.len().saturating_sub(1));
    round.has_outcome |= outcome_column.is_some();
    for row in &outcome.rows {
        let Some(Some(action)) = row.get(action) else { continue };
        let result = outcome_column.and_then(|i| row.get(i).cloned().flatten());
        let count = row.get(count_column).cloned().flatten().and_then(|c| c.trim().parse::<u64>().ok()).unwrap_or(0);
        let slot = round.counts.entry((action.clone(), result)).or_default();
        *slot = (*slot).max(count);
    }
}

/// An expected audit action as a template writes it: `PHR_IMAGE_STREAM` (a `success` row) or
/// `PHR_EXPORT_ARTIFACT:failed` (a row of that outcome), split into (action, outcome).
pub fn expected_key(declared: &str) -> (String, String) {
    match declared.split_once(':') {
        Some((action, outcome)) => (action.to_owned(), outcome.to_owned()),
        None => (declared.to_owned(), "success".to_owned()),
    }
}

/// The before/after/delta/expected counts of one phase. `expected` maps each (action, outcome) the
/// phase's probes declare to how many rows they should add. When the queries do not group by outcome,
/// only success expectations apply (the rows cannot be told apart).
pub fn phase_counts(
    phase: &str,
    expected: &BTreeMap<(String, String), u64>,
    before: &Round,
    after: &Round,
) -> Vec<AuditCount> {
    let grouped = before.has_outcome || after.has_outcome;
    let mut keys: BTreeSet<(String, Option<String>)> =
        before.counts.keys().chain(after.counts.keys()).cloned().collect();
    for (action, outcome) in expected.keys() {
        if grouped {
            keys.insert((action.clone(), Some(outcome.clone())));
        } else if outcome == "success" {
            keys.insert((action.clone(), None));
        }
    }
    keys.into_iter()
        .map(|(action, outcome)| {
            let value = |round: &Round| {
                round.complete.then(|| round.counts.get(&(action.clone(), outcome.clone())).copied().unwrap_or(0))
            };
            let (before_count, after_count) = (value(before), value(after));
            let key = (action.clone(), outcome.clone().unwrap_or_else(|| "success".to_owned()));
            AuditCount {
                phase: phase.to_owned(),
                expected: expected.get(&key).copied().unwrap_or(0),
                delta: before_count.zip(after_count).map(|(b, a)| a as i64 - b as i64),
                before: before_count,
                after: after_count,
                action,
                outcome,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(counts: &[((&str, &str), u64)]) -> Round {
        Round {
            counts: counts.iter().map(|((a, o), n)| ((a.to_string(), Some(o.to_string())), *n)).collect(),
            has_outcome: true,
            errors: Vec::new(),
            complete: true,
        }
    }

    #[test]
    fn declared_outcomes_are_expected_per_outcome() {
        assert_eq!(expected_key("PHR_IMAGE_STREAM"), ("PHR_IMAGE_STREAM".to_owned(), "success".to_owned()));
        assert_eq!(expected_key("PHR_EXPORT_ARTIFACT:failed"), ("PHR_EXPORT_ARTIFACT".to_owned(), "failed".to_owned()));
        let expected = BTreeMap::from([(expected_key("PHR_EXPORT_ARTIFACT:failed"), 1)]);
        let before = round(&[(("PHR_EXPORT_ARTIFACT", "success"), 1)]);
        let after = round(&[(("PHR_EXPORT_ARTIFACT", "success"), 1), (("PHR_EXPORT_ARTIFACT", "failed"), 1)]);
        let counts = phase_counts("F4", &expected, &before, &after);
        let failed = counts.iter().find(|c| c.outcome.as_deref() == Some("failed")).expect("failed row");
        assert_eq!((failed.delta, failed.expected, failed.finding()), (Some(1), 1, None));
        assert!(counts.iter().all(|c| c.finding().is_none()), "{counts:?}");
    }

    #[test]
    fn a_round_that_did_not_complete_counts_nothing() {
        let expected = BTreeMap::from([(expected_key("PHR_IMAGE_STREAM"), 1)]);
        let failed = Round { complete: false, errors: vec!["refused".to_owned()], ..Round::default() };
        let counts = phase_counts("D", &expected, &failed, &failed);
        assert_eq!(counts.len(), 1);
        assert_eq!((counts[0].before, counts[0].delta), (None, None));
        assert!(counts[0].finding().is_some());
    }
}
