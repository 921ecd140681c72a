//! Property tests of the template and targets parsers: arbitrary text never panics and every refusal names
//! its file and says what is wrong; valid inputs load back to what was written; the bounded values are
//! accepted exactly within their ranges.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use crate::fuzz_support::{config, toml_string};
use connrun::evidence::limits::{MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS};
use connrun::evidence::runid::{self, RunId};
use connrun::plan::diag::Problems;
use connrun::plan::target::{TargetError, Targets};
use connrun::plan::template::{Template, TemplateError};

const KEYS: &[&str] = &[
    "schema_version",
    "name",
    "label",
    "suite",
    "description",
    "timeout_seconds",
    "id",
    "method",
    "path",
    "ready",
    "body",
    "body_file",
    "audit",
    "checks",
    "capture",
    "poll",
    "memo",
    "headers",
    "X-Trace-Id",
    "base_url",
    "readyz_url",
    "user",
    "password",
    "password_env",
    "password_file",
    "url",
    "url_env",
    "ca_bundle",
    "p12",
];
const TABLES: &[&str] = &[
    "[[phases]]",
    "[[phases.probes]]",
    "[serverinfo]",
    "[variables]",
    "[headers]",
    "[phases.probes.headers]",
    "[targets.a]",
    "[targets.a.basic]",
    "[targets.a.tls]",
    "[targets.a.audit]",
    "[targets.a.variables]",
    "[targets.a.identity]",
    "[targets.a.headers]",
];

/// A TOML value a hand-written file might hold, odd ones included.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[ -~]{0,24}".prop_map(|s| toml_string(&s)),
        "\\PC{0,16}".prop_map(|s| toml_string(&s)),
        prop::sample::select(vec![
            "1",
            "0",
            "-1",
            "3600",
            "3601",
            "[200, 403]",
            "[]",
            "[99999]",
            "true",
            "1.5",
            "\"GET\"",
            "\"/x/{{run_id}}\"",
            "\"{{\"",
            "\"{{nope}}\"",
            "\"bodies/b.json\"",
            "\"bodies/../x\"",
            "[\"audit/q.sql\"]",
            "\"https://x.example\"",
            "{ pointer = \"/state\", equals = \"DONE\", attempts = 3, interval_ms = 1 }",
            "{ job = \"/jobId\" }",
            "[{ contains = \"x\" }, { max_bytes = 1 }]",
            "\"PHR_X:failed\"",
            "[\"PHR_X\"]",
            "{ \"X-A\" = \"1\" }",
        ])
        .prop_map(str::to_owned),
    ]
}

/// One line: a known key or a random one with a value, a table header, or garbage.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(KEYS), value()).prop_map(|(key, value)| format!("{key} = {value}")),
        1 => ("[a-z_]{1,8}", value()).prop_map(|(key, value)| format!("{key} = {value}")),
        2 => prop::sample::select(TABLES).prop_map(str::to_owned),
        1 => "\\PC{0,30}",
    ]
}

/// A template that often gets past parsing, so the validator's deeper checks are reached.
fn template_text() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(line(), 0..30)).prop_map(|(head, lines)| {
        let head = if head { "schema_version = 1\nname = \"t\"\nlabel = \"t\"\n" } else { "" };
        format!("{head}{}\n", lines.join("\n"))
    })
}

/// Every problem names a file (the template or a file in its folder) and says what is wrong.
fn assert_located(problems: &Problems, folder: &Path) -> Result<(), TestCaseError> {
    prop_assert!(!problems.0.is_empty());
    for problem in &problems.0 {
        prop_assert!(problem.file.starts_with(folder), "{problem}");
        prop_assert!(!problem.message.trim().is_empty(), "{problem}");
        prop_assert!(problem.to_string().starts_with(&problem.file.display().to_string()));
    }
    Ok(())
}

/// Writes `text` as a template next to the files templates may name; loads it.
fn load_template(text: &str) -> (tempfile::TempDir, Result<Template, TemplateError>) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in [("audit/q.sql", "SELECT 1 WHERE x = '{{run_id}}'"), ("bodies/b.json", "{}")] {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }
    std::fs::write(dir.path().join("template.toml"), text).expect("write template");
    let loaded = Template::load(dir.path());
    (dir, loaded)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_template_text_is_loaded_or_refused_with_located_problems(text in template_text()) {
        let (dir, loaded) = load_template(&text);
        match loaded {
            Ok(template) => prop_assert!(!template.phases.is_empty()),
            Err(TemplateError::Invalid(problems)) => assert_located(&problems, dir.path())?,
            Err(other) => prop_assert!(false, "valid UTF-8 must be parsed, got {other}"),
        }
    }

    #[test]
    fn any_targets_text_is_loaded_or_refused_with_located_problems(lines in prop::collection::vec(line(), 0..30)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("targets.toml");
        match Targets::parse(&file, &lines.join("\n")) {
            Ok(targets) => prop_assert!(targets.targets.values().all(|t| t.base_url.starts_with("https://"))),
            Err(TargetError::Invalid(problems)) => assert_located(&problems, dir.path())?,
            Err(other) => prop_assert!(false, "parse only refuses with problems, got {other}"),
        }
    }

    #[test]
    fn a_timeout_is_accepted_exactly_within_its_range(seconds in prop_oneof![any::<u64>(), 0u64..4000]) {
        let text = format!("schema_version = 1\nname = \"t\"\nlabel = \"t\"\ntimeout_seconds = {seconds}\n\
                            [[phases]]\nid = \"A\"\nname = \"a\"\nprobes = []\n");
        let (_dir, loaded) = load_template(&text);
        let targets_text = format!("[targets.a]\nbase_url = \"https://x\"\ntimeout_seconds = {seconds}\n");
        let targets = Targets::parse(Path::new("t.toml"), &targets_text);
        let in_range = (MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&seconds);

        prop_assert_eq!(loaded.is_ok(), in_range);
        prop_assert_eq!(targets.is_ok(), in_range);
        if let (Err(template), Err(target)) = (loaded, targets) {
            prop_assert!(template.to_string().contains(": timeout_seconds: "), "{}", template);
            prop_assert!(target.to_string().contains("targets.a.timeout_seconds: "), "{}", target);
        }
    }

    #[test]
    fn every_label_the_check_accepts_becomes_a_run_id(label in "[a-zA-Z][a-zA-Z0-9]{0,80}|\\PC{0,70}") {
        let text = format!(
            "schema_version = 1\nname = \"t\"\nlabel = {}\n[[phases]]\nid = \"A\"\nname = \"a\"\nprobes = []\n",
            toml_string(&label)
        );
        let (_dir, loaded) = load_template(&text);
        let date = chrono::NaiveDate::from_ymd_opt(2025, 11, 19).expect("date");

        prop_assert_eq!(loaded.is_ok(), runid::is_valid_label(&label));
        if loaded.is_ok() {
            let run_id = RunId::label(date, &label, u32::MAX).expect("an accepted label makes a RUN_ID");
            prop_assert_eq!(run_id.to_string().parse::<RunId>().expect("parses back"), run_id);
        } else {
            let message = loaded.expect_err("refused").to_string();
            prop_assert!(message.contains(": label: "), "{}", message);
        }
    }
}

/// A probe of a generated valid template.
#[derive(Debug, Clone)]
struct ProbeIn {
    method: &'static str,
    path: String,
    ready: Vec<u16>,
    timeout: Option<u64>,
    headers: BTreeMap<String, String>,
}

fn probe_in() -> impl Strategy<Value = ProbeIn> {
    let methods = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]);
    let headers = prop::collection::btree_map("X-[a-zA-Z]{1,20}", "[ -z|~]{0,40}", 0..4);
    (
        methods,
        "/[a-zA-Z0-9/_-]{0,40}",
        prop::collection::vec(100u16..=599, 1..5),
        prop::option::of(1u64..=3600),
        headers,
    )
        .prop_map(|(method, path, ready, timeout, headers)| ProbeIn { method, path, ready, timeout, headers })
}

fn render(name: &str, label: &str, variables: &BTreeMap<String, String>, phases: &[Vec<ProbeIn>]) -> String {
    let mut text =
        format!("schema_version = 1\nname = {}\nlabel = {}\n[variables]\n", toml_string(name), toml_string(label));
    for (key, value) in variables {
        text.push_str(&format!("{key} = {}\n", toml_string(value)));
    }
    for (p, probes) in phases.iter().enumerate() {
        text.push_str(&format!("\n[[phases]]\nid = \"P{p}\"\nname = \"phase {p}\"\n"));
        for (i, probe) in probes.iter().enumerate() {
            let ready = probe.ready.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
            text.push_str(&format!(
                "\n[[phases.probes]]\nid = \"p{p}-{i}\"\nname = \"n\"\nmethod = \"{}\"\npath = {}\nready = [{ready}]\n",
                probe.method,
                toml_string(&probe.path)
            ));
            if let Some(timeout) = probe.timeout {
                text.push_str(&format!("timeout_seconds = {timeout}\n"));
            }
            let headers: Vec<String> =
                probe.headers.iter().map(|(k, v)| format!("\"{k}\" = {}", toml_string(v))).collect();
            text.push_str(&format!("headers = {{ {} }}\n", headers.join(", ")));
        }
    }
    text
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn a_valid_template_loads_back_to_what_was_written(
        name in "[a-z0-9][a-z0-9_-]{0,63}",
        label in "[a-zA-Z][a-zA-Z0-9]{0,63}",
        variables in prop::collection::btree_map("v[a-z0-9_]{0,15}", "[ -z|~]{0,40}", 0..5),
        phases in prop::collection::vec(prop::collection::vec(probe_in(), 1..4), 1..4),
    ) {
        let (_dir, loaded) = load_template(&render(&name, &label, &variables, &phases));

        let template = loaded.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&template.name, &name);
        prop_assert_eq!(&template.label, &label);
        prop_assert_eq!(&template.variables, &variables);
        prop_assert_eq!(template.phases.len(), phases.len());
        for (phase, written) in template.phases.iter().zip(&phases) {
            prop_assert_eq!(phase.probes.len(), written.len());
            for (probe, written) in phase.probes.iter().zip(written) {
                prop_assert_eq!(probe.method.as_str(), written.method);
                prop_assert_eq!(&probe.path, &written.path);
                prop_assert_eq!(&probe.ready_statuses, &written.ready);
                prop_assert_eq!(probe.timeout.as_secs(), written.timeout.unwrap_or(30));
                let headers: BTreeMap<String, String> = probe.headers.iter().cloned().collect();
                prop_assert_eq!(&headers, &written.headers);
            }
        }
    }

    #[test]
    fn a_valid_target_loads_back_to_what_was_written(
        name in "[a-z][a-z0-9_-]{0,30}",
        host in "[a-z]{1,20}(\\.[a-z]{2,5})?(:[0-9]{1,5})?",
        timeout in prop::option::of(1u64..=3600),
        headers in prop::collection::btree_map("X-[a-zA-Z]{1,20}", "[ -z|~]{0,40}", 0..4),
        variables in prop::collection::btree_map("v[a-z0-9_]{0,15}", "\\PC{0,40}", 0..4),
    ) {
        let mut text = format!("[targets.{name}]\nbase_url = \"https://{host}\"\n");
        if let Some(timeout) = timeout {
            text.push_str(&format!("timeout_seconds = {timeout}\n"));
        }
        let table = |entries: &BTreeMap<String, String>| {
            entries.iter().map(|(k, v)| format!("\"{k}\" = {}", toml_string(v))).collect::<Vec<_>>().join(", ")
        };
        text.push_str(&format!("headers = {{ {} }}\nvariables = {{ {} }}\n", table(&headers), table(&variables)));

        let targets = Targets::parse(Path::new("targets.toml"), &text).map_err(|e| TestCaseError::fail(e.to_string()))?;

        let spec = &targets.targets[&name];
        prop_assert_eq!(&spec.base_url, &format!("https://{host}"));
        prop_assert_eq!(spec.timeout.map(|t| t.as_secs()), timeout);
        prop_assert_eq!(&spec.headers.iter().cloned().collect::<BTreeMap<_, _>>(), &headers);
        let values: BTreeMap<String, String> =
            spec.variables.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect();
        prop_assert_eq!(&values, &variables);
    }
}
