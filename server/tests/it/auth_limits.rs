//! Password checks bounded, against the real server over real mTLS: a flood of distinct wrong passwords
//! never runs more argon2 checks at once than there are slots and leaves room for a normal call; a full
//! queue is refused at once (503) and a certificate that keeps failing is throttled (429), both with
//! `Retry-After`, JSON and an audit row.

use std::time::Duration;

use devpki::LeafSpec;
use futures::StreamExt as _;
use phr_server::config::auth::AuthLimits;

use crate::support::{self, FACILITY, Options, PASSWORD, TestServer, USER};

fn options(auth: AuthLimits) -> Options {
    Options { auth, seed_patients: 1, ..Options::default() }
}

/// `GET allergy/P0001` as `F001:ops` with `password` and the given client, traced as `trace_id`.
async fn call(server: &TestServer, client: &reqwest::Client, password: &str, trace_id: &str) -> reqwest::Response {
    client
        .get(server.url("allergy/P0001"))
        .basic_auth(format!("{FACILITY}:{USER}"), Some(password))
        .header("X-Trace-Id", trace_id)
        .header("X-Facility-Id", FACILITY)
        .send()
        .await
        .expect("response")
}

/// The value of a single-series metric line such as `phr_auth_verifications_in_flight_peak 2`.
fn metric(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
        .parse()
        .expect("a number")
}

/// Asserts the JSON throttled body, the status, `Retry-After`, and the call's one audit row.
async fn assert_throttled(
    server: &TestServer,
    response: reqwest::Response,
    status: u16,
    retry_after: &str,
    trace: &str,
) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["retry-after"], retry_after);
    assert_eq!(support::error_type(response).await, "error.phr.throttled");
    let rows = server.audit_rows(trace).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].action.as_str(), rows[0].outcome.as_str()), ("PHR_ALLERGY_TEXT", "failed"));
    assert_eq!(rows[0].payload["httpStatus"], status);
    assert_eq!(rows[0].payload["retryAfterSeconds"].to_string(), retry_after);
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_never_runs_more_checks_than_slots_and_a_normal_call_succeeds() {
    // Arrange: two slots, room for the whole flood in the queue, the failure throttle out of the way.
    let limits = AuthLimits { max_concurrent: 2, max_queued: 400, max_failures: 1_000_000, ..AuthLimits::default() };
    let server = TestServer::start(support::sqlite(), options(limits)).await;
    let client = server.client();

    // Act: 200 distinct wrong passwords, 50 at a time, and one right one in the middle of them.
    let flood = futures::stream::iter(0..200)
        .map(|i| {
            let (server, client) = (&server, &client);
            async move { call(server, client, &format!("wrong-{i}"), &format!("flood-{i}")).await.status() }
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>();
    let normal = async {
        tokio::task::yield_now().await;
        call(&server, &client, PASSWORD, "flood-normal").await.status()
    };
    let (statuses, normal) = tokio::join!(flood, normal);

    // Assert
    assert!(statuses.iter().all(|s| s.as_u16() == 401), "{statuses:?}");
    assert_eq!(normal, 200, "a normal call gets its turn during the flood");
    let metrics = server.metrics().await;
    let peak = metric(&metrics, "phr_auth_verifications_in_flight_peak");
    assert!((1..=2).contains(&peak), "peak {peak}\n{metrics}");
    assert_eq!(metric(&metrics, "phr_auth_verifications_total{result=\"mismatch\"}"), 200);
    assert_eq!(metric(&metrics, "phr_auth_verifications_in_flight"), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once_with_503_retry_after_and_an_audit_row() {
    for db in support::backends().await {
        // Arrange: one slot, held; one caller waiting in the one-place queue.
        let limits = AuthLimits { max_concurrent: 1, max_queued: 1, ..AuthLimits::default() };
        let server = TestServer::start(db, options(limits)).await;
        let client = server.client();
        let held = server.app.auth.gate().acquire().await.expect("the only slot");
        let queued = tokio::spawn({
            let request = server.get_traced("allergy/P0001", "queue-waiting");
            async move { request.send().await.map(|r| r.status().as_u16()) }
        });
        server.wait_for_metric("phr_auth_verifications_waiting 1").await;

        // Act
        let refused = call(&server, &client, "another-password", "queue-full").await;

        // Assert: refused at once, while the queued call still waits; it is served once the slot is free.
        assert_throttled(&server, refused, 503, "1", "queue-full").await;
        drop(held);
        assert_eq!(queued.await.unwrap().unwrap(), 200);
        server.stop().await;
    }
}

#[tokio::test]
async fn repeated_failures_from_one_certificate_are_throttled_with_retry_after_and_an_audit_row() {
    for db in support::backends().await {
        // Arrange: three failures per minute are allowed, and used up.
        let limits = AuthLimits { max_failures: 3, failure_window: Duration::from_secs(60), ..AuthLimits::default() };
        let server = TestServer::start(db, options(limits)).await;
        let client = server.client();
        for i in 0..3 {
            assert_eq!(call(&server, &client, "wrong", &format!("fail-{i}")).await.status(), 401);
        }

        // Act: even the right password is refused for this certificate now, without a check.
        let throttled = call(&server, &client, PASSWORD, "fail-throttled").await;

        // Assert
        assert_throttled(&server, throttled, 429, "60", "fail-throttled").await;
        let other = server.pki.ca.issue(&LeafSpec::client("other-client")).expect("cert");
        let other_client = server.client_with(Some(&other));
        assert_eq!(call(&server, &other_client, PASSWORD, "fail-other").await.status(), 200, "other certificates");
        server.clock.advance(chrono::Duration::seconds(60));
        assert_eq!(call(&server, &client, PASSWORD, "fail-later").await.status(), 200, "after the window");
        server.stop().await;
    }
}
