//! Finished runs side by side: the run index (find, load and verify runs), diff of two runs, parity of two
//! servers, and archives of a sealed run.
//!
//! Comparison reads evidence records only ([`crate::evidence`]); it never imports the probe engine, tokio or
//! hyper (checked by `tests/it/architecture.rs`).

pub mod archive;
pub mod diff;
pub mod parity;
pub mod runindex;
pub mod statusread;
