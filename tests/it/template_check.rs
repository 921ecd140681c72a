//! Templates are refused before any request, naming file, line and key; the shipped templates load.

use std::path::Path;

use connrun::evidence::limits::{MAX_PROBES, TEMPLATE_FILE};
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

// Bounds (issue 9): every value, list and file of a template is bounded when it is checked, and the
// refusal names the key and the accepted range.

/// The one problem line of `message` that names `key`, for assertions on its line and wording.
fn line_naming<'a>(message: &'a str, key: &str) -> &'a str {
    message
        .lines()
        .find(|line| line.contains(&format!(": {key}: ")))
        .unwrap_or_else(|| panic!("{key} not in {message}"))
}

#[test]
fn a_timeout_that_overflows_a_deadline_is_refused_naming_the_key_and_the_range() {
    let toml = VALID
        .replace("label = \"tLabel\"", "label = \"tLabel\"\ntimeout_seconds = 18446744073709551615")
        .replace("ready = [200, 403]", "ready = [200, 403]\ntimeout_seconds = 0");
    let dir = template_dir(&toml, &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    let template_level = line_naming(&message, "timeout_seconds");
    assert!(template_level.contains("template.toml:4:"), "{message}");
    assert!(
        template_level.contains("18446744073709551615 is out of range: a timeout is 1 to 3600 seconds"),
        "{message}"
    );
    let probe_level = line_naming(&message, "phases[C].probes[PHR-06].timeout_seconds");
    assert!(probe_level.contains("0 is out of range"), "{message}");
}

#[test]
fn a_300_character_label_is_refused_naming_the_label_and_its_maximum() {
    let label = format!("t{}", "a".repeat(299));
    let dir = template_dir(&VALID.replace("\"tLabel\"", &format!("\"{label}\"")), &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    let line = line_naming(&message, "label");
    assert!(line.contains("template.toml:3:"), "{message}");
    assert!(line.contains("300 characters") && line.contains("1 to 64"), "{message}");
    assert!(line.contains("RUN_ID"), "{message}");
}

#[test]
fn names_ids_and_free_text_longer_than_their_limits_are_refused() {
    let long_id = format!("P{}", "1".repeat(64));
    let toml = VALID
        .replace("name = \"t\"", &format!("name = \"{}\"", "t".repeat(65)))
        .replace("id = \"PHR-06\"", &format!("id = \"{long_id}\""))
        .replace("name = \"Layer ID\"", &format!("name = \"{}\"", "L".repeat(4097)));
    let dir = template_dir(&toml, &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    assert!(line_naming(&message, "name").contains("is 65 characters long; at most 64"), "{message}");
    assert!(line_naming(&message, &format!("phases[C].probes[{long_id}].id")).contains("at most 64"), "{message}");
    assert!(line_naming(&message, "phases[C].name").contains("at most 4096"), "{message}");
}

#[test]
fn too_many_phases_probes_headers_and_variables_are_refused() {
    let variables: String = (0..257).map(|i| format!("v{i} = \"x\"\n")).collect();
    let headers: String = (0..65).map(|i| format!("X-H{i} = \"x\"\n")).collect();
    let phase = |i: usize| format!("\n[[phases]]\nid = \"P{i}\"\nname = \"p\"\n");
    let probe = |i: usize| {
        format!("\n[[phases.probes]]\nid = \"p{i}\"\nname = \"n\"\nmethod = \"GET\"\npath = \"/\"\nready = [200]\n")
    };
    let mut toml =
        format!("schema_version = 1\nname = \"t\"\nlabel = \"t\"\n\n[variables]\n{variables}\n[headers]\n{headers}");
    for i in 0..65 {
        toml.push_str(&phase(i));
        let probes = if i == 0 { MAX_PROBES + 1 } else { 1 };
        (0..probes).for_each(|j| toml.push_str(&probe(i * 1_000_000 + j)));
    }
    let dir = template_dir(&toml, &[]);

    let message = error_text(dir.path());

    assert!(line_naming(&message, "variables").contains("257 variables; at most 256"), "{message}");
    assert!(line_naming(&message, "headers").contains("65 headers; at most 64"), "{message}");
    assert!(line_naming(&message, "phases").contains("65 phases; at most 64"), "{message}");
    let probes = line_naming(&message, &format!("phases[P0].probes[p{MAX_PROBES}]"));
    assert!(probes.contains(&format!("more than {MAX_PROBES} probes")), "{message}");
}

#[test]
fn header_and_variable_values_and_paths_over_8_kib_are_refused() {
    let big = "x".repeat(8 * 1024 + 1);
    let toml = VALID
        .replace("patient = \"P0001\"", &format!("patient = \"{big}\""))
        .replace("path = \"/x/{{patient}}\"", &format!("path = \"/{big}\"\nheaders = {{ \"X-Big\" = \"{big}\" }}"));
    let dir = template_dir(&toml, &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    assert!(line_naming(&message, "variables.patient").contains("8193 bytes long; at most 8192"), "{message}");
    assert!(line_naming(&message, "phases[C].probes[PHR-06].path").contains("at most 8192"), "{message}");
    assert!(line_naming(&message, "phases[C].probes[PHR-06].headers.X-Big").contains("at most 8192"), "{message}");
}

#[test]
fn a_value_that_grows_past_8_kib_once_variables_are_filled_in_is_refused_by_the_plan() {
    use connrun::evidence::runid::RunId;
    use connrun::plan::{Plan, target::Targets};
    let uses = "{{patient}}".repeat(2);
    let toml = VALID
        .replace("patient = \"P0001\"", &format!("patient = \"{}\"", "p".repeat(5000)))
        .replace("/x/{{patient}}", &format!("/x/{uses}"));
    let dir = template_dir(&toml, &[("audit/q.sql", SQL)]);
    let template = Template::load(dir.path()).expect("each value is within its bound");
    let targets =
        Targets::parse(Path::new("targets.toml"), "[targets.t]\nbase_url = \"https://x\"\n").expect("targets");
    let target = targets.resolve("t").expect("target");

    let error = Plan::build(&template, &target, &"20251119TtZ1".parse::<RunId>().expect("id")).expect_err("refused");

    let message = error.to_string();
    assert!(message.contains("PHR-06: path is 10003 bytes long; at most 8192"), "{message}");
}

#[test]
fn oversized_sql_body_and_template_files_are_refused_by_name() {
    let toml = VALID.replace("body = '{\"nonce\":\"{{run_id}}\"}'", "body_file = \"bodies/big.json\"");
    let dir = template_dir(&toml, &[("audit/q.sql", &"-- padding\n".repeat(30_000)), ("bodies/big.json", "")]);
    // Sparse: the size is what is checked, nothing is read or sent at validation time.
    let body = std::fs::OpenOptions::new().write(true).open(dir.path().join("bodies/big.json")).expect("open");
    body.set_len((64 << 20) + 1).expect("grow body file");
    let oversized = template_dir("", &[]);
    let file = std::fs::OpenOptions::new().write(true).open(oversized.path().join("template.toml")).expect("open");
    file.set_len(TEMPLATE_FILE.max_bytes + 1).expect("grow template");

    let message = error_text(dir.path());
    let whole_file = error_text(oversized.path());

    let sql = line_naming(&message, "phases[C].audit");
    assert!(sql.contains("q.sql") && sql.contains("over the limit of 256 KiB for an audit SQL file"), "{message}");
    let body = line_naming(&message, "phases[C].probes[PHR-06].body_file");
    assert!(
        body.contains("big.json") && body.contains("over the limit of 64 MiB for a request body file"),
        "{message}"
    );
    let bound = TEMPLATE_FILE.max_bytes;
    let refusal = format!("template.toml: {} bytes is over the limit of {} MiB", bound + 1, bound >> 20);
    assert!(whole_file.contains(&refusal), "{whole_file}");
}

#[test]
fn a_poll_that_would_wait_more_than_an_hour_is_refused() {
    let toml = VALID.replace(
        "ready = [200, 403]",
        "ready = [200, 403]\npoll = { pointer = \"/state\", equals = \"DONE\", attempts = 1000, interval_ms = 60000 }",
    );
    let dir = template_dir(&toml, &[("audit/q.sql", SQL)]);

    let message = error_text(dir.path());

    let line = line_naming(&message, "phases[C].probes[PHR-06].poll");
    assert!(line.contains("1000 attempts x 60000 ms wait 60000 s in all; at most 3600 s"), "{message}");
}

#[test]
fn templates_check_reports_a_huge_timeout_instead_of_panicking() {
    use crate::routine_support::{connrun, text};
    let templates = tempfile::tempdir().expect("temp dir");
    let dir = templates.path().join("huge");
    std::fs::create_dir_all(dir.join("audit")).expect("mkdir");
    std::fs::write(dir.join("audit/q.sql"), SQL).expect("sql");
    std::fs::write(
        dir.join("template.toml"),
        VALID.replace("ready = [200, 403]", "ready = [200]\ntimeout_seconds = 18446744073709551615"),
    )
    .expect("template");
    let artifacts = tempfile::tempdir().expect("temp dir");

    let output = connrun(
        artifacts.path(),
        &["--run-templates", templates.path().to_str().expect("utf-8"), "templates", "check"],
    );

    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("phases[C].probes[PHR-06].timeout_seconds: 18446744073709551615 is out of range"),
        "{}",
        text(&output)
    );
    assert!(!text(&output).contains("panicked"), "{}", text(&output));
}
