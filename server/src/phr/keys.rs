//! Phase A: PHR keys. PHR-02 `PUT /accessKey` registers a patient's access/secret key pair, PHR-03
//! `GET /accessKey/{accessKey}` and PHR-10 `GET /patient/{patientId}` read it back.
//!
//! Everything is scoped to the caller's facility: a registration's facility is forced to the caller's and a
//! key of another facility is answered exactly like a missing one. Audit rows carry the patient and only the
//! last four characters of the access key (`accessKeySuffix`, and in `resource` via [`super::mask::mask_access_key`]),
//! never the key itself.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;

use super::mask::access_key_suffix;
use super::pipeline;
use super::reply::Reply;
use super::request::{AuthMode, RequestMeta, read_json};
use crate::audit::Action;
use crate::clinical::{self, NewPhrKey, PhrKeyInput};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Longest access key, secret key and patient id a registration accepts (the column widths).
const MAX_KEY_CHARS: usize = 128;
const MAX_PATIENT_ID_CHARS: usize = 64;

/// PHR-02: registers or replaces the patient's key; answers `[id]`.
pub async fn upsert(State(app): State<AppState>, meta: RequestMeta, body: Body) -> Response {
    pipeline::handle(&app, meta, Action::AccessKeyUpsert, AuthMode::Basic, async |caller| {
        let input: PhrKeyInput = read_json(body).await?;
        let patient_id = required(input.patient_id.as_deref(), "patientId", MAX_PATIENT_ID_CHARS)?;
        let access_key = required(input.access_key.as_deref(), "accessKey", MAX_KEY_CHARS)
            .map_err(|e| ApiError::from(e).with_patient(patient_id))?;
        let secret_key = required(input.secret_key.as_deref(), "secretKey", MAX_KEY_CHARS)
            .map_err(|e| with_key_details(ApiError::from(e).with_patient(patient_id), access_key))?;
        let key = NewPhrKey {
            facility_id: &caller.facility_id,
            patient_id,
            access_key,
            secret_key,
            registered: app.config.clock.now(),
        };
        let (id, tx) = pipeline::change(&app, &caller.facility_id, async |tx| {
            clinical::upsert_key(tx, &key)
                .await
                .map_err(|e| with_key_details(ApiError::from(e).with_patient(patient_id), access_key))
        })
        .await?;
        let reply = Reply::json(&[id])?.patient(patient_id).in_transaction(tx);
        Ok(with_suffix(reply, access_key))
    })
    .await
}

/// PHR-03: the key with this access key, in the caller's facility.
pub async fn fetch(State(app): State<AppState>, meta: RequestMeta, Path(access_key): Path<String>) -> Response {
    pipeline::handle(&app, meta, Action::AccessKeyFetch, AuthMode::Basic, async |caller| {
        let key = clinical::key_by_access_key(&app.db, &caller.facility_id, &access_key)
            .await
            .map_err(|e| with_key_details(ApiError::from(e), &access_key))?;
        let reply = Reply::json(&key)?.patient(key.patient_id.clone());
        Ok(with_suffix(reply, &access_key))
    })
    .await
}

/// PHR-10: the patient's key; 404 `patientNotFound` for an unknown patient, `accessKeyNotFound` without a key.
pub async fn fetch_by_patient(
    State(app): State<AppState>,
    meta: RequestMeta,
    Path(patient_id): Path<String>,
) -> Response {
    pipeline::handle(&app, meta, Action::AccessKeyFetchByPatient, AuthMode::Basic, async |caller| {
        let key = clinical::key_by_patient(&app.db, &caller.facility_id, &patient_id)
            .await
            .map_err(|e| ApiError::from(e).with_patient(patient_id.as_str()))?;
        let reply = Reply::json(&key)?.patient(patient_id);
        Ok(with_suffix(reply, &key.access_key))
    })
    .await
}

/// A non-empty, trimmed JSON field of at most `max_chars` characters without control characters; the error
/// names the field (and becomes a 400 `invalidPayload`).
fn required<'a>(value: Option<&'a str>, field: &str, max_chars: usize) -> Result<&'a str, InvalidField> {
    match value.map(str::trim) {
        Some(v) if v.chars().any(char::is_control) => Err(InvalidField(format!("{field} contains control characters"))),
        Some(v) if !v.is_empty() && v.chars().count() <= max_chars => Ok(v),
        Some(v) if !v.is_empty() => Err(InvalidField(format!("{field} is longer than {max_chars} characters"))),
        _ => Err(InvalidField(format!("{field} is required"))),
    }
}

/// A PHR-02 body field that is missing or unusable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InvalidField(String);

impl From<InvalidField> for ApiError {
    fn from(error: InvalidField) -> Self {
        ApiError::new(ErrorCode::InvalidPayload, error.0)
    }
}

fn with_suffix(reply: Reply, access_key: &str) -> Reply {
    match access_key_suffix(access_key) {
        Some(suffix) => reply.detail("accessKeySuffix", suffix),
        None => reply,
    }
}

fn with_key_details(error: ApiError, access_key: &str) -> ApiError {
    match access_key_suffix(access_key) {
        Some(suffix) => error.with_detail("accessKeySuffix", suffix),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phr::mask::mask_access_key;

    #[test]
    fn suffix_is_the_last_four_characters_only() {
        assert_eq!(access_key_suffix("AK-0123456789abcd").as_deref(), Some("abcd"));
        assert_eq!(access_key_suffix("鍵鍵鍵鍵鍵鍵一二三四").as_deref(), Some("一二三四"));
        assert_eq!(access_key_suffix("short"), None, "a short key would be mostly revealed");
    }

    #[test]
    fn access_keys_in_paths_are_masked_to_their_suffix() {
        let base = "/openDolphin/resources/20/adm/phr";
        assert_eq!(
            mask_access_key(&format!("{base}/accessKey/AK-0123456789abcd")),
            format!("{base}/accessKey/****abcd")
        );
        assert_eq!(
            mask_access_key(&format!("{base}/accesskey/AK-01234567%2Fx/extra")),
            format!("{base}/accesskey/****xtra")
        );
        assert_eq!(mask_access_key(&format!("{base}/accessKey/short")), format!("{base}/accessKey/****"));
        assert_eq!(mask_access_key(&format!("{base}/accessKey")), format!("{base}/accessKey"));
        assert_eq!(mask_access_key(&format!("{base}/allergy/P0001")), format!("{base}/allergy/P0001"));
    }

    #[test]
    fn required_fields_are_named_in_the_error() {
        let missing = ApiError::from(required(None, "accessKey", 10).unwrap_err());
        assert_eq!(missing.code, ErrorCode::InvalidPayload);
        assert!(missing.message.contains("accessKey"));
        assert!(required(Some("   "), "secretKey", 10).unwrap_err().0.contains("secretKey"));
        assert!(required(Some("12345678901"), "patientId", 10).unwrap_err().0.contains("longer"));
        assert!(required(Some("P\u{0}1"), "patientId", 10).unwrap_err().0.contains("control"));
        assert_eq!(required(Some(" P0001 "), "patientId", 10).unwrap(), "P0001");
    }
}
