//! Sluice's plug-ins: every source, sink and transform, and the job file that names them.
//!
//! One folder per system, all of the same shape (`mod.rs`, `config.rs`, `source.rs`,
//! `sink.rs`, `types.rs` …). The engine never sees these types: it receives
//! `Arc<dyn Source>`, `Arc<dyn Sink>` and `Arc<dyn Transform>` built by [`registry`].
//!
//! * [`files`]: CSV, JSON Lines and Parquet files as sources and sinks.
//! * [`postgres`]: PostgreSQL (binary COPY in both directions).
//! * [`mysql`]: MySQL and MariaDB.
//! * [`sqlite`]: SQLite databases (rusqlite, bundled).
//! * [`generate`]: synthetic rows, bounded or endless (streaming), for tests and trials.
//! * [`transforms`]: rename, select/drop, cast, filter, add a column.
//! * [`registry`]: the explicit list of connector types (`type = "csv"` …).
//! * [`job`]: the job file (`[job]`, `[source]`, `[[transform]]`, `[sink]`, `[errors]`).

pub mod cdc;
pub mod checkpoints;
pub mod files;
pub mod generate;
pub mod job;
pub mod mysql;
pub mod postgres;
pub mod registry;
pub mod sqlite;
pub mod transforms;
