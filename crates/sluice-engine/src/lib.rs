//! Runs one Sluice job in batch mode.
//!
//! ```text
//!  Source::tables ─► plan (bind transforms, name targets, Source::splits, Sink::prepare)
//!                     │
//!         work queue of splits ─► `parallelism` workers, each running one split at a time:
//!                     │
//!   reader task: Source::read ──(bounded channel)──► writer: transforms ─► SinkWriter
//!                                                     end of split ─► commit ─► progress
//!                     │
//!         every split of a table committed ─► Sink::finish_table
//! ```
//!
//! * Memory is bounded by `parallelism × (channel capacity + 2)` batches: a slow sink blocks
//!   `BatchSender::send`, which blocks the reader.
//! * In batch mode a checkpoint is a finished split: a split's writer commits once, at its
//!   end, with the split's last [`Position`](sluice_core::Position). A split interrupted by a
//!   stop or an error is aborted (rolled back, temp files deleted), so the target never holds
//!   part of a split as if it were complete.
//! * Control ([`Controller`]): `stop` stops reading, aborts the splits in flight and ends with
//!   [`RunState::Stopped`]; `abort` does the same without waiting for writers to roll back
//!   cleanly beyond a short deadline. A timeout is a stop.
//!
//! The engine knows connectors only through the `sluice-core` traits.

mod bad_records;
mod control;
mod metrics;
mod progress;
mod run;

pub use bad_records::BadRecordPolicy;
pub use control::{ABORT_DEADLINE, Controller, PERSIST_WAIT, RunState, STOP_DEADLINE, StopReason};
pub use progress::{Progress, TableProgress, TableSnapshot};
pub use run::{
    CheckpointLog, JobSpec, NoCheckpoints, PlannedTable, RetryPolicy, RunOutcome, Streaming,
    TableSummary, TablesCheck, TargetNamer, close, describe_tables, list_splits, plan_tables,
    run_batch, run_planned, set_splits,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_streaming;
