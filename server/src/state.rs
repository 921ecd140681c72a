//! The state every request handler and background task shares: configuration, database, audit log, keys,
//! limits, metrics and the export subsystem, behind one cheap-to-clone [`AppState`].
//!
//! It lives apart from `app` (which builds and serves it) so that the handlers (`phr`, `ops`, `serverinfo`)
//! can use it without importing the module that mounts them. The export worker pool sees it only through
//! [`WorkerHost`], so the export subsystem never imports it either.

use std::ops::Deref;
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::audit::checkpoint::Latest;
use crate::auth::Authenticator;
use crate::burst::ImageBudget;
use crate::clock::Clock;
use crate::config::Config;
use crate::config::export::ExportConfig;
use crate::db::Db;
use crate::export::ExportService;
use crate::export::worker::WorkerHost;
use crate::layer_key::LayerSigner;
use crate::metrics::Metrics;
use crate::storage::BlobStore;

/// Everything a handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

/// The state shared by all requests.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration the server started with.
    pub config: Config,
    /// Clinical data, users, export jobs and the audit table.
    pub db: Db,
    /// The hash-chained `d_audit_event` writer.
    pub audit: AuditLog,
    /// Basic verification with its cache of recent successes.
    pub auth: Authenticator,
    /// `None` only when started with the explicit opt-out; PHR-06 then answers 503.
    pub layer: Option<LayerSigner>,
    /// PHR-07 image blobs.
    pub images: BlobStore,
    /// PHR-07 bytes per client in the sliding window (in the database on PostgreSQL, shared by instances).
    pub image_budget: ImageBudget,
    /// What `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// Phase F: artifact storage and the worker wake-up (settings in `config.export`).
    pub export: ExportService,
    /// The newest signed audit checkpoint per chain (empty without `PHR_AUDIT_SIGNING_KEY`), for the ops listener.
    pub checkpoints: Latest,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl WorkerHost for AppState {
    fn db(&self) -> &Db {
        &self.db
    }

    fn clock(&self) -> &Clock {
        &self.config.clock
    }

    fn settings(&self) -> &ExportConfig {
        &self.config.export
    }

    fn service(&self) -> &ExportService {
        &self.export
    }

    fn publish_job_counts(&self, counts: Vec<(String, i64)>) {
        self.metrics.set_export_jobs(counts);
    }
}
