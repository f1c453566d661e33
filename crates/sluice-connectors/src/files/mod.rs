//! Files as sources and sinks: CSV, JSON Lines and Parquet.
//!
//! **Sources** (`type = "csv" | "jsonl" | "parquet"`) take `path`: a file, a directory or a
//! glob. Each file is a table named by its stem (`lineitem.csv.gz` → `lineitem`); in a
//! directory each subdirectory is one table whose files are its splits; `table = "name"`
//! makes every matched file a split of one table. Hidden files (`.x`, `_SUCCESS`) and
//! unfinished sink output (`*.sluice-tmp`) are skipped. A split is one file, or a byte range
//! of an uncompressed CSV or JSON Lines file larger than `split_bytes` (cut at record
//! boundaries, see `ranges`), or a group of row groups of a Parquet file; split ids are
//! `<table>#<file>` and `<table>#<file>.<range>` over files sorted by path. The split's detail
//! is what its reader reads; a ranged file that changed since planning is refused.
//! Positions are `{"rows": n}`, the data rows of the split already delivered; a resume skips
//! exactly that many. CSV and JSON Lines may be gzip or zstd compressed (by extension, or
//! `compression = ...`), their schema is inferred from the first `infer_rows` rows of the
//! first file and `schema = { col = "type" }` overrides it. Reading streams: memory is a batch
//! (`batch_size` rows) plus 1 MiB buffers, whatever the file size.
//!
//! **Sinks** write `<path>/<table>.<ext>` (one split) or `<path>/<table>/part-00000.<ext>`
//! (several). Files are written under a temporary name and renamed on commit after an
//! fsync, so a file with a final name is always complete. `write = "overwrite"` (the default)
//! replaces the table's files; `"append"` adds files named `<table>-<unix millis>.<ext>`;
//! `"upsert"` is refused. CSV writes decimals exactly, timestamps as ISO 8601 (with offset for
//! `timestamptz`), uuids as `8-4-4-4-12`, binary as lowercase hex, json as its text; JSON
//! Lines embeds json columns as JSON values; Parquet keeps the Arrow schema with its
//! `sluice.type` metadata, so Parquet round trips keep logical types.
//!
//! Options, type mapping and limits: `docs/connectors/files.md`.

mod config;
mod convert;
mod csv;
mod discover;
mod jsonl;
mod parquet;
mod ranges;
mod sink;
mod source;

pub use config::{
    CsvSinkConfig, CsvSourceConfig, InputCompression, JsonlSinkConfig, JsonlSourceConfig,
    OutputCompression, ParquetCompression, ParquetSinkConfig, ParquetSourceConfig,
};

/// Checks, without leaving a trace, that Sluice may create files in `dir` (or, if it does not
/// exist yet, in the nearest directory above it that does, where it would be created).
pub(crate) fn check_writable_dir(dir: &std::path::Path, what: &str) -> sluice_core::Result<()> {
    let mut at = dir;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = std::path::Path::new(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        return Err(sluice_core::Error::config(format!(
            "{what}: {} is not a directory",
            at.display()
        ))
        .with_hint("choose a path whose parent is a directory"));
    }
    let probe = at.join(format!(".sluice-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(sluice_core::Error::from_io(
            e,
            format!("{what}: cannot create files in {}", at.display()),
        )),
    }
}
