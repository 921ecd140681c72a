//! The documents written at the end of a run from its status and its probe spool, without holding every
//! record in memory.
//!
//! `status.json`, the HAR and `junit.xml` list every probe: they are serialised straight into their files
//! while the records are read back from the spool one at a time, in template order. The Markdown documents
//! are rendered by tera from one context in memory, so a run of more than [`DOCUMENT_PROBES`] probes gives
//! them only the probes that are not Ready (at most that many), counted from every record, and each document
//! says so ([`Excerpt`]). A record the spool cannot give back stops the run with an error: no document is
//! sealed that leaves a probe out silently.

use std::borrow::Cow;

use crate::evidence::limits::DOCUMENT_PROBES;
use crate::evidence::spool::{self, Excerpt, ProbeSpool, SpooledProbes};
use crate::evidence::status::{AuditCounts, RunStatus, STATUS_SCHEMA_VERSION};
use crate::evidence::{EvidenceError, EvidenceLayout, RunFolder};
use crate::redact::Redactor;
use crate::report::Reports;

use super::RunError;

/// Writes everything derived from the status: status.json, preflight.json, audit/counts.json, the HAR,
/// junit.xml and the rendered Markdown. Returns the status with the probes its documents list, and the
/// excerpt note when those are not all of them.
pub(super) fn write(
    folder: &RunFolder,
    redactor: &Redactor,
    status: RunStatus<()>,
    spool: &ProbeSpool,
    reports: &Reports,
) -> Result<(RunStatus, Option<Excerpt>), RunError> {
    let (streamed, ()) = status.with_probes(SpooledProbes::new(spool));
    let written = write_json(folder, redactor, EvidenceLayout::STATUS, &streamed);
    if let Some(failure) = streamed.probes.take_failure() {
        return Err(EvidenceError::from(failure).into());
    }
    written?;
    write_json(folder, redactor, EvidenceLayout::PREFLIGHT, &streamed.preflight)?;
    let counts = AuditCounts {
        schema_version: STATUS_SCHEMA_VERSION,
        run_id: streamed.run_id.clone(),
        state: streamed.audit_state(),
        errors: streamed.audit_errors.clone(),
        counts: streamed.audit.clone(),
    };
    write_json(folder, redactor, EvidenceLayout::AUDIT_COUNTS, &counts)?;
    let mut har = folder.create_redacted(EvidenceLayout::HAR, redactor)?;
    let serverinfo = streamed.serverinfo.iter().map(|p| Ok(Cow::Borrowed(p)));
    let entries = serverinfo.chain(spool.records().map(|r| r.map(Cow::Owned)));
    crate::evidence::har::write_results(&mut har, &streamed.run_id, entries).map_err(|e| har.error(e.into()))?;
    har.finish()?;
    let mut junit = folder.create_redacted(EvidenceLayout::JUNIT, redactor)?;
    crate::evidence::junit::write_results(&mut junit, &streamed, || spool.records()).map_err(|e| junit.error(e))?;
    junit.finish()?;

    let (listed, excerpt) = spool::excerpt(spool, DOCUMENT_PROBES).map_err(EvidenceError::from)?;
    let (status, _) = streamed.with_probes(listed);
    let context = reports.excerpt_context(&status, excerpt.as_ref())?;
    for (name, path, _) in crate::report::DOCUMENTS {
        let mut file = folder.create_redacted(path, redactor)?;
        reports.render_to(name, &context, &mut file)?;
        file.finish()?;
    }
    Ok((status, excerpt))
}

/// Serialises `value` as pretty JSON into `path`, redacting on the way.
pub(super) fn write_json(
    folder: &RunFolder,
    redactor: &Redactor,
    path: &str,
    value: &impl serde::Serialize,
) -> Result<(), RunError> {
    let mut file = folder.create_redacted(path, redactor)?;
    serde_json::to_writer_pretty(&mut file, value).map_err(|e| file.error(e.into()))?;
    file.finish()?;
    Ok(())
}
