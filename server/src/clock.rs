//! The server's notion of "now", injectable so tests can move time instead of sleeping.
//!
//! Token expiry (PHR-06 `exp`), signed-URL TTLs and the image burst window all depend on the current time.
//! Tests must pin those boundaries exactly (a 300 s TTL is not tested by sleeping 300 s), so every component
//! asks a [`Clock`] rather than calling `Utc::now()` itself.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// The wall clock, or a manual one that only moves when told.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    /// Shared so a test keeps a handle and advances the server's time.
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Manual(at) => *at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// Moves a manual clock forward; the system clock ignores this.
    pub fn advance(&self, by: Duration) {
        if let Self::Manual(at) = self {
            let mut at = at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *at += by;
        }
    }
}
