//! `connrun history --html`: per probe, status and latency across real runs as inline SVG, self-contained,
//! with hostile probe names escaped. Rendered in headless Chromium when it is installed (REQUIRE_BROWSER=1
//! makes its absence a failure).

use std::process::Command;

use connrun::cli::demo::DemoEnvironment;
use connrun::report::trends::{NO_ANSWER_COLOUR, NOT_READY_COLOUR, READY_COLOUR};

use crate::report_html_browser::{chromium, non_background_pixels};
use crate::routine_support::{connrun, phr_seq_variant, run_against, text};

/// A probe name that tries to end the SVG's title and the SVG, and to run a script two ways.
const HOSTILE: (&str, &str) = (
    "name = \"image\"",
    "name = '</title></svg><script>alert(1)</script><img src=\"x\" onerror=\"alert(2)\"> & \"q\"'",
);
/// PHR-07 whose 200 is not a Ready status, so one run's point is red.
const NOT_READY: (&str, &str) = ("ready = [200, 403]\nchecks", "ready = [201]\nchecks");

/// The `<svg class="trend" …>…</svg>` of one probe.
fn chart<'a>(html: &'a str, probe: &str) -> &'a str {
    let start =
        html.find(&format!("<svg class=\"trend\" data-probe=\"{probe}\"")).unwrap_or_else(|| panic!("no {probe}"));
    let end = start + html[start..].find("</svg>").expect("closed svg");
    &html[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_html_draws_one_svg_per_probe_with_a_point_per_run_in_its_status_colour() {
    // Arrange: three real runs of one template and target; the middle one's PHR-07 is not Ready.
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    let artifacts = tempfile::tempdir().expect("artifacts");
    let (ok, broken) = (tempfile::tempdir().expect("variant"), tempfile::tempdir().expect("variant"));
    let hostile = phr_seq_variant(ok.path(), &[HOSTILE]);
    let hostile_broken = phr_seq_variant(broken.path(), &[HOSTILE, NOT_READY]);
    let mut run_ids = Vec::new();
    for template in [&hostile, &hostile_broken, &hostile] {
        run_ids.push(run_against(&environment, artifacts.path(), template).await.status.run_id);
    }
    environment.stop().await;
    let page = artifacts.path().join("trends.html");

    // Act
    let output = tokio::task::block_in_place(|| {
        connrun(artifacts.path(), &["history", "--html", page.to_str().expect("utf-8"), "--last", "20"])
    });

    // Assert: one chart per probe (server info included), one point per run, coloured by status.
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let html = std::fs::read_to_string(&page).expect("page written");
    assert_eq!(html.matches("<svg class=\"trend\"").count(), 4, "serverinfo, PHR-06, PHR-07, PHR-11");
    for probe in ["serverinfo", "PHR-06", "PHR-11"] {
        let svg = chart(&html, probe);
        assert_eq!(svg.matches("<circle").count(), 3, "{probe}: {svg}");
        assert_eq!(svg.matches(&format!("fill=\"{READY_COLOUR}\"")).count(), 3, "{probe}: {svg}");
        assert_eq!(svg.matches("<polyline class=\"latency\"").count(), 1, "{probe}: a latency line");
    }
    let image = chart(&html, "PHR-07");
    assert_eq!(image.matches("<circle").count(), 3, "{image}");
    assert_eq!(image.matches(&format!("fill=\"{READY_COLOUR}\"")).count(), 2, "{image}");
    assert_eq!(image.matches(&format!("fill=\"{NOT_READY_COLOUR}\"")).count(), 1, "{image}");
    assert_eq!(image.matches(NO_ANSWER_COLOUR).count(), 0, "{image}");
    // Every point says which run it is, in the order the runs were made.
    let titled: Vec<usize> =
        run_ids.iter().map(|id| image.find(&format!("<title>{id} ")).expect("titled point")).collect();
    assert!(titled.windows(2).all(|w| w[0] < w[1]), "points oldest first: {titled:?}");
    assert!(image.contains("HTTP 200 Not Ready"), "the red point's title says why: {image}");
    // Self-contained and escaped: no script, no URL, the hostile name shown as text.
    let lower = html.to_ascii_lowercase();
    for forbidden in ["<script", "<img", "http://", "https://", "<link", "@import", "url("] {
        assert!(!lower.contains(forbidden), "`{forbidden}` in the page");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the hostile name is shown escaped");
    assert!(html.contains("default-src 'none'"));

    // And a real browser draws it (skipped loudly without chromium, unless REQUIRE_BROWSER=1).
    let Some(browser) = chromium() else {
        assert!(std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"), "REQUIRE_BROWSER=1 but chromium is missing");
        eprintln!("\n*** SKIP the trends page in headless chromium: chromium not installed ***\n");
        return;
    };
    let screenshot = artifacts.path().join("trends.png");
    let profile = tempfile::tempdir().expect("profile dir");
    let browser_run = Command::new("timeout")
        .args(["--kill-after=10", "120"])
        .arg(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=900,1200")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let png = std::fs::read(&screenshot).unwrap_or_else(|_| panic!("no screenshot: {}", text(&browser_run)));
    assert!(non_background_pixels(&png) > 5_000, "the trends page rendered blank");
}
