//! `sealmail`: the command-line entry point. Only wiring lives here: parse arguments, build the
//! parts from `sealmail-core` and the protocol crates, run, map errors to a one-line message
//! and a non-zero exit code.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod config;
mod metrics;
mod progress;
mod queue_cmd;
mod scheduled_backup;
mod serve;
mod tls;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the error and its causes, never a backtrace or a secret.
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                message.push_str(": ");
                message.push_str(&cause.to_string());
            }
            eprintln!("sealmail: {message}");
            ExitCode::FAILURE
        }
    }
}
