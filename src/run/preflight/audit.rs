//! The audit checks of preflight: the database answers, and the SQL the run will read runs on it.
//!
//! `select 1` used to pass on a database without `d_audit_event`, and the run then recorded every audit
//! query as failed. Inside a run the template's own queries run once, with the time window set to an empty
//! range (`since` = `until` = now), so every table and column they read is checked and no rows are read; an
//! error names the SQL file. Without a template the built-in query checks `d_audit_event` and the columns
//! the shipped templates read.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::SecondsFormat;

use crate::audit::{AuditDb, masked_url};
use crate::evidence::CheckResult;
use crate::plan::Plan;

/// The built-in audit check: `d_audit_event` with the columns the shipped templates' queries read
/// (`run-templates/*/audit/*.sql`), returning no rows; portable between PostgreSQL and SQLite.
pub const DEFAULT_SCHEMA_SQL: &str = "SELECT trace_id, action, outcome FROM d_audit_event WHERE 1 = 0";

/// One SQL text that must run without error on the audit database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaQuery {
    /// What a failure names: the template's SQL file, or the built-in check.
    pub source: String,
    /// The SQL, every placeholder filled in.
    pub sql: String,
}

impl SchemaQuery {
    /// [`DEFAULT_SCHEMA_SQL`], named after what it checks.
    pub fn built_in() -> Self {
        Self {
            source: "the built-in check of d_audit_event (trace_id, action, outcome)".to_owned(),
            sql: DEFAULT_SCHEMA_SQL.to_owned(),
        }
    }
}

/// Each distinct audit query of the plan, its time window empty (`since` = `until` = now), named by its file.
pub(super) fn plan_queries(plan: &Plan) -> Vec<SchemaQuery> {
    let now = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let files: Vec<(&str, String)> = plan
        .template
        .phases
        .iter()
        .flat_map(|phase| &phase.audit_queries)
        .map(|query| (query.name.as_str(), query.file.display().to_string()))
        .collect();
    let mut seen = BTreeSet::new();
    plan.phases
        .iter()
        .flat_map(|phase| &phase.audit_queries)
        .filter(|query| seen.insert(query.sql.clone()))
        .map(|query| {
            let file = files.iter().find(|(name, _)| *name == query.name).map(|(_, file)| file.clone());
            SchemaQuery {
                source: file.unwrap_or_else(|| format!("audit query {}", query.name)),
                sql: query.sql.replace("{{since}}", &now).replace("{{until}}", &now),
            }
        })
        .collect()
}

/// `audit_db` (the database answers) and, when it does, `audit_schema` (every query runs).
pub(super) async fn checks(url: &str, queries: &[SchemaQuery]) -> Vec<CheckResult> {
    let started = Instant::now();
    let db = match AuditDb::connect(url).await {
        Ok(db) => db,
        Err(e) => return vec![CheckResult::new("audit_db", false, e.to_string())],
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let connected = CheckResult::new("audit_db", true, format!("{}: connected in {ms:.1} ms", masked_url(url)));
    if queries.is_empty() {
        let detail = "the template reads no audit table (no audit queries), so none was checked";
        return vec![connected, CheckResult::new("audit_schema", true, detail)];
    }
    // Queries that fail the same way (a missing table fails them all) are named together.
    let mut failures: Vec<(String, Vec<&str>)> = Vec::new();
    for query in queries {
        let Some(error) = db.query_text(&query.sql).await.error else { continue };
        let error = error.trim().trim_start_matches("error returned from database: ").to_owned();
        match failures.iter_mut().find(|(seen, _)| *seen == error) {
            Some((_, sources)) => sources.push(&query.source),
            None => failures.push((error, vec![&query.source])),
        }
    }
    let sources = |list: &[&str]| list.join(", ");
    if failures.is_empty() {
        let all: Vec<&str> = queries.iter().map(|q| q.source.as_str()).collect();
        let detail = format!("{} ran on an empty time window without error: {}", count(queries.len()), sources(&all));
        return vec![connected, CheckResult::new("audit_schema", true, detail)];
    }
    let failed: usize = failures.iter().map(|(_, list)| list.len()).sum();
    let reasons: Vec<String> = failures.iter().map(|(error, list)| format!("{error} (in {})", sources(list))).collect();
    let detail = format!(
        "{failed} of {} failed, so the run could not count its audit rows: {}; check that this is the server's \
         audit database (table d_audit_event) and that its migrations are applied",
        count(queries.len()),
        reasons.join("; ")
    );
    vec![connected, CheckResult::new("audit_schema", false, detail)]
}

fn count(queries: usize) -> String {
    if queries == 1 { "1 audit query".to_owned() } else { format!("{queries} audit queries") }
}
