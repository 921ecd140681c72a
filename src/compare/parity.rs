//! `connrun parity`: the same probes against two servers in one run, stored side by side and compared.
//!
//! Migrating from the legacy server to the modernized one means proving they answer alike. A parity run
//! allocates one RUN_ID (label `<template label>Parity`), runs the template against each target through the
//! ordinary orchestrator ([`crate::run::execute`], so each side is a complete, sealed evidence tree under
//! `<RUN_ID>/<target>/`), then compares probe by probe: HTTP status, selected response headers, and the body
//! structurally when it is JSON (or a JWT, whose header and claims are compared), ignoring listed fields such
//! as timestamps and trace ids. Other bodies are compared by SHA-256. When the statuses differ the bodies are
//! not compared: the status difference is the finding. `parity.json`, `parity.md` and the outer manifest
//! seal the whole.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::evidence::ProbeRecord;
use crate::evidence::status::RunStatus;

/// Bodies larger than this are compared by SHA-256 only (a structural comparison needs the whole document).
const MAX_STRUCTURAL_BODY: u64 = 16 * 1024 * 1024;
/// At most this many body differences are listed per probe.
const MAX_LISTED: usize = 5;

/// What to compare.
#[derive(Debug, Clone, Serialize)]
pub struct ParitySettings {
    /// Response headers compared (lower-case names).
    pub headers: Vec<String>,
    /// JSON fields ignored: a key name (ignored at any depth) or a JSON pointer starting with `/`.
    pub ignore: Vec<String>,
}

/// One side of the parity run.
#[derive(Debug, Clone, Serialize)]
pub struct SideRef {
    /// Target name.
    pub target: String,
    /// Its base URL.
    pub base_url: String,
    /// Ready / probes.
    pub ready: String,
    /// Evidence folder of the side.
    pub evidence: String,
}

/// One probe compared.
#[derive(Debug, Clone, Serialize)]
pub struct ParityRow {
    /// Probe id.
    pub id: String,
    /// Endpoint name.
    pub name: String,
    /// HTTP code on the left (`-` when the probe is missing there).
    pub left_http: String,
    /// HTTP code on the right.
    pub right_http: String,
    /// `content-type: a ≠ b` lines.
    pub header_differences: Vec<String>,
    /// `一致`, `JSON: /a/b: 1 ≠ 2; ...`, `SHA-256 differs`, or why the body was not compared.
    pub body: String,
    /// Whether the body differs (false when equal or not compared).
    pub body_differs: bool,
    /// Status, headers and body all agree.
    pub equal: bool,
}

/// The parity comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ParityReport {
    /// The RUN_ID shared by both sides.
    pub run_id: String,
    /// Template name.
    pub template: String,
    /// First target.
    pub left: SideRef,
    /// Second target.
    pub right: SideRef,
    /// Headers compared.
    pub headers: Vec<String>,
    /// Fields ignored.
    pub ignored: Vec<String>,
    /// One row per probe (serverinfo first).
    pub rows: Vec<ParityRow>,
    /// Rows that are not equal.
    pub differences: usize,
}

/// A side's run, as read back for the comparison.
#[derive(Debug, Clone)]
pub struct Side<'a> {
    /// The side's sealed run folder.
    pub dir: &'a Path,
    /// Its status.
    pub status: &'a RunStatus,
    /// Its evidence folder as shown in reports.
    pub evidence: String,
}

fn side_ref(side: &Side<'_>) -> SideRef {
    let s = side.status;
    SideRef {
        target: s.target.clone(),
        base_url: s.base_url.clone(),
        ready: format!("{}/{}", s.probes.iter().filter(|p| p.ready).count(), s.probes.len()),
        evidence: side.evidence.clone(),
    }
}

/// Compares two sides of a parity run.
pub fn compare(left: &Side<'_>, right: &Side<'_>, settings: &ParitySettings) -> ParityReport {
    let all = |s: &RunStatus| s.serverinfo.iter().chain(&s.probes).cloned().collect::<Vec<ProbeRecord>>();
    let (lp, rp) = (all(left.status), all(right.status));
    let mut ids: Vec<(String, String)> = Vec::new();
    for p in lp.iter().chain(&rp) {
        if !ids.iter().any(|(id, _)| *id == p.id) {
            ids.push((p.id.clone(), p.name.clone()));
        }
    }
    let rows: Vec<ParityRow> = ids
        .into_iter()
        .map(|(id, name)| {
            let (l, r) = (lp.iter().find(|p| p.id == id), rp.iter().find(|p| p.id == id));
            compare_probe(id, name, l.map(|p| (left.dir, p)), r.map(|p| (right.dir, p)), settings)
        })
        .collect();
    ParityReport {
        run_id: left.status.run_id.clone(),
        template: left.status.template.clone(),
        left: side_ref(left),
        right: side_ref(right),
        headers: settings.headers.clone(),
        ignored: settings.ignore.clone(),
        differences: rows.iter().filter(|r| !r.equal).count(),
        rows,
    }
}

fn header_value(p: &ProbeRecord, name: &str) -> String {
    let values: Vec<&str> =
        p.response_headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
    if values.is_empty() { "(none)".to_owned() } else { values.join(", ") }
}

fn compare_probe(
    id: String,
    name: String,
    left: Option<(&Path, &ProbeRecord)>,
    right: Option<(&Path, &ProbeRecord)>,
    settings: &ParitySettings,
) -> ParityRow {
    let http = |p: Option<(&Path, &ProbeRecord)>| p.map_or_else(|| "-".to_owned(), |(_, p)| p.http_code());
    let (left_http, right_http) = (http(left), http(right));
    let mut row = ParityRow {
        id,
        name,
        left_http,
        right_http,
        header_differences: Vec::new(),
        body: String::new(),
        body_differs: false,
        equal: false,
    };
    let (Some((ldir, l)), Some((rdir, r))) = (left, right) else {
        row.body = "片側のみに存在".to_owned();
        return row;
    };
    for header in &settings.headers {
        let (a, b) = (header_value(l, header), header_value(r, header));
        if a != b {
            row.header_differences.push(format!("{header}: {a} ≠ {b}"));
        }
    }
    if row.left_http != row.right_http {
        row.body = "未比較（ステータスが異なる）".to_owned();
        return row;
    }
    let differences = compare_bodies(ldir, l, rdir, r, settings);
    row.body_differs = !differences.is_empty();
    row.body = if differences.is_empty() { "一致".to_owned() } else { differences.join("; ") };
    row.equal = row.header_differences.is_empty() && !row.body_differs;
    row
}

/// A body as read for comparison.
enum Body {
    /// JSON (or a JWT decoded into `{"header": ..., "claims": ...}`).
    Structured(Value),
    /// Anything else: compared by hash.
    Opaque(Option<String>),
}

fn read_body(dir: &Path, p: &ProbeRecord) -> Body {
    let opaque = Body::Opaque(p.response_body_sha256.clone());
    let Some(file) = &p.response_body_file else { return opaque };
    if p.response_body_bytes > MAX_STRUCTURAL_BODY {
        return opaque;
    }
    let path = dir.join(file);
    let Ok(handle) = std::fs::File::open(&path) else { return opaque };
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(handle))
    } else {
        Box::new(handle)
    };
    let mut bytes = Vec::new();
    if reader.by_ref().take(MAX_STRUCTURAL_BODY).read_to_end(&mut bytes).is_err() {
        return opaque;
    }
    if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
        return Body::Structured(value);
    }
    decode_jwt(&bytes).map_or(opaque, Body::Structured)
}

/// `header.claims.signature` (signature possibly masked) → `{"header": {...}, "claims": {...}}`.
fn decode_jwt(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let mut parts = text.split('.');
    let (header, claims) = (parts.next()?, parts.next()?);
    parts.next()?;
    let decode = |part: &str| -> Option<Value> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&raw).ok()
    };
    Some(serde_json::json!({ "header": decode(header)?, "claims": decode(claims)? }))
}

fn compare_bodies(
    ldir: &Path,
    l: &ProbeRecord,
    rdir: &Path,
    r: &ProbeRecord,
    settings: &ParitySettings,
) -> Vec<String> {
    match (read_body(ldir, l), read_body(rdir, r)) {
        (Body::Structured(a), Body::Structured(b)) => {
            let mut out = Vec::new();
            json_differences(&a, &b, "", &settings.ignore, &mut out);
            let total = out.len();
            out.truncate(MAX_LISTED);
            if total > MAX_LISTED {
                out.push(format!("… {} more", total - MAX_LISTED));
            }
            out.into_iter().map(|d| format!("JSON {d}")).collect()
        }
        (Body::Opaque(a), Body::Opaque(b)) if a == b => Vec::new(),
        (Body::Opaque(_), Body::Opaque(_)) => vec!["SHA-256 differs".to_owned()],
        _ => vec!["one body is JSON, the other is not".to_owned()],
    }
}

fn ignored(pointer: &str, key: Option<&str>, ignore: &[String]) -> bool {
    ignore.iter().any(|i| if i.starts_with('/') { i == pointer } else { key == Some(i.as_str()) })
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 { text.chars().take(40).collect::<String>() + "…" } else { text }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Lists structural differences between two JSON values as `pointer: what`, skipping ignored fields.
pub fn json_differences(a: &Value, b: &Value, pointer: &str, ignore: &[String], out: &mut Vec<String>) {
    let at = if pointer.is_empty() { "/" } else { pointer };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                if ignored(&child, Some(key), ignore) {
                    continue;
                }
                match (x.get(key), y.get(key)) {
                    (Some(va), Some(vb)) => json_differences(va, vb, &child, ignore, out),
                    (Some(_), None) => out.push(format!("{child}: only on the left")),
                    (None, Some(_)) => out.push(format!("{child}: only on the right")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                out.push(format!("{at}: {} items ≠ {} items", x.len(), y.len()));
            }
            for (index, (va, vb)) in x.iter().zip(y).enumerate() {
                let child = format!("{pointer}/{index}");
                if !ignored(&child, None, ignore) {
                    json_differences(va, vb, &child, ignore, out);
                }
            }
        }
        (x, y) if kind(x) != kind(y) => out.push(format!("{at}: {} ≠ {}", kind(x), kind(y))),
        (x, y) if x != y => out.push(format!("{at}: {} ≠ {}", short(x), short(y))),
        _ => {}
    }
}

/// Where the two sides of a parity run live inside its folder.
pub fn side_dir(parity_dir: &Path, target: &str) -> PathBuf {
    parity_dir.join(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_compared_by_structure_with_ignored_keys_and_pointers() {
        let a = json!({ "id": 1, "generatedAt": "t1", "meta": { "traceId": "x", "n": [1, 2] }, "only_a": true });
        let b = json!({ "id": 1, "generatedAt": "t2", "meta": { "traceId": "y", "n": [1, 3, 4] } });
        let mut out = Vec::new();
        json_differences(&a, &b, "", &["generatedAt".to_owned(), "/meta/traceId".to_owned()], &mut out);
        assert_eq!(out, vec!["/meta/n: 2 items ≠ 3 items", "/meta/n/1: 2 ≠ 3", "/only_a: only on the left"]);
    }

    #[test]
    fn a_type_change_is_reported_once() {
        let mut out = Vec::new();
        json_differences(&json!({ "a": "1" }), &json!({ "a": 1 }), "", &[], &mut out);
        assert_eq!(out, vec!["/a: string ≠ number"]);
    }

    #[test]
    fn a_jwt_with_a_masked_signature_decodes_to_header_and_claims() {
        let token = b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.<MASKED>";
        assert_eq!(decode_jwt(token), Some(json!({ "header": { "alg": "RS256" }, "claims": { "iss": "x" } })));
        assert_eq!(decode_jwt(b"server"), None);
    }
}
