//! An evidence file written through the redactor as it is produced (see [`super::RunFolder::create_redacted`]).
//!
//! status.json, the HAR and the rendered reports of a 1,000-probe run are megabytes; serialising them straight
//! into their files means neither the text nor its redacted copy is ever held whole in memory. Writes are
//! gathered into [`REDACTED_CHUNK`]-sized chunks so the redactor scans large pieces, and whatever it holds back
//! (a line that may still continue into a secret) is written by [`RedactedFile::finish`].

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use super::EvidenceError;
use crate::redact::{RedactingWriter, Redactor};

/// How much a [`RedactedFile`] gathers before redacting and writing it.
const REDACTED_CHUNK: usize = 64 * 1024;

/// An evidence file being written through the redactor (see [`super::RunFolder::create_redacted`]).
pub struct RedactedFile<'r> {
    /// Gathers small writes so the redactor sees large chunks.
    out: io::BufWriter<RedactingWriter<'r, File>>,
    /// The file, for errors.
    path: PathBuf,
}

impl<'r> RedactedFile<'r> {
    /// Writes to `file` (at `path`) through `redactor`.
    pub(super) fn new(file: File, path: PathBuf, redactor: &'r Redactor) -> Self {
        Self { out: io::BufWriter::with_capacity(REDACTED_CHUNK, RedactingWriter::new(redactor, file)), path }
    }

    /// The error for a failed write to this file.
    pub fn error(&self, source: io::Error) -> EvidenceError {
        EvidenceError::Io { path: self.path.clone(), source }
    }

    /// Writes out what is still buffered or held back by the redactor and closes the file.
    pub fn finish(self) -> Result<(), EvidenceError> {
        let path = self.path;
        let redacting =
            self.out.into_inner().map_err(|e| EvidenceError::Io { path: path.clone(), source: e.into_error() })?;
        redacting.finish().map(drop).map_err(|source| EvidenceError::Io { path, source })
    }
}

impl Write for RedactedFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
