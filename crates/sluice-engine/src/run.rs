//! The batch runner: describe the tables, list (or take) their splits, then run the splits on
//! `parallelism` workers. See the crate docs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::source::SourceTable;
use sluice_core::{
    BatchSender, BoundTransform, Error, ErrorKind, JobContext, Position, Result, SinkWriter,
    SourceEvent, Split, TableId, TablePlan, Transform,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::bad_records::{BadRecordPolicy, apply_tolerant};
use crate::control::{ABORT_DEADLINE, Controller, RunState, StopReason};
use crate::metrics::{self as metered, TableMetrics};
use crate::progress::{Progress, TableProgress};

/// How long an abort waits for in-flight writers to roll back.
const ABORT_ROLLBACK_DEADLINE: Duration = Duration::from_secs(2);
/// How long a stop lets a reader wind down on its own (it sees the stop and cancels its
/// server-side query) before the reader task is aborted.
const READER_STOP_GRACE: Duration = Duration::from_secs(2);

/// Maps a source table name to its target name (`table_map`).
pub type TargetNamer = Arc<dyn Fn(&TableId) -> Result<TableId> + Send + Sync>;

/// Checks the list of source tables as a whole (a `table_map` key matching none of them is a
/// misspelling, not a no-op).
pub type TablesCheck = Arc<dyn Fn(&[TableId]) -> Result<()> + Send + Sync>;

/// How transient failures (a connection lost, a server restarting) are retried: the split is
/// rolled back and redone after a back-off that doubles from `first` up to `max_backoff`, for
/// as long as the failures keep coming within `give_up_after` of the first one. The default
/// outlasts a database server's restart and crash recovery.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max_backoff: Duration,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            give_up_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (1-based), or `None` once the budget is spent.
    fn next_wait(&self, attempt: u32, since_first_failure: Duration) -> Option<Duration> {
        if since_first_failure >= self.give_up_after {
            return None;
        }
        let wait = self
            .first
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
            .min(self.max_backoff);
        Some(wait)
    }
}

/// Where the engine records committed positions (the state store, wired by the job runner).
#[async_trait::async_trait]
pub trait CheckpointLog: Send + Sync {
    /// Positions committed in the current generation, with the rows each split wrote.
    async fn load(&self) -> Result<Vec<(Position, u64)>>;
    /// Records that a split committed up to `position` (`position.done` when complete).
    async fn save(&self, table: &str, position: &Position, rows: u64) -> Result<()>;
}

/// A log that keeps nothing: every run starts from scratch.
pub struct NoCheckpoints;

#[async_trait::async_trait]
impl CheckpointLog for NoCheckpoints {
    async fn load(&self) -> Result<Vec<(Position, u64)>> {
        Ok(Vec::new())
    }
    async fn save(&self, _table: &str, _position: &Position, _rows: u64) -> Result<()> {
        Ok(())
    }
}

/// Everything needed to run one job, already validated and built.
pub struct JobSpec {
    /// The job's name (keys its state).
    pub name: String,
    /// Concurrent split pipelines (readers and writers).
    pub parallelism: usize,
    /// Stop gracefully after this long.
    pub timeout: Option<Duration>,
    /// Where rows come from.
    pub source: DynSource,
    /// Where rows go.
    pub sink: DynSink,
    /// Applied in order to every table.
    pub transforms: Vec<Arc<dyn Transform>>,
    /// Target names.
    pub targets: TargetNamer,
    /// Checks the source's tables against the job (`table_map` keys).
    pub check_tables: TablesCheck,
    /// Batches buffered between a reader and its writer.
    pub channel_capacity: usize,
    /// The job and its generation (given to the sink; keys checkpoints).
    pub context: JobContext,
    /// Where committed positions are recorded and read back on resume.
    pub checkpoints: Arc<dyn CheckpointLog>,
    /// How many bad records are tolerated, and where they go (`[errors]`).
    pub bad_records: Arc<BadRecordPolicy>,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// Streaming mode: commit every interval; `None`: batch mode (a commit per split).
    pub streaming: Option<Streaming>,
}

/// Streaming mode's checkpoint settings (`[job] checkpoint_interval`, `checkpoint_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streaming {
    /// A split commits at its first safe point after this long since its last commit.
    pub interval: Duration,
    /// A commit taking longer fails the run (resumably).
    pub timeout: Duration,
}

impl Streaming {
    /// DESIGN.md's defaults: every 10 s, failing after 60 s.
    pub const DEFAULT: Streaming = Streaming {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(60),
    };
}

/// One table, planned: its transforms bound, its target named, its splits listed.
pub struct PlannedTable {
    /// What the source said about the table.
    pub source: SourceTable,
    /// Transforms bound to this table, in order.
    pub transforms: Vec<Box<dyn BoundTransform>>,
    /// What the sink will be told.
    pub plan: TablePlan,
    /// The table's splits (empty until listed, see [`list_splits`]).
    pub splits: Vec<Split>,
    /// Live counters.
    pub progress: Arc<TableProgress>,
    /// The target's column types, when the sink has them (`Sink::target_types`).
    pub target_types: Option<Vec<(String, String)>>,
    metrics: TableMetrics,
}

/// What a table looked like at the end of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableSummary {
    pub table: String,
    pub target: String,
    pub rows_read: u64,
    /// Rows this run committed.
    pub rows_written: u64,
    /// Rows earlier runs of the same generation committed (their splits were skipped).
    pub rows_written_earlier: u64,
    pub bytes_read: u64,
    pub splits_done: usize,
    pub splits_total: usize,
    /// Every split committed and the table finished.
    pub complete: bool,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// FINISHED, STOPPED, ABORTED or FAILED.
    pub state: RunState,
    /// The error, when FAILED.
    pub error: Option<Error>,
    /// Why it stopped, when STOPPED or ABORTED.
    pub stop_reason: Option<StopReason>,
    /// Per-table figures.
    pub tables: Vec<TableSummary>,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunOutcome {
    /// Rows this run committed.
    pub fn rows_written(&self) -> u64 {
        self.tables.iter().map(|t| t.rows_written).sum()
    }
    /// Rows earlier runs of the same generation committed.
    pub fn rows_written_earlier(&self) -> u64 {
        self.tables.iter().map(|t| t.rows_written_earlier).sum()
    }
    /// Total input bytes read.
    pub fn bytes_read(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes_read).sum()
    }

    /// An outcome for a run that ended before (or without) running: `error` decides between
    /// FAILED and STOPPED.
    pub fn early(ctl: &Controller, progress: &Progress, error: Error, started: Instant) -> Self {
        let (state, error) = end_state(ctl, Err(error), false);
        ctl.finish(state);
        RunOutcome {
            state,
            error,
            stop_reason: stop_reason(ctl, state),
            tables: summaries(progress, &[]),
            elapsed: started.elapsed(),
        }
    }
}

/// Discovers tables, binds transforms and names targets. Lists no splits and moves no data.
pub async fn describe_tables(spec: &JobSpec, progress: &Progress) -> Result<Vec<PlannedTable>> {
    let tables = spec.source.tables().await.map_err(|e| e.within("source"))?;
    if tables.is_empty() {
        return Err(Error::config("the source matched no tables")
            .with_hint("check `tables` / `path` in [source]"));
    }
    let ids: Vec<TableId> = tables.iter().map(|t| t.schema.id.clone()).collect();
    (spec.check_tables)(&ids)?;
    let mut planned = Vec::with_capacity(tables.len());
    let mut targets: HashMap<TableId, TableId> = HashMap::with_capacity(tables.len());
    for table in tables {
        let id = table.schema.id.clone();
        let mut schema = table.schema.clone();
        let mut bound = Vec::with_capacity(spec.transforms.len());
        for t in &spec.transforms {
            let b = t
                .bind(&schema)
                .map_err(|e| e.context(format!("table {id}")))?;
            schema = b.output().clone();
            bound.push(b);
        }
        let target = (spec.targets)(&id)?;
        if let Some(other) = targets.insert(target.clone(), id.clone()) {
            return Err(Error::config(format!(
                "tables {other} and {id} would both be written to {target}"
            ))
            .with_hint("give one of them another name with table_map in [sink]"));
        }
        let p = progress.add_table(id.to_string());
        if let Some(r) = table.estimated_rows {
            p.rows_total.store(r, Ordering::Relaxed);
        }
        if let Some(b) = table.estimated_bytes {
            p.bytes_total.store(b, Ordering::Relaxed);
        }
        schema.id = target.clone();
        let plan = TablePlan {
            target,
            schema,
            splits: 0,
        };
        // A type the target cannot hold is refused here, before any data moves.
        let target_types = spec
            .sink
            .target_types(&plan)
            .map_err(|e| e.within("sink"))?;
        let metrics = TableMetrics::new(&spec.name, &id.to_string());
        planned.push(PlannedTable {
            source: table,
            transforms: bound,
            plan,
            splits: Vec::new(),
            progress: p,
            target_types,
            metrics,
        });
    }
    Ok(planned)
}

/// Asks the source for `table`'s splits.
pub async fn list_splits(spec: &JobSpec, table: &mut PlannedTable) -> Result<()> {
    let splits = spec.source.splits(&table.source).await.map_err(|e| {
        let e = e.within("source");
        let id = table.source.schema.id.to_string();
        // Sources that name the table themselves are not prefixed twice.
        if e.message().starts_with(&format!("table {id}")) {
            e
        } else {
            e.context(format!("table {id}"))
        }
    })?;
    set_splits(table, splits);
    Ok(())
}

/// Gives `table` its splits (listed now, or persisted by an earlier run of the generation).
pub fn set_splits(table: &mut PlannedTable, splits: Vec<Split>) {
    let p = &table.progress;
    p.splits_total.store(splits.len(), Ordering::Relaxed);
    if table.source.estimated_rows.is_none() {
        let rows: u64 = splits.iter().filter_map(|s| s.estimated_rows).sum();
        p.rows_total.store(rows, Ordering::Relaxed);
    }
    if table.source.estimated_bytes.is_none() {
        let bytes: u64 = splits.iter().filter_map(|s| s.estimated_bytes).sum();
        p.bytes_total.store(bytes, Ordering::Relaxed);
    }
    table.plan.splits = splits.len();
    table.splits = splits;
}

/// Describes the tables and lists their splits. Moves no data; used by `sluice validate` and
/// by [`run_batch`].
pub async fn plan_tables(spec: &JobSpec, progress: &Progress) -> Result<Vec<PlannedTable>> {
    let mut planned = describe_tables(spec, progress).await?;
    for t in &mut planned {
        list_splits(spec, t).await?;
    }
    Ok(planned)
}

/// Plans and runs a batch job to its end, a stop, or an error (the whole path for callers
/// without generations; the job runner plans itself and calls [`run_planned`]).
pub async fn run_batch(spec: JobSpec, ctl: Arc<Controller>, progress: Progress) -> RunOutcome {
    let started = Instant::now();
    if let Some(t) = spec.timeout {
        ctl.arm_timeout(t);
    }
    let planned = match ctl.unless_stopped(plan_tables(&spec, &progress)).await {
        Ok(p) => p,
        Err(e) => {
            close(&spec).await;
            return RunOutcome::early(&ctl, &progress, e, started);
        }
    };
    let spec = Arc::new(spec);
    let outcome = run_planned(spec.clone(), planned, ctl, progress, started).await;
    close(&spec).await;
    outcome
}

/// Closes the source and the sink, giving up after [`ABORT_DEADLINE`].
pub async fn close(spec: &JobSpec) {
    if tokio::time::timeout(ABORT_DEADLINE, close_both(spec))
        .await
        .is_err()
    {
        warn!("Closing the source and sink did not finish in time; leaving them.");
    }
}

async fn close_both(spec: &JobSpec) {
    if let Err(e) = spec.sink.close().await {
        warn!(error = %e, "Closing the sink failed.");
    }
    if let Err(e) = spec.source.close().await {
        warn!(error = %e, "Closing the source failed.");
    }
}

/// Runs planned tables (their splits listed) to the end, a stop, or an error. Never panics
/// on connector errors: they come back in [`RunOutcome::error`]. Returns at the latest
/// [`ABORT_DEADLINE`] after an abort, even if a connector does not return. Does not close the
/// source and sink (see [`close`]).
pub async fn run_planned(
    spec: Arc<JobSpec>,
    planned: Vec<PlannedTable>,
    ctl: Arc<Controller>,
    progress: Progress,
    started: Instant,
) -> RunOutcome {
    let span = info_span!("run", job = %spec.name, generation = %spec.context.generation);
    let states = metered::follow_state(spec.name.clone(), &ctl);
    let abort = ctl.abort_token();
    let result = tokio::select! {
        r = run_inner(&spec, &ctl, planned).instrument(span) => r,
        _ = async {
            abort.cancelled().await;
            tokio::time::sleep(ABORT_DEADLINE).await;
        } => {
            warn!(deadline = ?ABORT_DEADLINE, "The run did not wind down after the abort; leaving it.");
            Err(Error::stopped())
        }
    };
    let complete: Vec<(String, bool)> = result.as_ref().map(|v| v.clone()).unwrap_or_default();
    let tables = summaries(&progress, &complete);
    let all_complete = !tables.is_empty() && tables.iter().all(|t| t.complete);
    let (state, error) = end_state(&ctl, result.map(|_| ()), all_complete);
    ctl.finish(state);
    states.abort();
    metered::state(&spec.name, state);
    if let Some(e) = &error {
        metered::error(&spec.name, e.kind());
    }
    RunOutcome {
        state,
        error,
        stop_reason: stop_reason(&ctl, state),
        tables,
        elapsed: started.elapsed(),
    }
}

fn summaries(progress: &Progress, complete: &[(String, bool)]) -> Vec<TableSummary> {
    progress
        .snapshot()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (target, complete) = complete
                .get(i)
                .cloned()
                .unwrap_or_else(|| (s.name.clone(), false));
            TableSummary {
                table: s.name.clone(),
                target,
                rows_read: s.rows_read,
                rows_written: s.rows_written,
                rows_written_earlier: s.rows_written_earlier,
                bytes_read: s.bytes_read,
                splits_done: s.splits_done,
                splits_total: s.splits_total,
                complete,
            }
        })
        .collect()
}

/// The final state of a run that returned `result` (`all_complete`: every table finished).
fn end_state(
    ctl: &Controller,
    result: Result<()>,
    all_complete: bool,
) -> (RunState, Option<Error>) {
    match result {
        // A stop error counts as a stop only when a stop was asked for: a query cancelled by
        // the server (a statement timeout, an administrator) is a failure to report.
        Err(e) if e.kind() == ErrorKind::Stopped && ctl.is_stopping() => (stopped_state(ctl), None),
        Err(e) if e.kind() == ErrorKind::Stopped => (
            RunState::Failed,
            Some(e.with_hint(
                "the server cancelled a statement although no stop was requested (a \
                 statement_timeout, or an administrator); run the job again to resume",
            )),
        ),
        Err(e) => (RunState::Failed, Some(e)),
        // A stop that arrived after the last split committed changes nothing: report the truth.
        Ok(()) if all_complete => (RunState::Finished, None),
        Ok(()) if ctl.is_stopping() => (stopped_state(ctl), None),
        Ok(()) => (
            RunState::Failed,
            Some(Error::internal("run ended with unfinished tables")),
        ),
    }
}

fn stop_reason(ctl: &Controller, state: RunState) -> Option<StopReason> {
    match state {
        RunState::Stopped | RunState::Aborted => ctl.stop_reason().map(|r| r.0),
        _ => None,
    }
}

fn stopped_state(ctl: &Controller) -> RunState {
    if ctl.is_aborting() {
        RunState::Aborted
    } else {
        RunState::Stopped
    }
}

/// A split's committed state as the resume sees it.
#[derive(Debug, Clone)]
struct Committed {
    position: Position,
    rows: u64,
}

/// Returns, per planned table, its target name and whether it completed.
async fn run_inner(
    spec: &Arc<JobSpec>,
    ctl: &Arc<Controller>,
    planned: Vec<PlannedTable>,
) -> Result<Vec<(String, bool)>> {
    let plans: Vec<TablePlan> = planned.iter().map(|p| p.plan.clone()).collect();
    let context = JobContext {
        streaming: spec.streaming.is_some(),
        ..spec.context.clone()
    };
    spec.sink.begin(&context)?;
    ctl.unless_stopped(spec.sink.prepare(&plans)).await?;
    let mut resume = load_committed(spec, ctl).await?;
    ctl.unless_stopped(forget_emptied_targets(spec, &planned, &mut resume))
        .await?;
    info!(
        tables = planned.len(),
        splits = planned.iter().map(|p| p.splits.len()).sum::<usize>(),
        parallelism = spec.parallelism,
        "Plan ready."
    );

    let planned: Vec<Arc<PlannedTable>> = planned.into_iter().map(Arc::new).collect();
    let done: Vec<Arc<Mutex<bool>>> = planned
        .iter()
        .map(|_| Arc::new(Mutex::new(false)))
        .collect();
    let mut queue: VecDeque<(usize, Split, Cursor)> = VecDeque::new();
    let mut skipped = 0usize;
    let mut deferred: Vec<usize> = Vec::new();
    for (i, t) in planned.iter().enumerate() {
        let mut left = 0;
        for split in &t.splits {
            match resume.get(&split.id) {
                Some(c) if c.position.done => {
                    // Committed by an earlier run of this generation: nothing to redo.
                    t.progress.splits_done.fetch_add(1, Ordering::Relaxed);
                    t.progress
                        .rows_written_earlier
                        .fetch_add(c.rows, Ordering::Relaxed);
                    skipped += 1;
                }
                Some(c) => {
                    // Committed part of the way (streaming mode): goes on from there.
                    let cursor = Cursor {
                        position: Some(c.position.clone()),
                        rows: c.rows,
                    };
                    t.progress
                        .rows_written_earlier
                        .fetch_add(c.rows, Ordering::Relaxed);
                    queue.push_back((i, split.clone(), cursor));
                    left += 1;
                }
                None => {
                    // A continuing split (incremental) starts after the position carried
                    // over from the previous generation, until it commits one of its own.
                    let cursor = Cursor {
                        position: split
                            .start
                            .clone()
                            .map(|v| Position::new(split.id.clone(), v)),
                        rows: 0,
                    };
                    queue.push_back((i, split.clone(), cursor));
                    left += 1;
                }
            }
        }
        if t.splits.is_empty() {
            // A table without splits of its own (its rows may come through another table's
            // split, as in a replication stream) is finished once every split has ended.
            deferred.push(i);
        } else if left == 0 {
            // Every split is already committed: finishing is idempotent.
            retrying(
                spec,
                ctl,
                &format!("finishing table {}", t.plan.target),
                || spec.sink.finish_table(&t.plan),
            )
            .await?;
            *done[i].lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
    }
    if skipped > 0 {
        info!(
            skipped,
            left = queue.len(),
            "Resuming: splits committed by an earlier run are skipped."
        );
    }
    let queue = Arc::new(Mutex::new(queue));
    // Cancelled on the first error or on a stop request: every worker winds down.
    let run_stop = ctl.stop_token().child_token();
    let first_error: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));

    let mut workers = tokio::task::JoinSet::new();
    for w in 0..spec.parallelism.max(1) {
        let (spec, ctl, queue, planned, done, run_stop, first_error) = (
            spec.clone(),
            ctl.clone(),
            queue.clone(),
            planned.clone(),
            done.clone(),
            run_stop.clone(),
            first_error.clone(),
        );
        workers.spawn(
            async move {
                loop {
                    if run_stop.is_cancelled() {
                        return;
                    }
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    let Some((ti, split, cursor)) = next else {
                        return;
                    };
                    let table = &planned[ti];
                    let span = info_span!("split", split = %split.id, table = %table.plan.target);
                    let result = run_split_retrying(&spec, &ctl, &run_stop, &planned, ti, split, cursor)
                        .instrument(span)
                        .await;
                    match result {
                        Ok(true) => {
                            let n = table.progress.splits_done.fetch_add(1, Ordering::AcqRel) + 1;
                            if n == table.splits.len() {
                                let what = format!("finishing table {}", table.plan.target);
                                if let Err(e) = retrying(&spec, &ctl, &what, || {
                                    spec.sink.finish_table(&table.plan)
                                })
                                .await
                                {
                                    record_error(
                                        &first_error,
                                        &run_stop,
                                        e.context(format!("table {}", table.source.schema.id)),
                                    );
                                    return;
                                }
                                *done[ti].lock().unwrap_or_else(|e| e.into_inner()) = true;
                                info!(
                                    table = %table.source.schema.id,
                                    target = %table.plan.target,
                                    rows = table.progress.rows_written.load(Ordering::Relaxed)
                                        + table.progress.rows_written_earlier.load(Ordering::Relaxed),
                                    "Table finished."
                                );
                            }
                        }
                        Ok(false) => return,
                        Err(e) if e.kind() == ErrorKind::Stopped && run_stop.is_cancelled() => {
                            return;
                        }
                        Err(e) => {
                            record_error(&first_error, &run_stop, e);
                            return;
                        }
                    }
                }
            }
            .instrument(info_span!("worker", worker = w)),
        );
    }
    while let Some(r) = workers.join_next().await {
        if let Err(e) = r {
            record_error(
                &first_error,
                &run_stop,
                Error::internal(format!("worker panicked: {e}")),
            );
        }
    }
    if let Some(e) = first_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    if !run_stop.is_cancelled() {
        for i in deferred {
            let t = &planned[i];
            let what = format!("finishing table {}", t.plan.target);
            retrying(spec, ctl, &what, || spec.sink.finish_table(&t.plan)).await?;
            *done[i].lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
    }
    Ok(planned
        .iter()
        .zip(&done)
        .map(|(t, d)| {
            (
                t.plan.target.to_string(),
                *d.lock().unwrap_or_else(|e| e.into_inner()),
            )
        })
        .collect())
}

/// Runs `op` until it succeeds, fails for good, or the transient failures outlast the retry
/// policy; a stop ends the waiting.
async fn retrying<T, F, Fut>(spec: &JobSpec, ctl: &Controller, what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut first_failure: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        match ctl.unless_stopped(op()).await {
            Err(e) if e.kind().is_transient() => {
                let since = first_failure.get_or_insert_with(Instant::now).elapsed();
                attempt += 1;
                let Some(wait) = spec.retry.next_wait(attempt, since) else {
                    return Err(e.context(format!(
                        "{what}: still failing after {attempt} attempts over {:.0} s",
                        since.as_secs_f64()
                    )));
                };
                warn!(error = %e, attempt, wait = ?wait, "{what}: transient error; trying again.");
                ctl.unless_stopped(async {
                    tokio::time::sleep(wait).await;
                    Ok(())
                })
                .await?;
            }
            r => return r,
        }
    }
}

/// Committed positions for this generation: the sink's own if it keeps them (authoritative),
/// else the state store's.
async fn load_committed(spec: &JobSpec, ctl: &Controller) -> Result<HashMap<String, Committed>> {
    let from_sink = retrying(spec, ctl, "reading the checkpoints", || {
        spec.sink.committed_positions()
    })
    .await?;
    let list: Vec<Committed> = match from_sink {
        Some(v) => v
            .into_iter()
            .map(|c| Committed {
                position: c.position,
                rows: c.rows,
            })
            .collect(),
        None => spec
            .checkpoints
            .load()
            .await?
            .into_iter()
            .map(|(position, rows)| Committed { position, rows })
            .collect(),
    };
    Ok(list
        .into_iter()
        .map(|c| (c.position.split.clone(), c))
        .collect())
}

/// Checkpoints describe rows in the target. A table that is empty although this generation
/// committed rows to it was truncated, or dropped and re-created, since: its checkpoints are
/// void and its splits are copied again.
async fn forget_emptied_targets(
    spec: &JobSpec,
    planned: &[PlannedTable],
    resume: &mut HashMap<String, Committed>,
) -> Result<()> {
    for t in planned {
        let committed: u64 = t
            .splits
            .iter()
            .filter_map(|s| resume.get(&s.id))
            .map(|c| c.rows)
            .sum();
        if committed == 0 {
            continue;
        }
        if spec.sink.holds_rows(&t.plan).await? == Some(false) {
            warn!(
                table = %t.plan.target,
                rows = committed,
                "The target table is empty although this copy committed rows to it (it was \
                 truncated or re-created since): its splits are copied again."
            );
            for s in &t.splits {
                resume.remove(&s.id);
            }
        }
    }
    Ok(())
}

fn record_error(slot: &Mutex<Option<Error>>, run_stop: &CancellationToken, e: Error) {
    let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
    if s.is_none() {
        *s = Some(e);
    }
    run_stop.cancel();
}

/// How one attempt at a split ended, when it did not commit cleanly.
enum SplitFailure {
    /// Failed before a commit: nothing since the last commit is in the target.
    Failed(Error),
    /// A `commit` failed: the rows (per table index) may or may not have landed with their
    /// checkpoint at `position`.
    InDoubt(Error, Position, Written),
}

/// Rows written since the last commit, per index into the run's tables.
type Written = HashMap<usize, u64>;

/// Where a split stands: its last committed position in this generation and the rows all its
/// commits wrote. A retry (and, through the sink or the state store, the next run) resumes
/// from here.
#[derive(Debug, Clone, Default)]
struct Cursor {
    position: Option<Position>,
    rows: u64,
}

/// Runs a split, redoing it after transient failures (see [`RetryPolicy`]) from its last
/// commit. A failed commit is resolved first: if the sink's checkpoint shows it landed, the
/// split goes on from there (or is done).
async fn run_split_retrying(
    spec: &Arc<JobSpec>,
    ctl: &Controller,
    run_stop: &CancellationToken,
    tables: &[Arc<PlannedTable>],
    ti: usize,
    split: Split,
    cursor: Cursor,
) -> Result<bool> {
    let mut cursor = cursor;
    let mut first_failure: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        let e = match run_split(spec, ctl, run_stop, tables, ti, &split, &mut cursor).await {
            Ok(done) => return Ok(done),
            Err(SplitFailure::Failed(e)) => e,
            Err(SplitFailure::InDoubt(e, position, written)) => {
                match resolve_in_doubt(spec, ctl, &position).await {
                    Ok(true) => {
                        warn!(
                            error = %e,
                            "The COMMIT failed, but its checkpoint is in the target: it \
                             committed, and is not written again."
                        );
                        let rows = cursor.rows + written.values().sum::<u64>();
                        record_commit(spec, tables, ti, &position, &written, rows).await;
                        let done = position.done;
                        cursor = Cursor {
                            position: Some(position),
                            rows,
                        };
                        if done {
                            return Ok(true);
                        }
                        e
                    }
                    Ok(false) => e,
                    Err(e2) => {
                        return Err(e.context(format!(
                            "whether the COMMIT landed cannot be told ({e2}); run the job \
                             again: it resumes from what the target holds"
                        )));
                    }
                }
            }
        };
        if !e.kind().is_transient() || run_stop.is_cancelled() {
            return Err(e);
        }
        let since = first_failure.get_or_insert_with(Instant::now).elapsed();
        attempt += 1;
        let Some(wait) = spec.retry.next_wait(attempt, since) else {
            return Err(e.context(format!(
                "still failing after {attempt} attempts over {:.0} s",
                since.as_secs_f64()
            )));
        };
        warn!(error = %e, attempt, wait = ?wait, "Transient error; redoing the split from its last commit.");
        metered::retry(&spec.name);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = run_stop.cancelled() => return Ok(false),
        }
    }
}

/// Whether the commit of `position` landed: asks the sink (retrying while the connection is
/// still down). A sink that keeps no checkpoints commits atomically locally (a rename), so its
/// failed commit did not land.
async fn resolve_in_doubt(spec: &JobSpec, ctl: &Controller, position: &Position) -> Result<bool> {
    if !spec.sink.keeps_checkpoints() {
        return Ok(false);
    }
    let found = retrying(spec, ctl, "checking whether a failed COMMIT landed", || {
        spec.sink.checkpoint(&position.split)
    })
    .await?;
    let landed = found.as_ref() == Some(position);
    metered::in_doubt(&spec.name, landed);
    Ok(landed)
}

/// A table as one split writes it: the run's plan, or a rebound one after a schema change.
struct Bound {
    transforms: Vec<Box<dyn BoundTransform>>,
    plan: TablePlan,
}

/// One attempt at a split: the reader task, the channel, and what the writer side keeps.
struct SplitRun<'a> {
    spec: &'a Arc<JobSpec>,
    ctl: &'a Controller,
    run_stop: &'a CancellationToken,
    tables: &'a [Arc<PlannedTable>],
    /// The split's own table.
    ti: usize,
    split: &'a Split,
    /// Tables rebound after a schema change in this split.
    rebound: HashMap<usize, Bound>,
    /// Rows written since the last commit, per table.
    written: Written,
    /// The last safe point (barrier) not yet committed.
    safe: Option<Position>,
    /// Rows were written after `safe` (or, with none, since the last commit).
    dirty: bool,
}

/// What ended the event loop.
enum LoopEnd {
    /// The source returned: the split is exhausted (or the reader failed).
    Ended,
    /// A stop or an abort.
    Interrupted,
}

/// Runs one split: reader task → bounded channel → transforms → writer, committing at the
/// end (and, in streaming mode, at the first barrier after every `checkpoint_interval`).
/// `cursor` moves with every commit. Returns `Ok(true)` when the split completed, `Ok(false)`
/// when a stop interrupted it (rolled back to, or committed at, its last safe point).
async fn run_split(
    spec: &Arc<JobSpec>,
    ctl: &Controller,
    run_stop: &CancellationToken,
    tables: &[Arc<PlannedTable>],
    ti: usize,
    split: &Split,
    cursor: &mut Cursor,
) -> std::result::Result<bool, SplitFailure> {
    use SplitFailure::Failed;
    let table = &tables[ti];
    let ctx = || format!("table {}, split {}", table.source.schema.id, split.index);
    let (tx, mut rx) = mpsc::channel(spec.channel_capacity.max(1));
    let sender = BatchSender::new(tx, run_stop.clone()).with_pause(ctl.pause_watch());
    let source = spec.source.clone();
    let read_split = split.clone();
    let resume_from = cursor.position.clone();
    let mut reader = tokio::spawn(
        async move { source.read(read_split, resume_from, sender).await }
            .instrument(tracing::Span::current()),
    );

    let opened = tokio::select! {
        biased;
        _ = run_stop.cancelled() => None,
        w = spec.sink.open_from(&table.plan, split, cursor.position.as_ref()) => Some(w),
    };
    let mut writer = match opened {
        None => {
            wind_down(reader, ctl.is_aborting()).await;
            return Ok(false);
        }
        Some(Ok(w)) => w,
        Some(Err(e)) => {
            reader.abort();
            return Err(Failed(e.context(ctx())));
        }
    };
    if cursor.position.is_some() {
        writer.counted_before(cursor.rows);
    }
    let mut run = SplitRun {
        spec,
        ctl,
        run_stop,
        tables,
        ti,
        split,
        rebound: HashMap::new(),
        written: HashMap::new(),
        safe: None,
        dirty: false,
    };
    let abort = ctl.abort_token();
    let interval = spec.streaming.map(|s| s.interval);
    let mut due = interval.map(|i| tokio::time::Instant::now() + i);
    let end = loop {
        // A quiet stream still commits its last safe point once the interval is over.
        let idle_commit = match due {
            Some(d) if run.safe.is_some() && !run.dirty => Some(d),
            _ => None,
        };
        tokio::select! {
            biased;
            _ = abort.cancelled() => break LoopEnd::Interrupted,
            _ = run_stop.cancelled() => break LoopEnd::Interrupted,
            _ = sleep_until_opt(idle_commit) => {
                if let Err(f) = run.checkpoint(&mut writer, cursor).await {
                    return failed_commit(reader, writer, f).await;
                }
                due = interval.map(|i| tokio::time::Instant::now() + i);
            }
            msg = rx.recv() => {
                let Some(event) = msg else { break LoopEnd::Ended };
                let at_barrier = match run.handle(event, &mut writer).await {
                    Ok(b) => b,
                    Err(e) if e.kind() == ErrorKind::Stopped && run_stop.is_cancelled() => {
                        // A write the stop interrupted may have left part of its rows.
                        run.dirty = true;
                        break LoopEnd::Interrupted;
                    }
                    Err(e) => return fail(reader, writer, e.context(ctx())).await,
                };
                if at_barrier && due.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    if let Err(f) = run.checkpoint(&mut writer, cursor).await {
                        return failed_commit(reader, writer, f).await;
                    }
                    due = interval.map(|i| tokio::time::Instant::now() + i);
                }
            }
        }
    };
    if let LoopEnd::Interrupted = end {
        drop(rx);
        let aborting = ctl.is_aborting();
        if aborting || spec.streaming.is_none() || run.safe.is_none() || run.dirty {
            tokio::join!(wind_down(reader, aborting), rollback(writer, aborting));
            return Ok(false);
        }
        // Streaming: a stop drains to the last safe point and commits it, so the next run
        // goes on from where this one stopped.
        wind_down(reader, false).await;
        if let Err(f) = run.checkpoint(&mut writer, cursor).await {
            let e = match f {
                SplitFailure::Failed(e) | SplitFailure::InDoubt(e, ..) => e,
            };
            warn!(error = %e, "The final checkpoint of the stop failed; the next run resumes from what the target holds.");
            rollback(writer, false).await;
        }
        return Ok(false);
    }
    let read_result = match (&mut reader).await {
        Ok(r) => r,
        Err(e) => Err(Error::internal(format!("reader task failed: {e}"))),
    };
    if let Err(e) = read_result {
        rollback(writer, false).await;
        if e.kind() == ErrorKind::Stopped && run_stop.is_cancelled() {
            return Ok(false);
        }
        return Err(Failed(e.context(ctx())));
    }
    if run_stop.is_cancelled() {
        // The reader may have returned early because of the stop: the split is not known to
        // be complete, so it is rolled back (to its last commit) and redone by the next run.
        rollback(writer, ctl.is_aborting()).await;
        return Ok(false);
    }
    // The end of the split is a safe point, whatever came after the last barrier.
    let mut position = run
        .safe
        .take()
        .or_else(|| cursor.position.clone())
        .unwrap_or_else(|| Position::new(split.id.clone(), serde_json::Value::Null));
    position.done = true;
    run.safe = Some(position);
    run.dirty = false;
    if let Err(f) = run.checkpoint(&mut writer, cursor).await {
        rollback(writer, false).await;
        return Err(f);
    }
    Ok(true)
}

/// A commit failed: the reader is ended and the writer rolled back (whatever of the failed
/// unit did not land).
async fn failed_commit(
    reader: tokio::task::JoinHandle<Result<()>>,
    writer: Box<dyn SinkWriter>,
    f: SplitFailure,
) -> std::result::Result<bool, SplitFailure> {
    reader.abort();
    rollback(writer, false).await;
    Err(f)
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl SplitRun<'_> {
    /// Transforms and writes one event; `Ok(true)` when it ended at a safe point.
    async fn handle(
        &mut self,
        event: SourceEvent,
        writer: &mut Box<dyn SinkWriter>,
    ) -> Result<bool> {
        match event {
            SourceEvent::Batch(b) => {
                self.write(self.ti, b.data, b.bytes, Some(&b.position), writer)
                    .await?;
                self.safe = Some(b.position);
                self.dirty = false;
                Ok(true)
            }
            SourceEvent::Rows { table, data, bytes } => {
                let ti = self.table_index(&table)?;
                self.write(ti, data, bytes, None, writer).await?;
                self.dirty = true;
                Ok(false)
            }
            SourceEvent::Schema(schema) => {
                let ti = self.table_index(&schema.id)?;
                self.rebind(ti, schema, writer).await?;
                Ok(false)
            }
            SourceEvent::Truncate(table) => {
                let ti = self.table_index(&table)?;
                let plan = match self.rebound.get(&ti) {
                    Some(b) => &b.plan,
                    None => &self.tables[ti].plan,
                };
                info!(table = %table, target = %plan.target, "The source emptied the table (TRUNCATE); emptying the target with the same commit.");
                writer.truncate(plan).await?;
                self.dirty = true;
                Ok(false)
            }
            SourceEvent::Barrier(p) => {
                self.safe = Some(p);
                self.dirty = false;
                Ok(true)
            }
        }
    }

    fn table_index(&self, id: &TableId) -> Result<usize> {
        if self.tables[self.ti].source.schema.id == *id {
            return Ok(self.ti);
        }
        self.tables
            .iter()
            .position(|t| t.source.schema.id == *id)
            .ok_or_else(|| {
                Error::internal(format!(
                    "the source sent rows of {id}, a table it did not describe"
                ))
            })
    }

    /// Binds the job's transforms to a table's new schema and tells the writer when what it
    /// receives changes shape.
    async fn rebind(
        &mut self,
        ti: usize,
        schema: sluice_core::TableSchema,
        writer: &mut Box<dyn SinkWriter>,
    ) -> Result<()> {
        let t = &self.tables[ti];
        let mut out = schema.clone();
        let mut transforms = Vec::with_capacity(self.spec.transforms.len());
        for tr in &self.spec.transforms {
            let b = tr
                .bind(&out)
                .map_err(|e| e.context(format!("table {} after a schema change", schema.id)))?;
            out = b.output().clone();
            transforms.push(b);
        }
        let current = self.rebound.get(&ti).map_or(&t.plan, |b| &b.plan);
        let mut plan = current.clone();
        out.id = plan.target.clone();
        let changed = plan.schema.arrow.fields() != out.arrow.fields();
        plan.schema = out;
        if changed {
            info!(table = %schema.id, "The table changed shape; following it.");
            writer.schema_changed(&plan).await?;
        }
        self.rebound.insert(ti, Bound { transforms, plan });
        Ok(())
    }

    async fn write(
        &mut self,
        ti: usize,
        data: arrow::record_batch::RecordBatch,
        bytes: u64,
        position: Option<&Position>,
        writer: &mut Box<dyn SinkWriter>,
    ) -> Result<()> {
        let t = &self.tables[ti];
        let n = data.num_rows() as u64;
        t.progress.rows_read.fetch_add(n, Ordering::Relaxed);
        t.progress.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        t.metrics.rows_read.increment(n);
        t.metrics.bytes_read.increment(bytes);
        t.metrics.batches.increment(1);
        let (transforms, plan) = match self.rebound.get(&ti) {
            Some(b) => (&b.transforms, &b.plan),
            None => (&t.transforms, &t.plan),
        };
        let unknown;
        let position = match position.or(self.safe.as_ref()) {
            Some(p) => p,
            None => {
                unknown = Position::new(self.split.id.clone(), serde_json::Value::Null);
                &unknown
            }
        };
        let origin = crate::bad_records::Origin {
            job: &self.spec.name,
            table: &plan.target.to_string(),
            split: &self.split.id,
            position,
            rows_read: t.progress.rows_read.load(Ordering::Relaxed),
        };
        let data = apply_tolerant(transforms, data, &self.spec.bad_records, &origin)?;
        let kept = data.num_rows() as u64;
        if kept == 0 {
            return Ok(());
        }
        // A stop interrupts even a write that waits (on a lock, on a server that stopped
        // answering): the split is rolled back to its last commit anyway.
        let written = tokio::select! {
            biased;
            _ = self.run_stop.cancelled() => return Err(Error::stopped()),
            r = async {
                if ti == self.ti {
                    writer.write(data).await
                } else {
                    writer.write_table(plan, data).await
                }
            } => r,
        };
        written?;
        *self.written.entry(ti).or_default() += kept;
        Ok(())
    }

    /// Commits at the last safe point: the writer makes it durable (within
    /// `checkpoint_timeout` in streaming mode), then the position is recorded and the source
    /// told. Only an abort interrupts a commit.
    async fn checkpoint(
        &mut self,
        writer: &mut Box<dyn SinkWriter>,
        cursor: &mut Cursor,
    ) -> std::result::Result<(), SplitFailure> {
        let Some(position) = self.safe.take() else {
            return Ok(());
        };
        if !position.done && self.written.is_empty() && !self.spec.sink.keeps_checkpoints() {
            // Nothing new to make durable. A sink without checkpoints of its own (files)
            // names each commit's part after its position, so a position without a part is
            // not recorded: the next run replays the rows since the last part, which wrote
            // nothing.
            self.safe = Some(position);
            return Ok(());
        }
        let written = std::mem::take(&mut self.written);
        let started = Instant::now();
        let commit = writer.commit(&position);
        let committed = match self.spec.streaming {
            Some(s) => match tokio::time::timeout(s.timeout, self.ctl.unless_aborted(commit)).await
            {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "a checkpoint did not complete within checkpoint_timeout ({:.0?}): the \
                         sink took too long to commit",
                        s.timeout
                    ),
                )
                .with_hint(
                    "run the job again: it resumes from its last checkpoint; raise \
                     checkpoint_timeout in [job] if the target is slow",
                )),
            },
            None => self.ctl.unless_aborted(commit).await,
        };
        self.tables[self.ti]
            .metrics
            .commit_seconds
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = committed {
            let e = e.context(format!(
                "table {}, split {}",
                self.tables[self.ti].source.schema.id, self.split.index
            ));
            if e.kind() == ErrorKind::Stopped && self.ctl.is_aborting() {
                return Err(SplitFailure::Failed(e));
            }
            return Err(SplitFailure::InDoubt(e, position, written));
        }
        let rows = cursor.rows + written.values().sum::<u64>();
        record_commit(self.spec, self.tables, self.ti, &position, &written, rows).await;
        *cursor = Cursor {
            position: Some(position),
            rows,
        };
        Ok(())
    }
}

/// What follows a commit that landed: the rows count, the state store records the position
/// (for `status`; the record itself for sinks without checkpoints), and only then is the
/// source told (`Source::committed`), so it acknowledges upstream only what is durable.
async fn record_commit(
    spec: &JobSpec,
    tables: &[Arc<PlannedTable>],
    ti: usize,
    position: &Position,
    written: &Written,
    rows: u64,
) {
    for (&i, &n) in written {
        let t = &tables[i];
        t.progress.rows_written.fetch_add(n, Ordering::Relaxed);
        t.metrics.rows_written.increment(n);
    }
    let table = &tables[ti];
    if position.done {
        table.metrics.splits.increment(1);
    }
    table.metrics.checkpoints.increment(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    table.metrics.last_checkpoint.set(now);
    if let Err(e) = spec
        .checkpoints
        .save(&table.source.schema.id.to_string(), position, rows)
        .await
    {
        // The sink's own checkpoint (databases) or a redo of this split (files, same names)
        // keeps the result exact; only `status` lags.
        warn!(error = %e, "Recording the split's position in the state store failed.");
    }
    // Invariant: the source hears of a position only after the sink made it durable.
    if let Err(e) = spec.source.committed(position).await {
        warn!(error = %e, "The source could not acknowledge a committed position.");
    }
    debug!(rows, done = position.done, "Committed.");
}

async fn fail(
    reader: tokio::task::JoinHandle<Result<()>>,
    writer: Box<dyn SinkWriter>,
    e: Error,
) -> std::result::Result<bool, SplitFailure> {
    reader.abort();
    rollback(writer, false).await;
    Err(SplitFailure::Failed(e))
}

/// Ends an interrupted reader. On a stop the reader gets [`READER_STOP_GRACE`] to return by
/// itself: aborting its task at once would drop it before it cancels its query on the
/// server, and a database keeps computing a query whose client has gone (a `pg_sleep(60)`
/// ran on for a minute). An abort ends it at once.
async fn wind_down(mut reader: tokio::task::JoinHandle<Result<()>>, aborting: bool) {
    if !aborting
        && tokio::time::timeout(READER_STOP_GRACE, &mut reader)
            .await
            .is_ok()
    {
        return;
    }
    reader.abort();
}

async fn rollback(writer: Box<dyn SinkWriter>, aborting: bool) {
    let deadline = if aborting {
        ABORT_ROLLBACK_DEADLINE
    } else {
        // A roll-back that hangs (a server that stopped answering) must not hold the stop.
        READER_STOP_GRACE * 5
    };
    let r = match tokio::time::timeout(deadline, writer.abort()).await {
        Ok(r) => r,
        Err(_) => Err(Error::internal(
            "the roll-back did not finish in time; the server rolls the transaction back when \
             the connection closes",
        )),
    };
    if let Err(e) = r {
        warn!(error = %e, "Rolling back an unfinished split failed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap_and_stop_after_the_budget() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_wait(1, Duration::ZERO),
            Some(Duration::from_millis(500))
        );
        assert_eq!(p.next_wait(2, Duration::ZERO), Some(Duration::from_secs(1)));
        assert_eq!(
            p.next_wait(10, Duration::ZERO),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            p.next_wait(40, Duration::from_secs(60)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(p.next_wait(3, Duration::from_secs(121)), None);
    }
}
