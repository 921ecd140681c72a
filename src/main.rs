//! The `connrun` binary: parse the command line, run it, map the result to exit codes 0 / 1 / 2.
//!
//! Everything else lives in the library (`connrun::cli::commands`), so tests drive the same code. With `--json`
//! a harness error is also printed as JSON on stdout, so scripts always get one JSON document.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = connrun::cli::Cli::parse();
    let json = cli.global.json;
    let result: anyhow::Result<connrun::cli::Verdict> =
        connrun::cli::commands::dispatch(cli).map_err(anyhow::Error::from);
    match result {
        Ok(verdict) => ExitCode::from(verdict.exit_code()),
        Err(error) => {
            eprintln!("connrun: error: {error:#}");
            if json {
                println!("{}", serde_json::json!({ "ok": false, "exit_code": 2, "error": format!("{error:#}") }));
            }
            ExitCode::from(2)
        }
    }
}
