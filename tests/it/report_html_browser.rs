//! `connrun report html` renders in a real headless browser (Debian's chromium) and loads nothing external.
//!
//! Without chromium the test prints a loud SKIP, unless REQUIRE_BROWSER=1 makes that a failure.

use crate::routine_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use routine_support::{connrun, phr_seq, run_against, text};

use connrun::cli::demo::DemoEnvironment;

pub(crate) fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
    })
}

/// Decodes a PNG and counts pixels that differ from the first one (a blank page has none).
pub(crate) fn non_background_pixels(png: &[u8]) -> usize {
    let decoder = png_decode(png);
    let first = decoder.first().copied().unwrap_or_default();
    decoder.iter().filter(|p| **p != first).count()
}

/// Minimal PNG reader for chromium's 8-bit RGB(A) screenshots: concatenates IDAT, inflates, unfilters.
fn png_decode(png: &[u8]) -> Vec<[u8; 4]> {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut pos, mut width, mut height, mut channels) = (8usize, 0usize, 0usize, 4usize);
    let mut idat = Vec::new();
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().expect("len")) as usize;
        let kind = &png[pos + 4..pos + 8];
        let data = &png[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().expect("w")) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().expect("h")) as usize;
                assert_eq!(data[8], 8, "8-bit PNG expected");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).expect("inflate");
    let stride = width * channels;
    let mut previous = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(width * height);
    for row in 0..height {
        let line = &raw[row * (stride + 1)..(row + 1) * (stride + 1)];
        let mut current = line[1..].to_vec();
        for i in 0..stride {
            let a = if i >= channels { current[i - channels] as i32 } else { 0 };
            let b = previous[i] as i32;
            let c = if i >= channels { previous[i - channels] as i32 } else { 0 };
            let add = match line[0] {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            };
            current[i] = (current[i] as i32 + add) as u8;
        }
        for px in current.chunks(channels) {
            pixels.push([px[0], px[1], px[2], if channels == 4 { px[3] } else { 255 }]);
        }
        previous = current;
    }
    pixels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_headless_chromium_and_references_nothing_external() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"),
            "REQUIRE_BROWSER=1 but chromium is not installed"
        );
        eprintln!(
            "\n*** SKIP the_html_report_renders_in_headless_chromium: chromium not installed (apt-get install -y chromium) ***\n"
        );
        return;
    };
    // Arrange: two real runs, so the latency chart has a series.
    let artifacts = tempfile::tempdir().expect("temp dir");
    let environment = DemoEnvironment::start(None).await.expect("demo server starts");
    run_against(&environment, artifacts.path(), &phr_seq()).await;
    let run = run_against(&environment, artifacts.path(), &phr_seq()).await;
    environment.stop().await;
    let html_path = artifacts.path().join("report.html");

    // Act
    let output = connrun(
        artifacts.path(),
        &["report", "html", &run.status.run_id, "--output", html_path.to_str().expect("utf-8 path")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let html = std::fs::read_to_string(&html_path).expect("html written");
    let screenshot = artifacts.path().join("shot.png");
    let profile = tempfile::tempdir().expect("profile dir");
    // coreutils' `timeout` turns a hung browser into a failure (exit 124) instead of a stalled CI.
    let browser_run = Command::new("timeout")
        .args(["--kill-after=10", "120"])
        .arg(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=1000,1400")
        .arg(format!("file://{}", html_path.display()))
        .output()
        .expect("chromium runs");

    // Assert: the page carries its waterfall and chart inline and loads nothing from elsewhere.
    for needle in
        ["<svg id=\"waterfall\"", "<svg id=\"latency-chart\"", "class=\"seg\"", "PHR-07", "default-src 'none'"]
    {
        assert!(html.contains(needle), "missing {needle}");
    }
    let lower = html.to_ascii_lowercase();
    for external in ["src=\"http", "href=\"http", "src='http", "href='http", "url(http", "@import", "<link", "<script"]
    {
        assert!(!lower.contains(external), "external resource reference `{external}` in the HTML");
    }
    // Assert: chromium rendered it into a non-blank PNG.
    let png = std::fs::read(&screenshot).unwrap_or_else(|_| panic!("no screenshot: {}", text(&browser_run)));
    let drawn = non_background_pixels(&png);
    assert!(drawn > 5_000, "screenshot looks blank ({drawn} non-background pixels)");
}
