//! The evidence folder: temporary until sealed, manifest written last, verify finds a changed byte,
//! a partial folder never counts as finished, and the run log is readable with zcat mid-run.

use std::io::Read;

use chrono::NaiveDate;
use connrun::evidence::runid::RunId;
use connrun::evidence::{self, EventLog, EvidenceError, Mismatch, RunFolder, RunLocation};

fn started_run(artifacts: &std::path::Path) -> (RunId, RunFolder) {
    let date = NaiveDate::from_ymd_opt(2025, 11, 19).expect("date");
    let (run_id, _) = evidence::reserve_next(artifacts, "orca-connectivity", "phr-seq", date, "seal").expect("reserve");
    let (folder, reservation) = RunFolder::start(artifacts, &run_id).expect("start");
    assert_eq!(reservation.template, "phr-seq");
    (run_id, folder)
}

#[test]
fn finishing_renames_and_writes_a_manifest_of_every_other_file() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (run_id, folder) = started_run(artifacts.path());
    folder.write("status.json", b"{}").expect("write");
    folder.write("httpdump/PHR-06/response.body", b"token").expect("write");

    let dir = folder.finish().expect("finish");

    assert_eq!(dir, artifacts.path().join("orca-connectivity").join(run_id.to_string()));
    assert!(!artifacts.path().join("orca-connectivity").join(run_id.partial_dir_name()).exists());
    let manifest: evidence::Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest")).expect("json");
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["httpdump/PHR-06/response.body", "status.json"]);
    assert_eq!(manifest.files[0].size, 5);
    assert_eq!(manifest.files[0].sha256, "3c469e9d6c5875d37a43f353d4f88e61fcf812c66eee3457465a40b0da4153e0");
}

#[test]
fn verify_passes_on_an_untouched_run() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (run_id, folder) = started_run(artifacts.path());
    folder.write("logs/summary.md", "# memo\n".as_bytes()).expect("write");
    folder.finish().expect("finish");

    let report = evidence::verify(artifacts.path(), &run_id).expect("verify");

    assert_eq!(report.first_mismatch, None);
    assert_eq!(report.files_listed, 1);
}

#[test]
fn verify_names_the_file_with_one_changed_byte() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (run_id, folder) = started_run(artifacts.path());
    folder.write("a.txt", b"same").expect("write");
    folder.write("logs/curl_summary.log", b"PHR-06 identityToken: HTTP 200\n").expect("write");
    let dir = folder.finish().expect("finish");
    let tampered = dir.join("logs/curl_summary.log");
    let mut bytes = std::fs::read(&tampered).expect("read");
    bytes[20] ^= 1;
    std::fs::write(&tampered, bytes).expect("tamper");

    let report = evidence::verify(artifacts.path(), &run_id).expect("verify");

    match report.first_mismatch {
        Some(Mismatch::Changed { path, .. }) => assert_eq!(path, "logs/curl_summary.log"),
        other => panic!("expected a changed file, got {other:?}"),
    }
}

#[test]
fn verify_reports_missing_and_unlisted_files() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (run_id, folder) = started_run(artifacts.path());
    folder.write("junit.xml", b"<x/>").expect("write");
    let dir = folder.finish().expect("finish");
    std::fs::remove_file(dir.join("junit.xml")).expect("remove");
    std::fs::write(dir.join("extra.txt"), b"added later").expect("add");

    let report = evidence::verify(artifacts.path(), &run_id).expect("verify");

    assert_eq!(report.first_mismatch, Some(Mismatch::Missing { path: "junit.xml".to_owned() }));
}

#[test]
fn a_partial_folder_is_never_treated_as_finished() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (run_id, folder) = started_run(artifacts.path());
    folder.write("status.json", b"{}").expect("write");
    // Even a manifest inside the temporary folder does not make it a finished run.
    evidence::write_manifest(folder.dir(), &run_id).expect("manifest");

    let location = evidence::locate(artifacts.path(), &run_id).expect("locate");
    let verified = evidence::verify(artifacts.path(), &run_id);

    assert!(matches!(location, Some(RunLocation::Partial(_))));
    assert!(matches!(verified, Err(EvidenceError::Unfinished { .. })));
}

#[test]
fn a_finished_run_cannot_be_started_again() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (run_id, folder) = started_run(artifacts.path());
    folder.finish().expect("finish");

    let again = RunFolder::start(artifacts.path(), &run_id);

    assert!(matches!(again, Err(EvidenceError::AlreadyStarted { .. })));
}

#[test]
fn the_event_log_is_readable_while_the_run_is_still_going() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EventLog::open(dir.path()).expect("open");
    log.event("run_started", serde_json::json!({ "run_id": "20251119TxZ1" })).expect("event");
    log.event("probe_finished", serde_json::json!({ "probe": "PHR-06" })).expect("event");

    // Read while the log is still open, as `zcat` would after a crash.
    let file = std::fs::File::open(dir.path().join("logs/run.ndjson.gz")).expect("log file");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(file).read_to_string(&mut text).expect("gunzip");

    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["event"], "probe_finished");
    assert_eq!(events[1]["probe"], "PHR-06");
    drop(log);
}
