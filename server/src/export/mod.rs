//! Phase F: asynchronous PHR exports, their artifacts, and single-use signed download URLs.
//!
//! A `POST /export` becomes a durable job row ([`job`]); a pool of workers started with the server
//! ([`worker`]) claims it, streams a ZIP of one PHRContainer per patient into artifact storage ([`archive`],
//! [`store`]), and records the outcome. `GET /status/{jobId}` of a finished job mints a signed, single-use,
//! short-lived https URL ([`signed_url`]) through which the artifact is streamed back by the server. The HTTP
//! handlers live in `phr::export`; this module has no HTTP types so the pieces can be tested on their own.

pub mod archive;
pub mod config;
pub mod job;
pub mod signed_url;
pub mod store;
pub mod worker;

pub use config::{
    ExportArgs, ExportConfig, S3Settings, SigningSecret, StaticCredentials, StorageSettings, StorageType,
};
pub use job::{ExportSpec, JobRow, JobState};
pub use store::ExportStore;
pub use worker::WorkerPool;

use tokio::sync::Notify;

use crate::storage::StorageError;

/// The export subsystem's shared state (in `AppState`); the settings themselves are `config.export`.
#[derive(Debug)]
pub struct ExportService {
    /// Artifact storage chosen by `PHR_EXPORT_STORAGE_TYPE`.
    pub store: ExportStore,
    /// Wakes an idle worker when a job is submitted, so small exports do not wait for the poll interval.
    pub wake: Notify,
}

impl ExportService {
    /// Opens the artifact storage (fails start-up when the filesystem base cannot be created).
    pub fn new(config: &ExportConfig) -> Result<Self, StorageError> {
        Ok(Self { store: ExportStore::open(config)?, wake: Notify::new() })
    }
}
