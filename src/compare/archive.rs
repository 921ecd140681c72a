//! `connrun archive` and archive verification: one `.tar.gz` per run, checkable without unpacking.
//!
//! The evidence is the record, and records get moved (attached to tickets, copied to shared drives), so a
//! run packs into one gzip'd tar with its `manifest.json` first, every file under `<RUN_ID>/`. The folder is
//! verified before packing (a tampered run is never archived), files are streamed (never held whole), and
//! the archive is written next to its final name and renamed, so a half-written archive never looks done.
//! [`verify_archive`] streams the archive back and re-hashes each entry against the manifest inside it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::evidence::{self, MANIFEST_FILE, Manifest, Mismatch, VerifyReport};

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
    let manifest = read_manifest(&run_dir.join(MANIFEST_FILE))?;
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

fn read_manifest(path: &Path) -> Result<Manifest, ArchiveError> {
    let bytes = std::fs::read(path).map_err(io_at(path))?;
    serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Manifest { path: path.to_owned(), message: e.to_string() })
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
/// difference the way folder verification does (paths relative to the run).
pub fn verify_archive(path: &Path) -> Result<VerifyReport, ArchiveError> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut hashed: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    for entry in archive.entries().map_err(io_at(path))? {
        let mut entry = entry.map_err(io_at(path))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(io_at(path))?.to_string_lossy().replace('\\', "/");
        let relative = name.split_once('/').map_or(name.clone(), |(_, rest)| rest.to_owned());
        if relative == MANIFEST_FILE {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io_at(path))?;
            manifest = Some(serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Manifest {
                path: path.to_owned(),
                message: format!("{MANIFEST_FILE}: {e}"),
            })?);
            continue;
        }
        let digest = size_and_sha256(&mut entry).map_err(io_at(path))?;
        hashed.insert(relative, digest);
    }
    let manifest = manifest.ok_or_else(|| ArchiveError::Manifest {
        path: path.to_owned(),
        message: format!("no {MANIFEST_FILE} in the archive"),
    })?;
    let mut first_mismatch = None;
    for entry in &manifest.files {
        match hashed.get(&entry.path) {
            None => first_mismatch = Some(Mismatch::Missing { path: entry.path.clone() }),
            Some((size, sha256)) if *size != entry.size || *sha256 != entry.sha256 => {
                first_mismatch = Some(Mismatch::Changed {
                    path: entry.path.clone(),
                    expected: format!("{} bytes sha256:{}", entry.size, entry.sha256),
                    actual: format!("{size} bytes sha256:{sha256}"),
                });
            }
            Some(_) => continue,
        }
        break;
    }
    if first_mismatch.is_none() {
        first_mismatch = hashed
            .keys()
            .find(|p| !manifest.files.iter().any(|e| &e.path == *p))
            .map(|p| Mismatch::Unlisted { path: p.clone() });
    }
    Ok(VerifyReport { dir: path.to_owned(), files_listed: manifest.files.len(), first_mismatch })
}
