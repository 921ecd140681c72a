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

// Bounds (issue 9): a targets file's values, tables and secret files are bounded when it is loaded.

#[test]
fn a_target_timeout_out_of_range_is_refused_naming_the_key() {
    let text = "[targets.a]\nbase_url = \"https://a.example\"\ntimeout_seconds = 18446744073709551615\n\
                [targets.b]\nbase_url = \"https://b.example\"\ntimeout_seconds = 0\n";

    let message = problems(text);

    let expected = "targets.toml:3:19: targets.a.timeout_seconds: 18446744073709551615 is out of range: \
                    a timeout is 1 to 3600 seconds";
    assert!(message.contains(expected), "{message}");
    assert!(message.contains("targets.toml:6:19: targets.b.timeout_seconds: 0 is out of range"), "{message}");
}

#[test]
fn oversized_target_names_values_and_tables_are_refused() {
    let name = "n".repeat(65);
    let headers: String = (0..65).map(|i| format!("X-H{i} = \"x\"\n")).collect();
    let text = format!(
        "[targets.{name}]\nbase_url = \"https://a.example\"\n\
         [targets.a]\nbase_url = \"https://{}\"\n[targets.a.variables]\npatient = \"{}\"\n\
         [targets.a.headers]\n{headers}",
        "h".repeat(8 * 1024),
        "p".repeat(8 * 1024 + 1)
    );

    let message = problems(&text);

    assert!(
        message.contains(&format!("targets.{}…: the name is 65 characters long; at most 64", "n".repeat(64))),
        "{message}"
    );
    assert!(message.contains("targets.a.base_url: is 8200 bytes long; at most 8192"), "{message}");
    assert!(message.contains("targets.a.variables.patient: is 8193 bytes long; at most 8192"), "{message}");
    assert!(message.contains("targets.a.headers: 65 headers; at most 64"), "{message}");
}

#[test]
fn a_header_value_with_a_line_break_is_refused() {
    let text = "[targets.a]\nbase_url = \"https://a.example\"\nheaders = { \"X-A\" = \"1\\r\\nX-Injected: 2\" }\n";

    let message = problems(text);

    assert!(message.contains("targets.toml:3:") && message.contains("targets.a.headers.X-A"), "{message}");
    assert!(message.contains("cannot contain line breaks"), "{message}");
}

#[test]
fn oversized_targets_and_secret_files_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge).expect("create").set_len((1 << 20) + 1).expect("grow");
    let secret = dir.path().join("basic.pw");
    std::fs::File::create(&secret).expect("create").set_len((64 << 10) + 1).expect("grow");
    let file = dir.path().join("targets.toml");
    let text = "[targets.a]\nbase_url = \"https://a.example\"\n\
                [targets.a.basic]\nuser = \"u\"\npassword_file = \"basic.pw\"\n";
    std::fs::write(&file, text).expect("write");

    let whole = match Targets::load(&huge) {
        Err(TargetError::Invalid(problems)) => problems.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let secret_error = Targets::load(&file).expect("valid").resolve("a").expect_err("oversized secret").to_string();

    assert!(whole.contains("huge.toml: 1048577 bytes is over the limit of 1 MiB for a targets file"), "{whole}");
    assert!(secret_error.contains("targets.a.basic.password"), "{secret_error}");
    assert!(secret_error.contains("over the limit of 64 KiB for a secret file"), "{secret_error}");
}

// Proxies and retries (issue 12): each mistake is named by line and key, a password is never accepted inline.

#[test]
fn proxy_and_retry_mistakes_are_refused_naming_the_key() {
    let text = "[targets.a]\nbase_url = \"https://a.example\"\nretries = 6\nretry_backoff_ms = 60000\n\
                [targets.a.proxy]\nurl = \"http://ops:hunter2@proxy.example:3128\"\n\
                [targets.b]\nbase_url = \"https://b.example\"\n\
                [targets.b.proxy]\nurl = \"socks5://proxy.example:1080\"\n\
                [targets.c]\nbase_url = \"https://c.example\"\n\
                [targets.c.proxy]\nurl = \"http://proxy.example:3128\"\nuser = \"ops\"\npassword = \"hunter2\"\n\
                [targets.d]\nbase_url = \"https://d.example\"\n\
                [targets.d.proxy]\nurl = \"http://proxy.example:3128\"\npassword_env = \"PROXY_PASSWORD\"\n";

    let message = problems(text);

    for expected in [
        "targets.toml:3:11: targets.a.retries: 6 is out of range: 0 to 5 retries",
        "targets.toml:4:20: targets.a.retry_backoff_ms: 60000 is out of range: the first pause before a retry is 0 to 10000",
        "targets.toml:6:7: targets.a.proxy.url: credentials are refused in the URL",
        "targets.toml:10:7: targets.b.proxy.url: only http:// proxies (HTTP CONNECT) are supported",
        "targets.toml:16:12: targets.c.proxy.password: inline secrets are refused",
        "targets.d.proxy.user: a proxy password needs proxy.user",
    ] {
        assert!(message.contains(expected), "missing {expected:?} in:\n{message}");
    }
    assert!(!message.contains("hunter2"), "a secret is never echoed: {message}");
}

#[test]
fn a_target_proxy_and_retries_load_with_the_password_by_reference() {
    let text = "[targets.a]\nbase_url = \"https://a.example\"\nretries = 2\n\
                [targets.a.proxy]\nurl = \"http://proxy.example\"\nuser = \"ops\"\npassword_env = \"PROXY_PASSWORD\"\n";
    let targets = Targets::parse(Path::new("targets.toml"), text).expect("valid");

    let spec = &targets.targets["a"];
    let proxy = spec.proxy.as_ref().expect("proxy");
    assert_eq!((proxy.url(), spec.retry.retries), ("http://proxy.example:1080".to_owned(), 2));
    let unset = targets.resolve_with_env("a", &|_| None).unwrap_err().to_string();
    assert!(unset.contains("targets.a.proxy.password: environment variable PROXY_PASSWORD is not set"), "{unset}");
    let env = targets.resolve_with_env("a", &|name| (name == "PROXY_PASSWORD").then(|| "pw".to_owned())).unwrap();
    assert_eq!(env.proxy.configured.map(|r| r.source), Some("targets.a.proxy".to_owned()));
    let bad_env = targets.resolve_with_env("a", &|name| match name {
        "PROXY_PASSWORD" => Some("pw".to_owned()),
        "HTTPS_PROXY" => Some("https://proxy.example".to_owned()),
        _ => None,
    });
    let message = bad_env.unwrap_err().to_string();
    assert!(message.contains("environment variable HTTPS_PROXY: only http:// proxies"), "{message}");
}
