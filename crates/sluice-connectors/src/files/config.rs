//! The `[source]` / `[sink]` sections of the file connectors, and their validation.
//!
//! `build` is pure: it checks option values (one-byte delimiters, known compressions, type
//! names) and builds the source or sink. Paths are looked at later, in `Source::tables` and
//! `Sink::prepare`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Error, LogicalType, Result, TableId, WriteMode};

use super::sink::{FileSink, FormatFactory};
use super::source::{FileSource, SourceFormat};
use super::{csv, jsonl, parquet};

/// Default rows per batch.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 8192;
/// Default rows read to infer a schema.
pub(crate) const DEFAULT_INFER_ROWS: usize = 1000;

fn default_true() -> bool {
    true
}

/// Compression of CSV and JSON Lines input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputCompression {
    /// By file extension: `.gz` is gzip, `.zst` / `.zstd` is zstd, anything else plain.
    #[default]
    Auto,
    /// Plain text.
    None,
    /// gzip (also several concatenated gzip members).
    Gzip,
    /// Zstandard.
    Zstd,
}

/// Compression of CSV and JSON Lines output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputCompression {
    /// Plain text (the default).
    #[default]
    None,
    /// gzip; files end in `.gz`.
    Gzip,
    /// Zstandard; files end in `.zst`.
    Zstd,
}

impl OutputCompression {
    /// The extension suffix, with its dot (`""`, `".gz"`, `".zst"`).
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            OutputCompression::None => "",
            OutputCompression::Gzip => ".gz",
            OutputCompression::Zstd => ".zst",
        }
    }
}

/// Compression of Parquet pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    /// Snappy (the default): fast, moderate ratio.
    #[default]
    Snappy,
    /// Zstandard (level 3): smaller files, a little slower.
    Zstd,
    /// gzip: widely readable, slow.
    Gzip,
    /// LZ4 (raw).
    Lz4,
    /// No compression.
    None,
}

/// Reads CSV files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    /// A file, a directory or a glob, e.g. `"data/lineitem.csv"`, `"data/"`, `"data/*.csv.gz"`.
    pub path: String,
    /// Read every matched file as one table of this name, e.g. `"orders"`. Without it each
    /// file (or subdirectory) is its own table, named after it.
    #[serde(default)]
    pub table: Option<String>,
    /// Whether the first line holds column names, e.g. `false` (default `true`; without a
    /// header columns are named `column_1`, `column_2`, …).
    #[serde(default = "default_true")]
    pub header: bool,
    /// Field separator, one character, e.g. `";"` or `"\t"` (default `","`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Quote character, e.g. `"'"` (default `"\""`; a quote inside quotes is doubled).
    #[serde(default)]
    pub quote: Option<String>,
    /// Escape character inside quoted fields, e.g. `"\\"` (default: none, quotes are doubled).
    #[serde(default)]
    pub escape: Option<String>,
    /// The text that means NULL, e.g. `"\\N"` or `"NULL"` (default: an empty field is NULL).
    /// When set, only this exact text is NULL.
    #[serde(default)]
    pub null: Option<String>,
    /// `"auto"` (default: by extension `.gz` / `.zst`), `"none"`, `"gzip"` or `"zstd"`.
    #[serde(default)]
    pub compression: InputCompression,
    /// Column types that replace the inferred ones, e.g.
    /// `{ price = "decimal(12,2)", id = "int64", note = "text" }`.
    #[serde(default)]
    pub schema: BTreeMap<String, LogicalType>,
    /// Rows read from the first file to infer column types, e.g. `10000` (default 1000).
    #[serde(default)]
    pub infer_rows: Option<usize>,
    /// Rows per batch, e.g. `65536` (default 8192).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Uncompressed files larger than this many bytes are read as several splits (byte
    /// ranges of about this size, cut at record boundaries), e.g. `268435456` (default
    /// 67108864, 64 MiB).
    #[serde(default)]
    pub split_bytes: Option<u64>,
}

/// Reads JSON Lines files: one JSON object per line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSourceConfig {
    /// A file, a directory or a glob, e.g. `"events/*.jsonl.zst"`.
    pub path: String,
    /// Read every matched file as one table of this name, e.g. `"events"`.
    #[serde(default)]
    pub table: Option<String>,
    /// `"auto"` (default: by extension `.gz` / `.zst`), `"none"`, `"gzip"` or `"zstd"`.
    #[serde(default)]
    pub compression: InputCompression,
    /// Column types that replace the inferred ones, e.g.
    /// `{ amount = "decimal(12,2)", tags = "array<text>", at = "timestamptz" }`.
    #[serde(default)]
    pub schema: BTreeMap<String, LogicalType>,
    /// Lines read from the first file to infer column types, e.g. `10000` (default 1000).
    #[serde(default)]
    pub infer_rows: Option<usize>,
    /// Rows per batch, e.g. `65536` (default 8192).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Uncompressed files larger than this many bytes are read as several splits (byte
    /// ranges of about this size, cut after a newline), e.g. `268435456` (default 67108864,
    /// 64 MiB).
    #[serde(default)]
    pub split_bytes: Option<u64>,
}

/// Reads Parquet files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSourceConfig {
    /// A file, a directory or a glob, e.g. `"warehouse/orders/"`.
    pub path: String,
    /// Read every matched file as one table of this name, e.g. `"orders"`.
    #[serde(default)]
    pub table: Option<String>,
    /// Rows per batch, e.g. `65536` (default 8192).
    #[serde(default)]
    pub batch_size: Option<usize>,
}

/// Writes CSV files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSinkConfig {
    /// Output directory, created if missing, e.g. `"out/"`. A table goes to
    /// `<path>/<table>.csv`, or `<path>/<table>/part-00000.csv` … when it has several splits.
    pub path: String,
    /// Whether to write a header line, e.g. `false` (default `true`).
    #[serde(default = "default_true")]
    pub header: bool,
    /// Field separator, one character, e.g. `"\t"` (default `","`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// The text written for NULL, e.g. `"\\N"` (default: an empty field).
    #[serde(default)]
    pub null: Option<String>,
    /// `"none"` (default), `"gzip"` (`.csv.gz`) or `"zstd"` (`.csv.zst`).
    #[serde(default)]
    pub compression: OutputCompression,
}

/// Writes JSON Lines files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkConfig {
    /// Output directory, created if missing, e.g. `"out/"`; tables go to `<table>.jsonl`.
    pub path: String,
    /// `"none"` (default), `"gzip"` (`.jsonl.gz`) or `"zstd"` (`.jsonl.zst`).
    #[serde(default)]
    pub compression: OutputCompression,
}

/// Writes Parquet files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// Output directory, created if missing, e.g. `"lake/"`; tables go to `<table>.parquet`.
    pub path: String,
    /// `"snappy"` (default), `"zstd"`, `"gzip"`, `"lz4"` or `"none"`.
    #[serde(default)]
    pub compression: ParquetCompression,
    /// Rows per row group, e.g. `1000000` (default 122880). A row group is also closed when
    /// it holds about 64 MiB, which bounds memory.
    #[serde(default)]
    pub row_group_size: Option<usize>,
}

/// One ASCII character given as a string; `"\\t"` written out is accepted as a tab.
pub(crate) fn one_byte(key: &str, value: Option<&str>, default: u8) -> Result<u8> {
    let Some(v) = value else { return Ok(default) };
    let v = match v {
        "\\t" => "\t",
        other => other,
    };
    match v.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(*b),
        _ => Err(Error::config(format!(
            "{key} = {v:?} must be a single ASCII character (not a line break)"
        ))
        .with_hint(format!(
            "for example {key} = \",\", {key} = \";\" or {key} = \"\\t\""
        ))),
    }
}

fn batch_size(v: Option<usize>) -> Result<usize> {
    match v {
        None => Ok(DEFAULT_BATCH_SIZE),
        Some(0) => Err(Error::config("batch_size = 0 must be at least 1")
            .with_hint("for example batch_size = 8192")),
        Some(n) => Ok(n),
    }
}

fn infer_rows(v: Option<usize>) -> Result<usize> {
    match v {
        None => Ok(DEFAULT_INFER_ROWS),
        Some(0) => Err(Error::config("infer_rows = 0 must be at least 1")
            .with_hint("for example infer_rows = 1000")),
        Some(n) => Ok(n),
    }
}

fn split_bytes(v: Option<u64>) -> Result<u64> {
    match v {
        None => Ok(super::ranges::DEFAULT_SPLIT_BYTES),
        Some(0) => Err(
            Error::config("split_bytes = 0 must be at least 1").with_hint(
                "for example split_bytes = 67108864 (64 MiB); a value larger than every file reads \
             each file as one split",
            ),
        ),
        Some(n) => Ok(n),
    }
}

fn check_table(table: &Option<String>) -> Result<()> {
    if let Some(t) = table
        && (t.is_empty() || t.contains(['/', '\\']))
    {
        return Err(Error::config(format!(
            "table = {t:?} must be a plain name without slashes"
        ))
        .with_hint("for example table = \"orders\""));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<()> {
    if path.trim().is_empty() {
        return Err(Error::config("path is empty")
            .with_hint("set path to a file, a directory or a glob, e.g. path = \"data/*.csv\""));
    }
    Ok(())
}

impl CsvSourceConfig {
    /// Validates the options (no I/O) and builds the source.
    pub fn build(&self) -> Result<DynSource> {
        check_path(&self.path)?;
        check_table(&self.table)?;
        let opts = csv::CsvReadOptions {
            header: self.header,
            delimiter: one_byte("delimiter", self.delimiter.as_deref(), b',')?,
            quote: one_byte("quote", self.quote.as_deref(), b'"')?,
            escape: match &self.escape {
                Some(e) => Some(one_byte("escape", Some(e), b'\\')?),
                None => None,
            },
            null: self.null.clone(),
            overrides: self.schema.clone(),
            infer_rows: infer_rows(self.infer_rows)?,
        };
        for (col, t) in &self.schema {
            csv::check_override(col, t)?;
        }
        Ok(Arc::new(FileSource::new(
            &self.path,
            self.table.clone(),
            SourceFormat::Csv(opts),
            self.compression,
            batch_size(self.batch_size)?,
            split_bytes(self.split_bytes)?,
        )))
    }
}

impl JsonlSourceConfig {
    /// Validates the options (no I/O) and builds the source.
    pub fn build(&self) -> Result<DynSource> {
        check_path(&self.path)?;
        check_table(&self.table)?;
        let opts = jsonl::JsonlReadOptions {
            overrides: self.schema.clone(),
            infer_rows: infer_rows(self.infer_rows)?,
        };
        Ok(Arc::new(FileSource::new(
            &self.path,
            self.table.clone(),
            SourceFormat::Jsonl(opts),
            self.compression,
            batch_size(self.batch_size)?,
            split_bytes(self.split_bytes)?,
        )))
    }
}

impl ParquetSourceConfig {
    /// Validates the options (no I/O) and builds the source.
    pub fn build(&self) -> Result<DynSource> {
        check_path(&self.path)?;
        check_table(&self.table)?;
        Ok(Arc::new(FileSource::new(
            &self.path,
            self.table.clone(),
            SourceFormat::Parquet,
            InputCompression::None,
            batch_size(self.batch_size)?,
            // Parquet files are split by row groups (see `parquet::splits`).
            super::ranges::DEFAULT_SPLIT_BYTES,
        )))
    }
}

fn check_mode(mode: WriteMode) -> Result<()> {
    if mode == WriteMode::Upsert {
        return Err(Error::config(
            "file sinks cannot upsert; use write = \"overwrite\" or \"append\"",
        )
        .with_hint("files have no keys to update by; overwrite rewrites them, append adds files"));
    }
    Ok(())
}

fn sink(path: &str, mode: WriteMode, format: Arc<dyn FormatFactory>) -> Result<DynSink> {
    check_path(path)?;
    check_mode(mode)?;
    Ok(Arc::new(FileSink::new(path, mode, format)))
}

impl CsvSinkConfig {
    fn options(&self) -> Result<csv::CsvWriteOptions> {
        Ok(csv::CsvWriteOptions {
            header: self.header,
            delimiter: one_byte("delimiter", self.delimiter.as_deref(), b',')?,
            null: self.null.clone().unwrap_or_default(),
            compression: self.compression,
        })
    }

    /// Validates the options (no I/O) and builds the sink.
    pub fn build(&self, mode: WriteMode) -> Result<DynSink> {
        sink(&self.path, mode, Arc::new(self.options()?))
    }

    /// A source reading back what this sink wrote for `table`, with the source table's column
    /// types (`types`; CSV is not re-inferred).
    pub fn read_back(
        &self,
        table: &TableId,
        types: BTreeMap<String, LogicalType>,
    ) -> Result<DynSource> {
        let path = output_of(&self.path, table, &self.options()?.extension())?;
        CsvSourceConfig {
            path,
            table: Some(table.name().to_string()),
            header: self.header,
            delimiter: self.delimiter.clone(),
            quote: None,
            escape: None,
            null: self.null.clone().filter(|n| !n.is_empty()),
            compression: InputCompression::Auto,
            schema: types,
            infer_rows: None,
            batch_size: None,
            split_bytes: None,
        }
        .build()
    }
}

impl JsonlSinkConfig {
    fn options(&self) -> jsonl::JsonlWriteOptions {
        jsonl::JsonlWriteOptions {
            compression: self.compression,
        }
    }

    /// Validates the options (no I/O) and builds the sink.
    pub fn build(&self, mode: WriteMode) -> Result<DynSink> {
        sink(&self.path, mode, Arc::new(self.options()))
    }

    /// A source reading back what this sink wrote for `table` (see
    /// [`CsvSinkConfig::read_back`]).
    pub fn read_back(
        &self,
        table: &TableId,
        types: BTreeMap<String, LogicalType>,
    ) -> Result<DynSource> {
        let path = output_of(&self.path, table, &self.options().extension())?;
        JsonlSourceConfig {
            path,
            table: Some(table.name().to_string()),
            compression: InputCompression::Auto,
            schema: types,
            infer_rows: None,
            batch_size: None,
            split_bytes: None,
        }
        .build()
    }
}

/// Where a file sink at `dir` wrote `table`: `<dir>/<name>/` when it wrote several parts,
/// else `<dir>/<name>.<ext>` (the sink's layout, see `sink.rs`).
fn output_of(dir: &str, table: &TableId, ext: &str) -> Result<String> {
    let name = table.name();
    let parts = std::path::Path::new(dir).join(name);
    let single = std::path::Path::new(dir).join(format!("{name}.{ext}"));
    let path = if parts.is_dir() {
        parts
    } else if single.is_file() {
        single
    } else {
        return Err(Error::schema(format!(
            "target table {table} does not exist: neither {} nor {} is there",
            single.display(),
            parts.display()
        ))
        .with_hint("run the job first, or check path and table_map in [sink]"));
    };
    Ok(path.to_string_lossy().into_owned())
}

impl ParquetSinkConfig {
    /// Validates the options (no I/O) and builds the sink.
    pub fn build(&self, mode: WriteMode) -> Result<DynSink> {
        let row_group_size = match self.row_group_size {
            None => parquet::DEFAULT_ROW_GROUP_SIZE,
            Some(0) => {
                return Err(Error::config("row_group_size = 0 must be at least 1")
                    .with_hint("for example row_group_size = 122880"));
            }
            Some(n) => n,
        };
        let opts = parquet::ParquetWriteOptions {
            compression: self.compression,
            row_group_size,
        };
        sink(&self.path, mode, Arc::new(opts))
    }

    /// A source reading back what this sink wrote for `table` (Parquet keeps its types).
    pub fn read_back(&self, table: &TableId) -> Result<DynSource> {
        let ext = parquet::ParquetWriteOptions {
            compression: self.compression,
            row_group_size: parquet::DEFAULT_ROW_GROUP_SIZE,
        }
        .extension();
        ParquetSourceConfig {
            path: output_of(&self.path, table, &ext)?,
            table: Some(table.name().to_string()),
            batch_size: None,
        }
        .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn delimiters_must_be_one_ascii_byte() {
        assert_eq!(one_byte("delimiter", None, b',').unwrap(), b',');
        assert_eq!(one_byte("delimiter", Some("\t"), b',').unwrap(), b'\t');
        assert_eq!(one_byte("delimiter", Some("\\t"), b',').unwrap(), b'\t');
        assert_eq!(one_byte("delimiter", Some(";"), b',').unwrap(), b';');
        for bad in ["", ";;", "é", "\n"] {
            let e = one_byte("delimiter", Some(bad), b',').unwrap_err();
            assert_eq!(e.kind(), sluice_core::ErrorKind::Config, "{bad:?}");
            assert!(e.to_string().contains("delimiter"));
        }
    }

    #[test]
    fn example_configs_parse_and_build() {
        let c: CsvSourceConfig = serde_json::from_value(json!({
            "path": "data/*.csv.gz", "delimiter": "|", "null": "\\N",
            "schema": {"price": "decimal(12,2)", "id": "int64"}, "compression": "gzip"
        }))
        .unwrap();
        c.build().unwrap();
        let c: JsonlSourceConfig =
            serde_json::from_value(json!({"path": "x.jsonl", "infer_rows": 10})).unwrap();
        c.build().unwrap();
        let c: ParquetSinkConfig =
            serde_json::from_value(json!({"path": "out", "compression": "zstd"})).unwrap();
        c.build(WriteMode::Overwrite).unwrap();
    }

    #[test]
    fn unknown_keys_and_values_are_rejected() {
        let e = serde_json::from_value::<CsvSourceConfig>(json!({"path": "a", "delimeter": ";"}))
            .unwrap_err();
        assert!(e.to_string().contains("delimeter"));
        let e = serde_json::from_value::<CsvSourceConfig>(
            json!({"path": "a", "schema": {"x": "integr"}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("integr"));
        let e = serde_json::from_value::<ParquetSinkConfig>(
            json!({"path": "a", "compression": "brotli"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("brotli"));
    }

    #[test]
    fn upsert_is_a_config_error() {
        let c: CsvSinkConfig = serde_json::from_value(json!({"path": "out"})).unwrap();
        let e = c.build(WriteMode::Upsert).err().unwrap();
        assert_eq!(e.kind(), sluice_core::ErrorKind::Config);
        assert!(e.to_string().contains("cannot upsert"));
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let c: CsvSourceConfig =
            serde_json::from_value(json!({"path": "a", "batch_size": 0})).unwrap();
        assert!(c.build().is_err());
        let c: JsonlSourceConfig =
            serde_json::from_value(json!({"path": "a", "split_bytes": 0})).unwrap();
        let e = c.build().err().unwrap();
        assert!(e.to_string().contains("split_bytes"), "{e}");
        let c: ParquetSinkConfig =
            serde_json::from_value(json!({"path": "a", "row_group_size": 0})).unwrap();
        assert!(c.build(WriteMode::Append).is_err());
    }
}
