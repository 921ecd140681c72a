//! A data change commits only together with its audit rows (PHR_API.md §5): when the database refuses the
//! row (here a trigger that raises on insert into `d_audit_event` for one action), the access-key upsert,
//! the export submitted or cancelled, the signed URL issued or spent, are all rolled back, and the caller
//! gets the spec's 500 JSON. Each test runs on SQLite and PostgreSQL.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::export::{download, export_config, submit, wait_for_state};
use crate::support::{self, Backend, Options, TestServer};

#[tokio::test]
async fn a_refused_row_rolls_back_the_access_key_upsert() {
    for db in support::backends().await {
        // Arrange: P0002 has key A; the upsert's row will be refused.
        let server = TestServer::start(db, Options::default()).await;
        let first = put_key(&server, "P0002", "AK-atomic-first-0001", "trace-key-1").await;
        assert_eq!(first.status(), StatusCode::OK);
        refuse(&server, "PHR_ACCESS_KEY_UPSERT").await;

        // Act: replace the key of P0002, and register one for P0003 (which has none yet, or another).
        let replaced = put_key(&server, "P0002", "AK-atomic-second-0002", "trace-key-2").await;
        let before_p3 = stored_key(&server, "P0003").await;
        let registered = put_key(&server, "P0003", "AK-atomic-third-0003", "trace-key-3").await;
        allow(&server, "PHR_ACCESS_KEY_UPSERT").await;

        // Assert
        for response in [replaced, registered] {
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "{:?}", server.backend);
            assert_eq!(support::error_type(response).await, "error.phr.internal");
        }
        assert_eq!(stored_key(&server, "P0002").await.as_deref(), Some("AK-atomic-first-0001"), "{:?}", server.backend);
        assert_eq!(stored_key(&server, "P0003").await, before_p3, "{:?}", server.backend);
        assert!(server.audit_rows("trace-key-2").await.is_empty());
        assert_eq!(server.app.audit.verify().await.unwrap().first_broken, None);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_refused_row_rolls_back_export_submit_and_cancel() {
    for db in support::backends().await {
        // Arrange: no workers, so a job stays PENDING.
        let export = phr_server::export::ExportConfig { workers: 0, ..export_config() };
        let server = TestServer::start(db, Options { export, ..Options::default() }).await;
        refuse(&server, "PHR_EXPORT_REQUEST").await;

        // Act + Assert: the refused submit leaves no job.
        let refused =
            server.request(Method::POST, "export").json(&json!({"patientIds": ["P0001"]})).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR, "{:?}", server.backend);
        assert_eq!(support::error_type(refused).await, "error.phr.internal");
        assert_eq!(count(&server, "SELECT COUNT(*) FROM phr_async_job").await, 0, "{:?}", server.backend);
        allow(&server, "PHR_EXPORT_REQUEST").await;

        // Act + Assert: the refused cancel leaves the job PENDING.
        let job = submit(&server, json!({"patientIds": ["P0001"]})).await;
        let job_id = job["jobId"].as_str().unwrap().to_owned();
        refuse(&server, "PHR_EXPORT_CANCEL").await;
        let refused = server.request(Method::DELETE, &format!("status/{job_id}")).send().await.unwrap();
        allow(&server, "PHR_EXPORT_CANCEL").await;
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR, "{:?}", server.backend);
        assert_eq!(job_state(&server, &job_id).await, "PENDING", "{:?}", server.backend);
        let cancelled = server.request(Method::DELETE, &format!("status/{job_id}")).send().await.unwrap();
        assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
        assert_eq!(job_state(&server, &job_id).await, "CANCELLED");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_row_leaves_no_signed_url_issued_and_none_spent() {
    for db in support::backends().await {
        // Arrange: a finished export.
        let server = TestServer::start(db, Options { export: export_config(), ..Options::default() }).await;
        let job = submit(&server, json!({"patientIds": ["P0001"]})).await;
        let job_id = job["jobId"].as_str().unwrap().to_owned();
        wait_for_state(&server, &job_id, "SUCCEEDED", Duration::from_secs(120)).await;
        let urls = "SELECT COUNT(*) FROM phr_export_signed_url";
        let issued_before = count(&server, urls).await;

        // Act + Assert: minting a URL whose issue row is refused leaves no issue behind.
        refuse(&server, "PHR_SIGNED_URL_ISSUED").await;
        let refused = server.get(&format!("status/{job_id}")).send().await.unwrap();
        allow(&server, "PHR_SIGNED_URL_ISSUED").await;
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR, "{:?}", server.backend);
        assert_eq!(count(&server, urls).await, issued_before, "{:?}", server.backend);

        // Act + Assert: a download whose row is refused does not spend the URL.
        let status: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.unwrap().json().await.unwrap();
        let url = status["downloadUrl"].as_str().expect("downloadUrl").to_owned();
        refuse(&server, "PHR_EXPORT_ARTIFACT").await;
        let refused = download(&server, &url).await;
        allow(&server, "PHR_EXPORT_ARTIFACT").await;
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR, "{:?}", server.backend);
        assert_eq!(support::error_type(refused).await, "error.phr.internal");
        let spent = "SELECT COUNT(*) FROM phr_export_signed_url WHERE consumed_at_ms IS NOT NULL";
        assert_eq!(count(&server, spent).await, 0, "{:?}", server.backend);
        let downloaded = download(&server, &url).await;
        assert_eq!(downloaded.status(), StatusCode::OK, "{:?}: the URL is still good", server.backend);
        assert_eq!(download(&server, &url).await.status(), StatusCode::GONE);
        server.stop().await;
    }
}

async fn put_key(server: &TestServer, patient: &str, access_key: &str, trace: &str) -> reqwest::Response {
    let body = json!({"patientId": patient, "accessKey": access_key, "secretKey": "SK-atomic-secret-0001"});
    server.request_traced(Method::PUT, "accessKey", trace).json(&body).send().await.unwrap()
}

/// The access key stored for a patient of F001.
async fn stored_key(server: &TestServer, patient: &str) -> Option<String> {
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_scalar("SELECT access_key FROM phr_key WHERE facility_id = 'F001' AND patient_id = $1")
            .bind(patient)
            .fetch_optional(pool)
            .await
            .unwrap()
    })
}

async fn job_state(server: &TestServer, job_id: &str) -> String {
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query_scalar("SELECT state FROM phr_async_job WHERE job_id = $1")
            .bind(job_id)
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

async fn count(server: &TestServer, sql: &'static str) -> i64 {
    phr_server::with_pool!(&server.app.db, |pool| sqlx::query_scalar(sql).fetch_one(pool).await.unwrap())
}

/// Makes the database refuse every `d_audit_event` row with `action` (a trigger that raises). Each action's
/// trigger has its own name: an SQLite connection that has not yet read the schema since another one dropped
/// a trigger would still see it, and refuse to create one with the same name.
async fn refuse(server: &TestServer, action: &str) {
    let statements: Vec<String> = match server.backend {
        Backend::Postgres => vec![
            "CREATE OR REPLACE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit row refused by the test'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER test_refuse_{action} BEFORE INSERT ON d_audit_event FOR EACH ROW \
                 WHEN (NEW.action = '{action}') EXECUTE FUNCTION test_refuse_audit()"
            ),
        ],
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER test_refuse_{action} BEFORE INSERT ON d_audit_event WHEN NEW.action = '{action}' \
             BEGIN SELECT RAISE(ABORT, 'audit row refused by the test'); END"
        )],
    };
    for statement in statements {
        phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(statement)).execute(pool).await.unwrap();
        });
    }
}

/// Removes the trigger of [`refuse`].
async fn allow(server: &TestServer, action: &str) {
    let statement = match server.backend {
        Backend::Postgres => format!("DROP TRIGGER test_refuse_{action} ON d_audit_event"),
        Backend::Sqlite => format!("DROP TRIGGER test_refuse_{action}"),
    };
    phr_server::with_pool!(&server.app.db, |pool| {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(pool).await.unwrap();
    });
}
