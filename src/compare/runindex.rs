//! Finding finished runs under `artifacts/` and reading their `status.json` back, verified.
//!
//! Every command that looks back at runs (diff, history, reports, archive) starts here, so that none of them
//! ever reads evidence that was changed after it was sealed: [`load_verified`] checks the run folder against
//! `manifest.json` first (the file it reads re-hashed, every other file by the stat recorded at the seal or
//! re-hashed) and refuses a tampered or incomplete run, naming the file. Only sealed folders (no leading
//! dot, a manifest present) count as runs; reservations and crashed runs are skipped.
//!
//! The tool makes two kinds of sealed folder under one RUN_ID: an ordinary run (`status.json` at the top) and
//! a parity run (`parity.json` at the top, one complete run per target inside, one seal over the whole).
//! A command that needs one run takes a parity run's side as `<RUN_ID>/<target>` (verified through the
//! parity run's seal) and refuses the bare parity RUN_ID with a sentence naming its sides; [`sealed_dir`]
//! serves the commands that take any sealed folder whole (archive).

use std::path::{Path, PathBuf};

use crate::compare::parity::side_dir;
use crate::compare::statusread;
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
    /// A parity run was given where one run is needed.
    #[error(
        "{run_id} is a parity run of targets {}; give one side as {}",
        targets.join(" and "),
        targets.iter().map(|t| format!("{run_id}/{t}")).collect::<Vec<_>>().join(" or ")
    )]
    ParityRun {
        /// The parity RUN_ID.
        run_id: String,
        /// Its sides' target names, reference first.
        targets: Vec<String>,
    },
    /// `<RUN_ID>/<target>` that does not name a side of a parity run, or a side given where a whole run is needed.
    #[error("{0}")]
    NotASide(String),
}

/// A finished run: where it is and what it recorded.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The sealed run folder (for a side of a parity run, the side's folder inside it).
    pub dir: PathBuf,
    /// Its `status.json`. For a side of a parity run, `run_id` reads `<RUN_ID>/<target>`: the handle that names
    /// the side in every command, and with `suite` the side's evidence path `artifacts/<suite>/<RUN_ID>/<target>/`
    /// that reports link to.
    pub status: RunStatus,
    /// For a side of a parity run, the parity run's folder, whose seal covers this run: nothing may be written
    /// inside it. None for an ordinary run.
    pub parity: Option<PathBuf>,
}

/// Reads a sealed folder's `status.json` with its probes reduced as they are read ([`statusread`]), refusing
/// other schema versions (a file that does not parse is reported by its version when that differs, so a
/// future layout gets a version message rather than a confusing field error).
pub fn read_status(dir: &Path) -> Result<RunStatus, RunIndexError> {
    let path = dir.join(EvidenceLayout::STATUS);
    statusread::read(&path, &limits::STATUS_FILE, STATUS_SCHEMA_VERSION).map_err(|error| match error {
        statusread::ReadError::Io(source) => RunIndexError::from(EvidenceError::Io { path, source }),
        statusread::ReadError::Corrupt(message) => RunIndexError::Corrupt { path, message },
        statusread::ReadError::Schema(found) => RunIndexError::Schema { path, found, supported: STATUS_SCHEMA_VERSION },
    })
}

fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The sides of a parity run folder (reference first), or None when `dir` is not one. Read before the seal
/// is checked: the names only word a message or pick a folder that is then verified.
pub fn parity_targets(dir: &Path) -> Option<Vec<String>> {
    if dir.join(EvidenceLayout::STATUS).is_file() || !dir.join(EvidenceLayout::PARITY_JSON).is_file() {
        return None;
    }
    let text = std::fs::read(dir.join(EvidenceLayout::PARITY_JSON)).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    let from_json: Vec<String> =
        ["left", "right"].iter().filter_map(|side| json[side]["target"].as_str().map(str::to_owned)).collect();
    if from_json.len() == 2 {
        return Some(from_json);
    }
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(EvidenceLayout::STATUS).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    Some(found)
}

/// Checks a sealed folder before `reads` (paths inside it) are read ([`evidence::check_before_reading`]):
/// those re-hashed against the manifest, every other listed file unchanged since the seal by its stat or by
/// a re-hash; `run_id` names the run in the error. A changed, missing or cut-short file anywhere refuses the
/// run, so neither tampered nor partial evidence is ever compared or reported.
fn check_seal(dir: &Path, run_id: String, reads: &[&str]) -> Result<(), RunIndexError> {
    match evidence::check_before_reading(dir, reads)?.first_mismatch {
        Some(mismatch) => Err(RunIndexError::Tampered { run_id, dir: dir.to_owned(), mismatch }),
        None => Ok(()),
    }
}

/// An earlier run's status for a look back (diff's noise floor, report's chart): its `status.json` re-hashed
/// against the manifest first, nothing else of the run, so a changed status is refused, never counted.
pub fn read_sealed_status(dir: &Path) -> Result<RunStatus, RunIndexError> {
    if let Some(mismatch) = evidence::check_read_files(dir, &[EvidenceLayout::STATUS])? {
        return Err(RunIndexError::Tampered { run_id: folder_name(dir), dir: dir.to_owned(), mismatch });
    }
    read_status(dir)
}

/// Verifies a sealed folder against its manifest, then reads its status. A parity run folder is refused with a
/// sentence naming its sides; a side's folder is verified through the parity run's seal.
pub fn load_verified_dir(dir: &Path) -> Result<LoadedRun, RunIndexError> {
    if let Some(targets) = parity_targets(dir) {
        return Err(RunIndexError::ParityRun { run_id: folder_name(dir), targets });
    }
    match dir.parent().filter(|parent| parity_targets(parent).is_some()) {
        Some(parity) => load_side(parity, &folder_name(parity), &folder_name(dir)),
        None => {
            check_seal(dir, folder_name(dir), &[EvidenceLayout::STATUS])?;
            Ok(LoadedRun { dir: dir.to_owned(), status: read_status(dir)?, parity: None })
        }
    }
}

/// One side of a parity run, verified through the parity run's seal.
fn load_side(parity: &Path, parity_id: &str, target: &str) -> Result<LoadedRun, RunIndexError> {
    let read = format!("{target}/{}", EvidenceLayout::STATUS);
    check_seal(parity, parity_id.to_owned(), &[read.as_str()])?;
    let dir = side_dir(parity, target);
    let mut status = read_status(&dir)?;
    status.run_id = format!("{parity_id}/{target}");
    Ok(LoadedRun { dir, status, parity: Some(parity.to_owned()) })
}

/// The sealed folder of a RUN_ID in any suite, whatever kind of run it holds (not verified).
fn finished_dir(artifacts: &Path, id: RunId) -> Result<PathBuf, RunIndexError> {
    match evidence::locate(artifacts, &id)? {
        Some(RunLocation::Finished(dir)) => Ok(dir),
        Some(RunLocation::Partial(path)) => Err(EvidenceError::Unfinished { run_id: id, path }.into()),
        None => Err(EvidenceError::NotFound { run_id: id, artifacts: artifacts.to_owned() }.into()),
    }
}

/// Finds a sealed run by RUN_ID in any suite, verifies it and reads its status. `<RUN_ID>/<target>` names one
/// side of a parity run; a bare parity RUN_ID is refused with a sentence naming its sides.
pub fn load_verified(artifacts: &Path, run_id: &str) -> Result<LoadedRun, RunIndexError> {
    let Some((parity_id, target)) = run_id.split_once('/') else {
        return load_verified_dir(&finished_dir(artifacts, run_id.parse()?)?);
    };
    let parity = finished_dir(artifacts, parity_id.parse()?)?;
    let Some(targets) = parity_targets(&parity) else {
        return Err(RunIndexError::NotASide(format!(
            "{parity_id} is not a parity run, so `{run_id}` names nothing; give the RUN_ID {parity_id} alone"
        )));
    };
    if !targets.iter().any(|t| t == target) {
        return Err(RunIndexError::NotASide(format!(
            "parity run {parity_id} has no side `{target}`; its sides are {}",
            targets.iter().map(|t| format!("{parity_id}/{t}")).collect::<Vec<_>>().join(" and ")
        )));
    }
    load_side(&parity, parity_id, target)
}

/// The sealed folder of a RUN_ID, ordinary or parity run, for commands that take a run whole (archive).
/// `<RUN_ID>/<target>` is refused: a side is sealed only as part of its parity run.
pub fn sealed_dir(artifacts: &Path, run_id: &str) -> Result<PathBuf, RunIndexError> {
    if let Some((parity_id, _)) = run_id.split_once('/') {
        return Err(RunIndexError::NotASide(format!(
            "`{run_id}` is one side of a parity run, sealed only with the whole; give {parity_id}"
        )));
    }
    finished_dir(artifacts, run_id.parse()?)
}

/// Every sealed run folder (with a `status.json`) under `artifacts/<suite>/`, unverified and unsorted. Parity
/// runs are not listed: their sides are runs against two targets at once, not points of a target's history.
/// Demo runs (`artifacts/demo/`) are not listed either: history, weekly and `diff --latest` show real runs
/// only; a demo run is still found by its RUN_ID.
pub fn finished_run_dirs(artifacts: &Path) -> Result<Vec<PathBuf>, RunIndexError> {
    let mut out = Vec::new();
    let suites = match std::fs::read_dir(artifacts) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(EvidenceError::Io { path: artifacts.to_owned(), source }.into()),
    };
    for suite in suites {
        let suite = suite.map_err(|source| EvidenceError::Io { path: artifacts.to_owned(), source })?.path();
        if suite.file_name().is_some_and(|name| name == EvidenceLayout::DEMO_SUITE) {
            continue;
        }
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
            Ok(status) => runs.push(LoadedRun { dir, status, parity: None }),
            Err(error) => skipped.push(error),
        }
    }
    runs.sort_by(|a, b| (a.status.started_at, &a.status.run_id).cmp(&(b.status.started_at, &b.status.run_id)));
    Ok((runs, skipped))
}

/// [`all_runs`] one run at a time: `visit` gets each finished run, oldest first by start time, read just
/// before and dropped after, so a look over every run holds one of them at a time. The order comes from the
/// first fields of each `status.json`; a run whose status cannot be read is visited as its error.
pub fn each_run(
    artifacts: &Path,
    mut visit: impl FnMut(Result<LoadedRun, RunIndexError>),
) -> Result<(), RunIndexError> {
    let mut heads = Vec::new();
    for dir in finished_run_dirs(artifacts)? {
        match statusread::read_head(&dir.join(EvidenceLayout::STATUS)) {
            Some(head) => heads.push((head.started_at, head.run_id, dir)),
            None => visit(read_status(&dir).map(|status| LoadedRun { dir, status, parity: None })),
        }
    }
    heads.sort();
    for (_, _, dir) in heads {
        visit(read_status(&dir).map(|status| LoadedRun { dir, status, parity: None }));
    }
    Ok(())
}

/// The finished runs of `template` against `target` that started no later than `until`, oldest first, as
/// [`all_runs`] lists them; a run whose folder is in `held` (runs the caller has loaded already) is returned
/// as [`Found::Held`] with its index in `held`. Only the first fields of each `status.json` are read to
/// choose, and no run's probes: the caller reads the few it needs one at a time ([`read_status`]), so a
/// folder of many large runs costs neither time nor memory here.
pub fn runs_of(
    artifacts: &Path,
    (template, target): (&str, &str),
    until: chrono::DateTime<chrono::Utc>,
    held: &[&Path],
) -> Result<Vec<Found>, RunIndexError> {
    let mut found = Vec::new();
    for dir in finished_run_dirs(artifacts)? {
        let Some(head) = statusread::read_head(&dir.join(EvidenceLayout::STATUS)) else { continue };
        if head.template != template || head.target != target || head.started_at > until {
            continue;
        }
        let key = (head.started_at, head.run_id);
        match held.iter().position(|h| *h == dir.as_path()) {
            Some(index) => found.push((key, Found::Held(index))),
            None => found.push((key, Found::Other(dir))),
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.into_iter().map(|(_, run)| run).collect())
}

/// A run found by [`runs_of`].
#[derive(Debug)]
pub enum Found {
    /// The caller's own run, by its index in `held`.
    Held(usize),
    /// Another run's folder, not read yet: read it with [`read_sealed_status`].
    Other(PathBuf),
}

/// The newest run and the run before it with the same template and target (both verified), for
/// `connrun diff --latest`. With `template`, the newest run of that template is used.
pub fn latest_pair(artifacts: &Path, template: Option<&str>) -> Result<(LoadedRun, LoadedRun), RunIndexError> {
    // Chosen by the first fields of each status.json: the two runs chosen are then checked and read whole.
    let mut runs: Vec<(statusread::Head, PathBuf)> = finished_run_dirs(artifacts)?
        .into_iter()
        .filter_map(|dir| statusread::read_head(&dir.join(EvidenceLayout::STATUS)).map(|head| (head, dir)))
        .collect();
    runs.sort_by(|a, b| (a.0.started_at, &a.0.run_id).cmp(&(b.0.started_at, &b.0.run_id)));
    let (newest, newest_dir) = runs
        .iter()
        .rev()
        .find(|(head, _)| template.is_none_or(|t| head.template == t))
        .ok_or_else(|| RunIndexError::NoSuchRun(format!("no finished run under {}", artifacts.display())))?;
    let (_, previous_dir) = runs
        .iter()
        .rev()
        .find(|(head, dir)| {
            dir != newest_dir
                && head.started_at <= newest.started_at
                && head.template == newest.template
                && head.target == newest.target
        })
        .ok_or_else(|| {
            RunIndexError::NoSuchRun(format!(
                "{} is the only run of template {} against target {}; nothing to compare with",
                newest.run_id, newest.template, newest.target
            ))
        })?;
    // Side by side, as `connrun diff A B` loads its two runs.
    std::thread::scope(|scope| {
        let first = scope.spawn(|| load_verified_dir(previous_dir));
        let second = load_verified_dir(newest_dir);
        Ok((first.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?, second?))
    })
}
