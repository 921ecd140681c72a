//! Phases A and B end to end: PHR keys (PHR-02, 03, 10) and the patient summaries (PHR-01, 04, 05, 08, 09)
//! against the seeded fixtures, on SQLite and PostgreSQL, through real mTLS and Basic auth.
//!
//! Fixtures (see `phr_server::seed`): F001/P0001 has every record, F001/P0002 none, F002/P0002 a basic set.

use std::collections::BTreeSet;

use crate::support::spec_fields::{BUNDLE_FIELDS, CLAIM_ITEM_FIELDS, PHR_KEY_FIELDS};
use crate::support::{self, Options, PASSWORD, TestServer, error_type};
use phr_server::seed;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

/// A request as `facility:ops` with that facility's header.
fn as_facility(server: &TestServer, facility: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    server
        .client()
        .request(method, server.url(path))
        .basic_auth(format!("{facility}:ops"), Some(PASSWORD))
        .header("X-Trace-Id", format!("test-{}", uuid::Uuid::new_v4().simple()))
        .header("X-Facility-Id", facility)
}

fn trace_of(response: &Response) -> String {
    response.headers().get("x-trace-id").and_then(|v| v.to_str().ok()).expect("X-Trace-Id echoed").to_owned()
}

/// Status, content type and body of a text endpoint.
async fn text(server: &TestServer, path: &str) -> (StatusCode, String, String) {
    let response = server.get(path).send().await.expect("request");
    let status = response.status();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, content_type, response.text().await.expect("body"))
}

fn keys_of(value: &Value) -> BTreeSet<String> {
    value.as_object().expect("JSON object").keys().cloned().collect()
}

fn assert_fields_within(value: &Value, allowed: &[&str], what: &str) {
    for key in keys_of(value) {
        assert!(allowed.contains(&key.as_str()), "{what} has a field the spec does not list: {key}");
        assert!(!value[&key].is_null(), "{what}.{key} is null; JSON must omit nulls");
    }
}

async fn put_key(server: &TestServer, body: Value) -> Response {
    server.request(Method::PUT, "accessKey").json(&body).send().await.expect("PUT accessKey")
}

#[tokio::test]
async fn access_key_registration_round_trips_with_the_callers_facility() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        let backend = server.backend;

        let response = put_key(
            &server,
            json!({"patientId": "P0002", "accessKey": "AK-test-0000-wxyz", "secretKey": "SK-test-secret-9876",
                   "facilityId": "F002"}),
        )
        .await;
        assert_eq!(response.status(), 200, "{backend:?}");
        let trace = trace_of(&response);
        let ids: Value = response.json().await.unwrap();
        let id = ids.as_array().filter(|a| a.len() == 1).and_then(|a| a[0].as_i64()).expect("answer is [id]");

        let fetched = server.get("accessKey/AK-test-0000-wxyz").send().await.unwrap();
        assert_eq!(fetched.status(), 200, "{backend:?}");
        let key: Value = fetched.json().await.unwrap();
        assert_eq!(keys_of(&key), PHR_KEY_FIELDS.iter().map(|s| s.to_string()).collect(), "{backend:?}");
        assert_eq!(key["id"], id);
        assert_eq!(key["facilityId"], "F001", "the facility is forced to the caller's");
        assert_eq!(key["patientId"], "P0002");
        assert_eq!(key["secretKey"], "SK-test-secret-9876");
        assert_eq!(key["registeredString"], "2025-11-19T01:30:00", "stamped with the server clock");
        assert_eq!(key["registered"], 1_763_515_800_000_i64);

        let by_patient: Value = server.get("patient/P0002").send().await.unwrap().json().await.unwrap();
        assert_eq!(by_patient, key, "PHR-10 answers the same key");

        let audit = server.audit_rows(&trace).await;
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, "PHR_ACCESS_KEY_UPSERT");
        assert_eq!(audit[0].outcome, "success");
        assert_eq!(audit[0].patient_id.as_deref(), Some("P0002"));
        assert_eq!(audit[0].payload["accessKeySuffix"], "wxyz");
        let payload = audit[0].payload.to_string();
        assert!(!payload.contains("AK-test-0000-wxyz") && !payload.contains("SK-test-secret"), "{payload}");
        server.stop().await;
    }
}

#[tokio::test]
async fn registering_again_replaces_the_patients_key() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        let first: Value =
            put_key(&server, json!({"patientId": "P0003", "accessKey": "AK-first-1111", "secretKey": "s1"}))
                .await
                .json()
                .await
                .unwrap();

        let second =
            put_key(&server, json!({"patientId": "P0003", "accessKey": "AK-second-2222", "secretKey": "s2"})).await;

        assert_eq!(second.status(), 200);
        assert_eq!(second.json::<Value>().await.unwrap(), first, "same key row, same id");
        let old = server.get("accessKey/AK-first-1111").send().await.unwrap();
        assert_eq!(old.status(), 404);
        assert_eq!(error_type(old).await, "error.phr.accessKeyNotFound");
        let new: Value = server.get("accessKey/AK-second-2222").send().await.unwrap().json().await.unwrap();
        assert_eq!(new["secretKey"], "s2");
        server.stop().await;
    }
}

#[tokio::test]
async fn access_key_registration_refuses_bad_payloads() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        let foreign_key = seed::access_key("F002", "P0001");
        let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
            ("not JSON", server.request(Method::PUT, "accessKey").body("{nope"), 400, "error.phr.invalidPayload"),
            (
                "missing accessKey",
                server.request(Method::PUT, "accessKey").json(&json!({"patientId": "P0001", "secretKey": "s"})),
                400,
                "error.phr.invalidPayload",
            ),
            (
                "empty secretKey",
                server
                    .request(Method::PUT, "accessKey")
                    .json(&json!({"patientId": "P0001", "accessKey": "AK-x-12345", "secretKey": " "})),
                400,
                "error.phr.invalidPayload",
            ),
            (
                "NUL in accessKey",
                server
                    .request(Method::PUT, "accessKey")
                    .json(&json!({"patientId": "P0001", "accessKey": "AK\u{0}x-12345", "secretKey": "s"})),
                400,
                "error.phr.invalidPayload",
            ),
            (
                "unknown patient",
                server
                    .request(Method::PUT, "accessKey")
                    .json(&json!({"patientId": "P9999", "accessKey": "AK-x-12345", "secretKey": "s"})),
                404,
                "error.phr.patientNotFound",
            ),
            (
                "access key of another facility's patient",
                server
                    .request(Method::PUT, "accessKey")
                    .json(&json!({"patientId": "P0002", "accessKey": foreign_key, "secretKey": "s"})),
                409,
                "error.phr.invalidPayload",
            ),
        ];
        for (name, request, status, error) in cases {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{name} on {:?}", server.backend);
            assert_eq!(error_type(response).await, error, "{name}");
        }
        let unchanged: Value =
            as_facility(&server, "F002", Method::GET, "patient/P0001").send().await.unwrap().json().await.unwrap();
        assert_eq!(unchanged["accessKey"], seed::access_key("F002", "P0001"), "F002's key is untouched");
        server.stop().await;
    }
}

#[tokio::test]
async fn access_keys_of_other_facilities_and_unknown_keys_are_not_found() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        let own = server.get(&format!("accessKey/{}", seed::access_key("F001", "P0001"))).send().await.unwrap();
        assert_eq!(own.status(), 200);
        let own: Value = own.json().await.unwrap();
        assert_eq!(own["patientId"], "P0001");
        assert_eq!(own["secretKey"], seed::secret_key("F001", "P0001"));

        let foreign_key = seed::access_key("F002", "P0001");
        for key in [foreign_key.as_str(), "AK-does-not-exist", "x'%20OR%20'1'='1", "..%2F..%2Fetc%2Fpasswd", "AK%00x"] {
            let response = server.get(&format!("accessKey/{key}")).send().await.unwrap();
            assert_eq!(response.status(), 404, "{key} on {:?}", server.backend);
            let trace = trace_of(&response);
            assert_eq!(error_type(response).await, "error.phr.accessKeyNotFound", "{key}");
            let audit = server.audit_rows(&trace).await;
            assert_eq!((audit[0].action.as_str(), audit[0].outcome.as_str()), ("PHR_ACCESS_KEY_FETCH", "failed"));
            assert!(!audit[0].payload.to_string().contains(&foreign_key), "full key never audited");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn key_by_patient_tells_unknown_patients_from_patients_without_a_key() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        let found = server.get("patient/P0001").send().await.unwrap();
        assert_eq!(found.status(), 200);
        let trace = trace_of(&found);
        let key: Value = found.json().await.unwrap();
        assert_eq!(key["accessKey"], seed::access_key("F001", "P0001"));
        assert_eq!(key["facilityId"], "F001");
        let audit = server.audit_rows(&trace).await;
        assert_eq!(audit[0].action, "PHR_ACCESS_KEY_FETCH_BY_PATIENT");
        assert_eq!(audit[0].payload["patientId"], "P0001");
        assert_eq!(audit[0].payload["accessKeySuffix"].as_str().map(str::len), Some(4));

        for (patient, error) in [
            ("P0002", "error.phr.accessKeyNotFound"),
            ("P9999", "error.phr.patientNotFound"),
            ("..%2F..%2Fetc%2Fpasswd", "error.phr.patientNotFound"),
            ("P0001'%20OR%20'1'='1", "error.phr.patientNotFound"),
            ("P%00", "error.phr.patientNotFound"),
        ] {
            let response = server.get(&format!("patient/{patient}")).send().await.unwrap();
            assert_eq!(response.status(), 404, "{patient} on {:?}", server.backend);
            assert_eq!(error_type(response).await, error, "{patient}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn text_summaries_of_the_full_patient_follow_the_spec() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        let backend = server.backend;

        let (status, content_type, allergy) = text(&server, "allergy/P0001").await;
        assert_eq!(status, 200, "{backend:?}");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(allergy, "ペニシリン severe\n卵\nスギ花粉");

        let (_, _, disease) = text(&server, "disease/P0001").await;
        assert_eq!(disease, "２型糖尿病\n高血圧症\n脂質異常症", "active only, newest first");

        let (_, _, labtest) = text(&server, "labtest/P0001").await;
        let lines: Vec<&str> = labtest.split('\n').collect();
        assert_eq!(lines.len(), 5 * 7, "five reports of six items each, plus a date line each");
        assert_eq!(&lines[..3], ["2026年9月10日", "WBC=5.810^3/uL", "Hb=14.2g/dL"]);
        assert!(lines.contains(&"HbA1c=7.2%(H)"));
        assert_eq!(lines[7], "2026年8月10日");
        assert!(!labtest.ends_with('\n'));

        let (_, _, abnormal) = text(&server, "abnormal/P0001").await;
        assert_eq!(
            abnormal,
            "2026年9月10日\nHbA1c=7.2%(H)\nLDL-C=178mg/dL(H)\n2026年8月10日\nHb=11.9g/dL(L)\n\
             2026年7月10日\nAST=48U/L(H)\nALT=61U/L(H)\n2026年5月10日\nHbA1c=7.2%(H)"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn text_summaries_answer_the_spec_sentences_when_empty() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        for (path, sentence) in [
            ("allergy/P0002", "アレルギーの登録はありません。"),
            ("disease/P0002", "病名の登録はありません。"),
            ("labtest/P0002", "検査の登録はありません。"),
            ("abnormal/P0002", "異常値はありません。"),
            ("abnormal/P0004", "異常値はありません。"),
        ] {
            let (status, content_type, body) = text(&server, path).await;
            assert_eq!(status, 200, "{path} on {:?}", server.backend);
            assert!(content_type.starts_with("text/plain"), "{path}: {content_type}");
            assert_eq!(body, sentence, "{path}");
        }
        let (_, _, labtest) = text(&server, "labtest/P0004").await;
        assert!(labtest.starts_with("2026年9月15日\n"), "P0004 has results, none abnormal: {labtest}");
        server.stop().await;
    }
}

#[tokio::test]
async fn every_summary_is_404_for_unknown_or_hostile_patient_ids() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        for endpoint in ["abnormal", "allergy", "disease", "labtest", "medication"] {
            for patient in
                ["P9999", "..%2F..%2Fetc%2Fpasswd", "P0001'%20OR%20'1'='1", "P0001%3B%20DROP%20TABLE%20patient", "P%00"]
            {
                let response = server.get(&format!("{endpoint}/{patient}")).send().await.unwrap();
                assert_eq!(response.status(), 404, "{endpoint}/{patient} on {:?}", server.backend);
                let trace = trace_of(&response);
                assert_eq!(error_type(response).await, "error.phr.patientNotFound", "{endpoint}/{patient}");
                let audit = server.audit_rows(&trace).await;
                assert_eq!(audit.len(), 1, "{endpoint}/{patient}");
                assert_eq!(audit[0].outcome, "failed");
            }
        }
        let (status, _, _) = text(&server, "allergy/P0001").await;
        assert_eq!(status, 200, "the tables survived");
        server.stop().await;
    }
}

#[tokio::test]
async fn medication_answers_the_newest_prescription_or_the_empty_message() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        let response = server.get("medication/P0001").send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", server.backend);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let trace = trace_of(&response);
        let body: Value = response.json().await.unwrap();
        assert_eq!(keys_of(&body), ["bundles", "message"].iter().map(|s| s.to_string()).collect());
        assert_eq!(body["message"], "2026年10月1日の処方です。");
        let bundles = body["bundles"].as_array().unwrap();
        assert_eq!(bundles.len(), 1, "the newest document's medOrder only: {body}");
        let bundle = &bundles[0];
        assert_fields_within(bundle, BUNDLE_FIELDS, "PHRBundle");
        assert_eq!(bundle["ent"], "medOrder");
        assert_eq!(bundle["catchId"], "F001-P0001-D05");
        assert_eq!(bundle["started"], "2026-10-01T09:15:00");
        assert_eq!(bundle["facilityNumber"], "1312345001");
        let items = bundle["claimItems"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        for item in items {
            assert_fields_within(item, CLAIM_ITEM_FIELDS, "PHRClaimItem");
        }
        assert_eq!(items[0]["name"], "アムロジピン錠５ｍｇ");
        let audit = server.audit_rows(&trace).await;
        assert_eq!(audit[0].action, "PHR_MEDICATION_TEXT");
        assert_eq!(audit[0].patient_id.as_deref(), Some("P0001"));

        let empty: Value = server.get("medication/P0002").send().await.unwrap().json().await.unwrap();
        assert_eq!(empty, json!({"message": "処方の登録はありません。", "bundles": []}));
        server.stop().await;
    }
}

#[tokio::test]
async fn summaries_never_show_another_facilitys_records() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        // F002 has a patient F001 does not, and F002/P0002 has records while F001/P0002 has none.
        phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query("INSERT INTO patient (facility_id, patient_id, name) VALUES ('F002', 'P-F002-ONLY', 'x')")
                .execute(pool)
                .await
                .map(|_| ())
        })
        .expect("arrange: a patient only F002 has");
        let f002_allergy =
            as_facility(&server, "F002", Method::GET, "allergy/P0002").send().await.unwrap().text().await.unwrap();
        assert_ne!(f002_allergy, "アレルギーの登録はありません。", "F002/P0002 has an allergy");

        for path in ["allergy/P0002", "disease/P0002", "labtest/P0002", "abnormal/P0002"] {
            let (status, _, body) = text(&server, path).await;
            assert_eq!(status, 200);
            assert!(body.ends_with("ありません。"), "{path}: F001 must not see F002's records: {body}");
        }
        let medication: Value = server.get("medication/P0002").send().await.unwrap().json().await.unwrap();
        assert_eq!(medication["bundles"], json!([]));
        for path in ["allergy/P-F002-ONLY", "patient/P-F002-ONLY", "medication/P-F002-ONLY"] {
            let response = server.get(path).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path} on {:?}", server.backend);
            assert_eq!(error_type(response).await, "error.phr.patientNotFound");
        }
        let f001_key: Value = server.get("patient/P0001").send().await.unwrap().json().await.unwrap();
        assert_eq!(f001_key["accessKey"], seed::access_key("F001", "P0001"));

        server.stop().await;
    }
}
