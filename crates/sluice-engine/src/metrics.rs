//! The metrics the engine emits, through the `metrics` facade (an exporter — Prometheus in
//! `sluice server` — is installed by whoever hosts the engine; without one they cost a few
//! atomic operations per batch). Names live in `sluice_core::metrics`; labels are the job and
//! the table, never row values.

use metrics::{Counter, Histogram, counter, gauge, histogram};
use sluice_core::metrics::{self as m, labels};

use crate::control::{Controller, RunState};

/// Per-table handles, registered once per run.
pub(crate) struct TableMetrics {
    pub rows_read: Counter,
    pub bytes_read: Counter,
    pub batches: Counter,
    pub rows_written: Counter,
    pub splits: Counter,
    pub checkpoints: Counter,
    pub last_checkpoint: metrics::Gauge,
    pub commit_seconds: Histogram,
}

impl TableMetrics {
    pub fn new(job: &str, table: &str) -> Self {
        let l = [
            (labels::JOB, job.to_string()),
            (labels::TABLE, table.to_string()),
        ];
        TableMetrics {
            rows_read: counter!(m::SOURCE_ROWS_TOTAL, &l),
            bytes_read: counter!(m::SOURCE_BYTES_TOTAL, &l),
            batches: counter!(m::SOURCE_BATCHES_TOTAL, &l),
            rows_written: counter!(m::SINK_ROWS_TOTAL, &l),
            splits: counter!(m::SPLITS_COMMITTED_TOTAL, &l),
            checkpoints: counter!(m::CHECKPOINTS_TOTAL, &l),
            last_checkpoint: gauge!(m::LAST_CHECKPOINT_TIMESTAMP_SECONDS, &l),
            commit_seconds: histogram!(m::SINK_COMMIT_DURATION_SECONDS, &l),
        }
    }
}

/// A split redone after a transient error.
pub(crate) fn retry(job: &str) {
    counter!(m::SPLIT_RETRIES_TOTAL, labels::JOB => job.to_string()).increment(1);
}

/// A commit in doubt, and what the sink said.
pub(crate) fn in_doubt(job: &str, committed: bool) {
    let outcome = if committed {
        "committed"
    } else {
        "not_committed"
    };
    counter!(m::IN_DOUBT_COMMITS_TOTAL, labels::JOB => job.to_string(), labels::OUTCOME => outcome)
        .increment(1);
}

/// An error that ended a run.
pub(crate) fn error(job: &str, kind: sluice_core::ErrorKind) {
    counter!(m::ERRORS_TOTAL, labels::JOB => job.to_string(), labels::KIND => kind.to_string())
        .increment(1);
}

const STATES: [RunState; 7] = [
    RunState::Running,
    RunState::Paused,
    RunState::Stopping,
    RunState::Stopped,
    RunState::Aborted,
    RunState::Failed,
    RunState::Finished,
];

fn state_label(s: RunState) -> &'static str {
    match s {
        RunState::Running => "running",
        RunState::Paused => "paused",
        RunState::Stopping => "stopping",
        RunState::Stopped => "stopped",
        RunState::Aborted => "aborted",
        RunState::Failed => "failed",
        RunState::Finished => "finished",
    }
}

/// Sets `sluice_job_state{job, state}` to 1 for `now` and 0 for every other state.
pub(crate) fn state(job: &str, now: RunState) {
    for s in STATES {
        gauge!(m::JOB_STATE, labels::JOB => job.to_string(), labels::STATE => state_label(s))
            .set(if s == now { 1.0 } else { 0.0 });
    }
}

/// Follows the controller's state until the run ends.
pub(crate) fn follow_state(job: String, ctl: &Controller) -> tokio::task::JoinHandle<()> {
    let mut rx = ctl.subscribe();
    tokio::spawn(async move {
        loop {
            let now = *rx.borrow_and_update();
            state(&job, now);
            if now.is_terminal() || rx.changed().await.is_err() {
                return;
            }
        }
    })
}
