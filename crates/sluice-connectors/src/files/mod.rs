//! Files as sources and sinks: CSV, JSON Lines, Parquet. (Stub: being written.)

use serde::Deserialize;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Error, Result, WriteMode};

macro_rules! stub_config {
    ($($src:ident, $sink:ident);*) => {$(
        /// Stub.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $src { pub path: String }
        impl $src {
            /// Builds the source.
            pub fn build(&self) -> Result<DynSource> { Err(Error::internal("not yet")) }
        }
        /// Stub.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $sink { pub path: String }
        impl $sink {
            /// Builds the sink.
            pub fn build(&self, _mode: WriteMode) -> Result<DynSink> { Err(Error::internal("not yet")) }
        }
    )*};
}
stub_config!(CsvSourceConfig, CsvSinkConfig; JsonlSourceConfig, JsonlSinkConfig; ParquetSourceConfig, ParquetSinkConfig);
