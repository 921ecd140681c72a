//! The export worker pool: claims PENDING jobs, builds their artifacts, heartbeats, and recovers abandoned ones.
//!
//! The pool starts with the server ([`WorkerPool::start`] in `App::serve`) and stops with its shutdown future.
//! Each worker loops: claim the next PENDING job in the fair order (see [`queue::claim`]), build its ZIP on a
//! blocking thread, and record the outcome, every write conditional on the run's lease. While a job runs a
//! separate task heartbeats it, so a slow patient never makes a live run look dead; if a heartbeat finds the
//! lease gone (the job was recovered elsewhere), the build stops. A maintenance task recovers RUNNING jobs with
//! stale heartbeats at start-up and then periodically (requeue, or FAILED `workerLost` after the last attempt)
//! and refreshes the `/metrics` gauge. On shutdown an interrupted run hands its job back to PENDING uncounted,
//! so the next start picks it up: no job is lost and none stays RUNNING.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::archive::{self, ArchiveError, ArchiveJob, ArchiveSummary};
use super::job::{self, ClaimedJob, ExportSpec};
use super::queue;
use super::service::ExportService;
use crate::clock::Clock;
use crate::config::export::ExportConfig;
use crate::db::Db;

/// What the pool needs from the running server. The server's state implements it (in `state.rs`), so this
/// subsystem never imports that state: the pool, recovery and expiry are driven by whatever hosts them.
pub trait WorkerHost: Clone + Send + Sync + 'static {
    /// The store of the job rows and of the clinical data the archives read.
    fn db(&self) -> &Db;
    /// The time source (tests inject a manual clock).
    fn clock(&self) -> &Clock;
    /// `config.export`: pool size, intervals, attempts, retention.
    fn settings(&self) -> &ExportConfig;
    /// Artifact storage and the wake-up the handlers notify.
    fn service(&self) -> &ExportService;
    /// Publishes the jobs-per-state gauge of `/metrics`.
    fn publish_job_counts(&self, counts: Vec<(String, i64)>);
}

/// The running pool; [`WorkerPool::stop`] ends it.
pub struct WorkerPool {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts the maintenance task and `config.export.workers` workers; they stop when `shutdown` turns true.
    pub fn start<H: WorkerHost>(app: H, mut shutdown: watch::Receiver<bool>) -> Self {
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        let forward = cancel.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => forward.cancel(),
                () = forward.cancelled() => {}
            }
        }));
        tasks.push(tokio::spawn(maintenance(app.clone(), cancel.clone())));
        for index in 0..app.settings().workers {
            let worker_id = format!("pid{}-w{index}", std::process::id());
            tasks.push(tokio::spawn(work(app.clone(), worker_id, cancel.clone())));
        }
        Self { cancel, tasks }
    }

    /// Stops every task and waits for them; interrupted jobs go back to PENDING.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Recovers abandoned jobs now. Returns what it did; used at start-up, periodically, and by tests.
pub async fn recover<H: WorkerHost>(app: &H) -> Result<job::Recovery, sqlx::Error> {
    let now = app.clock().now();
    let stale_ms = i64::try_from(app.settings().stale_after.as_millis()).unwrap_or(i64::MAX);
    let recovery = job::recover_stale(
        app.db(),
        job::millis(now).saturating_sub(stale_ms),
        app.settings().max_attempts,
        job::millis(now),
    )
    .await?;
    if recovery.requeued > 0 || recovery.failed > 0 {
        tracing::warn!(requeued = recovery.requeued, failed = recovery.failed, "recovered abandoned export jobs");
        app.service().wake.notify_waiters();
    }
    Ok(recovery)
}

/// Artifacts expired per maintenance pass (the rest wait for the next pass).
const EXPIRE_BATCH: i64 = 100;

/// Deletes artifacts past `PHR_EXPORT_ARTIFACT_RETENTION_SECONDS` and marks their jobs EXPIRED; returns how
/// many. The state changes first, so no URL is minted for an artifact being deleted.
pub async fn expire_artifacts<H: WorkerHost>(app: &H) -> Result<usize, sqlx::Error> {
    let retention_ms = i64::try_from(app.settings().artifact_retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = job::millis(app.clock().now()).saturating_sub(retention_ms);
    let mut expired = 0;
    for (job_id, key) in job::retention_due(app.db(), cutoff, EXPIRE_BATCH).await? {
        if !job::expire(app.db(), &job_id).await? {
            continue;
        }
        expired += 1;
        if let Some(key) = key {
            discard(app, &key).await;
        }
        tracing::info!(%job_id, "export artifact expired and deleted");
    }
    Ok(expired)
}

async fn maintenance<H: WorkerHost>(app: H, cancel: CancellationToken) {
    loop {
        if let Err(error) = recover(&app).await {
            tracing::error!(%error, "export job recovery failed");
        }
        if let Err(error) = expire_artifacts(&app).await {
            tracing::error!(%error, "export artifact expiry failed");
        }
        match job::count_by_state(app.db()).await {
            Ok(counts) => app.publish_job_counts(counts),
            Err(error) => tracing::warn!(%error, "could not count export jobs"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(app.settings().heartbeat_interval) => {}
        }
    }
}

async fn work<H: WorkerHost>(app: H, worker_id: String, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let now = job::millis(app.clock().now());
        match queue::claim(app.db(), &worker_id, now, app.settings().max_running_per_facility).await {
            Ok(Some(claimed)) => run(&app, claimed, &cancel).await,
            Ok(None) => {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = app.service().wake.notified() => {}
                    () = tokio::time::sleep(app.settings().poll_interval) => {}
                }
            }
            Err(error) => {
                tracing::error!(%error, worker = %worker_id, "claiming an export job failed");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(app.settings().poll_interval) => {}
                }
            }
        }
    }
}

/// Shared between a run's build thread and its heartbeat task.
struct RunSignals {
    /// Last progress the build reported (0..99 while running).
    progress: AtomicU8,
    /// Set when a heartbeat found the lease gone.
    lost: AtomicBool,
}

async fn run<H: WorkerHost>(app: &H, claimed: ClaimedJob, shutdown: &CancellationToken) {
    let job_id = claimed.job_id;
    tracing::info!(%job_id, attempt = claimed.row.attempts, "export job started");
    let spec = match claimed.row.spec() {
        Ok(spec) => spec,
        Err(error) => {
            tracing::error!(%job_id, %error, "stored export request does not parse");
            finish_failed(app, &claimed, "invalidRequest", "the stored export request is unreadable").await;
            return;
        }
    };
    let key = match app.service().store.artifact_key(&claimed.row.facility_id, job_id, claimed.row.attempts) {
        Ok(key) => key,
        Err(error) => {
            tracing::error!(%job_id, %error, "no valid artifact key");
            finish_failed(app, &claimed, "storageFailed", "the artifact key could not be built").await;
            return;
        }
    };

    let result = build_with_heartbeat(app, &claimed, spec, &key, shutdown).await;

    let now = job::millis(app.clock().now());
    match result {
        Ok(Ok(summary)) => {
            let storage_type = app.service().store.storage_type.as_str();
            match job::succeed(app.db(), &claimed, storage_type, &key, summary.bytes, now).await {
                Ok(true) => tracing::info!(
                    %job_id, bytes = summary.bytes, patients = summary.patients, skipped = summary.skipped,
                    "export job succeeded"
                ),
                Ok(false) => {
                    tracing::warn!(%job_id, "export finished after losing its job; discarding the artifact");
                    discard(app, &key).await;
                }
                Err(error) => {
                    tracing::error!(%job_id, %error, "could not record the finished export; recovery will retry it");
                    discard(app, &key).await;
                }
            }
        }
        Ok(Err(ArchiveError::Interrupted(reason))) => {
            tracing::info!(%job_id, reason, "export run interrupted");
            if shutdown.is_cancelled()
                && let Err(error) = job::release(app.db(), &claimed).await
            {
                tracing::error!(%job_id, %error, "could not hand the job back; recovery will requeue it");
            }
        }
        Ok(Err(error)) => {
            tracing::error!(%job_id, %error, "export job failed");
            let (code, message) = match &error {
                ArchiveError::Database(_) => ("databaseFailed", "clinical data could not be read"),
                ArchiveError::InvalidRequest(_) => ("invalidRequest", "the export request could not be processed"),
                _ => ("storageFailed", "the artifact could not be written to storage"),
            };
            finish_failed(app, &claimed, code, message).await;
        }
        Err(join_error) => {
            tracing::error!(%job_id, error = %join_error, "export build thread panicked");
            finish_failed(app, &claimed, "internal", "the export failed unexpectedly").await;
        }
    }
}

/// Builds the artifact on a blocking thread while a separate task heartbeats the job. The build reports
/// progress (at most once per percent) and stops at shutdown or when the run loses its lease.
async fn build_with_heartbeat<H: WorkerHost>(
    app: &H,
    claimed: &ClaimedJob,
    spec: ExportSpec,
    key: &str,
    shutdown: &CancellationToken,
) -> Result<Result<ArchiveSummary, ArchiveError>, tokio::task::JoinError> {
    let signals = Arc::new(RunSignals { progress: AtomicU8::new(0), lost: AtomicBool::new(false) });
    let stop_heartbeat = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat(app.clone(), claimed.clone(), Arc::clone(&signals), stop_heartbeat.clone()));

    let build = {
        let (app, claimed, signals, shutdown, key) =
            (app.clone(), claimed.clone(), Arc::clone(&signals), shutdown.clone(), key.to_owned());
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            let generated_at = app.clock().now();
            let job_id_text = claimed.job_id.to_string();
            let archive_job = ArchiveJob {
                db: app.db(),
                store: &app.service().store.blobs,
                key: &key,
                job_id: &job_id_text,
                facility_id: &claimed.row.facility_id,
                spec: &spec,
                generated_at,
            };
            let mut reported = 0u8;
            let mut control = |done: usize, total: usize| -> Result<(), ArchiveError> {
                if shutdown.is_cancelled() {
                    return Err(ArchiveError::Interrupted("the server is shutting down"));
                }
                if signals.lost.load(Ordering::SeqCst) {
                    return Err(ArchiveError::Interrupted("the job was taken over by recovery"));
                }
                let percent = u8::try_from((done * 100).checked_div(total).unwrap_or(0).min(99)).unwrap_or(99);
                if percent > reported {
                    reported = percent;
                    signals.progress.store(percent, Ordering::SeqCst);
                    let now = job::millis(app.clock().now());
                    match handle.block_on(job::heartbeat(app.db(), &claimed, percent, now)) {
                        Ok(true) => {}
                        Ok(false) => return Err(ArchiveError::Interrupted("the job was taken over by recovery")),
                        Err(error) => tracing::warn!(%error, "progress update failed; the heartbeat will retry"),
                    }
                }
                Ok(())
            };
            archive::build(&handle, &archive_job, &mut control)
        })
    };
    let result = build.await;
    stop_heartbeat.cancel();
    let _ = heartbeat.await;
    result
}

async fn heartbeat<H: WorkerHost>(app: H, claimed: ClaimedJob, signals: Arc<RunSignals>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(app.settings().heartbeat_interval) => {}
        }
        let now = job::millis(app.clock().now());
        match job::heartbeat(app.db(), &claimed, signals.progress.load(Ordering::SeqCst), now).await {
            Ok(true) => {}
            Ok(false) => {
                signals.lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(error) => tracing::warn!(job_id = %claimed.job_id, %error, "heartbeat failed"),
        }
    }
}

async fn finish_failed<H: WorkerHost>(app: &H, claimed: &ClaimedJob, code: &str, message: &str) {
    let now = job::millis(app.clock().now());
    if let Err(error) = job::fail(app.db(), claimed, code, message, now).await {
        tracing::error!(job_id = %claimed.job_id, %error, "could not record the failure; recovery will handle it");
    }
}

async fn discard<H: WorkerHost>(app: &H, key: &str) {
    if let Err(error) = app.service().store.blobs.delete(key).await {
        tracing::warn!(%error, key, "could not delete a discarded artifact");
    }
}
