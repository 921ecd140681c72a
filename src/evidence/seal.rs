//! Checking a sealed run folder against its `manifest.json`: whole (`connrun verify`), or before a command
//! reads it (`diff`, `report`).
//!
//! `verify` re-hashes every listed file and looks for unlisted ones: the full proof, and its cost is the
//! cost of opening every file (a 10,000-probe run has 60,000). A command that *reads* a run needs the same
//! answer for the listed files without that cost: [`check_before_reading`] re-hashes the files it reads, and
//! takes every other listed file as unchanged only when its inode, size, mtime and ctime are still those
//! recorded when it was hashed at the seal (`seal_stat.rs`); any other file is re-hashed. So a changed,
//! missing or cut-short file anywhere in the run refuses it, as a full re-hash would. Unlisted extra files
//! are left to `verify`: the commands never read them.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::limits::{self, BoundedReadError, MANIFEST_FILE as MANIFEST_LIMIT};
use super::manifest_write::{HASH_BUFFER, list_files, sha256_open};
use super::seal_stat::{SEAL_STAT_FILE, Stamps};
use super::{EvidenceError, MANIFEST_FILE, Manifest, ManifestEntry, Mismatch, parse_manifest, read_manifest};

/// Result of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The sealed run folder.
    pub dir: PathBuf,
    /// Files listed in the manifest.
    pub files_listed: usize,
    /// The first difference, if any.
    pub first_mismatch: Option<Mismatch>,
}

/// Re-hashes a sealed run folder against its manifest.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, EvidenceError> {
    let manifest = read_manifest(&dir.join(MANIFEST_FILE))?;
    let mut present = Vec::new();
    list_files(dir, dir, &mut present)?;
    present.retain(|p| p != MANIFEST_FILE && p != SEAL_STAT_FILE);
    let mut first_mismatch = first_difference(&manifest.files, &|_, part| check_in_order(dir, part))?;
    if first_mismatch.is_none() {
        present.sort();
        let listed: std::collections::BTreeSet<&str> = manifest.files.iter().map(|e| e.path.as_str()).collect();
        first_mismatch =
            present.into_iter().find(|p| !listed.contains(p.as_str())).map(|path| Mismatch::Unlisted { path });
    }
    Ok(VerifyReport { dir: dir.to_owned(), files_listed: manifest.files.len(), first_mismatch })
}

/// The first listed file that is missing or differs, checked on every core: the entries are cut into one
/// stretch of consecutive entries per thread, each stops at its first difference, and the earliest stretch's
/// answer wins, so the result is the one a check in manifest order gives. (A 10,000-probe run has 60,000
/// files; opening them, not hashing them, is most of the time.)
fn first_difference(entries: &[ManifestEntry], check: &Check) -> Result<Option<Mismatch>, EvidenceError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let stretch = entries.len().div_ceil(threads).max(1);
    let answers: Vec<Result<Option<Mismatch>, EvidenceError>> = std::thread::scope(|scope| {
        let checks: Vec<_> = entries
            .chunks(stretch)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || check(n * stretch, part)))
            .collect();
        checks.into_iter().map(|check| check.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    for answer in answers {
        if let Some(mismatch) = answer? {
            return Ok(Some(mismatch));
        }
    }
    Ok(None)
}

/// A check of a stretch of consecutive manifest entries (the first at the given index) that stops at the
/// first difference.
type Check<'a> = dyn Fn(usize, &[ManifestEntry]) -> Result<Option<Mismatch>, EvidenceError> + Sync + 'a;

/// The first of `entries` that is missing or differs: each file opened once, its size taken from the open
/// file, and a file of another size is changed without being read (it may be far larger than listed).
fn check_in_order(dir: &Path, entries: &[ManifestEntry]) -> Result<Option<Mismatch>, EvidenceError> {
    let mut buffer = vec![0u8; HASH_BUFFER];
    for entry in entries {
        if let Some(mismatch) = check_one(dir, entry, &mut buffer)? {
            return Ok(Some(mismatch));
        }
    }
    Ok(None)
}

/// Whether one listed file is missing or differs, read through `buffer` (reused across files).
fn check_one(dir: &Path, entry: &ManifestEntry, buffer: &mut [u8]) -> Result<Option<Mismatch>, EvidenceError> {
    let path = dir.join(&entry.path);
    let opened = File::open(&path).ok().and_then(|file| file.metadata().ok().map(|meta| (file, meta)));
    let Some((file, meta)) = opened.filter(|(_, meta)| meta.is_file()) else {
        return Ok(Some(Mismatch::Missing { path: entry.path.clone() }));
    };
    let actual = if meta.len() == entry.size {
        let (size, sha256) = sha256_open(file, &path, buffer, entry.size.saturating_add(1))?;
        (size != entry.size || sha256 != entry.sha256).then(|| format!("{size} bytes sha256:{sha256}"))
    } else {
        Some(format!("{} bytes", meta.len()))
    };
    Ok(actual.map(|actual| {
        let expected = format!("{} bytes sha256:{}", entry.size, entry.sha256);
        Mismatch::Changed { path: entry.path.clone(), expected, actual }
    }))
}

/// What [`check_before_reading`] found.
#[derive(Debug, Clone, Serialize)]
pub struct ReadCheck {
    /// Files listed in the manifest.
    pub files_listed: usize,
    /// Of them, the files re-hashed: those read, and those whose stat differs from the one recorded at the
    /// seal (all of them for a run without `manifest.stat`, or copied to other inodes).
    pub rehashed: usize,
    /// The first difference, if any.
    pub first_mismatch: Option<Mismatch>,
}

/// The check a command makes before it reads a sealed folder. Each of `reads` (paths relative to `dir`, as
/// the manifest spells them) must be listed and re-hash to its listed SHA-256: nothing unsealed is ever read
/// as evidence (a read file the manifest does not list is [`Mismatch::Unlisted`]). Every other listed file
/// must be unchanged since the seal by its stat, or re-hash to its listed SHA-256.
pub fn check_before_reading(dir: &Path, reads: &[&str]) -> Result<ReadCheck, EvidenceError> {
    let (manifest, manifest_sha256) = read_manifest_and_digest(&dir.join(MANIFEST_FILE))?;
    let files_listed = manifest.files.len();
    let read_indices = match check_reads(dir, &manifest, reads)? {
        Ok(indices) => indices,
        Err(mismatch) => return Ok(ReadCheck { files_listed, rehashed: reads.len(), first_mismatch: Some(mismatch) }),
    };
    let rehashed = AtomicUsize::new(read_indices.len());
    let stamps = Stamps::read(dir, &manifest_sha256, files_listed);
    let first_mismatch = first_difference(&manifest.files, &|start, part| {
        let mut buffer = vec![0u8; HASH_BUFFER];
        for (offset, entry) in part.iter().enumerate() {
            let index = start + offset;
            if read_indices.contains(&index) {
                continue;
            }
            let unchanged = stamps.as_ref().is_some_and(|stamps| {
                std::fs::metadata(dir.join(&entry.path)).is_ok_and(|meta| stamps.unchanged(index, &meta))
            });
            if unchanged {
                continue;
            }
            rehashed.fetch_add(1, Ordering::Relaxed);
            if let Some(mismatch) = check_one(dir, entry, &mut buffer)? {
                return Ok(Some(mismatch));
            }
        }
        Ok(None)
    })?;
    Ok(ReadCheck { files_listed, rehashed: rehashed.into_inner(), first_mismatch })
}

/// The first half of [`check_before_reading`] alone: each of `reads` listed and re-hashing to its listed
/// SHA-256, no other file looked at. For looks back over many earlier runs (diff's noise floor, report's
/// chart), which read one file of each and must not read a changed one, at the cost of that file.
pub fn check_read_files(dir: &Path, reads: &[&str]) -> Result<Option<Mismatch>, EvidenceError> {
    let manifest = read_manifest(&dir.join(MANIFEST_FILE))?;
    Ok(check_reads(dir, &manifest, reads)?.err())
}

/// Each of `reads` must be listed (else [`Mismatch::Unlisted`]) and re-hash to its listed SHA-256; their
/// indices in the manifest, or the first difference.
fn check_reads(dir: &Path, manifest: &Manifest, reads: &[&str]) -> Result<Result<Vec<usize>, Mismatch>, EvidenceError> {
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut indices = Vec::with_capacity(reads.len());
    for read in reads {
        // Searched, not bisected: the manifest is written sorted, but an edited one need not be.
        let Some(index) = manifest.files.iter().position(|entry| entry.path == *read) else {
            return Ok(Err(Mismatch::Unlisted { path: (*read).to_owned() }));
        };
        if let Some(mismatch) = check_one(dir, &manifest.files[index], &mut buffer)? {
            return Ok(Err(mismatch));
        }
        indices.push(index);
    }
    Ok(Ok(indices))
}

/// The manifest (checked as [`read_manifest`] checks it) and the SHA-256 of its bytes, which the stat file
/// must name.
fn read_manifest_and_digest(path: &Path) -> Result<(Manifest, String), EvidenceError> {
    let bytes = limits::read_bounded(path, &MANIFEST_LIMIT).map_err(|error| match error {
        BoundedReadError::Io(source) => EvidenceError::Io { path: path.to_owned(), source },
        BoundedReadError::TooLarge(message) => EvidenceError::Corrupt { path: path.to_owned(), message },
    })?;
    let manifest =
        parse_manifest(&bytes).map_err(|message| EvidenceError::Corrupt { path: path.to_owned(), message })?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    Ok((manifest, hex::encode(digest.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::runid::RunId;
    use crate::evidence::write_manifest;

    /// A sealed folder of `files` files plus `status.json`, hashed well after they were written (so no file
    /// is within the file system clock's tick of the seal).
    fn sealed(files: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("status.json"), b"{\"probes\":[]}").expect("status");
        for n in 0..files {
            let path = dir.path().join(format!("httpdump/P{n:03}/response.body"));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, format!("body {n}")).expect("body");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let run_id: RunId = "20251119TsealZ1".parse().expect("run id");
        write_manifest(dir.path(), &run_id).expect("seal");
        dir
    }

    #[test]
    fn a_freshly_sealed_run_is_checked_by_stat_and_only_the_read_file_is_rehashed() {
        let dir = sealed(20);

        let check = check_before_reading(dir.path(), &["status.json"]).expect("check");

        assert_eq!((check.files_listed, check.rehashed, check.first_mismatch), (21, 1, None));
        assert_eq!(verify_dir(dir.path()).expect("verify").first_mismatch, None, "manifest.stat is not unlisted");
    }

    #[test]
    fn a_same_size_change_to_a_file_that_is_not_read_is_found_and_named() {
        let dir = sealed(20);
        let body = dir.path().join("httpdump/P007/response.body");
        std::fs::write(&body, b"body X").expect("tamper");

        let check = check_before_reading(dir.path(), &["status.json"]).expect("check");

        let Some(Mismatch::Changed { path, .. }) = check.first_mismatch else { panic!("{check:?}") };
        assert_eq!(path, "httpdump/P007/response.body");
    }

    #[test]
    fn a_changed_read_file_and_a_missing_file_are_named() {
        let dir = sealed(3);
        std::fs::write(dir.path().join("status.json"), b"{\"probes\":[1]}").expect("tamper");
        let changed = check_before_reading(dir.path(), &["status.json"]).expect("check");
        let dir = sealed(3);
        std::fs::remove_file(dir.path().join("httpdump/P001/response.body")).expect("remove");
        let missing = check_before_reading(dir.path(), &["status.json"]).expect("check");
        let unlisted = check_before_reading(dir.path(), &["other.json"]).expect("check");

        assert!(matches!(changed.first_mismatch, Some(Mismatch::Changed { ref path, .. }) if path == "status.json"));
        assert_eq!(missing.first_mismatch, Some(Mismatch::Missing { path: "httpdump/P001/response.body".into() }));
        assert_eq!(unlisted.first_mismatch, Some(Mismatch::Unlisted { path: "other.json".into() }));
    }

    #[test]
    fn without_a_stat_file_that_fits_the_manifest_every_file_is_rehashed() {
        // Arrange: one run without its stat file, one whose stat file names another manifest, one copied to
        // new inodes, one whose sealing started (by its stat file) before every file's last change.
        let (gone, other, copied, racy) = (sealed(5), sealed(5), sealed(5), sealed(5));
        std::fs::remove_file(gone.path().join(SEAL_STAT_FILE)).expect("remove");
        let text = std::fs::read_to_string(other.path().join(SEAL_STAT_FILE)).expect("stat");
        let (head, _) = text.trim_end().rsplit_once(' ').expect("trailer");
        std::fs::write(other.path().join(SEAL_STAT_FILE), format!("{head} {}\n", "0".repeat(64))).expect("edit");
        let copy = tempfile::tempdir().expect("tempdir");
        for entry in walk(copied.path()) {
            let to = copy.path().join(entry.strip_prefix(copied.path()).expect("inside"));
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&entry, &to).expect("copy");
        }
        let text = std::fs::read_to_string(racy.path().join(SEAL_STAT_FILE)).expect("stat");
        let (first, rest) = text.split_once('\n').expect("lines");
        let early = format!("{} 0", first.rsplit_once(' ').expect("header").0);
        std::fs::write(racy.path().join(SEAL_STAT_FILE), format!("{early}\n{rest}")).expect("edit");

        for dir in [gone.path(), other.path(), copy.path(), racy.path()] {
            // Act
            let check = check_before_reading(dir, &["status.json"]).expect("check");

            // Assert
            assert_eq!((check.rehashed, check.first_mismatch), (6, None), "{}", dir.display());
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            if entry.file_type().expect("type").is_dir() {
                out.extend(walk(&entry.path()));
            } else {
                out.push(entry.path());
            }
        }
        out
    }
}
