//! Every sslmode against a real PostgreSQL: a throw-away cluster with `ssl=on` and `hostssl` only, whose
//! certificate is issued for `localhost` alone by a CA made for it, and one with `ssl=off`.
//!
//! The checks are the ones production depends on: `verify-full` connects with the right CA and host name and
//! refuses a wrong host name or a foreign CA, `verify-ca` ignores the host name but not the CA, `require`
//! fails on a server without TLS, `disable` is refused by a TLS-only server, and `prefer`/`allow` reach both.
//! Connection strings carry every setting, and the environment is passed in empty, so the results do not
//! depend on the machine's `PGSSLMODE` or `~/.postgresql`.

use pgcluster::PgCluster;
use pgtls::{ConnectFailure, PgTlsConfig, PgTlsError};

/// Connects with an empty environment and spawns the connection.
async fn connect(conn: &str) -> Result<tokio_postgres::Client, PgTlsError> {
    let config = PgTlsConfig::parse_with_env(conn, &|_| None)?;
    let (client, connection) = config.connect().await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether the session is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    let messages =
        client.simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").await.expect("pg_stat_ssl");
    let value = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    value.as_deref() == Some("t")
}

fn query(mode: &str, root: Option<&std::path::Path>) -> String {
    let mut query = format!("sslmode={mode}&connect_timeout=30");
    if let Some(root) = root {
        query.push_str(&format!("&sslrootcert={}", root.display()));
    }
    query
}

fn expect_failure(
    result: Result<tokio_postgres::Client, PgTlsError>,
    kind: ConnectFailure,
    cluster: &PgCluster,
) -> String {
    match result {
        Ok(_) => panic!("expected {kind:?}, but the connection succeeded\n{}", cluster.log()),
        Err(error) => {
            assert_eq!(error.connect_failure(), Some(kind), "{error}");
            error.to_string()
        }
    }
}

#[tokio::test]
async fn require_encrypts_without_verifying() {
    let Some(cluster) = PgCluster::tls() else { return };
    // 127.0.0.1 is not a name the certificate lists, and no CA is given: require checks neither.
    let client = connect(&cluster.url("127.0.0.1", &query("require", None))).await.unwrap();
    assert!(encrypted(&client).await);
}

#[tokio::test]
async fn verify_full_with_the_right_ca_and_host_name_connects_url_and_key_value() {
    let Some(cluster) = PgCluster::tls() else { return };
    let ca = cluster.ca_pem_path().unwrap();
    let client = connect(&cluster.url("localhost", &query("verify-full", Some(ca)))).await.unwrap();
    assert!(encrypted(&client).await);

    let key_value = format!(
        "host=localhost port={} user={} password='{}' dbname={} sslmode=verify-full sslrootcert='{}' \
         channel_binding=require connect_timeout=30",
        cluster.port(),
        pgcluster::USER,
        pgcluster::PASSWORD,
        pgcluster::DATABASE,
        ca.display()
    );
    // channel_binding=require: SCRAM-SHA-256-PLUS with the tls-server-end-point hash this crate computes.
    let client = connect(&key_value).await.unwrap();
    assert!(encrypted(&client).await);
}

#[tokio::test]
async fn verify_full_refuses_a_wrong_host_name() {
    let Some(cluster) = PgCluster::tls() else { return };
    let ca = cluster.ca_pem_path().unwrap();
    let result = connect(&cluster.url("127.0.0.1", &query("verify-full", Some(ca)))).await;
    let message = expect_failure(result, ConnectFailure::WrongHostName, &cluster);
    assert!(message.starts_with("sslmode=verify-full: error performing TLS handshake: "), "{message}");
    assert!(message.contains("127.0.0.1") && message.contains("localhost"), "{message}");
    assert!(message.contains("or use sslmode=verify-ca"), "{message}");
}

#[tokio::test]
async fn verify_ca_accepts_a_wrong_host_name_with_the_right_ca() {
    let Some(cluster) = PgCluster::tls() else { return };
    let ca = cluster.ca_pem_path().unwrap();
    let client = connect(&cluster.url("127.0.0.1", &query("verify-ca", Some(ca)))).await.unwrap();
    assert!(encrypted(&client).await);
}

#[tokio::test]
async fn a_foreign_ca_fails_verify_ca_verify_full_and_require_with_a_root_certificate() {
    let Some(cluster) = PgCluster::tls() else { return };
    let foreign = cluster.foreign_ca_pem_path();
    for mode in ["verify-ca", "verify-full", "require"] {
        let result = connect(&cluster.url("localhost", &query(mode, Some(foreign)))).await;
        let message = expect_failure(result, ConnectFailure::UntrustedCertificate, &cluster);
        assert!(message.starts_with(&format!("sslmode={mode}: ")), "{message}");
        assert!(message.contains(&format!("sslrootcert={}", foreign.display())), "{message}");
    }
}

#[tokio::test]
async fn disable_is_refused_by_a_tls_only_server() {
    let Some(cluster) = PgCluster::tls() else { return };
    let result = connect(&cluster.url("localhost", &query("disable", None))).await;
    let message = expect_failure(result, ConnectFailure::ServerRequiresTls, &cluster);
    assert!(message.contains("no pg_hba.conf entry") && message.contains("no encryption"), "{message}");
    assert!(message.contains("the server accepts only TLS connections"), "{message}");
}

#[tokio::test]
async fn require_and_verify_full_fail_on_a_server_without_tls() {
    let Some(cluster) = PgCluster::plain() else { return };
    for (mode, root) in [("require", None), ("verify-full", Some(cluster.foreign_ca_pem_path()))] {
        let result = connect(&cluster.url("localhost", &query(mode, root))).await;
        let message = expect_failure(result, ConnectFailure::ServerRefusedTls, &cluster);
        assert!(message.starts_with(&format!("sslmode={mode}: ")), "{message}");
        assert!(message.contains("server does not support TLS"), "{message}");
    }
}

#[tokio::test]
async fn prefer_and_allow_connect_to_tls_and_plain_servers() {
    let (Some(tls), Some(plain)) = (PgCluster::tls(), PgCluster::plain()) else { return };
    let client = connect(&tls.url("localhost", &query("prefer", None))).await.unwrap();
    assert!(encrypted(&client).await, "prefer uses TLS when offered");
    let client = connect(&plain.url("localhost", &query("prefer", None))).await.unwrap();
    assert!(!encrypted(&client).await, "prefer falls back when the server refuses TLS");

    let client = connect(&tls.url("localhost", &query("allow", None))).await.unwrap();
    assert!(encrypted(&client).await, "allow retries with TLS when plain text is refused");
    let client = connect(&plain.url("localhost", &query("allow", None))).await.unwrap();
    assert!(!encrypted(&client).await);
}

#[tokio::test]
async fn the_process_environment_supplies_sslmode_when_the_string_does_not() {
    // `pgtls::connect` reads PGSSLMODE; here it is set only for this call's parse, through parse_with_env.
    let Some(cluster) = PgCluster::plain() else { return };
    let env = |name: &str| (name == "PGSSLMODE").then(|| "require".to_owned());
    let config = PgTlsConfig::parse_with_env(&cluster.url("localhost", "connect_timeout=30"), &env).unwrap();
    let error = config.connect().await.err().expect("PGSSLMODE=require on a plain server fails");
    assert_eq!(error.connect_failure(), Some(ConnectFailure::ServerRefusedTls), "{error}");
}
