//! Preflight against a real mTLS listener, real SQLite audit files and readyz: all green when everything
//! is in order, and the failing check named (with where its value came from) when one thing is wrong. The
//! Basic, audit-table and P12 cases also run against the real phr-server of the demo, through the plan a
//! run builds and through the `connrun preflight` command.

use crate::{probe_support, routine_support};

use std::path::Path;
use std::time::Duration;

use connrun::cli::demo::{DEMO_TARGET, DemoEnvironment};
use connrun::evidence::CheckResult;
use connrun::evidence::runid::RunId;
use connrun::plan::Plan;
use connrun::plan::target::Targets;
use connrun::plan::template::Template;
use connrun::probe::BasicCredentials;
use connrun::probe::identity::{ClientIdentitySource, TrustSource};
use connrun::run::preflight::{AuthRequest, DEFAULT_AUTH_PATH, PreflightInput, SchemaQuery, preflight};
use devpki::{LeafSpec, Pkcs12Flavor};
use probe_support::{BASIC_PASSWORD, BASIC_USER, P12_PASSWORD, Pki, ServerKind};

/// The columns the shipped templates read, as phr-server creates them (trimmed to what matters here).
const AUDIT_TABLE: &str = "create table d_audit_event (id integer, trace_id text, action text, outcome text)";

fn check<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no {name} check in {results:#?}"))
}

fn names(results: &[CheckResult]) -> Vec<&str> {
    results.iter().map(|r| r.name.as_str()).collect()
}

/// A SQLite file named `name` in the PKI folder, created by `sql` (none: an empty database).
async fn audit_file(pki: &Pki, name: &str, sql: Option<&str>) -> String {
    use sqlx::Connection as _;
    let path = pki.dir.path().join(name);
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    if let Some(sql) = sql {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut db).await.unwrap();
    }
    db.close().await.unwrap();
    format!("sqlite:{}", path.display())
}

fn auth(password: &str, password_from: Option<String>) -> AuthRequest {
    AuthRequest {
        path: DEFAULT_AUTH_PATH.to_owned(),
        headers: vec![("X-Trace-Id".to_owned(), "connrun-preflight-test".to_owned())],
        basic: Some(BasicCredentials { user: BASIC_USER.to_owned(), password: password.to_owned() }),
        password_from,
        accepted: vec![200],
    }
}

async fn input(pki: &Pki, client_ca_of_server: &devpki::Authority) -> PreflightInput {
    let server = pki.ca.issue(&LeafSpec::loopback_server()).unwrap();
    let addr =
        probe_support::start(ServerKind::Tls { cert: server, client_ca: Some(client_ca_of_server), tls12_only: false })
            .await;
    PreflightInput {
        base_url: format!("https://localhost:{}", addr.port()),
        trust: TrustSource::CaBundle(pki.ca_bundle.clone()),
        identity: Some(ClientIdentitySource::Pkcs12 {
            path: pki.client_p12(Pkcs12Flavor::Modern),
            password: P12_PASSWORD.to_owned(),
            password_from: None,
        }),
        audit_db_url: Some(audit_file(pki, "audit.db", Some(AUDIT_TABLE)).await),
        readyz_url: Some(format!("https://localhost:{}/readyz", addr.port())),
        // Only reached when something is broken; room for a loaded CI machine.
        timeout: Duration::from_secs(30),
        auth: auth(BASIC_PASSWORD, None),
        audit_queries: vec![SchemaQuery::built_in()],
        proxy: Default::default(),
    }
}

#[tokio::test]
async fn everything_in_order_passes_every_check_with_facts() {
    let pki = Pki::new();
    let input = input(&pki, &pki.ca).await;
    let place = input.base_url.trim_start_matches("https://").to_owned();

    let results = preflight(&input).await;

    assert_eq!(
        names(&results),
        [
            "identity",
            "client_certificate",
            "trust",
            "tcp_connect",
            "tls_handshake",
            "basic_auth",
            "audit_db",
            "audit_schema",
            "readyz"
        ]
    );
    assert!(results.iter().all(|r| r.ok), "{results:#?}");
    assert!(check(&results, "client_certificate").detail.contains("days left"));
    assert_eq!(check(&results, "identity").certificates.len(), 2);
    let tls = check(&results, "tls_handshake");
    assert_eq!(tls.certificates.len(), 2);
    assert!(tls.detail.starts_with(&format!("{place}: TLSv1.3")) && tls.detail.contains("accepted the client"));
    let auth = &check(&results, "basic_auth").detail;
    let url = format!("{}{DEFAULT_AUTH_PATH}", input.base_url);
    assert!(auth.contains(&format!("GET {url} as Basic user `F001:ops`: HTTP 200 (body: server)")), "{auth}");
    assert!(check(&results, "audit_schema").detail.contains("d_audit_event"), "{results:#?}");
    assert!(check(&results, "readyz").detail.contains("HTTP 200 ready"), "{results:#?}");
}

#[tokio::test]
async fn rejected_client_certificate_wrong_password_and_missing_audit_db_are_named() {
    let pki = Pki::new();
    let mut rejecting = input(&pki, &pki.foreign_ca).await;
    rejecting.audit_db_url = Some(format!("sqlite:{}", pki.dir.path().join("absent.db").display()));
    let mut wrong_password = rejecting.clone();
    wrong_password.identity = Some(ClientIdentitySource::Pkcs12 {
        path: pki.client_p12(Pkcs12Flavor::Legacy3Des),
        password: "nope".to_owned(),
        password_from: Some("environment variable CONNRUN_P12_PASSWORD".to_owned()),
    });

    let rejected = preflight(&rejecting).await;
    let bad_identity = preflight(&wrong_password).await;

    let tls = check(&rejected, "tls_handshake");
    assert!(!tls.ok && tls.detail.contains("client certificate rejected"), "{tls:#?}");
    assert!(!check(&rejected, "audit_db").ok);
    assert!(!check(&rejected, "readyz").ok);
    // Neither the request nor the SQL could run: no check reports on them.
    assert!(!names(&rejected).contains(&"basic_auth") && !names(&rejected).contains(&"audit_schema"));
    let identity = check(&bad_identity, "identity");
    assert!(!identity.ok && identity.detail.contains("wrong password"), "{identity:#?}");
    assert!(identity.detail.contains("read from environment variable CONNRUN_P12_PASSWORD"), "{identity:#?}");
    assert!(!check(&bad_identity, "tls_handshake").ok);
}

/// A rotated Basic password used to pass preflight (`result: OK`) and fail every probe with 401.
#[tokio::test]
async fn wrong_basic_password_fails_naming_the_variable_that_holds_it() {
    let pki = Pki::new();
    let text = "[targets.stage]\nbase_url = \"https://127.0.0.1:9\"\n[targets.stage.basic]\nuser = \"F001:ops\"\n\
                password_env = \"CONNRUN_BASIC_PASSWORD\"\n";
    let targets = Targets::parse(&pki.dir.path().join("targets.toml"), text).unwrap();
    let mut input = input(&pki, &pki.ca).await;
    input.auth = auth("rotated-last-week", targets.targets["stage"].basic_password_origin());

    let results = preflight(&input).await;

    let auth = check(&results, "basic_auth");
    assert!(!auth.ok, "{auth:#?}");
    assert!(auth.detail.contains("HTTP 401"), "{auth:#?}");
    let origin = "environment variable CONNRUN_BASIC_PASSWORD (targets.stage.basic.password_env in";
    assert!(auth.detail.contains(&format!("check the password in {origin}")), "{auth:#?}");
    assert!(check(&results, "tls_handshake").ok, "the connection itself is fine: {results:#?}");
    assert!(!results.iter().any(|r| r.detail.contains("rotated-last-week")), "{results:#?}");
}

/// `select 1` used to pass on a database that has no `d_audit_event`.
#[tokio::test]
async fn audit_database_without_the_audit_table_or_its_columns_fails_naming_them() {
    let pki = Pki::new();
    let mut empty = input(&pki, &pki.ca).await;
    empty.audit_db_url = Some(audit_file(&pki, "empty.db", None).await);
    let mut old_schema = empty.clone();
    old_schema.audit_db_url = Some(audit_file(&pki, "old.db", Some("create table d_audit_event (id integer)")).await);

    let without_table = preflight(&empty).await;
    let without_columns = preflight(&old_schema).await;

    for (results, words) in [(&without_table, "no such table: d_audit_event"), (&without_columns, "no such column")] {
        assert!(check(results, "audit_db").ok, "the database itself answers: {results:#?}");
        let schema = check(results, "audit_schema");
        assert!(!schema.ok && schema.detail.contains(words), "{schema:#?}");
        assert!(schema.detail.contains("the built-in check of d_audit_event"), "{schema:#?}");
    }
}

/// `timeout_seconds = 18446744073709551615` panicked preflight with "overflow when adding duration to instant".
#[tokio::test]
async fn a_limit_too_large_for_the_clock_does_not_panic_preflight() {
    let pki = Pki::new();
    let mut input = input(&pki, &pki.ca).await;
    input.timeout = Duration::from_secs(u64::MAX);

    let results = preflight(&input).await;

    assert!(results.iter().all(|r| r.ok), "{results:#?}");
}

#[tokio::test]
async fn refused_port_fails_the_tcp_check() {
    let pki = Pki::new();
    let refused = probe_support::refused_port();
    let input = PreflightInput {
        base_url: format!("https://127.0.0.1:{}", refused.port),
        trust: TrustSource::CaBundle(pki.ca_bundle.clone()),
        identity: None,
        audit_db_url: None,
        readyz_url: None,
        timeout: Duration::from_secs(30),
        auth: auth(BASIC_PASSWORD, None),
        audit_queries: vec![SchemaQuery::built_in()],
        proxy: Default::default(),
    };

    let results = preflight(&input).await;

    let tcp = check(&results, "tcp_connect");
    assert!(!tcp.ok && tcp.detail.contains("connection refused"), "{tcp:#?}");
    assert!(tcp.detail.starts_with(&format!("127.0.0.1:{}: ", refused.port)), "{tcp:#?}");
    assert!(results.iter().all(|r| r.name != "tls_handshake" && r.name != "basic_auth"));
}

/// The demo's targets file with `replacements` applied, written next to it (relative paths still resolve).
fn demo_targets_variant(targets_file: &Path, name: &str, replacements: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(targets_file).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "the demo targets file no longer contains {from:?}:\n{text}");
        text = text.replace(from, to);
    }
    let variant = targets_file.with_file_name(name);
    std::fs::write(&variant, text).unwrap();
    variant
}

/// The run's preflight as `connrun run` builds it: phr-seq's server-info request and its three SQL files.
async fn plan_preflight(targets_file: &Path) -> Vec<CheckResult> {
    let target = Targets::load(targets_file).unwrap().resolve(DEMO_TARGET).unwrap();
    let template = Template::load(&routine_support::phr_seq()).unwrap();
    let plan = Plan::build(&template, &target, &RunId::timestamp_now()).unwrap();
    preflight(&PreflightInput::for_plan(&plan, Duration::from_secs(30))).await
}

/// A fresh, empty PostgreSQL database (URL, admin URL, name); `None` (loudly) without a server, unless
/// REQUIRE_PG=1.
async fn fresh_postgres_database() -> Option<(String, String, String)> {
    let admin =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("connrun_preflight_{}", uuid::Uuid::new_v4().simple());
    let created = async {
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.simple_query(&format!("CREATE DATABASE \"{name}\"")).await.map(|_| ())
    };
    match created.await {
        Ok(()) => {
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
            Some((format!("{base}/{name}"), admin, name))
        }
        Err(error) if std::env::var("REQUIRE_PG").as_deref() == Ok("1") => panic!("REQUIRE_PG=1 but {error}"),
        Err(error) => {
            eprintln!("\n!!! SKIPPING the PostgreSQL half: PostgreSQL unreachable ({error}); REQUIRE_PG=1 fails\n");
            None
        }
    }
}

async fn drop_postgres_database(admin: &str, name: &str) {
    if let Ok((client, connection)) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await {
        tokio::spawn(connection);
        let _ = client.simple_query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
    }
}

/// Against the real phr-server: the run's preflight passes when all is well (and a real run records the
/// same checks), and names the Basic password file, or the SQL file and table, when one is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_preflight_against_phr_server_checks_the_templates_request_and_sql() {
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let targets = environment.targets_file().to_owned();
    let scratch = targets.parent().unwrap().to_owned();
    std::fs::write(scratch.join("pki/wrong.password"), "wrong-password\n").unwrap();
    std::fs::File::create(scratch.join("empty-audit.db")).unwrap();
    let basic = ("password_file = \"pki/ops.password\"", "password_file = \"pki/wrong.password\"");
    let wrong_basic = demo_targets_variant(&targets, "wrong-basic.toml", &[basic]);
    let empty_sqlite = format!("url = \"sqlite:{}\"", scratch.join("empty-audit.db").display());
    let empty_audit =
        demo_targets_variant(&targets, "empty-audit.toml", &[("url_file = \"audit.url\"", &empty_sqlite)]);
    let artifacts = tempfile::tempdir().unwrap();

    let good = plan_preflight(&targets).await;
    let refused = plan_preflight(&wrong_basic).await;
    let no_table = plan_preflight(&empty_audit).await;
    let run = routine_support::run_against(&environment, artifacts.path(), &routine_support::phr_seq()).await;
    let postgres = match fresh_postgres_database().await {
        None => None,
        Some((url, admin, name)) => {
            let variant =
                demo_targets_variant(&targets, "pg.toml", &[("url_file = \"audit.url\"", &format!("url = \"{url}\""))]);
            let results = plan_preflight(&variant).await;
            drop_postgres_database(&admin, &name).await;
            Some(results)
        }
    };
    environment.stop().await;

    assert!(good.iter().all(|r| r.ok), "{good:#?}");
    let auth = &check(&good, "basic_auth").detail;
    assert!(auth.contains("/openDolphin/resources/serverinfo/claim/conn as Basic user `F001:ops`: HTTP 200"), "{auth}");
    let sql_files = ["PHR_LAYER_ID_TOKEN_ISSUE.sql", "PHR_IMAGE_STREAM.sql", "PHR_CONTAINER_FETCH.sql"];
    assert!(sql_files.iter().all(|f| check(&good, "audit_schema").detail.contains(f)), "{good:#?}");
    let in_run: Vec<(&str, bool)> = run.status.preflight.iter().map(|c| (c.name.as_str(), c.ok)).collect();
    assert!(in_run.contains(&("basic_auth", true)) && in_run.contains(&("audit_schema", true)), "{in_run:?}");
    assert!(check(&run.status.preflight, "audit_schema").detail.contains("PHR_IMAGE_STREAM.sql"));

    let refused = check(&refused, "basic_auth");
    let password_file =
        format!("file {} (targets.demo.basic.password_file", scratch.join("pki/wrong.password").display());
    assert!(!refused.ok && refused.detail.contains("HTTP 401"), "{refused:#?}");
    assert!(refused.detail.contains(&password_file), "{refused:#?}");

    let mut missing_table = vec![(no_table, "no such table: d_audit_event")];
    missing_table.extend(postgres.map(|results| (results, "relation \"d_audit_event\" does not exist")));
    for (results, words) in missing_table {
        let schema = check(&results, "audit_schema");
        assert!(!schema.ok && schema.detail.contains(words), "{schema:#?}");
        assert!(schema.detail.contains("PHR_LAYER_ID_TOKEN_ISSUE.sql"), "{schema:#?}");
    }
}

/// `connrun preflight` itself: a wrong Basic password or P12 password names its environment variable, and
/// `--template` runs the template's checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connrun_preflight_names_the_variable_of_a_wrong_basic_or_p12_password() {
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let targets = environment.targets_file().to_owned();
    let scratch = targets.parent().unwrap().to_owned();
    let p12_password = std::fs::read_to_string(scratch.join("pki/client.p12.password")).unwrap();
    let ops_password = std::fs::read_to_string(scratch.join("pki/ops.password")).unwrap();
    let variant = demo_targets_variant(
        &targets,
        "env.toml",
        &[
            ("password_file = \"pki/client.p12.password\"", "password_env = \"PF_TEST_P12_PASSWORD\""),
            ("password_file = \"pki/ops.password\"", "password_env = \"PF_TEST_BASIC_PASSWORD\""),
        ],
    );
    let preflight = |p12: &str, basic: &str, template: Option<&str>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_connrun"));
        command.arg("--targets").arg(&variant).arg("--run-templates").arg(routine_support::phr_seq().parent().unwrap());
        command
            .args(["preflight", "--target", DEMO_TARGET])
            .args(template.map(|t| ["--template", t]).into_iter().flatten());
        command.env("PF_TEST_P12_PASSWORD", p12).env("PF_TEST_BASIC_PASSWORD", basic).output()
    };

    let good = preflight(&p12_password, &ops_password, Some("phr-seq")).await.unwrap();
    let wrong_basic = preflight(&p12_password, "wrong-basic", None).await.unwrap();
    let wrong_p12 = preflight("wrong-p12", &ops_password, None).await.unwrap();
    environment.stop().await;

    let good_text = routine_support::text(&good);
    assert_eq!(good.status.code(), Some(0), "{good_text}");
    assert!(good_text.contains("for template phr-seq") && good_text.contains("PHR_IMAGE_STREAM.sql"), "{good_text}");
    for (output, check, variable) in
        [(&wrong_basic, "basic_auth", "PF_TEST_BASIC_PASSWORD"), (&wrong_p12, "identity", "PF_TEST_P12_PASSWORD")]
    {
        let text = routine_support::text(output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("FAIL {check} "))).unwrap_or_default();
        assert!(line.contains(&format!("environment variable {variable}")), "{check}: {text}");
        assert!(text.contains("result: PROBLEM") && !text.contains("wrong-basic") && !text.contains("wrong-p12"));
    }
}
