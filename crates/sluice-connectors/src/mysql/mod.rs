//! MySQL and MariaDB as source and sink (mysql_async).
//!
//! ```toml
//! [source]
//! type = "mysql"
//! url = "mysql://reader:secret@127.0.0.1:3306/shop"
//! tables = ["orders", "order_*"]        # default ["*"]: every table of the url's database
//! # exclude = ["tmp_*"]
//! # split_column = "order_id"           # default: a one-column integer primary key
//! # chunk_rows = 500000                 # rows per split
//! # batch_size = 8192
//! # zero_dates = "null"                 # or "error"; MySQL targets keep zero dates
//! # consistent_snapshot = true          # all readers see one point in time
//! # connections = 4                     # concurrent read connections
//!
//! [sink]
//! type = "mysql"
//! url = "mysql://writer:secret@127.0.0.1:3306/warehouse"
//! write = "append"                      # append | overwrite | upsert
//! # method = "load_data"                # or "insert"
//! ```
//!
//! **Source.** Lists base tables from `information_schema` (never `_sluice_*` or staging
//! tables; views only when named, not through a glob); tables in the url's database are
//! named bare (`orders`), others `db.table`. Each
//! table is split into ranges of its integer key (`[lo, hi)`, first and last open-ended, ids
//! `orders#0` …) and read with a streamed, prepared `SELECT … ORDER BY key` inside a
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`. With `consistent_snapshot` (the
//! default) the reading connections open their snapshots together while the tables are
//! briefly locked (`FLUSH TABLES … WITH READ LOCK`), so every split sees the same point in
//! time. Positions are `{"last_key": N}` (or `{"rows": N}` for tables without an integer
//! key). A cancelled read kills its server connection.
//!
//! **Sink.** `prepare` checks existing tables (every source column present with a type that
//! can hold it; columns the target generates are never written) or creates them
//! (`ENGINE=InnoDB`, `utf8mb4_bin`; from a MySQL source the native types verbatim, zero
//! dates, collations, generated columns, `AUTO_INCREMENT` and the table's engine, a
//! non-transactional one applied once the load has finished). A value the target column
//! would round (decimal places, fractional seconds) is a data error naming the row. Each
//! split is written on its own connection in one transaction,
//! with its checkpoint row in `_sluice_checkpoints`, by `LOAD DATA LOCAL INFILE` fed from
//! memory. `upsert` loads into a temporary table and merges with
//! `INSERT … SELECT … ON DUPLICATE KEY UPDATE`; `overwrite` writes `<name>__sluice_stage` and
//! swaps it in with one atomic `RENAME TABLE`.
//!
//! The type mapping is in [`types`] and `docs/connectors/mysql.md`.

mod cdc;
mod check;
mod config;
mod decode;
mod encode;
mod error;
pub mod position;
mod sink;
mod source;
pub mod types;

pub use check::{SESSION_SQL, quote, quote_literal};

/// A connection for other parts of Sluice (verify) made the way the connector makes its own:
/// bounded connect and handshake, errors classified and named by `what`, the connector's
/// session settings. Returns it with its options (to open more like it) and the url's
/// database.
pub async fn connect_url(
    url: &str,
    what: &str,
) -> sluice_core::Result<(mysql_async::Conn, mysql_async::Opts, Option<String>)> {
    let server = config::Server::parse(url)?;
    let conn = check::connect(&server, what).await?;
    Ok((conn, server.opts.clone(), server.database.clone()))
}

/// [`connect_url`] with options already parsed.
pub async fn connect_opts(
    opts: &mysql_async::Opts,
    what: &str,
) -> sluice_core::Result<mysql_async::Conn> {
    let server = config::Server::from_opts(opts.clone());
    check::connect(&server, what).await
}
pub use config::{LoadMethod, MysqlReadMode, MysqlSinkConfig, MysqlSourceConfig, ZeroDates};
pub use sink::MysqlSink;
pub use source::MysqlSource;
