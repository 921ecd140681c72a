//! Targets files: secrets only by reference, every mistake named by file, line and key.

use std::path::Path;

use connrun::plan::target::{TargetError, Targets};

fn problems(text: &str) -> String {
    match Targets::parse(Path::new("targets.toml"), text) {
        Ok(_) => panic!("should have been refused"),
        Err(TargetError::Invalid(problems)) => problems.to_string(),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn inline_password_is_refused_with_line_and_key() {
    let text = "[targets.stage]\nbase_url = \"https://phr.example.jp\"\n[targets.stage.basic]\nuser = \"F001:ops\"\npassword = \"hunter2\"\n";

    let message = problems(text);

    assert!(message.contains("targets.toml:5"), "{message}");
    assert!(message.contains("targets.stage.basic.password"), "{message}");
    assert!(message.contains("inline secrets are refused"), "{message}");
    assert!(!message.contains("hunter2"), "the secret itself must not be echoed: {message}");
}

#[test]
fn audit_url_with_a_password_must_come_from_env_or_file() {
    let text = "[targets.stage]\nbase_url = \"https://phr.example.jp\"\n[targets.stage.audit]\nurl = \"postgres://u:pw@db/phr\"\n";

    let message = problems(text);

    assert!(message.contains("targets.toml:4") && message.contains("audit.url"), "{message}");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let text = "[targets.stage]\nbase_url = \"https://phr.example.jp\"\nbase_ulr = \"typo\"\n";

    let message = problems(text);

    assert!(message.contains("targets.toml:3"), "{message}");
    assert!(message.contains("base_ulr"), "{message}");
}

#[test]
fn missing_files_and_plain_http_are_refused() {
    let text =
        "[targets.stage]\nbase_url = \"http://phr.example.jp\"\n[targets.stage.tls]\nca_bundle = \"nope/ca.pem\"\n";

    let message = problems(text);

    assert!(message.contains("targets.toml:2") && message.contains("base_url"), "{message}");
    assert!(message.contains("targets.toml:4") && message.contains("file not found"), "{message}");
}

#[test]
fn secrets_are_read_from_env_and_files_only_when_the_target_is_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("basic.pw"), "s3cret\n").expect("write");
    let file = dir.path().join("targets.toml");
    let text = "[targets.a]\nbase_url = \"https://a.example\"\n[targets.a.basic]\nuser = \"F001:ops\"\npassword_file = \"basic.pw\"\n\
                [targets.b]\nbase_url = \"https://b.example\"\n[targets.b.basic]\nuser = \"x\"\npassword_env = \"CONNRUN_TEST_UNSET_VARIABLE\"\n";
    std::fs::write(&file, text).expect("write");

    let targets = Targets::load(&file).expect("structurally valid");
    let a = targets.resolve("a").expect("a resolves");
    let b = targets.resolve("b");

    assert_eq!(a.basic.as_ref().map(|c| c.password.as_str()), Some("s3cret"));
    assert!(a.secrets().contains(&"s3cret".to_owned()));
    let message = b.expect_err("unset variable").to_string();
    assert!(
        message.contains("CONNRUN_TEST_UNSET_VARIABLE") && message.contains("targets.b.basic.password"),
        "{message}"
    );
}

#[test]
fn unknown_target_lists_the_known_ones() {
    let targets =
        Targets::parse(Path::new("targets.toml"), "[targets.stage]\nbase_url = \"https://x\"\n").expect("valid");

    let message = targets.resolve("prod").expect_err("unknown").to_string();

    assert!(message.contains("prod") && message.contains("stage"), "{message}");
}

#[test]
fn the_shipped_example_targets_file_is_valid_apart_from_its_certificate_files() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("targets.example.toml");

    let message = match Targets::load(&file) {
        Ok(_) => String::new(),
        Err(TargetError::Invalid(problems)) => problems.to_string(),
        Err(other) => panic!("unexpected error: {other}"),
    };

    // Only the example certificate paths may be missing; every key and value must be understood.
    for line in message.lines() {
        assert!(line.contains("file not found"), "{line}");
    }
    assert_eq!(message.lines().count(), 2, "{message}");
}
