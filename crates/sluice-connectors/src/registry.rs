//! The explicit list of connector types. Adding a connector means adding a line here.
//!
//! `[source]` and `[sink]` sections are tagged by `type`; [`SourceConfig`] and [`SinkConfig`]
//! dispatch on it with located errors (see `sluice_core::config`). Options every sink shares
//! (`write`, `create_tables`, `table_map`) live in [`SinkCommon`] and are split off before the
//! connector's own options are read.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use sluice_core::config::deserialize_tagged;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Result, TableId, WriteMode, tagged_enum};

use crate::{files, mysql, postgres, sqlite};

/// A `[source]` section.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Postgres(postgres::PostgresSourceConfig),
    Mysql(mysql::MysqlSourceConfig),
    Sqlite(sqlite::SqliteSourceConfig),
    Csv(files::CsvSourceConfig),
    Jsonl(files::JsonlSourceConfig),
    Parquet(files::ParquetSourceConfig),
}
tagged_enum!(SourceConfig {
    "postgres" => Postgres,
    "mysql" => Mysql,
    "sqlite" => Sqlite,
    "csv" => Csv,
    "jsonl" => Jsonl,
    "parquet" => Parquet,
});

impl SourceConfig {
    /// Validates the options (no I/O) and builds the source.
    pub fn build(&self) -> Result<DynSource> {
        match self {
            SourceConfig::Postgres(c) => c.build(),
            SourceConfig::Mysql(c) => c.build(),
            SourceConfig::Sqlite(c) => c.build(),
            SourceConfig::Csv(c) => c.build(),
            SourceConfig::Jsonl(c) => c.build(),
            SourceConfig::Parquet(c) => c.build(),
        }
    }

    /// Like [`build`](Self::build), knowing the sink: a source whose target is the same
    /// engine keeps what only that engine can hold (MySQL's zero dates).
    pub fn build_for(&self, sink: &SinkConfig) -> Result<DynSource> {
        match (self, &sink.kind) {
            (SourceConfig::Mysql(c), SinkKind::Mysql(_)) => c.build_same_engine(),
            _ => self.build(),
        }
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Mysql(_) => "mysql",
            SourceConfig::Sqlite(_) => "sqlite",
            SourceConfig::Csv(_) => "csv",
            SourceConfig::Jsonl(_) => "jsonl",
            SourceConfig::Parquet(_) => "parquet",
        }
    }
}

/// The connector-specific part of a `[sink]` section.
#[derive(Debug, Clone)]
pub enum SinkKind {
    Postgres(postgres::PostgresSinkConfig),
    Mysql(mysql::MysqlSinkConfig),
    Sqlite(sqlite::SqliteSinkConfig),
    Csv(files::CsvSinkConfig),
    Jsonl(files::JsonlSinkConfig),
    Parquet(files::ParquetSinkConfig),
}
tagged_enum!(SinkKind {
    "postgres" => Postgres,
    "mysql" => Mysql,
    "sqlite" => Sqlite,
    "csv" => Csv,
    "jsonl" => Jsonl,
    "parquet" => Parquet,
});

/// Options every sink takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkCommon {
    /// `append` (default for databases), `overwrite` or `upsert`. File sinks default to
    /// `overwrite` and refuse `upsert`.
    #[serde(default)]
    pub write: Option<WriteMode>,
    /// Create missing target tables from the source schema (default true).
    #[serde(default)]
    pub create_tables: Option<bool>,
    /// Target names for source tables: `{ "main.a" = "archive_a" }`.
    #[serde(default)]
    pub table_map: BTreeMap<String, String>,
}

const COMMON_KEYS: [&str; 3] = ["write", "create_tables", "table_map"];

/// A `[sink]` section: the shared options plus the connector's own.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub common: SinkCommon,
    pub kind: SinkKind,
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        let Value::Object(mut map) = v else {
            return Err(D::Error::custom("expected a table with a `type` key"));
        };
        let mut common = serde_json::Map::new();
        for k in COMMON_KEYS {
            if let Some(x) = map.remove(k) {
                common.insert(k.to_string(), x);
            }
        }
        let common: SinkCommon = deserialize_tagged(Value::Object(common))?;
        // Dispatch on `type`; an unknown key's "expected" list also names the common keys.
        let kind = SinkKind::deserialize(Value::Object(map)).map_err(|e| {
            let msg = e.to_string();
            let msg = if msg.contains("unknown field") && msg.contains("expected") {
                let extra: Vec<String> = COMMON_KEYS.iter().map(|k| format!("`{k}`")).collect();
                format!("{msg}, {}", extra.join(", "))
            } else {
                msg
            };
            D::Error::custom(msg)
        })?;
        Ok(SinkConfig { common, kind })
    }
}

impl SinkConfig {
    /// The effective write mode (the connector's default if not given).
    pub fn write_mode(&self) -> WriteMode {
        self.common.write.unwrap_or(match self.kind {
            SinkKind::Sqlite(_) | SinkKind::Postgres(_) | SinkKind::Mysql(_) => WriteMode::Append,
            _ => WriteMode::Overwrite,
        })
    }

    /// Whether missing tables are created.
    pub fn create_tables(&self) -> bool {
        self.common.create_tables.unwrap_or(true)
    }

    /// The target name of `source` per `table_map` (else the same name).
    pub fn target_of(&self, source: &TableId) -> Result<TableId> {
        for (from, to) in &self.common.table_map {
            if TableId::parse(from)? == *source {
                return TableId::parse(to);
            }
        }
        Ok(source.clone())
    }

    /// Validates the options (no I/O) and builds the sink.
    pub fn build(&self) -> Result<DynSink> {
        let mode = self.write_mode();
        let create = self.create_tables();
        match &self.kind {
            SinkKind::Postgres(c) => c.build(mode, create),
            SinkKind::Mysql(c) => c.build(mode, create),
            SinkKind::Sqlite(c) => c.build(mode, create),
            SinkKind::Csv(c) => c.build(mode),
            SinkKind::Jsonl(c) => c.build(mode),
            SinkKind::Parquet(c) => c.build(mode),
        }
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            SinkKind::Postgres(_) => "postgres",
            SinkKind::Mysql(_) => "mysql",
            SinkKind::Sqlite(_) => "sqlite",
            SinkKind::Csv(_) => "csv",
            SinkKind::Jsonl(_) => "jsonl",
            SinkKind::Parquet(_) => "parquet",
        }
    }
}
