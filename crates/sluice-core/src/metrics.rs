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
/// Batches read from sources.
pub const SOURCE_BATCHES_TOTAL: &str = "sluice_source_batches_total";
/// Splits committed.
pub const SPLITS_COMMITTED_TOTAL: &str = "sluice_splits_committed_total";
/// Checkpoints committed: one per split in batch mode, one per `checkpoint_interval` and split
/// in streaming mode.
pub const CHECKPOINTS_TOTAL: &str = "sluice_checkpoints_total";
/// When the job last committed a checkpoint, as Unix seconds (its age is `time() - value`).
pub const LAST_CHECKPOINT_TIMESTAMP_SECONDS: &str = "sluice_last_checkpoint_timestamp_seconds";
/// Splits redone after a transient error (a connection lost, a server restarting).
pub const SPLIT_RETRIES_TOTAL: &str = "sluice_split_retries_total";
/// Commits whose answer was lost and whose outcome was asked of the sink, by `outcome`
/// (`committed`, `not_committed`).
pub const IN_DOUBT_COMMITS_TOTAL: &str = "sluice_in_doubt_commits_total";
/// Errors that ended a run, by `kind` (the error kind: config, connection, data …).
pub const ERRORS_TOTAL: &str = "sluice_errors_total";
/// Rows set aside as bad records.
pub const BAD_RECORDS_TOTAL: &str = "sluice_bad_records_total";
/// 1 while the job is in `state`, else 0, for each state a run passes through.
pub const JOB_STATE: &str = "sluice_job_state";
/// Change capture: seconds from a source transaction's commit to the sink's commit of it, for
/// the oldest transaction of the last checkpoint (the longest any of its changes waited; 0
/// while the stream is idle and caught up).
pub const REPLICATION_LAG_SECONDS: &str = "sluice_replication_lag_seconds";
/// Change capture: bytes of WAL the replication slot holds back on the server.
pub const REPLICATION_RETAINED_BYTES: &str = "sluice_replication_retained_bytes";
/// Change capture: the end LSN (PostgreSQL) of the last transaction the sink committed and
/// the source acknowledged, as a number.
pub const REPLICATION_CONFIRMED_POSITION: &str = "sluice_replication_confirmed_position";

/// Label names.
pub mod labels {
    pub const JOB: &str = "job";
    pub const TABLE: &str = "table";
    pub const KIND: &str = "kind";
    pub const OUTCOME: &str = "outcome";
    pub const STATE: &str = "state";
}
