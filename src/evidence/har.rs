//! `har/run.har`: every probe as an HTTP Archive 1.2 entry, so a run opens in a browser's dev tools.
//!
//! Built from the `ProbeRecord`s only (already redacted). HAR has no place for a failed connection, so a
//! probe without a response gets status 0 and its outcome in the custom `_error` field, as browsers do.
//! The document is serialised straight into its file from typed views that borrow the records: a
//! 1,000-probe HAR never exists in memory, neither as text nor as a `serde_json::Value` tree. Fields are
//! declared in alphabetical order, the order the file has always had.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::io::Write;

use serde::Serialize;
use serde::ser::{Error as _, SerializeSeq};

use crate::evidence::ProbeRecord;

/// Writes the whole HAR document for a run (server-info probe first, then probes in order) to `out`.
pub fn write<'a>(
    out: impl Write,
    run_id: &str,
    probes: impl IntoIterator<Item = &'a ProbeRecord>,
) -> serde_json::Result<()> {
    write_results(out, run_id, probes.into_iter().map(Ok::<_, std::convert::Infallible>))
}

/// Writes the HAR document from records produced one at a time (e.g. read back from the run's spool); the
/// first record that cannot be produced stops the document with its error, so no HAR looks complete without
/// every probe.
pub fn write_results<R, E>(
    out: impl Write,
    run_id: &str,
    probes: impl Iterator<Item = Result<R, E>>,
) -> serde_json::Result<()>
where
    R: Borrow<ProbeRecord>,
    E: std::fmt::Display,
{
    let document = Document {
        log: Log {
            comment: format!("RUN_ID={run_id}"),
            creator: Creator { name: "connrun", version: crate::evidence::TOOL_VERSION },
            entries: Entries(RefCell::new(Some(probes))),
            pages: [],
            version: "1.2",
        },
    };
    serde_json::to_writer_pretty(out, &document)
}

/// The top level: `{"log": ...}`.
#[derive(Serialize)]
struct Document<E: Serialize> {
    /// The archive.
    log: Log<E>,
}

/// HAR's `log` object.
#[derive(Serialize)]
struct Log<E: Serialize> {
    /// `RUN_ID=<id>`, so a HAR file names its run.
    comment: String,
    /// The tool that wrote the file.
    creator: Creator,
    /// One entry per probe, produced while serialising.
    entries: E,
    /// No pages: probes are not page loads.
    pages: [(); 0],
    /// HAR format version.
    version: &'static str,
}

/// HAR's `creator` object.
#[derive(Serialize)]
struct Creator {
    /// `connrun`.
    name: &'static str,
    /// connrun's version.
    version: &'static str,
}

/// The records, serialised as a JSON array of entries, each built only while it is written (serialised once).
struct Entries<I>(RefCell<Option<I>>);

impl<I, R, E> Serialize for Entries<I>
where
    I: Iterator<Item = Result<R, E>>,
    R: Borrow<ProbeRecord>,
    E: std::fmt::Display,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let probes = self.0.borrow_mut().take().ok_or_else(|| S::Error::custom("HAR entries serialised twice"))?;
        let mut seq = serializer.serialize_seq(None)?;
        for probe in probes {
            let probe = probe.map_err(S::Error::custom)?;
            seq.serialize_element(&entry(probe.borrow()))?;
        }
        seq.end()
    }
}

/// One HAR entry.
#[derive(Serialize)]
pub struct Entry<'a> {
    /// The outcome described, for probes that did not end in an HTTP response (or a local error).
    #[serde(rename = "_error", skip_serializing_if = "String::is_empty")]
    error: String,
    /// The outcome kind, e.g. `tls_failure`.
    #[serde(rename = "_outcome")]
    outcome: &'static str,
    /// Whether the probe was Ready.
    #[serde(rename = "_ready")]
    ready: bool,
    /// Always empty: probes bypass caches.
    cache: Empty,
    /// `<id> <name> (phase <phase>)`.
    comment: String,
    /// The request as sent.
    request: Request<'a>,
    /// The response as received (status 0 without one).
    response: Response<'a>,
    /// When the probe started, RFC 3339 with milliseconds.
    #[serde(rename = "startedDateTime")]
    started: String,
    /// Total milliseconds.
    time: f64,
    /// Phase timings.
    timings: EntryTimings,
}

/// An empty JSON object.
#[derive(Serialize)]
struct Empty {}

/// A `name`/`value` pair (headers, query parameters).
#[derive(Serialize)]
struct Pair<'a> {
    /// The name.
    name: &'a str,
    /// The value.
    value: &'a str,
}

/// HAR's `request` object.
#[derive(Serialize)]
struct Request<'a> {
    /// Request body bytes.
    #[serde(rename = "bodySize")]
    body_size: u64,
    /// Cookies are in the (masked) headers only.
    cookies: [(); 0],
    /// Headers as sent (redacted).
    headers: Vec<Pair<'a>>,
    /// Not measured.
    #[serde(rename = "headersSize")]
    headers_size: i64,
    /// Always HTTP/1.1.
    #[serde(rename = "httpVersion")]
    http_version: &'static str,
    /// The method.
    method: &'a str,
    /// The URL's query, split at `&` and `=`.
    #[serde(rename = "queryString")]
    query_string: Vec<Pair<'a>>,
    /// The (redacted) URL.
    url: &'a str,
}

/// HAR's `response` object.
#[derive(Serialize)]
struct Response<'a> {
    /// Response body bytes, -1 without a response.
    #[serde(rename = "bodySize")]
    body_size: i64,
    /// Size and type of the body.
    content: Content<'a>,
    /// Cookies are in the (masked) headers only.
    cookies: [(); 0],
    /// Headers as received (redacted).
    headers: Vec<Pair<'a>>,
    /// Not measured.
    #[serde(rename = "headersSize")]
    headers_size: i64,
    /// `HTTP/1.1`, empty without a response.
    #[serde(rename = "httpVersion")]
    http_version: &'static str,
    /// The `Location` header, if any.
    #[serde(rename = "redirectURL")]
    redirect_url: &'a str,
    /// The status, 0 without a response.
    status: u16,
    /// Not recorded.
    #[serde(rename = "statusText")]
    status_text: &'static str,
}

/// HAR's `content` object.
#[derive(Serialize)]
struct Content<'a> {
    /// The Content-Type, `x-unknown` without one.
    #[serde(rename = "mimeType")]
    mime_type: &'a str,
    /// Body bytes.
    size: u64,
}

/// HAR's `timings` object; a phase that did not happen is -1.
#[derive(Serialize)]
struct EntryTimings {
    /// Not measured.
    blocked: i64,
    /// TCP connect plus TLS (HAR's `connect` includes `ssl`).
    connect: f64,
    /// Name resolution.
    dns: f64,
    /// The body after the first byte.
    receive: f64,
    /// Not measured separately.
    send: i64,
    /// TLS handshake.
    ssl: f64,
    /// Time to first byte.
    wait: f64,
}

/// A HAR timing that did not happen is -1.
fn phase_ms(ms: f64) -> f64 {
    if ms > 0.0 { ms } else { -1.0 }
}

fn pairs(pairs: &[(String, String)]) -> Vec<Pair<'_>> {
    pairs.iter().map(|(name, value)| Pair { name, value }).collect()
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn query_string(url: &str) -> Vec<Pair<'_>> {
    let Some((_, query)) = url.split_once('?') else { return Vec::new() };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Pair { name, value }
        })
        .collect()
}

/// One HAR entry for one probe.
pub fn entry(probe: &ProbeRecord) -> Entry<'_> {
    let t = &probe.timings;
    // HAR's `connect` includes `ssl` (and a proxy's CONNECT); `wait` is time to first byte; `receive` the rest.
    let connect = if t.connect_ms > 0.0 { t.connect_ms + t.proxy_ms.max(0.0) + t.tls_ms.max(0.0) } else { -1.0 };
    let accounted =
        t.dns_ms.max(0.0) + t.connect_ms.max(0.0) + t.proxy_ms.max(0.0) + t.tls_ms.max(0.0) + t.ttfb_ms.max(0.0);
    let receive = (t.total_ms - accounted).max(0.0);
    let answered = probe.http_status.is_some();
    Entry {
        error: probe.outcome.describe(),
        outcome: probe.outcome.kind(),
        ready: probe.ready,
        cache: Empty {},
        comment: format!("{} {} (phase {})", probe.id, probe.name, probe.phase),
        request: Request {
            body_size: probe.request_body_bytes,
            cookies: [],
            headers: pairs(&probe.request_headers),
            headers_size: -1,
            http_version: "HTTP/1.1",
            method: &probe.method,
            query_string: query_string(&probe.url),
            url: &probe.url,
        },
        response: Response {
            body_size: if answered { probe.response_body_bytes as i64 } else { -1 },
            content: Content {
                mime_type: header(&probe.response_headers, "content-type").unwrap_or("x-unknown"),
                size: probe.response_body_bytes,
            },
            cookies: [],
            headers: pairs(&probe.response_headers),
            headers_size: -1,
            http_version: if answered { "HTTP/1.1" } else { "" },
            redirect_url: header(&probe.response_headers, "location").unwrap_or(""),
            status: probe.http_status.unwrap_or(0),
            status_text: "",
        },
        started: probe.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        time: t.total_ms.max(0.0),
        timings: EntryTimings {
            blocked: -1,
            connect,
            dns: phase_ms(t.dns_ms),
            receive,
            send: 0,
            ssl: phase_ms(t.tls_ms),
            wait: t.ttfb_ms.max(0.0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::status::sample_status;

    #[test]
    fn connect_includes_ssl_and_missing_phases_are_minus_one() {
        let mut probe = sample_status().probes.remove(0);
        probe.timings = crate::evidence::Timings {
            dns_ms: 0.0,
            connect_ms: 1.0,
            tls_ms: 4.0,
            ttfb_ms: 2.0,
            total_ms: 10.0,
            proxy_ms: 0.0,
        };

        let entry = serde_json::to_value(entry(&probe)).unwrap();

        assert_eq!(entry["timings"]["dns"], -1.0);
        assert_eq!(entry["timings"]["connect"], 5.0);
        assert_eq!(entry["timings"]["ssl"], 4.0);
        assert_eq!(entry["timings"]["receive"], 3.0);
        assert_eq!(entry["response"]["status"], 200);
        assert!(entry.get("_error").is_none());
    }

    #[test]
    fn a_probe_without_response_has_status_0_and_its_error() {
        let probe = sample_status().probes.remove(1);

        let entry = serde_json::to_value(entry(&probe)).unwrap();

        assert_eq!(entry["response"]["status"], 0);
        assert_eq!(entry["response"]["bodySize"], -1);
        assert_eq!(entry["_error"], "TLS failure: unknown CA");
    }

    #[test]
    fn the_document_lists_every_probe_in_order() {
        let status = sample_status();
        let mut out = Vec::new();

        write(&mut out, "R", status.serverinfo.iter().chain(&status.probes)).unwrap();

        let har: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(har["log"]["version"], "1.2");
        assert_eq!(har["log"]["comment"], "RUN_ID=R");
        let comments: Vec<&str> =
            har["log"]["entries"].as_array().unwrap().iter().map(|e| e["comment"].as_str().unwrap()).collect();
        assert_eq!(comments.len(), 3);
        assert!(comments[0].starts_with("serverinfo ") && comments[2].starts_with("PHR-07 "), "{comments:?}");
    }
}
