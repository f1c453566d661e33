//! Metric names, defined once so a typo cannot compile. Names follow
//! `sluice_<area>_<name>_<unit>[_total]`; labels take bounded values (job, table, connector).

/// Rows read from sources.
pub const SOURCE_ROWS_TOTAL: &str = "sluice_source_rows_total";
/// Input bytes read from sources.
pub const SOURCE_BYTES_TOTAL: &str = "sluice_source_bytes_total";
/// Rows made durable by sinks.
pub const SINK_ROWS_TOTAL: &str = "sluice_sink_rows_total";
/// Time spent in sink commits.
pub const SINK_COMMIT_DURATION_SECONDS: &str = "sluice_sink_commit_duration_seconds";
