//! HARNESS.md §5 over a whole run: run phr-full against the real phr-server with a password-protected .p12
//! and a Basic password, then scan every byte of the sealed evidence tree (gzip files decompressed) for each
//! secret in raw, base64 and URL-encoded form. Also pins that phr-full passes against our server.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};
use connrun::evidence::{self, RunFolder};
use connrun::plan::Plan;
use connrun::plan::target::Targets;
use connrun::plan::template::Template;
use connrun::report::Reports;
use connrun::run::{self, RunOptions};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() { files_under(&path, out) } else { out.push(path) }
    }
}

fn contents(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).expect("read evidence file");
    if path.extension().is_some_and(|e| e == "gz") {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut plain).expect("gunzip");
        plain
    } else {
        raw
    }
}

fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        secret.to_owned(),
        b64.encode(secret),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string(),
        b64.encode(format!("F001:ops:{secret}")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_phr_full_run_contains_no_secret_in_any_form() {
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let target = Targets::load(environment.targets_file()).expect("targets").resolve(DEMO_TARGET).expect("target");
    let template =
        Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("run-templates/phr-full")).expect("template");
    let date = chrono::Utc::now().date_naive();
    let (run_id, _) = evidence::reserve_next(artifacts.path(), &template.suite, &template.name, date, &template.label)
        .expect("reserve");
    let plan = Plan::build(&template, &target, &run_id).expect("plan");
    let prepared = run::prepare(&target).expect("identity loads from the .p12");
    let (folder, _) = RunFolder::start(artifacts.path(), &run_id).expect("start");
    let options = RunOptions { jobs: 4, progress: false, reports: Reports::load(None).expect("reports") };

    let outcome = run::execute(&plan, &prepared, folder, &options).await.expect("run completes");
    let secrets: Vec<String> = environment.secrets().to_vec();
    environment.stop().await;

    let mut files = Vec::new();
    files_under(&outcome.dir, &mut files);
    for file in &files {
        let bytes = contents(file);
        for secret in &secrets {
            for form in forms(secret) {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                    "{} contains a secret (form {form:?})",
                    file.display()
                );
            }
        }
    }
    let not_ready: Vec<String> = outcome
        .status
        .probes
        .iter()
        .filter(|p| !p.ready)
        .map(|p| format!("{} {:?} {:?} {:?}", p.id, p.http_status, p.outcome, p.check_failures))
        .collect();
    assert!(not_ready.is_empty(), "phr-full against phr-server: {not_ready:?}");
    assert!(outcome.status.audit_ok, "audit: {:?} {:?}", outcome.status.audit, outcome.status.audit_errors);
}
