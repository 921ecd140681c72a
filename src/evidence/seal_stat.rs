//! `manifest.stat`: what each sealed file looked like to the file system when it was hashed, so that a command
//! reading a run can tell "unchanged since the seal" from a `stat` instead of a re-read of 60,000 files.
//!
//! It is git's index applied to a run: beside each manifest entry, the file's inode, size, modification time
//! and change time (ctime) as they were when the file was opened to be hashed. Any write to a file, and any
//! `touch`, `chmod` or replacement, sets its ctime to the file system's clock, which no unprivileged call can
//! set back; so a file whose four values are still the recorded ones holds, as far as a `stat` can tell, the
//! bytes that were hashed.
//! Anything else is re-hashed against the manifest: a different value, a file copied elsewhere (new inodes),
//! a stat file missing, cut short, or written for another manifest (it ends with the manifest's SHA-256).
//!
//! The one race is the file system's clock granularity: a file changed in the same clock tick as it was
//! hashed keeps its ctime. So the stat file records the file system's own time when sealing began (the
//! mtime of the stat file, created first), and a file whose recorded ctime or mtime is not older than that is
//! never trusted from its stat: it is re-hashed at every read. The file is a cache and proves nothing by
//! itself; it is not listed in the manifest, and whoever can rewrite it could rewrite the manifest too. Like
//! git's index it cannot see what a `stat` cannot (a clock stepped back by root, writes through a shared
//! memory map, timestamps lost in a crash): the full proof is `connrun verify`, which re-hashes every file.
//!
//! Format (text, one line per manifest entry, in manifest order):
//! `connrun-seal-stat 1 <racy_from_ns>` / `<ino> <size> <mtime_ns> <ctime_ns>` … / `end <entries> <sha256>`.

use std::fs::{File, Metadata};
use std::io::{BufWriter, Write};
use std::path::Path;

use super::{EvidenceError, io_at};

/// The stat file's name inside the run folder (beside `manifest.json`; not listed in it).
pub const SEAL_STAT_FILE: &str = super::EvidenceLayout::SEAL_STAT;
/// The first word of the stat file, with its format version.
const MAGIC: &str = "connrun-seal-stat 1";
/// Bytes one entry line takes at most (four decimal numbers), for the bound on reading the file back.
const MAX_LINE: u64 = 4 * 40;

/// A file's identity and times as recorded: equal values mean the bytes hashed are still its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// The stamp of an open file's metadata (None where the platform has no inode and ctime).
    pub(super) fn of(meta: &Metadata) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
            Some(Self {
                ino: meta.ino(),
                size: meta.len(),
                mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }
}

/// Writes the stat file while the manifest is written.
pub(super) struct StatWriter {
    /// The stat file, open for writing; its first line holds the file system's time when sealing began.
    out: BufWriter<File>,
    /// Entry lines written.
    entries: usize,
}

impl StatWriter {
    /// Creates the stat file in `dir` and reads the sealing start time off its own mtime. None where the
    /// platform has no ctime (every read then re-hashes).
    pub(super) fn create(dir: &Path) -> Result<Option<Self>, EvidenceError> {
        let path = dir.join(SEAL_STAT_FILE);
        let file = File::create(&path).map_err(io_at(&path))?;
        let Some(start) = Stamp::of(&file.metadata().map_err(io_at(&path))?) else {
            drop(file);
            std::fs::remove_file(&path).map_err(io_at(&path))?;
            return Ok(None);
        };
        let mut out = BufWriter::new(file);
        writeln!(out, "{MAGIC} {}", start.mtime_ns).map_err(io_at(&path))?;
        Ok(Some(Self { out, entries: 0 }))
    }

    /// Records the next manifest entry's file, as its metadata was when it was opened to be hashed.
    pub(super) fn record(&mut self, dir: &Path, meta: &Metadata) -> Result<(), EvidenceError> {
        let path = dir.join(SEAL_STAT_FILE);
        // A platform without stamps never gets a writer; a line left out would void the file, never mislead.
        let Some(stamp) = Stamp::of(meta) else { return Ok(()) };
        writeln!(self.out, "{} {} {} {}", stamp.ino, stamp.size, stamp.mtime_ns, stamp.ctime_ns)
            .map_err(io_at(&path))?;
        self.entries += 1;
        Ok(())
    }

    /// Ends the file with the entry count and the SHA-256 of the manifest just written.
    pub(super) fn finish(mut self, dir: &Path, manifest_sha256: &str) -> Result<(), EvidenceError> {
        let path = dir.join(SEAL_STAT_FILE);
        writeln!(self.out, "end {} {manifest_sha256}", self.entries).map_err(io_at(&path))?;
        self.out.flush().map_err(io_at(&path))
    }
}

/// A run's stat file, read back and matched to its manifest.
#[derive(Debug)]
pub(super) struct Stamps {
    /// The file system's time when sealing began: a file whose recorded ctime is not older may have changed
    /// in the same clock tick after it was hashed, so it is never trusted from its stat.
    racy_from_ns: i128,
    /// One per manifest entry, in manifest order.
    stamps: Vec<Stamp>,
}

impl Stamps {
    /// Reads `dir`'s stat file; None unless it is whole and was written for the manifest whose SHA-256 is
    /// `manifest_sha256` with `entries` entries (then every file is re-hashed instead).
    pub(super) fn read(dir: &Path, manifest_sha256: &str, entries: usize) -> Option<Self> {
        let path = dir.join(SEAL_STAT_FILE);
        let bound = (entries as u64 + 2).saturating_mul(MAX_LINE);
        if std::fs::metadata(&path).ok()?.len() > bound {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let mut lines = text.lines();
        let racy_from_ns = lines.next()?.strip_prefix(MAGIC)?.trim().parse().ok()?;
        let mut stamps = Vec::with_capacity(entries);
        for line in lines.by_ref().take(entries) {
            let mut fields = line.split(' ');
            let mut next = || fields.next()?.parse::<i128>().ok();
            let (ino, size, mtime_ns, ctime_ns) = (next()?, next()?, next()?, next()?);
            stamps.push(Stamp { ino: u64::try_from(ino).ok()?, size: u64::try_from(size).ok()?, mtime_ns, ctime_ns });
        }
        let trailer = format!("end {entries} {manifest_sha256}");
        (stamps.len() == entries && lines.next()? == trailer && lines.next().is_none())
            .then_some(Self { racy_from_ns, stamps })
    }

    /// Whether entry `index`'s file is, by its metadata now, unchanged since it was hashed at the seal.
    pub(super) fn unchanged(&self, index: usize, now: &Metadata) -> bool {
        let Some(recorded) = self.stamps.get(index) else { return false };
        // The later of the two times: where ctime is not a change time (some file systems), mtime still moves.
        recorded.ctime_ns.max(recorded.mtime_ns) < self.racy_from_ns
            && Stamp::of(now).is_some_and(|now| now == *recorded)
    }
}
