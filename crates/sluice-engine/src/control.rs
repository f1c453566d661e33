//! The job controller: one state machine per running job, driven alike by signals, the CLI
//! and (later) the REST API and the scheduler.
//!
//! ```text
//!   RUNNING ──stop/timeout──► STOPPING ──splits aborted──► STOPPED
//!      │                         │
//!      │                         └──abort──► ABORTED
//!      ├──error──► FAILED
//!      └──all splits committed──► FINISHED
//! ```

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_core::{Error, Result};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a graceful stop may take before it becomes an abort (in-flight queries are then
/// dropped, their transactions rolled back by the server). A stop normally ends in
/// milliseconds; this bounds one that waits on a lock or a server that stopped answering.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// How long, after an abort, a run may take to return before its caller gives up on it.
pub const ABORT_DEADLINE: Duration = Duration::from_secs(3);

/// Where a run is. Reported by `sluice status`; persisted by the caller before reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Planning or moving data.
    Running,
    /// Readers hold; positions and the plan are kept. `resume` continues.
    Paused,
    /// A stop was requested; readers stop, in-flight splits are rolled back.
    Stopping,
    /// Stopped before the end; finished splits are kept. Resumable.
    Stopped,
    /// Aborted without a clean roll-back of in-flight splits.
    Aborted,
    /// Ended with an error.
    Failed,
    /// Every split committed.
    Finished,
}

impl RunState {
    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            RunState::Running | RunState::Paused | RunState::Stopping
        )
    }
}

/// How long a request (stop, pause, resume) waits for its new state to be persisted before it
/// is answered anyway (a state store that stopped answering must not hold the answer).
pub const PERSIST_WAIT: Duration = Duration::from_secs(3);

/// Why a stop was requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C / SIGTERM, `sluice stop`, the API.
    Requested(String),
    /// `[job] timeout` elapsed.
    Timeout,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Requested(by) => write!(f, "stop requested by {by}"),
            StopReason::Timeout => f.write_str("the job's timeout elapsed"),
        }
    }
}

/// Drives one run. Cheap to share (`Arc<Controller>`).
#[derive(Debug)]
pub struct Controller {
    stop: CancellationToken,
    abort: CancellationToken,
    state: watch::Sender<RunState>,
    paused: watch::Sender<bool>,
    reason: Mutex<Option<(StopReason, Instant)>>,
    /// Whether a recorder persists this run's states ([`Controller::record_states`]).
    recording: AtomicBool,
    /// The last state the recorder persisted.
    recorded: watch::Sender<Option<RunState>>,
}

impl Default for Controller {
    fn default() -> Self {
        Self::new()
    }
}

impl Controller {
    /// A controller in state RUNNING.
    pub fn new() -> Self {
        Controller {
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            state: watch::channel(RunState::Running).0,
            paused: watch::channel(false).0,
            reason: Mutex::new(None),
            recording: AtomicBool::new(false),
            recorded: watch::channel(None).0,
        }
    }

    /// Declares that a recorder persists this run's states: from now on
    /// [`persisted`](Self::persisted) waits for it (persist, then publish).
    pub fn record_states(&self) {
        self.recording.store(true, Ordering::SeqCst);
    }

    /// The recorder persisted `state`. (See [`PERSIST_WAIT`].)
    pub fn mark_persisted(&self, state: RunState) {
        self.recorded.send_replace(Some(state));
    }

    /// Waits until the run's current state is persisted by its recorder, at most `limit`;
    /// returns at once when nobody records or the run is over (its end is recorded by the
    /// runner). Callers answer a request only after this, so whoever sees the answer finds the
    /// same state in the store. False if `limit` passed first.
    pub async fn persisted(&self, limit: Duration) -> bool {
        if !self.recording.load(Ordering::SeqCst) {
            return true;
        }
        let mut recorded = self.recorded.subscribe();
        let mut states = self.state.subscribe();
        let wait = async {
            loop {
                let now = *states.borrow_and_update();
                if now.is_terminal() || *recorded.borrow_and_update() == Some(now) {
                    return;
                }
                tokio::select! {
                    r = recorded.changed() => if r.is_err() { return },
                    r = states.changed() => if r.is_err() { return },
                }
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// Requests a graceful stop that becomes an abort if the run has not ended within
    /// `deadline`. Returns at once; idempotent (the first deadline stays). Needs a Tokio
    /// runtime.
    pub fn stop_within(self: &std::sync::Arc<Self>, reason: StopReason, deadline: Duration) {
        let first = !self.is_stopping();
        self.stop(reason);
        if first {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                if !me.state().is_terminal() && !me.is_aborting() {
                    warn!(deadline = ?deadline, "The stop did not complete within its deadline; aborting.");
                    me.abort();
                }
            });
        }
    }

    /// Stops the run after `timeout` (`[job] timeout`), unless it ended before. Needs a Tokio
    /// runtime.
    pub fn arm_timeout(self: &std::sync::Arc<Self>, timeout: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if !me.state().is_terminal() {
                warn!(timeout = ?timeout, "Job timeout elapsed; stopping.");
                me.stop_within(StopReason::Timeout, STOP_DEADLINE);
            }
        });
    }

    /// Runs `fut` unless the job is asked to stop first: a stop drops it (closing whatever
    /// connection it waits on, e.g. for a lock) and returns [`Error::stopped`].
    pub async fn unless_stopped<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        if self.is_stopping() {
            return Err(Error::stopped());
        }
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Err(Error::stopped()),
            r = fut => r,
        }
    }

    /// Runs `fut` unless the job is aborted first (see [`unless_stopped`](Self::unless_stopped)).
    pub async fn unless_aborted<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            biased;
            _ = self.abort.cancelled() => Err(Error::stopped()),
            r = fut => r,
        }
    }

    /// Requests a graceful stop. Returns at once; idempotent.
    pub fn stop(&self, reason: StopReason) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some((reason, Instant::now()));
            }
        }
        self.state.send_if_modified(|s| {
            if matches!(*s, RunState::Running | RunState::Paused) {
                *s = RunState::Stopping;
                true
            } else {
                false
            }
        });
        self.stop.cancel();
        // A paused job must be able to stop: release the readers.
        self.paused.send_replace(false);
    }

    /// Holds the readers at their next batch; everything read so far still flows to the sink.
    /// Returns false if the run is not RUNNING.
    pub fn pause(&self) -> bool {
        let changed = self.state.send_if_modified(|s| {
            if *s == RunState::Running {
                *s = RunState::Paused;
                true
            } else {
                false
            }
        });
        if changed {
            self.paused.send_replace(true);
        }
        changed
    }

    /// Continues a paused run. Returns false if the run is not PAUSED.
    pub fn resume(&self) -> bool {
        let changed = self.state.send_if_modified(|s| {
            if *s == RunState::Paused {
                *s = RunState::Running;
                true
            } else {
                false
            }
        });
        if changed {
            self.paused.send_replace(false);
        }
        changed
    }

    /// Watches the pause flag (given to sources' senders).
    pub fn pause_watch(&self) -> watch::Receiver<bool> {
        self.paused.subscribe()
    }

    /// Aborts now: in-flight work is dropped after a short roll-back attempt.
    pub fn abort(&self) {
        self.stop(StopReason::Requested("abort".into()));
        self.abort.cancel();
    }

    /// Whether a stop (or abort) was requested.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Whether an abort was requested.
    pub fn is_aborting(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Why the run was stopped, and when the stop was requested.
    pub fn stop_reason(&self) -> Option<(StopReason, Instant)> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Token cancelled on stop (given to sources).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Token cancelled on abort.
    pub fn abort_token(&self) -> CancellationToken {
        self.abort.clone()
    }

    /// The current state.
    pub fn state(&self) -> RunState {
        *self.state.borrow()
    }

    /// Watches state changes.
    pub fn subscribe(&self) -> watch::Receiver<RunState> {
        self.state.subscribe()
    }

    /// Sets a terminal state (called by the runner).
    pub fn finish(&self, state: RunState) {
        self.state.send_replace(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_state_counts_as_published_only_once_persisted() {
        let ctl = std::sync::Arc::new(Controller::new());
        // Nobody records: nothing to wait for.
        assert!(ctl.pause());
        assert!(ctl.persisted(Duration::from_millis(10)).await);
        ctl.record_states();
        assert!(ctl.resume());
        assert!(
            !ctl.persisted(Duration::from_millis(50)).await,
            "RUNNING is not recorded yet"
        );
        let c = ctl.clone();
        let recorder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.mark_persisted(RunState::Paused);
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.mark_persisted(RunState::Running);
        });
        let t = Instant::now();
        assert!(ctl.persisted(Duration::from_secs(5)).await);
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "waited for RUNNING"
        );
        recorder.await.unwrap();
        ctl.finish(RunState::Stopped);
        assert!(
            ctl.persisted(Duration::from_millis(10)).await,
            "an ended run's end is the runner's to record"
        );
    }

    #[test]
    fn stop_is_idempotent_and_keeps_first_reason() {
        let c = Controller::new();
        c.stop(StopReason::Timeout);
        c.stop(StopReason::Requested("signal".into()));
        assert_eq!(c.state(), RunState::Stopping);
        assert_eq!(c.stop_reason().unwrap().0, StopReason::Timeout);
        assert!(c.is_stopping() && !c.is_aborting());
        c.abort();
        assert!(c.is_aborting());
    }

    #[test]
    fn pause_and_resume_only_from_the_right_states() {
        let c = Controller::new();
        assert!(!c.resume());
        assert!(c.pause());
        assert_eq!(c.state(), RunState::Paused);
        assert!(*c.pause_watch().borrow());
        assert!(c.resume());
        assert!(!*c.pause_watch().borrow());
        c.pause();
        c.stop(StopReason::Timeout);
        assert_eq!(c.state(), RunState::Stopping);
        assert!(!*c.pause_watch().borrow(), "a stop releases paused readers");
        assert!(!c.pause());
    }
}
