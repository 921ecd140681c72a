//! `connrun archive` and archive verification: one `.tar.gz` per run, checkable without unpacking.
//!
//! The evidence is the record, and records get moved (attached to tickets, copied to shared drives), so a
//! run packs into one gzip'd tar with its `manifest.json` first, every file under `<RUN_ID>/`. The folder is
//! verified before packing (a tampered run is never archived), files are streamed (never held whole), and
//! the archive is written next to its final name and renamed, so a half-written archive never looks done.
//! [`verify_archive`] streams the archive back and re-hashes each entry against the manifest inside it.
//! Nothing in an archive is trusted before it is checked: the manifest must come first and is read within
//! its size bound, the number of entries is bounded, and an entry is hashed only when the manifest lists it
//! with the size its header gives (limits in [`crate::evidence::limits`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::evidence::limits::{
    self, ARCHIVE_EXTENSION, BoundedReadError, MANIFEST_FILE as MANIFEST_LIMIT, MAX_ARCHIVE_ENTRIES,
};
use crate::evidence::{self, MANIFEST_FILE, Manifest, ManifestEntry, Mismatch, VerifyReport};

/// Why an archive could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The run folder does not match its manifest, so it is not archived.
    #[error("{}: refusing to archive a run that differs from its manifest: {mismatch}", dir.display())]
    Tampered {
        /// The run folder.
        dir: PathBuf,
        /// The first difference.
        mismatch: Mismatch,
    },
    /// The run folder could not be verified.
    #[error(transparent)]
    Evidence(#[from] evidence::EvidenceError),
    /// The archive holds no readable `manifest.json`.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The archive breaks a bound or its layout: too many entries, the manifest not first, an entry twice.
    #[error("{}: {message}", path.display())]
    Refused {
        /// The archive.
        path: PathBuf,
        /// What is wrong and what the bound is.
        message: String,
    },
    /// The output file exists already; archives are never overwritten.
    #[error("{} exists; archives are never overwritten", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_owned(), source }
}

/// What was archived.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveSummary {
    /// The `.tar.gz` written.
    pub archive: PathBuf,
    /// Files packed (manifest included).
    pub files: usize,
    /// Size of the archive in bytes.
    pub bytes: u64,
}

/// True when a `verify` argument names an archive rather than a RUN_ID.
pub fn looks_like_archive(argument: &str) -> bool {
    argument.ends_with(".tar.gz") || argument.ends_with(".tgz")
}

/// Default archive path for a run folder: `<suite folder>/<RUN_ID>.tar.gz`, next to the run.
pub fn default_output(run_dir: &Path) -> PathBuf {
    let name = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".to_owned());
    run_dir.with_file_name(format!("{name}.tar.gz"))
}

/// Verifies `run_dir` against its manifest and packs it into `output` (manifest first, then the files in
/// manifest order, each under `<RUN_ID>/`).
pub fn create(run_dir: &Path, output: &Path) -> Result<ArchiveSummary, ArchiveError> {
    let report = evidence::verify_dir(run_dir)?;
    if let Some(mismatch) = report.first_mismatch {
        return Err(ArchiveError::Tampered { dir: run_dir.to_owned(), mismatch });
    }
    if output.exists() {
        return Err(ArchiveError::Exists { path: output.to_owned() });
    }
    let manifest = evidence::read_manifest(&run_dir.join(MANIFEST_FILE))?;
    let root = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| manifest.run_id.clone());
    let partial = output.with_file_name(format!(
        ".{}.partial",
        output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let file = File::create(&partial).map_err(io_at(&partial))?;
    let encoder = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut paths = vec![MANIFEST_FILE.to_owned()];
    paths.extend(manifest.files.iter().map(|f| f.path.clone()));
    for relative in &paths {
        let source = run_dir.join(relative);
        let mut file = File::open(&source).map_err(io_at(&source))?;
        builder.append_file(format!("{root}/{relative}"), &mut file).map_err(io_at(&source))?;
    }
    let encoder = builder.into_inner().map_err(io_at(&partial))?;
    let mut writer = encoder.finish().map_err(io_at(&partial))?;
    writer.flush().map_err(io_at(&partial))?;
    drop(writer);
    std::fs::rename(&partial, output).map_err(io_at(output))?;
    let bytes = std::fs::metadata(output).map_err(io_at(output))?.len();
    Ok(ArchiveSummary { archive: output.to_owned(), files: paths.len(), bytes })
}

/// Size and lower-case hex SHA-256 of everything `reader` yields, read in 64 KiB chunks.
fn size_and_sha256(reader: &mut impl Read) -> io::Result<(u64, String)> {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        context.update(&buffer[..read]);
    }
    Ok((size, hex::encode(context.finish().as_ref())))
}

/// Streams an archive and checks every entry against the `manifest.json` inside it; reports the first
/// difference the way folder verification does (paths relative to the run). The manifest must be the first
/// file; extension headers (long names) are read within their own small bound, never whole.
pub fn verify_archive(path: &Path) -> Result<VerifyReport, ArchiveError> {
    verify_archive_within(path, MAX_ARCHIVE_ENTRIES)
}

/// [`verify_archive`] with the bound on the number of entries given (tests use a small one).
fn verify_archive_within(path: &Path, max_entries: usize) -> Result<VerifyReport, ArchiveError> {
    let refuse = |message: String| ArchiveError::Refused { path: path.to_owned(), message };
    let file = File::open(path).map_err(io_at(path))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut tally: Option<Tally> = None;
    let mut long_name: Option<String> = None;
    for (index, entry) in archive.entries().map_err(io_at(path))?.raw(true).enumerate() {
        if index >= max_entries {
            return Err(refuse(format!(
                "more than {max_entries} entries; a run archive holds its manifest and at most {} files",
                limits::MAX_MANIFEST_ENTRIES
            )));
        }
        let mut entry = entry.map_err(io_at(path))?;
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() || kind.is_pax_local_extensions() {
            let bytes = limits::read_to_limit(&mut entry, &ARCHIVE_EXTENSION).map_err(|e| refuse(e.to_string()))?;
            long_name = if kind.is_gnu_longname() { Some(gnu_long_name(&bytes)) } else { pax_path(&bytes) };
            continue;
        }
        let name = match long_name.take() {
            Some(name) => name,
            None => entry.path().map_err(io_at(path))?.to_string_lossy().into_owned(),
        };
        if !kind.is_file() {
            continue;
        }
        let name = name.replace('\\', "/");
        let relative = name.split_once('/').map_or(name.as_str(), |(_, rest)| rest);
        match &mut tally {
            None if relative == MANIFEST_FILE => tally = Some(Tally::new(read_archived_manifest(path, &mut entry)?)),
            None => {
                return Err(refuse(format!(
                    "the first file is `{relative}`, not {MANIFEST_FILE} (connrun archive writes the manifest first)"
                )));
            }
            Some(tally) => tally.entry(relative, &mut entry).map_err(|e| match e {
                TallyError::Io(source) => ArchiveError::Io { path: path.to_owned(), source },
                TallyError::Refused(message) => refuse(message),
            })?,
        }
    }
    let tally = tally.ok_or_else(|| ArchiveError::Manifest {
        path: path.to_owned(),
        message: format!("no {MANIFEST_FILE} in the archive"),
    })?;
    Ok(VerifyReport { dir: path.to_owned(), files_listed: tally.manifest.files.len(), first_mismatch: tally.finish() })
}

/// The manifest entry of an archive, read within its bound and checked like a folder's.
fn read_archived_manifest(path: &Path, entry: &mut impl Read) -> Result<Manifest, ArchiveError> {
    let manifest_error = |message: String| ArchiveError::Manifest {
        path: path.to_owned(),
        message: format!("{MANIFEST_FILE}: {message}"),
    };
    let bytes = limits::read_to_limit(entry, &MANIFEST_LIMIT).map_err(|error| match error {
        BoundedReadError::Io(source) => ArchiveError::Io { path: path.to_owned(), source },
        BoundedReadError::TooLarge(message) => manifest_error(message),
    })?;
    evidence::parse_manifest(&bytes).map_err(manifest_error)
}

/// A GNU long name: the bytes up to the first NUL.
fn gnu_long_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The `path` record of a PAX extended header (`<len> path=<value>\n`), if any.
fn pax_path(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines().find_map(|line| line.split_once(' ')?.1.strip_prefix("path=").map(str::to_owned))
}

/// What the entries of an archive showed against its manifest, holding nothing the manifest does not list.
struct Tally {
    /// The manifest read from the archive.
    manifest: Manifest,
    /// The manifest's entries by path, for lookups.
    listed: BTreeMap<String, ManifestEntry>,
    /// Per listed path found: its size, and its SHA-256 when the size matched (otherwise it is not read).
    found: BTreeMap<String, (u64, Option<String>)>,
    /// The first (by name) file the manifest does not list.
    first_unlisted: Option<String>,
}

/// Why an archive entry could not be tallied.
enum TallyError {
    /// Reading the entry failed.
    Io(io::Error),
    /// The entry breaks the archive's layout.
    Refused(String),
}

impl Tally {
    fn new(manifest: Manifest) -> Self {
        let listed = manifest.files.iter().map(|e| (e.path.clone(), e.clone())).collect();
        Self { manifest, listed, found: BTreeMap::new(), first_unlisted: None }
    }

    /// Hashes one entry when the manifest lists it with the entry's size; records anything else.
    fn entry(&mut self, relative: &str, entry: &mut tar::Entry<'_, impl Read>) -> Result<(), TallyError> {
        if relative == MANIFEST_FILE || self.found.contains_key(relative) {
            return Err(TallyError::Refused(format!("`{relative}` appears twice in the archive")));
        }
        let Some(listed) = self.listed.get(relative) else {
            if self.first_unlisted.as_deref().is_none_or(|first| relative < first) {
                self.first_unlisted = Some(relative.to_owned());
            }
            return Ok(());
        };
        let size = entry.size();
        let sha256 = if size == listed.size {
            Some(size_and_sha256(&mut entry.take(size)).map_err(TallyError::Io)?.1)
        } else {
            None
        };
        self.found.insert(relative.to_owned(), (size, sha256));
        Ok(())
    }

    /// The first difference in manifest order, then the first unlisted file.
    fn finish(&self) -> Option<Mismatch> {
        for entry in &self.manifest.files {
            let actual = match self.found.get(&entry.path) {
                None => return Some(Mismatch::Missing { path: entry.path.clone() }),
                Some((size, None)) => format!("{size} bytes"),
                Some((size, Some(sha256))) if *sha256 != entry.sha256 => format!("{size} bytes sha256:{sha256}"),
                Some(_) => continue,
            };
            let expected = format!("{} bytes sha256:{}", entry.size, entry.sha256);
            return Some(Mismatch::Changed { path: entry.path.clone(), expected, actual });
        }
        self.first_unlisted.clone().map(|path| Mismatch::Unlisted { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_with_more_entries_than_the_bound_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("many.tar.gz");
        let writer = flate2::write::GzEncoder::new(File::create(&path).expect("create"), flate2::Compression::fast());
        let mut builder = tar::Builder::new(writer);
        let manifest = br#"{"schema_version":1,"run_id":"20251119TaZ1","files":[]}"#;
        for name in ["r/manifest.json", "r/a", "r/b", "r/c"] {
            let mut header = tar::Header::new_gnu();
            let data: &[u8] = if name.ends_with(".json") { manifest } else { b"x" };
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, name, data).expect("append");
        }
        builder.into_inner().expect("tar").finish().expect("gzip");

        let within = verify_archive_within(&path, 4).expect("four entries are within a bound of four");
        let refused = verify_archive_within(&path, 3).expect_err("refused").to_string();

        assert!(matches!(within.first_mismatch, Some(Mismatch::Unlisted { ref path }) if path == "a"));
        assert!(refused.contains("many.tar.gz: more than 3 entries"), "{refused}");
    }

    #[test]
    fn long_names_come_from_gnu_and_pax_headers() {
        assert_eq!(gnu_long_name(b"run/a/very/long/name\0\0"), "run/a/very/long/name");
        assert_eq!(pax_path(b"30 mtime=1.5\n27 path=run/from/pax.txt\n").as_deref(), Some("run/from/pax.txt"));
        assert_eq!(pax_path(b"12 mtime=1\n"), None);
    }
}
