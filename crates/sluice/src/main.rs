//! The `sluice` binary: parses the command line, wires the crates together, and maps
//! outcomes to exit statuses. No data logic lives here.
//!
//! Exit status: 0 done, 1 failed, 2 bad usage or config, 3 stopped before the end
//! (resumable), 4 `verify` found differences.

// Writes to stdout go through `out!`/`outln!` (output.rs): `println!` panics on a closed pipe.
#![deny(clippy::print_stdout)]

#[macro_use]
mod output;
mod cli;
mod commands;
mod control;
mod display;
mod logging;
mod remote;
mod server_cmd;
mod verify_cmd;

use std::process::ExitCode;

use clap::Parser;
use sluice_core::ErrorKind;

/// Exit statuses, as DESIGN.md defines them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const STOPPED: u8 = 3;
    pub const DIFFERENCES: u8 = 4;
}

/// The exit status for an error of `kind`.
pub fn exit_code_for(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Config => exit::USAGE,
        ErrorKind::Stopped => exit::STOPPED,
        _ => exit::FAILED,
    }
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(commands::dispatch(cli));
    // Blocking reader threads may still be winding down after a stop; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    ExitCode::from(code)
}
