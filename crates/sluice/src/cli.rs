//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  sluice run examples/quickstart.toml          copy the sample data to Parquet and SQLite
  sluice validate job.toml                     check a job file and show the plan, move no data
  sluice status                                jobs in this state directory and their last run
  sluice status lineitem-copy --format json    one job's runs, for machines

A job file:
  [job]
  name = \"orders-copy\"
  [source]
  type = \"csv\"
  path = \"data/orders.csv\"
  [sink]
  type = \"sqlite\"
  url = \"sqlite://out/shop.db\"
  write = \"overwrite\"

Exit status: 0 done, 1 failed, 2 bad usage or config, 3 stopped before the end.
The first Ctrl-C or SIGTERM stops gracefully; the second aborts.";

/// Sluice copies data between databases and files, and stops when asked.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Directory holding job state (runs, positions).
    #[arg(long, global = true, env = "SLUICE_STATE", default_value = ".sluice")]
    pub state: PathBuf,

    /// Log verbosity: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "info")]
    pub log_level: String,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job.
    #[command(after_help = "Example: sluice run examples/quickstart.toml")]
    Run {
        /// The job file (TOML).
        job: PathBuf,
        /// Never draw a progress bar, even on a terminal.
        #[arg(long)]
        no_progress: bool,
    },
    /// Check a job file, connectivity and the type mapping of every table; move no data.
    #[command(after_help = "Example: sluice validate job.toml")]
    Validate {
        /// The job file (TOML).
        job: PathBuf,
    },
    /// Show the jobs in the state directory and their runs.
    #[command(after_help = "Example: sluice status orders-copy")]
    Status {
        /// Show only this job, with its run history.
        job: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}
