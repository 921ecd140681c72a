//! Signed checkpoints, written by a task of their own (PHR_API.md §5): every `PHR_AUDIT_CHECKPOINT_ROWS`
//! appended rows, or every `PHR_AUDIT_CHECKPOINT_SECONDS` while the head moves, and once more on shutdown,
//! the head of each chain (last id, event hash, row count) is signed with the Ed25519 key and written to the
//! [`sink`], and the newest per chain is kept for `GET /audit/checkpoint` on the ops listener.
//!
//! Appending never waits for it: a commit only adds to a counter, notes its chain and wakes the task
//! ([`AppendSignal`]); the task reads the heads with its own queries, after the commit. Each chain's row count
//! is kept incrementally (rows of the chain above the last id counted), because a chain's rows are committed
//! in id order under its lock, so a reader sees a prefix of each chain. Chains commit side by side, so ids
//! of *different* chains are not committed in id order: nothing here counts across chains. A round after
//! appends reads the chains this process appended to; the first round, every timed round and the last one
//! read every chain in the table (found through the `(chain_id, id)` index, one probe per chain), so rows
//! another instance appended are signed too. The document format and the signed bytes are
//! `auditchain::checkpoint`'s.

pub mod sink;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use auditchain::checkpoint::{Checkpoint, FORMAT, SignedCheckpoint};
use chrono::SecondsFormat;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::audit::CheckpointConfig;
use crate::db::Db;
use sink::{CheckpointSink, Put};

/// Why `audit keygen` could not write the key pair.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error(transparent)]
    Key(#[from] auditchain::checkpoint::KeyError),
    #[error("{path}: {source} (an existing key file is never overwritten)")]
    Write { path: String, source: std::io::Error },
}

/// Writes a new Ed25519 key pair (private PKCS#8 PEM with mode 0600, public key PEM), refusing to overwrite
/// either file; returns the public key's fingerprint.
pub fn keygen(private_path: &Path, public_path: &Path) -> Result<String, KeygenError> {
    let (private_pem, key) = auditchain::checkpoint::SigningKey::generate()?;
    let write = |path: &Path, text: &str, mode: u32| {
        let error = |source| KeygenError::Write { path: path.display().to_string(), source };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut file = options.open(path).map_err(error)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(error)
    };
    write(private_path, &private_pem, 0o600)?;
    write(public_path, &key.public_key().to_pem(), 0o644)?;
    Ok(key.public_key().fingerprint())
}

/// Rows committed since start, the chains they joined, and a wake-up for the checkpoint task. Costs an
/// atomic add and a short lock per commit.
#[derive(Debug, Default)]
pub struct AppendSignal {
    /// Rows committed by this process.
    rows: AtomicU64,
    /// Chains appended to since the task last read them.
    chains: std::sync::Mutex<BTreeSet<String>>,
    /// Wakes the task.
    notify: Notify,
}

impl AppendSignal {
    /// Called after a commit that appended `rows` rows to `chain`.
    pub fn committed(&self, chain: &str, rows: usize) {
        if rows > 0 {
            let mut chains = self.chains.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !chains.contains(chain) {
                chains.insert(chain.to_owned());
            }
            drop(chains);
            self.rows.fetch_add(rows as u64, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }

    /// The chains appended to since the last call.
    fn take_chains(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.chains.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The newest checkpoint of each chain this process signed, for the ops listener.
#[derive(Debug, Default, Clone)]
pub struct Latest(Arc<RwLock<BTreeMap<String, SignedCheckpoint>>>);

impl Latest {
    /// The newest checkpoint of `chain`, if one was signed since start.
    pub fn get(&self, chain: &str) -> Option<SignedCheckpoint> {
        self.0.read().ok()?.get(chain).cloned()
    }

    fn set(&self, signed: SignedCheckpoint) {
        if let Ok(mut map) = self.0.write() {
            map.insert(signed.checkpoint.chain_id.clone(), signed);
        }
    }
}

/// The running task; [`CheckpointTask::stop`] writes the final checkpoint and waits for it.
pub struct CheckpointTask {
    /// Tells the task to write its final checkpoint and end.
    stop: watch::Sender<bool>,
    /// The task.
    handle: JoinHandle<()>,
}

impl CheckpointTask {
    /// Starts the task on the current runtime.
    pub fn start(
        db: Db,
        clock: Clock,
        config: CheckpointConfig,
        sink: CheckpointSink,
        signal: Arc<AppendSignal>,
        latest: Latest,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let writer = Writer { db, clock, config, sink, latest, heads: Heads::default() };
        let handle = tokio::spawn(writer.run(signal, stopped));
        Self { stop, handle }
    }

    /// Writes a final checkpoint of whatever was appended since the last one, then ends the task.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// What the task knows of the table: per chain its head and row count.
#[derive(Debug, Default)]
struct Heads {
    /// Per chain: last id counted (rows of the chain with ids up to it are counted), rows, last event hash.
    chains: BTreeMap<String, (i64, u64, String)>,
    /// Per chain: the last id a checkpoint was written for.
    signed: BTreeMap<String, i64>,
}

/// The task's state.
struct Writer {
    /// Where `d_audit_event` is.
    db: Db,
    /// Stamps `signed_at`.
    clock: Clock,
    /// Key, destination, frequency.
    config: CheckpointConfig,
    /// Where documents go.
    sink: CheckpointSink,
    /// The newest per chain, for the ops listener.
    latest: Latest,
    /// The table as counted so far.
    heads: Heads,
}

impl Writer {
    async fn run(mut self, signal: Arc<AppendSignal>, mut stopped: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.config.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rows_at_last = 0u64;
        let mut appended = BTreeSet::new();
        loop {
            let every_chain = tokio::select! {
                // A stop, or the handle gone: the final checkpoint either way.
                _ = stopped.changed() => {
                    self.round(None).await;
                    return;
                }
                () = signal.notify.notified() => {
                    let rows = signal.rows.load(Ordering::Relaxed);
                    if rows.saturating_sub(rows_at_last) < self.config.every_rows {
                        continue;
                    }
                    rows_at_last = rows;
                    false
                }
                _ = ticks.tick() => {
                    rows_at_last = signal.rows.load(Ordering::Relaxed);
                    true
                }
            };
            // Kept until a round reads them, so a failed round loses no chain.
            appended.extend(signal.take_chains());
            if self.round((!every_chain).then(|| appended.clone())).await {
                appended.clear();
            }
        }
    }

    /// Reads the heads of `chains` (every chain in the table when `None`) and writes a checkpoint for every
    /// chain whose head moved; failures are logged and retried next round (the head is still unsigned then).
    /// Whether the heads could be read.
    async fn round(&mut self, chains: Option<BTreeSet<String>>) -> bool {
        if let Err(error) = self.count(chains).await {
            tracing::warn!(%error, "audit checkpoint: reading the chain heads failed; retried next round");
            return false;
        }
        let moved: Vec<(String, (i64, u64, String))> = self
            .heads
            .chains
            .iter()
            .filter(|(chain, (last_id, _, _))| self.heads.signed.get(*chain) != Some(last_id))
            .map(|(chain, head)| (chain.clone(), head.clone()))
            .collect();
        for (chain_id, (last_id, rows, event_hash)) in moved {
            let checkpoint = Checkpoint {
                chain_id: chain_id.clone(),
                event_hash,
                format: FORMAT.to_owned(),
                key_id: self.config.key.public_key().fingerprint(),
                last_id,
                rows,
                signed_at: self.clock.now().to_rfc3339_opts(SecondsFormat::Millis, true),
            };
            let signed = self.config.key.sign(checkpoint);
            match self.sink.put(&signed).await {
                Ok(put) => {
                    if put == Put::AlreadyThere {
                        tracing::debug!(chain = %chain_id, last_id, "audit checkpoint already written by another instance");
                    }
                    self.heads.signed.insert(chain_id, last_id);
                    self.latest.set(signed);
                }
                Err(error) => {
                    tracing::warn!(%error, chain = %chain_id, last_id, "audit checkpoint not written; retried next round")
                }
            }
        }
        true
    }

    /// Counts each chain's rows above its last counted id and reads the moved chains' head hashes: the chains
    /// named, or every chain in the table when `None`.
    async fn count(&mut self, chains: Option<BTreeSet<String>>) -> Result<(), sqlx::Error> {
        // One index probe per chain: the smallest chain id above the previous one, until there is none.
        const CHAINS_SQL: &str = "WITH RECURSIVE c(id) AS (SELECT MIN(chain_id) FROM d_audit_event UNION ALL \
             SELECT (SELECT MIN(chain_id) FROM d_audit_event WHERE chain_id > c.id) FROM c WHERE c.id IS NOT NULL) \
             SELECT id FROM c WHERE id IS NOT NULL";
        const GROWN_SQL: &str = "SELECT COUNT(*), MAX(id) FROM d_audit_event WHERE chain_id = $1 AND id > $2";
        const HASH_SQL: &str = "SELECT event_hash FROM d_audit_event WHERE id = $1";
        let chains: Vec<String> = match chains {
            Some(chains) => chains.into_iter().collect(),
            None => crate::with_pool!(&self.db, |pool| sqlx::query_scalar(CHAINS_SQL).fetch_all(pool).await)?,
        };
        let mut grown = Vec::new();
        for chain in chains {
            let from = self.heads.chains.get(&chain).map_or(0, |(last_id, _, _)| *last_id);
            let (count, last_id): (i64, Option<i64>) = crate::with_pool!(&self.db, |pool| sqlx::query_as(GROWN_SQL)
                .bind(&chain)
                .bind(from)
                .fetch_one(pool)
                .await)?;
            let Some(last_id) = last_id else { continue };
            let hash: String =
                crate::with_pool!(&self.db, |pool| sqlx::query_scalar(HASH_SQL).bind(last_id).fetch_one(pool).await)?;
            grown.push((chain, count, last_id, hash));
        }
        // Applied only once everything was read, so a failed read leaves the counts as they were.
        for (chain, count, last_id, hash) in grown {
            let entry = self.heads.chains.entry(chain).or_insert((0, 0, String::new()));
            *entry = (last_id, entry.1 + u64::try_from(count).unwrap_or(0), hash);
        }
        Ok(())
    }
}
