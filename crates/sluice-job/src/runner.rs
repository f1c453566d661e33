//! Running one job: generation choice, the run, and its records. See the crate docs.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_connectors::job::JobFile;
use sluice_core::{
    Error, GenerationRecord, JobContext, Position, Result, SinkLockGuard, TableId, WriteMode,
};
use sluice_engine::{
    CheckpointLog, Controller, JobSpec, PlannedTable, Progress, RunOutcome, RunState,
    describe_tables, list_splits, run_planned, set_splits,
};
use sluice_state::{AuditEntry, JobLock, JobState, RunTable, RunUpdate, SplitRecord, StateStore};
use tracing::{error, info, warn};

use crate::manifest::{self, MANIFEST_VERSION, Manifest, TableManifest};
use crate::wire::build_spec;

/// How often a running job's figures are written to the state store (for `status`).
const RECORD_EVERY: Duration = Duration::from_secs(1);
/// How long recording a finished copy may take.
const FINISH_DEADLINE: Duration = Duration::from_secs(30);
/// How many configuration differences a refusal lists.
const MAX_DIFFERENCES: usize = 12;

/// Compares source and target after a finished copy (`[job] verify = true`): `Ok(true)` when
/// they are identical.
pub type Verifier =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<bool>> + Send>> + Send + Sync>;

/// What to run.
pub struct RunRequest<'a> {
    /// The checked job file.
    pub job: &'a JobFile,
    /// The job document as JSON (its `[source]`, `[[transform]]` and `[sink]` are what a
    /// generation depends on).
    pub document: &'a Value,
    /// Start a new generation even if one is unfinished (`--from-scratch`).
    pub from_scratch: bool,
    /// Run after a finished copy; differences fail the run.
    pub verify: Option<Verifier>,
    /// The job's lock in the store, when the caller took it already (it must, before it
    /// publishes anything about the run, such as a control socket); else the run takes it.
    pub lock: Option<JobLock>,
    /// Who started the run, for the audit log (`cli:USER@HOST`, a token's name, `scheduler`).
    pub actor: String,
}

/// How a run went, after everything about it was persisted.
#[derive(Debug)]
pub struct JobReport {
    pub outcome: RunOutcome,
    /// The run's id in the state store (absent if it could not be recorded).
    pub run_id: Option<i64>,
    /// The generation it worked on (absent if it ended before choosing one).
    pub generation: Option<String>,
    /// Whether it resumed a generation an earlier run started.
    pub resumed: bool,
    /// Bad records set aside (`[errors]`).
    pub bad_records: u64,
    /// The verify after a finished copy, if one ran: `Ok(true)` identical.
    pub verify: Option<Result<bool>>,
}

/// Runs `req` to its end, a stop or an error, recording the run in `store`. Every state
/// change is persisted before this returns; the returned report is what may be shown.
pub async fn run_job(
    mut req: RunRequest<'_>,
    store: Arc<dyn StateStore>,
    ctl: Arc<Controller>,
    progress: Progress,
) -> JobReport {
    let started = Instant::now();
    let name = req.job.job.name.clone();
    let mut spec = match build_spec(req.job) {
        Ok(s) => s,
        Err(e) => return early(&ctl, &progress, e, started, None),
    };
    if let Some(t) = spec.timeout {
        ctl.arm_timeout(t);
    }
    let bad_records = spec.bad_records.clone();
    // Invariant: one run of a job at a time per state store (the target's locks keep runs
    // from other stores off).
    let taken = match req.lock.take() {
        Some(l) => Ok(l),
        None => ctl.unless_stopped(store.lock_job(&name)).await,
    };
    let job_lock = match taken {
        Ok(l) => l,
        Err(e) => {
            sluice_engine::close(&spec).await;
            return early(&ctl, &progress, e, started, None);
        }
    };
    let run_id = match store.begin_run(&name, "", std::process::id()).await {
        Ok(id) => id,
        Err(e) => {
            sluice_engine::close(&spec).await;
            return early(&ctl, &progress, e, started, None);
        }
    };
    let detail = format!(
        "run {run_id}, process {} on {}",
        std::process::id(),
        sluice_state::host_name()
    );
    audit(&*store, &name, &req.actor, "run.start", detail).await;
    let generation = Arc::new(Mutex::new(String::new()));
    let recorder = spawn_recorder(
        store.clone(),
        (name.clone(), run_id),
        ctl.clone(),
        progress.clone(),
        generation.clone(),
    );
    let prepared = ctl
        .unless_stopped(prepare(&req, &mut spec, &store, &progress))
        .await;
    let (outcome, report_generation, resumed) = match prepared {
        Err(e) => {
            sluice_engine::close(&spec).await;
            (RunOutcome::early(&ctl, &progress, e, started), None, false)
        }
        Ok(p) => {
            *generation.lock().unwrap_or_else(|e| e.into_inner()) = p.generation.clone();
            let spec = Arc::new(spec);
            let outcome = run_planned(
                spec.clone(),
                p.planned,
                ctl.clone(),
                progress.clone(),
                started,
            )
            .await;
            if outcome.state == RunState::Finished {
                // A target that stops answering now must not hold the process: every split is
                // committed, so the next run finds nothing to do and records the end then.
                let finishing = finish_generation(&spec, &store, &p.manifest);
                if tokio::time::timeout(FINISH_DEADLINE, finishing)
                    .await
                    .is_err()
                {
                    error!(
                        deadline = ?FINISH_DEADLINE,
                        "Recording that the copy finished did not complete in time; the next run \
                         finds every split committed and records it."
                    );
                }
            }
            sluice_engine::close(&spec).await;
            drop(p.lock);
            (outcome, Some(p.generation), p.resumed)
        }
    };
    // The recorder's last update is written before the run's end (the store also ignores an
    // update that arrives after it).
    recorder.abort();
    let _ = recorder.await;
    // A finished copy that does not verify is a failed run.
    let verify = match req.verify.take() {
        Some(v) if outcome.state == RunState::Finished => Some(v().await),
        _ => None,
    };
    let (state, error) = match &verify {
        Some(Ok(false)) => (
            "FAILED",
            Some("verify found differences between source and target".to_string()),
        ),
        Some(Err(e)) => ("FAILED", Some(format!("verify after the run: {e}"))),
        _ => (
            state_name(outcome.state),
            outcome.error.as_ref().map(|e| e.to_string()),
        ),
    };
    let tables = run_tables(&outcome);
    let update = RunUpdate {
        state: state.to_string(),
        generation: report_generation.clone().unwrap_or_default(),
        rows_written: outcome.rows_written(),
        rows_earlier: outcome.rows_written_earlier(),
        bytes_read: outcome.bytes_read(),
        error: error.map(|e| sluice_core::config::redact(&e)),
        tables,
    };
    // Invariant: the run's end is persisted before it is reported.
    if let Err(e) = store.end_run(run_id, &update).await {
        error!(error = %e, "Recording the end of the run failed.");
    }
    let why = match (outcome.state, ctl.stop_reason()) {
        (RunState::Stopped | RunState::Aborted, Some((why, _))) => format!(" ({why})"),
        _ => String::new(),
    };
    let detail = format!(
        "run {run_id}: {state}{why}, {} rows written{}",
        update.rows_written,
        update
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    audit(&*store, &name, &req.actor, "run.end", detail).await;
    drop(job_lock);
    JobReport {
        outcome,
        run_id: Some(run_id),
        generation: report_generation,
        resumed,
        bad_records: bad_records.count(),
        verify,
    }
}

fn early(
    ctl: &Controller,
    progress: &Progress,
    e: Error,
    started: Instant,
    run_id: Option<i64>,
) -> JobReport {
    JobReport {
        outcome: RunOutcome::early(ctl, progress, e, started),
        run_id,
        generation: None,
        resumed: false,
        bad_records: 0,
        verify: None,
    }
}

/// The state store's state for an engine state.
pub fn job_state(s: RunState) -> JobState {
    match s {
        RunState::Running => JobState::Running,
        RunState::Paused => JobState::Paused,
        RunState::Stopping => JobState::Stopping,
        RunState::Stopped => JobState::Stopped,
        RunState::Aborted => JobState::Aborted,
        RunState::Failed => JobState::Failed,
        RunState::Finished => JobState::Finished,
    }
}

/// The name a state has in the state store and in `status`.
pub(crate) fn state_name(s: RunState) -> &'static str {
    job_state(s).as_str()
}

/// Appends to the audit log; a failure is logged, never fails the run (the run's own
/// record is what its outcome rests on).
pub async fn audit(store: &dyn StateStore, job: &str, actor: &str, action: &str, detail: String) {
    let entry = AuditEntry::new(job, actor, action, detail);
    if let Err(e) = store.record_audit(&entry).await {
        warn!(error = %e, action, "Recording an audit entry failed.");
    }
}

fn run_tables(outcome: &RunOutcome) -> Vec<RunTable> {
    outcome
        .tables
        .iter()
        .map(|t| RunTable {
            table: t.table.clone(),
            target: t.target.clone(),
            rows_read: t.rows_read,
            rows_written: t.rows_written,
            rows_written_earlier: t.rows_written_earlier,
            splits_done: t.splits_done as u64,
            splits_total: t.splits_total as u64,
            complete: t.complete,
        })
        .collect()
}

/// Writes the running run's state and figures to the state store every second and at every
/// state change (PAUSED, STOPPING), so `sluice status` shows them while the job runs.
fn spawn_recorder(
    store: Arc<dyn StateStore>,
    (job, run_id): (String, i64),
    ctl: Arc<Controller>,
    progress: Progress,
    generation: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    let mut states = ctl.subscribe();
    // begin_run recorded RUNNING.
    ctl.record_states();
    ctl.mark_persisted(RunState::Running);
    tokio::spawn(async move {
        let mut last = ctl.state();
        loop {
            tokio::select! {
                changed = states.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(RECORD_EVERY) => {}
            }
            let state = ctl.state();
            if state.is_terminal() {
                return;
            }
            if state != last {
                // Pauses, resumes and stops go to the audit log as the recorder sees them (a
                // stop that ends at once is told by the run's end, with its reason).
                let detail = match (state, ctl.stop_reason()) {
                    (RunState::Stopping, Some((why, _))) => format!("run {run_id}: {why}"),
                    _ => format!("run {run_id}"),
                };
                let action = match state {
                    RunState::Paused => "pause",
                    RunState::Stopping => "stop",
                    _ => "resume",
                };
                audit(&*store, &job, "controller", action, detail).await;
                last = state;
            }
            let snapshot = progress.snapshot();
            let tables: Vec<RunTable> = snapshot
                .iter()
                .map(|s| RunTable {
                    table: s.name.clone(),
                    target: String::new(),
                    rows_read: s.rows_read,
                    rows_written: s.rows_written,
                    rows_written_earlier: s.rows_written_earlier,
                    splits_done: s.splits_done as u64,
                    splits_total: s.splits_total as u64,
                    complete: false,
                })
                .collect();
            let generation = generation.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let update = RunUpdate {
                state: state_name(state).to_string(),
                generation,
                rows_written: tables.iter().map(|t| t.rows_written).sum(),
                rows_earlier: tables.iter().map(|t| t.rows_written_earlier).sum(),
                bytes_read: snapshot.iter().map(|s| s.bytes_read).sum(),
                error: None,
                tables: Vec::new(),
            };
            match store.update_run(run_id, &update).await {
                Ok(()) => ctl.mark_persisted(state),
                Err(e) => warn!(error = %e, "Recording the run's progress failed."),
            }
        }
    })
}

/// The state-store side of the engine's checkpoint log.
struct StoreLog {
    store: Arc<dyn StateStore>,
    job: String,
    generation: String,
}

#[async_trait::async_trait]
impl CheckpointLog for StoreLog {
    async fn load(&self) -> Result<Vec<(Position, u64)>> {
        Ok(self
            .store
            .positions(&self.job, &self.generation)
            .await?
            .into_iter()
            .map(|r| (r.position, r.rows))
            .collect())
    }
    async fn save(&self, table: &str, position: &Position, rows: u64) -> Result<()> {
        let rec = SplitRecord {
            split: position.split.clone(),
            table: table.to_string(),
            position: position.clone(),
            rows,
            updated_at: String::new(),
        };
        self.store
            .save_position(&self.job, &self.generation, &rec)
            .await
    }
}

/// A job ready to run: tables planned, generation chosen and recorded, locks held.
struct Prepared {
    planned: Vec<PlannedTable>,
    generation: String,
    resumed: bool,
    manifest: Manifest,
    lock: Option<SinkLockGuard>,
}

/// What the job's records say about its latest generation.
pub(crate) enum Found {
    /// Unfinished: a resume candidate (with its manifest, if it was recorded).
    Unfinished { id: String, manifest: Option<Value> },
    /// Finished.
    Finished { id: String },
    /// No generation.
    Nothing,
}

async fn prepare(
    req: &RunRequest<'_>,
    spec: &mut JobSpec,
    store: &Arc<dyn StateStore>,
    progress: &Progress,
) -> Result<Prepared> {
    let name = spec.name.clone();
    let mut planned = describe_tables(spec, progress).await?;
    let targets: Vec<TableId> = planned.iter().map(|t| t.plan.target.clone()).collect();
    // Invariant: one process at a time writes a job or a target table (in the target itself,
    // so that two state directories cannot both run it).
    let lock = spec.sink.lock(&name, &targets).await?;
    let config = manifest::job_config(req.document);
    let found = find_generation(spec, store, &name, req.from_scratch).await?;

    if let Found::Unfinished { id, manifest } = &found
        && !req.from_scratch
    {
        let ctx = context(&name, id);
        spec.sink.begin(&ctx)?;
        let committed = committed_splits(spec, store, &name, id).await?;
        if committed.is_empty() {
            info!(generation = %id, "The unfinished copy committed nothing yet; starting it over.");
        } else {
            let manifest = manifest.as_ref().ok_or_else(|| {
                Error::config(format!(
                    "job {name:?} has an unfinished copy (generation {id}) started by an older \
                     Sluice that did not record its plan, so it cannot be resumed exactly"
                ))
                .with_hint(from_scratch_hint())
            })?;
            let mut manifest: Manifest = serde_json::from_value(manifest.clone()).map_err(|e| {
                Error::internal(format!("unreadable manifest of generation {id}: {e}"))
                    .with_hint(from_scratch_hint())
            })?;
            let changed = reconcile(spec, &mut planned, &mut manifest, &config, &committed).await?;
            if changed {
                save_manifest(spec, store, &manifest, false).await?;
            } else {
                store
                    .start_generation(&name, id, &to_value(&manifest)?)
                    .await?;
            }
            info!(
                generation = %id,
                committed = committed.len(),
                "Resuming the unfinished copy: committed splits are kept, the rest are read."
            );
            spec.context = ctx;
            spec.checkpoints = Arc::new(StoreLog {
                store: store.clone(),
                job: name.clone(),
                generation: id.clone(),
            });
            return Ok(Prepared {
                planned,
                generation: id.clone(),
                resumed: true,
                manifest,
                lock,
            });
        }
    }

    // A new generation.
    for t in &mut planned {
        list_splits(spec, t).await?;
    }
    let previous = match &found {
        Found::Finished { id } | Found::Unfinished { id, .. } => Some(id.clone()),
        Found::Nothing => None,
    };
    let continuing = planned.iter().flat_map(|t| &t.splits).all(|s| s.continues);
    if let Found::Finished { id } = &found
        && !req.from_scratch
        && req.job.sink.write_mode() == WriteMode::Append
        && !continuing
    {
        let targets: Vec<String> = planned.iter().map(|t| t.plan.target.to_string()).collect();
        return Err(Error::config(format!(
            "job {name:?} already finished its copy (generation {id}); running it again would \
             append every row to {} a second time",
            list(&targets)
        ))
        .with_hint(
            "to copy everything again anyway, run with --from-scratch; for re-runs that replace \
             or merge instead, use write = \"overwrite\" or \"upsert\" in [sink]",
        ));
    }
    if let Some(prev) = previous.as_deref()
        && !req.from_scratch
        && planned.iter().flat_map(|t| &t.splits).any(|s| s.continues)
    {
        carry_over(spec, store, &name, prev, &mut planned).await?;
    }
    let id = new_generation_id();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        job: name.clone(),
        generation: id.clone(),
        started_at: now(),
        config,
        tables: planned.iter().map(TableManifest::of).collect(),
    };
    save_manifest(spec, store, &manifest, false).await?;
    spec.context = context(&name, &id);
    spec.checkpoints = Arc::new(StoreLog {
        store: store.clone(),
        job: name.clone(),
        generation: id.clone(),
    });
    Ok(Prepared {
        planned,
        generation: id,
        resumed: false,
        manifest,
        lock,
    })
}

fn from_scratch_hint() -> String {
    "run the job with --from-scratch to copy everything again (with write = \"append\", empty \
     the target tables first: they hold what the unfinished copy committed)"
        .to_string()
}

fn list(items: &[String]) -> String {
    match items {
        [] => "the target".to_string(),
        [one] => one.clone(),
        many if many.len() <= 5 => many.join(", "),
        many => format!("{}, … ({} tables)", many[..5].join(", "), many.len()),
    }
}

pub(crate) fn context(job: &str, generation: &str) -> JobContext {
    JobContext {
        job: job.to_string(),
        generation: generation.to_string(),
        ..Default::default()
    }
}

fn to_value(m: &Manifest) -> Result<Value> {
    serde_json::to_value(m).map_err(|e| Error::internal(format!("manifest: {e}")))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Unique per generation, never reused: milliseconds since the epoch and the process id.
fn new_generation_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{millis}-{}", std::process::id())
}

/// The job's latest generation. A sink that keeps records is the truth: its unfinished
/// generation is resumed whatever the state directory says (or if it was lost); a state
/// directory that claims committed splits the target has no record of is refused.
pub(crate) async fn find_generation(
    spec: &JobSpec,
    store: &Arc<dyn StateStore>,
    name: &str,
    from_scratch: bool,
) -> Result<Found> {
    let local = store.generation(name).await?;
    if !spec.sink.keeps_checkpoints() {
        return Ok(match local {
            Some(l) if !l.finished => Found::Unfinished {
                id: l.id,
                manifest: l.manifest,
            },
            Some(l) => Found::Finished { id: l.id },
            None => Found::Nothing,
        });
    }
    let remote = spec.sink.load_generation(name).await?;
    Ok(match (remote, local) {
        (Some(r), local) if !r.finished => {
            match &local {
                Some(l) if l.id == r.generation => {}
                Some(l) => warn!(
                    generation = %r.generation,
                    state_dir_generation = %l.id,
                    "The target holds an unfinished copy this state directory does not know; \
                     resuming it."
                ),
                None => warn!(
                    generation = %r.generation,
                    "The target holds an unfinished copy of this job; the state directory has \
                     no record of it (another --state, or it was lost): resuming it."
                ),
            }
            Found::Unfinished {
                id: r.generation,
                manifest: Some(r.manifest),
            }
        }
        (Some(r), _) => Found::Finished { id: r.generation },
        (None, Some(l)) if !l.finished => {
            let committed = store.positions(name, &l.id).await?.len();
            if committed > 0 && !from_scratch {
                return Err(Error::config(format!(
                    "the target has no record of job {name:?} (no row in _sluice_jobs), but this \
                     state directory says its unfinished copy (generation {}) committed {committed} \
                     split(s) there: the target's Sluice tables were dropped, or the job now \
                     writes to another database",
                    l.id
                ))
                .with_hint(from_scratch_hint()));
            }
            Found::Nothing
        }
        (None, Some(l)) => Found::Finished { id: l.id },
        (None, None) => Found::Nothing,
    })
}

/// The splits of generation `id` that committed (with their positions).
async fn committed_splits(
    spec: &JobSpec,
    store: &Arc<dyn StateStore>,
    name: &str,
    id: &str,
) -> Result<HashMap<String, Position>> {
    Ok(committed(spec, store, name, id)
        .await?
        .into_iter()
        .map(|(split, c)| (split, c.position))
        .collect())
}

/// A split's committed position as the truth has it (the sink's, or the state store's).
pub(crate) struct Committed {
    pub position: Position,
    pub rows: u64,
    pub table: String,
}

pub(crate) async fn committed(
    spec: &JobSpec,
    store: &Arc<dyn StateStore>,
    name: &str,
    id: &str,
) -> Result<HashMap<String, Committed>> {
    let list: Vec<Committed> = match spec.sink.committed_positions().await? {
        Some(v) => v
            .into_iter()
            .map(|c| Committed {
                position: c.position,
                rows: c.rows,
                table: c.table,
            })
            .collect(),
        None => store
            .positions(name, id)
            .await?
            .into_iter()
            .map(|r| Committed {
                position: r.position,
                rows: r.rows,
                table: r.table,
            })
            .collect(),
    };
    Ok(list
        .into_iter()
        .map(|c| (c.position.split.clone(), c))
        .collect())
}

/// Checks a resume against the manifest of the generation it resumes, and gives each table
/// its persisted splits. Refuses (naming every difference) a job whose configuration changed,
/// or a table with committed splits that changed shape or disappeared. A table without
/// committed splits that changed is planned again; a table that appeared joins the copy.
/// Returns whether the manifest changed.
async fn reconcile(
    spec: &JobSpec,
    planned: &mut [PlannedTable],
    manifest: &mut Manifest,
    config: &Value,
    committed: &HashMap<String, Position>,
) -> Result<bool> {
    let name = &manifest.job;
    let mut problems = manifest::config_differences(&manifest.config, config, MAX_DIFFERENCES);
    let has_commits = |m: &TableManifest| m.splits.iter().any(|s| committed.contains_key(&s.id));
    let mut changed = false;
    let described: HashSet<String> = planned
        .iter()
        .map(|t| t.source.schema.id.to_string())
        .collect();
    for m in &manifest.tables {
        if !described.contains(&m.source) {
            if has_commits(m) {
                problems.push(format!(
                    "table {} is no longer read from the source, but the copy committed splits \
                     of it",
                    m.source
                ));
            } else {
                changed = true;
            }
        }
    }
    for t in planned.iter_mut() {
        let id = t.source.schema.id.to_string();
        match manifest.tables.iter().find(|m| m.source == id) {
            Some(m) => {
                let d = m.differences(t);
                if d.is_empty() {
                    set_splits(t, m.splits.clone());
                } else if has_commits(m) {
                    problems.extend(d);
                } else {
                    list_splits(spec, t).await?;
                    changed = true;
                }
            }
            None => {
                info!(table = %id, "A table appeared in the source since the copy started; it joins the copy.");
                list_splits(spec, t).await?;
                changed = true;
            }
        }
    }
    if !problems.is_empty() {
        problems.truncate(MAX_DIFFERENCES);
        return Err(Error::config(format!(
            "job {name:?} changed since its unfinished copy started (generation {}, {} split(s) \
             committed), so resuming it would mix two configurations in the target:\n  - {}",
            manifest.generation,
            committed.len(),
            problems.join("\n  - ")
        ))
        .with_hint(format!(
            "undo the change to resume the copy; or {}",
            from_scratch_hint()
        )));
    }
    // Splits planned in another snapshot of the source: a source whose splits move with the
    // data (page ranges) checks that nothing moved.
    for t in planned.iter() {
        let flags: Vec<bool> = t
            .splits
            .iter()
            .map(|s| committed.contains_key(&s.id))
            .collect();
        spec.source
            .check_resume(&t.source, &t.splits, &flags)
            .await?;
    }
    if changed {
        manifest.tables = planned.iter().map(TableManifest::of).collect();
    }
    Ok(changed)
}

/// Gives every continuing split (incremental) the final position its namesake reached in
/// generation `previous`, so the new generation reads only what is new.
async fn carry_over(
    spec: &JobSpec,
    store: &Arc<dyn StateStore>,
    name: &str,
    previous: &str,
    planned: &mut [PlannedTable],
) -> Result<()> {
    spec.sink.begin(&context(name, previous))?;
    let before = committed_splits(spec, store, name, previous).await?;
    for t in planned.iter_mut() {
        for s in t.splits.iter_mut().filter(|s| s.continues) {
            if let Some(p) = before.get(&s.id) {
                info!(split = %s.id, position = %p.value, "Continuing after the previous copy's position.");
                s.start = Some(p.value.clone());
            }
        }
    }
    Ok(())
}

/// Records a generation's manifest: in the state store, then in the target. The target's
/// record is what a run from anywhere finds.
async fn save_manifest(
    spec: &JobSpec,
    store: &Arc<dyn StateStore>,
    manifest: &Manifest,
    finished: bool,
) -> Result<()> {
    let value = to_value(manifest)?;
    store
        .start_generation(&manifest.job, &manifest.generation, &value)
        .await?;
    spec.sink
        .save_generation(
            &manifest.job,
            &GenerationRecord {
                generation: manifest.generation.clone(),
                finished,
                manifest: value,
            },
        )
        .await
}

/// A finished copy: recorded in the target first (the truth), then in the state store.
async fn finish_generation(spec: &JobSpec, store: &Arc<dyn StateStore>, manifest: &Manifest) {
    let record = match to_value(manifest) {
        Ok(v) => GenerationRecord {
            generation: manifest.generation.clone(),
            finished: true,
            manifest: v,
        },
        Err(e) => {
            error!(error = %e, "Recording that the copy finished failed.");
            return;
        }
    };
    if let Err(e) = spec.sink.save_generation(&manifest.job, &record).await {
        error!(error = %e, "Recording in the target that the copy finished failed; the next run finds every split committed.");
    }
    if let Err(e) = store.finish_generation(&manifest.job).await {
        error!(error = %e, "Recording that the job finished failed; the next run finds every split committed.");
    }
}

/// What [`JobHandle::start`] needs besides the job.
pub struct StartOptions {
    /// Start a new generation even if one is unfinished (`--from-scratch`).
    pub from_scratch: bool,
    /// Run after a finished copy (`[job] verify`).
    pub verify: Option<Verifier>,
    /// Who starts it, for the audit log.
    pub actor: String,
}

/// A running job, owned by whoever started it (the CLI today; the server and the scheduler
/// next): the one way to stop, pause, resume or abort it, and to wait for its report. The run
/// is a task of its own; every state change is persisted (by [`run_job`]) before the report
/// is returned by [`wait`](Self::wait).
pub struct JobHandle {
    ctl: Arc<Controller>,
    progress: Progress,
    task: tokio::task::JoinHandle<JobReport>,
}

impl JobHandle {
    /// Starts `job` (its JSON document makes the fingerprint) with `store`. Needs a Tokio
    /// runtime.
    pub fn start(
        job: JobFile,
        document: Value,
        options: StartOptions,
        store: Arc<dyn StateStore>,
        lock: Option<JobLock>,
    ) -> JobHandle {
        let ctl = Arc::new(Controller::new());
        let progress = Progress::new();
        let (c, p) = (ctl.clone(), progress.clone());
        let task = tokio::spawn(async move {
            let req = RunRequest {
                job: &job,
                document: &document,
                from_scratch: options.from_scratch,
                verify: options.verify,
                lock,
                actor: options.actor,
            };
            run_job(req, store, c, p).await
        });
        JobHandle {
            ctl,
            progress,
            task,
        }
    }

    /// Asks the job to stop: readers stop, splits in flight roll back; past `deadline` the stop
    /// becomes an abort. Returns once the stop is persisted (STOPPING in the store), at most
    /// [`PERSIST_WAIT`](sluice_engine::PERSIST_WAIT) later; the run goes on stopping.
    pub async fn stop(&self, reason: sluice_engine::StopReason, deadline: Duration) {
        self.ctl.stop_within(reason, deadline);
        self.ctl.persisted(sluice_engine::PERSIST_WAIT).await;
    }

    /// Holds the readers (positions and plan kept); returns once PAUSED is persisted. False if
    /// the job is not running.
    pub async fn pause(&self) -> bool {
        let changed = self.ctl.pause();
        if changed {
            self.ctl.persisted(sluice_engine::PERSIST_WAIT).await;
        }
        changed
    }

    /// Continues a paused job; returns once RUNNING is persisted. False if it is not paused.
    pub async fn resume(&self) -> bool {
        let changed = self.ctl.resume();
        if changed {
            self.ctl.persisted(sluice_engine::PERSIST_WAIT).await;
        }
        changed
    }

    /// Aborts now: in-flight work is dropped after a short roll-back attempt.
    pub fn abort(&self) {
        self.ctl.abort();
    }

    /// Where the run is.
    pub fn state(&self) -> RunState {
        self.ctl.state()
    }

    /// The run's controller (for signal handlers and control sockets).
    pub fn controller(&self) -> Arc<Controller> {
        self.ctl.clone()
    }

    /// Live counters.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Waits for the end of the run; its records are persisted by then.
    pub async fn wait(self) -> JobReport {
        match self.task.await {
            Ok(r) => r,
            Err(e) => JobReport {
                outcome: RunOutcome::early(
                    &self.ctl,
                    &self.progress,
                    Error::internal(format!("the job's task failed: {e}")),
                    Instant::now(),
                ),
                run_id: None,
                generation: None,
                resumed: false,
                bad_records: 0,
                verify: None,
            },
        }
    }
}
