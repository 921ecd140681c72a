//! The formulas that seal an audit row: hash version 1 (rows written before every column was sealed) and
//! version 2 (every stored column, canonically encoded), PHR_API.md §5.
//!
//! Version 1 covered the payload, the previous hash, the time and the actor only, so `action`, `outcome`,
//! `resource` and the other columns could be rewritten without breaking the chain. Version 2 feeds every
//! stored column except `event_hash` itself into SHA-256 as a sequence of length-prefixed fields in a fixed
//! order, with NULL distinct from the empty string, so no two different rows share an encoding. The writer
//! builds a [`StoredRow`] and seals it; the verifier reads the same struct back and recomputes, so the two
//! cannot disagree on which value a column holds. ARCHITECTURE.md ("Audit hash chain") states the formula.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

/// The hash version the writer uses for every new row.
pub const CURRENT_VERSION: i32 = 2;

/// The first field of every version-2 encoding: what is being sealed.
const V2_DOMAIN: &str = "d_audit_event";

/// The fields of a version-2 encoding, in order (after the domain tag), named as the columns they come from.
pub const V2_FIELDS: [&str; 19] = [
    "hash_version",
    "id",
    "chain_id",
    "previous_hash",
    "event_time",
    "actor_id",
    "actor_display_name",
    "actor_role",
    "action",
    "outcome",
    "resource",
    "patient_id",
    "request_id",
    "trace_id",
    "ip_address",
    "user_agent",
    "run_id",
    "payload",
    "payload_hash",
];

/// The columns [`StoredRow`] reads, in `SELECT` order.
pub const COLUMNS: &str = "id, chain_id, hash_version, event_time, actor_id, actor_display_name, actor_role, \
     action, outcome, resource, patient_id, request_id, trace_id, ip_address, user_agent, run_id, payload, \
     payload_hash, previous_hash, event_hash";

/// Every stored column of one `d_audit_event` row, exactly as stored (the writer inserts these values and
/// the verifier reads them back).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct StoredRow {
    /// Sealed in version 2, so a row cannot be moved to another position of the table unnoticed.
    pub id: i64,
    /// The chain the row belongs to; each chain is linked in id order.
    pub chain_id: String,
    /// Which formula `event_hash` follows (1 or 2).
    pub hash_version: i32,
    /// Millisecond precision, so it re-hashes identically on both backends.
    pub event_time: DateTime<Utc>,
    /// `facilityId:userId` of the caller (claimed, for failed authentication).
    pub actor_id: Option<String>,
    /// The account's display name, when authenticated.
    pub actor_display_name: Option<String>,
    /// The account's role, when authenticated.
    pub actor_role: Option<String>,
    /// The audit action, e.g. `PHR_ALLERGY_TEXT`.
    pub action: String,
    /// `success` or `failed`.
    pub outcome: String,
    /// The request path, access keys masked.
    pub resource: Option<String>,
    /// The patient the call concerned.
    pub patient_id: Option<String>,
    /// `X-Request-Id`.
    pub request_id: Option<String>,
    /// `X-Trace-Id`, how the harness joins evidence and rows.
    pub trace_id: Option<String>,
    /// The client IP (socket, or the first `X-Forwarded-For` entry from a trusted proxy).
    pub ip_address: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `X-Run-Id`.
    pub run_id: Option<String>,
    /// The details JSON.
    pub payload: Option<String>,
    /// `sha256hex(payload)` (empty payload when NULL).
    pub payload_hash: String,
    /// The `event_hash` of the chain's previous row; empty for a chain's first row.
    pub previous_hash: Option<String>,
    /// The seal: [`v1`] or [`v2`] of the other columns.
    pub event_hash: String,
}

impl StoredRow {
    /// The `event_hash` the row's columns call for under its own `hash_version`; `None` for an unknown version.
    pub fn expected_event_hash(&self) -> Option<String> {
        match self.hash_version {
            1 => Some(v1(
                self.previous_hash.as_deref().unwrap_or(""),
                &self.payload_hash,
                self.event_time,
                self.actor_id.as_deref(),
            )),
            2 => Some(v2(self)),
            _ => None,
        }
    }
}

/// Version 1: `sha256hex(previous_hash || payload_hash || epoch_millis(event_time) || actor_id)`.
pub fn v1(previous_hash: &str, payload_hash: &str, event_time: DateTime<Utc>, actor_id: Option<&str>) -> String {
    let material = format!("{previous_hash}{payload_hash}{}{}", event_time.timestamp_millis(), actor_id.unwrap_or(""));
    sha256_hex(material.as_bytes())
}

/// Version 2: `sha256hex(enc("d_audit_event") || enc(field) for each of` [`V2_FIELDS`] `)`.
pub fn v2(row: &StoredRow) -> String {
    sha256_hex(&v2_material(row))
}

/// The bytes version 2 hashes: `enc(NULL) = 0x00`, `enc(text) = 0x01 || u64be(byte length) || UTF-8 bytes`;
/// integers (`hash_version`, `id`, `event_time` as epoch milliseconds) as their decimal text.
pub fn v2_material(row: &StoredRow) -> Vec<u8> {
    let version = row.hash_version.to_string();
    let id = row.id.to_string();
    let millis = row.event_time.timestamp_millis().to_string();
    let fields: [Option<&str>; 20] = [
        Some(V2_DOMAIN),
        Some(&version),
        Some(&id),
        Some(&row.chain_id),
        row.previous_hash.as_deref(),
        Some(&millis),
        row.actor_id.as_deref(),
        row.actor_display_name.as_deref(),
        row.actor_role.as_deref(),
        Some(&row.action),
        Some(&row.outcome),
        row.resource.as_deref(),
        row.patient_id.as_deref(),
        row.request_id.as_deref(),
        row.trace_id.as_deref(),
        row.ip_address.as_deref(),
        row.user_agent.as_deref(),
        row.run_id.as_deref(),
        row.payload.as_deref(),
        Some(&row.payload_hash),
    ];
    let mut material = Vec::with_capacity(fields.iter().map(|f| 9 + f.map_or(0, str::len)).sum());
    for field in fields {
        match field {
            None => material.push(0x00),
            Some(text) => {
                material.push(0x01);
                material.extend_from_slice(&(text.len() as u64).to_be_bytes());
                material.extend_from_slice(text.as_bytes());
            }
        }
    }
    material
}

/// Makes a value fit its column: control characters (PostgreSQL refuses NUL in text; a path parameter can
/// carry one) are written as `\u{..}` escapes, then the value is cut to the column's width on a character
/// boundary, so hostile input never fails the insert (which would fail the call closed). The writer stores
/// values through it, and the row check compares the payload's copies of columns through it.
pub fn column_text(value: &str, max_chars: usize) -> Cow<'_, str> {
    let value = if value.chars().any(char::is_control) {
        let mut escaped = String::with_capacity(value.len() + 8);
        for c in value.chars() {
            if c.is_control() {
                escaped.extend(c.escape_unicode());
            } else {
                escaped.push(c);
            }
        }
        Cow::Owned(escaped)
    } else {
        Cow::Borrowed(value)
    };
    match value.char_indices().nth(max_chars) {
        Some((byte_index, _)) => match value {
            Cow::Borrowed(v) => Cow::Borrowed(&v[..byte_index]),
            Cow::Owned(v) => Cow::Owned(v[..byte_index].to_owned()),
        },
        None => value,
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> StoredRow {
        StoredRow {
            id: 7,
            chain_id: "main".into(),
            hash_version: 2,
            event_time: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            actor_id: Some("F001:ops".into()),
            actor_display_name: None,
            actor_role: Some("user".into()),
            action: "PHR_ALLERGY_TEXT".into(),
            outcome: "success".into(),
            resource: Some("/p".into()),
            patient_id: Some("P0001".into()),
            request_id: None,
            trace_id: Some("t".into()),
            ip_address: Some("127.0.0.1".into()),
            user_agent: None,
            run_id: None,
            payload: Some("{}".into()),
            payload_hash: sha256_hex(b"{}"),
            previous_hash: Some(String::new()),
            event_hash: String::new(),
        }
    }

    #[test]
    fn column_text_respects_character_boundaries_and_escapes_control_characters() {
        assert_eq!(column_text("ありがとう", 2), "あり");
        assert_eq!(column_text("abc", 10), "abc");
        assert_eq!(column_text("P\0x\n", 20), "P\\u{0}x\\u{a}");
    }

    #[test]
    fn v1_is_the_spec_formula() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        assert_eq!(v1("prev", "payload", at, Some("F001:ops")), sha256_hex(b"prevpayload1700000000123F001:ops"));
        assert_eq!(v1("", "p", at, None), sha256_hex(b"p1700000000123"));
    }

    #[test]
    fn v2_material_is_length_prefixed_fields_in_the_documented_order() {
        let material = v2_material(&sample());
        let mut expected = Vec::new();
        let text = |out: &mut Vec<u8>, s: &str| {
            out.push(1);
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        for s in ["d_audit_event", "2", "7", "main", "", "1700000000123", "F001:ops"] {
            text(&mut expected, s);
        }
        expected.push(0); // actor_display_name NULL
        assert_eq!(&material[..expected.len()], &expected[..]);
        assert_eq!(v2(&sample()), sha256_hex(&material));
        assert_eq!(V2_FIELDS.len() + 1, 20, "the domain tag plus one field per sealed column");
    }

    #[test]
    fn v2_changes_with_every_column_and_tells_null_from_empty_and_field_boundaries() {
        let base = v2(&sample());
        let variants: Vec<fn(&mut StoredRow)> = vec![
            |r| r.id = 8,
            |r| r.chain_id = "F001".into(),
            |r| r.previous_hash = None,
            |r| r.event_time += chrono::Duration::milliseconds(1),
            |r| r.actor_id = Some("F001:op".into()),
            |r| r.actor_display_name = Some(String::new()),
            |r| r.actor_role = None,
            |r| r.action = "PHR_IMAGE_STREAM".into(),
            |r| r.outcome = "failed".into(),
            |r| r.resource = Some("/q".into()),
            |r| r.patient_id = Some("P0002".into()),
            |r| r.request_id = Some(String::new()),
            |r| r.trace_id = Some("u".into()),
            |r| r.ip_address = Some("127.0.0.2".into()),
            |r| r.user_agent = Some("x".into()),
            |r| r.run_id = Some("r".into()),
            |r| r.payload = Some("{ }".into()),
            |r| r.payload_hash = sha256_hex(b"x"),
            // Moving bytes across a field boundary must not collide.
            |r| {
                r.actor_id = Some("F001:opsu".into());
                r.actor_role = Some("ser".into());
            },
        ];
        for (index, change) in variants.into_iter().enumerate() {
            let mut row = sample();
            change(&mut row);
            assert_ne!(v2(&row), base, "variant {index} must change the hash");
        }
        let mut ignored = sample();
        ignored.event_hash = "anything".into();
        assert_eq!(v2(&ignored), base, "event_hash is the output, not an input");
    }
}
