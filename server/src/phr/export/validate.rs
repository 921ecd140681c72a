//! Phase F's request body checked field by field before a job exists: patient ids, dates, `rpRequest`,
//! `format`, with the `invalidPayload` message naming the field. Split from `phr/export.rs`, which holds the
//! handlers.

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value;

use crate::export::job::ExportSpec;

/// Longest patient id accepted (the column width).
const MAX_PATIENT_ID_CHARS: usize = 64;

/// `PhrExportRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PhrExportRequest {
    patient_ids: Option<Vec<String>>,
    document_since: Option<String>,
    lab_since: Option<String>,
    /// An integer, or a string holding one (the legacy clients send either).
    rp_request: Option<Value>,
    reply_to: Option<String>,
    format: Option<String>,
}

/// The `invalidPayload` message for an `rpRequest` that is not an integer.
const RP_REQUEST_NOT_INTEGER: &str = "rpRequest must be an integer";

/// Checks the request's fields and turns them into the stored [`ExportSpec`]; the error is the
/// `invalidPayload` message naming the field.
pub(super) fn validate(request: &PhrExportRequest, max_patients: usize) -> Result<ExportSpec, String> {
    let ids = request.patient_ids.as_deref().unwrap_or_default();
    if ids.is_empty() {
        return Err("patientIds is required and must not be empty".to_owned());
    }
    if ids.len() > max_patients {
        return Err(format!("patientIds has {} entries; at most {max_patients} are allowed", ids.len()));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut patient_ids = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let id = id.trim();
        if id.is_empty() || id.chars().count() > MAX_PATIENT_ID_CHARS || id.chars().any(char::is_control) {
            return Err(format!(
                "patientIds[{index}] must be 1..{MAX_PATIENT_ID_CHARS} characters without control characters"
            ));
        }
        if seen.insert(id.to_owned()) {
            patient_ids.push(id.to_owned());
        }
    }
    let day = |field: &str, value: &Option<String>| -> Result<Option<String>, String> {
        match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(|d| Some(d.format("%Y-%m-%d").to_string()))
                .map_err(|_| format!("{field} must be yyyy-MM-dd, got {v:?}")),
        }
    };
    let rp_request = match &request.rp_request {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(|| RP_REQUEST_NOT_INTEGER.to_owned())?),
        Some(Value::String(s)) => Some(s.trim().parse().map_err(|_| RP_REQUEST_NOT_INTEGER.to_owned())?),
        Some(_) => return Err(RP_REQUEST_NOT_INTEGER.to_owned()),
    };
    let reply_to = request.reply_to.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
    if rp_request.is_some() != reply_to.is_some() {
        return Err("rpRequest and replyTo must be given together".to_owned());
    }
    if let Some(format) = request.format.as_deref().map(str::trim).filter(|f| !f.is_empty())
        && !format.eq_ignore_ascii_case("zip")
    {
        return Err(format!("format {format:?} is not supported (only \"zip\")"));
    }
    Ok(ExportSpec {
        patient_ids,
        document_since: day("documentSince", &request.document_since)?,
        lab_since: day("labSince", &request.lab_since)?,
        rp_request,
        reply_to,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(json: Value) -> PhrExportRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn empty_or_missing_patient_ids_are_invalid_payload() {
        for body in [json!({}), json!({"patientIds": []})] {
            assert!(validate(&request(body), 10).unwrap_err().contains("patientIds"));
        }
    }

    #[test]
    fn ids_are_deduplicated_in_order_and_dates_checked() {
        let spec =
            validate(&request(json!({"patientIds": ["P2", "P1", "P2"], "documentSince": "2025-01-02"})), 10).unwrap();
        assert_eq!(spec.patient_ids, ["P2", "P1"]);
        assert_eq!(spec.document_since.as_deref(), Some("2025-01-02"));
        let bad = validate(&request(json!({"patientIds": ["P1"], "labSince": "2025/01/02"})), 10).unwrap_err();
        assert!(bad.contains("labSince"));
        assert!(validate(&request(json!({"patientIds": ["P1", "P2"]})), 1).is_err());
        assert!(validate(&request(json!({"patientIds": ["P1"], "rpRequest": 1})), 1).is_err());
    }
}
