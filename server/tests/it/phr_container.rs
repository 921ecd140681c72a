//! Phase E end to end: PHR-11 `GET /{facilityId},{patientId}[,docSince[,labSince[,rpRequest,replyTo]]]` against
//! the seeded fixtures, on SQLite and PostgreSQL.
//!
//! F001/P0001 has five documents (D03 carries only a testOrder, D04 also a treatmentOrder) and five laboratory
//! reports, so "newest three", "only medOrder/injectionOrder" and "strictly after" are all observable.

use std::collections::BTreeSet;

use crate::support::spec_fields::{BUNDLE_FIELDS, CATCH_FIELDS, CLAIM_ITEM_FIELDS, LAB_ITEM_FIELDS, LAB_MODULE_FIELDS};
use crate::support::{self, Options, PASSWORD, TestServer, error_type};
use reqwest::Response;
use serde_json::{Value, json};

fn assert_fields_within(value: &Value, allowed: &[&str], what: &str) {
    for (key, field) in value.as_object().expect("JSON object") {
        assert!(allowed.contains(&key.as_str()), "{what} has a field the spec does not list: {key}");
        assert!(!field.is_null(), "{what}.{key} is null; JSON must omit nulls");
    }
}

fn strings(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(|a| a.iter().map(|v| v[field].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

fn trace_of(response: &Response) -> String {
    response.headers().get("x-trace-id").and_then(|v| v.to_str().ok()).expect("X-Trace-Id echoed").to_owned()
}

async fn container(server: &TestServer, csv: &str) -> Value {
    let response = server.get(csv).send().await.expect("request");
    assert_eq!(response.status(), 200, "{csv} on {:?}", server.backend);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    response.json().await.expect("JSON body")
}

#[tokio::test]
async fn container_answers_the_newest_three_documents_and_reports_with_spec_fields() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        let response = server.get("F001,P0001").send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", server.backend);
        let trace = trace_of(&response);
        let body: Value = response.json().await.unwrap();

        assert_eq!(
            body.as_object().unwrap().keys().collect::<BTreeSet<_>>(),
            BTreeSet::from([&"docList".to_owned(), &"labList".to_owned()])
        );
        let docs = &body["docList"];
        assert_eq!(
            strings(docs, "catchId"),
            ["F001-P0001-D05", "F001-P0001-D04", "F001-P0001-D02"],
            "newest first; D03 has no medOrder/injectionOrder"
        );
        for doc in docs.as_array().unwrap() {
            assert_fields_within(doc, CATCH_FIELDS, "PHRCatch");
            assert_eq!(doc["patientId"], "P0001");
            assert_eq!(doc["patientNumber"], "P0001");
            assert_eq!(doc["facilityId"], "F001");
            assert_eq!(doc["facilityName"], "オープンドルフィン内科クリニック");
            for bundle in doc["bundles"].as_array().unwrap() {
                assert_fields_within(bundle, BUNDLE_FIELDS, "PHRBundle");
                assert_eq!(bundle["catchId"], doc["catchId"]);
                let ent = bundle["ent"].as_str().unwrap();
                assert!(ent == "medOrder" || ent == "injectionOrder", "only medOrder/injectionOrder: {ent}");
                for item in bundle["claimItems"].as_array().unwrap() {
                    assert_fields_within(item, CLAIM_ITEM_FIELDS, "PHRClaimItem");
                }
            }
        }
        assert_eq!(strings(&docs[1]["bundles"], "ent"), ["medOrder", "injectionOrder"], "D04's treatmentOrder dropped");
        assert_eq!(strings(&docs[0]["bundles"][0]["claimItems"], "name").len(), 3);

        let labs = &body["labList"];
        assert_eq!(strings(labs, "sampleDate"), ["2026年9月10日", "2026年8月10日", "2026年7月10日"]);
        for lab in labs.as_array().unwrap() {
            assert_fields_within(lab, LAB_MODULE_FIELDS, "PHRLabModule");
            assert_eq!(lab["numOfItems"], "6");
            assert_eq!(lab["facilityId"], "F001");
            let items = lab["testItems"].as_array().unwrap();
            assert_eq!(items.len(), 6);
            for item in items {
                assert_fields_within(item, LAB_ITEM_FIELDS, "PHRLabItem");
                assert_eq!(item["patientId"], "P0001");
            }
        }
        assert_eq!(labs[0]["testItems"][4]["itemName"], "HbA1c");
        assert_eq!(labs[0]["testItems"][4]["abnormalFlg"], "H");

        let audit = server.audit_rows(&trace).await;
        assert_eq!(audit.len(), 1);
        assert_eq!((audit[0].action.as_str(), audit[0].outcome.as_str()), ("PHR_CONTAINER_FETCH", "success"));
        assert_eq!(audit[0].patient_id.as_deref(), Some("P0001"));
        server.stop().await;
    }
}

#[tokio::test]
async fn since_dates_are_strictly_after_and_empty_lists_are_omitted() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        let after = container(&server, "F001,P0001,2026-09-01,2026-08-10").await;
        assert_eq!(strings(&after["docList"], "catchId"), ["F001-P0001-D05"], "D04 started on 2026-09-01 itself");
        assert_eq!(strings(&after["labList"], "sampleDate"), ["2026年9月10日"], "L04 sampled on 2026-08-10 itself");

        let only_labs = container(&server, "F001,P0001,2026-10-01").await;
        assert!(only_labs.get("docList").is_none(), "empty docList omitted: {only_labs}");
        assert_eq!(strings(&only_labs["labList"], "catchId").len(), 3);

        let lab_filter_only = container(&server, "F001,P0001,,2026-09-09").await;
        assert_eq!(strings(&lab_filter_only["docList"], "catchId").len(), 3, "an empty docSince is no filter");
        assert_eq!(strings(&lab_filter_only["labList"], "sampleDate"), ["2026年9月10日"]);

        assert_eq!(container(&server, "F001,P0001,2026-12-31,2026-12-31").await, json!({}));
        assert_eq!(container(&server, "F001,P0002").await, json!({}), "a patient without records");
        server.stop().await;
    }
}

#[tokio::test]
async fn six_parts_echo_the_prescription_request_into_each_document() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        let body = container(&server, "F001,P0001,2026-06-30,,1,phr-app-reply").await;

        let docs = body["docList"].as_array().unwrap();
        assert_eq!(docs.len(), 3);
        for doc in docs {
            assert_eq!(doc["rpRequest"], 1);
            assert_eq!(doc["rpReplyTo"], "phr-app-reply");
        }
        let plain = container(&server, "F001,P0001").await;
        assert!(plain["docList"][0].get("rpRequest").is_none(), "nothing echoed without the pair");
        server.stop().await;
    }
}

#[tokio::test]
async fn malformed_paths_are_invalid_parameter() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        for csv in [
            "F001",
            "F001,",
            "F001,P0001,2026-13-01",
            "F001,P0001,20260101",
            "F001,P0001,2026-01-01,01-01-2026",
            "F001,P0001,2026-01-01,2026-01-01,1",
            "F001,P0001,2026-01-01,2026-01-01,one,reply",
            "F001,P0001,2026-01-01,2026-01-01,1,reply,extra",
        ] {
            let response = server.get(csv).send().await.unwrap();
            assert_eq!(response.status(), 400, "{csv} on {:?}", server.backend);
            let trace = trace_of(&response);
            assert_eq!(error_type(response).await, "error.phr.invalidParameter", "{csv}");
            let audit = server.audit_rows(&trace).await;
            assert_eq!(
                (audit[0].action.as_str(), audit[0].outcome.as_str()),
                ("PHR_CONTAINER_FETCH", "failed"),
                "{csv}"
            );
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn another_facility_in_the_path_is_forbidden_and_ids_are_never_sql() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        for csv in ["F002,P0001", "F003,P0001,2026-01-01", "..%2FF002,P0001"] {
            let response = server.get(csv).send().await.unwrap();
            assert_eq!(response.status(), 403, "{csv} on {:?}", server.backend);
            let trace = trace_of(&response);
            assert_eq!(error_type(response).await, "error.phr.forbiddenFacility", "{csv}");
            assert_eq!(server.audit_rows(&trace).await[0].outcome, "failed");
        }
        let lower = container(&server, "f001,P0001").await;
        assert_eq!(lower["docList"][0]["facilityId"], "F001", "the path's facility matches case-insensitively");

        for patient in [
            "P9999",
            "..%2F..%2Fetc%2Fpasswd",
            "P0001'%20OR%20'1'='1",
            "P0001%22%3B%20DROP%20TABLE%20document%3B--",
            "P%00",
        ] {
            let response = server.get(&format!("F001,{patient}")).send().await.unwrap();
            assert_eq!(response.status(), 404, "{patient} on {:?}", server.backend);
            assert_eq!(error_type(response).await, "error.phr.patientNotFound", "{patient}");
        }

        // F002's own user sees F002's data, never F001's.
        let f002: Value = server
            .client()
            .get(server.url("F002,P0001"))
            .basic_auth("F002:ops", Some(PASSWORD))
            .header("X-Trace-Id", "container-f002")
            .header("X-Facility-Id", "F002")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(strings(&f002["docList"], "facilityId"), ["F002", "F002", "F002"]);
        assert_eq!(strings(&f002["docList"], "catchId")[0], "F002-P0001-D05");
        server.stop().await;
    }
}
