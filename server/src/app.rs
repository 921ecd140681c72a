//! The assembled server: building the shared state, the router, and the one entry point that runs both
//! listeners.
//!
//! The server is a library first. [`App::build`] takes a validated [`Config`], opens and migrates the
//! database and loads every key (failing fast, naming the variable, when one is unusable); [`App::serve`]
//! takes already-bound listeners and a shutdown future. The binary, the tests and `connrun demo` all start
//! the server the same way, on whatever ports they bound (port 0 in tests).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;

use crate::audit::checkpoint::sink::CheckpointSink;
use crate::audit::checkpoint::{CheckpointTask, Latest};
use crate::audit::{Action, AuditLog};
use crate::auth::Authenticator;
use crate::burst::ImageBudget;
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::error::{ApiError, ErrorCode};
use crate::export::{ExportService, WorkerPool};
use crate::layer_key::{LayerKeyError, LayerSigner};
use crate::metrics::Metrics;
use crate::phr::RouteSpec;
use crate::state::{AppState, Shared};
use crate::storage::{BlobStore, StorageError};
use crate::tls::{LiveTls, TlsSetupError};
use crate::{ops, paths, phr, serverinfo};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    LayerKey(#[from] LayerKeyError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("PHR_IMAGE_STORE_DIR: {0}")]
    Storage(#[from] StorageError),
    #[error("export storage (PHR_EXPORT_STORAGE_TYPE / PHR_EXPORT_FS_BASE / PHR_EXPORT_S3_*): {0}")]
    ExportStorage(#[source] StorageError),
    #[error("audit checkpoints (PHR_AUDIT_CHECKPOINT_DEST): {0}")]
    CheckpointStorage(#[source] StorageError),
    #[error("password hashing unavailable: {0}")]
    Auth(String),
}

/// The already-bound sockets the server serves on.
pub struct Listeners {
    /// HTTPS with client certificates.
    pub phr: TcpListener,
    /// Plain HTTP for /healthz, /readyz, /metrics.
    pub ops: TcpListener,
}

/// A built server, ready to serve.
pub struct App {
    /// The shared state; callers reach the database and blob store through it (seeding, tests).
    pub state: AppState,
    /// The PHR listener's rustls configuration, loaded at build time so a bad certificate or CRL fails
    /// start-up, and replaced when the client CRLs are reloaded.
    tls: Arc<LiveTls>,
    /// Where signed checkpoints go, opened at build time; `None` without a signing key.
    checkpoint_sink: Option<CheckpointSink>,
}

/// Installs aws-lc-rs as rustls' process-wide provider; harmless when already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl App {
    /// Connects to and migrates the database, loads keys and TLS material.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        install_crypto_provider();
        let metrics = Arc::<Metrics>::default();
        let tls = LiveTls::new(config.tls.clone(), config.revocation.clone(), metrics.clone())?;
        let layer = LayerSigner::load(&config.layer)?;
        match &layer {
            Some(signer) => tracing::info!(fingerprint = signer.fingerprint(), "Layer ID key loaded"),
            None => tracing::warn!("started without a Layer ID key (PHR_LAYER_KEY_OPTIONAL); PHR-06 answers 503"),
        }
        let db = Db::connect(&config.database_url).await?;
        let applied = db.migrate().await?;
        for migration in &applied {
            tracing::info!(version = migration.version, description = %migration.description, "migration applied");
        }
        if let Some(warning) = db.privilege_report().await?.and_then(|r| r.warning()) {
            tracing::warn!("{warning}");
        }
        let images = BlobStore::local(&config.image_store_dir)?;
        let auth = Authenticator::new(db.clone(), &config.auth, config.clock.clone(), metrics.clone())
            .map_err(|e| StartupError::Auth(e.to_string()))?;
        let image_budget = ImageBudget::for_database(&db, config.image.burst_bytes, config.image.burst_window);
        let audit = AuditLog::with_chains(db.clone(), config.clock.clone(), config.audit_chains);
        let export = ExportService::new(&config.export).map_err(StartupError::ExportStorage)?;
        let checkpoint_sink = match &config.audit_checkpoints {
            Some(settings) => {
                let fingerprint = settings.key.public_key().fingerprint();
                tracing::info!(%fingerprint, "audit checkpoints are signed");
                Some(CheckpointSink::open(&settings.dest).map_err(StartupError::CheckpointStorage)?)
            }
            None => {
                tracing::warn!("no PHR_AUDIT_SIGNING_KEY: no signed audit checkpoints are written");
                None
            }
        };
        let checkpoints = Latest::default();
        let shared = Shared { config, db, audit, auth, layer, images, image_budget, metrics, export, checkpoints };
        Ok(Self { state: AppState::new(shared), tls, checkpoint_sink })
    }

    /// The PHR listener's TLS configuration in force: `reload(true)` re-reads the client CRLs at once (what the
    /// binary does on SIGHUP); the server also polls them while it serves.
    pub fn tls(&self) -> Arc<LiveTls> {
        self.tls.clone()
    }

    /// The PHR router (without the TLS layer), for the accept loop.
    pub fn router(&self) -> Router {
        Router::new()
            .nest(paths::PHR_BASE, phr::routes())
            .route(SERVER_INFO_ROUTE.path, axum::routing::get(serverinfo::fetch))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.state.clone(), phr::guard::enforce))
            .layer(middleware::from_fn_with_state(self.state.clone(), observe))
            .with_state(self.state.clone())
    }

    /// Serves both listeners until `shutdown` resolves, then drains in-flight requests and closes the pool.
    pub async fn serve(self, listeners: Listeners, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let ops_router = ops::routes(self.state.clone());
        let mut ops_stop = stop_rx.clone();
        let ops_task = tokio::spawn(async move {
            let stopped = async move {
                let _ = ops_stop.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listeners.ops, ops_router).with_graceful_shutdown(stopped).await {
                tracing::error!(%error, "ops listener failed");
            }
        });
        let workers = WorkerPool::start(self.state.clone(), stop_rx.clone());
        let crl_stop = tokio_util::sync::CancellationToken::new();
        let crl_watch = tokio::spawn(self.tls.clone().watch(crl_stop.clone()));
        let checkpoints =
            self.state.config.audit_checkpoints.clone().zip(self.checkpoint_sink.clone()).map(|(settings, sink)| {
                let state = &self.state;
                let signal = state.audit.append_signal();
                CheckpointTask::start(
                    state.db.clone(),
                    state.config.clock.clone(),
                    settings,
                    sink,
                    signal,
                    state.checkpoints.clone(),
                )
            });
        let mut settings = crate::listener::Settings {
            tls: self.tls.clone(),
            proxy: self.state.config.proxy_protocol.clone(),
            limits: self.state.config.connections,
            grace: self.state.config.shutdown_grace,
            metrics: self.state.metrics.clone(),
            on_refused: Arc::new(|_, _, _| {}),
        };
        let router = self.router();
        let phr_stop = async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining in-flight requests");
            let _ = stop_tx.send(true);
        };
        let audit_state = self.state.clone();
        settings.on_refused = Arc::new(move |peer, too_large, reason| {
            phr::guard::audit_refused_head(&audit_state, peer, too_large, reason)
        });
        crate::listener::serve(listeners.phr, router, settings, phr_stop).await;
        crl_stop.cancel();
        let _ = crl_watch.await;
        let _ = ops_task.await;
        workers.stop().await;
        // Every answered call's rows are committed by now: the final checkpoint covers them all.
        if let Some(task) = checkpoints {
            task.stop().await;
        }
        self.state.db.close().await;
    }
}

/// The server-information route, mounted beside the PHR routes (outside their base path, as in the original).
const SERVER_INFO_ROUTE: RouteSpec = RouteSpec { method: "get", path: paths::SERVER_INFO, action: Action::ServerInfo };

/// One line of the route map: what `phr-server routes` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedRoute {
    /// Upper-case HTTP method.
    pub method: String,
    /// Absolute path pattern, `{name}` for a segment parameter.
    pub path: String,
    /// The audit action every call of the route writes (a throttled or failed call may write a more specific
    /// one, as the spec lists).
    pub action: Action,
}

/// Every route of the PHR listener with its absolute path and audit action, in mounting order.
pub fn route_map() -> Vec<MappedRoute> {
    let mapped = |route: &RouteSpec, base: &str| MappedRoute {
        method: route.method.to_ascii_uppercase(),
        path: format!("{base}{}", route.path),
        action: route.action,
    };
    phr::ROUTES.iter().map(|r| mapped(r, paths::PHR_BASE)).chain([mapped(&SERVER_INFO_ROUTE, "")]).collect()
}

/// Metrics for every request (the header limits and the audit of unrouted answers are `phr::guard`'s).
async fn observe(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    app.metrics.request(&route, response.status().as_u16(), started.elapsed());
    response
}

async fn not_found() -> Response {
    ApiError::new(ErrorCode::InvalidParameter, "no such resource")
        .with_status(StatusCode::NOT_FOUND)
        .into_response_with_trace(None)
}
