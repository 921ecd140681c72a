//! Writing `manifest.json` when a run is sealed: every file's size and SHA-256, sorted by path, streamed.
//!
//! A 100,000-probe run has about 600,000 files. Listing them all, hashing them into a list and then
//! serialising the list held ~200 MB; the folder is now walked one directory at a time in the order of the
//! full paths (a directory's entries sorted with `/` after a folder's name, which is exactly byte order of the
//! joined paths), each file hashed as it is reached and its entry written straight into the manifest.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use serde::Serialize;
use serde::ser::{Error as _, SerializeSeq};

use super::runid::RunId;
use super::seal_stat::{SEAL_STAT_FILE, StatWriter};
use super::{EvidenceError, MANIFEST_FILE, MANIFEST_SCHEMA_VERSION, ManifestEntry, io_at};

/// Read size when hashing files.
pub(super) const HASH_BUFFER: usize = 64 * 1024;

/// Size and SHA-256 of a file, read through `buffer` (reused across files: a large run has many thousands),
/// reading at most `max` bytes (verification passes one more than the manifest lists, so a file that grew
/// shows as changed without being read to its end).
pub(super) fn sha256_file(path: &Path, buffer: &mut [u8], max: u64) -> Result<(u64, String), EvidenceError> {
    sha256_open(File::open(path).map_err(io_at(path))?, path, buffer, max)
}

/// [`sha256_file`] of a file already open (`path` names it in errors).
pub(super) fn sha256_open(
    file: File,
    path: &Path,
    buffer: &mut [u8],
    max: u64,
) -> Result<(u64, String), EvidenceError> {
    let mut file = file.take(max);
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut size = 0u64;
    loop {
        let read = file.read(buffer).map_err(io_at(path))?;
        if read == 0 {
            break;
        }
        size += read as u64;
        context.update(&buffer[..read]);
    }
    Ok((size, hex::encode(context.finish().as_ref())))
}

/// Every file under `dir`, as `/`-separated paths relative to `root` (in no particular order).
pub(super) fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), EvidenceError> {
    walk_sorted(dir, &relative_prefix(root, dir), &mut |path| {
        out.push(path);
        Ok(())
    })
}

fn relative_prefix(root: &Path, dir: &Path) -> String {
    let relative = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let parts: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    parts.iter().map(|p| format!("{p}/")).collect()
}

/// Calls `visit` with every file under `dir` (paths prefixed with `prefix`), in byte order of the paths.
fn walk_sorted(
    dir: &Path,
    prefix: &str,
    visit: &mut dyn FnMut(String) -> Result<(), EvidenceError>,
) -> Result<(), EvidenceError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let is_dir = entry.file_type().map_err(io_at(&entry.path()))?.is_dir();
        let name = entry.file_name().to_string_lossy().into_owned();
        // A folder sorts as its name and a `/`, as every path inside it does.
        let key = if is_dir { format!("{name}/") } else { name.clone() };
        entries.push((key, name, is_dir));
    }
    entries.sort_unstable();
    for (key, name, is_dir) in entries {
        if is_dir {
            walk_sorted(&dir.join(&name), &format!("{prefix}{key}"), visit)?;
        } else {
            visit(format!("{prefix}{name}"))?;
        }
    }
    Ok(())
}

/// Hashes every file under `dir` and writes `manifest.json` (overwriting any previous one), entry by entry,
/// and beside it `manifest.stat`, each file's stat as it was hashed (`seal_stat.rs`). Returns how many files
/// it lists.
pub fn write_manifest(dir: &Path, run_id: &RunId) -> Result<usize, EvidenceError> {
    let path = dir.join(MANIFEST_FILE);
    let stat = StatWriter::create(dir)?;
    let files = Files { dir, stat: RefCell::new(stat), failure: RefCell::new(None), listed: RefCell::new(0) };
    let manifest = StreamedManifest { schema_version: MANIFEST_SCHEMA_VERSION, run_id: run_id.to_string(), files };
    let mut out = BufWriter::with_capacity(HASH_BUFFER, File::create(&path).map_err(io_at(&path))?);
    let written = serde_json::to_writer_pretty(&mut out, &manifest);
    if let Some(failure) = manifest.files.failure.borrow_mut().take() {
        return Err(failure);
    }
    written.map_err(|e| EvidenceError::Io { path: path.clone(), source: io::Error::from(e) })?;
    out.flush().map_err(io_at(&path))?;
    drop(out);
    if let Some(stat) = manifest.files.stat.into_inner() {
        let (_, manifest_sha256) = sha256_file(&path, &mut vec![0u8; HASH_BUFFER], u64::MAX)?;
        stat.finish(dir, &manifest_sha256)?;
    }
    Ok(manifest.files.listed.into_inner())
}

/// `manifest.json`'s shape ([`super::Manifest`]), its files produced while it is written.
#[derive(Serialize)]
struct StreamedManifest<'a> {
    /// Layout version.
    schema_version: u32,
    /// The RUN_ID the files belong to.
    run_id: String,
    /// Every file except the manifest and `manifest.stat`, sorted by path.
    files: Files<'a>,
}

/// The run folder's files as manifest entries, hashed one at a time while serialising.
struct Files<'a> {
    /// The run folder.
    dir: &'a Path,
    /// Where each file's stat is recorded as it is hashed (None where the platform has no ctime).
    stat: RefCell<Option<StatWriter>>,
    /// The error that stopped the walk, reported whole by [`write_manifest`].
    failure: RefCell<Option<EvidenceError>>,
    /// Entries written.
    listed: RefCell<usize>,
}

impl Serialize for Files<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        let mut buffer = vec![0u8; HASH_BUFFER];
        let mut written: Result<(), S::Error> = Ok(());
        let walked = walk_sorted(self.dir, "", &mut |path| {
            if path == MANIFEST_FILE || path == SEAL_STAT_FILE || written.is_err() {
                return Ok(());
            }
            let full = self.dir.join(&path);
            let file = File::open(&full).map_err(io_at(&full))?;
            if let Some(stat) = self.stat.borrow_mut().as_mut() {
                stat.record(self.dir, &file.metadata().map_err(io_at(&full))?)?;
            }
            let (size, sha256) = sha256_open(file, &full, &mut buffer, u64::MAX)?;
            written = seq.serialize_element(&ManifestEntry { path, size, sha256 });
            *self.listed.borrow_mut() += 1;
            Ok(())
        });
        written?;
        if let Err(error) = walked {
            let message = error.to_string();
            *self.failure.borrow_mut() = Some(error);
            return Err(S::Error::custom(message));
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_listed_in_byte_order_of_their_paths_without_the_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        for path in ["a.txt", "a/x", "a-b", "b/c/d", "manifest.json", "B"] {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, path.to_string_lossy().as_bytes()).expect("write");
        }
        let run_id: RunId = "20251119TscaleZ1".parse().expect("run id");
        assert_eq!(write_manifest(dir.path(), &run_id).expect("manifest"), 5);
        let manifest = super::super::read_manifest(&dir.path().join(MANIFEST_FILE)).expect("read");
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        assert_eq!(paths, sorted);
        assert_eq!(paths, ["B", "a-b", "a.txt", "a/x", "b/c/d"]);
    }
}
