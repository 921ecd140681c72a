//! `GET /openDolphin/resources/serverinfo/{jamri | claim/conn | cloud/zero}` end to end: text answers from
//! configuration, 404 JSON for anything else, the same mTLS + Basic gate as the PHR calls, an audit row.

use crate::support::{self, Options, TestServer};

const BASE: &str = "/openDolphin/resources/serverinfo";

#[tokio::test]
async fn known_keys_answer_text_from_configuration() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        let claim = server.get(&format!("{BASE}/claim/conn")).header("X-Trace-Id", "info-claim").send().await.unwrap();
        let jamri = server.get(&format!("{BASE}/jamri")).send().await.unwrap();
        let cloud = server.get(&format!("{BASE}/cloud/zero")).send().await.unwrap();

        assert_eq!(claim.status(), 200);
        assert!(claim.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        assert_eq!(claim.text().await.unwrap(), "server", "claim.conn defaults to server");
        assert_eq!((jamri.status().as_u16(), jamri.text().await.unwrap()), (200, String::new()));
        assert_eq!((cloud.status().as_u16(), cloud.text().await.unwrap()), (200, String::new()));
        server.stop().await;
    }
}

#[tokio::test]
async fn unknown_keys_are_404_json_and_audited() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;

    for (key, trace) in
        [("jdbc/url", "info-unknown-1"), ("claim", "info-unknown-2"), ("claim/conn/x", "info-unknown-3")]
    {
        let response = server
            .client()
            .get(server.url(&format!("{BASE}/{key}")))
            .basic_auth(format!("{}:{}", support::FACILITY, support::USER), Some(support::PASSWORD))
            .header("X-Facility-Id", support::FACILITY)
            .header("X-Trace-Id", trace)
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 404, "{key}");
        assert_eq!(support::error_type(response).await, "error.phr.invalidParameter", "{key}");
        let rows = server.audit_rows(trace).await;
        assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("SERVER_INFO_FETCH", "failed"), "{key}");
        assert_eq!(rows[0].payload["key"], key);
    }
    server.stop().await;
}

#[tokio::test]
async fn basic_auth_is_required_like_the_phr_calls() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;

    let response = server
        .client()
        .get(server.url(&format!("{BASE}/claim/conn")))
        .header("X-Trace-Id", "info-no-basic")
        .header("X-Facility-Id", support::FACILITY)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(support::error_type(response).await, "error.phr.unauthenticated");
    server.stop().await;
}
