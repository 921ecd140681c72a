//! connrun's integration tests, one binary: each module is a former test file, and the support modules
//! are shared by all of them. One binary links the dependency tree once instead of once per file.

mod fuzz_support;
mod probe_support;
mod proxy_support;
mod routine_support;

mod architecture;
mod archive_verify;
mod audit_chain_proof;
mod audit_pull;
mod cli_commands;
mod cli_run;
mod diff_runs;
mod diff_verdicts;
mod evidence_bounds;
mod evidence_not_ready;
mod evidence_seal;
mod evidence_secrets;
mod fuzz_corpus;
mod fuzz_evidence;
mod fuzz_templates;
mod history_trends;
mod identity_pkcs12;
mod logs_append;
mod logs_reports;
mod matrix_runs;
mod parity_routine;
mod parity_servers;
mod phase_f_full;
mod pki_real_server;
mod probe_preflight;
mod probe_tls;
mod probe_tls_rejection;
mod probe_transport;
mod report_demo_snapshot;
mod report_html_browser;
mod report_markdown;
mod report_snapshots;
mod report_timezone;
mod runid_allocation;
mod scale_runs;
mod template_check;
mod template_plan;
mod template_targets;
mod weekly_routine;
