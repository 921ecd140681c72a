//! Phase E: PHR-11 `GET /{facilityId},{patientId}[,{docSince}[,{labSince}[,{rpRequest},{replyTo}]]]`, the
//! container of the patient's newest documents and laboratory reports.
//!
//! The whole request is one comma-separated path segment, so its grammar is checked here before anything is
//! read: at least facility and patient, dates as `yyyy-MM-dd` (an empty date part means "no filter"), the
//! prescription pair only as parts five and six of exactly six, `rpRequest` an integer. The facility named in
//! the path must be the caller's (403 otherwise), on top of the `X-Facility-Id` rule every call obeys.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::NaiveDate;

use super::pipeline;
use super::reply::Reply;
use super::request::{AuthMode, RequestMeta};
use crate::audit::Action;
use crate::clinical::{self, ContainerQuery, PrescriptionReply};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Longest `replyTo` accepted; it is echoed into every returned document.
const MAX_REPLY_TO_CHARS: usize = 256;

/// PHR-11.
pub async fn fetch(State(app): State<AppState>, meta: RequestMeta, Path(csv): Path<String>) -> Response {
    pipeline::handle(&app, meta, Action::ContainerFetch, AuthMode::Basic, async |caller| {
        let request = ContainerRequest::parse(&csv)?;
        caller.require_facility(&request.facility_id).map_err(|e| e.with_patient(request.patient_id.as_str()))?;
        let container = clinical::container(&app.db, &caller.facility_id, &request.patient_id, &request.query)
            .await
            .map_err(|e| ApiError::from(e).with_patient(request.patient_id.as_str()))?;
        Ok(Reply::json(&container)?
            .patient(request.patient_id)
            .detail("documents", container.doc_list.len())
            .detail("labModules", container.lab_list.len()))
    })
    .await
}

/// A parsed PHR-11 path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRequest {
    /// As written in the path; compared with the caller's facility case-insensitively.
    pub facility_id: String,
    pub patient_id: String,
    pub query: ContainerQuery,
}

impl ContainerRequest {
    /// Parses `facilityId,patientId[,docSince[,labSince[,rpRequest,replyTo]]]`; any violation names the part
    /// (and becomes a 400 `invalidParameter`).
    pub fn parse(csv: &str) -> Result<Self, InvalidPath> {
        let parts: Vec<&str> = csv.split(',').map(str::trim).collect();
        if parts.len() < 2 || parts.len() > 6 {
            return Err(invalid(format!(
                "expected facilityId,patientId[,docSince[,labSince[,rpRequest,replyTo]]] but got {} parts",
                parts.len()
            )));
        }
        if parts.len() == 5 {
            return Err(invalid("rpRequest and replyTo must be given together (exactly 6 parts)".to_owned()));
        }
        let facility_id = non_empty(parts[0], "facilityId")?;
        let patient_id = non_empty(parts[1], "patientId")?;
        let doc_since = parts.get(2).map(|p| optional_day(p, "docSince")).transpose()?.flatten();
        let lab_since = parts.get(3).map(|p| optional_day(p, "labSince")).transpose()?.flatten();
        let prescription = if parts.len() == 6 {
            let rp_request = parts[4]
                .parse::<i64>()
                .map_err(|_| invalid(format!("rpRequest must be an integer, got {:?}", parts[4])))?;
            let reply_to = parts[5];
            if reply_to.chars().count() > MAX_REPLY_TO_CHARS {
                return Err(invalid(format!("replyTo is longer than {MAX_REPLY_TO_CHARS} characters")));
            }
            Some(PrescriptionReply { rp_request, reply_to: reply_to.to_owned() })
        } else {
            None
        };
        Ok(Self {
            facility_id: facility_id.to_owned(),
            patient_id: patient_id.to_owned(),
            query: ContainerQuery { doc_since, lab_since, prescription },
        })
    }
}

/// Why a PHR-11 path segment is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPath(String);

impl From<InvalidPath> for ApiError {
    fn from(error: InvalidPath) -> Self {
        ApiError::new(ErrorCode::InvalidParameter, error.0)
    }
}

fn invalid(message: String) -> InvalidPath {
    InvalidPath(message)
}

fn non_empty<'a>(part: &'a str, name: &str) -> Result<&'a str, InvalidPath> {
    if part.is_empty() { Err(invalid(format!("{name} is empty"))) } else { Ok(part) }
}

/// `yyyy-MM-dd` (exactly ten characters), or `None` for an empty part.
fn optional_day(part: &str, name: &str) -> Result<Option<NaiveDate>, InvalidPath> {
    if part.is_empty() {
        return Ok(None);
    }
    let parsed = (part.len() == 10).then(|| NaiveDate::parse_from_str(part, "%Y-%m-%d").ok()).flatten();
    parsed.map(Some).ok_or_else(|| invalid(format!("{name} must be yyyy-MM-dd, got {part:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn two_parts_are_facility_and_patient() {
        let request = ContainerRequest::parse("F001,P0001").unwrap();
        assert_eq!(request.facility_id, "F001");
        assert_eq!(request.patient_id, "P0001");
        assert_eq!(request.query, ContainerQuery::default());
    }

    #[test]
    fn dates_and_the_prescription_pair_are_parsed() {
        let request = ContainerRequest::parse("F001,P0001,2026-01-31,2025-12-01,1,app://reply").unwrap();
        assert_eq!(request.query.doc_since, Some(day("2026-01-31")));
        assert_eq!(request.query.lab_since, Some(day("2025-12-01")));
        assert_eq!(
            request.query.prescription,
            Some(PrescriptionReply { rp_request: 1, reply_to: "app://reply".into() })
        );
        let only_lab = ContainerRequest::parse("F001,P0001,,2025-12-01").unwrap();
        assert_eq!(only_lab.query.doc_since, None);
        assert_eq!(only_lab.query.lab_since, Some(day("2025-12-01")));
    }

    #[test]
    fn malformed_paths_are_invalid_parameter() {
        for bad in [
            "F001",
            "",
            ",P0001",
            "F001,",
            "F001,P0001,2026/01/01",
            "F001,P0001,2026-1-1",
            "F001,P0001,2026-02-30",
            "F001,P0001,2026-01-01,yesterday",
            "F001,P0001,2026-01-01,2026-01-01,1",
            "F001,P0001,2026-01-01,2026-01-01,one,reply",
            "F001,P0001,2026-01-01,2026-01-01,1.5,reply",
            "F001,P0001,2026-01-01,2026-01-01,1,reply,extra",
        ] {
            let error = ApiError::from(ContainerRequest::parse(bad).expect_err(bad));
            assert_eq!(error.code, ErrorCode::InvalidParameter, "{bad}");
            assert_eq!(error.status.as_u16(), 400, "{bad}");
        }
    }
}
