//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  sluice run examples/quickstart.toml          copy the sample data to Parquet and SQLite
  sluice validate job.toml                     check a job file and show the plan, move no data
  sluice status                                jobs in this state directory and their last run
  sluice stop orders-copy --timeout 30s        stop a running job from another terminal
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

Exit status: 0 done, 1 failed, 2 bad usage or config, 3 stopped before the end (run it
again to resume: finished splits are skipped).
The first Ctrl-C or SIGTERM stops gracefully; the second aborts.";

/// Sluice copies data between databases and files, and stops when asked.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Where job state lives (runs, generations, positions): a directory, or a shared
    /// PostgreSQL store `postgres://user@host/db` (schema `sluice`; `?schema=name` changes it).
    #[arg(long, global = true, env = "SLUICE_STATE", default_value = ".sluice")]
    pub state: String,

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
        /// Ignore the checkpoints of an unfinished earlier run and start over.
        #[arg(long)]
        from_scratch: bool,
    },
    /// Stop a running job gracefully (finish the batches in hand, roll back unfinished splits).
    #[command(after_help = "Example: sluice stop orders-copy --timeout 30s")]
    Stop {
        /// The job's name (`[job] name`).
        job: String,
        /// Abort at once instead of stopping gracefully.
        #[arg(long)]
        kill: bool,
        /// Abort if the graceful stop has not finished after this long (e.g. 30s).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Pause a running job: readers hold, positions are kept.
    Pause {
        /// The job's name.
        job: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Resume a paused job.
    Resume {
        /// The job's name.
        job: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Check a job file, connectivity and the type mapping of every table; move no data.
    #[command(after_help = "Example: sluice validate job.toml")]
    Validate {
        /// The job file (TOML).
        job: PathBuf,
    },
    /// Compare source and target (counts, key ranges, chunked checksums, differing rows).
    #[command(
        after_help = "Examples:\n  sluice verify job.toml --format json\n  sluice verify --source postgres://postgres@127.0.0.1/shop --target mysql://root@127.0.0.1/shop --table public.orders=shop.orders\n\nExit status: 0 identical, 4 differences found, 1 error, 2 bad usage."
    )]
    Verify {
        /// The job file whose source and sink are compared (`table_map` applies).
        #[arg(required_unless_present = "source")]
        job: Option<PathBuf>,
        /// Without a job file: the source database, e.g. postgres://user@host/db,
        /// mysql://user@host/db or sqlite:///path/file.db.
        #[arg(long, value_name = "URL", conflicts_with = "job", requires_all = ["target", "table"])]
        source: Option<String>,
        /// Without a job file: the target database (same URL forms as --source).
        #[arg(long, value_name = "URL", requires = "source")]
        target: Option<String>,
        /// Without a job file: a table to compare, `name` or `name=target_name`, e.g.
        /// `public.orders` or `public.orders=shop.orders`; repeat for more tables.
        #[arg(long, value_name = "TABLE", requires = "source")]
        table: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Fix the target: insert missing rows, delete extra ones, update changed ones.
        #[arg(long)]
        repair: bool,
        /// With --repair: print the statements instead of running them.
        #[arg(long)]
        dry_run: bool,
        /// How many differing keys to list per table.
        #[arg(long, default_value_t = 20)]
        max_diffs: usize,
    },
    /// Show the jobs in the state directory and their runs.
    #[command(after_help = "Example: sluice status orders-copy")]
    Status {
        /// Show only this job, with its run history.
        job: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Run many jobs in one process, driven through Kafka Connect's REST API.
    #[command(
        after_help = "Examples:\n  sluice token create --role admin --name ops     # once; prints the token\n  sluice server --listen 127.0.0.1:8083 --jobs jobs/\n  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8083/connectors?expand=status\n\nSIGTERM or Ctrl-C stops the jobs at their last checkpoint; a restarted server resumes them."
    )]
    Server {
        /// Address to listen on. A non-loopback address needs --tls-cert/--tls-key or --insecure.
        #[arg(long, default_value = "127.0.0.1:8083")]
        listen: std::net::SocketAddr,
        /// A directory of job files (*.toml) to host; created or updated at start.
        #[arg(long, value_name = "DIR")]
        jobs: Option<PathBuf>,
        /// PEM certificate chain: serve HTTPS.
        #[arg(long, requires = "tls_key", value_name = "PEM")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert", value_name = "PEM")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on a non-loopback address (a proxy in front terminates TLS).
        #[arg(long)]
        insecure: bool,
        /// The `host:port` clients reach this server at, shown as `worker_id` (default: --listen).
        #[arg(long, value_name = "HOST:PORT")]
        advertised_address: Option<String>,
    },
    /// Create, list and revoke the server's API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Change-capture housekeeping.
    Cdc {
        #[command(subcommand)]
        command: CdcCommand,
    },
}

/// Drive a job hosted by a server instead of one in the state directory.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArg {
    /// The server's URL, e.g. http://127.0.0.1:8083 (the token comes from SLUICE_TOKEN).
    #[arg(long, env = "SLUICE_SERVER", value_name = "URL")]
    pub server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CdcCommand {
    /// Drop the replication slot (and publication) a change-capture job created, when the
    /// job is retired: a slot left behind keeps the server's WAL. Refused while the job runs.
    #[command(after_help = "Example: sluice cdc drop-slot shop-cdc.toml")]
    DropSlot {
        /// The job file (TOML).
        job: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints it once (only its hash is stored).
    #[command(after_help = "Example: sluice token create --role operator --name airflow")]
    Create {
        /// viewer reads; operator also creates, pauses, resumes, stops and restarts jobs;
        /// admin also deletes jobs and edits offsets and log levels.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// A name for the audit log (default: ROLE-N).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (names and roles; the tokens themselves are not stored).
    List,
    /// Revoke a token by name.
    Revoke { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TokenRole {
    Viewer,
    Operator,
    Admin,
}
