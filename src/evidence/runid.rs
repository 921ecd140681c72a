//! RUN_IDs: the one name that joins a run's evidence folder, its HTTP headers and its audit rows.
//!
//! Two forms exist (HARNESS.md §1): the label form `YYYYMMDDT<label>Z<n>` that operators allocate with
//! `connrun new`, and the timestamp form `YYYYMMDDThhmmssZ`. Parsing is strict because the id ends up in
//! folder names, SQL `LIKE` patterns and headers; anything else is refused with a message showing both forms.
//! Allocation picks the next free `Z<n>` for a date and label and claims it with an atomic `create_dir`, looking
//! at finished folders and at in-progress (`.<RUN_ID>.partial`) ones, so a crashed run's id is never reused.
//! Scanning every suite and claiming happen under [`AllocationLock`], an exclusive file lock in the artifacts
//! root, so two processes allocating in different suites of one root cannot pick the same id either.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::limits::{MAX_LABEL_CHARS, MAX_RUN_ID_CHARS};

/// Folder-name suffix of a run that is reserved or in progress (see `evidence.rs`).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The lock file in the artifacts root (a file, so every scan of suite folders passes it by).
const ALLOCATION_LOCK_FILE: &str = ".runid.lock";

/// An exclusive advisory lock on the artifacts root's `.runid.lock`, held while a RUN_ID is chosen and claimed.
/// The operating system releases it when the guard is dropped or the process dies, so a crash never leaves
/// the root locked.
#[derive(Debug)]
pub struct AllocationLock {
    /// Kept open: closing it releases the lock.
    _file: std::fs::File,
}

impl AllocationLock {
    /// Waits for the lock of `artifacts`, creating the folder and the lock file when missing.
    pub fn acquire(artifacts: &Path) -> Result<Self, AllocateError> {
        std::fs::create_dir_all(artifacts)
            .map_err(|source| AllocateError::Io { path: artifacts.to_owned(), source })?;
        let path = artifacts.join(ALLOCATION_LOCK_FILE);
        let io_err = |source| AllocateError::Io { path: path.clone(), source };
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err)?;
        file.lock().map_err(io_err)?;
        Ok(Self { _file: file })
    }
}

/// A validated RUN_ID in one of its two forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunId {
    /// `YYYYMMDDT<label>Z<n>`, e.g. `20251119TorcaPHRSeqZ1`.
    Label {
        /// The calendar date the run belongs to.
        date: NaiveDate,
        /// ASCII letters and digits, starting with a letter, at most [`MAX_LABEL_CHARS`].
        label: String,
        /// The sequence number for this date and label, 1 or more.
        n: u32,
    },
    /// `YYYYMMDDThhmmssZ` in UTC, e.g. `20251119T013000Z`.
    Timestamp(NaiveDateTime),
}

/// Why a string is not a RUN_ID; its `Display` shows both accepted forms and an example.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid RUN_ID `{input}`: {reason}\n  accepted forms:\n    YYYYMMDDT<label>Z<n>   e.g. 20251119TorcaPHRSeqZ1 (label: 1 to {MAX_LABEL_CHARS} ASCII letters/digits starting with a letter, n >= 1)\n    YYYYMMDDThhmmssZ       e.g. 20251119T013000Z (UTC)"
)]
pub struct RunIdError {
    /// The text that was refused, as given.
    pub input: String,
    /// What exactly is wrong with it.
    pub reason: String,
}

/// Why no RUN_ID could be allocated.
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    /// The label itself is not usable in a RUN_ID.
    #[error("invalid label `{}`: {reason}", shorten(label))]
    BadLabel {
        /// The label as given.
        label: String,
        /// What is wrong with it and what is accepted ([`label_problem`]).
        reason: String,
    },
    /// The suite folder could not be created or read, or a run folder could not be created.
    #[error("cannot allocate a RUN_ID under {}: {source}", path.display())]
    Io {
        /// The folder that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The timestamp form names a run that already exists.
    #[error("RUN_ID {run_id} already exists under {}", dir.display())]
    Taken {
        /// The id that is taken.
        run_id: RunId,
        /// The suite folder that holds it.
        dir: PathBuf,
    },
}

fn refuse(input: &str, reason: impl Into<String>) -> RunIdError {
    RunIdError { input: shorten(input), reason: reason.into() }
}

/// True when `label` may appear in a RUN_ID.
pub fn is_valid_label(label: &str) -> bool {
    label_problem(label).is_none()
}

/// What keeps `label` out of a RUN_ID, as a sentence naming the rule and the bound; `None` when it fits.
pub fn label_problem(label: &str) -> Option<String> {
    let rule = format!("a label is 1 to {MAX_LABEL_CHARS} ASCII letters and digits, starting with a letter");
    let count = label.chars().count();
    if count > MAX_LABEL_CHARS {
        return Some(format!("the label is {count} characters long; {rule}"));
    }
    let shaped = label.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && label.chars().all(|c| c.is_ascii_alphanumeric());
    (!shaped).then_some(rule)
}

/// The first characters of a long input, so a refusal stays readable.
fn shorten(text: &str) -> String {
    const SHOWN: usize = 40;
    match text.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}… ({} characters)", &text[..at], text.chars().count()),
        None => text.to_owned(),
    }
}

impl RunId {
    /// Builds a label-form id, checking the label and `n`.
    pub fn label(date: NaiveDate, label: &str, n: u32) -> Result<Self, RunIdError> {
        let candidate = format!("{}T{label}Z{n}", date.format("%Y%m%d"));
        if let Some(reason) = label_problem(label) {
            return Err(refuse(&candidate, reason));
        }
        if n == 0 {
            return Err(refuse(&candidate, "n must be 1 or more"));
        }
        Ok(RunId::Label { date, label: label.to_owned(), n })
    }

    /// A timestamp-form id for the current second (UTC).
    pub fn timestamp_now() -> Self {
        let now = chrono::Utc::now().naive_utc();
        RunId::Timestamp(chrono::Timelike::with_nanosecond(&now, 0).unwrap_or(now))
    }

    /// The date part of the id.
    pub fn date(&self) -> NaiveDate {
        match self {
            RunId::Label { date, .. } => *date,
            RunId::Timestamp(at) => at.date(),
        }
    }

    /// The label, for label-form ids.
    pub fn label_part(&self) -> Option<&str> {
        match self {
            RunId::Label { label, .. } => Some(label),
            RunId::Timestamp(_) => None,
        }
    }

    /// The name of the folder that holds this run while it is reserved or in progress.
    pub fn partial_dir_name(&self) -> String {
        format!(".{self}{PARTIAL_SUFFIX}")
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunId::Label { date, label, n } => write!(f, "{}T{label}Z{n}", date.format("%Y%m%d")),
            RunId::Timestamp(at) => write!(f, "{}", at.format("%Y%m%dT%H%M%SZ")),
        }
    }
}

impl FromStr for RunId {
    type Err = RunIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bytes = input.as_bytes();
        if bytes.len() < 10 || !input.is_ascii() {
            return Err(refuse(input, "too short or not ASCII"));
        }
        if bytes.len() > MAX_RUN_ID_CHARS {
            return Err(refuse(
                input,
                format!("{} characters is too long: a RUN_ID has at most {MAX_RUN_ID_CHARS}", bytes.len()),
            ));
        }
        let (date_text, rest) = input.split_at(8);
        if !date_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse(input, "must start with an 8-digit date YYYYMMDD"));
        }
        let date = NaiveDate::parse_from_str(date_text, "%Y%m%d")
            .map_err(|_| refuse(input, format!("`{date_text}` is not a real calendar date")))?;
        let Some(body) = rest.strip_prefix('T') else {
            return Err(refuse(input, "the date must be followed by `T`"));
        };
        if body.len() == 7 && body.ends_with('Z') && body[..6].bytes().all(|b| b.is_ascii_digit()) {
            let time = NaiveTime::parse_from_str(&body[..6], "%H%M%S")
                .map_err(|_| refuse(input, format!("`{}` is not a real time hhmmss", &body[..6])))?;
            return Ok(RunId::Timestamp(date.and_time(time)));
        }
        let Some(z) = body.rfind('Z') else {
            return Err(refuse(input, "missing `Z<n>` after the label"));
        };
        let (label, number) = (&body[..z], &body[z + 1..]);
        if label.is_empty() {
            return Err(refuse(input, "the label is empty"));
        }
        if let Some(reason) = label_problem(label) {
            return Err(refuse(input, format!("label `{label}`: {reason}")));
        }
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || number.starts_with('0') {
            return Err(refuse(
                input,
                format!("`Z{number}` must be Z followed by a number 1 or more, without leading zeros"),
            ));
        }
        let n: u32 = number.parse().map_err(|_| refuse(input, format!("`{number}` is too large")))?;
        Ok(RunId::Label { date, label: label.to_owned(), n })
    }
}

impl serde::Serialize for RunId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads a folder entry name as a run: `<RUN_ID>` (finished) or `.<RUN_ID>.partial` (reserved, running or crashed).
pub fn run_id_of_entry(name: &str) -> Option<RunId> {
    let core = match name.strip_prefix('.') {
        Some(hidden) => hidden.strip_suffix(PARTIAL_SUFFIX)?,
        None => name,
    };
    core.parse().ok()
}

/// The largest `n` already used (finished or not) for this date and label in `suite_dir`, 0 when none.
fn highest_used_in(suite_dir: &Path, date: NaiveDate, label: &str) -> Result<u32, AllocateError> {
    let io_err = |source| AllocateError::Io { path: suite_dir.to_owned(), source };
    let mut highest = 0;
    for entry in std::fs::read_dir(suite_dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        if let Some(RunId::Label { date: d, label: l, n }) = name.to_str().and_then(run_id_of_entry)
            && d == date
            && l.eq_ignore_ascii_case(label)
        {
            highest = highest.max(n);
        }
    }
    Ok(highest)
}

/// The largest `n` used for this date and label in every suite of the artifacts root, because `verify`, `run`
/// and `diff` find a run by its RUN_ID alone.
fn highest_used(artifacts: &Path, date: NaiveDate, label: &str) -> Result<u32, AllocateError> {
    let suites =
        std::fs::read_dir(artifacts).map_err(|source| AllocateError::Io { path: artifacts.to_owned(), source })?;
    let mut highest = 0;
    for suite in suites.filter_map(Result::ok).map(|e| e.path()) {
        if suite.is_dir() {
            // A suite that cannot be read holds no runs we could find later either; our own suite's
            // problems surface when the claim's `create_dir` fails.
            highest = highest.max(highest_used_in(&suite, date, label).unwrap_or(0));
        }
    }
    Ok(highest)
}

/// Allocates the next free label-form RUN_ID for `date` and `label` in the suite `suite` of the artifacts root
/// `artifacts`, counting the runs of every suite of that root, and claims it by creating its
/// `.<RUN_ID>.partial` folder with `create_dir` (which fails if the folder already exists, so two concurrent
/// allocations never get the same id). Returns the id and the created folder.
pub fn allocate(
    artifacts: &Path,
    suite: &str,
    date: NaiveDate,
    label: &str,
) -> Result<(RunId, PathBuf), AllocateError> {
    if let Some(reason) = label_problem(label) {
        return Err(AllocateError::BadLabel { label: label.to_owned(), reason });
    }
    let _lock = AllocationLock::acquire(artifacts)?;
    let suite_dir = artifacts.join(suite);
    std::fs::create_dir_all(&suite_dir).map_err(|source| AllocateError::Io { path: suite_dir.clone(), source })?;
    let mut n = highest_used(artifacts, date, label)?.saturating_add(1);
    loop {
        let run_id = RunId::Label { date, label: label.to_owned(), n };
        match claim(&suite_dir, &run_id) {
            Ok(dir) => return Ok((run_id, dir)),
            Err(AllocateError::Taken { .. }) => n = n.saturating_add(1),
            Err(other) => return Err(other),
        }
    }
}

/// Claims one specific RUN_ID (for example a timestamp-form id) in `suite_dir`; refuses it when it is already
/// reserved, running, crashed or finished there. Callers that must also refuse it in other suites hold the
/// [`AllocationLock`] of the artifacts root around their check and this claim.
pub fn claim(suite_dir: &Path, run_id: &RunId) -> Result<PathBuf, AllocateError> {
    std::fs::create_dir_all(suite_dir).map_err(|source| AllocateError::Io { path: suite_dir.to_owned(), source })?;
    let taken = || AllocateError::Taken { run_id: run_id.clone(), dir: suite_dir.to_owned() };
    if suite_dir.join(run_id.to_string()).exists() {
        return Err(taken());
    }
    let partial = suite_dir.join(run_id.partial_dir_name());
    match std::fs::create_dir(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(taken()),
        Err(source) => return Err(AllocateError::Io { path: partial, source }),
    }
    // A run with this id may have been finished (renamed) between the check above and our create_dir.
    if suite_dir.join(run_id.to_string()).exists() {
        let _ = std::fs::remove_dir(&partial);
        return Err(taken());
    }
    Ok(partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_form_round_trips() {
        let id: RunId = "20251119TorcaPHRSeqZ12".parse().expect("valid id");
        assert_eq!(id.to_string(), "20251119TorcaPHRSeqZ12");
        assert_eq!(id.label_part(), Some("orcaPHRSeq"));
    }

    #[test]
    fn label_may_contain_z() {
        let id: RunId = "20251119TfizzZ3".parse().expect("valid id");
        assert_eq!(
            id,
            RunId::Label { date: NaiveDate::from_ymd_opt(2025, 11, 19).unwrap(), label: "fizz".into(), n: 3 }
        );
    }

    #[test]
    fn timestamp_form_round_trips() {
        let id: RunId = "20251119T013000Z".parse().expect("valid id");
        assert!(matches!(id, RunId::Timestamp(_)));
        assert_eq!(id.to_string(), "20251119T013000Z");
    }

    #[test]
    fn refuses_impossible_dates_and_times() {
        assert!("20250230TlabelZ1".parse::<RunId>().is_err());
        assert!("20251119T256000Z".parse::<RunId>().is_err());
    }

    #[test]
    fn refuses_bad_labels_and_numbers() {
        for bad in
            ["20251119T1abcZ1", "20251119TabcZ0", "20251119TabcZ01", "20251119Tab-cZ1", "20251119TZ1", "20251119TabcZ"]
        {
            assert!(bad.parse::<RunId>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn labels_are_bounded_in_length_with_the_bound_named() {
        let longest = "a".repeat(MAX_LABEL_CHARS);
        let date = NaiveDate::from_ymd_opt(2025, 11, 19).unwrap();

        let fits = RunId::label(date, &longest, u32::MAX).expect("the longest label fits");
        let too_long = label_problem(&"a".repeat(300)).expect("300 characters are refused");
        let parsed = format!("20251119T{}Z1", "a".repeat(300)).parse::<RunId>().unwrap_err();

        assert_eq!(fits.to_string().len(), MAX_RUN_ID_CHARS);
        assert_eq!(fits.to_string().parse::<RunId>(), Ok(fits));
        assert!(too_long.contains("300 characters") && too_long.contains("1 to 64"), "{too_long}");
        assert!(parsed.to_string().contains(&format!("at most {MAX_RUN_ID_CHARS}")), "{parsed}");
        assert!(parsed.input.len() < 80, "the refused input is shortened: {}", parsed.input);
    }

    #[test]
    fn error_shows_both_forms_and_an_example() {
        let message = "nonsense".parse::<RunId>().unwrap_err().to_string();
        assert!(message.contains("YYYYMMDDT<label>Z<n>"));
        assert!(message.contains("YYYYMMDDThhmmssZ"));
        assert!(message.contains("20251119TorcaPHRSeqZ1"));
    }

    #[test]
    fn entry_names_cover_partial_folders() {
        assert!(run_id_of_entry(".20251119TabcZ4.partial").is_some());
        assert!(run_id_of_entry("20251119TabcZ4").is_some());
        assert!(run_id_of_entry(".20251119TabcZ4").is_none());
    }
}
