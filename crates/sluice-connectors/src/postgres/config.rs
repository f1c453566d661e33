//! The `[source]` and `[sink]` options for `type = "postgres"`, and their validation (no I/O).

use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;
use sluice_core::schema::TablePattern;
use sluice_core::secret::SecretUrl;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Error, Result, TableId, WriteMode};

use super::cdc::{CdcPlan, PgCdcSource};
use super::sink::PgSink;
use super::source::{PgSource, ReadScope, read_scopes};
pub use crate::cdc::SnapshotMode;

/// How the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// Every row of every table, from one consistent snapshot.
    #[default]
    Full,
    /// Rows whose `cursor_column` is greater than `start_after`, in cursor order.
    Incremental,
    /// Change data capture: a snapshot, then every change, from logical replication (a
    /// streaming job).
    Cdc,
}

/// Reads tables (or one query) from PostgreSQL with binary COPY, from one snapshot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// Server URL, e.g. `postgres://app@127.0.0.1:5432/shop`; may be `${env:PG_URL}`.
    pub url: SecretUrl,
    /// Table names or globs, e.g. `["public.orders", "sales.*"]`; default `["*"]` (all user
    /// tables) unless `query` is given.
    #[serde(default)]
    pub tables: Vec<TablePattern>,
    /// Tables to leave out, names or globs, e.g. `["public.tmp_*"]`.
    #[serde(default)]
    pub exclude: Vec<TablePattern>,
    /// One custom SELECT read as a table named `query`, e.g.
    /// `"SELECT id, total FROM orders WHERE total > 100"`. Excludes `tables`.
    #[serde(default)]
    pub query: Option<String>,
    /// Integer column to split tables by, e.g. `"order_id"`. Default: the primary key when it
    /// is one integer column, else ranges of physical pages (ctid).
    #[serde(default)]
    pub split_column: Option<String>,
    /// Target rows per split, e.g. `500000` (the default), from the planner's row estimate.
    #[serde(default)]
    pub chunk_rows: Option<u64>,
    /// Rows per Arrow batch, e.g. `8192` (the default).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// `full` (default), `incremental` or `cdc`.
    #[serde(default)]
    pub read: ReadMode,
    /// `cdc`: `initial` (default: every row, then the changes), `never` (changes only) or
    /// `initial_only` (the snapshot, then the job ends).
    #[serde(default)]
    pub snapshot: Option<SnapshotMode>,
    /// `cdc`: the replication slot Sluice creates and owns, e.g. `"sluice_shop_cdc"`;
    /// default `sluice_<job name>`.
    #[serde(default)]
    pub slot: Option<String>,
    /// `cdc`: the publication Sluice creates and keeps equal to the captured tables; default
    /// the slot's name.
    #[serde(default)]
    pub publication: Option<String>,
    /// `incremental`: the column that grows with every change, e.g. `"updated_at"`.
    #[serde(default)]
    pub cursor_column: Option<String>,
    /// `incremental`: read rows whose cursor is greater than this value, in PostgreSQL's text
    /// form, e.g. `"2024-05-01 00:00:00"`. Default: from the start.
    #[serde(default)]
    pub start_after: Option<String>,
}

/// Validated source options.
#[derive(Debug, Clone)]
pub(crate) struct SourcePlan {
    pub pg: tokio_postgres::Config,
    pub tables: Vec<TablePattern>,
    pub exclude: Vec<TablePattern>,
    pub query: Option<String>,
    pub split_column: Option<String>,
    pub chunk_rows: u64,
    pub batch_size: usize,
    pub incremental: Option<(String, Option<String>)>,
}

/// Parses a `postgres://` URL without connecting.
pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(
            Error::config(format!("url {url:?} is not a PostgreSQL URL"))
                .with_hint("write it as postgres://user:password@host:5432/database"),
        );
    }
    tokio_postgres::Config::from_str(url).map_err(|e| {
        Error::config(format!("invalid PostgreSQL url: {e}"))
            .with_hint("write it as postgres://user:password@host:5432/database")
    })
}

impl PostgresSourceConfig {
    /// Validates the options (no I/O) and builds the source.
    pub fn build(&self) -> Result<DynSource> {
        self.build_for_job("")
    }

    /// Like [`build`](Self::build), naming the job (the default slot is named after it).
    pub fn build_for_job(&self, job: &str) -> Result<DynSource> {
        let plan = self.plan()?;
        match self.cdc_plan(job)? {
            Some(cdc) => Ok(Arc::new(PgCdcSource::new(plan, cdc))),
            None => Ok(Arc::new(PgSource::new(plan))),
        }
    }

    /// A source that reads the tables whole whatever `read` says (`sluice verify` compares
    /// a change-capture job's target with the tables as they are).
    pub fn build_full(&self) -> Result<DynSource> {
        Ok(Arc::new(PgSource::new(self.plan()?)))
    }

    /// Whether this source captures changes (a streaming source).
    pub fn is_cdc(&self) -> bool {
        self.read == ReadMode::Cdc
    }

    fn cdc_plan(&self, job: &str) -> Result<Option<CdcPlan>> {
        if self.read != ReadMode::Cdc {
            if self.snapshot.is_some() || self.slot.is_some() || self.publication.is_some() {
                return Err(Error::config(
                    "`snapshot`, `slot` and `publication` are options of read = \"cdc\"",
                )
                .with_hint("add read = \"cdc\", or remove them"));
            }
            return Ok(None);
        }
        if self.query.is_some() {
            return Err(
                Error::config("read = \"cdc\" captures tables, not a `query`")
                    .with_hint("list the tables with tables = [\"public.orders\"]"),
            );
        }
        let slot = match &self.slot {
            Some(s) => s.clone(),
            None => {
                let base: String = job
                    .chars()
                    .take(56)
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("sluice_{base}")
            }
        };
        if slot.is_empty()
            || slot.len() > 63
            || !slot
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(Error::config(format!(
                "slot {slot:?} is not a valid replication slot name"
            ))
            .with_hint("use lower-case letters, digits and underscores, at most 63 characters"));
        }
        Ok(Some(CdcPlan {
            job: job.to_string(),
            publication: self.publication.clone().unwrap_or_else(|| slot.clone()),
            slot,
            snapshot: self.snapshot.unwrap_or_default(),
        }))
    }

    /// How the source reads each of its tables: the tables `tables` and `exclude` select,
    /// each with the [`ReadScope`] of its reads (`FROM ONLY` or a `tableoid` condition for an
    /// inheritance parent whose children are selected too), computed by the same code as the
    /// source's `tables()`. Opens a connection of its own. Empty for a `query` source. Used by
    /// `sluice verify` so that it compares exactly the rows a copy reads.
    pub async fn read_scopes(&self) -> Result<Vec<(TableId, ReadScope)>> {
        read_scopes(&self.plan()?).await
    }

    pub(crate) fn plan(&self) -> Result<SourcePlan> {
        let pg = parse_url(self.url.expose())?;
        if self.query.is_some() && !self.tables.is_empty() {
            return Err(Error::config("`query` and `tables` cannot both be given")
                .with_hint("read either a list of tables or one query"));
        }
        if self.query.is_some() && self.split_column.is_some() {
            return Err(Error::config("`split_column` does not apply to `query`")
                .with_hint("a query is read as one split; remove split_column"));
        }
        if let Some(q) = &self.query
            && q.trim().is_empty()
        {
            return Err(Error::config("`query` is empty").with_hint("give a SELECT statement"));
        }
        let incremental = match (self.read, &self.cursor_column) {
            (ReadMode::Incremental, Some(c)) => Some((c.clone(), self.start_after.clone())),
            (ReadMode::Incremental, None) => {
                return Err(
                    Error::config("read = \"incremental\" needs `cursor_column`")
                        .with_hint("e.g. cursor_column = \"updated_at\""),
                );
            }
            (ReadMode::Full | ReadMode::Cdc, Some(_)) => {
                return Err(
                    Error::config("`cursor_column` needs read = \"incremental\"")
                        .with_hint("add read = \"incremental\" or remove cursor_column"),
                );
            }
            (ReadMode::Full | ReadMode::Cdc, None) => {
                if self.start_after.is_some() {
                    return Err(Error::config("`start_after` needs read = \"incremental\"")
                        .with_hint("add read = \"incremental\" and cursor_column"));
                }
                None
            }
        };
        if self.chunk_rows == Some(0) || self.batch_size == Some(0) {
            return Err(
                Error::config("`chunk_rows` and `batch_size` must be at least 1")
                    .with_hint("e.g. chunk_rows = 500000, batch_size = 8192"),
            );
        }
        let tables = if self.tables.is_empty() && self.query.is_none() {
            vec![TablePattern::parse("*")?]
        } else {
            self.tables.clone()
        };
        Ok(SourcePlan {
            pg,
            tables,
            exclude: self.exclude.clone(),
            query: self.query.clone(),
            split_column: self.split_column.clone(),
            chunk_rows: self.chunk_rows.unwrap_or(500_000),
            batch_size: self.batch_size.unwrap_or(8192),
            incremental,
        })
    }
}

/// Writes tables into PostgreSQL with binary COPY, one transaction per split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// Server URL, e.g. `postgres://app@127.0.0.1:5432/warehouse`; may be `${env:PG_URL}`.
    pub url: SecretUrl,
    /// Schema for target names without one, e.g. `"staging"`; default `"public"`.
    #[serde(default)]
    pub schema: Option<String>,
}

impl PostgresSinkConfig {
    /// Validates the options (no I/O) and builds the sink.
    pub fn build(&self, mode: WriteMode, create_tables: bool) -> Result<DynSink> {
        let pg = parse_url(self.url.expose())?;
        let schema = self.schema.clone().unwrap_or_else(|| "public".to_string());
        if schema.is_empty() {
            return Err(Error::config("`schema` is empty").with_hint("e.g. schema = \"public\""));
        }
        Ok(Arc::new(PgSink::new(pg, schema, mode, create_tables)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src(v: serde_json::Value) -> Result<SourcePlan> {
        serde_json::from_value::<PostgresSourceConfig>(v)
            .unwrap()
            .plan()
    }

    #[test]
    fn example_config_parses() {
        let p =
            src(json!({"url": "postgres://u@h:5432/db", "tables": ["public.*"], "chunk_rows": 10}))
                .unwrap();
        assert_eq!(p.chunk_rows, 10);
        assert_eq!(p.batch_size, 8192);
        let p = src(json!({"url": "postgres://u@h/db"})).unwrap();
        assert_eq!(p.tables.len(), 1);
    }

    #[test]
    fn bad_options_are_config_errors() {
        for v in [
            json!({"url": "mysql://u@h/db"}),
            json!({"url": "postgres://u@h/db", "query": "select 1", "tables": ["a"]}),
            json!({"url": "postgres://u@h/db", "read": "incremental"}),
            json!({"url": "postgres://u@h/db", "cursor_column": "x"}),
            json!({"url": "postgres://u@h/db", "batch_size": 0}),
        ] {
            let e = src(v.clone()).unwrap_err();
            assert_eq!(e.kind(), sluice_core::ErrorKind::Config, "{v}");
            assert!(e.hint().is_some());
        }
        assert!(
            serde_json::from_value::<PostgresSourceConfig>(json!({"url": "x", "tabels": []}))
                .is_err()
        );
    }
}
