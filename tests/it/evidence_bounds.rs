//! A sealed run's `manifest.json` and `status.json` are read within their bounds, and a manifest cannot make
//! `verify` read outside the run or read a file past the size it lists.

use std::path::Path;

use connrun::compare::runindex;
use connrun::evidence::limits::{MANIFEST_FILE, MAX_MANIFEST_ENTRIES, STATUS_FILE};
use connrun::evidence::{self, EvidenceError, Mismatch};

/// A file of `size` bytes that occupies no space (nothing is written).
fn sparse(path: &Path, size: u64) {
    std::fs::File::create(path).expect("create").set_len(size).expect("grow");
}

fn manifest_listing(files: &[(String, u64)]) -> String {
    let files: Vec<_> =
        files.iter().map(|(path, size)| serde_json::json!({"path": path, "size": size, "sha256": "00"})).collect();
    serde_json::json!({"schema_version": 1, "run_id": "20251119TaZ1", "files": files}).to_string()
}

fn corrupt_message(dir: &Path) -> String {
    match evidence::verify_dir(dir) {
        Err(error @ EvidenceError::Corrupt { .. }) => error.to_string(),
        other => panic!("expected a refusal of the manifest, got {other:?}"),
    }
}

#[test]
fn an_oversized_manifest_in_a_run_folder_is_refused_naming_the_file_and_the_bound() {
    let run = tempfile::tempdir().expect("temp dir");
    let size = MANIFEST_FILE.max_bytes + 1;
    sparse(&run.path().join("manifest.json"), size);

    let message = corrupt_message(run.path());

    let bound = format!("manifest.json: {size} bytes is over the limit of {} MiB for manifest.json", size >> 20);
    assert!(message.contains(&bound), "{message}");
}

#[test]
fn a_manifest_listing_more_files_than_the_maximum_is_refused() {
    let run = tempfile::tempdir().expect("temp dir");
    let files: Vec<(String, u64)> = (0..=MAX_MANIFEST_ENTRIES).map(|i| (format!("f{i}"), 0)).collect();
    std::fs::write(run.path().join("manifest.json"), manifest_listing(&files)).expect("write");

    let message = corrupt_message(run.path());

    let bound = format!("files: {} entries; a manifest lists at most {MAX_MANIFEST_ENTRIES} files", files.len());
    assert!(message.contains(&bound), "{message}");
}

#[test]
fn a_manifest_naming_a_path_outside_the_run_is_refused_before_anything_is_read() {
    let root = tempfile::tempdir().expect("temp dir");
    let run = root.path().join("run");
    std::fs::create_dir(&run).expect("run folder");
    std::fs::write(root.path().join("outside.txt"), "x").expect("outside file");
    std::fs::write(run.join("manifest.json"), manifest_listing(&[("../outside.txt".to_owned(), 1)])).expect("write");

    let message = corrupt_message(&run);

    assert!(message.contains("files[0].path: `../outside.txt` is not a path inside the run"), "{message}");
}

#[test]
fn a_file_larger_than_listed_is_changed_without_being_read() {
    let run = tempfile::tempdir().expect("temp dir");
    sparse(&run.path().join("big.bin"), 1 << 40);
    std::fs::write(run.path().join("manifest.json"), manifest_listing(&[("big.bin".to_owned(), 1)])).expect("write");

    let report = evidence::verify_dir(run.path()).expect("verifiable");

    assert_eq!(
        report.first_mismatch,
        Some(Mismatch::Changed {
            path: "big.bin".into(),
            expected: "1 bytes sha256:00".into(),
            actual: "1099511627776 bytes".into()
        })
    );
}

#[test]
fn an_oversized_status_json_is_refused_naming_the_file_and_the_bound() {
    let run = tempfile::tempdir().expect("temp dir");
    let size = STATUS_FILE.max_bytes + 1;
    sparse(&run.path().join("status.json"), size);

    let message = match runindex::read_status(run.path()) {
        Err(error @ runindex::RunIndexError::Corrupt { .. }) => error.to_string(),
        other => panic!("expected a refusal of status.json, got {other:?}"),
    };

    let bound = format!("status.json: {size} bytes is over the limit of {} MiB for status.json", size >> 20);
    assert!(message.contains(&bound), "{message}");
}
