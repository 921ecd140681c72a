//! No secret reaches `d_audit_event` (PHR_API.md §5): after a hostile run (wrong passwords in both Basic
//! forms, access keys registered, fetched and guessed, keys in refused paths, a secret sent where JSON wants
//! a string, a Layer ID token issued, an export downloaded with its signed URL and with an altered one),
//! every column of every row is scanned for every secret used, raw and base64. 401 rows name the user the
//! credentials claimed. Runs on SQLite and PostgreSQL.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use phr_server::audit::seal::{self, StoredRow};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::export::{alter_token, download, export_config, submit, url_params, wait_for_state};
use crate::support::{self, FACILITY, Options, PASSWORD, TestServer};

const WRONG_PASSWORD_1: &str = "wrong-Secret-Pw-11-q7Zx";
const WRONG_PASSWORD_2: &str = "wrong-Secret-Pw-22-k3Vb";
const ACCESS_KEY: &str = "AK-secret-7f3c9e1d2b4a6e8f";
const SECRET_KEY: &str = "SK-secret-5a1b2c3d4e5f6071";
const GUESSED_KEY: &str = "AK-guess-0a9b8c7d6e5f4321";
/// A secret key sent as a JSON number: the parser's message would quote it.
const NUMERIC_SECRET: &str = "918273645546372819";
const NONCE: &str = "nonce-3e4f5a6b7c8d9e0f";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_run_leaves_no_secret_in_any_column_and_401_rows_name_the_claimed_user() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options { export: export_config(), ..Options::default() }).await;

        // Act: the hostile sequence.
        let mut secrets: Vec<String> =
            [PASSWORD, WRONG_PASSWORD_1, WRONG_PASSWORD_2, ACCESS_KEY, SECRET_KEY, GUESSED_KEY, NUMERIC_SECRET, NONCE]
                .map(str::to_owned)
                .to_vec();
        for credentials in [format!("{FACILITY}:ops:{PASSWORD}"), format!("{FACILITY}:ops:{WRONG_PASSWORD_1}")] {
            secrets.push(STANDARD.encode(credentials));
        }
        wrong_passwords(&server).await;
        access_keys(&server).await;
        secrets.push(layer_token(&server).await);
        secrets.extend(export_download(&server).await);

        // Assert: no secret, in any encoding, in any column of any row.
        let rows = all_rows(&server).await;
        assert_eq!(column_count(&server).await, columns(&rows[0]).len(), "a new column must be scanned too");
        assert!(rows.len() >= 15, "{:?}: the run left its rows: {}", server.backend, rows.len());
        for row in &rows {
            for (column, value) in columns(row) {
                for secret in &secrets {
                    for needle in [
                        secret.clone(),
                        STANDARD.encode(secret),
                        STANDARD_NO_PAD.encode(secret),
                        URL_SAFE_NO_PAD.encode(secret),
                    ] {
                        assert!(
                            !value.contains(&needle),
                            "{:?}: row {} column {column} holds a secret ({needle}): {value}",
                            server.backend,
                            row.id
                        );
                    }
                }
            }
        }
        server.stop().await;
    }
}

/// Two 401s, one per Basic form; each row names the claimed user.
async fn wrong_passwords(server: &TestServer) {
    let forms = [
        (format!("{FACILITY}:ops"), WRONG_PASSWORD_1, "hostile-401-a"),
        ("ops".to_owned(), WRONG_PASSWORD_2, "hostile-401-b"),
    ];
    for (user, password, trace) in forms {
        let response = server
            .client()
            .get(server.url("allergy/P0001"))
            .basic_auth(user, Some(password))
            .header("X-Trace-Id", trace)
            .header("X-Facility-Id", FACILITY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let rows = server.audit_rows(trace).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].actor_id.as_deref(),
            Some("F001:ops"),
            "{:?}: the claimed user is the actor",
            server.backend
        );
        assert_eq!((&rows[0].payload["userId"], &rows[0].payload["actorClaimed"]), (&json!("ops"), &json!(true)));
    }
}

/// Registers a key, reads it back, guesses others, and puts keys into paths the router refuses.
async fn access_keys(server: &TestServer) {
    let body = json!({"patientId": "P0001", "accessKey": ACCESS_KEY, "secretKey": SECRET_KEY});
    assert_eq!(server.request(Method::PUT, "accessKey").json(&body).send().await.unwrap().status(), StatusCode::OK);
    let numeric = format!(r#"{{"patientId":"P0002","accessKey":"{GUESSED_KEY}","secretKey":{NUMERIC_SECRET}}}"#);
    let response = server.request(Method::PUT, "accessKey").body(numeric).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let expected = [
        (format!("accessKey/{ACCESS_KEY}"), StatusCode::OK),
        (format!("accessKey/{GUESSED_KEY}"), StatusCode::NOT_FOUND),
        (format!("accessKey/{ACCESS_KEY}%FF"), StatusCode::BAD_REQUEST),
        (format!("accessKey/{ACCESS_KEY}/extra"), StatusCode::NOT_FOUND),
        (format!("AccessKey/{GUESSED_KEY}"), StatusCode::NOT_FOUND),
        ("patient/P0001".to_owned(), StatusCode::OK),
    ];
    for (path, status) in expected {
        let response = server.get(&path).send().await.unwrap();
        assert_eq!(response.status(), status, "{:?} {path}", server.backend);
    }
    let trace = "hostile-fetch";
    server.get_traced(&format!("accessKey/{ACCESS_KEY}"), trace).send().await.unwrap();
    let row = &server.audit_rows(trace).await[0];
    assert_eq!(row.payload["accessKeySuffix"], "6e8f", "the suffix is kept: {row:?}");
    let resource: String = phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_scalar("SELECT resource FROM d_audit_event WHERE trace_id = $1")
            .bind(trace)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(resource, "/openDolphin/resources/20/adm/phr/accessKey/****6e8f", "{:?}", server.backend);
}

/// Issues a Layer ID token; returns it.
async fn layer_token(server: &TestServer) -> String {
    let body = json!({"nonce": NONCE, "user": "patient-app-user"});
    let response = server.request(Method::POST, "identityToken").json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// Exports, downloads with an altered URL and with the real one; returns the URL, its token and the altered one.
async fn export_download(server: &TestServer) -> Vec<String> {
    let job = submit(server, json!({"patientIds": ["P0001"]})).await;
    let job_id = job["jobId"].as_str().unwrap().to_owned();
    wait_for_state(server, &job_id, "SUCCEEDED", Duration::from_secs(120)).await;
    let status: Value = server.get(&format!("status/{job_id}")).send().await.unwrap().json().await.unwrap();
    let url = status["downloadUrl"].as_str().expect("downloadUrl").to_owned();
    let altered = alter_token(&url);
    assert_eq!(download(server, &altered).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(download(server, &url).await.status(), StatusCode::OK);
    assert_eq!(download(server, &url).await.status(), StatusCode::GONE);
    let token = url_params(&url).1;
    let altered_token = url_params(&altered).1;
    vec![url, token, altered_token]
}

async fn all_rows(server: &TestServer) -> Vec<StoredRow> {
    let sql = format!("SELECT {} FROM d_audit_event ORDER BY id", seal::COLUMNS);
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_as::<_, StoredRow>(sqlx::AssertSqlSafe(sql.as_str())).fetch_all(pool).await.unwrap()
    })
}

/// Columns of `d_audit_event` as the database lists them.
async fn column_count(server: &TestServer) -> usize {
    let sql = match server.backend {
        support::Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'd_audit_event'"
        }
        support::Backend::Sqlite => "SELECT COUNT(*) FROM pragma_table_info('d_audit_event')",
    };
    let count: i64 =
        phr_server::with_pool!(&server.app.db, |pool| sqlx::query_scalar(sql).fetch_one(pool).await.unwrap());
    usize::try_from(count).unwrap()
}

/// Every column of a row as text, named (the struct has one field per column of the table).
fn columns(row: &StoredRow) -> Vec<(&'static str, String)> {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    vec![
        ("id", row.id.to_string()),
        ("chain_id", row.chain_id.clone()),
        ("hash_version", row.hash_version.to_string()),
        ("event_time", row.event_time.to_rfc3339()),
        ("actor_id", text(&row.actor_id)),
        ("actor_display_name", text(&row.actor_display_name)),
        ("actor_role", text(&row.actor_role)),
        ("action", row.action.clone()),
        ("outcome", row.outcome.clone()),
        ("resource", text(&row.resource)),
        ("patient_id", text(&row.patient_id)),
        ("request_id", text(&row.request_id)),
        ("trace_id", text(&row.trace_id)),
        ("ip_address", text(&row.ip_address)),
        ("user_agent", text(&row.user_agent)),
        ("run_id", text(&row.run_id)),
        ("payload", text(&row.payload)),
        ("payload_hash", row.payload_hash.clone()),
        ("previous_hash", text(&row.previous_hash)),
        ("event_hash", row.event_hash.clone()),
    ]
}
