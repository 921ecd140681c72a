//! Times and RUN_ID dates follow the operator's zone (`--tz`, `CONNRUN_TZ`, Asia/Tokyo by default), not UTC.

use std::process::Command;

use chrono::Utc;

/// `connrun new phr-seq` with the zone given as `--tz` or as `CONNRUN_TZ`; returns the RUN_ID.
fn new_run_id(artifacts: &std::path::Path, zone: &str, by_env: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_connrun"));
    command.current_dir(env!("CARGO_MANIFEST_DIR")).arg("--artifacts").arg(artifacts);
    if by_env {
        command.env("CONNRUN_TZ", zone);
    } else {
        command.env_remove("CONNRUN_TZ").args(["--tz", zone]);
    }
    let output = command.args(["new", "phr-seq"]).output().expect("connrun runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn a_new_run_id_carries_the_operators_date_not_the_utc_date() {
    // UTC+14 and UTC-12: at any moment at least one of them is on another date than UTC.
    let artifacts = tempfile::tempdir().expect("temp dir");
    for (zone, by_env) in [("Etc/GMT-14", false), ("Etc/GMT+12", true)] {
        let expected = Utc::now().with_timezone(&zone.parse::<chrono_tz::Tz>().expect("zone")).format("%Y%m%d");

        let run_id = new_run_id(artifacts.path(), zone, by_env);

        assert!(run_id.starts_with(&format!("{expected}TorcaPHRSeq")), "{zone}: {run_id}");
    }
}

#[test]
fn an_unknown_zone_is_refused_with_an_example() {
    let output = Command::new(env!("CARGO_BIN_EXE_connrun"))
        .args(["--tz", "Asia/Tokio", "history"])
        .output()
        .expect("connrun runs");

    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Asia/Tokyo"));
}
