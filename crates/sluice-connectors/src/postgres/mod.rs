//! PostgreSQL as source and sink. (Stub: being written.)

use serde::Deserialize;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Error, Result, WriteMode};

/// Stub.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    pub url: String,
}
impl PostgresSourceConfig {
    /// Builds the source.
    pub fn build(&self) -> Result<DynSource> {
        Err(Error::internal("not yet"))
    }
}
/// Stub.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    pub url: String,
}
impl PostgresSinkConfig {
    /// Builds the sink.
    pub fn build(&self, _mode: WriteMode, _create_tables: bool) -> Result<DynSink> {
        Err(Error::internal("not yet"))
    }
}
