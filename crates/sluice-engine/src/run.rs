//! The batch runner: plan, then run splits on `parallelism` workers. See the crate docs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::source::SourceTable;
use sluice_core::{
    BatchSender, BoundTransform, Error, ErrorKind, JobContext, Position, Result, SinkWriter, Split,
    TableId, TablePlan, Transform,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::bad_records::{BadRecordPolicy, apply_tolerant};
use crate::control::{Controller, RunState, StopReason};
use crate::progress::{Progress, TableProgress};

/// How long an abort waits for in-flight writers to roll back.
const ABORT_ROLLBACK_DEADLINE: Duration = Duration::from_secs(2);
/// How long a stop lets a reader wind down on its own (it sees the stop and cancels its
/// server-side query) before the reader task is aborted.
const READER_STOP_GRACE: Duration = Duration::from_secs(2);

/// Maps a source table name to its target name (`table_map`).
pub type TargetNamer = Arc<dyn Fn(&TableId) -> Result<TableId> + Send + Sync>;

/// How many times a split failing with a transient error (connection lost, server restart)
/// is retried, and the first back-off (doubled each time).
const TRANSIENT_RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Where the engine records committed positions (the state store, wired by the binary).
pub trait CheckpointLog: Send + Sync {
    /// Positions committed in the current generation, with the rows each split wrote.
    fn load(&self) -> Result<Vec<(Position, u64)>>;
    /// Records that a split committed up to `position` (`position.done` when complete).
    fn save(&self, table: &str, position: &Position, rows: u64) -> Result<()>;
}

/// A log that keeps nothing: every run starts from scratch.
pub struct NoCheckpoints;

impl CheckpointLog for NoCheckpoints {
    fn load(&self) -> Result<Vec<(Position, u64)>> {
        Ok(Vec::new())
    }
    fn save(&self, _table: &str, _position: &Position, _rows: u64) -> Result<()> {
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
    /// Batches buffered between a reader and its writer.
    pub channel_capacity: usize,
    /// The job and its generation (given to the sink; keys checkpoints).
    pub context: JobContext,
    /// Where committed positions are recorded and read back on resume.
    pub checkpoints: Arc<dyn CheckpointLog>,
    /// How many bad records are tolerated, and where they go (`[errors]`).
    pub bad_records: Arc<BadRecordPolicy>,
}

/// One table, planned: its transforms bound, its target named, its splits listed.
pub struct PlannedTable {
    /// What the source said about the table.
    pub source: SourceTable,
    /// Transforms bound to this table, in order.
    pub transforms: Vec<Box<dyn BoundTransform>>,
    /// What the sink will be told.
    pub plan: TablePlan,
    /// The table's splits.
    pub splits: Vec<Split>,
    /// Live counters.
    pub progress: Arc<TableProgress>,
    /// The target's column types, when the sink has them (`Sink::target_types`).
    pub target_types: Option<Vec<(String, String)>>,
}

/// What a table looked like at the end of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableSummary {
    pub table: String,
    pub target: String,
    pub rows_read: u64,
    pub rows_written: u64,
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
    /// Total rows written.
    pub fn rows_written(&self) -> u64 {
        self.tables.iter().map(|t| t.rows_written).sum()
    }
    /// Total input bytes read.
    pub fn bytes_read(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes_read).sum()
    }
}

/// Discovers tables, binds transforms, names targets and lists splits. Moves no data; used by
/// `sluice validate` as well as by [`run_batch`].
pub async fn plan_tables(spec: &JobSpec, progress: &Progress) -> Result<Vec<PlannedTable>> {
    let tables = spec.source.tables().await?;
    if tables.is_empty() {
        return Err(Error::config("the source matched no tables")
            .with_hint("check `tables` / `path` in [source]"));
    }
    let mut planned = Vec::with_capacity(tables.len());
    let mut targets: HashMap<TableId, TableId> = HashMap::new();
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
        let splits = spec
            .source
            .splits(&table)
            .await
            .map_err(|e| e.context(format!("table {id}")))?;
        let p = progress.add_table(id.to_string());
        p.splits_total.store(splits.len(), Ordering::Relaxed);
        let rows: u64 = splits.iter().filter_map(|s| s.estimated_rows).sum();
        let bytes: u64 = splits.iter().filter_map(|s| s.estimated_bytes).sum();
        p.rows_total
            .store(table.estimated_rows.unwrap_or(rows), Ordering::Relaxed);
        p.bytes_total
            .store(table.estimated_bytes.unwrap_or(bytes), Ordering::Relaxed);
        schema.id = target.clone();
        let plan_check = TablePlan {
            target: target.clone(),
            schema: schema.clone(),
            splits: 0,
        };
        // A type the target cannot hold is refused here, before any data moves.
        let target_types = spec.sink.target_types(&plan_check)?;
        let plan = TablePlan {
            target,
            schema,
            splits: splits.len(),
        };
        planned.push(PlannedTable {
            source: table,
            transforms: bound,
            plan,
            splits,
            progress: p,
            target_types,
        });
    }
    Ok(planned)
}

/// Runs a batch job to its end, a stop, or an error. Never panics on connector errors: they
/// come back in [`RunOutcome::error`].
pub async fn run_batch(spec: JobSpec, ctl: Arc<Controller>, progress: Progress) -> RunOutcome {
    let started = Instant::now();
    let spec = Arc::new(spec);
    if let Some(t) = spec.timeout {
        let c = ctl.clone();
        tokio::spawn(async move {
            tokio::time::sleep(t).await;
            if !c.state().is_terminal() {
                warn!(timeout = ?t, "Job timeout elapsed; stopping.");
                c.stop(StopReason::Timeout);
            }
        });
    }
    let result = run_inner(&spec, &ctl, &progress).await;
    let tables_ok = result.as_ref().map(|v| v.clone()).unwrap_or_default();
    if let Err(e) = spec.sink.close().await {
        warn!(error = %e, "Closing the sink failed.");
    }
    if let Err(e) = spec.source.close().await {
        warn!(error = %e, "Closing the source failed.");
    }
    let snapshot = progress.snapshot();
    let tables = snapshot
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (target, complete) = tables_ok
                .get(i)
                .cloned()
                .unwrap_or_else(|| (s.name.clone(), false));
            TableSummary {
                table: s.name.clone(),
                target,
                rows_read: s.rows_read,
                rows_written: s.rows_written,
                bytes_read: s.bytes_read,
                splits_done: s.splits_done,
                splits_total: s.splits_total,
                complete,
            }
        })
        .collect::<Vec<_>>();
    let all_complete = !tables.is_empty() && tables.iter().all(|t| t.complete);
    let (state, error) = match result {
        Err(e) if e.kind() == ErrorKind::Stopped => (stopped_state(&ctl), None),
        Err(e) => (RunState::Failed, Some(e)),
        // A stop that arrived after the last split committed changes nothing: report the truth.
        Ok(_) if all_complete => (RunState::Finished, None),
        Ok(_) if ctl.is_stopping() => (stopped_state(&ctl), None),
        Ok(_) => (
            RunState::Failed,
            Some(Error::internal("run ended with unfinished tables")),
        ),
    };
    ctl.finish(state);
    let stop_reason = match state {
        RunState::Stopped | RunState::Aborted => ctl.stop_reason().map(|r| r.0),
        _ => None,
    };
    RunOutcome {
        state,
        error,
        stop_reason,
        tables,
        elapsed: started.elapsed(),
    }
}

fn stopped_state(ctl: &Controller) -> RunState {
    if ctl.is_aborting() {
        RunState::Aborted
    } else {
        RunState::Stopped
    }
}

/// Returns, per planned table, its target name and whether it completed.
async fn run_inner(
    spec: &Arc<JobSpec>,
    ctl: &Arc<Controller>,
    progress: &Progress,
) -> Result<Vec<(String, bool)>> {
    let planned = plan_tables(spec, progress).await?;
    let plans: Vec<TablePlan> = planned.iter().map(|p| p.plan.clone()).collect();
    if ctl.is_stopping() {
        return Err(Error::stopped());
    }
    spec.sink.begin(&spec.context)?;
    spec.sink.prepare(&plans).await?;
    let resume = load_committed(spec).await?;
    info!(
        job = %spec.name,
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
    let mut queue: VecDeque<(usize, Split, Option<Position>)> = VecDeque::new();
    let mut skipped = 0usize;
    for (i, t) in planned.iter().enumerate() {
        let mut left = 0;
        for split in &t.splits {
            match resume.get(&split.id) {
                Some((p, rows)) if p.done => {
                    // Committed by an earlier run of this generation: nothing to redo.
                    t.progress.splits_done.fetch_add(1, Ordering::Relaxed);
                    t.progress.rows_written.fetch_add(*rows, Ordering::Relaxed);
                    skipped += 1;
                }
                other => {
                    queue.push_back((i, split.clone(), other.map(|(p, _)| p.clone())));
                    left += 1;
                }
            }
        }
        if left == 0 {
            // Every split is already committed (or there are none): finishing is idempotent.
            spec.sink.finish_table(&t.plan).await?;
            *done[i].lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
    }
    if skipped > 0 {
        info!(
            job = %spec.name,
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
        workers.spawn(async move {
            loop {
                if run_stop.is_cancelled() {
                    return;
                }
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((ti, split, resume)) = next else { return };
                let table = &planned[ti];
                let split_id = split.id.clone();
                debug!(worker = w, split = %split_id, "Split started.");
                let mut attempt = 0;
                let result = loop {
                    let r = run_split(&spec, &ctl, &run_stop, table, split.clone(), resume.clone()).await;
                    match r {
                        Err(e) if e.kind().is_transient()
                            && attempt < TRANSIENT_RETRIES
                            && !run_stop.is_cancelled() =>
                        {
                            let wait = FIRST_BACKOFF * 2u32.pow(attempt);
                            attempt += 1;
                            warn!(split = %split_id, error = %e, attempt, wait = ?wait, "Transient error; redoing the split.");
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                _ = run_stop.cancelled() => break Ok(false),
                            }
                        }
                        r => break r,
                    }
                };
                match result {
                    Ok(true) => {
                        let n = table.progress.splits_done.fetch_add(1, Ordering::AcqRel) + 1;
                        if n == table.splits.len() {
                            if let Err(e) = spec.sink.finish_table(&table.plan).await {
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
                                rows = table.progress.rows_written.load(Ordering::Relaxed),
                                "Table finished."
                            );
                        }
                    }
                    Ok(false) => return,
                    Err(e) if e.kind() == ErrorKind::Stopped => return,
                    Err(e) => {
                        record_error(&first_error, &run_stop, e);
                        return;
                    }
                }
            }
        });
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

/// Committed positions for this generation: the sink's own if it keeps them (authoritative),
/// else the state store's. Rows per split come from the state store when it knows them.
async fn load_committed(
    spec: &JobSpec,
) -> Result<std::collections::HashMap<String, (Position, u64)>> {
    let stored = spec.checkpoints.load()?;
    let rows: HashMap<String, u64> = stored.iter().map(|(p, r)| (p.split.clone(), *r)).collect();
    let positions = match spec.sink.committed_positions().await? {
        Some(v) => v,
        None => stored.into_iter().map(|(p, _)| p).collect(),
    };
    Ok(positions
        .into_iter()
        .map(|p| {
            let r = rows.get(&p.split).copied().unwrap_or(0);
            (p.split.clone(), (p, r))
        })
        .collect())
}

fn record_error(slot: &Mutex<Option<Error>>, run_stop: &CancellationToken, e: Error) {
    let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
    if s.is_none() {
        *s = Some(e);
    }
    run_stop.cancel();
}

/// Runs one split: reader task → bounded channel → transforms → writer. Returns `Ok(true)`
/// when the split committed, `Ok(false)` when it was interrupted by a stop (and rolled back).
async fn run_split(
    spec: &Arc<JobSpec>,
    ctl: &Controller,
    run_stop: &CancellationToken,
    table: &PlannedTable,
    split: Split,
    resume: Option<Position>,
) -> Result<bool> {
    let ctx = || format!("table {}, split {}", table.source.schema.id, split.index);
    let (tx, mut rx) = mpsc::channel(spec.channel_capacity.max(1));
    let sender = BatchSender::new(tx, run_stop.clone()).with_pause(ctl.pause_watch());
    let source = spec.source.clone();
    let read_split = split.clone();
    let resume_from = resume.clone();
    let mut reader =
        tokio::spawn(async move { source.read(read_split, resume_from, sender).await });

    let mut writer = match spec.sink.open(&table.plan, &split).await {
        Ok(w) => w,
        Err(e) => {
            reader.abort();
            return Err(e.context(ctx()));
        }
    };
    let abort = ctl.abort_token();
    let mut last: Option<Position> = None;
    let mut rows = 0u64;
    let interrupted = loop {
        tokio::select! {
            biased;
            _ = abort.cancelled() => break true,
            _ = run_stop.cancelled() => break true,
            msg = rx.recv() => match msg {
                Some(b) => {
                    let n = b.data.num_rows() as u64;
                    table.progress.rows_read.fetch_add(n, Ordering::Relaxed);
                    table.progress.bytes_read.fetch_add(b.bytes, Ordering::Relaxed);
                    let origin = crate::bad_records::Origin {
                        job: &spec.name,
                        table: &table.plan.target.to_string(),
                        split: &split.id,
                        position: &b.position,
                        rows_read: table.progress.rows_read.load(Ordering::Relaxed),
                    };
                    let data = match apply_tolerant(&table.transforms, b.data, &spec.bad_records, &origin) {
                        Ok(d) => d,
                        Err(e) => return fail(reader, writer, e.context(ctx())).await,
                    };
                    let kept = data.num_rows() as u64;
                    if kept > 0 {
                        // The batch in hand is finished even if a stop arrives meanwhile.
                        if let Err(e) = writer.write(data).await {
                            return fail(reader, writer, e.context(ctx())).await;
                        }
                    }
                    rows += kept;
                    last = Some(b.position);
                }
                None => break false,
            }
        }
    };
    if interrupted {
        drop(rx);
        let aborting = ctl.is_aborting();
        tokio::join!(wind_down(reader, aborting), rollback(writer, aborting));
        return Ok(false);
    }
    let read_result = match (&mut reader).await {
        Ok(r) => r,
        Err(e) => Err(Error::internal(format!("reader task failed: {e}"))),
    };
    if let Err(e) = read_result {
        rollback(writer, false).await;
        if e.kind() == ErrorKind::Stopped {
            return Ok(false);
        }
        return Err(e.context(ctx()));
    }
    if run_stop.is_cancelled() {
        // The reader may have returned early because of the stop: the split is not known to
        // be complete, so it is rolled back and redone by the next run.
        rollback(writer, ctl.is_aborting()).await;
        return Ok(false);
    }
    let mut position = last
        .or(resume)
        .unwrap_or_else(|| Position::new(split.id.clone(), serde_json::Value::Null));
    position.done = true;
    // Invariant: the split counts as done only after the sink made it durable (data and, for
    // database sinks, the checkpoint row in one transaction).
    writer
        .commit(&position)
        .await
        .map_err(|e| e.context(ctx()))?;
    table
        .progress
        .rows_written
        .fetch_add(rows, Ordering::Relaxed);
    if let Err(e) = spec
        .checkpoints
        .save(&table.source.schema.id.to_string(), &position, rows)
    {
        // The sink's own checkpoint (databases) or a redo of this split (files, same names)
        // keeps the result exact; only `status` lags.
        warn!(split = %split.id, error = %e, "Recording the split's position in the state store failed.");
    }
    debug!(split = %split.id, rows, "Split committed.");
    Ok(true)
}

async fn fail(
    reader: tokio::task::JoinHandle<Result<()>>,
    writer: Box<dyn SinkWriter>,
    e: Error,
) -> Result<bool> {
    reader.abort();
    rollback(writer, false).await;
    Err(e)
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
    let r = if aborting {
        match tokio::time::timeout(ABORT_ROLLBACK_DEADLINE, writer.abort()).await {
            Ok(r) => r,
            Err(_) => Err(Error::internal(
                "roll-back did not finish before the abort deadline",
            )),
        }
    } else {
        writer.abort().await
    };
    if let Err(e) = r {
        warn!(error = %e, "Rolling back an unfinished split failed.");
    }
}
