//! The integration tests of `phr-server`, linked as one test binary.
//!
//! Each module is one former `tests/*.rs` file and keeps its name; `support` is the shared harness (a real
//! server on loopback against a database of its own, plus the Phase F helpers in `support::export` and the
//! spec's field lists in `support::spec_fields`). One binary links the dependency tree once instead of once
//! per file; tests that need the `phr-server` executable run it through `CARGO_BIN_EXE_phr-server`, which
//! Cargo builds for every integration-test target. Run one group with `cargo test -p phr-server --test it
//! export_`.

mod audit;
mod audit_atomic;
mod audit_chains;
mod audit_checkpoints;
mod audit_kill;
mod audit_secrets;
mod audit_tamper;
mod auth_limits;
mod check_secrets;
mod common_rules;
mod connections;
mod every_answer;
mod export_fair;
mod export_interrupted;
mod export_large;
mod export_lifecycle;
mod export_recovery;
mod export_s3;
mod head_requests;
mod image;
mod layer_id;
mod least_privilege;
mod migrate;
mod multi_instance;
mod ops;
mod pg_tls;
mod phr_container;
mod phr_keys_text;
mod proxy_nginx;
mod proxy_protocol;
mod revocation;
mod revocation_sighup;
mod seed;
mod serverinfo;
mod support;
mod tls;
