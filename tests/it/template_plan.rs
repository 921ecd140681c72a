//! Plans: template × target × RUN_ID, with the RUN_ID in every trace header and target overrides checked.

use std::path::Path;

use connrun::evidence::runid::RunId;
use connrun::plan::Plan;
use connrun::plan::target::{Target, Targets};
use connrun::plan::template::Template;
use connrun::probe::ProbeBody;

fn phr_seq() -> Template {
    Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates/phr-seq")).expect("phr-seq")
}

fn target(extra: &str) -> Target {
    let text = format!("[targets.t]\nbase_url = \"https://phr.example.jp:8443/\"\n{extra}");
    Targets::parse(Path::new("targets.toml"), &text).expect("targets").resolve("t").expect("target")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[test]
fn every_probe_carries_the_run_id_in_trace_and_run_headers() {
    let run_id: RunId = "20251119TorcaPHRSeqZ1".parse().expect("run id");

    let plan = Plan::build(&phr_seq(), &target(""), &run_id).expect("plan");

    for probe in plan.probes() {
        assert_eq!(header(&probe.headers, "X-Trace-Id"), Some(format!("20251119TorcaPHRSeqZ1-{}", probe.id).as_str()));
        assert_eq!(header(&probe.headers, "X-Run-Id"), Some("20251119TorcaPHRSeqZ1"));
        assert_eq!(header(&probe.headers, "X-Facility-Id"), Some("F001"));
    }
    let urls: Vec<&str> = plan.probes().map(|p| p.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://phr.example.jp:8443/openDolphin/resources/20/adm/phr/identityToken",
            "https://phr.example.jp:8443/openDolphin/resources/20/adm/phr/image/P0001",
            "https://phr.example.jp:8443/openDolphin/resources/20/adm/phr/F001,P0001",
        ]
    );
    let token = plan.probes().next().expect("PHR-06");
    assert_eq!(token.body, ProbeBody::Inline(br#"{"nonce":"20251119TorcaPHRSeqZ1","user":"ops"}"#.to_vec()));
}

#[test]
fn audit_sql_gets_the_run_id_and_keeps_the_time_window_for_later() {
    let run_id: RunId = "20251119TorcaPHRSeqZ1".parse().expect("run id");

    let plan = Plan::build(&phr_seq(), &target(""), &run_id).expect("plan");

    let sql = &plan.phases[0].audit_queries[0].sql;
    assert!(sql.contains("trace_id LIKE '20251119TorcaPHRSeqZ1-%'"), "{sql}");
    assert!(!sql.contains("{{run_id}}"), "{sql}");
}

#[test]
fn target_variables_override_template_defaults() {
    let run_id: RunId = "20251119TorcaPHRSeqZ1".parse().expect("run id");

    let plan = Plan::build(&phr_seq(), &target("[targets.t.variables]\npatient = \"P0042\"\n"), &run_id).expect("plan");

    assert!(plan.probes().any(|p| p.url.ends_with("/image/P0042")));
}

#[test]
fn an_undeclared_target_variable_is_refused_with_its_line() {
    let run_id: RunId = "20251119TorcaPHRSeqZ1".parse().expect("run id");

    let error =
        Plan::build(&phr_seq(), &target("[targets.t.variables]\n\npatinet = \"P0042\"\n"), &run_id).expect_err("typo");

    let message = error.to_string();
    assert!(message.contains("targets.toml:5"), "{message}");
    assert!(message.contains("targets.t.variables.patinet"), "{message}");
}

#[test]
fn run_toml_names_secrets_only_by_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("ops.pw"), "pl4n-s3cret\n").expect("write secret");
    let file = dir.path().join("targets.toml");
    let text =
        "[targets.t]\nbase_url = \"https://x\"\n[targets.t.basic]\nuser = \"F001:ops\"\npassword_file = \"ops.pw\"\n";
    std::fs::write(&file, text).expect("write targets");
    let target = Targets::load(&file).expect("targets").resolve("t").expect("target");
    let run_id: RunId = "20251119TorcaPHRSeqZ1".parse().expect("run id");

    let run_toml = Plan::build(&phr_seq(), &target, &run_id).expect("plan").to_run_toml();

    assert!(!run_toml.contains("pl4n-s3cret"), "{run_toml}");
    assert!(run_toml.contains("F001:ops (password file:"), "{run_toml}");
    assert!(run_toml.contains("run_id = \"20251119TorcaPHRSeqZ1\""), "{run_toml}");
}
