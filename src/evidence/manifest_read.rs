//! Reading a `manifest.json` back, bounded: from a run folder or from an archive entry.
//!
//! `verify` and `archive` trust nothing they read: a manifest may have been edited, truncated or replaced
//! by something that is not a manifest at all. It is read up to [`MANIFEST_FILE`]'s size, may list at
//! most [`MAX_MANIFEST_ENTRIES`] files, and every listed path must stay inside the run (relative, no `..`),
//! so verification never reads outside the folder, never holds an unbounded file, and refuses with a
//! sentence naming the file and the bound.

use std::collections::BTreeSet;
use std::path::Path;

use super::limits::{self, BoundedReadError, MANIFEST_FILE, MAX_MANIFEST_ENTRIES};
use super::{EvidenceError, Manifest};

/// Reads and checks the manifest at `path`; errors name the file.
pub fn read_manifest(path: &Path) -> Result<Manifest, EvidenceError> {
    let bytes = limits::read_bounded(path, &MANIFEST_FILE).map_err(|error| match error {
        BoundedReadError::Io(source) => EvidenceError::Io { path: path.to_owned(), source },
        BoundedReadError::TooLarge(message) => EvidenceError::Corrupt { path: path.to_owned(), message },
    })?;
    parse_manifest(&bytes).map_err(|message| EvidenceError::Corrupt { path: path.to_owned(), message })
}

/// Parses manifest bytes already read within [`MANIFEST_FILE`]'s bound, checking the number of entries,
/// their paths, and that no path is listed twice.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    if bytes.len() as u64 > MANIFEST_FILE.max_bytes {
        return Err(MANIFEST_FILE.refusal(bytes.len() as u64, false));
    }
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if manifest.files.len() > MAX_MANIFEST_ENTRIES {
        return Err(format!(
            "files: {} entries; a manifest lists at most {MAX_MANIFEST_ENTRIES} files, \
             so this is not one connrun wrote",
            manifest.files.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for (index, entry) in manifest.files.iter().enumerate() {
        if !is_inside_run(&entry.path) {
            return Err(format!(
                "files[{index}].path: `{}` is not a path inside the run (relative, `/`-separated, no `.` or `..`)",
                entry.path.chars().take(200).collect::<String>()
            ));
        }
        if !seen.insert(entry.path.as_str()) {
            return Err(format!("files[{index}].path: `{}` is listed twice", entry.path));
        }
    }
    Ok(manifest)
}

/// Whether a manifest path names a file inside the run folder: relative, `/`-separated, plain components.
pub fn is_inside_run(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 4096
        && !path.contains(['\\', '\0'])
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_run_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\b"] {
            assert!(!is_inside_run(bad), "{bad:?} should be refused");
        }
        assert!(is_inside_run("httpdump/PHR-06/request.http"));
    }

    #[test]
    fn a_manifest_listing_a_path_outside_the_run_names_it() {
        let json = br#"{"schema_version":1,"run_id":"20251119TaZ1",
                        "files":[{"path":"../../etc/passwd","size":1,"sha256":"00"}]}"#;

        let message = parse_manifest(json).unwrap_err();

        assert!(message.starts_with("files[0].path: `../../etc/passwd` is not a path inside the run"), "{message}");
    }
}
