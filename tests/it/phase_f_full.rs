//! Phase F through the harness against the real phr-server (in-process, real mTLS, SQLite audit store):
//! phr-full's export steps capture the job id and the signed download URL, poll the job until SUCCEEDED,
//! download once (200) and prove the URL single-use (410), with the audit rows per step; the evidence shows
//! the URL with `token=<MASKED>` and never the real token (recomputed here from the server's own records).
//! A second run shows that a failed capture and a poll that never matches are recorded outcomes.

use crate::routine_support;

use std::io::Read;
use std::path::{Path, PathBuf};

use connrun::audit::AuditDb;
use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};
use connrun::evidence::{Outcome, ProbeRecord};
use connrun::plan::target::Targets;
use connrun::probe::{ProbeBody, ProbeSpec};
use connrun::run::{self, RunOutcome};

const PHR_BASE: &str = "/openDolphin/resources/20/adm/phr";

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() { files_under(&path, out) } else { out.push(path) }
    }
}

/// A file's text, gunzipped when it is stored as `.gz`.
fn contents(path: &Path) -> String {
    let raw = std::fs::read(path).expect("read evidence file");
    if path.extension().is_some_and(|e| e == "gz") {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut plain).expect("gunzip");
        String::from_utf8_lossy(&plain).into_owned()
    } else {
        String::from_utf8_lossy(&raw).into_owned()
    }
}

fn probe<'a>(outcome: &'a RunOutcome, id: &str) -> &'a ProbeRecord {
    outcome.status.probes.iter().find(|p| p.id == id).unwrap_or_else(|| panic!("no probe {id}"))
}

/// The path+query and token of every URL the server signed, recomputed from its `phr_export_signed_url`
/// rows and the demo's signing secret with the server's own signing function.
async fn issued_urls(environment: &DemoEnvironment) -> Vec<(String, String)> {
    let audit_url_file = environment.targets_file().parent().expect("scratch").join("audit.url");
    let url = std::fs::read_to_string(audit_url_file).expect("audit url");
    let db = AuditDb::connect(url.trim()).await.expect("server database");
    let rows = db.query_text("SELECT job_id, facility_id, expires_at, nonce FROM phr_export_signed_url").await;
    assert_eq!(rows.error, None);
    let secret_text = environment.secrets().last().expect("signing secret is the demo's last secret");
    let secret = phr_server::export::SigningSecret::new(secret_text.as_bytes()).expect("secret");
    rows.rows
        .iter()
        .map(|row| {
            let field = |i: usize| row[i].clone().expect("column value");
            let job_id: uuid::Uuid = field(0).parse().expect("job id");
            let path = phr_server::export::signed_url::artifact_path(job_id);
            let expires: i64 = field(2).parse().expect("expires");
            let token = phr_server::export::signed_url::token(&secret, &path, &field(1), expires, &field(3));
            (format!("{path}?expires={expires}&token={token}"), token)
        })
        .collect()
}

/// The status the server answers for `path_and_query` (sent once more, with the demo target's identity).
async fn replay_status(environment: &DemoEnvironment, path_and_query: &str) -> Option<u16> {
    let target = Targets::load(environment.targets_file()).expect("targets").resolve(DEMO_TARGET).expect("target");
    let prepared = run::prepare(&target).expect("identity");
    let scratch = tempfile::tempdir().expect("scratch");
    let spec = ProbeSpec {
        id: "replay".to_owned(),
        name: "replay".to_owned(),
        phase: "F".to_owned(),
        method: http::Method::GET,
        url: format!("{}{path_and_query}", environment.base_url()),
        headers: vec![
            ("X-Facility-Id".to_owned(), "F001".to_owned()),
            ("X-Trace-Id".to_owned(), "connrun-phase-f-replay".to_owned()),
        ],
        body: ProbeBody::Empty,
        ready_statuses: vec![410],
        body_checks: Vec::new(),
        audit_expected: Vec::new(),
        timeout: std::time::Duration::from_secs(30),
    };
    prepared.client.run(&spec, "replay", scratch.path()).await.http_status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phr_full_exports_downloads_once_and_masks_the_signed_url_token() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let template_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates/phr-full");

    let outcome = routine_support::run_against(&environment, artifacts.path(), &template_dir).await;
    let issued = issued_urls(&environment).await;
    let replay = replay_status(&environment, issued.first().map(|(url, _)| url.as_str()).unwrap_or("/")).await;
    environment.stop().await;
    let tokens: Vec<String> = issued.into_iter().map(|(_, token)| token).collect();

    for id in ["PHR-F1", "PHR-F2", "PHR-F3", "PHR-F4"] {
        let record = probe(&outcome, id);
        assert!(record.ready, "{id}: {:?} {:?} {:?}", record.http_status, record.outcome, record.check_failures);
    }
    assert_eq!(probe(&outcome, "PHR-F3").http_status, Some(200));
    assert_eq!(probe(&outcome, "PHR-F4").http_status, Some(410));
    assert!(probe(&outcome, "PHR-F2").attempts.is_some_and(|n| n >= 1));
    let delta = |phase: &str, action: &str, result: &str| {
        outcome
            .status
            .audit
            .iter()
            .find(|c| c.phase == phase && c.action == action && c.outcome.as_deref() == Some(result))
            .and_then(|c| c.delta)
    };
    assert_eq!(delta("F1", "PHR_EXPORT_REQUEST", "success"), Some(1));
    assert!(delta("F2", "PHR_EXPORT_STATUS", "success").is_some_and(|d| d >= 1));
    assert_eq!(delta("F2", "PHR_SIGNED_URL_ISSUED", "success"), Some(1));
    assert_eq!(delta("F3", "PHR_EXPORT_ARTIFACT", "success"), Some(1));
    assert_eq!(delta("F4", "PHR_EXPORT_ARTIFACT", "failed"), Some(1));
    assert!(outcome.status.audit_ok, "{:?} {:?}", outcome.status.audit, outcome.status.audit_errors);

    let run_toml = contents(&outcome.dir.join("run.toml"));
    assert!(run_toml.contains("/status/{{job_id}}"), "the plan keeps captured variables as placeholders");
    assert!(run_toml.contains("artifact = /downloadUrl (path_and_query)"), "{run_toml}");
    assert!(run_toml.contains("(40 x 250 ms)"), "{run_toml}");
    assert_eq!(tokens.len(), 1, "one URL issued");
    assert_eq!(tokens[0].len(), 43, "base64url of an HMAC-SHA256");
    assert_eq!(replay, Some(410), "the recomputed URL is the real one: used (410), not altered (403)");
    let job_id = probe(&outcome, "PHR-F2").url.rsplit('/').next().expect("job id").to_owned();
    let masked = format!("{PHR_BASE}/export/{job_id}/artifact?expires=");
    let request = contents(&outcome.dir.join("httpdump/PHR-F3/request.http"));
    assert!(request.starts_with(&format!("GET {masked}")), "{request}");
    assert!(request.lines().next().is_some_and(|line| line.contains("&token=<MASKED> HTTP/1.1")), "{request}");
    let status_body = contents(&outcome.dir.join("httpdump/PHR-F2/response.body"));
    assert!(status_body.contains("&token=<MASKED>\""), "{status_body}");
    let mut files = Vec::new();
    files_under(&outcome.dir, &mut files);
    for file in &files {
        let text = contents(file);
        assert!(!text.contains(&tokens[0]), "{} contains the signed URL's token", file.display());
    }
}

const FAILING_FLOW: &str = r#"schema_version = 1
name = "flow-failures"
label = "flowFailures"

[headers]
X-Facility-Id = "F001"

[[phases]]
id = "S"
name = "submit"

[[phases.probes]]
id = "submit"
name = "export"
method = "POST"
path = "/openDolphin/resources/20/adm/phr/export"
headers = { "Content-Type" = "application/json" }
body = '{"patientIds":["P0001"]}'
ready = [202]
capture = { job_id = "/jobId", ghost = "/noSuchField" }

[[phases]]
id = "W"
name = "wait"

[[phases.probes]]
id = "never"
name = "status never matching"
method = "GET"
path = "/openDolphin/resources/20/adm/phr/status/{{job_id}}"
ready = [200]
poll = { pointer = "/state", equals = "NEVER", attempts = 2, interval_ms = 50 }

[[phases.probes]]
id = "orphan"
name = "status of a ghost"
method = "GET"
path = "/openDolphin/resources/20/adm/phr/status/{{ghost}}"
ready = [200]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_capture_and_an_unmatched_poll_are_recorded_outcomes() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let template_dir = tempfile::tempdir().expect("template dir");
    std::fs::write(template_dir.path().join("template.toml"), FAILING_FLOW).expect("write template");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");

    let outcome = routine_support::run_against(&environment, artifacts.path(), template_dir.path()).await;
    environment.stop().await;

    let submit = probe(&outcome, "submit");
    assert_eq!(submit.http_status, Some(202));
    assert!(!submit.ready);
    assert_eq!(submit.check_failures, ["capture ghost from /noSuchField: missing in the response"]);
    let never = probe(&outcome, "never");
    assert_eq!(never.http_status, Some(200));
    assert!(!never.ready);
    assert_eq!(never.attempts, Some(2));
    assert!(
        never.check_failures.iter().any(|f| f.starts_with("poll: /state did not become \"NEVER\" in 2 attempts")),
        "{:?}",
        never.check_failures
    );
    let status_txt = contents(&outcome.dir.join("httpdump/never/status.txt"));
    assert!(status_txt.contains("\nattempts=2\n") && status_txt.contains("\nready=false\n"), "{status_txt}");
    let orphan = probe(&outcome, "orphan");
    assert_eq!(orphan.outcome, Outcome::LocalError { message: "variable ghost was not captured".to_owned() });
    assert!(!orphan.ready);
    assert!(contents(&outcome.dir.join("httpdump/orphan/status.txt")).contains("variable ghost was not captured"));
}
