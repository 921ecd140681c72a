//! connrun: RUN_ID-driven connectivity runs against the PHR API, with evidence a reviewer can trust.
//!
//! The binary (`main.rs`) is a thin shell over this library, in the shape of ripgrep: configuration is parsed
//! raw (templates, targets), validated once into a typed [`plan::Plan`], then executed by [`run`], which
//! writes the evidence tree of HARNESS.md §4 through [`evidence`] and renders the Markdown with [`report`].
//!
//! One folder per concern, and dependencies point one way (ARCHITECTURE.md; `tests/it/architecture.rs`
//! fails the build's tests when they do not):
//!
//! ```text
//! cli ──▶ run ──▶ plan ──▶ probe ──▶ evidence ◀── compare ◀── report
//!          │                  ▲          ▲
//!          └──▶ audit ────────┘──────────┘        redact: a leaf every writer uses
//! ```

pub mod audit;
pub mod cli;
pub mod compare;
pub mod evidence;
pub mod notify;
pub mod plan;
pub mod probe;
pub mod redact;
pub mod report;
pub mod run;
