//! Finding finished runs under `artifacts/` and reading their `status.json` back, verified.
//!
//! Every command that looks back at runs (diff, history, reports, archive) starts here, so that none of them
//! ever reads evidence that was changed after it was sealed: [`load_verified`] re-hashes the run folder
//! against `manifest.json` first and refuses a tampered run, naming the file. Only sealed folders (no leading
//! dot, a manifest present) count as runs; reservations and crashed runs are skipped.

use std::path::{Path, PathBuf};

use crate::evidence::limits;
use crate::evidence::runid::RunId;
use crate::evidence::status::{RunStatus, STATUS_SCHEMA_VERSION};
use crate::evidence::{self, EvidenceError, EvidenceLayout, MANIFEST_FILE, RunLocation};

/// Why a run could not be used as input.
#[derive(Debug, thiserror::Error)]
pub enum RunIndexError {
    /// The RUN_ID does not parse.
    #[error(transparent)]
    RunId(#[from] crate::evidence::runid::RunIdError),
    /// Folder or manifest problems (unknown run, unfinished run, unreadable files).
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// A file differs from the run's manifest: the evidence was changed after the run.
    #[error("run {run_id} was changed after it was sealed: {mismatch} (in {})", dir.display())]
    Tampered {
        /// The run.
        run_id: String,
        /// Its folder.
        dir: PathBuf,
        /// The first file that differs, and how.
        mismatch: evidence::Mismatch,
    },
    /// `status.json` is not valid JSON of the expected shape.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `status.json` was written by a connrun whose layout this one cannot read.
    #[error("{}: status.json schema_version {found}, this connrun reads version {supported}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// The version this build understands.
        supported: u32,
    },
    /// No run matches a `--latest` style query.
    #[error("{0}")]
    NoSuchRun(String),
}

/// A finished run: where it is and what it recorded.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The sealed run folder.
    pub dir: PathBuf,
    /// Its `status.json`.
    pub status: RunStatus,
}

/// Reads a sealed folder's `status.json`, refusing other schema versions (checked before full parsing, so a
/// future layout gets a version message rather than a confusing field error).
pub fn read_status(dir: &Path) -> Result<RunStatus, RunIndexError> {
    let path = dir.join(EvidenceLayout::STATUS);
    let bytes = limits::read_bounded(&path, &limits::STATUS_FILE).map_err(|error| match error {
        limits::BoundedReadError::Io(source) => RunIndexError::from(EvidenceError::Io { path: path.clone(), source }),
        limits::BoundedReadError::TooLarge(message) => RunIndexError::Corrupt { path: path.clone(), message },
    })?;
    let raw: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| RunIndexError::Corrupt { path: path.clone(), message: e.to_string() })?;
    let found = raw.get("schema_version").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if found != u64::from(STATUS_SCHEMA_VERSION) {
        return Err(RunIndexError::Schema { path, found, supported: STATUS_SCHEMA_VERSION });
    }
    serde_json::from_value(raw).map_err(|e| RunIndexError::Corrupt { path, message: e.to_string() })
}

/// Verifies a sealed folder against its manifest, then reads its status.
pub fn load_verified_dir(dir: &Path) -> Result<LoadedRun, RunIndexError> {
    let report = evidence::verify_dir(dir)?;
    if let Some(mismatch) = report.first_mismatch {
        let run_id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Err(RunIndexError::Tampered { run_id, dir: dir.to_owned(), mismatch });
    }
    Ok(LoadedRun { dir: dir.to_owned(), status: read_status(dir)? })
}

/// Finds a sealed run by RUN_ID in any suite, verifies it and reads its status.
pub fn load_verified(artifacts: &Path, run_id: &str) -> Result<LoadedRun, RunIndexError> {
    let id: RunId = run_id.parse()?;
    match evidence::locate(artifacts, &id)? {
        Some(RunLocation::Finished(dir)) => load_verified_dir(&dir),
        Some(RunLocation::Partial(path)) => Err(EvidenceError::Unfinished { run_id: id, path }.into()),
        None => Err(EvidenceError::NotFound { run_id: id, artifacts: artifacts.to_owned() }.into()),
    }
}

/// Every sealed run folder (with a `status.json`) under `artifacts/<suite>/`, unverified and unsorted.
pub fn finished_run_dirs(artifacts: &Path) -> Result<Vec<PathBuf>, RunIndexError> {
    let mut out = Vec::new();
    let suites = match std::fs::read_dir(artifacts) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(EvidenceError::Io { path: artifacts.to_owned(), source }.into()),
    };
    for suite in suites {
        let suite = suite.map_err(|source| EvidenceError::Io { path: artifacts.to_owned(), source })?.path();
        let Ok(runs) = std::fs::read_dir(&suite) else { continue };
        for run in runs.flatten() {
            let dir = run.path();
            let name = run.file_name().to_string_lossy().into_owned();
            let sealed = dir.join(MANIFEST_FILE).is_file() && dir.join(EvidenceLayout::STATUS).is_file();
            if sealed && name.parse::<RunId>().is_ok() {
                out.push(dir);
            }
        }
    }
    Ok(out)
}

/// Every finished run's status (not re-hashed: listing must stay cheap), oldest first by start time.
/// Runs whose status cannot be read are skipped with their error returned alongside.
pub fn all_runs(artifacts: &Path) -> Result<(Vec<LoadedRun>, Vec<RunIndexError>), RunIndexError> {
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for dir in finished_run_dirs(artifacts)? {
        match read_status(&dir) {
            Ok(status) => runs.push(LoadedRun { dir, status }),
            Err(error) => skipped.push(error),
        }
    }
    runs.sort_by(|a, b| (a.status.started_at, &a.status.run_id).cmp(&(b.status.started_at, &b.status.run_id)));
    Ok((runs, skipped))
}

/// The newest run and the run before it with the same template and target (both verified), for
/// `connrun diff --latest`. With `template`, the newest run of that template is used.
pub fn latest_pair(artifacts: &Path, template: Option<&str>) -> Result<(LoadedRun, LoadedRun), RunIndexError> {
    let (runs, _) = all_runs(artifacts)?;
    let newest = runs
        .iter()
        .rev()
        .find(|r| template.is_none_or(|t| r.status.template == t))
        .ok_or_else(|| RunIndexError::NoSuchRun(format!("no finished run under {}", artifacts.display())))?;
    let previous = runs
        .iter()
        .rev()
        .find(|r| {
            r.dir != newest.dir
                && r.status.started_at <= newest.status.started_at
                && r.status.template == newest.status.template
                && r.status.target == newest.status.target
        })
        .ok_or_else(|| {
            RunIndexError::NoSuchRun(format!(
                "{} is the only run of template {} against target {}; nothing to compare with",
                newest.status.run_id, newest.status.template, newest.status.target
            ))
        })?;
    Ok((load_verified_dir(&previous.dir)?, load_verified_dir(&newest.dir)?))
}
