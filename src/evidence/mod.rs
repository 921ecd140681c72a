//! The run folder on disk (HARNESS.md §4): reserved, written while temporary, sealed, verified.
//!
//! A run lives in `artifacts/<suite>/.<RUN_ID>.partial/` from `connrun new` until it is complete; only then is
//! `manifest.json` (size and SHA-256 of every other file but the stat cache `manifest.stat`) written and the
//! folder renamed to `artifacts/<suite>/<RUN_ID>/`. So a folder without the leading dot is always a finished, sealed run, and a
//! crashed run never looks finished. A `.started` marker, created with `create_new`, makes sure a RUN_ID is run
//! at most once. `verify` re-hashes a sealed run and reports the first file that differs.
//!
//! The folder owns every file of a run and the records stored in them: the layout of HARNESS.md §4
//! ([`EvidenceLayout`], the only place a path is spelled), RUN_IDs, `status.json` and the probe and check
//! records, the HAR, JUnit and the event log. Everything else writes or reads through it; it imports only
//! [`crate::redact`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::redact::Redactor;
use runid::{AllocateError, RunId};

pub use event_log::EventLog;
pub use layout::EvidenceLayout;
pub use manifest_read::{parse_manifest, read_manifest};
pub use manifest_write::write_manifest;
pub use record::{CertFacts, CheckResult, FailedAttempt, Outcome, ProbeRecord, ProxyFacts, Timings, TlsFacts};
pub use redacted::RedactedFile;
pub use seal::{ReadCheck, VerifyReport, check_before_reading, check_read_files, verify_dir};
pub use seal_stat::SEAL_STAT_FILE;

/// The version of connrun, recorded in every run (`status.json`, `run.toml`, the HAR's creator).
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod chain;
pub mod curl;
mod event_log;
pub mod har;
pub mod junit;
mod layout;
pub mod limits;
mod manifest_read;
mod manifest_write;
pub mod record;
mod redacted;
pub mod runid;
mod seal;
mod seal_stat;
pub mod spool;
pub mod status;
pub mod text;
pub mod wording;

/// Name of the manifest file; written last.
pub const MANIFEST_FILE: &str = EvidenceLayout::MANIFEST;
/// Written by `connrun new` into the reserved folder: which template the RUN_ID was allocated for.
pub const RESERVATION_FILE: &str = EvidenceLayout::RESERVATION;
/// Created when a run starts; its presence means the RUN_ID was used (and maybe crashed).
pub const STARTED_MARKER: &str = EvidenceLayout::STARTED_MARKER;
/// Version of the manifest layout.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// What `connrun new` recorded about a reserved RUN_ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    /// The reserved id.
    pub run_id: RunId,
    /// Template folder name to run.
    pub template: String,
    /// Suite folder the run belongs to.
    pub suite: String,
    /// When it was reserved.
    pub reserved_at: DateTime<Utc>,
}

/// Why the evidence folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A file or folder operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// RUN_ID allocation failed.
    #[error(transparent)]
    Allocate(#[from] AllocateError),
    /// No folder exists for this RUN_ID.
    #[error("no run {run_id} under {} (allocate one with `connrun new <template>`)", artifacts.display())]
    NotFound {
        /// The id asked for.
        run_id: RunId,
        /// The artifacts root searched.
        artifacts: PathBuf,
    },
    /// The run was already started once (it finished, is running, or crashed); ids are never reused.
    #[error("run {run_id} was already started ({}); allocate a new RUN_ID with `connrun new`", path.display())]
    AlreadyStarted {
        /// The id.
        run_id: RunId,
        /// Its folder.
        path: PathBuf,
    },
    /// The run exists but is not finished (no manifest yet), so it cannot be verified.
    #[error("run {run_id} is not finished ({} is a temporary folder)", path.display())]
    Unfinished {
        /// The id.
        run_id: RunId,
        /// The temporary folder.
        path: PathBuf,
    },
    /// The manifest or reservation is not valid JSON.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io { path: path.to_owned(), source }
}

/// Where a RUN_ID's folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunLocation {
    /// Sealed: `artifacts/<suite>/<RUN_ID>/`.
    Finished(PathBuf),
    /// Reserved, running or crashed: `artifacts/<suite>/.<RUN_ID>.partial/`.
    Partial(PathBuf),
}

/// Finds a RUN_ID in any suite under `artifacts`.
pub fn locate(artifacts: &Path, run_id: &RunId) -> Result<Option<RunLocation>, EvidenceError> {
    let entries = match fs::read_dir(artifacts) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(EvidenceError::Io { path: artifacts.to_owned(), source }),
    };
    for suite in entries {
        let suite = suite.map_err(io_at(artifacts))?.path();
        if !suite.is_dir() {
            continue;
        }
        let finished = suite.join(run_id.to_string());
        if finished.is_dir() {
            return Ok(Some(RunLocation::Finished(finished)));
        }
        let partial = suite.join(run_id.partial_dir_name());
        if partial.is_dir() {
            return Ok(Some(RunLocation::Partial(partial)));
        }
    }
    Ok(None)
}

/// Reserves the next free RUN_ID for `label` on `date` and records which template it is for.
pub fn reserve_next(
    artifacts: &Path,
    suite: &str,
    template: &str,
    date: chrono::NaiveDate,
    label: &str,
) -> Result<(RunId, PathBuf), EvidenceError> {
    let (run_id, dir) = runid::allocate(artifacts, suite, date, label)?;
    write_reservation(&dir, &run_id, template, suite)?;
    Ok((run_id, dir))
}

/// Reserves one given RUN_ID (e.g. a timestamp-form id); refuses an id that exists in any form.
pub fn reserve_exact(artifacts: &Path, suite: &str, template: &str, run_id: &RunId) -> Result<PathBuf, EvidenceError> {
    // Held over the look through every suite and the claim, so no other process claims the id in between.
    let _lock = runid::AllocationLock::acquire(artifacts)?;
    if let Some(RunLocation::Finished(path) | RunLocation::Partial(path)) = locate(artifacts, run_id)? {
        return Err(EvidenceError::AlreadyStarted { run_id: run_id.clone(), path });
    }
    let dir = runid::claim(&artifacts.join(suite), run_id)?;
    write_reservation(&dir, run_id, template, suite)?;
    Ok(dir)
}

fn write_reservation(dir: &Path, run_id: &RunId, template: &str, suite: &str) -> Result<(), EvidenceError> {
    let reservation = Reservation {
        run_id: run_id.clone(),
        template: template.to_owned(),
        suite: suite.to_owned(),
        reserved_at: Utc::now(),
    };
    let path = dir.join(RESERVATION_FILE);
    let json = serde_json::to_vec_pretty(&reservation)
        .map_err(|e| EvidenceError::Corrupt { path: path.clone(), message: e.to_string() })?;
    fs::write(&path, json).map_err(io_at(&path))
}

/// A run folder being written.
#[derive(Debug)]
pub struct RunFolder {
    /// The RUN_ID.
    run_id: RunId,
    /// The temporary folder everything is written into.
    partial: PathBuf,
    /// The final folder name it is renamed to.
    finished: PathBuf,
}

impl RunFolder {
    /// Starts a reserved run: reads its reservation and claims it with the `.started` marker, so the same
    /// RUN_ID can never be run twice (not even after a crash).
    pub fn start(artifacts: &Path, run_id: &RunId) -> Result<(RunFolder, Reservation), EvidenceError> {
        let partial = match locate(artifacts, run_id)? {
            None => return Err(EvidenceError::NotFound { run_id: run_id.clone(), artifacts: artifacts.to_owned() }),
            Some(RunLocation::Finished(path)) => {
                return Err(EvidenceError::AlreadyStarted { run_id: run_id.clone(), path });
            }
            Some(RunLocation::Partial(path)) => path,
        };
        let marker = partial.join(STARTED_MARKER);
        match OpenOptions::new().write(true).create_new(true).open(&marker) {
            Ok(mut file) => writeln!(file, "{}", Utc::now().to_rfc3339()).map_err(io_at(&marker))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(EvidenceError::AlreadyStarted { run_id: run_id.clone(), path: partial });
            }
            Err(source) => return Err(EvidenceError::Io { path: marker, source }),
        }
        let reservation_path = partial.join(RESERVATION_FILE);
        let text = fs::read(&reservation_path).map_err(io_at(&reservation_path))?;
        let reservation: Reservation = serde_json::from_slice(&text)
            .map_err(|e| EvidenceError::Corrupt { path: reservation_path.clone(), message: e.to_string() })?;
        let finished = partial.with_file_name(run_id.to_string());
        Ok((RunFolder { run_id: run_id.clone(), partial, finished }, reservation))
    }

    /// The folder to write evidence into (temporary until [`RunFolder::finish`]).
    pub fn dir(&self) -> &Path {
        &self.partial
    }

    /// The RUN_ID.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// Writes one evidence file (relative path with `/`), creating parent folders.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> Result<(), EvidenceError> {
        let path = self.partial.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        fs::write(&path, bytes).map_err(io_at(&path))
    }

    /// Creates one evidence file (relative path with `/`) whose content is redacted as it is written, so a
    /// document is serialised straight to disk instead of being built, and redacted, in memory first.
    pub fn create_redacted<'r>(
        &self,
        relative: &str,
        redactor: &'r Redactor,
    ) -> Result<RedactedFile<'r>, EvidenceError> {
        let path = self.partial.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        let file = File::create(&path).map_err(io_at(&path))?;
        Ok(RedactedFile::new(file, path, redactor))
    }

    /// Seals the run: removes the bookkeeping files, writes `manifest.json` last and renames the folder to its
    /// final name. Returns the final path.
    pub fn finish(self) -> Result<PathBuf, EvidenceError> {
        for bookkeeping in [RESERVATION_FILE, STARTED_MARKER] {
            let path = self.partial.join(bookkeeping);
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        // The probe spool has been read into status.json; a run without probes never made one.
        let spool = self.partial.join(EvidenceLayout::PROBE_SPOOL);
        match fs::remove_file(&spool) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(EvidenceError::Io { path: spool, source: e }),
            _ => {}
        }
        write_manifest(&self.partial, &self.run_id)?;
        fs::rename(&self.partial, &self.finished).map_err(io_at(&self.finished))?;
        Ok(self.finished)
    }
}

/// One file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the run folder, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version.
    pub schema_version: u32,
    /// The RUN_ID the files belong to.
    pub run_id: String,
    /// Every file except the manifest and `manifest.stat`, sorted by path.
    pub files: Vec<ManifestEntry>,
}

/// The first difference between a run folder and its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    /// A listed file is gone.
    Missing {
        /// Its path.
        path: String,
    },
    /// A file's content differs from the manifest.
    Changed {
        /// Its path.
        path: String,
        /// Size and hash recorded in the manifest.
        expected: String,
        /// Size and hash now.
        actual: String,
    },
    /// A file is present that the manifest does not list.
    Unlisted {
        /// Its path.
        path: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Missing { path } => write!(f, "{path}: missing (listed in manifest.json)"),
            Mismatch::Changed { path, expected, actual } => {
                write!(f, "{path}: changed (manifest {expected}, now {actual})")
            }
            Mismatch::Unlisted { path } => write!(f, "{path}: not listed in manifest.json"),
        }
    }
}

/// Finds a sealed run by RUN_ID and verifies it; an unfinished run is refused, never treated as sealed.
pub fn verify(artifacts: &Path, run_id: &RunId) -> Result<VerifyReport, EvidenceError> {
    match locate(artifacts, run_id)? {
        Some(RunLocation::Finished(dir)) => verify_dir(&dir),
        Some(RunLocation::Partial(path)) => Err(EvidenceError::Unfinished { run_id: run_id.clone(), path }),
        None => Err(EvidenceError::NotFound { run_id: run_id.clone(), artifacts: artifacts.to_owned() }),
    }
}
