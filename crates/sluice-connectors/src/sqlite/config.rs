//! `[source] type = "sqlite"` and `[sink] type = "sqlite"`: options and their validation.
//!
//! `build` checks everything that can be checked without touching the disk (URL form, globs,
//! column overrides, sizes) and returns every problem at once; the database file is first
//! opened by `tables()` / `prepare()`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sluice_core::error::join_errors;
use sluice_core::schema::TablePattern;
use sluice_core::schema::parse_patterns;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Error, LogicalType, Result, TableId, WriteMode};

use super::sink::SqliteSink;
use super::source::SqliteSource;

const URL_HINT: &str = "write the database as a URL: sqlite://data/shop.db (relative to the \
                        current directory) or sqlite:///var/lib/shop.db (absolute)";

/// Reads tables from a SQLite database file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// The database file, e.g. `sqlite://data/shop.db` (relative) or `sqlite:///srv/shop.db`
    /// (absolute); `sqlite:data/shop.db` is accepted too. The file must exist; it is opened
    /// read-only.
    pub url: String,
    /// Table names or globs, e.g. `["orders", "order_*"]` or `['"Order Items"']`.
    /// Default `["*"]`: every table except SQLite's internal `sqlite_*` tables and Sluice's
    /// own `_sluice_*` tables.
    #[serde(default = "default_tables")]
    pub tables: Vec<String>,
    /// Tables to leave out, names or globs, e.g. `["tmp_*", "audit_log"]`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Rows per batch sent downstream, e.g. `8192` (the default).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Rows per split: a table is read as rowid ranges of about this many rows, in parallel,
    /// each resumable on its own, e.g. `500000` (the default).
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// Logical types for columns whose stored values do not match their declared type,
    /// keyed `table.column`, e.g. `{ "orders.note" = "text", "events.at" = "int64" }`.
    #[serde(default)]
    pub columns: BTreeMap<String, LogicalType>,
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

/// Writes tables into a SQLite database file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// The database file, e.g. `sqlite://out/shop.db` or `sqlite:///srv/shop.db`. Created if
    /// missing; its directory must exist.
    pub url: String,
    /// How long a write waits for another process holding the database lock, in
    /// milliseconds, e.g. `60000` (the default).
    #[serde(default = "default_busy_timeout")]
    pub busy_timeout_ms: u64,
    /// Page cache per connection in MiB, e.g. `64` (the default). More helps large
    /// upserts and indexes.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u32,
}

fn default_busy_timeout() -> u64 {
    60_000
}
fn default_cache_mib() -> u32 {
    64
}

/// The file path of a `sqlite://` URL.
pub fn parse_url(url: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::config(format!("sqlite url {url:?} {why}")).with_hint(URL_HINT);
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else {
        return Err(bad("does not start with sqlite://"));
    };
    // A query string (`?mode=ro`) is not supported: options are keys of the section.
    if path.contains('?') {
        return Err(bad("has a query string (`?…`), which is not supported"));
    }
    if path.is_empty() || path == "/" {
        return Err(bad("names no file"));
    }
    if path == ":memory:" {
        return Err(bad(
            "is an in-memory database, which another connection cannot see",
        ));
    }
    Ok(PathBuf::from(path))
}

/// A validated source config.
#[derive(Debug, Clone)]
pub(crate) struct SourcePlan {
    pub path: PathBuf,
    pub include: Vec<TablePattern>,
    pub exclude: Vec<TablePattern>,
    pub batch_size: usize,
    pub chunk_rows: u64,
    /// `(table, column) → type`; table as written (matched against `main.<name>` and `<name>`).
    pub columns: Vec<(TableId, String, LogicalType)>,
}

impl SqliteSourceConfig {
    /// Validates the options (no I/O) and builds the source.
    pub fn build(&self) -> Result<DynSource> {
        Ok(Arc::new(SqliteSource::new(self.plan()?)))
    }

    pub(crate) fn plan(&self) -> Result<SourcePlan> {
        let mut errors = Vec::new();
        let path = parse_url(&self.url).map_err(|e| errors.push(e)).ok();
        if self.tables.is_empty() {
            errors.push(
                Error::config("`tables` is empty, so nothing would be read").with_hint(
                    "leave `tables` out to read every table, or name some: [\"orders\"]",
                ),
            );
        }
        let include = parse_patterns(&self.tables, "tables", &mut errors);
        let exclude = parse_patterns(&self.exclude, "exclude", &mut errors);
        if self.batch_size == 0 {
            errors.push(Error::config("`batch_size` must be at least 1").with_hint("e.g. 8192"));
        }
        if self.chunk_rows == 0 {
            errors.push(Error::config("`chunk_rows` must be at least 1").with_hint("e.g. 500000"));
        }
        let mut columns = Vec::new();
        for (key, t) in &self.columns {
            match TableId::parse(key) {
                Ok(id) if id.parts().len() >= 2 => {
                    let parts = id.parts();
                    let table = TableId::new(parts[..parts.len() - 1].iter().cloned());
                    columns.push((table, id.name().to_string(), t.clone()));
                }
                _ => errors.push(
                    Error::config(format!("`columns` key {key:?} is not `table.column`"))
                        .with_hint("e.g. columns = { \"orders.note\" = \"text\" }"),
                ),
            }
        }
        join_errors(errors)?;
        Ok(SourcePlan {
            path: path.expect("errors joined above"),
            include,
            exclude,
            batch_size: self.batch_size,
            chunk_rows: self.chunk_rows,
            columns,
        })
    }
}

/// A validated sink config.
#[derive(Debug, Clone)]
pub(crate) struct SinkPlan {
    pub path: PathBuf,
    pub mode: WriteMode,
    pub create_tables: bool,
    pub busy_timeout_ms: u64,
    pub cache_mib: u32,
}

impl SqliteSinkConfig {
    /// Validates the options (no I/O) and builds the sink.
    pub fn build(&self, mode: WriteMode, create_tables: bool) -> Result<DynSink> {
        Ok(Arc::new(SqliteSink::new(self.plan(mode, create_tables)?)))
    }

    /// A source reading back what this sink wrote (the whole database file, read-only).
    pub fn read_back(&self) -> Result<DynSource> {
        let path = parse_url(&self.url)?;
        if !path.exists() {
            return Err(Error::schema(format!(
                "the SQLite target {} does not exist",
                path.display()
            ))
            .with_hint("run the job first, or check url in [sink]"));
        }
        SqliteSourceConfig {
            url: self.url.clone(),
            tables: default_tables(),
            exclude: Vec::new(),
            batch_size: default_batch_size(),
            chunk_rows: default_chunk_rows(),
            columns: BTreeMap::new(),
        }
        .build()
    }

    pub(crate) fn plan(&self, mode: WriteMode, create_tables: bool) -> Result<SinkPlan> {
        Ok(SinkPlan {
            path: parse_url(&self.url)?,
            mode,
            create_tables,
            busy_timeout_ms: self.busy_timeout_ms,
            cache_mib: self.cache_mib,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("sqlite://out/shop.db").unwrap(),
            PathBuf::from("out/shop.db")
        );
        assert_eq!(
            parse_url("sqlite:///abs/x.db").unwrap(),
            PathBuf::from("/abs/x.db")
        );
        assert_eq!(parse_url("sqlite:rel.db").unwrap(), PathBuf::from("rel.db"));
        for bad in [
            "postgres://x",
            "shop.db",
            "sqlite://",
            "sqlite://a.db?mode=ro",
            "sqlite::memory:",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert_eq!(e.kind(), sluice_core::ErrorKind::Config, "{bad}");
            assert!(e.hint().unwrap().contains("sqlite://"), "{bad}");
        }
    }

    fn source(extra: serde_json::Value) -> std::result::Result<SqliteSourceConfig, String> {
        let mut v = serde_json::json!({ "url": "sqlite://a.db" });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn example_config_parses_with_defaults() {
        let c = source(serde_json::json!({ "columns": { "orders.note": "text" } })).unwrap();
        let p = c.plan().unwrap();
        assert_eq!(p.batch_size, 8192);
        assert_eq!(p.chunk_rows, 500_000);
        assert_eq!(p.include.len(), 1);
        assert_eq!(p.columns[0].1, "note");
        assert_eq!(p.columns[0].2, LogicalType::Text);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(
            source(serde_json::json!({ "tabels": ["a"] }))
                .unwrap_err()
                .contains("tabels")
        );
        let c =
            source(serde_json::json!({ "batch_size": 0, "columns": { "note": "text" } })).unwrap();
        let e = c.plan().unwrap_err().to_string();
        assert!(
            e.contains("batch_size") && e.contains("table.column"),
            "{e}"
        );
        assert!(source(serde_json::json!({ "columns": { "a.b": "intt" } })).is_err());
    }
}
