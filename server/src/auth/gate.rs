//! The gate every argon2id verification passes: a fixed number of slots, each with its own reusable argon2
//! memory, and a bounded queue in front of them.
//!
//! argon2's own `verify_password` allocates its memory (about 19 MiB) afresh for every check; a flood of
//! distinct credentials on the blocking pool then runs hundreds at once and leaves the allocator holding
//! gigabytes. Here a verification first takes a [`Slot`]: a semaphore permit plus a memory buffer that
//! returns to the pool when the slot is dropped, so the server never holds more than `max_concurrent`
//! buffers, whatever arrives. When every slot is busy a caller may wait, but only `max_queued` may; the next
//! is refused at once ([`QueueFull`]). The slot travels into the blocking task and is released only when the
//! hash is done, so a client that hangs up cannot make room for more checks than there are slots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use subtle::ConstantTimeEq as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// The largest `m` (KiB) of a stored hash this server verifies: 64 MiB, about three times argon2's default.
/// A row asking for more is treated as a mismatch (and logged), so no row can make one check unbounded.
pub const MAX_MEMORY_KIB: u32 = 64 * 1024;

/// Every slot is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// Bounds concurrent argon2id verifications; cheap to clone.
#[derive(Clone, Debug)]
pub struct VerifyGate(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// One permit per slot.
    slots: Arc<Semaphore>,
    /// argon2 memory of the idle slots; never more buffers than slots.
    buffers: Mutex<Vec<Vec<Block>>>,
    /// Callers waiting for a slot now.
    waiting: AtomicUsize,
    /// Callers allowed to wait at once.
    max_queued: usize,
    /// Where in-flight, peak and queue figures are published.
    metrics: Arc<Metrics>,
}

/// The right to run one verification, with the memory to run it in.
pub struct Slot {
    /// argon2's working memory, returned to the pool on drop.
    buffer: Vec<Block>,
    /// The gate the buffer goes back to.
    gate: Arc<Inner>,
    /// Released after the buffer is back (fields drop after `Drop::drop`).
    _permit: OwnedSemaphorePermit,
}

impl VerifyGate {
    pub fn new(max_concurrent: u32, max_queued: u32, metrics: Arc<Metrics>) -> Self {
        let slots = usize::try_from(max_concurrent).unwrap_or(1).max(1);
        Self(Arc::new(Inner {
            slots: Arc::new(Semaphore::new(slots)),
            buffers: Mutex::new(Vec::with_capacity(slots)),
            waiting: AtomicUsize::new(0),
            max_queued: usize::try_from(max_queued).unwrap_or(usize::MAX),
            metrics,
        }))
    }

    /// A free slot, after waiting in the queue if there is room in it; [`QueueFull`] at once otherwise.
    pub async fn acquire(&self) -> Result<Slot, QueueFull> {
        let inner = &self.0;
        let permit = match inner.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if inner.waiting.fetch_add(1, Ordering::AcqRel) >= inner.max_queued {
                    inner.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(QueueFull);
                }
                let _waiting = Waiting::enter(inner);
                inner.slots.clone().acquire_owned().await.map_err(|_| QueueFull)?
            }
        };
        let buffer = inner.buffers.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
        inner.metrics.auth_verification_started();
        Ok(Slot { buffer, gate: inner.clone(), _permit: permit })
    }
}

/// Counts one caller in the queue (already added to `waiting`) and takes it out when dropped.
struct Waiting<'a>(&'a Inner);

impl<'a> Waiting<'a> {
    fn enter(inner: &'a Inner) -> Self {
        inner.metrics.auth_waiting(1);
        Self(inner)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.auth_waiting(-1);
    }
}

impl Slot {
    /// Checks `password` against the argon2 PHC string `phc` in this slot's memory: `true` on a match.
    /// Blocking (tens of milliseconds); call it on a blocking thread.
    pub fn verify(&mut self, password: &[u8], phc: &str) -> bool {
        let matched = self.try_verify(password, phc).unwrap_or_else(|problem| {
            tracing::error!(problem, "stored password hash cannot be verified; treated as a mismatch");
            false
        });
        // The buffer held state derived from the password; clear it before anyone else uses it.
        self.buffer.fill(Block::default());
        matched
    }

    fn try_verify(&mut self, password: &[u8], phc: &str) -> Result<bool, &'static str> {
        let hash = PasswordHash::new(phc).map_err(|_| "not a PHC string")?;
        let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return Err("no salt or no hash") };
        let algorithm = Algorithm::try_from(hash.algorithm.as_str()).map_err(|_| "not an argon2 variant")?;
        let version = hash.version.map(Version::try_from).transpose().map_err(|_| "unknown argon2 version")?;
        let params = Params::try_from(&hash).map_err(|_| "bad argon2 parameters")?;
        if params.m_cost() > MAX_MEMORY_KIB {
            return Err("m is larger than this server verifies (MAX_MEMORY_KIB)");
        }
        let blocks = params.block_count();
        if self.buffer.len() < blocks {
            self.buffer.resize(blocks, Block::default());
        }
        let argon2 = Argon2::new(algorithm, version.unwrap_or_default(), params);
        let mut computed = vec![0u8; expected.len()];
        argon2
            .hash_password_into_with_memory(password, salt.as_ref(), &mut computed, &mut self.buffer[..blocks])
            .map_err(|_| "argon2 refused the inputs")?;
        Ok(bool::from(computed.as_slice().ct_eq(expected.as_ref())))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.gate.buffers.lock().unwrap_or_else(|p| p.into_inner()).push(buffer);
        self.gate.metrics.auth_verification_finished();
    }
}

#[cfg(test)]
mod tests {
    use argon2::PasswordVerifier as _;

    use super::*;
    use crate::auth::hash_password;

    #[tokio::test]
    async fn a_reused_slot_verifies_exactly_as_argon2_does() {
        let gate = VerifyGate::new(1, 0, Arc::default());
        let phc = hash_password("right").unwrap();

        let (wrong, right, right_again) = {
            let mut slot = gate.acquire().await.unwrap();
            (slot.verify(b"wrong", &phc), slot.verify(b"right", &phc), slot.verify(b"right", &phc))
        };

        assert_eq!((wrong, right, right_again), (false, true, true));
        assert!(Argon2::default().verify_password(b"right", phc.as_str()).is_ok());
        assert!(!gate.acquire().await.unwrap().verify(b"right", "not a hash"));
    }

    #[tokio::test]
    async fn no_more_slots_than_configured_and_no_more_waiting_than_the_queue() {
        let gate = VerifyGate::new(1, 1, Arc::default());
        let held = gate.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire().await.map(drop) }
        });
        while gate.0.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }

        let refused = gate.acquire().await.err();
        drop(held);

        assert_eq!(refused, Some(QueueFull));
        assert_eq!(waiter.await.unwrap(), Ok(()), "the queued caller gets the slot when it is free");
        assert_eq!(gate.0.buffers.lock().unwrap().len(), 1, "one slot, one buffer");
    }
}
