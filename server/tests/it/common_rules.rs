//! The common request rules of PHR_API.md §1–§2 and hostile input: every case is a clean 4xx with the JSON
//! error body (or the documented status), an echoed trace id, and an audit row for the failure.

use crate::support::{self, Options, TestServer};
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue};

/// One hostile or incomplete request and what it must answer.
struct Case {
    name: &'static str,
    headers: Vec<(&'static str, HeaderValue)>,
    /// Headers of the default request to leave out.
    without: &'static [&'static str],
    path: String,
    status: u16,
    error: &'static str,
}

fn basic(raw: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))).unwrap()
}

fn cases() -> Vec<Case> {
    let case = |name, headers, without, path: &str, status, error| Case {
        name,
        headers,
        without,
        path: path.to_owned(),
        status,
        error,
    };
    vec![
        case("missing trace id", vec![], &["x-trace-id"], "allergy/P0001", 400, "missingTraceId"),
        case("missing facility", vec![], &["x-facility-id"], "allergy/P0001", 400, "missingFacilityId"),
        case("no credentials", vec![], &["authorization"], "allergy/P0001", 401, "unauthenticated"),
        case(
            "wrong password",
            vec![("authorization", basic("F001:ops:nope"))],
            &[],
            "allergy/P0001",
            401,
            "unauthenticated",
        ),
        case(
            "unknown user",
            vec![("authorization", basic("F001:ghost:x"))],
            &[],
            "allergy/P0001",
            401,
            "unauthenticated",
        ),
        case(
            "not base64",
            vec![("authorization", HeaderValue::from_static("Basic %%%"))],
            &[],
            "allergy/P0001",
            401,
            "unauthenticated",
        ),
        case(
            "bearer scheme",
            vec![("authorization", HeaderValue::from_static("Bearer abc"))],
            &[],
            "allergy/P0001",
            401,
            "unauthenticated",
        ),
        case(
            "non-UTF-8 Basic",
            vec![("authorization", HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap())],
            &[],
            "allergy/P0001",
            401,
            "unauthenticated",
        ),
        case(
            "non-UTF-8 trace id",
            vec![("x-trace-id", HeaderValue::from_bytes(b"run-\xff").unwrap())],
            &[],
            "allergy/P0001",
            400,
            "invalidParameter",
        ),
        case(
            "facility header of another facility",
            vec![("x-facility-id", HeaderValue::from_static("F002"))],
            &[],
            "allergy/P0001",
            403,
            "forbiddenFacility",
        ),
        case(
            "huge header",
            vec![("x-padding", HeaderValue::from_str(&"a".repeat(20_000)).unwrap())],
            &[],
            "allergy/P0001",
            431,
            "invalidParameter",
        ),
        case("path traversal in id", vec![], &[], "allergy/..%2F..%2Fetc%2Fpasswd", 404, "patientNotFound"),
        case("SQL metacharacters in id", vec![], &[], "allergy/P0001'%20OR%20'1'%3D'1", 404, "patientNotFound"),
    ]
}

#[tokio::test]
async fn hostile_and_incomplete_requests_get_clean_json_errors() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        for (i, case) in cases().into_iter().enumerate() {
            // Arrange
            let trace = format!("rules-{i}");
            let mut headers = HeaderMap::new();
            headers.insert("x-trace-id", HeaderValue::from_str(&trace).unwrap());
            headers.insert("x-facility-id", HeaderValue::from_static("F001"));
            headers.insert("authorization", basic(&format!("F001:ops:{}", support::PASSWORD)));
            for name in case.without {
                headers.remove(*name);
            }
            for (name, value) in case.headers {
                headers.insert(name, value);
            }

            // Act
            let response = server.client().get(server.url(&case.path)).headers(headers.clone()).send().await.unwrap();

            // Assert
            let status = response.status().as_u16();
            assert_eq!(status, case.status, "{:?} {}", server.backend, case.name);
            if case.status == 401 {
                assert_eq!(response.headers()["www-authenticate"], "Basic realm=\"OpenDolphin\"", "{}", case.name);
            }
            let echoed = response.headers().get("x-trace-id").cloned();
            assert_eq!(support::error_type(response).await, format!("error.phr.{}", case.error), "{}", case.name);
            let trace_sent = headers.get("x-trace-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            if case.status != 431 {
                assert_eq!(echoed.as_ref().and_then(|v| v.to_str().ok()), trace_sent.as_deref(), "{}", case.name);
            }
            if let Some(trace) = trace_sent.filter(|_| case.status != 431) {
                let rows = server.audit_rows(&trace).await;
                assert_eq!(rows.len(), 1, "{}: one audit row for the failure", case.name);
                assert_eq!(rows[0].outcome, "failed", "{}", case.name);
                assert_eq!(rows[0].payload["httpStatus"], status, "{}", case.name);
                assert_eq!(rows[0].payload["error"], format!("error.phr.{}", case.error), "{}", case.name);
            }
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn touch_trace_alias_and_user_only_basic_form_are_accepted() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;

    let response = server
        .client()
        .get(server.url("allergy/P0001"))
        .header("X-Touch-TraceId", "alias-trace")
        .header("X-Facility-Id", "f001 ")
        .header("X-Request-Id", "req-42")
        .basic_auth("ops", Some(support::PASSWORD))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-trace-id"], "alias-trace");
    let rows = server.audit_rows("alias-trace").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].actor_id.as_deref(), Some("F001:ops"));
    assert_eq!(rows[0].outcome, "success");
    assert_eq!(rows[0].payload["facilityId"], "F001");
    server.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_trusted_only_from_configured_proxies() {
    for (trusted, expected) in [(vec!["127.0.0.1".parse().unwrap()], "203.0.113.7"), (vec![], "127.0.0.1")] {
        let options = Options { trusted_proxies: trusted, ..Options::default() };
        let server = TestServer::start(support::sqlite(), options).await;

        server
            .get_traced("allergy/P0001", "xff")
            .header("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
            .send()
            .await
            .unwrap();

        let ip: Option<String> = phr_server::with_pool!(&server.app.db, |pool| {
            sqlx::query_scalar("SELECT ip_address FROM d_audit_event WHERE trace_id = 'xff'")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert_eq!(ip.as_deref(), Some(expected));
        server.stop().await;
    }
}
