//! Everything a person reads about finished runs: the Markdown of one run, the daily/weekly/status-row
//! log entries, history tables and trends, the HTML report, the matrix of a run against several targets, and
//! `--append` into hand-written logs.
//!
//! Reports read evidence records (`status.json` and the files beside it, through [`crate::evidence`] and the
//! run index of [`crate::compare`]); they never import the probe engine, tokio or hyper, and never touch the
//! network (checked by `tests/it/architecture.rs`).

pub mod append;
pub mod check;
pub mod clock;
pub mod context;
pub mod history;
pub mod html;
pub mod html_pages;
pub mod items;
pub mod logs;
pub mod markdown;
pub mod matrix;
pub mod trends;
pub mod views;
pub mod wording;

pub use context::ReportSettings;
pub use markdown::*;
