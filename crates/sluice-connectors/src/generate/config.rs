//! `[source] type = "generate"`: options and their validation.

use std::sync::Arc;

use serde::Deserialize;
use sluice_core::source::DynSource;
use sluice_core::{Error, Result, TableId};

use super::source::GenerateSource;

/// Generates rows (see the module docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSourceConfig {
    /// The table's name, e.g. `"events"` or `"demo.events"` (default `"generated"`).
    #[serde(default = "default_table")]
    pub table: String,
    /// How many rows, e.g. `1000000`. Leave out to generate until the job is stopped
    /// (streaming mode only).
    #[serde(default)]
    pub rows: Option<u64>,
    /// Rows per second at most, e.g. `5000` (default: as fast as the sink takes them).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Rows per batch, e.g. `1024` (the default). A streaming job can commit after any
    /// batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Rows per split in batch mode, e.g. `1000000` (the default); splits run in parallel.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
}

fn default_table() -> String {
    "generated".into()
}
fn default_batch_size() -> usize {
    1024
}
fn default_chunk_rows() -> u64 {
    1_000_000
}

impl GenerateSourceConfig {
    /// Validates the options and builds the source.
    pub fn build(&self) -> Result<DynSource> {
        let table = TableId::parse(&self.table).map_err(|e| e.at("table"))?;
        if self.batch_size == 0 {
            return Err(Error::config("`batch_size` must be at least 1")
                .with_hint("leave it out for 1024 rows per batch")
                .at("batch_size"));
        }
        if self.chunk_rows == 0 {
            return Err(Error::config("`chunk_rows` must be at least 1")
                .with_hint("leave it out for a million rows per split")
                .at("chunk_rows"));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(
                Error::config(format!("`rate` must be a positive number, not {r}"))
                    .with_hint("rows per second, e.g. rate = 5000; leave it out for no limit")
                    .at("rate"),
            );
        }
        Ok(Arc::new(GenerateSource::new(
            table,
            self.rows,
            self.rate,
            self.batch_size,
            self.chunk_rows,
        )))
    }

    /// Whether the source ends by itself (`rows` given).
    pub fn is_bounded(&self) -> bool {
        self.rows.is_some()
    }
}
