//! The export artifact: one ZIP streamed straight into storage, whatever the number of patients.
//!
//! An export may name tens of thousands of patients, so nothing here holds more than one patient's container
//! at a time. The `zip` crate's streaming writer ([`ZipWriter::new_stream`], entries with data descriptors, no
//! seeking back) writes into a [`MultipartSink`], a `std::io::Write` that feeds `object_store`'s multipart
//! upload ([`WriteMultipart`]) part by part with bounded in-flight parts. ZIP writing is synchronous, so the
//! build runs on a blocking thread and enters the runtime ([`Handle::block_on`]) for the database reads and
//! the upload's back-pressure. Memory is one upload part per in-flight part plus one patient's JSON, plus the
//! ZIP central directory's small per-entry record, which the format itself requires until the end.
//!
//! The archive holds `patient-<n>-<sanitised id>.json` (one PHRContainer each; `n` is the patient's 1-based
//! position in the request) and, last, `metadata.json` `{facilityId, generatedAt, patientCount, …}`.

use std::cell::RefCell;
use std::io::{BufWriter, Write};
use std::rc::Rc;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use object_store::{ObjectStoreExt as _, WriteMultipart};
use serde_json::json;
use tokio::runtime::Handle;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use super::job::ExportSpec;
use super::store::sanitise_segment;
use crate::clinical::{self, ClinicalError, ContainerQuery, PrescriptionReply};
use crate::db::Db;
use crate::storage::{BlobStore, StorageError};

/// Size of one multipart part (S3's minimum for all but the last part is 5 MiB).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once; bounds memory at about `PART_BYTES * (MAX_IN_FLIGHT + 1)`.
const MAX_IN_FLIGHT: usize = 2;
/// Buffer in front of the sink, so the ZIP writer's many small writes reach the upload in large pieces.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Why an artifact could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The run was told to stop (shutdown, or it no longer owns the job); not a failure of the job.
    #[error("the build was interrupted: {0}")]
    Interrupted(&'static str),
    #[error("reading clinical data: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the artifact: {0}")]
    Storage(#[from] StorageError),
    #[error("writing the artifact: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the ZIP: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the job's request is invalid: {0}")]
    InvalidRequest(String),
}

impl From<object_store::Error> for ArchiveError {
    fn from(error: object_store::Error) -> Self {
        Self::Storage(StorageError::Backend(error))
    }
}

/// What to build and where.
pub struct ArchiveJob<'a> {
    pub db: &'a Db,
    pub store: &'a BlobStore,
    pub key: &'a str,
    pub job_id: &'a str,
    pub facility_id: &'a str,
    pub spec: &'a ExportSpec,
    pub generated_at: DateTime<Utc>,
}

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Size of the stored ZIP.
    pub bytes: u64,
    /// Patient files written.
    pub patients: usize,
    /// Requested patients that no longer exist in the facility (listed in metadata.json).
    pub skipped: usize,
}

/// Builds the ZIP into storage. Runs on a blocking thread; `control(done, total)` is called before each
/// patient and stops the build by returning an error (it reports progress and checks for cancellation).
pub fn build(
    handle: &Handle,
    job: &ArchiveJob<'_>,
    control: &mut dyn FnMut(usize, usize) -> Result<(), ArchiveError>,
) -> Result<ArchiveSummary, ArchiveError> {
    let _runtime = handle.enter();
    let path = BlobStore::key(job.key)?;
    let upload = handle.block_on(job.store.object_store().put_multipart(&path))?;
    let slot = Rc::new(RefCell::new(Some(WriteMultipart::new_with_chunk_size(upload, PART_BYTES))));
    let sink = MultipartSink { handle: handle.clone(), upload: Rc::clone(&slot), bytes: 0 };
    match write_entries(handle, job, sink, control) {
        Ok((sink, patients, skipped)) => {
            let bytes = sink.bytes;
            drop(sink);
            let upload = slot.borrow_mut().take().ok_or(ArchiveError::Interrupted("upload already closed"))?;
            handle.block_on(upload.finish())?;
            Ok(ArchiveSummary { bytes, patients, skipped })
        }
        Err(error) => {
            let upload = slot.borrow_mut().take();
            if let Some(Err(abort)) = upload.map(|upload| handle.block_on(upload.abort())) {
                tracing::warn!(error = %abort, key = job.key, "could not abort the artifact upload");
            }
            Err(error)
        }
    }
}

fn write_entries(
    handle: &Handle,
    job: &ArchiveJob<'_>,
    sink: MultipartSink,
    control: &mut dyn FnMut(usize, usize) -> Result<(), ArchiveError>,
) -> Result<(MultipartSink, usize, usize), ArchiveError> {
    let query = container_query(job.spec)?;
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip_time(job.generated_at));
    let mut zip = ZipWriter::new_stream(BufWriter::with_capacity(WRITE_BUFFER_BYTES, sink));
    let total = job.spec.patient_ids.len();
    let mut skipped = Vec::new();
    let mut written = 0usize;
    for (index, patient_id) in job.spec.patient_ids.iter().enumerate() {
        control(index, total)?;
        match handle.block_on(clinical::container(job.db, job.facility_id, patient_id, &query)) {
            Ok(container) => {
                zip.start_file(entry_name(index + 1, patient_id), options)?;
                serde_json::to_writer(&mut zip, &container)?;
                written += 1;
            }
            Err(ClinicalError::PatientNotFound) => {
                skipped.push(json!({ "patientId": patient_id, "reason": "patientNotFound" }));
            }
            Err(ClinicalError::Database(error)) => return Err(error.into()),
            Err(other) => return Err(ArchiveError::InvalidRequest(other.to_string())),
        }
    }
    control(total, total)?;
    let metadata = json!({
        "jobId": job.job_id,
        "facilityId": job.facility_id,
        "generatedAt": job.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "patientCount": written,
        "requestedPatientCount": total,
        "documentSince": job.spec.document_since,
        "labSince": job.spec.lab_since,
        "format": "PHRContainer",
        "fileNamePattern": "patient-<n>-<patientId>.json",
        "skippedPatients": skipped,
    });
    zip.start_file("metadata.json", options)?;
    serde_json::to_writer_pretty(&mut zip, &metadata)?;
    let buffered = zip.finish()?.into_inner();
    let sink = buffered.into_inner().map_err(|e| e.into_error())?;
    Ok((sink, written, skipped.len()))
}

/// `patient-<n>-<sanitised id>.json`.
pub fn entry_name(position: usize, patient_id: &str) -> String {
    format!("patient-{position}-{}.json", sanitise_segment(patient_id))
}

fn container_query(spec: &ExportSpec) -> Result<ContainerQuery, ArchiveError> {
    let day = |value: &Option<String>| -> Result<Option<NaiveDate>, ArchiveError> {
        value
            .as_deref()
            .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|e| ArchiveError::InvalidRequest(e.to_string())))
            .transpose()
    };
    let prescription = match (spec.rp_request, &spec.reply_to) {
        (Some(rp_request), Some(reply_to)) => Some(PrescriptionReply { rp_request, reply_to: reply_to.clone() }),
        _ => None,
    };
    Ok(ContainerQuery { doc_since: day(&spec.document_since)?, lab_since: day(&spec.lab_since)?, prescription })
}

/// The ZIP's MS-DOS timestamp of the generation time (entries would otherwise claim 1980).
fn zip_time(at: DateTime<Utc>) -> zip::DateTime {
    let narrow = |v: u32| u8::try_from(v).unwrap_or(0);
    zip::DateTime::from_date_and_time(
        u16::try_from(at.year()).unwrap_or(1980),
        narrow(at.month()),
        narrow(at.day()),
        narrow(at.hour()),
        narrow(at.minute()),
        narrow(at.second()),
    )
    .unwrap_or_default()
}

/// A `std::io::Write` over a multipart upload, applying back-pressure when parts are in flight.
pub struct MultipartSink {
    handle: Handle,
    /// Shared with [`build`], which finishes or aborts the upload after the ZIP writer is done with it.
    upload: Rc<RefCell<Option<WriteMultipart>>>,
    /// Bytes accepted so far: the artifact's size once finished.
    bytes: u64,
}

impl Write for MultipartSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut slot = self.upload.borrow_mut();
        let upload = slot.as_mut().ok_or_else(|| std::io::Error::other("the upload is closed"))?;
        self.handle.block_on(upload.wait_for_capacity(MAX_IN_FLIGHT)).map_err(std::io::Error::other)?;
        upload.write(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_safe_file_names() {
        assert_eq!(entry_name(1, "P0001"), "patient-1-P0001.json");
        assert_eq!(entry_name(12, "../../etc/passwd"), "patient-12-.._.._etc_passwd.json");
    }

    #[test]
    fn zip_time_is_the_generation_time() {
        let at = DateTime::parse_from_rfc3339("2025-11-19T01:30:07Z").unwrap().with_timezone(&Utc);
        let t = zip_time(at);
        assert_eq!((t.year(), t.month(), t.day(), t.hour(), t.minute()), (2025, 11, 19, 1, 30));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sink_streams_parts_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let handle = Handle::current();
        let written = tokio::task::spawn_blocking(move || {
            let _runtime = handle.enter();
            let upload = handle.block_on(store.object_store().put_multipart(&BlobStore::key("a/b.bin").unwrap()));
            let slot = Rc::new(RefCell::new(Some(WriteMultipart::new_with_chunk_size(upload.unwrap(), 1024))));
            let mut sink = MultipartSink { handle: handle.clone(), upload: Rc::clone(&slot), bytes: 0 };
            for _ in 0..100 {
                sink.write_all(&[42u8; 1000]).unwrap();
            }
            let bytes = sink.bytes;
            let upload = slot.borrow_mut().take().unwrap();
            handle.block_on(upload.finish()).unwrap();
            bytes
        })
        .await
        .unwrap();
        assert_eq!(written, 100_000);
        assert_eq!(std::fs::metadata(dir.path().join("a/b.bin")).unwrap().len(), 100_000);
    }
}
