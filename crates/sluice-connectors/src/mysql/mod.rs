//! MySQL and MariaDB as source and sink. (Stub: being written.)

use serde::Deserialize;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Error, Result, WriteMode};

/// Stub.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceConfig {
    pub url: String,
}
impl MysqlSourceConfig {
    /// Builds the source.
    pub fn build(&self) -> Result<DynSource> {
        Err(Error::internal("not yet"))
    }
}
/// Stub.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSinkConfig {
    pub url: String,
}
impl MysqlSinkConfig {
    /// Builds the sink.
    pub fn build(&self, _mode: WriteMode, _create_tables: bool) -> Result<DynSink> {
        Err(Error::internal("not yet"))
    }
}
