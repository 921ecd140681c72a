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

/// The before/after/delta/expected counts of one phase. `expected` maps each action the phase's probes
/// declare to how many rows they should add (one per declaring probe).
pub fn phase_counts(phase: &str, expected: &BTreeMap<String, u64>, before: &Round, after: &Round) -> Vec<AuditCount> {
    let success = (before.has_outcome || after.has_outcome).then(|| "success".to_owned());
    let mut keys: BTreeSet<(String, Option<String>)> =
        before.counts.keys().chain(after.counts.keys()).cloned().collect();
    keys.extend(expected.keys().map(|action| (action.clone(), success.clone())));
    keys.into_iter()
        .map(|(action, outcome)| {
            let value = |round: &Round| {
                round.complete.then(|| round.counts.get(&(action.clone(), outcome.clone())).copied().unwrap_or(0))
            };
            let (before_count, after_count) = (value(before), value(after));
            let is_success = outcome.is_none() || outcome.as_deref() == Some("success");
            AuditCount {
                phase: phase.to_owned(),
                expected: if is_success { expected.get(&action).copied().unwrap_or(0) } else { 0 },
                delta: before_count.zip(after_count).map(|(b, a)| a as i64 - b as i64),
                before: before_count,
                after: after_count,
                action,
                outcome,
            }
        })
        .collect()
}
