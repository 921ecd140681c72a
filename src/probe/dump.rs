//! Writes a probe's evidence files: `request.http`, `response.headers`, `status.txt`, `curl.sh` and the trace log.
//!
//! These replace the files operators used to collect by hand with `curl -v --trace-ascii`: the request as
//! sent, the response head as received, a `key=value` status file for grep, and a timestamped trace. All of
//! them go through the [`Redactor`]; wire captures are redacted per direction as a whole (not per read), so
//! a header split across two TLS records is still masked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use super::proxy::ProxyRoute;
use super::wire::{CAPTURE_LIMIT, Direction, WireEvent, WireLog};
use super::{ProbeBody, ProbeSpec};
use crate::evidence::ProbeRecord;
use crate::evidence::curl::{self, CurlBody, CurlCall, CurlRecipe};
use crate::redact::Redactor;

/// `request.http`: the captured request bytes, redacted, with a note when the capture was cut.
pub fn request_http(log: &WireLog, redactor: &Redactor) -> Vec<u8> {
    let total = log.total(Direction::Sent);
    let captured = log.captured(Direction::Sent);
    let mut out = if total > CAPTURE_LIMIT as u64 { redactor.cut_bytes(&captured) } else { redactor.bytes(&captured) };
    if total > CAPTURE_LIMIT as u64 {
        let more = total - CAPTURE_LIMIT as u64;
        out.extend_from_slice(format!("\n... {more} more bytes sent (not shown)\n").as_bytes());
    }
    out
}

/// `response.headers`: the response head exactly as received (status line and header lines, redacted);
/// rendered from the record when the head was not captured whole.
pub fn response_headers(log: &WireLog, record: &ProbeRecord, redactor: &Redactor) -> Vec<u8> {
    let received = log.captured(Direction::Received);
    if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
        return redactor.bytes(&received[..end + 4]);
    }
    let mut out = String::new();
    if let Some(status) = record.http_status {
        let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    }
    for (name, value) in &record.response_headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.into_bytes()
}

/// `curl.sh`: the probe as one curl command (secrets by reference), through the redactor like every file.
pub fn curl_sh(recipe: &CurlRecipe, spec: &ProbeSpec, route: Option<&ProxyRoute>, redactor: &Redactor) -> Vec<u8> {
    let body = match &spec.body {
        ProbeBody::Empty => CurlBody::Empty,
        ProbeBody::Inline(bytes) => CurlBody::Inline(bytes),
        ProbeBody::File(path) => CurlBody::File(path),
    };
    let call = CurlCall {
        id: &spec.id,
        method: spec.method.as_str(),
        url: &spec.url,
        headers: &spec.headers,
        body,
        max_time: spec.timeout,
        user_agent: concat!("connrun/", env!("CARGO_PKG_VERSION")),
        proxy: route.map(|r| &r.curl),
    };
    redactor.text(&curl::script(recipe, &call)).into_bytes()
}

/// `status.txt`: one `key=value` per line, curl `-w` style, for grep and shell scripts.
pub fn status_txt(record: &ProbeRecord, run_id: &str) -> String {
    let t = &record.timings;
    let tls = record.tls.as_ref();
    let lines = [
        ("run_id", run_id.to_owned()),
        ("api", record.id.clone()),
        ("name", record.name.clone()),
        ("phase", record.phase.clone()),
        ("url", record.url.clone()),
        ("method", record.method.clone()),
        ("http_code", record.http_status.map_or_else(|| "000".to_owned(), |s| s.to_string())),
        ("outcome", record.outcome.kind().to_owned()),
        ("error", record.outcome.describe()),
        ("ready", record.ready.to_string()),
        ("check_failures", record.check_failures.join("; ")),
        ("timestamp", record.started_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        ("time_dns_ms", format!("{:.3}", t.dns_ms)),
        ("time_connect_ms", format!("{:.3}", t.connect_ms)),
        ("time_tls_ms", format!("{:.3}", t.tls_ms)),
        ("time_ttfb_ms", format!("{:.3}", t.ttfb_ms)),
        ("time_total_ms", format!("{:.3}", t.total_ms)),
        ("tls_version", tls.map(|t| t.version.clone()).unwrap_or_default()),
        ("tls_cipher", tls.map(|t| t.cipher_suite.clone()).unwrap_or_default()),
        ("alpn", tls.and_then(|t| t.alpn.clone()).unwrap_or_default()),
        ("server_cert_sha256", record.server_chain.first().map(|c| c.sha256.clone()).unwrap_or_default()),
        ("request_body_bytes", record.request_body_bytes.to_string()),
        ("response_body_bytes", record.response_body_bytes.to_string()),
        ("response_body_sha256", record.response_body_sha256.clone().unwrap_or_default()),
        ("response_body_file", record.response_body_file.clone().unwrap_or_default()),
    ];
    let attempts = record.attempts.map(|n| ("attempts", n.to_string()));
    let proxy = record.proxy.as_ref().map(|p| {
        let status = p.connect_status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        ("proxy", format!("{} ({}) CONNECT {status} in {:.3} ms", p.url, p.source, t.proxy_ms))
    });
    let retried = (!record.retried.is_empty()).then(|| {
        let each: Vec<String> =
            record.retried.iter().map(|a| format!("{}: {}", a.attempt, a.outcome.describe())).collect();
        ("retried", each.join("; "))
    });
    let mut out = String::new();
    for (key, value) in lines.into_iter().chain(attempts).chain(proxy).chain(retried) {
        let _ = writeln!(out, "{key}={}", value.replace(['\r', '\n'], " "));
    }
    out
}

/// The trace log in the shape of `curl --trace-ascii --trace-time`: info lines, then each direction's bytes
/// as offset-prefixed lines. Consecutive reads (or writes) form one block so redaction sees them whole.
pub fn trace(log: &WireLog, redactor: &Redactor) -> String {
    let mut entries: Vec<Entry> = Vec::new();
    for event in &log.events {
        match (event, entries.last_mut()) {
            (WireEvent::Data { direction, bytes, .. }, Some(Entry::Data { direction: d, bytes: buffer, .. }))
                if d == direction =>
            {
                buffer.extend_from_slice(bytes)
            }
            (WireEvent::Data { at, direction, bytes }, _) => {
                entries.push(Entry::Data { at: *at, direction: *direction, bytes: bytes.clone(), cut: false })
            }
            (WireEvent::Info { at, text }, _) => entries.push(Entry::Info { at: *at, text: text.clone() }),
        }
    }
    // The last block of a direction whose capture hit the limit ends where the capture was cut.
    for direction in [Direction::Sent, Direction::Received] {
        if log.total(direction) > CAPTURE_LIMIT as u64
            && let Some(Entry::Data { cut, .. }) =
                entries.iter_mut().rev().find(|e| matches!(e, Entry::Data { direction: d, .. } if *d == direction))
        {
            *cut = true;
        }
    }
    let mut out = String::new();
    for entry in &entries {
        match entry {
            Entry::Info { at, text } => {
                let _ = writeln!(out, "{} == Info: {}", clock(at), redactor.text(text));
            }
            Entry::Data { at, direction, bytes, cut } => {
                let shown = if *cut { redactor.cut_bytes(bytes) } else { redactor.bytes(bytes) };
                write_block(&mut out, *at, *direction, bytes.len(), &shown);
            }
        }
    }
    for direction in [Direction::Sent, Direction::Received] {
        let total = log.total(direction);
        if total > CAPTURE_LIMIT as u64 {
            let verb = if direction == Direction::Sent { "sent" } else { "received" };
            let _ = writeln!(out, "== Info: ... {} more bytes {verb} (not shown)", total - CAPTURE_LIMIT as u64);
        }
    }
    out
}

/// One line of the trace timeline: a note, or a run of bytes in one direction.
enum Entry {
    Info { at: DateTime<Utc>, text: String },
    Data { at: DateTime<Utc>, direction: Direction, bytes: Vec<u8>, cut: bool },
}

fn write_block(out: &mut String, at: DateTime<Utc>, direction: Direction, length: usize, shown: &[u8]) {
    let arrow = if direction == Direction::Sent { "=> Send data" } else { "<= Recv data" };
    let _ = writeln!(out, "{} {arrow}, {length} bytes (0x{length:x})", clock(&at));
    let mut offset = 0usize;
    for line in shown.split_inclusive(|&b| b == b'\n').flat_map(|line| line.chunks(TRACE_WIDTH)) {
        let text: String = line
            .iter()
            .filter(|&&b| b != b'\r' && b != b'\n')
            .map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' })
            .collect();
        let _ = writeln!(out, "{offset:04x}: {text}");
        offset += line.len();
    }
}

/// Bytes per trace line, as curl's `--trace-ascii` prints them (lines also end at each newline).
const TRACE_WIDTH: usize = 64;

fn clock(at: &DateTime<Utc>) -> String {
    at.format("%H:%M:%S%.6f").to_string()
}

/// Writes `contents` to `dir/name`; the error names the file.
pub async fn write(dir: &Path, name: &str, contents: impl Into<Vec<u8>>) -> Result<(), String> {
    let mut results = write_all(vec![(dir.join(name), contents.into())]).await;
    results.pop().unwrap_or(Ok(()))
}

/// Writes several files in one blocking-pool task (one thread hop per probe instead of one per file) and
/// returns each file's result in order; an error names the file.
pub async fn write_all(files: Vec<(PathBuf, Vec<u8>)>) -> Vec<Result<(), String>> {
    let count = files.len();
    let written = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .map(|(path, contents)| {
                std::fs::write(&path, contents).map_err(|e| format!("evidence not written: {}: {e}", path.display()))
            })
            .collect()
    })
    .await;
    written.unwrap_or_else(|e| vec![Err(format!("evidence not written: {e}")); count])
}

/// Creates folders (and their parents) in one blocking-pool task; the error names the folder.
pub async fn create_dirs(dirs: Vec<PathBuf>) -> Result<(), String> {
    let created = tokio::task::spawn_blocking(move || {
        dirs.iter().try_for_each(|dir| {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
        })
    })
    .await;
    created.unwrap_or_else(|e| Err(format!("cannot create the evidence folders: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::wire::{SharedWireLog, TeeIo};
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn trace_masks_a_header_split_across_writes_and_marks_directions() {
        let (client, _server) = tokio::io::duplex(4096);
        let log = SharedWireLog::default();
        let mut tee = TeeIo::new(client, log.clone());
        log.info("Connected to 127.0.0.1:443");
        tee.write_all(b"GET / HTTP/1.1\r\nAuthorization: Ba").await.unwrap();
        tee.write_all(b"sic b3BzOnB3\r\n\r\n").await.unwrap();
        let redactor = Redactor::new(Vec::new());

        let text = trace(&log.lock(), &redactor);

        assert!(text.contains("== Info: Connected to 127.0.0.1:443"), "{text}");
        assert!(text.contains("=> Send data, 49 bytes (0x31)"), "{text}");
        assert!(text.contains("0010: Authorization: Basic <MASKED>"), "{text}");
        assert!(!text.contains("b3BzOnB3"), "{text}");
        assert_eq!(request_http(&log.lock(), &redactor), b"GET / HTTP/1.1\r\nAuthorization: Basic <MASKED>\r\n\r\n");
    }

    #[tokio::test]
    async fn a_capture_cut_inside_a_secret_shows_no_part_of_it() {
        let (client, _server) = tokio::io::duplex(2 * CAPTURE_LIMIT);
        let log = SharedWireLog::default();
        let mut tee = TeeIo::new(client, log.clone());
        let mut body = vec![b'x'; CAPTURE_LIMIT - 4];
        body.extend_from_slice(b" FJjmq/d7EP and more");
        tee.write_all(&body).await.unwrap();
        let redactor = Redactor::new(["FJjmq/d7EP".to_owned()]);

        let request = request_http(&log.lock(), &redactor);
        let text = trace(&log.lock(), &redactor);

        assert!(
            request.ends_with(b"x <MASKED>\n... 16 more bytes sent (not shown)\n"),
            "{:?}",
            &request[request.len() - 60..]
        );
        assert!(!text.contains("FJj"), "{}", &text[text.len() - 300..]);
    }
}
