//! The command line: what can be typed ([`args`]), what it concluded ([`error`]), and the commands.
//!
//! Exit codes follow HARNESS.md §7: 0 everything as expected, 1 a probe/check found a problem
//! ([`Verdict::Problem`]), 2 the harness could not do its job (any [`CliError`], or [`Verdict::Incomplete`]
//! after partial output). Each command's work lives in [`commands`] (run, new, preflight, verify, templates),
//! [`run_one`] (one run against one target), [`matrix`] (a run against several targets), [`routine`] (diff,
//! parity, history, report, archive) and [`demo`]; [`output`] prints results and loads templates and targets
//! for all of them.

pub mod args;
pub mod commands;
pub mod demo;
pub mod error;
pub mod matrix;
pub mod output;
pub mod pki;
pub mod routine;
pub mod run_one;
pub mod schedule;
pub mod weekly;

pub use args::{Cli, GlobalArgs};
pub use commands::dispatch;
pub use error::{CliError, Verdict};
