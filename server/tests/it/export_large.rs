//! A large export: 2,000+ patients go into one streamed ZIP, and every entry comes back intact.
//!
//! The patients beyond the seed are minimal rows (a patient without records exports as an empty
//! container), inserted directly so the test measures the export, not the seed.

use std::time::Duration;

use crate::support::export::{
    download, entry_json, export_config, insert_minimal_patients, read_zip, submit, wait_for_state,
};
use crate::support::{Options, TestServer, backends};
use phr_server::export::archive::entry_name;
use serde_json::json;

const EXTRA_PATIENTS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_of_two_thousand_patients_streams_every_entry() {
    for db in backends().await {
        // Arrange
        let server = TestServer::start(db, Options { export: export_config(), ..Options::default() }).await;
        let extra: Vec<String> = (1..=EXTRA_PATIENTS).map(|n| format!("X{n:05}")).collect();
        insert_minimal_patients(&server, &extra).await;
        let mut requested = vec!["P0001".to_owned()];
        requested.extend(extra.iter().cloned());

        // Act
        let job = submit(&server, json!({ "patientIds": requested })).await;
        let job_id = job["jobId"].as_str().expect("jobId").to_owned();
        wait_for_state(&server, &job_id, "SUCCEEDED", Duration::from_secs(600)).await;
        let status: serde_json::Value =
            server.get(&format!("status/{job_id}")).send().await.expect("status").json().await.expect("JSON");
        let response = download(&server, status["downloadUrl"].as_str().expect("url")).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let mut archive = read_zip(response).await;

        // Assert: every patient's entry, by its position and id, parses; metadata counts them all.
        assert_eq!(archive.len(), requested.len() + 1);
        let metadata = entry_json(&mut archive, "metadata.json");
        assert_eq!(metadata["patientCount"], requested.len());
        assert_eq!(metadata["facilityId"], "F001");
        for (index, patient_id) in requested.iter().enumerate() {
            let container = entry_json(&mut archive, &entry_name(index + 1, patient_id));
            assert!(container.is_object(), "{patient_id}: {container}");
        }
        let first = entry_json(&mut archive, "patient-1-P0001.json");
        assert!(first["docList"].as_array().is_some_and(|d| !d.is_empty()));
        server.stop().await;
    }
}
