//! Templates are refused before any request, naming file, line and key; the shipped templates load.

use std::path::Path;

use connrun::plan::template::{Template, TemplateError};

/// Writes `template.toml` (and optional extra files) into a fresh template folder.
fn template_dir(toml: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("template.toml"), toml).expect("write template");
    for (name, contents) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write file");
    }
    dir
}

fn error_text(dir: &Path) -> String {
    match Template::load(dir) {
        Ok(_) => panic!("template should have been refused"),
        Err(TemplateError::Invalid(problems)) => problems.to_string(),
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

const VALID: &str = r#"schema_version = 1
name = "t"
label = "tLabel"

[variables]
patient = "P0001"

[[phases]]
id = "C"
name = "Layer ID"
audit = ["audit/q.sql"]

[[phases.probes]]
id = "PHR-06"
name = "identityToken"
method = "POST"
path = "/x/{{patient}}"
body = '{"nonce":"{{run_id}}"}'
ready = [200, 403]
audit = ["PHR_LAYER_ID_TOKEN_ISSUE"]
"#;

const SQL: &str = "SELECT action, count(*) FROM d_audit_event WHERE trace_id LIKE '{{run_id}}%' GROUP BY action\n";

#[test]
fn shipped_templates_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates");

    let seq = Template::load(&root.join("phr-seq")).expect("phr-seq is valid");
    let full = Template::load(&root.join("phr-full")).expect("phr-full is valid");

    let seq_ids: Vec<_> = seq.probes().map(|(_, p)| p.id.as_str()).collect();
    assert_eq!(seq_ids, ["PHR-06", "PHR-07", "PHR-11"]);
    assert_eq!(seq.phases.iter().map(|p| p.audit_queries.len()).sum::<usize>(), 3);
    assert_eq!(seq.suite, "orca-connectivity");
    for id in
        ["PHR-01", "PHR-02", "PHR-03", "PHR-04", "PHR-05", "PHR-06", "PHR-07", "PHR-08", "PHR-09", "PHR-10", "PHR-11"]
    {
        assert!(full.probes().any(|(_, p)| p.id == id), "phr-full lacks {id}");
    }
}

#[test]
fn valid_template_loads() {
    let dir = template_dir(VALID, &[("audit/q.sql", SQL)]);

    let template = Template::load(dir.path()).expect("valid");

    assert_eq!(template.phases[0].probes[0].ready_statuses, [200, 403]);
    assert_eq!(template.suite, "orca-connectivity");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let dir = template_dir(
        &VALID.replace("ready = [200, 403]", "ready = [200, 403]\nreddy = [200]"),
        &[("audit/q.sql", SQL)],
    );

    let message = error_text(dir.path());

    assert!(message.contains("template.toml:20"), "{message}");
    assert!(message.contains("reddy"), "{message}");
}

#[test]
fn undefined_variable_names_line_and_key() {
    let dir = template_dir(&VALID.replace("/x/{{patient}}", "/x/{{patient_id}}"), &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    assert!(message.contains("template.toml:17"), "{message}");
    assert!(message.contains("phases[C].probes[PHR-06].path"), "{message}");
    assert!(message.contains("patient_id"), "{message}");
}

#[test]
fn bad_status_and_method_are_both_reported() {
    let toml = VALID.replace("ready = [200, 403]", "ready = [200, 4030]").replace("\"POST\"", "\"FETCH\"");
    let dir = template_dir(&toml, &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    assert!(message.contains(":16:") && message.contains(".method"), "{message}");
    assert!(message.contains(":19:") && message.contains("4030"), "{message}");
}

#[test]
fn missing_audit_file_names_line() {
    let dir = template_dir(VALID, &[]);

    let message = error_text(dir.path());

    assert!(message.contains("template.toml:11"), "{message}");
    assert!(message.contains("phases[C].audit"), "{message}");
    assert!(message.contains("file not found"), "{message}");
}

#[test]
fn undefined_variable_in_sql_names_the_sql_file_and_line() {
    let dir = template_dir(VALID, &[("audit/q.sql", "SELECT 1\nWHERE x = '{{nope}}'\n")]);

    let message = error_text(dir.path());

    assert!(message.contains("q.sql:2:"), "{message}");
    assert!(message.contains("nope"), "{message}");
}

#[test]
fn body_file_must_exist_under_bodies() {
    let toml = VALID.replace("body = '{\"nonce\":\"{{run_id}}\"}'", "body_file = \"../secret.txt\"");
    let dir = template_dir(&toml, &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    assert!(message.contains("body_file") && message.contains("bodies/"), "{message}");
}

#[test]
fn trace_id_header_must_carry_the_run_id() {
    let toml = VALID.replace("ready = [200, 403]", "ready = [200, 403]\nheaders = { \"X-Trace-Id\" = \"fixed\" }");
    let dir = template_dir(&toml, &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    assert!(message.contains("X-Trace-Id"), "{message}");
}
