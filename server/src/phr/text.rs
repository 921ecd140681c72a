//! Phase B: the patient summaries. PHR-01 abnormal values, PHR-04 allergies, PHR-05 diseases and PHR-08
//! laboratory results answer `text/plain` (lines joined with `\n`, the spec's sentence when there is nothing);
//! PHR-09 answers the current prescription as JSON `{"message","bundles"}`.
//!
//! An unknown patient (including one of another facility) is `404 patientNotFound` on every one of them.

use axum::extract::{Path, State};
use axum::response::Response;

use super::pipeline;
use super::reply::Reply;
use super::request::{AuthMode, RequestMeta};
use crate::audit::Action;
use crate::clinical::{self, ClinicalError};
use crate::db::Db;
use crate::error::ApiError;
use crate::state::AppState;

/// PHR-01: abnormal laboratory values.
pub async fn abnormal(State(app): State<AppState>, meta: RequestMeta, Path(patient_id): Path<String>) -> Response {
    text_summary(app, meta, patient_id, Summary::Abnormal).await
}

/// PHR-04: allergies.
pub async fn allergy(State(app): State<AppState>, meta: RequestMeta, Path(patient_id): Path<String>) -> Response {
    text_summary(app, meta, patient_id, Summary::Allergy).await
}

/// PHR-05: active diseases, newest first.
pub async fn disease(State(app): State<AppState>, meta: RequestMeta, Path(patient_id): Path<String>) -> Response {
    text_summary(app, meta, patient_id, Summary::Disease).await
}

/// PHR-08: laboratory results.
pub async fn labtest(State(app): State<AppState>, meta: RequestMeta, Path(patient_id): Path<String>) -> Response {
    text_summary(app, meta, patient_id, Summary::Labtest).await
}

/// PHR-09: the newest prescription's `medOrder` bundles.
pub async fn medication(State(app): State<AppState>, meta: RequestMeta, Path(patient_id): Path<String>) -> Response {
    pipeline::handle(&app, meta, Action::MedicationText, AuthMode::Basic, async |caller| {
        let medication = clinical::medication(&app.db, &caller.facility_id, &patient_id)
            .await
            .map_err(|e| ApiError::from(e).with_patient(patient_id.as_str()))?;
        Ok(Reply::json(&medication)?.patient(patient_id).detail("bundleCount", medication.bundles.len()))
    })
    .await
}

/// The four text summaries: which lines, which empty sentence, which audit action.
#[derive(Debug, Clone, Copy)]
enum Summary {
    Abnormal,
    Allergy,
    Disease,
    Labtest,
}

impl Summary {
    fn action(self) -> Action {
        match self {
            Self::Abnormal => Action::LabtestAbnormalText,
            Self::Allergy => Action::AllergyText,
            Self::Disease => Action::DiseaseText,
            Self::Labtest => Action::LabtestText,
        }
    }

    fn empty_message(self) -> &'static str {
        match self {
            Self::Abnormal => clinical::ABNORMAL_EMPTY,
            Self::Allergy => clinical::ALLERGY_EMPTY,
            Self::Disease => clinical::DISEASE_EMPTY,
            Self::Labtest => clinical::LABTEST_EMPTY,
        }
    }

    async fn lines(self, db: &Db, facility_id: &str, patient_id: &str) -> Result<Vec<String>, ClinicalError> {
        match self {
            Self::Abnormal => clinical::abnormal_lines(db, facility_id, patient_id).await,
            Self::Allergy => clinical::allergy_lines(db, facility_id, patient_id).await,
            Self::Disease => clinical::disease_lines(db, facility_id, patient_id).await,
            Self::Labtest => clinical::labtest_lines(db, facility_id, patient_id).await,
        }
    }
}

/// Runs one text endpoint: the summary's lines, or its empty sentence when there are none.
async fn text_summary(app: AppState, meta: RequestMeta, patient_id: String, summary: Summary) -> Response {
    pipeline::handle(&app, meta, summary.action(), AuthMode::Basic, async |caller| {
        let lines = summary
            .lines(&app.db, &caller.facility_id, &patient_id)
            .await
            .map_err(|e| ApiError::from(e).with_patient(patient_id.as_str()))?;
        let body = clinical::text_body(&lines, summary.empty_message());
        Ok(Reply::text(body).patient(patient_id).detail("lines", lines.len()))
    })
    .await
}
