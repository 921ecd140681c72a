//! The one storage interface of export artifacts, over the two backends `PHR_EXPORT_STORAGE_TYPE` selects.
//!
//! Both backends are `object_store` stores wrapped in a [`BlobStore`], so the worker writes through the same
//! multipart API and the download handler reads through the same streaming API whichever is configured; only
//! construction differs. S3 objects are written with SSE-KMS under the configured key. Keys are built here and
//! only here: the prefix template with the (sanitised) facility substituted, then the job id (a UUID the
//! server generated) and the attempt number, and the result is re-checked by [`BlobStore::key`], so no
//! request value can steer a key outside the prefix.

use uuid::Uuid;

use crate::config::export::{ExportConfig, StorageSettings, StorageType};
use crate::storage::{BlobStore, StorageError};

/// Artifact storage plus the key layout.
#[derive(Debug, Clone)]
pub struct ExportStore {
    pub blobs: BlobStore,
    pub storage_type: StorageType,
    /// Prefix template, ending with `/`.
    prefix: String,
}

impl ExportStore {
    /// Opens the configured backend (creating the filesystem folder if needed; S3 is not contacted here).
    pub fn open(config: &ExportConfig) -> Result<Self, StorageError> {
        let blobs = match &config.storage {
            StorageSettings::Filesystem { base } => BlobStore::local(base)?,
            StorageSettings::S3(s3) => BlobStore::from_store(crate::storage::s3_store(s3)?),
        };
        Ok(Self { blobs, storage_type: config.storage.storage_type(), prefix: config.prefix.clone() })
    }

    /// The key of attempt `attempt` of job `job_id` of `facility_id`:
    /// `<prefix with facility>/<job id>/phr-export-<attempt>.zip`, validated.
    pub fn artifact_key(&self, facility_id: &str, job_id: Uuid, attempt: i64) -> Result<String, StorageError> {
        let facility = sanitise_segment(facility_id);
        let key = format!("{}{job_id}/phr-export-{attempt}.zip", self.prefix.replace("{facilityId}", &facility));
        BlobStore::key(&key)?;
        Ok(key)
    }
}

/// Keeps ASCII letters, digits, `-`, `_` and `.`, replaces anything else with `_`, never yields `.`/`..` or an
/// empty string, and caps the length, so the value is always one safe path segment or file-name part.
pub fn sanitise_segment(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') { "_".repeat(cleaned.len().max(1)) } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitised_segments_stay_inside_one_segment() {
        assert_eq!(sanitise_segment("F001"), "F001");
        assert_eq!(sanitise_segment("../etc"), ".._etc");
        assert_eq!(sanitise_segment(".."), "__");
        assert_eq!(sanitise_segment(""), "_");
        assert_eq!(sanitise_segment("a/b c"), "a_b_c");
        assert_eq!(sanitise_segment("患者"), "__");
    }

    #[test]
    fn artifact_keys_sit_under_the_facility_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let config = ExportConfig {
            storage: StorageSettings::Filesystem { base: dir.path().to_owned() },
            ..ExportConfig::default()
        };
        let store = ExportStore::open(&config).unwrap();
        let job = Uuid::nil();
        assert_eq!(store.artifact_key("F001", job, 1).unwrap(), format!("facility/F001/jobs/{job}/phr-export-1.zip"));
        assert!(store.artifact_key("../../x", job, 1).unwrap().starts_with("facility/.._.._x/jobs/"));
    }
}
