//! Phase F: asynchronous PHR exports, their artifacts, and single-use signed download URLs.
//!
//! A `POST /export` becomes a durable job row ([`job`]); a pool of workers started with the server
//! ([`worker`]) claims it in a fair order with per-facility caps ([`queue`]), streams a ZIP of one PHRContainer per patient into artifact storage ([`archive`],
//! [`store`]), and records the outcome. `GET /status/{jobId}` of a finished job mints a signed, single-use,
//! short-lived https URL ([`signed_url`]) through which the artifact is streamed back by the server. The HTTP
//! handlers live in `phr::export` and the settings in `config::export`; this module has no HTTP types and
//! never imports the server's state (the pool reaches it through [`worker::WorkerHost`]), so the pieces can
//! be tested on their own.

pub mod archive;
pub mod job;
pub mod queue;
pub mod service;
pub mod signed_url;
pub mod store;
pub mod worker;

pub use crate::config::export::{
    ExportArgs, ExportConfig, S3Settings, SigningSecret, StaticCredentials, StorageSettings, StorageType,
};
pub use job::{ExportSpec, JobRow, JobState};
pub use service::ExportService;
pub use store::ExportStore;
pub use worker::WorkerPool;
