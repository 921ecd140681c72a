//! The PHR-07 image burst budget: at most `budget` bytes per client in ANY window-long interval.
//!
//! "200 MiB per 5 minutes" is a promise to the network team (the ops log's `X-Image-Burst-Limit`), so it is
//! kept as a true sliding window: each client has a log of `(time, bytes)` grants, and a request fits only if
//! the bytes granted in the last `window` plus its own stay within the budget. A token bucket (governor's
//! GCRA) would let a full bucket plus a refill through inside one window, up to twice the budget; a log
//! cannot. When a request does not fit, the answer is the earliest moment enough old grants leave the window
//! for it to fit, which becomes the 429's `Retry-After`.
//!
//! Memory stays bounded: grants falling within `window / MAX_ENTRIES_PER_WINDOW` of an entry's first grant
//! are merged into it and counted from the latest of them (that only keeps bytes in the window a little
//! longer, so the limiter can only get stricter, by at most that resolution), expired grants are dropped on
//! every call, and clients whose log has emptied are swept out once per window.
//!
//! [`ImageBudget`] is what the server holds: on PostgreSQL the log lives in the database and every instance
//! shares it ([`shared`]); on SQLite (one process by nature) it is the in-process [`BurstLimiter`].

pub mod shared;

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::db::Db;
use shared::SharedBurstLimiter;

/// Upper bound on the grants one client's log holds for a whole window (see the module docs).
pub(crate) const MAX_ENTRIES_PER_WINDOW: u32 = 1024;

/// One client's grants still inside the window, oldest first.
#[derive(Debug, Default)]
struct ClientLog {
    grants: VecDeque<Grant>,
    /// Sum of `grants[..].bytes`, so a decision does not walk the log.
    total: u64,
}

/// Bytes granted at `at`; merged grants span `first..=at` and count from their latest time.
#[derive(Debug, Clone, Copy)]
struct Grant {
    /// When the earliest grant merged into this one was made; bounds how much a single entry may span.
    first: DateTime<Utc>,
    /// When the latest merged grant was made; the entry leaves the window `window` after this.
    at: DateTime<Utc>,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Clients {
    logs: HashMap<String, ClientLog>,
    /// When idle clients were last swept out.
    last_sweep: Option<DateTime<Utc>>,
}

/// The image burst budget of this server: shared through PostgreSQL, or in this process on SQLite.
#[derive(Debug)]
pub enum ImageBudget {
    InProcess(BurstLimiter),
    Shared(SharedBurstLimiter),
}

impl ImageBudget {
    /// The budget store that fits `db`: the database itself when several instances may share it.
    pub fn for_database(db: &Db, budget_bytes: u64, window: Duration) -> Self {
        match db {
            Db::Postgres(pool) => Self::Shared(SharedBurstLimiter::new(pool.clone(), budget_bytes, window)),
            Db::Sqlite(_) => Self::InProcess(BurstLimiter::new(budget_bytes, window)),
        }
    }

    /// Records `bytes` for `client` at `now` if the window allows it; otherwise `Err` with the wait (see
    /// [`BurstLimiter::try_consume`]). The outer error is the database's, when the shared store cannot decide.
    pub async fn try_consume(
        &self,
        client: &str,
        bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Duration>, sqlx::Error> {
        match self {
            Self::InProcess(limiter) => Ok(limiter.try_consume(client, bytes, now)),
            Self::Shared(limiter) => limiter.try_consume(client, bytes, now).await,
        }
    }
}

/// Bytes per client in any sliding window.
#[derive(Debug)]
pub struct BurstLimiter {
    budget_bytes: u64,
    window: chrono::Duration,
    /// Grants closer than this are merged (bounds a client's log to about [`MAX_ENTRIES_PER_WINDOW`]).
    merge_within: chrono::Duration,
    clients: Mutex<Clients>,
}

impl BurstLimiter {
    /// A limiter allowing `budget_bytes` per client in any `window`.
    pub fn new(budget_bytes: u64, window: Duration) -> Self {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let merge_within = window / i32::try_from(MAX_ENTRIES_PER_WINDOW).unwrap_or(i32::MAX);
        Self { budget_bytes, window, merge_within, clients: Mutex::new(Clients::default()) }
    }

    /// The budget, for the `X-Image-Burst-Limit` header.
    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// Records `bytes` for `client` at `now` if the window allows it; otherwise how long until it would.
    ///
    /// A grant made at `t` counts while `now - t < window`: after exactly `window` it has left. The wait is
    /// rounded up to whole seconds and is at least one. A request larger than the whole budget can never fit;
    /// it is refused with the full window as the wait.
    pub fn try_consume(&self, client: &str, bytes: u64, now: DateTime<Utc>) -> Result<(), Duration> {
        if bytes > self.budget_bytes {
            return Err(round_up_to_seconds(self.window));
        }
        let mut clients = self.lock();
        self.sweep_idle_clients(&mut clients, now);
        let log = clients.logs.entry(client.to_owned()).or_default();
        self.expire(log, now);
        let wanted = log.total.saturating_add(bytes);
        if wanted <= self.budget_bytes {
            self.record(log, now, bytes);
            return Ok(());
        }
        // Walk oldest first until enough bytes would have left for this request to fit.
        let excess = wanted - self.budget_bytes;
        let mut freed = 0u64;
        let mut fits_at = now + self.window;
        for grant in &log.grants {
            freed += grant.bytes;
            if freed >= excess {
                fits_at = grant.at + self.window;
                break;
            }
        }
        let empty = log.grants.is_empty();
        if empty {
            clients.logs.remove(client);
        }
        Err(round_up_to_seconds(fits_at - now))
    }

    /// Number of clients currently tracked (for tests of the memory bound).
    pub fn tracked_clients(&self) -> usize {
        self.lock().logs.len()
    }

    fn lock(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops grants that have left the window at `now`.
    fn expire(&self, log: &mut ClientLog, now: DateTime<Utc>) {
        while let Some(oldest) = log.grants.front() {
            if now - oldest.at < self.window {
                break;
            }
            log.total -= oldest.bytes;
            log.grants.pop_front();
        }
    }

    fn record(&self, log: &mut ClientLog, now: DateTime<Utc>, bytes: u64) {
        if bytes == 0 {
            return;
        }
        log.total += bytes;
        match log.grants.back_mut() {
            Some(last) if now >= last.at && now - last.first < self.merge_within => {
                last.at = now;
                last.bytes += bytes;
            }
            _ => log.grants.push_back(Grant { first: now, at: now, bytes }),
        }
    }

    /// Once per window, forgets clients with nothing left in the window.
    fn sweep_idle_clients(&self, clients: &mut Clients, now: DateTime<Utc>) {
        if clients.last_sweep.is_some_and(|at| now - at < self.window) {
            return;
        }
        clients.last_sweep = Some(now);
        clients.logs.retain(|_, log| {
            self.expire(log, now);
            !log.grants.is_empty()
        });
    }
}

/// Whole seconds, rounded up, at least one (the unit of `Retry-After`).
pub(crate) fn round_up_to_seconds(wait: chrono::Duration) -> Duration {
    let millis = wait.num_milliseconds().max(1);
    let seconds = u64::try_from(millis).unwrap_or(1).div_ceil(1000);
    Duration::from_secs(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 1000;
    const WINDOW: Duration = Duration::from_secs(300);

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_763_500_000 + seconds, 0).unwrap()
    }

    fn ms(millis: i64) -> chrono::Duration {
        chrono::Duration::milliseconds(millis)
    }

    #[test]
    fn the_budget_is_reached_exactly_and_one_more_byte_is_refused() {
        let limiter = BurstLimiter::new(BUDGET, WINDOW);

        let first = limiter.try_consume("c", BUDGET - 1, at(0));
        let last_byte = limiter.try_consume("c", 1, at(10));
        let one_more = limiter.try_consume("c", 1, at(20));

        assert_eq!(first, Ok(()));
        assert_eq!(last_byte, Ok(()));
        // The first grant (at 0) must leave before one more byte fits: at 300, i.e. 280 s from 20.
        assert_eq!(one_more, Err(Duration::from_secs(280)));
    }

    #[test]
    fn a_grant_leaves_the_window_after_exactly_the_window_and_not_a_millisecond_before() {
        let limiter = BurstLimiter::new(BUDGET, WINDOW);
        limiter.try_consume("c", BUDGET, at(0)).unwrap();

        let just_before = limiter.try_consume("c", 1, at(300) - ms(1));
        let exactly = limiter.try_consume("c", BUDGET, at(300));

        assert_eq!(just_before, Err(Duration::from_secs(1)), "1 ms left rounds up to 1 s");
        assert_eq!(exactly, Ok(()));
    }

    #[test]
    fn it_is_a_sliding_window_not_a_bucket_no_interval_holds_more_than_the_budget() {
        // A token bucket would accept a full burst at 0 and another at 150; the sliding window must not.
        let limiter = BurstLimiter::new(BUDGET, WINDOW);
        limiter.try_consume("c", 600, at(0)).unwrap();
        limiter.try_consume("c", 400, at(150)).unwrap();

        let at_299 = limiter.try_consume("c", 600, at(299));
        let at_300 = limiter.try_consume("c", 600, at(300));
        let at_300_again = limiter.try_consume("c", 1, at(300));

        assert_eq!(at_299, Err(Duration::from_secs(1)));
        assert_eq!(at_300, Ok(()), "the grant at 0 has left; 400 + 600 fit");
        // Now 400 (at 150) + 600 (at 300) are in the window; the 400 leaves at 450.
        assert_eq!(at_300_again, Err(Duration::from_secs(150)));
    }

    #[test]
    fn retry_after_names_the_first_moment_enough_bytes_have_left() {
        let limiter = BurstLimiter::new(BUDGET, WINDOW);
        limiter.try_consume("c", 100, at(0)).unwrap();
        limiter.try_consume("c", 100, at(100)).unwrap();
        limiter.try_consume("c", 800, at(200)).unwrap();

        // 250 bytes need the grants at 0 and 100 (200 bytes) plus ... the one at 200: leaves at 500.
        let needs_three = limiter.try_consume("c", 250, at(250));
        // 150 bytes need the grants at 0 and 100 to leave: at 400.
        let needs_two = limiter.try_consume("c", 150, at(250) + ms(500));

        assert_eq!(needs_three, Err(Duration::from_secs(250)));
        assert_eq!(needs_two, Err(Duration::from_secs(150)), "149.5 s rounds up");
    }

    #[test]
    fn clients_are_independent_and_oversized_requests_never_fit() {
        let limiter = BurstLimiter::new(BUDGET, WINDOW);
        limiter.try_consume("a", BUDGET, at(0)).unwrap();

        assert_eq!(limiter.try_consume("b", BUDGET, at(1)), Ok(()));
        assert_eq!(limiter.try_consume("b", BUDGET + 1, at(400)), Err(WINDOW));
    }

    #[test]
    fn idle_clients_are_forgotten_and_close_grants_are_merged() {
        let limiter = BurstLimiter::new(1_000_000, WINDOW);
        for client in 0..100 {
            limiter.try_consume(&format!("client-{client}"), 10, at(0)).unwrap();
        }
        assert_eq!(limiter.tracked_clients(), 100);

        limiter.try_consume("late", 10, at(301)).unwrap();

        assert_eq!(limiter.tracked_clients(), 1);
        let merged = BurstLimiter::new(1_000_000, WINDOW);
        for step in 0..10_000 {
            merged.try_consume("busy", 1, at(0) + ms(step)).unwrap();
        }
        let clients = merged.lock();
        let log = &clients.logs["busy"];
        // 10 s of grants, one entry per 293 ms of resolution (300 s / 1024): about 35 entries, 10,000 bytes.
        assert!((30..=40).contains(&log.grants.len()), "{} entries", log.grants.len());
        assert_eq!(log.total, 10_000);
    }
}
