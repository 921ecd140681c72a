//! What every clinical query shares: the error they return (and how it maps onto the spec's codes), the
//! plausibility check for ids taken from paths, the patient-exists check, Japanese dates, and the padding of
//! the fixed `IN (…)` slots.
//!
//! A leaf of `clinical`, so the query modules (`keys`, `records`, `container`) use it without importing the
//! module that re-exports them.

use chrono::NaiveDate;

use crate::db::Db;
use crate::error::{ApiError, ErrorCode};

/// Why a clinical lookup or write did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClinicalError {
    /// The patient does not exist in the caller's facility (another facility's patient is "not found" too).
    #[error("patient not found")]
    PatientNotFound,
    /// No PHR key with that access key in the caller's facility.
    #[error("access key not found")]
    AccessKeyNotFound,
    /// The patient exists but has no PHR key.
    #[error("no PHR key is registered for the patient")]
    NoKeyForPatient,
    /// The access key is already registered for another patient.
    #[error("the access key is already registered for another patient")]
    AccessKeyTaken,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<ClinicalError> for ApiError {
    fn from(error: ClinicalError) -> Self {
        let message = error.to_string();
        match error {
            ClinicalError::PatientNotFound => ApiError::new(ErrorCode::PatientNotFound, message),
            ClinicalError::AccessKeyNotFound | ClinicalError::NoKeyForPatient => {
                ApiError::new(ErrorCode::AccessKeyNotFound, message)
            }
            ClinicalError::AccessKeyTaken => {
                ApiError::new(ErrorCode::InvalidPayload, message).with_status(axum::http::StatusCode::CONFLICT)
            }
            ClinicalError::Database(cause) => ApiError::from(cause),
        }
    }
}

/// Longest id (patient id, access key) that can exist; the widest id column.
pub const MAX_ID_CHARS: usize = 128;

/// Whether `id` could be a stored id at all. Ids from paths are arbitrary text; one that is empty, overlong or
/// holds control characters (PostgreSQL refuses NUL in text) cannot exist, so it is "not found" without a query.
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_CHARS && !id.chars().any(char::is_control)
}

/// Fails with [`ClinicalError::PatientNotFound`] unless the patient exists in the facility.
pub async fn require_patient(db: &Db, facility_id: &str, patient_id: &str) -> Result<(), ClinicalError> {
    const SQL: &str = "SELECT 1 FROM patient WHERE facility_id = $1 AND patient_id = $2";
    if !plausible_id(patient_id) {
        return Err(ClinicalError::PatientNotFound);
    }
    let found: Option<i32> =
        with_pool!(db, |pool| sqlx::query_scalar(SQL).bind(facility_id).bind(patient_id).fetch_optional(pool).await)?;
    found.map(|_| ()).ok_or(ClinicalError::PatientNotFound)
}

/// `yyyy-MM-dd` (or a longer ISO timestamp) as `yyyy年M月d日`; text that is not a date is returned unchanged.
pub fn japanese_date(iso: &str) -> String {
    match iso.get(..10).and_then(|day| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()) {
        Some(date) => date.format("%Y年%-m月%-d日").to_string(),
        None => iso.to_owned(),
    }
}

/// Pads up to three ids into the fixed `IN ($2, $3, $4)` slots of the child queries; empty ids match nothing
/// (the tables refuse empty catch ids).
pub(super) fn three_slots<'a>(ids: impl IntoIterator<Item = &'a str>) -> [&'a str; 3] {
    let mut slots = [""; 3];
    for (slot, id) in slots.iter_mut().zip(ids) {
        *slot = id;
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_dates_drop_leading_zeros() {
        assert_eq!(japanese_date("2026-03-05"), "2026年3月5日");
        assert_eq!(japanese_date("2026-11-22T09:30:00"), "2026年11月22日");
        assert_eq!(japanese_date("not a date"), "not a date");
    }

    #[test]
    fn implausible_ids_are_recognised() {
        assert!(plausible_id("P0001"));
        assert!(plausible_id("患者-1"));
        for bad in ["", "P\0", "a\nb", &"x".repeat(MAX_ID_CHARS + 1)] {
            assert!(!plausible_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn three_slots_pads_with_empty_ids() {
        assert_eq!(three_slots(["a"]), ["a", "", ""]);
        assert_eq!(three_slots(["a", "b", "c", "d"]), ["a", "b", "c"]);
    }
}
