//! The export subsystem's shared state: artifact storage and the worker wake-up.
//!
//! It sits in the server's state next to the other shared parts; the handlers notify it when a job is
//! submitted and the worker pool waits on it. Its own file, so the worker pool can use it without importing
//! the module that re-exports the pool.

use tokio::sync::Notify;

use super::store::ExportStore;
use crate::config::export::ExportConfig;
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
