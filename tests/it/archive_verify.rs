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
