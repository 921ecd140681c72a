//! PHR keys (PHR-02, PHR-03, PHR-10): one access/secret key pair per patient, looked up within a facility.
//!
//! A key is identified by (facility, patient): registering again replaces the pair, as the legacy server's
//! "add or update" did. An access key is unique across all facilities, so a patient app's key can never
//! resolve to two patients; a key of another facility is "not found" for the caller.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::common::{ClinicalError, plausible_id, require_patient};
use super::dto::PhrKey;
use crate::db::Db;
use crate::dbtx::DbTx;

/// Storage format of `phr_key.registered` and of `registeredString`.
const REGISTERED_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// A validated PHR-02 registration.
#[derive(Debug, Clone)]
pub struct NewPhrKey<'a> {
    /// Always the caller's facility.
    pub facility_id: &'a str,
    pub patient_id: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
    /// Server time of the registration.
    pub registered: DateTime<Utc>,
}

/// One `phr_key` row.
#[derive(Debug, sqlx::FromRow)]
struct KeyRow {
    id: i64,
    facility_id: String,
    patient_id: String,
    access_key: String,
    secret_key: String,
    registered: String,
}

impl From<KeyRow> for PhrKey {
    fn from(row: KeyRow) -> Self {
        let registered = NaiveDateTime::parse_from_str(&row.registered, REGISTERED_FORMAT)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or_default();
        Self {
            id: row.id,
            facility_id: row.facility_id,
            patient_id: row.patient_id,
            access_key: row.access_key,
            secret_key: row.secret_key,
            registered,
            registered_string: row.registered,
        }
    }
}

const BY_ACCESS_KEY: &str = "SELECT id, facility_id, patient_id, access_key, secret_key, registered \
     FROM phr_key WHERE facility_id = $1 AND access_key = $2";
const BY_PATIENT: &str = "SELECT id, facility_id, patient_id, access_key, secret_key, registered \
     FROM phr_key WHERE facility_id = $1 AND patient_id = $2";

/// Registers or replaces the patient's key and returns its id, inside the call's transaction (the change
/// commits only with its audit row).
///
/// The patient must exist in the facility; an access key already held by another patient is refused (also when
/// two registrations race: the unique index decides).
pub async fn upsert_key(tx: &mut DbTx, key: &NewPhrKey<'_>) -> Result<i64, ClinicalError> {
    const PATIENT_SQL: &str = "SELECT 1 FROM patient WHERE facility_id = $1 AND patient_id = $2";
    const SQL: &str = "INSERT INTO phr_key (facility_id, patient_id, access_key, secret_key, registered) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (facility_id, patient_id) DO UPDATE SET access_key = excluded.access_key, \
         secret_key = excluded.secret_key, registered = excluded.registered \
         RETURNING id";
    if !plausible_id(key.patient_id) {
        return Err(ClinicalError::PatientNotFound);
    }
    let registered = key.registered.format(REGISTERED_FORMAT).to_string();
    // `?` and `return` inside leave this function; the upsert's own error is mapped below.
    let result: Result<i64, sqlx::Error> = crate::with_tx!(tx, |conn| {
        let patient: Option<i32> = sqlx::query_scalar(PATIENT_SQL)
            .bind(key.facility_id)
            .bind(key.patient_id)
            .fetch_optional(&mut *conn)
            .await?;
        if patient.is_none() {
            return Err(ClinicalError::PatientNotFound);
        }
        sqlx::query_scalar(SQL)
            .bind(key.facility_id)
            .bind(key.patient_id)
            .bind(key.access_key)
            .bind(key.secret_key)
            .bind(&registered)
            .fetch_one(&mut *conn)
            .await
    });
    result.map_err(|error| match error.as_database_error() {
        Some(db_error) if db_error.is_unique_violation() => ClinicalError::AccessKeyTaken,
        _ => ClinicalError::Database(error),
    })
}

/// PHR-03: the key with this access key, in the caller's facility only.
pub async fn key_by_access_key(db: &Db, facility_id: &str, access_key: &str) -> Result<PhrKey, ClinicalError> {
    if !plausible_id(access_key) {
        return Err(ClinicalError::AccessKeyNotFound);
    }
    let row: Option<KeyRow> = with_pool!(db, |pool| {
        sqlx::query_as(BY_ACCESS_KEY).bind(facility_id).bind(access_key).fetch_optional(pool).await
    })?;
    row.map(PhrKey::from).ok_or(ClinicalError::AccessKeyNotFound)
}

/// PHR-10: the patient's key; an unknown patient and a patient without a key are told apart.
pub async fn key_by_patient(db: &Db, facility_id: &str, patient_id: &str) -> Result<PhrKey, ClinicalError> {
    if !plausible_id(patient_id) {
        return Err(ClinicalError::PatientNotFound);
    }
    let row: Option<KeyRow> = with_pool!(db, |pool| {
        sqlx::query_as(BY_PATIENT).bind(facility_id).bind(patient_id).fetch_optional(pool).await
    })?;
    match row {
        Some(row) => Ok(row.into()),
        None => {
            require_patient(db, facility_id, patient_id).await?;
            Err(ClinicalError::NoKeyForPatient)
        }
    }
}
