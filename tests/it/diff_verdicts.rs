//! `connrun diff` judges change, not state, over real runs against phr-server: an unchanged certificate is
//! no regression however near its end, a new one is reported, an extra audit row is a regression (never an
//! improvement), a pull that newly fails is one regression, a run without audit shows 未採取, and runs of
//! different templates are refused unless the operator asks.

use std::path::{Path, PathBuf};

use crate::routine_support;

use routine_support::{connrun, phr_seq, phr_seq_variant, text};

use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};
use connrun::evidence::{self, RunFolder};
use connrun::plan::Plan;
use connrun::plan::target::Targets;
use connrun::plan::template::Template;
use connrun::report::Reports;
use connrun::run::{self, RunOptions, RunOutcome};

/// Latency is left out of these comparisons: it has its own tests in `diff_runs`, and a loaded machine's
/// jitter must not decide a verdict about certificates or audit rows.
const NO_LATENCY: &[&str] = &["--latency-min-ms", "3600000"];

/// Runs `template_dir` against the demo server's target as described by `targets_file` (a variant of the
/// demo's own targets file, written next to it so its relative paths still resolve).
async fn run_with_targets(targets_file: &Path, artifacts: &Path, template_dir: &Path) -> RunOutcome {
    let target = Targets::load(targets_file).expect("targets").resolve(DEMO_TARGET).expect("target");
    let template = Template::load(template_dir).expect("template");
    let date = chrono::Utc::now().date_naive();
    let (run_id, _) =
        evidence::reserve_next(artifacts, &template.suite, &template.name, date, &template.label).expect("reserve");
    let plan = Plan::build(&template, &target, &run_id).expect("plan");
    let prepared = run::prepare(&target).expect("identity");
    let (folder, _) = RunFolder::start(artifacts, &run_id).expect("start");
    let options = RunOptions { jobs: 2, progress: false, reports: Reports::load(None).expect("reports") };
    run::execute(&plan, &prepared, folder, &options).await.expect("run completes")
}

/// A copy of the demo's targets file, next to it, with `from` replaced by `to`.
fn targets_variant(environment: &DemoEnvironment, name: &str, from: &str, to: &str) -> PathBuf {
    let original = environment.targets_file();
    let text = std::fs::read_to_string(original).expect("demo targets");
    assert!(text.contains(from), "the demo targets file no longer contains {from:?}");
    let variant = original.with_file_name(name);
    std::fs::write(&variant, text.replacen(from, to, 1)).expect("write targets variant");
    variant
}

/// The demo targets file's whole `[audit]` section (the last one: its database and checkpoint keys).
fn audit_section(environment: &DemoEnvironment) -> String {
    let text = std::fs::read_to_string(environment.targets_file()).expect("demo targets");
    let header = format!("[targets.{DEMO_TARGET}.audit]");
    let section = &text[text.find(&header).expect("the demo target has an [audit] section")..];
    assert_eq!(section.matches('[').count(), 1, "the [audit] section is no longer the last: {section}");
    section.to_owned()
}

/// `(subject, aspect, class)` of every change in a `diff --json` output, optionally only one aspect family.
fn changes(output: &std::process::Output, aspect_prefix: &str) -> Vec<(String, String, String)> {
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("diff --json");
    let field = |c: &serde_json::Value, key: &str| c[key].as_str().unwrap_or("").to_owned();
    json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| field(c, "aspect").starts_with(aspect_prefix))
        .map(|c| (field(c, "subject"), field(c, "aspect"), field(c, "class")))
        .collect()
}

/// English that must never reach a diff's Markdown: the verdict words, the aspects' machine names, and the
/// notes' former English sentences.
const ENGLISH_INTERNALS: &[&str] = &[
    "regression",
    "improvement",
    "neutral",
    "certificate.",
    "audit.",
    "the server",
    "expected",
    "audit pull failed",
    "in this run",
    "is not a Ready status",
    "days left",
];

/// Asserts the Markdown of a diff is written in the logs' words.
fn assert_japanese_only(markdown: &str) {
    for english in ENGLISH_INTERNALS {
        assert!(!markdown.contains(english), "{english:?} in the diff's Markdown:\n{markdown}");
    }
}

fn owned(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items.iter().map(|(s, a, c)| (s.to_string(), a.to_string(), c.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_certificate_is_never_a_regression_and_a_new_one_is_reported_as_neutral() {
    // Arrange: two runs against one server (one certificate), a third against a new server whose certificate
    // was issued later (another fingerprint, ending no earlier).
    let artifacts = tempfile::tempdir().expect("temp dir");
    let first_server = DemoEnvironment::start(None).await.expect("demo server starts");
    let a = routine_support::run_against(&first_server, artifacts.path(), &phr_seq()).await;
    let b = routine_support::run_against(&first_server, artifacts.path(), &phr_seq()).await;
    first_server.stop().await;
    let second_server = DemoEnvironment::start(None).await.expect("demo server starts");
    let c = routine_support::run_against(&second_server, artifacts.path(), &phr_seq()).await;
    second_server.stop().await;
    let (a, b, c) = (&a.status.run_id, &b.status.run_id, &c.status.run_id);

    // Act: a warning bar of 100 years puts every 90-day demo certificate below it in every run, as a
    // certificate with 29 days left is below the default 30 in two runs a day apart.
    let diff = |x: &str, y: &str| {
        connrun(artifacts.path(), &[&["--json", "diff", x, y, "--cert-min-days", "36500"], NO_LATENCY].concat())
    };
    let same = diff(a, b);
    let renewed = diff(b, c);
    let markdown = connrun(artifacts.path(), &[&["diff", a, b, "--cert-min-days", "36500"], NO_LATENCY].concat());

    // Assert: the same certificate, below the bar in both runs, is no change at all.
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert_eq!(changes(&same, "certificate"), vec![], "{}", text(&same));
    assert!(String::from_utf8_lossy(&markdown.stdout).contains("退行なし"), "{}", text(&markdown));
    // Assert: a new fingerprint is always reported, neutral when the replacement ends no earlier.
    assert_eq!(renewed.status.code(), Some(0), "{}", text(&renewed));
    assert_eq!(
        changes(&renewed, "certificate"),
        owned(&[("certificate", "certificate.fingerprint", "neutral")]),
        "{}",
        text(&renewed)
    );
    // Assert: the Markdown says it in the logs' words.
    let renewed_md = connrun(artifacts.path(), &[&["diff", b, c, "--cert-min-days", "36500"], NO_LATENCY].concat());
    let renewed_md = String::from_utf8_lossy(&renewed_md.stdout);
    assert!(renewed_md.contains("| 証明書フィンガープリント |"), "{renewed_md}");
    assert!(renewed_md.contains("| 変化 | サーバ証明書が替わった |"), "{renewed_md}");
    assert_japanese_only(&renewed_md);
}

/// phr-seq with PHR-06 sent a second time by a probe that declares no audit row, so Phase-C's
/// PHR_LAYER_ID_TOKEN_ISSUE count reads delta 2, expected 1.
const TOKEN_TWICE: &[(&str, &str)] = &[(
    "audit = [\"PHR_LAYER_ID_TOKEN_ISSUE\"]\n",
    "audit = [\"PHR_LAYER_ID_TOKEN_ISSUE\"]\n\n[[phases.probes]]\nid = \"PHR-06-again\"\nname = \"identityToken\"\n\
     method = \"POST\"\npath = \"{{phr_base}}/identityToken\"\n\
     headers = { \"Content-Type\" = \"application/json\" }\n\
     body = '{\"nonce\":\"{{nonce}}-again\",\"user\":\"{{user}}\"}'\nready = [200, 403]\n",
)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_audit_row_is_a_regression_and_never_an_improvement() {
    // Arrange: a run with every count exact, then one where PHR_LAYER_ID_TOKEN_ISSUE has one row more than
    // the template expects.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let variants = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let exact = routine_support::run_against(&environment, artifacts.path(), &phr_seq()).await;
    let extra =
        routine_support::run_against(&environment, artifacts.path(), &phr_seq_variant(variants.path(), TOKEN_TWICE))
            .await;
    environment.stop().await;
    let token = extra.status.audit.iter().find(|c| c.action == "PHR_LAYER_ID_TOKEN_ISSUE").expect("token count");
    assert_eq!((token.delta, token.expected), (Some(2), 1), "the planted extra row: {:?}", extra.status.audit);
    let (exact, extra) = (&exact.status.run_id, &extra.status.run_id);

    // Act
    let forward = connrun(artifacts.path(), &[&["--json", "diff", exact, extra], NO_LATENCY].concat());
    let reverse = connrun(artifacts.path(), &[&["--json", "diff", extra, exact], NO_LATENCY].concat());
    let forward_md = connrun(artifacts.path(), &[&["diff", exact, extra], NO_LATENCY].concat());

    // Assert: one row more than expected is a regression (exit 1), not an improvement.
    assert_eq!(forward.status.code(), Some(1), "{}", text(&forward));
    assert_eq!(
        changes(&forward, "audit"),
        owned(&[("PHR_LAYER_ID_TOKEN_ISSUE (success)", "audit.delta", "regression")]),
        "{}",
        text(&forward)
    );
    let md = String::from_utf8_lossy(&forward_md.stdout);
    assert!(
        md.contains(
            "| 増分 1（期待 1） | 増分 2（期待 1） | **退行** | テンプレートの期待より 1 行多い（前回 0 行） |"
        ),
        "{md}"
    );
    assert_japanese_only(&md);
    // Assert: back to exactly as expected is the improvement.
    assert_eq!(reverse.status.code(), Some(0), "{}", text(&reverse));
    assert_eq!(
        changes(&reverse, "audit"),
        owned(&[("PHR_LAYER_ID_TOKEN_ISSUE (success)", "audit.delta", "improvement")]),
        "{}",
        text(&reverse)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_that_newly_fails_is_one_regression_and_no_audit_database_reads_as_not_collected() {
    // Arrange: a run that collects, one whose audit database refuses connections, two without [audit].
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let audit_section = audit_section(&environment);
    let unconfigured = targets_variant(&environment, "targets-no-audit.toml", &audit_section, "");
    let refused = targets_variant(&environment, "targets-refused-audit.toml", "\"audit.url\"", "\"refused.url\"");
    std::fs::write(refused.with_file_name("refused.url"), "postgres://connrun@127.0.0.1:1/refused").expect("url");
    let collected = routine_support::run_against(&environment, artifacts.path(), &phr_seq()).await;
    let failed = run_with_targets(&refused, artifacts.path(), &phr_seq()).await;
    let none_1 = run_with_targets(&unconfigured, artifacts.path(), &phr_seq()).await;
    let none_2 = run_with_targets(&unconfigured, artifacts.path(), &phr_seq()).await;
    environment.stop().await;
    assert_eq!(failed.status.audit_state().key(), "failed", "{:?}", failed.status.audit_errors);
    assert_eq!(none_1.status.audit_state().key(), "not_configured");

    // Act
    let ids = |x: &RunOutcome, y: &RunOutcome| [x.status.run_id.clone(), y.status.run_id.clone()];
    let diff = |[x, y]: [String; 2], json: bool| {
        let mut args = if json { vec!["--json", "diff"] } else { vec!["diff"] };
        args.extend([x.as_str(), y.as_str()]);
        connrun(artifacts.path(), &[&args[..], NO_LATENCY].concat())
    };
    let newly_failed = diff(ids(&collected, &failed), true);
    let newly_failed_md = diff(ids(&collected, &failed), false);
    let both_unconfigured = diff(ids(&none_1, &none_2), false);

    // Assert: collected → failed is one regression, the counts of a failed pull are not compared row by row.
    assert_eq!(newly_failed.status.code(), Some(1), "{}", text(&newly_failed));
    assert_eq!(
        changes(&newly_failed, "audit"),
        owned(&[("audit", "audit.state", "regression")]),
        "{}",
        text(&newly_failed)
    );
    let failed_md = String::from_utf8_lossy(&newly_failed_md.stdout);
    assert!(failed_md.contains("| 監査状態 | 採取済み | 採取失敗 | **退行** | 監査行の採取に失敗（"), "{failed_md}");
    assert_japanese_only(&failed_md);
    // Assert: no audit on either side is shown as 未採取, not passed over as "no change".
    let md = String::from_utf8_lossy(&both_unconfigured.stdout);
    assert_eq!(both_unconfigured.status.code(), Some(0), "{}", text(&both_unconfigured));
    assert!(md.contains("- 監査: 未採取 → 未採取（"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_different_templates_are_refused_unless_the_operator_asks() {
    // Arrange: phr-seq, and the same probes under another template name.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let variants = tempfile::tempdir().expect("temp dir");
    let renamed = phr_seq_variant(variants.path(), &[("name = \"phr-seq\"", "name = \"phr-seq-copy\"")]);
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let seq = routine_support::run_against(&environment, artifacts.path(), &phr_seq()).await;
    let copy = routine_support::run_against(&environment, artifacts.path(), &renamed).await;
    environment.stop().await;
    let (seq, copy) = (&seq.status.run_id, &copy.status.run_id);

    // Act
    let refused = connrun(artifacts.path(), &[&["diff", seq, copy], NO_LATENCY].concat());
    let allowed = connrun(artifacts.path(), &[&["--json", "diff", seq, copy, "--allow-mismatch"], NO_LATENCY].concat());

    // Assert: exit 2 with a sentence naming both templates and the way out.
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let message = text(&refused);
    assert!(
        message.contains("template phr-seq against target demo")
            && message.contains("template phr-seq-copy against target demo")
            && message.contains("--allow-mismatch"),
        "{message}"
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed));
}
