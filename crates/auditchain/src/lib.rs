//! The audit chain's pure parts, shared by `phr-server` (which writes and verifies `d_audit_event`) and
//! `connrun` (which proves its own run's rows), so the two compute the same seals and read the same
//! checkpoints without connrun depending on the server.
//!
//! [`seal`] the hash versions 1 and 2 of a row, [`walk`] the check of one row against its chain,
//! [`checkpoint`] the signed checkpoint documents and their Ed25519 keys, [`watch`] a walk held against
//! checkpoints. No I/O beyond reading key files: each program reads rows its own way.

pub mod checkpoint;
pub mod seal;
pub mod walk;
pub mod watch;
