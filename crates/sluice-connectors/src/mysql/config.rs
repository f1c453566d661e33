//! `[source] type = "mysql"` and `[sink] type = "mysql"`: options and their validation.
//!
//! `build` checks everything that can be checked without the network (URL form, globs,
//! sizes) and returns every problem at once; the server is first contacted by `tables()` /
//! `prepare()`.

use std::sync::Arc;

use mysql_async::{Opts, OptsBuilder};
use serde::Deserialize;
use sluice_core::error::join_errors;
use sluice_core::schema::TablePattern;
use sluice_core::schema::parse_patterns;
use sluice_core::secret::SecretUrl;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Error, Result, TableId, WriteMode};

use super::cdc::{CdcPlan, MysqlCdcSource, default_server_id};
use super::sink::MysqlSink;
use super::source::MysqlSource;
use crate::cdc::SnapshotMode;

const URL_HINT: &str = "write the server as a URL: mysql://user:password@127.0.0.1:3306/shop \
                        (MariaDB too); the password may come from ${env:NAME}";

/// What to do with MySQL's zero dates (`0000-00-00`, `2024-00-10`) when the target cannot
/// hold them: every sink but MySQL/MariaDB, which gets them unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroDates {
    /// Read them as NULL (the default). Date and time columns are then nullable.
    #[default]
    Null,
    /// Fail, naming table, column and row key.
    Error,
}

/// How the sink sends rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMethod {
    /// `LOAD DATA LOCAL INFILE` fed from memory (the default; the server needs
    /// `local_infile = ON`).
    #[default]
    LoadData,
    /// Multi-row `INSERT … VALUES (?, …), …` with bound parameters.
    Insert,
}

/// How the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MysqlReadMode {
    /// Every row of every table (the default).
    #[default]
    Full,
    /// Change data capture: a snapshot, then every change, from the binary log (a streaming
    /// job).
    Cdc,
}

/// Reads tables from MySQL or MariaDB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceConfig {
    /// Server URL with the database whose tables are read, e.g.
    /// `mysql://reader:secret@127.0.0.1:3306/shop`; may be `${env:MYSQL_URL}`.
    pub url: SecretUrl,
    /// Table names or globs, e.g. `["orders", "order_*", "other_db.events"]`. Unqualified
    /// names are in the URL's database. Default `["*"]`.
    #[serde(default = "default_tables")]
    pub tables: Vec<String>,
    /// Tables to leave out, names or globs, e.g. `["tmp_*"]`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Integer column whose ranges divide a table into splits, e.g. `"order_id"`. Default:
    /// the primary key when it is one integer column; otherwise the table is one split.
    #[serde(default)]
    pub split_column: Option<String>,
    /// Rows per split, e.g. `500000` (the default).
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// Rows per batch sent downstream, e.g. `8192` (the default).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// For targets other than MySQL/MariaDB (which keep them): `"null"` (default) reads
    /// zero dates such as `0000-00-00` as NULL; `"error"` fails naming table, column and row.
    #[serde(default)]
    pub zero_dates: ZeroDates,
    /// Whether all readers share one point in time, e.g. `true` (the default): their
    /// connections open their snapshots together under a brief `FLUSH TABLES WITH READ LOCK`
    /// (needs the RELOAD privilege; without it each snapshot is taken separately, with a
    /// warning). `false`: each split reads its own consistent snapshot.
    #[serde(default = "default_true")]
    pub consistent_snapshot: bool,
    /// Connections reading at once, e.g. `4` (the default). With `consistent_snapshot`
    /// they are opened together; more concurrent splits wait for a free one.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// `full` (default) or `cdc` (change capture from the binary log).
    #[serde(default)]
    pub read: MysqlReadMode,
    /// `cdc`: `initial` (default: every row, then the changes), `never` (changes only) or
    /// `initial_only` (the snapshot, then the job ends).
    #[serde(default)]
    pub snapshot: Option<SnapshotMode>,
    /// `cdc`: the replica id the job's binlog stream registers with, e.g. `4001`; unique
    /// among the server's replicas. Default: derived from the job's name (1000000 or more).
    #[serde(default)]
    pub server_id: Option<u32>,
}

fn default_tables() -> Vec<String> {
    vec!["*".to_string()]
}
fn default_batch_size() -> usize {
    8192
}
fn default_chunk_rows() -> u64 {
    500_000
}
fn default_true() -> bool {
    true
}
fn default_connections() -> usize {
    4
}

/// Writes tables into MySQL or MariaDB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSinkConfig {
    /// Server URL with the database tables are written to, e.g.
    /// `mysql://writer:secret@127.0.0.1:3306/warehouse`; may be `${env:MYSQL_URL}`.
    pub url: SecretUrl,
    /// `"load_data"` (default: `LOAD DATA LOCAL INFILE`, needs `local_infile = ON` on the
    /// server) or `"insert"` (multi-row `INSERT` with bound parameters).
    #[serde(default)]
    pub method: LoadMethod,
}

/// A parsed, checked URL.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub opts: Opts,
    /// The URL's database, if any.
    pub database: Option<String>,
    /// `host:port`, for messages (never the password).
    pub display: String,
}

impl Server {
    pub fn parse(url: &str) -> Result<Server> {
        if !url.starts_with("mysql://") {
            return Err(
                Error::config("the mysql url does not start with mysql://").with_hint(URL_HINT)
            );
        }
        let opts = Opts::from_url(url).map_err(|e| {
            // The URL may hold a password: the message names the problem, not the URL.
            Error::config(format!("invalid mysql url: {e}").replace(url, "<url>"))
                .with_hint(URL_HINT)
        })?;
        let opts: Opts = OptsBuilder::from_opts(opts).prefer_socket(false).into();
        Ok(Server::from_opts(opts))
    }

    /// A server from options already parsed (another connection like an earlier one).
    pub fn from_opts(opts: Opts) -> Server {
        let database = opts.db_name().map(str::to_owned).filter(|d| !d.is_empty());
        let display = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        Server {
            opts,
            database,
            display,
        }
    }

    /// `(database, table)` of a Sluice table id: `db.table`, or `table` in the URL's
    /// database.
    pub fn resolve(&self, id: &TableId) -> Result<(String, String)> {
        match id.parts() {
            [t] => match &self.database {
                Some(db) => Ok((db.clone(), t.clone())),
                None => Err(Error::config(format!(
                    "table {id} names no database and the url has none"
                ))
                .with_hint("add the database to the url (mysql://…/shop) or write db.table")),
            },
            [db, t] => Ok((db.clone(), t.clone())),
            _ => Err(Error::config(format!(
                "table {id} has {} name parts; MySQL tables are `table` or `database.table`",
                id.parts().len()
            ))
            .with_hint("map it to a MySQL name with table_map = { \"a.b.c\" = \"c\" } in [sink]")),
        }
    }
}

/// A validated source config.
#[derive(Debug, Clone)]
pub(crate) struct SourcePlan {
    pub server: Server,
    pub include: Vec<TablePattern>,
    pub exclude: Vec<TablePattern>,
    pub split_column: Option<String>,
    pub chunk_rows: u64,
    pub batch_size: usize,
    pub zero_dates: ZeroDates,
    /// The sink is MySQL/MariaDB: zero dates are kept (whatever `zero_dates` says), and
    /// fields carry what a same-engine target needs (collations, generated columns, the
    /// table's engine).
    pub same_engine: bool,
    pub consistent_snapshot: bool,
    pub connections: usize,
}

impl MysqlSourceConfig {
    /// Validates the options (no I/O) and builds the source, for a sink of another engine.
    pub fn build(&self) -> Result<DynSource> {
        self.build_for_job("", false)
    }

    /// Like [`build`](Self::build), for a MySQL/MariaDB sink, which can hold everything a
    /// MySQL table holds: zero dates are read as they are (`zero_dates` does not apply) and
    /// date columns keep `NOT NULL`.
    pub fn build_same_engine(&self) -> Result<DynSource> {
        self.build_for_job("", true)
    }

    /// Builds the source for job `job` (a change capture's default replica id is derived
    /// from its name), `same_engine` when the sink is MySQL/MariaDB too.
    pub fn build_for_job(&self, job: &str, same_engine: bool) -> Result<DynSource> {
        let mut plan = self.plan()?;
        plan.same_engine = same_engine;
        match self.cdc_plan(job)? {
            Some(cdc) => Ok(Arc::new(MysqlCdcSource::new(plan, cdc))),
            None => Ok(Arc::new(MysqlSource::new(plan))),
        }
    }

    /// A source that reads the tables whole whatever `read` says (`sluice verify`).
    pub fn build_full(&self) -> Result<DynSource> {
        Ok(Arc::new(MysqlSource::new(self.plan()?)))
    }

    /// Whether this source captures changes (a streaming source).
    pub fn is_cdc(&self) -> bool {
        self.read == MysqlReadMode::Cdc
    }

    fn cdc_plan(&self, job: &str) -> Result<Option<CdcPlan>> {
        if self.read != MysqlReadMode::Cdc {
            if self.snapshot.is_some() || self.server_id.is_some() {
                return Err(Error::config(
                    "`snapshot` and `server_id` are options of read = \"cdc\"",
                )
                .with_hint("add read = \"cdc\", or remove them"));
            }
            return Ok(None);
        }
        let server_id = self.server_id.unwrap_or_else(|| default_server_id(job));
        if server_id == 0 {
            return Err(
                Error::config("server_id must not be 0 (a replica needs an id)")
                    .with_hint("e.g. server_id = 4001, unique among the server's replicas"),
            );
        }
        Ok(Some(CdcPlan {
            job: job.to_string(),
            server_id,
            snapshot: self.snapshot.unwrap_or_default(),
        }))
    }

    /// Checks that the server answers and the database exists (`sluice validate`).
    pub async fn check(&self) -> Result<()> {
        super::check::check_source(&self.plan()?.server).await
    }

    pub(crate) fn plan(&self) -> Result<SourcePlan> {
        let mut errors = Vec::new();
        let server = Server::parse(self.url.expose())
            .map_err(|e| errors.push(e))
            .ok();
        if self.tables.is_empty() {
            errors.push(Error::config("`tables` is empty, so nothing would be read").with_hint(
                "leave `tables` out to read every table of the url's database, or name some: [\"orders\"]",
            ));
        }
        let include = parse_patterns(&self.tables, "tables", &mut errors);
        let exclude = parse_patterns(&self.exclude, "exclude", &mut errors);
        if let Some(s) = &server
            && s.database.is_none()
            && include.iter().any(|p| p.to_string().split('.').count() < 2)
        {
            errors.push(
                Error::config(
                    "the mysql url names no database, so unqualified `tables` match nothing",
                )
                .with_hint("add the database to the url (mysql://…/shop) or write db.table"),
            );
        }
        if self.batch_size == 0 {
            errors.push(Error::config("`batch_size` must be at least 1").with_hint("e.g. 8192"));
        }
        if self.chunk_rows == 0 {
            errors.push(Error::config("`chunk_rows` must be at least 1").with_hint("e.g. 500000"));
        }
        if self.connections == 0 {
            errors.push(Error::config("`connections` must be at least 1").with_hint("e.g. 4"));
        }
        join_errors(errors)?;
        Ok(SourcePlan {
            server: server.expect("errors joined above"),
            include,
            exclude,
            split_column: self.split_column.clone(),
            chunk_rows: self.chunk_rows,
            batch_size: self.batch_size,
            zero_dates: self.zero_dates,
            same_engine: false,
            consistent_snapshot: self.consistent_snapshot,
            connections: self.connections,
        })
    }
}

/// A validated sink config.
#[derive(Debug, Clone)]
pub(crate) struct SinkPlan {
    pub server: Server,
    pub mode: WriteMode,
    pub create_tables: bool,
    pub method: LoadMethod,
}

impl MysqlSinkConfig {
    /// Validates the options (no I/O) and builds the sink.
    pub fn build(&self, mode: WriteMode, create_tables: bool) -> Result<DynSink> {
        Ok(Arc::new(MysqlSink::new(self.plan(mode, create_tables)?)))
    }

    /// Checks that the server answers and, for `method = "load_data"`, accepts
    /// `LOAD DATA LOCAL` (`sluice validate`).
    pub async fn check(&self) -> Result<()> {
        let server = Server::parse(self.url.expose())?;
        super::check::check_sink(&server, self.method == LoadMethod::LoadData).await
    }

    pub(crate) fn plan(&self, mode: WriteMode, create_tables: bool) -> Result<SinkPlan> {
        Ok(SinkPlan {
            server: Server::parse(self.url.expose())?,
            mode,
            create_tables,
            method: self.method,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(extra: serde_json::Value) -> std::result::Result<MysqlSourceConfig, String> {
        let mut v = serde_json::json!({ "url": "mysql://u:pw@127.0.0.1:3306/shop" });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn example_config_parses_with_defaults() {
        let c = source(serde_json::json!({ "tables": ["orders", "other.*"] })).unwrap();
        let p = c.plan().unwrap();
        assert_eq!(p.batch_size, 8192);
        assert_eq!(p.chunk_rows, 500_000);
        assert_eq!(p.zero_dates, ZeroDates::Null);
        assert!(p.consistent_snapshot);
        assert_eq!(p.server.database.as_deref(), Some("shop"));
        assert_eq!(p.server.display, "127.0.0.1:3306");
        let s: MysqlSinkConfig = serde_json::from_value(
            serde_json::json!({ "url": "mysql://root@h/db", "method": "insert" }),
        )
        .unwrap();
        assert_eq!(
            s.plan(WriteMode::Append, true).unwrap().method,
            LoadMethod::Insert
        );
    }

    #[test]
    fn bad_values_are_rejected_together() {
        assert!(
            source(serde_json::json!({ "tabels": ["a"] }))
                .unwrap_err()
                .contains("tabels")
        );
        assert!(source(serde_json::json!({ "zero_dates": "zero" })).is_err());
        let c = source(serde_json::json!({ "batch_size": 0, "chunk_rows": 0 })).unwrap();
        let e = c.plan().unwrap_err().to_string();
        assert!(e.contains("batch_size") && e.contains("chunk_rows"), "{e}");
        let bad: MysqlSourceConfig =
            serde_json::from_value(serde_json::json!({ "url": "postgres://x/y" })).unwrap();
        assert!(bad.plan().unwrap_err().hint().unwrap().contains("mysql://"));
    }

    #[test]
    fn targets_resolve_against_the_url_database() {
        let s = Server::parse("mysql://root@127.0.0.1:3306/dst").unwrap();
        assert_eq!(
            s.resolve(&TableId::new(["t"])).unwrap(),
            ("dst".into(), "t".into())
        );
        assert_eq!(
            s.resolve(&TableId::new(["o", "t"])).unwrap(),
            ("o".into(), "t".into())
        );
        assert!(s.resolve(&TableId::new(["a", "b", "c"])).is_err());
        let n = Server::parse("mysql://root@127.0.0.1:3306").unwrap();
        assert!(n.resolve(&TableId::new(["t"])).is_err());
    }
}
