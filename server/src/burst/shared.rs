//! The PHR-07 burst budget kept in PostgreSQL, so every server instance on the database grants from one
//! budget per client (with N instances, a budget in each process would grant N times it).
//!
//! Each decision is one statement, `SELECT phr_image_burst_take(…)` (migration 0005): it locks the client's
//! row, drops the grants that left the window, and records the grant or answers how long until it would fit.
//! The rules are those of the in-process [`super::BurstLimiter`] (a grant counts while `now - t < window`,
//! close grants merged within `window / MAX_ENTRIES_PER_WINDOW`, waits rounded up to whole seconds), so the
//! answers are the same whichever store decides. Time is the deciding instance's clock; instances are
//! expected to keep theirs in sync (NTP), as the audit trail's timestamps already require.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{MAX_ENTRIES_PER_WINDOW, round_up_to_seconds};

/// Bytes per client in any sliding window, decided by PostgreSQL.
#[derive(Debug)]
pub struct SharedBurstLimiter {
    /// The database every instance shares.
    pool: PgPool,
    /// Bytes allowed per client in any window.
    budget_bytes: i64,
    /// The window, in milliseconds.
    window_ms: i64,
    /// Grants closer than this to an entry's first one are merged into it, in milliseconds.
    merge_ms: i64,
}

impl SharedBurstLimiter {
    pub fn new(pool: PgPool, budget_bytes: u64, window: Duration) -> Self {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        Self {
            pool,
            budget_bytes: i64::try_from(budget_bytes).unwrap_or(i64::MAX),
            window_ms,
            merge_ms: window_ms / i64::from(MAX_ENTRIES_PER_WINDOW),
        }
    }

    /// Records `bytes` for `client` at `now` if the window allows it; otherwise `Err` with the wait.
    pub async fn try_consume(
        &self,
        client: &str,
        bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Duration>, sqlx::Error> {
        let wait_ms: i64 = sqlx::query_scalar("SELECT phr_image_burst_take($1, $2, $3, $4, $5, $6)")
            .bind(client)
            .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
            .bind(now.timestamp_millis())
            .bind(self.budget_bytes)
            .bind(self.window_ms)
            .bind(self.merge_ms)
            .fetch_one(&self.pool)
            .await?;
        Ok(if wait_ms == 0 { Ok(()) } else { Err(round_up_to_seconds(chrono::Duration::milliseconds(wait_ms))) })
    }
}
