//! The operational listener and the server's life cycle: health, readiness, metrics, graceful shutdown.

use crate::support::{self, Options, TestServer};

#[tokio::test]
async fn healthz_readyz_and_metrics_answer_without_a_client_certificate() {
    for db in support::backends().await {
        // Arrange
        let server = TestServer::start(db, Options::default()).await;
        server.get("allergy/P0001").send().await.unwrap();
        let plain = reqwest::Client::new();

        // Act
        let health = plain.get(format!("{}/healthz", server.ops_base)).send().await.unwrap();
        let ready = plain.get(format!("{}/readyz", server.ops_base)).send().await.unwrap();
        let metrics = plain.get(format!("{}/metrics", server.ops_base)).send().await.unwrap();

        // Assert
        assert_eq!(health.status(), 200);
        assert_eq!(ready.status(), 200, "{:?}", server.backend);
        let ready: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(ready["status"], "ready");
        assert_eq!(ready["database"]["schema_version"], ready["database"]["expected_version"]);
        let metrics = metrics.text().await.unwrap();
        assert!(
            metrics.contains("phr_http_requests_total{route=\"/openDolphin/resources/20/adm/phr/allergy/{patient_id}\",status=\"200\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("phr_audit_writes_total{outcome=\"success\"} 1"), "{metrics}");
        assert!(metrics.contains("phr_http_request_duration_seconds_bucket"), "{metrics}");
        server.stop().await;
    }
}

#[tokio::test]
async fn readyz_fails_and_healthz_stays_up_when_the_database_is_gone() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;
    server.app.db.close().await;
    let plain = reqwest::Client::new();

    let ready = plain.get(format!("{}/readyz", server.ops_base)).send().await.unwrap();
    let health = plain.get(format!("{}/healthz", server.ops_base)).send().await.unwrap();

    assert_eq!(ready.status(), 503);
    assert_eq!(health.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_every_success_has_its_audit_row() {
    // Arrange
    let mut server = TestServer::start(support::sqlite(), Options::default()).await;
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let request = server.get_traced("allergy/P0001", &format!("drain-{i}"));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    // Wait until the server is demonstrably answering, so the rest are in flight when shutdown starts.
    while server.audit_count().await == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }

    // Act: shut down while requests are in flight.
    server.shutdown().await;

    // Assert: every 200 has exactly one audit row; the chain is intact.
    let mut ok = 0;
    for request in requests {
        if let Ok(Ok(200)) = request.await {
            ok += 1;
        }
    }
    let reopened = phr_server::Db::connect(&server.app.config.database_url).await.unwrap();
    let rows: i64 = phr_server::with_pool!(&reopened, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM d_audit_event WHERE trace_id LIKE 'drain-%' AND outcome = 'success'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(ok > 0, "some requests were in flight and finished");
    assert_eq!(rows, ok);
    let report = phr_server::audit::AuditLog::new(reopened, phr_server::Clock::System).verify().await.unwrap();
    assert_eq!(report.first_broken, None);
}
