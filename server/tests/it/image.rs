//! PHR-07 `GET /image/{patientId}` end to end against the seeded images: the 5 MiB cap at its exact
//! boundary, the empty 404, Range ignored, the policy headers on every answer, and the sliding-window burst
//! budget pinned at its boundary with the server's manual clock.
//!
//! Seed facts relied on (SERVER_CONTRACT.md): F001/P0004's newest image is exactly 5 MiB, F001/P0003's is
//! 5 MiB + 1 byte, F001/P0002 has no image.

use std::time::Duration;

use crate::support::{self, FACILITY, Options, PASSWORD, TestServer, USER};
use devpki::LeafSpec;
use phr_server::ImagePolicy;

const MIB: u64 = 1024 * 1024;
const FIVE_MIB: u64 = 5 * MIB;

/// `GET image/{patient}` as F001:ops with the given trace id, from `client`.
fn image_request(server: &TestServer, client: &reqwest::Client, patient: &str, trace: &str) -> reqwest::RequestBuilder {
    client
        .get(server.url(&format!("image/{patient}")))
        .basic_auth(format!("{FACILITY}:{USER}"), Some(PASSWORD))
        .header("X-Trace-Id", trace)
        .header("X-Facility-Id", FACILITY)
}

async fn fetch(server: &TestServer, patient: &str, trace: &str) -> reqwest::Response {
    image_request(server, &server.client(), patient, trace).send().await.unwrap()
}

/// Moves the server's manual clock to `millis` after the test start, fetches P0004, and returns the status and
/// `Retry-After` (after checking the policy headers and draining the body).
async fn fetch_at(server: &TestServer, policy: &ImagePolicy, millis: i64, trace: &str) -> (u16, Option<String>) {
    let target = Options::default().clock_start + chrono::Duration::milliseconds(millis);
    server.clock.advance(target - server.clock.now());
    let response = fetch(server, "P0004", trace).await;
    let status = response.status().as_u16();
    let retry_after = header(&response, "retry-after").map(str::to_owned);
    assert_policy_headers(&response, policy);
    let _ = response.bytes().await.unwrap();
    (status, retry_after)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn assert_policy_headers(response: &reqwest::Response, policy: &ImagePolicy) {
    assert_eq!(header(response, "x-image-max-size"), Some(policy.max_bytes.to_string().as_str()));
    let burst = format!("{};w={}", policy.burst_bytes, policy.burst_window.as_secs());
    assert_eq!(header(response, "x-image-burst-limit"), Some(burst.as_str()));
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

#[tokio::test]
async fn exactly_5_mib_streams_whole_and_one_byte_more_is_413() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;
        let policy = ImagePolicy::default();

        let at_limit = fetch(&server, "P0004", "image-5mib").await;
        let over_limit = fetch(&server, "P0003", "image-5mib-plus-1").await;

        // Exactly the cap: 200, whole, with the spec's headers
        assert_eq!(at_limit.status(), 200);
        assert_eq!(header(&at_limit, "content-type"), Some("image/jpeg"));
        assert_eq!(header(&at_limit, "content-length"), Some(FIVE_MIB.to_string().as_str()));
        assert_eq!(header(&at_limit, "cache-control"), Some("no-store, max-age=0"));
        assert_policy_headers(&at_limit, &policy);
        let bytes = at_limit.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, FIVE_MIB);
        assert_eq!(&bytes[..2], [0xFF, 0xD8], "a JPEG starts with SOI");
        let rows = server.audit_rows("image-5mib").await;
        assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_IMAGE_STREAM", "success"));
        assert_eq!(rows[0].patient_id.as_deref(), Some("P0004"));
        assert_eq!(rows[0].payload["sizeBytes"], FIVE_MIB);
        assert_eq!(rows[0].payload["sha256"], sha256_hex(&bytes), "the audit row names the bytes that were sent");

        // One byte over: 413 with the JSON body, the policy headers and its own audit action
        assert_eq!(over_limit.status(), 413);
        assert_policy_headers(&over_limit, &policy);
        assert_eq!(support::error_type(over_limit).await, "error.phr.imageTooLarge");
        let rows = server.audit_rows("image-5mib-plus-1").await;
        assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_IMAGE_STREAM_FAILED", "failed"));
        assert_eq!(rows[0].payload["sizeBytes"], FIVE_MIB + 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_patient_without_images_is_an_empty_404_still_carrying_the_policy() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        let response = fetch(&server, "P0002", "image-none").await;

        assert_eq!(response.status(), 404);
        assert_policy_headers(&response, &ImagePolicy::default());
        assert_eq!(header(&response, "x-trace-id"), Some("image-none"));
        assert!(response.bytes().await.unwrap().is_empty(), "the body must be empty");
        let rows = server.audit_rows("image-none").await;
        assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_IMAGE_STREAM", "failed"));
        assert_eq!(rows[0].payload["httpStatus"], 404);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_range_header_is_ignored_and_the_whole_image_is_sent() {
    let server = TestServer::start(support::sqlite(), Options::default()).await;

    let response = image_request(&server, &server.client(), "P0004", "image-range")
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-range").is_none());
    assert_eq!(response.bytes().await.unwrap().len() as u64, FIVE_MIB);
    server.stop().await;
}

#[tokio::test]
async fn the_burst_budget_is_a_sliding_window_pinned_at_its_boundary() {
    for db in support::backends().await {
        // Arrange: a budget of exactly two 5 MiB images per 300 s, on the server's manual clock.
        let policy =
            ImagePolicy { max_bytes: FIVE_MIB, burst_bytes: 2 * FIVE_MIB, burst_window: Duration::from_secs(300) };
        let server = TestServer::start(db, Options { image: policy, ..Options::default() }).await;
        let at = |millis: i64, trace: &'static str| fetch_at(&server, &policy, millis, trace);

        // Act + Assert, times in milliseconds since the start:
        // 0 s and 100 s fill the budget exactly (the boundary itself is allowed) ...
        assert_eq!(at(0, "burst-0").await, (200, None));
        assert_eq!(at(100_000, "burst-100").await, (200, None));
        // ... one more byte is refused until the grant of 0 s leaves at 300 s: Retry-After 100 at 200 s,
        assert_eq!(at(200_000, "burst-200").await, (429, Some("100".into())));
        // still refused a millisecond before the boundary (1 ms rounds up to 1 s),
        assert_eq!(at(299_999, "burst-299.999").await, (429, Some("1".into())));
        // allowed at exactly 300 s: only the 100 s grant is left, and refusals consumed nothing,
        assert_eq!(at(300_000, "burst-300").await, (200, None));
        // and the window keeps sliding: now the 100 s grant must leave, at 400 s.
        assert_eq!(at(300_000, "burst-300-again").await, (429, Some("100".into())));

        let rows = server.audit_rows("burst-200").await;
        assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_IMAGE_STREAM_THROTTLED", "failed"));
        assert_eq!(rows[0].payload["retryAfterSeconds"], 100);
        let metrics = server.app.metrics.render();
        assert!(metrics.contains("phr_image_throttle_total{decision=\"throttled\"} 3"), "{metrics}");
        assert!(metrics.contains("phr_image_throttle_total{decision=\"allowed\"} 3"), "{metrics}");
        server.stop().await;
    }
}

#[tokio::test]
async fn one_byte_under_two_images_refuses_the_second_and_other_certificates_have_their_own_budget() {
    // Arrange: the budget is one byte short of two 5 MiB images.
    let policy =
        ImagePolicy { max_bytes: FIVE_MIB, burst_bytes: 2 * FIVE_MIB - 1, burst_window: Duration::from_secs(300) };
    let server = TestServer::start(support::sqlite(), Options { image: policy, ..Options::default() }).await;
    let other_identity = server.pki.ca.issue(&LeafSpec::client("other-client")).unwrap();
    let other_client = server.client_with(Some(&other_identity));

    // Act
    let first = fetch(&server, "P0004", "short-1").await.status();
    let second = fetch(&server, "P0004", "short-2").await;
    let other = image_request(&server, &other_client, "P0004", "short-other").send().await.unwrap().status();

    // Assert
    assert_eq!(first, 200);
    assert_eq!(second.status(), 429);
    assert_eq!(header(&second, "retry-after"), Some("300"));
    assert_eq!(support::error_type(second).await, "error.phr.throttled");
    assert_eq!(other, 200, "the budget is per client certificate");
    server.stop().await;
}

#[tokio::test]
async fn the_newest_image_of_the_callers_own_facility_is_served() {
    for db in support::backends().await {
        let server = TestServer::start(db, Options::default()).await;

        // F001/P0001 has three images; the newest (by created_at) is the 1 MiB one.
        let own = fetch(&server, "P0001", "image-newest").await;
        // F002 has its own P0004 (a small image), never F001's 5 MiB one.
        let other_facility = server
            .client()
            .get(server.url("image/P0004"))
            .basic_auth("F002:ops", Some(PASSWORD))
            .header("X-Trace-Id", "image-f002")
            .header("X-Facility-Id", "F002")
            .send()
            .await
            .unwrap();
        // An F001 caller naming F002 in the header is refused outright.
        let cross = server
            .client()
            .get(server.url("image/P0004"))
            .basic_auth(format!("{FACILITY}:{USER}"), Some(PASSWORD))
            .header("X-Trace-Id", "image-cross")
            .header("X-Facility-Id", "F002")
            .send()
            .await
            .unwrap();

        assert_eq!(own.status(), 200);
        assert_eq!(own.bytes().await.unwrap().len(), phr_server::seed::NEWEST_IMAGE_P0001_BYTES);
        assert_eq!(other_facility.status(), 200);
        assert_eq!(other_facility.bytes().await.unwrap().len(), 4 * phr_server::seed::SMALL_IMAGE_BYTES);
        assert_eq!(cross.status(), 403);
        assert_eq!(support::error_type(cross).await, "error.phr.forbiddenFacility");
        server.stop().await;
    }
}
