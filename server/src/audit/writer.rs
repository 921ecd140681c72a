//! Group commit: one writer task drains the rows waiting to be appended into one transaction and one flush,
//! and answers each waiter only after that commit.
//!
//! Appending one row at a time made the chain the server's ceiling: every row held the chain lock across
//! BEGIN, the lock, a read of the head, the insert and a COMMIT that waits for the log flush. The writer
//! takes whatever calls are queued (up to [`MAX_CALLS_PER_BATCH`]), holds the chain lock once for all of
//! them, reads the head once, inserts the rows in order and commits once. A call's rows stay together and
//! in order. When a batch fails (one row refused, say), each call of it is retried in a transaction of its
//! own, so only the call whose row cannot be written fails closed.
//!
//! There is one writer per lane (`chains.rs`): per chain on PostgreSQL, so facilities commit side by side;
//! one for every chain on SQLite, whose batch appends each chain's rows in the same transaction.
//!
//! The writer is a task of its own: a request that is cancelled while waiting only stops listening, it
//! cannot leave a transaction open. Calls that change data do not come here; they hold the same lane lock
//! through `AuditTx`, so their transactions and the batches take turns.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::checkpoint::AppendSignal;
use super::tx::{append_rows, begin_chain_transaction};
use super::{AuditError, AuditEvent};
use crate::clock::Clock;
use crate::db::Db;
use crate::dbtx::DbTx;

/// Calls drained into one transaction at most (each brings one to a few rows).
const MAX_CALLS_PER_BATCH: usize = 256;
/// Calls that may wait for the writer before senders wait for room.
const QUEUE_CAPACITY: usize = 4096;

/// One call's rows and where to answer.
pub(super) struct Pending {
    /// The chain the call's rows join (a call's rows stay together in one chain).
    chain: String,
    /// The call's rows, in order.
    events: Vec<AuditEvent>,
    /// Receives the rows' ids once committed, or why they were not.
    done: oneshot::Sender<Result<Vec<i64>, AuditError>>,
}

/// The handle appenders send to.
#[derive(Debug, Clone)]
pub(super) struct GroupWriter {
    /// The writer task's queue.
    queue: mpsc::Sender<Pending>,
}

impl GroupWriter {
    /// Starts the writer task on the current runtime.
    pub(super) fn start(db: Db, clock: Clock, lock: Arc<Mutex<()>>, signal: Arc<AppendSignal>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(db, clock, lock, signal, receiver));
        Self { queue }
    }

    /// Queues a call's rows for `chain` and waits until they are committed (or refused).
    pub(super) async fn append(&self, chain: String, events: Vec<AuditEvent>) -> Result<Vec<i64>, AuditError> {
        let (done, answer) = oneshot::channel();
        self.queue.send(Pending { chain, events, done }).await.map_err(|_| AuditError::WriterStopped)?;
        answer.await.map_err(|_| AuditError::WriterStopped)?
    }
}

/// The writer task: until every sender is gone, take the queued calls and commit them as one batch.
async fn run(
    db: Db,
    clock: Clock,
    lock: Arc<Mutex<()>>,
    signal: Arc<AppendSignal>,
    mut receiver: mpsc::Receiver<Pending>,
) {
    let mut batch = Vec::with_capacity(MAX_CALLS_PER_BATCH);
    while receiver.recv_many(&mut batch, MAX_CALLS_PER_BATCH).await > 0 {
        let _serialised = lock.lock().await;
        commit_batch(&db, &clock, &signal, std::mem::take(&mut batch)).await;
    }
}

/// Commits the calls of `batch` together and answers each; on failure, retries each call on its own.
async fn commit_batch(db: &Db, clock: &Clock, signal: &AppendSignal, batch: Vec<Pending>) {
    match write(db, clock, signal, &batch).await {
        Ok(mut ids) => {
            for (pending, own) in batch.into_iter().zip(ids.drain(..)) {
                let _ = pending.done.send(Ok(own));
            }
        }
        Err(error) if batch.len() == 1 => {
            let _ = batch.into_iter().next().map(|pending| pending.done.send(Err(error)));
        }
        Err(_) => {
            for pending in batch {
                let result = write(db, clock, signal, std::slice::from_ref(&pending)).await;
                let _ = pending.done.send(result.map(|mut ids| ids.pop().unwrap_or_default()));
            }
        }
    }
}

/// One transaction: begin, append each chain's rows of `calls` (chains in order of first appearance, a
/// chain's calls in queue order), commit; rolled back on any error. Returns each call's ids, in order.
async fn write(db: &Db, clock: &Clock, signal: &AppendSignal, calls: &[Pending]) -> Result<Vec<Vec<i64>>, AuditError> {
    let mut chains: Vec<(&str, Vec<usize>)> = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        match chains.iter_mut().find(|(chain, _)| *chain == call.chain) {
            Some((_, members)) => members.push(index),
            None => chains.push((&call.chain, vec![index])),
        }
    }
    // A lane on PostgreSQL is one chain, so its advisory lock is that chain's; on SQLite `BEGIN IMMEDIATE`
    // serialises every chain whichever is named.
    let mut tx = begin_chain_transaction(db, chains.first().map_or(super::tx::MAIN_CHAIN, |(chain, _)| chain)).await?;
    let mut ids = vec![Vec::new(); calls.len()];
    for (chain, members) in &chains {
        let events: Vec<AuditEvent> = members.iter().flat_map(|&i| calls[i].events.iter().cloned()).collect();
        let appended = match append_rows(&mut tx, clock, chain, &events).await {
            Ok(appended) => appended,
            Err(error) => return Err(roll_back(tx, error).await),
        };
        let mut appended = appended.into_iter();
        for &i in members {
            ids[i] = appended.by_ref().take(calls[i].events.len()).collect();
        }
    }
    match tx {
        DbTx::Postgres(tx) => tx.commit().await?,
        DbTx::Sqlite(tx) => tx.commit().await?,
    }
    for (chain, members) in &chains {
        signal.committed(chain, members.iter().map(|&i| ids[i].len()).sum());
    }
    Ok(ids)
}

/// Rolls back a batch whose append failed and returns why it failed.
async fn roll_back(tx: DbTx, error: sqlx::Error) -> AuditError {
    let rolled_back = match tx {
        DbTx::Postgres(tx) => tx.rollback().await,
        DbTx::Sqlite(tx) => tx.rollback().await,
    };
    if let Err(rollback) = rolled_back {
        tracing::warn!(%rollback, "rollback of a refused audit batch failed; the pool resets the connection");
    }
    error.into()
}
