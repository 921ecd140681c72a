//! phr-server against a real PostgreSQL that speaks TLS: the `sslmode` and `sslrootcert` of
//! `PHR_DATABASE_URL`, read as libpq reads them, and connect errors that say what to change, once.
//!
//! Each test starts a throw-away cluster (pgcluster): `ssl=on` with `hostssl` only and a certificate issued
//! for `localhost` alone by a CA made for it, or `ssl=off`. The production case is the first test:
//! `verify-full` with the CA file connects and the migrations run, as `App::build` does at start-up.

use pgcluster::PgCluster;
use phr_server::Db;

/// Whether the pool's connection is encrypted, as the server sees it.
async fn encrypted(db: &Db) -> bool {
    let Db::Postgres(pool) = db else { panic!("expected PostgreSQL") };
    sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("pg_stat_ssl")
}

fn query(mode: &str, root: Option<&std::path::Path>) -> String {
    match root {
        Some(root) => format!("sslmode={mode}&sslrootcert={}", root.display()),
        None => format!("sslmode={mode}"),
    }
}

async fn connect_error(url: &str, cluster: &PgCluster) -> String {
    match Db::connect(url).await {
        Ok(_) => panic!("{url} connected but should not have\n{}", cluster.log()),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects_and_migrations_run() {
    let Some(cluster) = PgCluster::tls() else { return };
    let url = cluster.url("localhost", &query("verify-full", cluster.ca_pem_path()));
    let db = Db::connect(&url).await.unwrap_or_else(|e| panic!("{e}\n{}", cluster.log()));
    assert!(encrypted(&db).await);
    let applied = db.migrate().await.expect("migrations run over TLS");
    assert!(!applied.is_empty());
    let ready = db.readiness().await.unwrap();
    assert_eq!(ready.schema_version, ready.expected_version);
    db.close().await;
}

#[tokio::test]
async fn a_foreign_ca_fails_with_a_message_naming_the_setting() {
    let Some(cluster) = PgCluster::tls() else { return };
    let foreign = cluster.foreign_ca_pem_path();
    for mode in ["verify-full", "verify-ca"] {
        let message = connect_error(&cluster.url("localhost", &query(mode, Some(foreign))), &cluster).await;
        assert!(message.starts_with("PHR_DATABASE_URL (postgres://postgres:<MASKED>@localhost:"), "{message}");
        assert!(message.contains(&format!(", sslmode={mode}): cannot connect: ")), "{message}");
        assert!(message.contains("UnknownIssuer"), "{message}");
        assert!(message.contains(&format!("not issued by a CA in sslrootcert={}", foreign.display())), "{message}");
        assert!(!message.contains(pgcluster::PASSWORD), "{message}");
    }
}

#[tokio::test]
async fn require_with_a_root_certificate_verifies_the_chain_as_libpq_does() {
    let Some(cluster) = PgCluster::tls() else { return };
    let url = cluster.url("127.0.0.1", &query("require", Some(cluster.foreign_ca_pem_path())));
    let message = connect_error(&url, &cluster).await;
    assert!(message.contains("sslmode=verify-ca): cannot connect: ") && message.contains("UnknownIssuer"), "{message}");
    // The right CA, and a host name the certificate does not list: verify-ca semantics, so it connects.
    let db = Db::connect(&cluster.url("127.0.0.1", &query("require", cluster.ca_pem_path()))).await.unwrap();
    assert!(encrypted(&db).await);
    db.close().await;
}

#[tokio::test]
async fn verify_full_refuses_a_wrong_host_name_and_verify_ca_accepts_it() {
    let Some(cluster) = PgCluster::tls() else { return };
    let ca = cluster.ca_pem_path();
    let message = connect_error(&cluster.url("127.0.0.1", &query("verify-full", ca)), &cluster).await;
    assert!(message.contains("sslmode=verify-full): cannot connect: "), "{message}");
    assert!(message.contains("certificate not valid for name \"127.0.0.1\""), "{message}");
    assert!(message.contains("or use sslmode=verify-ca"), "{message}");

    let db = Db::connect(&cluster.url("127.0.0.1", &query("verify-ca", ca))).await.unwrap();
    assert!(encrypted(&db).await);
    db.close().await;
}

#[tokio::test]
async fn require_encrypts_and_disable_is_refused_by_a_tls_only_server() {
    let Some(cluster) = PgCluster::tls() else { return };
    let db = Db::connect(&cluster.url("127.0.0.1", &query("require", None))).await.unwrap();
    assert!(encrypted(&db).await);
    db.close().await;

    let message = connect_error(&cluster.url("localhost", &query("disable", None)), &cluster).await;
    assert!(message.contains("sslmode=disable): cannot connect: "), "{message}");
    assert!(message.contains("no pg_hba.conf entry") && message.contains("no encryption"), "{message}");
    assert!(message.contains("the server accepts only TLS connections"), "{message}");
}

#[tokio::test]
async fn require_fails_on_a_server_without_tls_and_prefer_reaches_both() {
    let (Some(tls), Some(plain)) = (PgCluster::tls(), PgCluster::plain()) else { return };
    let message = connect_error(&plain.url("localhost", &query("require", None)), &plain).await;
    assert!(message.contains("sslmode=require): cannot connect: "), "{message}");
    assert_eq!(message.matches("server does not support TLS").count(), 1, "{message}");
    assert!(message.contains("the server has TLS turned off"), "{message}");

    let db = Db::connect(&tls.url("localhost", &query("prefer", None))).await.unwrap();
    assert!(encrypted(&db).await, "prefer uses TLS when offered");
    db.close().await;
    let db = Db::connect(&plain.url("localhost", &query("prefer", None))).await.unwrap();
    assert!(!encrypted(&db).await, "prefer falls back when the server refuses TLS");
    db.close().await;
}

/// The command line prints a connect error once: sqlx's errors repeat their source in their own message, and
/// the binary prints the whole chain, which used to say "SQLx was built without TLS support enabled" three
/// times.
#[test]
fn the_binary_prints_a_connect_error_once() {
    let Some(cluster) = PgCluster::plain() else { return };
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_phr-server"))
        .arg("migrate")
        .env("PHR_DATABASE_URL", cluster.url("localhost", "sslmode=require"))
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .output()
        .expect("run phr-server");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("server does not support TLS").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("PHR_DATABASE_URL (").count(), 1, "{stderr}");
    assert!(stderr.contains("sslmode=require): cannot connect: "), "{stderr}");
    assert!(!stderr.contains(pgcluster::PASSWORD), "{stderr}");
}
