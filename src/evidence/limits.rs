//! Every bound connrun puts on what it reads, in one place, so a reviewer sees them side by side.
//!
//! Templates, targets files and sealed runs are written by hand or copied around, and a typo (a timeout of
//! `18446744073709551615`, a 300-character label, a manifest of gigabytes) must be refused when the input is
//! validated, with a message naming the key and the accepted range, never found later as a panic or an OS
//! error halfway through a run. Each limit is generous for real use (the shipped templates use a fraction of
//! each) and small enough that nothing derived from it can overflow or exhaust memory. The files read in
//! whole go through [`read_bounded`], which stops at the limit instead of trusting a size given up front.
//!
//! This module lives in `evidence/` because that is the folder every reader already depends on (plan,
//! compare, probe); ARCHITECTURE.md points here.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// Longest probe or preflight timeout, in seconds: one hour. A probe is one HTTPS request, like curl's
/// `--max-time`; an hour covers the slowest export download on a poor link, keeps a stuck run recoverable
/// within a working session, and keeps `Instant + timeout` far from overflowing.
pub const MAX_TIMEOUT_SECONDS: u64 = 3600;
/// Shortest timeout, in seconds: a zero timeout would fail every probe before it starts.
pub const MIN_TIMEOUT_SECONDS: u64 = 1;
/// Most attempts a poll may make; a run is a check, not a wait loop.
pub const MAX_POLL_ATTEMPTS: i64 = 1000;
/// Longest pause between two poll attempts, in milliseconds.
pub const MAX_POLL_INTERVAL_MS: i64 = 60_000;
/// Longest total pause of one poll (attempts × interval), in milliseconds: the same hour as a timeout.
pub const MAX_POLL_WAIT_MS: i64 = MAX_TIMEOUT_SECONDS as i64 * 1000;

/// Most retries of one probe after connection-level failures: a blip is cured in one or two; more would
/// hide an outage behind minutes of waiting.
pub const MAX_RETRIES: u64 = 5;
/// Longest first pause before a retry, in milliseconds (later pauses double, up to eight times this): ten
/// seconds, so five retries wait at most a few minutes.
pub const MAX_RETRY_BACKOFF_MS: u64 = 10_000;

/// Longest RUN_ID label, in characters. A RUN_ID becomes a folder name (`.<RUN_ID>.partial`), an archive
/// name, a header value and part of every `X-Trace-Id`; 64 keeps all of them far below the 255-byte file
/// name limit of common file systems.
pub const MAX_LABEL_CHARS: usize = 64;
/// Longest RUN_ID: `YYYYMMDD` `T` label `Z` and a `u32` (10 digits).
pub const MAX_RUN_ID_CHARS: usize = 8 + 1 + MAX_LABEL_CHARS + 1 + 10;
/// Longest name or id that becomes a file or folder name or a key: template name, suite, phase and probe
/// ids, variable, capture, header and target names.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest free text shown in reports: description, memo, probe and phase names.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest single value that is sent or substituted: a path, a header value, a variable's value, a URL,
/// a check's text. 8 KiB is the header size most servers accept.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Most phases in one template.
pub const MAX_PHASES: usize = 64;
/// Most probes in one template, all phases together (the server-info probe included): 100,000. A run no
/// longer holds its records in memory (they are spooled, and `status.json`, the HAR and JUnit are streamed
/// from the spool), so the bound is set by the evidence instead: ~14 KB and 6 files per probe make a
/// 100,000-probe run 1.4 GB and 600,000 files, about what one folder should hold and `verify` re-hash in
/// seconds. Larger runs belong in several templates (one RUN_ID each).
pub const MAX_PROBES: usize = 100_000;
/// Most probes the Markdown documents of a run list whole: 1,000, the old bound on a template, whose
/// documents are a few MB and render in a fraction of a second. A larger run's documents list the probes
/// that are not Ready (at most this many) and say so; every probe stays in `status.json`, the HAR and JUnit.
pub const DOCUMENT_PROBES: usize = 1000;
/// Most headers in one table (a template's, a probe's, a target's).
pub const MAX_HEADERS: usize = 64;
/// Most variables a template declares or a target overrides.
pub const MAX_VARIABLES: usize = 256;
/// Most items in one list of a probe or phase: Ready statuses, body checks, audit actions, captures, audit
/// queries.
pub const MAX_LIST_ITEMS: usize = 64;
/// Most targets in one targets file.
pub const MAX_TARGETS: usize = 256;

/// Most targets one command runs at once (`run --target a --target b …`): one row each in the matrix. A
/// matrix wider than a team's clinics is a typo or a loop; 64 keeps the page readable and the runs bounded.
pub const MAX_MATRIX_TARGETS: usize = 64;
/// Most targets run at the same time (`--parallel-targets`). Each run already sends `--jobs` probes at once
/// and holds an audit connection; 16 keeps the load on a shared audit database and the file handles modest.
pub const MAX_PARALLEL_TARGETS: u8 = 16;
/// Targets run at the same time unless `--parallel-targets` says otherwise: small, so a matrix run loads no
/// server or audit database more than two ordinary runs would.
pub const DEFAULT_PARALLEL_TARGETS: u8 = 2;
/// Most runs `connrun history` lists and the trends page draws per template and target (`--last`): 200 is
/// about four years of weekly runs, and keeps each probe's SVG a few kilobytes.
pub const MAX_HISTORY_RUNS: usize = 200;
/// Runs the trends page draws when `--last` is not given: a quarter of weekly runs and then some.
pub const DEFAULT_TREND_RUNS: usize = 20;

/// Most files one manifest may list (a probe writes about 7 files, `curl.sh` included): ten per probe of the
/// largest template.
pub const MAX_MANIFEST_ENTRIES: usize = 10 * MAX_PROBES;
/// Most entries of any kind in an archive: the manifest, its files, a long-name header per file and as
/// many folders.
pub const MAX_ARCHIVE_ENTRIES: usize = 3 * MAX_MANIFEST_ENTRIES + 1;

/// `template.toml` (the shipped ones are 2 and 6 KiB; a probe takes about 200 bytes, so MAX_PROBES of them
/// fit with room for headers and checks).
pub const TEMPLATE_FILE: SizeLimit =
    SizeLimit { what: "a template file", max_bytes: 64 << 20, advice: "split the run into several templates" };
/// A targets file.
pub const TARGETS_FILE: SizeLimit =
    SizeLimit { what: "a targets file", max_bytes: 1 << 20, advice: "keep one targets file per team or site" };
/// An audit SQL file named by a template (read whole, sent as one query).
pub const AUDIT_SQL_FILE: SizeLimit =
    SizeLimit { what: "an audit SQL file", max_bytes: 256 << 10, advice: "an audit query is one SELECT" };
/// A request body file under `bodies/` (streamed, but also kept in the evidence).
pub const BODY_FILE: SizeLimit =
    SizeLimit { what: "a request body file", max_bytes: 64 << 20, advice: "use a smaller sample body" };
/// A secret file named by a targets file (a password or a database URL).
pub const SECRET_FILE: SizeLimit =
    SizeLimit { what: "a secret file", max_bytes: 64 << 10, advice: "the file holds only the secret" };
/// A run's `manifest.json` (about 200 bytes per listed file, MAX_MANIFEST_ENTRIES of them).
pub const MANIFEST_FILE: SizeLimit =
    SizeLimit { what: "manifest.json", max_bytes: 256 << 20, advice: "this is not a manifest connrun wrote" };
/// One extension header read from an archive (a GNU long name or a PAX record set).
pub const ARCHIVE_EXTENSION: SizeLimit = SizeLimit {
    what: "a long-name header in an archive",
    max_bytes: 64 << 10,
    advice: "this is not an archive connrun wrote",
};
/// A run's `status.json` (about 6 KiB per probe; read as a stream, so the bound is on the input, not memory:
/// 10 KiB for each of MAX_PROBES).
pub const STATUS_FILE: SizeLimit =
    SizeLimit { what: "status.json", max_bytes: 1000 << 20, advice: "this is not a status connrun wrote" };

/// A bound on the size of one file connrun reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimit {
    /// What is bounded, as a message names it, e.g. `a template file`.
    pub what: &'static str,
    /// Largest accepted size in bytes.
    pub max_bytes: u64,
    /// What the operator can do about a larger input.
    pub advice: &'static str,
}

impl SizeLimit {
    /// The message for an input of `size` bytes (or more, when `at_least`) that is over the limit.
    pub fn refusal(&self, size: u64, at_least: bool) -> String {
        let more = if at_least { "more than " } else { "" };
        format!(
            "{more}{size} bytes is over the limit of {} for {} ({}); {}",
            human_bytes(self.max_bytes),
            self.what,
            self.max_bytes,
            self.advice
        )
    }
}

/// `1 MiB`, `256 KiB`, `100 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Why a bounded read failed.
#[derive(Debug)]
pub enum BoundedReadError {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The input is larger than its limit; the message names the limit and what to do.
    TooLarge(String),
}

impl fmt::Display for BoundedReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundedReadError::Io(error) => write!(f, "cannot read: {error}"),
            BoundedReadError::TooLarge(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for BoundedReadError {}

/// Reads all of `reader`, refusing it as soon as it yields more than `limit` allows.
pub fn read_to_limit(reader: impl Read, limit: &SizeLimit) -> Result<Vec<u8>, BoundedReadError> {
    let mut bytes = Vec::new();
    reader.take(limit.max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(BoundedReadError::Io)?;
    if bytes.len() as u64 > limit.max_bytes {
        return Err(BoundedReadError::TooLarge(limit.refusal(limit.max_bytes, true)));
    }
    Ok(bytes)
}

/// Reads the file at `path` whole, refusing one over `limit` (its size, when known, is in the message).
pub fn read_bounded(path: &Path, limit: &SizeLimit) -> Result<Vec<u8>, BoundedReadError> {
    let file = std::fs::File::open(path).map_err(BoundedReadError::Io)?;
    if let Ok(size) = file.metadata().map(|m| m.len())
        && size > limit.max_bytes
    {
        return Err(BoundedReadError::TooLarge(limit.refusal(size, false)));
    }
    read_to_limit(file, limit)
}

/// Reads the UTF-8 file at `path` whole, refusing one over `limit`.
pub fn read_bounded_string(path: &Path, limit: &SizeLimit) -> Result<String, BoundedReadError> {
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|_| {
        BoundedReadError::Io(io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
    })
}

/// `"is N characters long; at most M"` when `text` has more than `max` characters.
pub fn too_many_chars(text: &str, max: usize) -> Option<String> {
    let count = text.chars().count();
    (count > max).then(|| format!("is {count} characters long; at most {max} are allowed"))
}

/// `"is N bytes long; at most M"` when `text` is longer than `max` bytes.
pub fn too_many_bytes(text: &str, max: usize) -> Option<String> {
    (text.len() > max).then(|| format!("is {} bytes long; at most {max} are allowed", text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: SizeLimit = SizeLimit { what: "a tiny file", max_bytes: 4, advice: "write less" };

    #[test]
    fn a_read_stops_at_the_limit_and_names_it() {
        let ok = read_to_limit(&b"1234"[..], &TINY).expect("at the limit");
        let refused = read_to_limit(&b"12345678"[..], &TINY).unwrap_err().to_string();

        assert_eq!(ok, b"1234");
        assert!(refused.contains("more than 4 bytes is over the limit of 4 bytes for a tiny file"), "{refused}");
        assert!(refused.ends_with("write less"), "{refused}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_with_its_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big");
        std::fs::write(&path, b"123456").expect("write");

        let message = read_bounded(&path, &TINY).unwrap_err().to_string();

        assert!(message.starts_with("6 bytes is over the limit"), "{message}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(1 << 20), "1 MiB");
        assert_eq!(human_bytes(256 << 10), "256 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }

    #[test]
    fn the_longest_run_id_is_a_file_name_with_room_to_spare() {
        let longest = format!(".{}.partial.tar.gz", "9".repeat(MAX_RUN_ID_CHARS));
        assert!(longest.len() < 200, "{}", longest.len());
    }
}
