//! The jobs a server hosts, and the worker loop that runs them.
//!
//! Each hosted job has a config and a *target state* (RUNNING, PAUSED, STOPPED — Kafka
//! Connect's), both in the state store, and at most one run: a [`JobHandle`] — the same runner,
//! controller and checkpoint protocol `sluice run` uses. Lifecycle requests persist the new
//! target state first, then drive the run's controller, and answer once the run's new state
//! is persisted too. A run is a task of its own: a failing or slow job disturbs no other job
//! and never blocks the API (status reads take a short lock, never wait for a run).
//!
//! ```text
//!   target RUNNING ──► run (resumes from its checkpoints) ──► FINISHED: stays done until a
//!        │                 ▲ pause / resume: the controller     restart or a config change
//!        ▼                 │
//!   PAUSED / STOPPED: the run is paused / stopped (in-flight splits rolled back)
//! ```
//!
//! A restarted server starts every job whose target is RUNNING and whose copy is not finished
//! (from its checkpoints); PAUSED and STOPPED jobs stay as they were.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sluice_connectors::job::JobFile;
use sluice_core::config::ConfigDoc;
use sluice_engine::{Controller, PERSIST_WAIT, Progress, RunState, StopReason};
use sluice_job::{JobHandle, JobReport, StartOptions, Verifier, job_state};
use sluice_state::{ConnectorRecord, JobState, StateStore, TargetState};
use tokio::sync::watch;
use tracing::{info, warn};

/// Makes the verify a job with `[job] verify = true` runs after its copy (the binary supplies
/// it: verify lives in its own crate).
pub type VerifierFactory = Arc<dyn Fn(&JobFile) -> Verifier + Send + Sync>;

/// What every hosted job shares.
pub struct Shared {
    pub store: Arc<dyn StateStore>,
    pub verifier: Option<VerifierFactory>,
    /// The runtime runs execute on (the API answers from a thread of its own, so copies that
    /// keep every worker busy do not queue its requests).
    pub runs: tokio::runtime::Handle,
}

/// One hosted job.
pub struct Hosted {
    pub name: String,
    /// Serializes lifecycle operations (start, stop, restart, delete) on this job.
    ops: tokio::sync::Mutex<()>,
    slot: Mutex<Slot>,
}

struct Slot {
    config: Value,
    target: TargetState,
    reset_pending: bool,
    created_at: String,
    run: Option<Active>,
    last: Option<Ended>,
    /// The current generation finished: a RUNNING target does not start it again.
    finished: bool,
    restarting: bool,
    /// Why the config could not be loaded or the run not started (shown as FAILED).
    start_error: Option<String>,
    seq: u64,
}

#[derive(Clone)]
struct Active {
    seq: u64,
    ctl: Arc<Controller>,
    progress: Progress,
    started_at: String,
    done: watch::Receiver<bool>,
}

/// What the last run ended with: Sluice's *stop receipt*.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Ended {
    /// FINISHED, STOPPED, ABORTED, FAILED, INTERRUPTED.
    pub state: String,
    pub run_id: Option<i64>,
    pub generation: Option<String>,
    pub ended_at: Option<String>,
    /// Rows this run committed.
    pub rows_written: u64,
    /// Rows earlier runs of the same copy committed.
    pub rows_written_earlier: u64,
    pub error: Option<String>,
    /// Why it stopped, when it stopped.
    pub stop_reason: Option<String>,
    pub tables: Vec<TableFigures>,
}

/// Per-table figures of a run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TableFigures {
    pub table: String,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_written_earlier: u64,
    pub splits_done: u64,
    pub splits_total: u64,
    pub complete: bool,
}

/// A job's state as the API shows it.
#[derive(Debug, Clone)]
pub struct View {
    pub name: String,
    pub config: Value,
    pub target: TargetState,
    pub created_at: String,
    /// Sluice's own state (RUNNING, PAUSED, STOPPING, FINISHED, STOPPED, FAILED …), or
    /// UNASSIGNED when nothing ran yet and nothing runs.
    pub state: String,
    /// Kafka Connect's state for the connector and its task.
    pub connect_state: &'static str,
    pub error: Option<String>,
    pub running: Option<RunningView>,
    pub last: Option<Ended>,
    pub reset_pending: bool,
}

/// The run in progress.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunningView {
    pub started_at: String,
    pub rows_written: u64,
    pub rows_written_earlier: u64,
    pub bytes_read: u64,
    pub tables: Vec<TableFigures>,
}

impl Hosted {
    pub fn new(rec: ConnectorRecord) -> Arc<Hosted> {
        Arc::new(Hosted {
            name: rec.name,
            ops: tokio::sync::Mutex::new(()),
            slot: Mutex::new(Slot {
                config: rec.config,
                target: rec.target_state,
                reset_pending: rec.reset_pending,
                created_at: rec.created_at,
                run: None,
                last: None,
                finished: false,
                restarting: false,
                start_error: None,
                seq: 0,
            }),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job's config (secrets included: callers mask it).
    pub fn config(&self) -> Value {
        self.slot().config.clone()
    }

    pub fn target(&self) -> TargetState {
        self.slot().target
    }

    /// Whether a run is in progress.
    pub fn is_running(&self) -> bool {
        self.slot().run.is_some()
    }

    /// The state the API shows.
    pub fn view(&self) -> View {
        let s = self.slot();
        let running = s.run.as_ref().map(|a| {
            let snap = a.progress.snapshot();
            RunningView {
                started_at: a.started_at.clone(),
                rows_written: snap.iter().map(|t| t.rows_written).sum(),
                rows_written_earlier: snap.iter().map(|t| t.rows_written_earlier).sum(),
                bytes_read: snap.iter().map(|t| t.bytes_read).sum(),
                tables: snap
                    .iter()
                    .map(|t| TableFigures {
                        table: t.name.clone(),
                        rows_read: t.rows_read,
                        rows_written: t.rows_written,
                        rows_written_earlier: t.rows_written_earlier,
                        splits_done: t.splits_done as u64,
                        splits_total: t.splits_total as u64,
                        complete: t.splits_total > 0 && t.splits_done == t.splits_total,
                    })
                    .collect(),
            }
        });
        // A run whose end is not recorded yet still counts as live: its final state shows once
        // it is persisted (and offsets may change only then).
        let run_state = s.run.as_ref().map(|a| match a.ctl.state() {
            st if !st.is_terminal() => job_state(st),
            RunState::Stopped | RunState::Aborted => JobState::Stopping,
            _ => JobState::Running,
        });
        let last_state = s.last.as_ref().and_then(|l| JobState::parse(&l.state));
        let (state, connect_state, error) = if let Some(e) = &s.start_error {
            ("FAILED".to_string(), "FAILED", Some(e.clone()))
        } else if let Some(r) = run_state {
            (r.as_str().to_string(), r.connect_state(), None)
        } else if let Some(l) = last_state {
            let err = s.last.as_ref().and_then(|l| l.error.clone());
            (l.as_str().to_string(), l.connect_state(), err)
        } else {
            ("UNASSIGNED".to_string(), "UNASSIGNED", None)
        };
        // Kafka Connect's state follows the target once the run has followed it (a stopped
        // or paused connector reads so, whatever its last run did).
        let connect_state = if s.restarting {
            "RESTARTING"
        } else {
            match (s.target, connect_state) {
                (TargetState::Stopped, _) => "STOPPED",
                (_, "FAILED") => "FAILED",
                (TargetState::Paused, _) => "PAUSED",
                (TargetState::Running, c) => c,
            }
        };
        View {
            name: self.name.clone(),
            config: s.config.clone(),
            target: s.target,
            created_at: s.created_at.clone(),
            state,
            connect_state,
            error,
            running,
            last: s.last.clone(),
            reset_pending: s.reset_pending,
        }
    }

    /// Reads what the store says about the job's last run and generation (at boot).
    pub async fn load_history(&self, shared: &Shared) {
        let last = sluice_state::last_run(&*shared.store, &self.name).await;
        let generation = shared.store.generation(&self.name).await;
        let tables = match &last {
            Ok(Some(r)) => shared.store.run_tables(r.id).await.unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut s = self.slot();
        if let Ok(Some(g)) = generation {
            s.finished = g.finished;
        }
        if let Ok(Some(r)) = last {
            // Nothing runs in this process yet: a run recorded as live was interrupted.
            let state = match JobState::parse(&r.state) {
                Some(st) if st.is_live() => JobState::Interrupted,
                Some(st) => st,
                None => JobState::Interrupted,
            };
            s.last = Some(Ended {
                state: state.as_str().to_string(),
                run_id: Some(r.id),
                generation: Some(r.generation.clone()).filter(|g| !g.is_empty()),
                ended_at: r.ended_at.clone(),
                rows_written: r.rows_written,
                rows_written_earlier: r.rows_earlier,
                error: r.error.clone(),
                stop_reason: None,
                tables: tables
                    .into_iter()
                    .map(|t| TableFigures {
                        table: t.table,
                        rows_read: t.rows_read,
                        rows_written: t.rows_written,
                        rows_written_earlier: t.rows_written_earlier,
                        splits_done: t.splits_done,
                        splits_total: t.splits_total,
                        complete: t.complete,
                    })
                    .collect(),
            });
        }
    }

    /// Starts a run if the target is RUNNING, none runs and the copy is not finished (or
    /// `again`: a restart or a new config runs a finished copy again).
    pub async fn start_if_wanted(self: &Arc<Self>, shared: &Arc<Shared>, actor: &str, again: bool) {
        let _op = self.ops.lock().await;
        self.start_locked(shared, actor, again).await;
    }

    async fn start_locked(self: &Arc<Self>, shared: &Arc<Shared>, actor: &str, again: bool) {
        let (config, from_scratch, seq) = {
            let mut s = self.slot();
            if s.target != TargetState::Running || s.run.is_some() || (s.finished && !again) {
                return;
            }
            s.seq += 1;
            (s.config.clone(), s.reset_pending, s.seq)
        };
        let job = match load_job(&self.name, &config) {
            Ok(j) => j,
            Err(msg) => {
                warn!(job = %self.name, error = %msg, "The job's config cannot be loaded.");
                self.slot().start_error = Some(msg);
                return;
            }
        };
        let (job, document) = job;
        let options = StartOptions {
            from_scratch,
            verify: match &shared.verifier {
                Some(f) if job.job.verify.enabled() => Some(f(&job)),
                _ => None,
            },
            actor: actor.to_string(),
        };
        let handle = {
            let _runs = shared.runs.enter();
            JobHandle::start(job, document, options, shared.store.clone(), None)
        };
        let (done_tx, done_rx) = watch::channel(false);
        let active = Active {
            seq,
            ctl: handle.controller(),
            progress: handle.progress().clone(),
            started_at: now(),
            done: done_rx,
        };
        {
            let mut s = self.slot();
            s.run = Some(active);
            s.start_error = None;
            s.finished = false;
        }
        info!(job = %self.name, "Job started.");
        let me = self.clone();
        let shared = shared.clone();
        let runs = shared.runs.clone();
        runs.spawn(async move {
            let report = handle.wait().await;
            me.ended(&shared, seq, report).await;
            let _ = done_tx.send(true);
        });
    }

    /// Records the end of run `seq`.
    async fn ended(&self, shared: &Shared, seq: u64, report: JobReport) {
        let o = &report.outcome;
        let state = match &report.verify {
            Some(Ok(false)) | Some(Err(_)) => JobState::Failed,
            _ => job_state(o.state),
        };
        let error = match &report.verify {
            Some(Ok(false)) => Some("verify found differences between source and target".into()),
            Some(Err(e)) => Some(format!("verify after the run: {e}")),
            _ => o.error.as_ref().map(|e| {
                let mut m = e.to_string();
                if let Some(h) = e.hint() {
                    m.push_str(&format!(" ({h})"));
                }
                sluice_core::config::redact(&m)
            }),
        };
        let clear_reset = report.generation.is_some();
        {
            let mut s = self.slot();
            if s.run.as_ref().is_some_and(|a| a.seq == seq) {
                s.run = None;
            }
            s.finished = state == JobState::Finished;
            if clear_reset {
                s.reset_pending = false;
            }
            s.last = Some(Ended {
                state: state.as_str().to_string(),
                run_id: report.run_id,
                generation: report.generation.clone(),
                ended_at: Some(now()),
                rows_written: o.rows_written(),
                rows_written_earlier: o.rows_written_earlier(),
                error: error.clone(),
                stop_reason: o.stop_reason.as_ref().map(|r| r.to_string()),
                tables: o
                    .tables
                    .iter()
                    .map(|t| TableFigures {
                        table: t.table.clone(),
                        rows_read: t.rows_read,
                        rows_written: t.rows_written,
                        rows_written_earlier: t.rows_written_earlier,
                        splits_done: t.splits_done as u64,
                        splits_total: t.splits_total as u64,
                        complete: t.complete,
                    })
                    .collect(),
            });
        }
        if clear_reset && let Err(e) = shared.store.set_reset_pending(&self.name, false).await {
            warn!(job = %self.name, error = %e, "Clearing the job's offset reset failed.");
        }
        match error {
            Some(e) => warn!(job = %self.name, state = %state, error = %e, "Job run ended."),
            None => info!(job = %self.name, state = %state, "Job run ended."),
        }
    }

    /// Waits until no run is in progress (its end recorded), at most `limit`.
    pub async fn wait_idle(&self, limit: Duration) {
        let Some(mut a) = self.active() else {
            return;
        };
        let _ = tokio::time::timeout(limit, a.done.wait_for(|d| *d)).await;
    }

    /// The running run's controller, if any.
    fn active(&self) -> Option<Active> {
        self.slot().run.clone()
    }

    /// Sets and persists the target state, and records who asked.
    async fn set_target(
        &self,
        shared: &Shared,
        target: TargetState,
        actor: &str,
        action: &str,
    ) -> sluice_core::Result<()> {
        // Asked again for what it already is: nothing to persist or to audit (a script that
        // pauses in a loop costs a lock, not a write).
        if self.target() == target {
            return Ok(());
        }
        shared.store.set_target_state(&self.name, target).await?;
        self.slot().target = target;
        audit(
            shared,
            &self.name,
            actor,
            action,
            format!("target state {}", target.as_str()),
        )
        .await;
        Ok(())
    }

    /// PAUSED: the run's readers hold. Returns once PAUSED is persisted.
    pub async fn pause(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        actor: &str,
    ) -> sluice_core::Result<()> {
        let _op = self.ops.lock().await;
        self.set_target(shared, TargetState::Paused, actor, "api.pause")
            .await?;
        if let Some(a) = self.active()
            && a.ctl.pause()
        {
            a.ctl.persisted(PERSIST_WAIT).await;
        }
        Ok(())
    }

    /// RUNNING: a paused run continues; a job without a run starts one from its checkpoints.
    pub async fn resume(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        actor: &str,
    ) -> sluice_core::Result<()> {
        let _op = self.ops.lock().await;
        self.set_target(shared, TargetState::Running, actor, "api.resume")
            .await?;
        match self.active() {
            // A run that is stopping (a stop answered a moment ago) ends first; then a new
            // run starts from its checkpoints.
            Some(a) if a.ctl.is_stopping() || a.ctl.state().is_terminal() => {
                self.wait_idle(sluice_engine::STOP_DEADLINE + sluice_engine::ABORT_DEADLINE)
                    .await;
                self.start_locked(shared, actor, false).await;
            }
            Some(a) => {
                if a.ctl.resume() {
                    a.ctl.persisted(PERSIST_WAIT).await;
                }
            }
            None => self.start_locked(shared, actor, false).await,
        }
        Ok(())
    }

    /// STOPPED: the run stops (in-flight splits roll back; past `deadline` it aborts). Returns
    /// once STOPPING is persisted; the run goes on stopping.
    pub async fn stop(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        actor: &str,
        deadline: Duration,
    ) -> sluice_core::Result<()> {
        let _op = self.ops.lock().await;
        self.set_target(shared, TargetState::Stopped, actor, "api.stop")
            .await?;
        if let Some(a) = self.active() {
            a.ctl.stop_within(
                StopReason::Requested(format!("the REST API ({actor})")),
                deadline,
            );
            a.ctl.persisted(PERSIST_WAIT).await;
        }
        Ok(())
    }

    /// Stops the run (if any) and waits for its end, at most `deadline` and then an abort.
    async fn stop_and_wait(&self, actor: &str, deadline: Duration) {
        let Some(mut a) = self.active() else {
            return;
        };
        a.ctl.stop_within(
            StopReason::Requested(format!("the REST API ({actor})")),
            deadline,
        );
        let limit = deadline
            .saturating_add(sluice_engine::ABORT_DEADLINE)
            .saturating_add(PERSIST_WAIT);
        if tokio::time::timeout(limit, a.done.wait_for(|d| *d))
            .await
            .is_err()
        {
            warn!(job = %self.name, "The job's run did not end in time after a stop; it goes on ending in the background.");
        }
    }

    /// Stops the run if any, then starts one (RESTARTING meanwhile). With `only_failed`, only
    /// a failed job is restarted. Runs in the background; returns whether a restart began.
    pub fn restart(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        actor: &str,
        only_failed: bool,
        deadline: Duration,
    ) -> bool {
        if only_failed && self.view().connect_state != "FAILED" {
            return false;
        }
        self.slot().restarting = true;
        let (me, shared, actor) = (self.clone(), shared.clone(), actor.to_string());
        let runs = shared.runs.clone();
        runs.spawn(async move {
            let _op = me.ops.lock().await;
            audit(&shared, &me.name, &actor, "api.restart", String::new()).await;
            me.stop_and_wait(&actor, deadline).await;
            me.slot().start_error = None;
            me.start_locked(&shared, &actor, true).await;
            me.slot().restarting = false;
        });
        true
    }

    /// Replaces the config (persisted), then restarts the run with it if the job runs or
    /// should.
    pub async fn update_config(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        actor: &str,
        config: Value,
        changed: Vec<String>,
    ) -> sluice_core::Result<()> {
        if changed.is_empty() {
            return Ok(());
        }
        let _op = self.ops.lock().await;
        shared
            .store
            .update_connector_config(&self.name, &config)
            .await?;
        self.slot().config = config;
        audit(
            shared,
            &self.name,
            actor,
            "api.config",
            format!("changed: {}", changed.join(", ")),
        )
        .await;
        drop(_op);
        // A stopped job takes the new config when it is resumed.
        if self.target() != TargetState::Stopped || self.is_running() {
            self.restart(shared, actor, false, sluice_engine::STOP_DEADLINE);
        }
        Ok(())
    }

    /// Offsets reset: the next run starts from scratch. Only while STOPPED (as Kafka
    /// Connect); the caller checks.
    pub async fn reset_offsets(&self, shared: &Shared, actor: &str) -> sluice_core::Result<()> {
        let _op = self.ops.lock().await;
        shared.store.set_reset_pending(&self.name, true).await?;
        {
            let mut s = self.slot();
            s.reset_pending = true;
            s.finished = false;
        }
        audit(
            shared,
            &self.name,
            actor,
            "api.offsets.reset",
            "the next run starts from scratch".into(),
        )
        .await;
        Ok(())
    }

    /// Edits split positions of the unfinished copy (`apply = false`: says what the edits
    /// would do). Only while STOPPED and idle; the caller checks. Serialized with the other
    /// lifecycle calls, and the job's locks are taken, so no run starts meanwhile.
    pub async fn edit_offsets(
        &self,
        shared: &Shared,
        edits: &[sluice_job::PositionEdit],
        apply: bool,
        actor: &str,
    ) -> sluice_core::Result<Vec<sluice_job::EditEffect>> {
        let _op = self.ops.lock().await;
        let (config, reset_pending) = {
            let s = self.slot();
            (s.config.clone(), s.reset_pending)
        };
        if reset_pending {
            return Err(sluice_core::Error::config(format!(
                "the offsets of {} were reset: its next run copies everything from scratch, so                  there is no position to edit",
                self.name
            )));
        }
        let (job, _) = load_job(&self.name, &config).map_err(sluice_core::Error::config)?;
        sluice_job::edit_positions(&job, shared.store.clone(), edits, apply, actor).await
    }

    /// Deletes the job: its run stops (and is waited for, bounded), its config is forgotten.
    pub async fn delete(
        &self,
        shared: &Shared,
        actor: &str,
        deadline: Duration,
    ) -> sluice_core::Result<()> {
        let _op = self.ops.lock().await;
        shared.store.delete_connector(&self.name).await?;
        self.slot().target = TargetState::Stopped;
        audit(shared, &self.name, actor, "api.delete", String::new()).await;
        self.stop_and_wait(actor, deadline).await;
        Ok(())
    }

    /// Stops the run for a server shutdown (the target state is kept, so a restarted server
    /// resumes it).
    pub async fn shutdown(&self, deadline: Duration) {
        self.stop_and_wait("server shutdown", deadline).await;
    }
}

/// Loads a stored config: `${env:…}`/`${file:…}` resolved, checked as a job file is.
pub fn load_job(name: &str, config: &Value) -> Result<(JobFile, Value), String> {
    let doc = ConfigDoc::from_json_resolved(&format!("connector {name}"), config.clone())
        .map_err(|e| e.render())?;
    let job = JobFile::from_doc(&doc).map_err(|e| e.render())?;
    Ok((job, doc.value))
}

async fn audit(shared: &Shared, job: &str, actor: &str, action: &str, detail: String) {
    sluice_job::audit(&*shared.store, job, actor, action, detail).await;
}

/// The hosted jobs by name.
#[derive(Default)]
pub struct Jobs {
    map: Mutex<BTreeMap<String, Arc<Hosted>>>,
}

impl Jobs {
    pub fn get(&self, name: &str) -> Option<Arc<Hosted>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
    pub fn insert(&self, job: Arc<Hosted>) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.name.clone(), job);
    }
    pub fn remove(&self, name: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
    pub fn all(&self) -> Vec<Arc<Hosted>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
