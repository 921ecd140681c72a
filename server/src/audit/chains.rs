//! Which chain a row joins, and the lock and group-commit writer that serialise each chain's appends.
//!
//! With one chain every append in the server waited for every other, though nothing requires rows of two
//! facilities to be ordered against each other: a verifier only needs each chain to be unbroken in id order.
//! So by default (`PHR_AUDIT_CHAINS=facility`) an authenticated caller's rows join the chain named by its
//! facility id, and rows without an authenticated facility (a failed login, a rejected request; a claimed
//! facility is the caller's word and never picks a chain) join `main`. A facility whose id is `main` shares
//! that chain, which costs it nothing but a wait.
//!
//! Appends are serialised per *lane*: on PostgreSQL a lane is one chain, with its own in-process lock, its
//! own advisory lock across processes (`tx.rs`) and its own writer task, so batches of different facilities
//! commit side by side. SQLite has one write lock for the whole file, so there every chain shares one lane:
//! one lock and one writer whose batch appends each chain's rows in the same transaction and flush.
//!
//! A lane lives as long as the server: its writer is a parked task and an idle lock a few bytes. Chains are
//! bounded by the facilities that can authenticate (`phr_user`), which operators provision.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use tokio::sync::Mutex;

pub use super::tx::MAIN_CHAIN;
use super::writer::GroupWriter;
use crate::config::audit::ChainPolicy;

/// One lane: what serialises its chains' appends in this process, and its group-commit writer.
#[derive(Debug, Default)]
pub(super) struct Lane {
    /// Held by an `AuditTx` until it ends, and by the writer for each batch.
    pub(super) lock: Arc<Mutex<()>>,
    /// Started on the lane's first plain append (on the runtime that makes it).
    pub(super) writer: OnceLock<GroupWriter>,
}

/// The chain policy and the lanes made so far.
#[derive(Debug)]
pub(super) struct Chains {
    /// How a row's chain is chosen.
    policy: ChainPolicy,
    /// PostgreSQL: a lane per chain. SQLite: one lane for every chain (one write lock per file).
    lane_per_chain: bool,
    /// Lanes by key (the chain, or `""` for SQLite's one lane).
    lanes: std::sync::Mutex<HashMap<String, Arc<Lane>>>,
}

impl Chains {
    pub(super) fn new(policy: ChainPolicy, lane_per_chain: bool) -> Self {
        Self { policy, lane_per_chain, lanes: std::sync::Mutex::default() }
    }

    /// The chain of a row whose authenticated facility is `facility` (`None` when nobody authenticated).
    pub(super) fn chain_of(&self, facility: Option<&str>) -> String {
        match (self.policy, facility) {
            (ChainPolicy::Facility, Some(facility)) if !facility.is_empty() => facility.to_owned(),
            _ => MAIN_CHAIN.to_owned(),
        }
    }

    /// The lane `chain`'s appends are serialised in, made on first use.
    pub(super) fn lane(&self, chain: &str) -> Arc<Lane> {
        let key = if self.lane_per_chain { chain } else { "" };
        // A poisoned map only means another thread panicked while inserting: the map itself is intact.
        let mut lanes = self.lanes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Every append asks; only a lane's first use allocates its key.
        if let Some(lane) = lanes.get(key) {
            return lane.clone();
        }
        lanes.entry(key.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_facility_picks_its_chain_only_under_the_facility_policy_and_nobody_gets_main() {
        let chains = Chains::new(ChainPolicy::Facility, true);
        assert_eq!(chains.chain_of(Some("F001")), "F001");
        assert_eq!(chains.chain_of(None), MAIN_CHAIN);
        assert_eq!(chains.chain_of(Some("")), MAIN_CHAIN);
        let single = Chains::new(ChainPolicy::Single, true);
        assert_eq!(single.chain_of(Some("F001")), MAIN_CHAIN);
    }

    #[test]
    fn postgres_lanes_are_per_chain_and_sqlite_has_one() {
        let pg = Chains::new(ChainPolicy::Facility, true);
        assert!(Arc::ptr_eq(&pg.lane("F001"), &pg.lane("F001")));
        assert!(!Arc::ptr_eq(&pg.lane("F001"), &pg.lane("F002")));
        let sqlite = Chains::new(ChainPolicy::Facility, false);
        assert!(Arc::ptr_eq(&sqlite.lane("F001"), &sqlite.lane(MAIN_CHAIN)));
    }
}
