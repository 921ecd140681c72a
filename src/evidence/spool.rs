//! The run's probe records spooled to disk as they finish, so a run's memory does not grow with its size.
//!
//! A 10,000-probe run held ~9.6 KiB per record in memory until `status.json` was written; a 100,000-probe one
//! could not fit. Each finished record is now appended (redacted) as one JSON line to
//! [`EvidenceLayout::PROBE_SPOOL`] in the temporary run folder, in the order probes finish, and only its
//! place in the file (16 bytes) is kept, by template position. `status.json`, the HAR and JUnit are then
//! written by reading the spool back in template order ([`ProbeSpool::records`], [`SpooledProbes`]).
//!
//! A record the spool does not hold (never written, or the file was cut short) is a [`SpoolError`], never a
//! shorter list: nothing written from the spool can claim a probe it did not record. The spool is
//! bookkeeping: [`super::RunFolder::finish`] removes it before the manifest is written, and a crashed run
//! keeps it in its `.partial` folder.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::ser::{Error as _, SerializeSeq};

use crate::evidence::{EvidenceError, EvidenceLayout, ProbeRecord};
use crate::redact::Redactor;

/// Why a record could not be read back from the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// No record was spooled for this template position.
    #[error("{}: probe #{position} of {total} was never recorded", path.display())]
    Missing {
        /// The spool file.
        path: PathBuf,
        /// Template position (0-based, all phases together).
        position: usize,
        /// Probes the run has.
        total: usize,
    },
    /// The record's line is shorter than written or is not a record: the file was cut or changed.
    #[error("{}: probe #{position} of {total} is cut short or damaged ({reason})", path.display())]
    Damaged {
        /// The spool file.
        path: PathBuf,
        /// Template position.
        position: usize,
        /// Probes the run has.
        total: usize,
        /// What was wrong.
        reason: String,
    },
}

impl From<SpoolError> for EvidenceError {
    fn from(error: SpoolError) -> Self {
        let path = match &error {
            SpoolError::Missing { path, .. } | SpoolError::Damaged { path, .. } => path.clone(),
        };
        EvidenceError::Corrupt { path, message: format!("the probe spool is incomplete: {error}") }
    }
}

/// The spool of one run: the file and where each template position's record is in it.
#[derive(Debug)]
pub struct ProbeSpool {
    /// The NDJSON file, opened for appending and reading.
    file: File,
    /// Its path, for errors.
    path: PathBuf,
    /// Bytes written so far: the next record's offset.
    len: u64,
    /// Offset and length of each position's line (without its newline), `None` until it is spooled.
    index: Vec<Option<(u64, u32)>>,
}

impl ProbeSpool {
    /// Creates the spool in the run folder `dir` for a run of `total` probes.
    pub fn create(dir: &Path, total: usize) -> Result<Self, EvidenceError> {
        let path = dir.join(EvidenceLayout::PROBE_SPOOL);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| EvidenceError::Io { path: path.clone(), source })?;
        Ok(Self { file, path, len: 0, index: vec![None; total] })
    }

    /// Appends the record of template position `position`, redacted, as one line.
    pub fn push(&mut self, position: usize, record: &ProbeRecord, redactor: &Redactor) -> Result<(), EvidenceError> {
        let io = |source| EvidenceError::Io { path: self.path.clone(), source };
        let json = serde_json::to_string(record).map_err(|e| io(e.into()))?;
        let mut line = redactor.text(&json).into_bytes();
        let length = u32::try_from(line.len()).map_err(|_| io(io::Error::other("record over 4 GiB")))?;
        line.push(b'\n');
        let slot = self.index.get_mut(position).ok_or_else(|| EvidenceError::Corrupt {
            path: self.path.clone(),
            message: format!("no probe #{position} in this run"),
        })?;
        (&self.file).write_all(&line).map_err(io)?;
        *slot = Some((self.len, length));
        self.len += line.len() as u64;
        Ok(())
    }

    /// How many positions the run has.
    pub fn total(&self) -> usize {
        self.index.len()
    }

    /// How many records were spooled.
    pub fn recorded(&self) -> usize {
        self.index.iter().filter(|slot| slot.is_some()).count()
    }

    /// Every record in template order; a position without its record is an error at that point.
    pub fn records(&self) -> impl Iterator<Item = Result<ProbeRecord, SpoolError>> + '_ {
        let mut buffer = Vec::new();
        (0..self.index.len()).map(move |position| self.read(position, &mut buffer))
    }

    fn read(&self, position: usize, buffer: &mut Vec<u8>) -> Result<ProbeRecord, SpoolError> {
        let total = self.index.len();
        let damaged = |reason: String| SpoolError::Damaged { path: self.path.clone(), position, total, reason };
        let Some((offset, length)) = self.index[position] else {
            return Err(SpoolError::Missing { path: self.path.clone(), position, total });
        };
        buffer.resize(length as usize + 1, 0);
        self.file.read_exact_at(buffer, offset).map_err(|e| damaged(e.to_string()))?;
        if buffer.pop() != Some(b'\n') {
            return Err(damaged("the line does not end where it was written".to_owned()));
        }
        serde_json::from_slice(buffer).map_err(|e| damaged(e.to_string()))
    }
}

/// The spool's records as `status.json`'s `probes` array, read back one at a time while serialising.
pub struct SpooledProbes<'a> {
    /// The spool to read.
    spool: &'a ProbeSpool,
    /// Set when serialising stopped at a record the spool does not hold, so the caller can report it whole.
    failure: RefCell<Option<SpoolError>>,
}

impl<'a> SpooledProbes<'a> {
    /// The records of `spool`, to be serialised once.
    pub fn new(spool: &'a ProbeSpool) -> Self {
        Self { spool, failure: RefCell::new(None) }
    }

    /// The spool error that stopped serialising, if any.
    pub fn take_failure(&self) -> Option<SpoolError> {
        self.failure.borrow_mut().take()
    }
}

impl Serialize for SpooledProbes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.spool.total()))?;
        for record in self.spool.records() {
            match record {
                Ok(record) => seq.serialize_element(&record)?,
                Err(error) => {
                    let message = error.to_string();
                    *self.failure.borrow_mut() = Some(error);
                    return Err(S::Error::custom(message));
                }
            }
        }
        seq.end()
    }
}

/// What a large run's documents list: not every probe, and they say so (see [`excerpt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Excerpt {
    /// Probes the run has.
    pub total: usize,
    /// Of those, Ready.
    pub ready: usize,
    /// Probes the documents list: the first of those not Ready, in template order.
    pub listed: usize,
}

impl Excerpt {
    /// The sentence every document of the run carries (Japanese, as the logs are written).
    pub fn sentence_ja(&self) -> String {
        let not_ready = self.total - self.ready;
        let unlisted = not_ready - self.listed;
        let rest = if unlisted > 0 { format!("、うち {unlisted} 件は未掲載") } else { String::new() };
        format!(
            "大規模な実行のため、この文書は Ready でない probe {} 件だけを一覧する（全 {} 件中 Ready {} 件、Ready でない {} 件{rest}）。全 probe は `status.json`・`har/run.har`・`junit.xml` と `connrun report html` にある。",
            self.listed, self.total, self.ready, not_ready
        )
    }
}

/// The records the run's documents render from: every one when the run has at most `limit` probes, otherwise
/// the first `limit` that are not Ready, with the [`Excerpt`] that says so.
pub fn excerpt(spool: &ProbeSpool, limit: usize) -> Result<(Vec<ProbeRecord>, Option<Excerpt>), SpoolError> {
    if spool.total() <= limit {
        return Ok((spool.records().collect::<Result<_, _>>()?, None));
    }
    let (mut listed, mut ready) = (Vec::new(), 0);
    for record in spool.records() {
        let record = record?;
        if record.ready {
            ready += 1;
        } else if listed.len() < limit {
            listed.push(record);
        }
    }
    let excerpt = Excerpt { total: spool.total(), ready, listed: listed.len() };
    Ok((listed, Some(excerpt)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::status::sample_status;

    fn record(id: &str) -> ProbeRecord {
        let mut record = sample_status().probes[0].clone();
        record.id = id.to_owned();
        record
    }

    fn ids(spool: &ProbeSpool) -> Vec<String> {
        spool.records().map(|r| r.expect("recorded").id).collect()
    }

    #[test]
    fn records_come_back_in_template_order_whatever_order_they_finished_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redactor = Redactor::new(Vec::<String>::new());
        let mut spool = ProbeSpool::create(dir.path(), 3).expect("create");
        for position in [2, 0, 1] {
            spool.push(position, &record(&format!("P{position}")), &redactor).expect("push");
        }
        assert_eq!(spool.recorded(), 3);
        assert_eq!(ids(&spool), ["P0", "P1", "P2"]);
    }

    #[test]
    fn a_cut_spool_or_a_missing_record_is_an_error_never_a_shorter_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redactor = Redactor::new(Vec::<String>::new());
        let mut spool = ProbeSpool::create(dir.path(), 3).expect("create");
        spool.push(0, &record("P0"), &redactor).expect("push");
        spool.push(1, &record("P1"), &redactor).expect("push");
        let results: Vec<_> = spool.records().collect();
        assert!(results[0].is_ok() && results[1].is_ok());
        assert!(matches!(results[2], Err(SpoolError::Missing { position: 2, total: 3, .. })), "{results:?}");

        let file = dir.path().join(EvidenceLayout::PROBE_SPOOL);
        let len = std::fs::metadata(&file).expect("stat").len();
        OpenOptions::new().write(true).open(&file).expect("open").set_len(len - 20).expect("cut");
        let second = spool.records().nth(1).expect("position 1");
        assert!(matches!(second, Err(SpoolError::Damaged { position: 1, .. })), "{second:?}");

        let streamed = SpooledProbes::new(&spool);
        assert!(serde_json::to_vec(&streamed).is_err(), "a cut spool never serialises as a complete list");
        let failure = streamed.take_failure().expect("the failure is kept");
        assert!(EvidenceError::from(failure).to_string().contains("probe #1 of 3"));
    }

    #[test]
    fn a_large_runs_documents_list_the_probes_not_ready_and_count_every_probe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redactor = Redactor::new(Vec::<String>::new());
        let mut spool = ProbeSpool::create(dir.path(), 5).expect("create");
        for position in 0..5 {
            let mut probe = record(&format!("P{position}"));
            probe.ready = position % 2 == 0;
            spool.push(position, &probe, &redactor).expect("push");
        }
        let (all, none) = excerpt(&spool, 5).expect("small");
        assert_eq!((all.len(), none), (5, None));
        let (listed, note) = excerpt(&spool, 1).expect("large");
        assert_eq!(listed.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["P1"]);
        let note = note.expect("an excerpt says so");
        assert_eq!(note, Excerpt { total: 5, ready: 3, listed: 1 });
        assert!(note.sentence_ja().contains("1 件は未掲載"), "{}", note.sentence_ja());
    }

    #[test]
    fn secrets_are_masked_before_a_record_reaches_the_spool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redactor = Redactor::new(["hunter2-secret".to_owned()]);
        let mut spool = ProbeSpool::create(dir.path(), 1).expect("create");
        let mut leaky = record("P0");
        leaky.check_failures = vec!["body had hunter2-secret".to_owned()];
        spool.push(0, &leaky, &redactor).expect("push");
        let text = std::fs::read_to_string(dir.path().join(EvidenceLayout::PROBE_SPOOL)).expect("read");
        assert!(!text.contains("hunter2-secret"), "{text}");
    }
}
