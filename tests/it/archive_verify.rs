//! `connrun archive` and `connrun verify <ARCHIVE>` on a real run.

use crate::routine_support;

use std::io::Read;
use std::path::Path;

use routine_support::{connrun, phr_seq, run_against, text};

use connrun::cli::demo::DemoEnvironment;

/// Rewrites `from` into `to`, flipping one byte of the entry whose path ends with `victim`.
fn copy_with_changed_entry(from: &Path, to: &Path, victim: &str) {
    let reader = flate2::read::GzDecoder::new(std::fs::File::open(from).expect("archive"));
    let mut archive = tar::Archive::new(reader);
    let writer = flate2::write::GzEncoder::new(std::fs::File::create(to).expect("copy"), flate2::Compression::fast());
    let mut builder = tar::Builder::new(writer);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read entry");
        if path.to_string_lossy().ends_with(victim) {
            bytes[0] ^= 0x20;
        }
        let mut header = entry.header().clone();
        builder.append_data(&mut header, &path, &bytes[..]).expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_verifies_and_a_changed_entry_is_named() {
    // Arrange
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let run = run_against(&environment, artifacts.path(), &phr_seq()).await;
    environment.stop().await;
    let archive = artifacts.path().join("run.tar.gz");
    let archive_arg = archive.to_str().expect("utf-8 path");

    // Act
    let packed = connrun(artifacts.path(), &["archive", &run.status.run_id, "--output", archive_arg]);
    let again = connrun(artifacts.path(), &["archive", &run.status.run_id, "--output", archive_arg]);
    let verified = connrun(artifacts.path(), &["verify", archive_arg]);
    let tampered = artifacts.path().join("tampered.tar.gz");
    copy_with_changed_entry(&archive, &tampered, "logs/summary.md");
    let refused = connrun(artifacts.path(), &["verify", tampered.to_str().expect("utf-8 path")]);

    // Assert
    assert_eq!(packed.status.code(), Some(0), "{}", text(&packed));
    assert_eq!(again.status.code(), Some(2), "an archive is never overwritten: {}", text(&again));
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.dir.join("manifest.json")).expect("manifest")).expect("json");
    let listed = manifest["files"].as_array().expect("files").len();
    assert!(text(&verified).contains(&format!("OK: {listed} files")), "{}", text(&verified));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("logs/summary.md: changed"), "{}", text(&refused));
    // The archive holds the manifest first, everything under <RUN_ID>/.
    let mut entries = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&archive).expect("open")));
    let first = entries.entries().expect("entries").next().expect("one entry").expect("entry");
    assert_eq!(first.path().expect("path").to_string_lossy(), format!("{}/manifest.json", run.status.run_id));
}

// Bounds (issue 9): nothing read from an archive is trusted before it is checked.

/// Writes a `.tar.gz` of `(path, size, bytes)` entries; the bytes repeat to fill `size`, so large entries
/// cost no memory.
fn write_archive(to: &Path, entries: &[(&str, u64, &[u8])]) {
    let writer = flate2::write::GzEncoder::new(std::fs::File::create(to).expect("create"), flate2::Compression::fast());
    let mut builder = tar::Builder::new(writer);
    for (path, size, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(*size);
        header.set_mode(0o644);
        let data = bytes.iter().copied().cycle().take(*size as usize).collect::<Vec<u8>>();
        builder.append_data(&mut header, path, &data[..]).expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip");
}

fn manifest_listing(files: &[(&str, u64, &str)]) -> Vec<u8> {
    let files: Vec<_> = files
        .iter()
        .map(|(path, size, sha256)| serde_json::json!({"path": path, "size": size, "sha256": sha256}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"schema_version": 1, "run_id": "20251119TaZ1", "files": files}))
        .expect("json")
}

#[test]
fn an_archive_with_an_oversized_manifest_is_refused_naming_the_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("big.tar.gz");
    let bound = connrun::evidence::limits::MANIFEST_FILE.max_bytes;
    write_archive(&archive, &[("20251119TaZ1/manifest.json", bound + 1, b" ")]);

    let output = connrun(dir.path(), &["verify", archive.to_str().expect("utf-8")]);

    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let refusal =
        format!("big.tar.gz: manifest.json: more than {bound} bytes is over the limit of {} MiB", bound >> 20);
    assert!(text(&output).contains(&refusal), "{}", text(&output));
}

#[test]
fn an_archive_whose_first_file_is_not_its_manifest_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("late.tar.gz");
    let manifest = manifest_listing(&[]);
    write_archive(&archive, &[("r/a.txt", 1, b"a"), ("r/manifest.json", manifest.len() as u64, &manifest)]);

    let error = connrun::compare::archive::verify_archive(&archive).expect_err("refused").to_string();

    assert!(error.contains("late.tar.gz: the first file is `a.txt`, not manifest.json"), "{error}");
}

#[test]
fn an_entry_of_another_size_than_listed_is_changed_without_being_hashed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("grown.tar.gz");
    let manifest = manifest_listing(&[("a.txt", 1, "00")]);
    write_archive(&archive, &[("r/manifest.json", manifest.len() as u64, &manifest), ("r/a.txt", 1 << 20, b"a")]);

    let report = connrun::compare::archive::verify_archive(&archive).expect("verifiable");

    let mismatch = report.first_mismatch.expect("a mismatch").to_string();
    assert_eq!(mismatch, "a.txt: changed (manifest 1 bytes sha256:00, now 1048576 bytes)");
}

#[test]
fn an_entry_that_appears_twice_and_a_path_outside_the_run_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let twice = dir.path().join("twice.tar.gz");
    let outside = dir.path().join("outside.tar.gz");
    let manifest = manifest_listing(&[("a.txt", 1, "00")]);
    let escaping = manifest_listing(&[("../a.txt", 1, "00")]);
    write_archive(
        &twice,
        &[("r/manifest.json", manifest.len() as u64, &manifest), ("r/a.txt", 1, b"a"), ("r/a.txt", 1, b"b")],
    );
    write_archive(&outside, &[("r/manifest.json", escaping.len() as u64, &escaping)]);

    let twice = connrun::compare::archive::verify_archive(&twice).expect_err("refused").to_string();
    let outside = connrun::compare::archive::verify_archive(&outside).expect_err("refused").to_string();

    assert!(twice.contains("`a.txt` appears twice"), "{twice}");
    assert!(outside.contains("manifest.json: files[0].path: `../a.txt` is not a path inside the run"), "{outside}");
}
