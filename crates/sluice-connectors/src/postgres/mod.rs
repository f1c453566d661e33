//! PostgreSQL as source and sink (tokio-postgres, binary COPY both ways, no TLS).
//!
//! ```toml
//! [source]
//! type = "postgres"
//! url = "postgres://app@127.0.0.1:5432/shop"
//! tables = ["public.*"]          # names or globs; default ["*"]; or query = "SELECT …"
//! # exclude = ["public.tmp_*"]
//! # split_column = "id"          # default: a one-column integer primary key, else ctid pages
//! # chunk_rows = 500000          # rows per split (planner estimate)
//! # batch_size = 8192            # rows per Arrow batch
//! # read = "incremental"         # with cursor_column = "updated_at", start_after = "…"
//! # read = "cdc"                 # change capture (a streaming job): snapshot = "initial",
//! #                              # slot = "sluice_<job>", publication = <slot>; see `cdc`
//!
//! [sink]
//! type = "postgres"
//! url = "postgres://app@127.0.0.1:5432/warehouse"
//! # schema = "public"            # for target names without a schema
//! write = "append"               # append | overwrite | upsert
//! ```
//!
//! **Source.** `tables()` opens a coordinator connection with `BEGIN ISOLATION LEVEL
//! REPEATABLE READ READ ONLY` and `pg_export_snapshot()`, kept until `close()`; every split
//! reader imports that snapshot, so parallel splits see one consistent database. Tables split
//! into integer-key ranges `[lo, hi)` (first and last open-ended, NULL keys in the first),
//! read in key order with positions `{"last_key": k}` (a resume reads `key > k`), or into
//! ctid page ranges (TID range scans, PG 14+) with positions `{"rows": n}` (a resumed split is
//! read again whole). Views and `query` are one split. Inheritance parents are read `FROM
//! ONLY` (or with a `tableoid` condition) when children are selected too, so a row is read
//! once (see `docs/connectors/postgres.md`, "Inheritance"); [`PostgresSourceConfig::read_scopes`]
//! tells `sluice verify` the same [`ReadScope`] per table. Each split is one `COPY (SELECT …) TO
//! STDOUT (FORMAT binary)` decoded straight into Arrow ([`copy_decode`]); memory is bounded by
//! `batch_size`. A stop cancels the running COPY. `read = "incremental"` reads rows with
//! `cursor > start_after` in `(cursor, primary key)` order as one split; resuming continues
//! after the last `(cursor, key)` tuple (without a primary key, rows tied with the last cursor
//! value are read again).
//!
//! **Sink.** `prepare` creates missing tables (native PostgreSQL types verbatim, enums
//! created first, `NOT NULL`, `PRIMARY KEY`) or checks existing ones (every source column
//! present, its type able to take the source's; no `NOT NULL` column without a default that
//! the source cannot fill). Generated target columns are not written (the target computes
//! them); PG→PG created tables keep `GENERATED ALWAYS AS (expr) STORED`. Each split writer
//! has its own connection and one transaction: `COPY … FROM STDIN (FORMAT binary)`
//! ([`copy_encode`]) then `COMMIT` at `commit()`. `upsert` and columns that PostgreSQL must cast from text (money, inet, xml …)
//! go through a `TEMP` table and `INSERT … SELECT [ON CONFLICT (key) DO UPDATE]`. `overwrite`
//! writes `<table>__sluice_stage` (`LIKE … INCLUDING ALL`) and swaps it in at `finish_table`
//! in one transaction (DROP + RENAME; index names follow). `finish_table` then advances the
//! sequences the target's columns own (serial, identity) past the loaded values.
//!
//! **Types**: see [`types`] and `docs/connectors/postgres.md`.
//!
//! **Limits.** No TLS. Multi-dimensional arrays are a data error (cast to text in a `query`).
//! Overwrite does not keep foreign keys pointing at the table, grants or triggers.

mod cdc;
mod cdc_text;
mod check;
mod config;
pub mod copy_decode;
pub mod copy_encode;
mod error;
mod numeric;
mod pgoutput;
pub mod position;
mod sink;
mod source;
pub mod types;

pub use config::{PostgresSinkConfig, PostgresSourceConfig, ReadMode};
pub use types::{quote_ident, quote_literal};

pub use check::{Conn, connect};

/// A connection for other parts of Sluice (verify) made the way the connector makes its own
/// ([`connect`]: bounded connect and startup, errors classified — unreachable, credentials,
/// missing database — and named by `what`), with the parsed configuration to open more like
/// it.
pub async fn connect_url(
    url: &str,
    what: &str,
) -> sluice_core::Result<(Conn, tokio_postgres::Config)> {
    let cfg = config::parse_url(url)?;
    Ok((connect(&cfg, what).await?, cfg))
}
pub use source::ReadScope;
