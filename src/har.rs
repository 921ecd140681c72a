//! `har/run.har`: every probe as an HTTP Archive 1.2 entry, so a run opens in a browser's dev tools.
//!
//! Built from the `ProbeRecord`s only (already redacted). HAR has no place for a failed connection, so a
//! probe without a response gets status 0 and its outcome in the custom `_error` field, as browsers do.

use serde_json::{Value, json};

use crate::probe::ProbeRecord;

/// A HAR timing that did not happen is -1.
fn phase_ms(ms: f64) -> f64 {
    if ms > 0.0 { ms } else { -1.0 }
}

fn headers(pairs: &[(String, String)]) -> Vec<Value> {
    pairs.iter().map(|(name, value)| json!({ "name": name, "value": value })).collect()
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn query_string(url: &str) -> Vec<Value> {
    let Some((_, query)) = url.split_once('?') else { return Vec::new() };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            json!({ "name": name, "value": value })
        })
        .collect()
}

/// One HAR entry for one probe.
pub fn entry(probe: &ProbeRecord) -> Value {
    let t = &probe.timings;
    // HAR's `connect` includes `ssl`; `wait` is time to first byte; `receive` the rest of the body.
    let connect = if t.connect_ms > 0.0 { t.connect_ms + t.tls_ms.max(0.0) } else { -1.0 };
    let accounted = t.dns_ms.max(0.0) + t.connect_ms.max(0.0) + t.tls_ms.max(0.0) + t.ttfb_ms.max(0.0);
    let receive = (t.total_ms - accounted).max(0.0);
    let mut entry = json!({
        "startedDateTime": probe.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "time": t.total_ms.max(0.0),
        "request": {
            "method": probe.method,
            "url": probe.url,
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": headers(&probe.request_headers),
            "queryString": query_string(&probe.url),
            "headersSize": -1,
            "bodySize": probe.request_body_bytes,
        },
        "response": {
            "status": probe.http_status.unwrap_or(0),
            "statusText": "",
            "httpVersion": if probe.http_status.is_some() { "HTTP/1.1" } else { "" },
            "cookies": [],
            "headers": headers(&probe.response_headers),
            "content": {
                "size": probe.response_body_bytes,
                "mimeType": header(&probe.response_headers, "content-type").unwrap_or("x-unknown"),
            },
            "redirectURL": header(&probe.response_headers, "location").unwrap_or(""),
            "headersSize": -1,
            "bodySize": if probe.http_status.is_some() { probe.response_body_bytes as i64 } else { -1 },
        },
        "cache": {},
        "timings": {
            "blocked": -1,
            "dns": phase_ms(t.dns_ms),
            "connect": connect,
            "ssl": phase_ms(t.tls_ms),
            "send": 0,
            "wait": t.ttfb_ms.max(0.0),
            "receive": receive,
        },
        "comment": format!("{} {} (phase {})", probe.id, probe.name, probe.phase),
        "_ready": probe.ready,
        "_outcome": probe.outcome.kind(),
    });
    let error = probe.outcome.describe();
    if !error.is_empty()
        && let Some(object) = entry.as_object_mut()
    {
        object.insert("_error".to_owned(), Value::String(error));
    }
    entry
}

/// The whole HAR document for a run (server-info probe first, then probes in order).
pub fn document<'a>(run_id: &str, probes: impl IntoIterator<Item = &'a ProbeRecord>) -> Value {
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "connrun", "version": crate::plan::TOOL_VERSION },
            "comment": format!("RUN_ID={run_id}"),
            "pages": [],
            "entries": probes.into_iter().map(entry).collect::<Vec<_>>(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_status;

    #[test]
    fn connect_includes_ssl_and_missing_phases_are_minus_one() {
        let mut probe = sample_status().probes.remove(0);
        probe.timings =
            crate::probe::Timings { dns_ms: 0.0, connect_ms: 1.0, tls_ms: 4.0, ttfb_ms: 2.0, total_ms: 10.0 };

        let entry = entry(&probe);

        assert_eq!(entry["timings"]["dns"], -1.0);
        assert_eq!(entry["timings"]["connect"], 5.0);
        assert_eq!(entry["timings"]["ssl"], 4.0);
        assert_eq!(entry["timings"]["receive"], 3.0);
        assert_eq!(entry["response"]["status"], 200);
    }

    #[test]
    fn a_probe_without_response_has_status_0_and_its_error() {
        let probe = sample_status().probes.remove(1);

        let entry = entry(&probe);

        assert_eq!(entry["response"]["status"], 0);
        assert_eq!(entry["_error"], "TLS failure: unknown CA");
        assert_eq!(document("R", [&probe])["log"]["version"], "1.2");
    }
}
