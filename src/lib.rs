//! connrun: RUN_ID-driven connectivity runs against the PHR API, with evidence a reviewer can trust.
//!
//! The binary (`main.rs`) is a thin shell over this library, in the shape of ripgrep: configuration is parsed
//! raw (templates, targets), validated once into a typed [`plan::Plan`], then executed by [`run`], which
//! writes the evidence tree of HARNESS.md §4 through [`evidence`] and renders the Markdown with [`report`].

// Planning: RUN_IDs, templates and targets, validated once into a plan.
pub mod diag;
pub mod placeholder;
pub mod plan;
pub mod runid;
pub mod target;
pub mod template;

// Probing: identity, TLS, one request per probe, captures and polls, redaction, audit pulls.
pub mod audit;
pub mod capture;
pub mod certinfo;
pub mod identity;
pub mod poll;
pub mod preflight;
pub mod probe;
pub mod redact;

// Running and recording: the orchestrator and the evidence tree it writes.
pub mod demo;
pub mod evidence;
pub mod har;
pub mod junit;
pub mod report;
pub mod run;
pub mod status;

// The weekly routine around finished runs (diff, parity, history, reports, archives).
pub mod append;
pub mod archive;
pub mod diff;
pub mod history;
pub mod html_report;
pub mod logs;
pub mod parity;
pub mod parity_run;
pub mod routine;
pub mod runindex;
pub mod views;

// The command line.
pub mod cli;
pub mod commands;
