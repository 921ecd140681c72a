//! RUN_ID allocation never reuses an id: not after a finished run, not after a crash, not under concurrency.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use connrun::evidence::runid::{self, RunId};
use connrun::evidence::{self, EvidenceError, RunFolder};

/// Each test has its own artifacts root (a fresh temp dir) with this suite in it: allocation counts every
/// suite of the root, so a bare temp dir as the suite would count the other tests' runs under /tmp.
const SUITE: &str = "orca-connectivity";

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 11, 19).expect("valid date")
}

#[test]
fn first_allocation_is_z1_and_the_next_is_z2() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let (first, _) = runid::allocate(artifacts.path(), SUITE, date(), "orcaPHRSeq").expect("allocate");
    let (second, _) = runid::allocate(artifacts.path(), SUITE, date(), "orcaPHRSeq").expect("allocate");

    assert_eq!(first.to_string(), "20251119TorcaPHRSeqZ1");
    assert_eq!(second.to_string(), "20251119TorcaPHRSeqZ2");
}

#[test]
fn finished_and_crashed_runs_are_both_skipped() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let suite = artifacts.path().join(SUITE);
    std::fs::create_dir_all(suite.join("20251119TorcaPHRSeqZ3")).expect("finished run");
    std::fs::create_dir_all(suite.join(".20251119TorcaPHRSeqZ7.partial")).expect("crashed run");

    let (next, _) = runid::allocate(artifacts.path(), SUITE, date(), "orcaPHRSeq").expect("allocate");

    assert_eq!(next.to_string(), "20251119TorcaPHRSeqZ8");
}

#[test]
fn other_dates_and_labels_do_not_count() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let suite = artifacts.path().join(SUITE);
    std::fs::create_dir_all(suite.join("20251118TorcaPHRSeqZ5")).expect("other date");
    std::fs::create_dir_all(suite.join("20251119TotherZ9")).expect("other label");

    let (next, _) = runid::allocate(artifacts.path(), SUITE, date(), "orcaPHRSeq").expect("allocate");

    assert_eq!(next.to_string(), "20251119TorcaPHRSeqZ1");
}

#[test]
fn concurrent_allocations_get_distinct_ids() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let ids: Vec<RunId> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| runid::allocate(artifacts.path(), SUITE, date(), "race").expect("allocate").0))
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });

    let distinct: BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(distinct.len(), 8);
}

#[test]
fn concurrent_allocations_in_different_suites_of_one_root_get_distinct_ids() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let ids: Vec<RunId> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let artifacts = artifacts.path();
                scope.spawn(move || {
                    runid::allocate(artifacts, &format!("suite-{i}"), date(), "race").expect("allocate").0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });

    let distinct: BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(distinct.len(), 8, "{distinct:?}");
}

#[test]
fn a_started_run_that_crashed_is_never_started_again_nor_reallocated() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let (run_id, _) = evidence::reserve_next(artifacts.path(), "suite", "phr-seq", date(), "crash").expect("reserve");
    let (folder, _) = RunFolder::start(artifacts.path(), &run_id).expect("start");
    drop(folder); // the process "dies" here: the folder is never finished

    let second_start = RunFolder::start(artifacts.path(), &run_id);
    let (next, _) = evidence::reserve_next(artifacts.path(), "suite", "phr-seq", date(), "crash").expect("reserve");

    assert!(matches!(second_start, Err(EvidenceError::AlreadyStarted { .. })));
    assert_ne!(next, run_id);
    assert_eq!(next.to_string(), "20251119TcrashZ2");
}

#[test]
fn an_exact_id_that_exists_is_refused() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let run_id: RunId = "20251119T013000Z".parse().expect("valid");
    evidence::reserve_exact(artifacts.path(), "suite", "phr-seq", &run_id).expect("first reservation");

    let again = evidence::reserve_exact(artifacts.path(), "other-suite", "phr-seq", &run_id);

    assert!(again.is_err());
}

#[test]
fn bad_label_is_refused() {
    let artifacts = tempfile::tempdir().expect("temp dir");

    let result = runid::allocate(artifacts.path(), SUITE, date(), "9lives");

    assert!(matches!(result, Err(runid::AllocateError::BadLabel { .. })));
}

#[test]
fn a_run_id_is_unique_across_suites_of_the_same_artifacts_root() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(artifacts.path().join("other-suite/20251119TorcaPHRSeqZ4")).expect("run in another suite");

    let (next, _) = runid::allocate(artifacts.path(), "orca-connectivity", date(), "orcaPHRSeq").expect("allocate");

    assert_eq!(next.to_string(), "20251119TorcaPHRSeqZ5");
}

#[test]
fn a_300_character_label_is_refused_naming_the_limit_before_any_folder_is_made() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let label = format!("a{}", "b".repeat(299));

    let error = runid::allocate(artifacts.path(), SUITE, date(), &label).expect_err("too long");

    let message = error.to_string();
    assert!(matches!(error, runid::AllocateError::BadLabel { .. }), "{message}");
    assert!(message.contains("the label is 300 characters long") && message.contains("1 to 64"), "{message}");
    assert!(message.len() < 300, "the refused label is shortened in the message: {message}");
    assert!(!artifacts.path().join(SUITE).exists(), "nothing is created for a refused label");
}

#[test]
fn connrun_new_refuses_a_300_character_label_the_same_way() {
    use crate::routine_support::{connrun, text};
    let artifacts = tempfile::tempdir().expect("temp dir");
    let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates");
    let label = format!("a{}", "b".repeat(299));

    let output = connrun(
        artifacts.path(),
        &["--run-templates", templates.to_str().expect("utf-8"), "new", "phr-seq", "--label", &label],
    );

    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("the label is 300 characters long; a label is 1 to 64"), "{}", text(&output));
    assert!(!text(&output).contains("File name too long"), "{}", text(&output));
}

#[test]
fn the_longest_label_makes_a_run_id_that_is_allocated_and_parsed_back() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let label = format!("a{}", "9".repeat(63));

    let (run_id, dir) = runid::allocate(artifacts.path(), SUITE, date(), &label).expect("64 characters fit");

    assert!(dir.is_dir());
    assert_eq!(run_id.to_string().parse::<RunId>().expect("parses back"), run_id);
}

#[test]
fn concurrent_connrun_new_processes_get_distinct_run_ids() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_connrun"))
            .arg("--artifacts")
            .arg(artifacts.path())
            .arg("--run-templates")
            .arg(&templates)
            .args(["new", "phr-seq", "--date", "20251119"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("connrun new starts")
    };

    // Six processes started before any is waited for, so their allocations overlap.
    let children: Vec<_> = (0..6).map(|_| spawn()).collect();
    let ids: BTreeSet<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("connrun new finishes");
            assert_eq!(output.status.code(), Some(0));
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        })
        .collect();

    let expected: BTreeSet<String> = (1..=6).map(|n| format!("20251119TorcaPHRSeqZ{n}")).collect();
    assert_eq!(ids, expected, "each process its own RUN_ID, none skipped or repeated");
}
