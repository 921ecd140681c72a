//! Phase F on S3 storage against a real S3-compatible server on loopback (`moto_server`, which also serves
//! KMS): the whole life cycle on SQLite and PostgreSQL, then, asking the S3 server directly rather than the
//! code under test, that the object is in the bucket under the facility prefix, encrypted with SSE-KMS under
//! the configured key, and is the ZIP that was downloaded.
//!
//! `TEST_S3_ENDPOINT` names the server (`eval "$(scripts/s3-local.sh)"` starts one); without a reachable one
//! the test prints a loud SKIP and passes, except under `REQUIRE_S3=1`, where that is a failure.

use std::io::Read as _;

use crate::support::export::{export_config, full_life_cycle};
use crate::support::{Options, TestServer, backends};
use phr_server::export::{ExportConfig, S3Settings, StaticCredentials, StorageSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};

const REGION: &str = "ap-northeast-1";

/// The S3 endpoint, or `None` after a loud SKIP (a panic under `REQUIRE_S3=1`).
pub(crate) async fn s3_endpoint() -> Option<String> {
    let required = std::env::var("REQUIRE_S3").as_deref() == Ok("1");
    let problem = match std::env::var("TEST_S3_ENDPOINT") {
        Err(_) => "TEST_S3_ENDPOINT is not set".to_owned(),
        Ok(endpoint) => {
            // A short wait only where a slow answer means "skip"; a required server may be slow under load.
            let wait = std::time::Duration::from_secs(if required { 30 } else { 3 });
            let probe = reqwest::Client::new().get(&endpoint).timeout(wait).send().await;
            match probe {
                Ok(_) => return Some(endpoint.trim_end_matches('/').to_owned()),
                Err(error) => format!("S3 server at {endpoint} is unreachable: {error}"),
            }
        }
    };
    assert!(!required, "REQUIRE_S3=1 but {problem}");
    eprintln!(
        "\n!!! SKIPPING the S3 export test: {problem}\n!!! run `eval \"$(scripts/s3-local.sh)\"`; REQUIRE_S3=1 makes this a failure\n"
    );
    None
}

/// An unsigned request moto routes to `service` (it reads the service from the credential scope only).
pub(crate) fn moto(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    service: &str,
) -> reqwest::RequestBuilder {
    let scope = format!(
        "AWS4-HMAC-SHA256 Credential=test/20251119/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=00"
    );
    client.request(method, url).header("Authorization", scope)
}

async fn kms(client: &reqwest::Client, endpoint: &str, target: &str, body: Value) -> (StatusCode, Value) {
    let response = moto(client, reqwest::Method::POST, &format!("{endpoint}/"), "kms")
        .header("X-Amz-Target", format!("TrentService.{target}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .expect("KMS request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates the bucket, and a KMS key that `alias` points at; returns the key id.
async fn prepare(client: &reqwest::Client, endpoint: &str, bucket: &str, alias: &str) -> String {
    let create_bucket = moto(client, reqwest::Method::PUT, &format!("{endpoint}/{bucket}"), "s3")
        .body(format!(
            "<CreateBucketConfiguration><LocationConstraint>{REGION}</LocationConstraint></CreateBucketConfiguration>"
        ))
        .send()
        .await
        .expect("create bucket");
    assert!(create_bucket.status().is_success(), "create bucket: {}", create_bucket.text().await.unwrap_or_default());
    let (status, key) = kms(client, endpoint, "CreateKey", json!({"Description": "phr export test"})).await;
    assert!(status.is_success(), "CreateKey: {key}");
    let key_id = key["KeyMetadata"]["KeyId"].as_str().expect("KeyId").to_owned();
    let (status, body) = kms(client, endpoint, "CreateAlias", json!({"AliasName": alias, "TargetKeyId": key_id})).await;
    assert!(status.is_success(), "CreateAlias: {body}");
    key_id
}

fn s3_export(endpoint: &str, bucket: &str, alias: &str) -> ExportConfig {
    ExportConfig {
        storage: StorageSettings::S3(S3Settings {
            bucket: bucket.to_owned(),
            region: REGION.to_owned(),
            endpoint: Some(endpoint.to_owned()),
            kms_key: Some(alias.to_owned()),
            static_credentials: Some(StaticCredentials {
                access_key_id: "test".into(),
                secret_access_key: "test".into(),
            }),
        }),
        ..export_config()
    }
}

/// `<Key>` values of a ListObjectsV2 answer.
fn listed_keys(xml: &str) -> Vec<String> {
    xml.split("<Key>").skip(1).filter_map(|part| part.split_once("</Key>").map(|(key, _)| key.to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_life_cycle_on_s3_with_sse_kms() {
    let Some(endpoint) = s3_endpoint().await else { return };
    let s3 = reqwest::Client::new();
    for db in backends().await {
        // Arrange: a bucket and a KMS alias of this test's own. The S3 server may be shared with other test
        // runs (scripts/s3-local.sh reuses a running one), and a shared alias could be re-pointed at another
        // run's key between this run's upload and its checks.
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let bucket = format!("phr-export-{}", &unique[..16]);
        let alias = format!("alias/opd/phr-export-{}", &unique[..16]);
        let key_id = prepare(&s3, &endpoint, &bucket, &alias).await;
        let export = s3_export(&endpoint, &bucket, &alias);
        let server = TestServer::start(db, Options { export, ..Options::default() }).await;

        // Act
        let outcome = full_life_cycle(&server, "S3").await;

        // Assert: the bucket holds exactly this job's object, under the facility prefix.
        let prefix = format!("facility/F001/jobs/{}/", outcome.job_id);
        let listing =
            moto(&s3, reqwest::Method::GET, &format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}"), "s3")
                .send()
                .await
                .expect("list objects");
        assert_eq!(listing.status(), StatusCode::OK);
        let keys = listed_keys(&listing.text().await.expect("listing"));
        assert_eq!(keys, [format!("{prefix}phr-export-1.zip")]);
        let all = moto(&s3, reqwest::Method::GET, &format!("{endpoint}/{bucket}?list-type=2"), "s3")
            .send()
            .await
            .expect("list objects");
        assert!(listed_keys(&all.text().await.expect("listing")).iter().all(|k| k.starts_with("facility/F001/jobs/")));

        // SSE-KMS with the configured key, as the S3 server reports it.
        let object_url = format!("{endpoint}/{bucket}/{}", keys[0]);
        let head = moto(&s3, reqwest::Method::HEAD, &object_url, "s3").send().await.expect("HEAD object");
        assert_eq!(head.status(), StatusCode::OK);
        let header = |name: &str| head.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(header("x-amz-server-side-encryption"), "aws:kms");
        let kms_key = header("x-amz-server-side-encryption-aws-kms-key-id");
        assert!(
            kms_key == alias || kms_key.ends_with(&key_id),
            "object's KMS key {kms_key:?}, expected {alias} / {key_id}"
        );

        // The stored object is the export ZIP.
        let body = moto(&s3, reqwest::Method::GET, &object_url, "s3").send().await.expect("GET object");
        let bytes = body.bytes().await.expect("object bytes");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("object is a ZIP");
        let mut metadata = String::new();
        archive.by_name("metadata.json").expect("metadata.json").read_to_string(&mut metadata).expect("read");
        assert!(metadata.contains(&outcome.job_id));

        // Every issue audit row names the KMS key alias.
        let payloads: Vec<String> = phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query_scalar("SELECT payload FROM d_audit_event WHERE action = 'PHR_SIGNED_URL_ISSUED'")
                .fetch_all(pool)
                .await
                .expect("audit rows")
        });
        assert!(!payloads.is_empty());
        for payload in payloads {
            let payload: Value = serde_json::from_str(&payload).expect("JSON");
            assert_eq!(payload["kmsKeyAlias"], alias.as_str());
            assert_eq!(payload["storageType"], "S3");
        }
        assert_eq!(outcome.status["state"], "SUCCEEDED");
        server.stop().await;
    }
}
