//! Engine behaviour with in-process connectors: backpressure, stop, failure. (End-to-end
//! tests with real files and SQLite live in `crates/sluice/tests/cli.rs`.)

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_core::source::SourceTable;
use sluice_core::{
    BatchSender, Error, Position, Result, Sink, SinkWriter, Source, SourceBatch, Split, TableId,
    TablePlan, TableSchema,
};

use crate::{Controller, JobSpec, Progress, RunState, StopReason, run_batch};

/// `splits` splits of `batches` batches of 10 rows; counts batches sent but not yet written.
struct CountingSource {
    splits: usize,
    batches: usize,
    in_flight: Arc<AtomicI64>,
    max_in_flight: Arc<AtomicI64>,
    fail_split: Option<usize>,
    /// The failure is a cancel the server made (a statement timeout), not a poison row.
    fail_with_stopped: bool,
    /// Records each acknowledged split and whether the sink held its position by then.
    acked: Option<AckLog>,
}

type SinkStore = Arc<Mutex<std::collections::BTreeMap<String, (usize, Position)>>>;
type AckLog = (Arc<Mutex<Vec<(String, bool)>>>, SinkStore);

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]))
}

#[async_trait]
impl Source for CountingSource {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        Ok(vec![SourceTable {
            schema: TableSchema::new(TableId::new(["t"]), schema()),
            estimated_rows: None,
            estimated_bytes: None,
        }])
    }
    async fn splits(&self, t: &SourceTable) -> Result<Vec<Split>> {
        Ok((0..self.splits)
            .map(|i| Split {
                id: format!("t#{i}"),
                table: t.schema.id.clone(),
                index: i,
                estimated_rows: None,
                estimated_bytes: None,
                detail: serde_json::Value::Null,
                continues: false,
                start: None,
            })
            .collect())
    }
    async fn read(&self, split: Split, _resume: Option<Position>, out: BatchSender) -> Result<()> {
        for b in 0..self.batches {
            if self.fail_split == Some(split.index) && b == 2 {
                if self.fail_with_stopped {
                    return Err(Error::new(
                        sluice_core::ErrorKind::Stopped,
                        "canceling statement due to user request (the query was cancelled)",
                    ));
                }
                return Err(Error::data("poison row"));
            }
            let data = RecordBatch::try_new(
                schema(),
                vec![Arc::new(Int64Array::from_iter_values(
                    (0..10).map(|i| (b * 10 + i) as i64),
                ))],
            )?;
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(n, Ordering::SeqCst);
            let pos = Position::new(split.id.clone(), serde_json::json!(b));
            if let Err(e) = out
                .send(SourceBatch {
                    data,
                    position: pos,
                    bytes: 80,
                })
                .await
            {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                return if e.kind() == sluice_core::ErrorKind::Stopped {
                    Ok(())
                } else {
                    Err(e)
                };
            }
        }
        Ok(())
    }
    async fn committed(&self, p: &Position) -> Result<()> {
        if let Some((log, store)) = &self.acked {
            let durable = store.lock().unwrap().get(&p.split).map(|(_, q)| q) == Some(p);
            log.lock().unwrap().push((p.split.clone(), durable));
        }
        Ok(())
    }
}

/// Records committed rows per split; aborted splits leave nothing. Each write sleeps.
#[derive(Default)]
struct SlowSink {
    delay: Duration,
    committed: Arc<Mutex<Vec<(String, usize)>>>,
    aborted: Arc<AtomicUsize>,
    in_flight: Arc<AtomicI64>,
}

struct SlowWriter {
    split: String,
    rows: usize,
    delay: Duration,
    committed: Arc<Mutex<Vec<(String, usize)>>>,
    aborted: Arc<AtomicUsize>,
    in_flight: Arc<AtomicI64>,
}

#[async_trait]
impl Sink for SlowSink {
    async fn prepare(&self, _t: &[TablePlan]) -> Result<()> {
        Ok(())
    }
    async fn open(&self, _t: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(SlowWriter {
            split: split.id.clone(),
            rows: 0,
            delay: self.delay,
            committed: self.committed.clone(),
            aborted: self.aborted.clone(),
            in_flight: self.in_flight.clone(),
        }))
    }
}

#[async_trait]
impl SinkWriter for SlowWriter {
    async fn write(&mut self, b: RecordBatch) -> Result<()> {
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.rows += b.num_rows();
        Ok(())
    }
    async fn commit(&mut self, _p: &Position) -> Result<()> {
        self.committed
            .lock()
            .unwrap()
            .push((self.split.clone(), self.rows));
        Ok(())
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        self.aborted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn spec(source: CountingSource, sink: Arc<SlowSink>, parallelism: usize) -> JobSpec {
    job_spec(Arc::new(source), sink, parallelism)
}

/// A batch job named `test` over in-process connectors, without state or transforms.
pub(crate) fn job_spec(
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    parallelism: usize,
) -> JobSpec {
    JobSpec {
        name: "test".into(),
        parallelism,
        timeout: None,
        source,
        sink,
        transforms: vec![],
        targets: Arc::new(|id| Ok(id.clone())),
        check_tables: Arc::new(|_| Ok(())),
        channel_capacity: 2,
        context: sluice_core::JobContext {
            job: "test".into(),
            generation: "g".into(),
            ..Default::default()
        },
        checkpoints: Arc::new(crate::NoCheckpoints),
        bad_records: Arc::new(crate::BadRecordPolicy::default()),
        retry: crate::RetryPolicy::default(),
        streaming: None,
    }
}

fn source(
    splits: usize,
    batches: usize,
    in_flight: &Arc<AtomicI64>,
) -> (CountingSource, Arc<AtomicI64>) {
    let max = Arc::new(AtomicI64::new(0));
    let s = CountingSource {
        splits,
        batches,
        in_flight: in_flight.clone(),
        max_in_flight: max.clone(),
        fail_split: None,
        fail_with_stopped: false,
        acked: None,
    };
    (s, max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_bounds_batches_in_flight() {
    let in_flight = Arc::new(AtomicI64::new(0));
    let (src, max) = source(3, 40, &in_flight);
    let sink = Arc::new(SlowSink {
        delay: Duration::from_millis(2),
        in_flight: in_flight.clone(),
        ..Default::default()
    });
    let out = run_batch(
        spec(src, sink.clone(), 2),
        Arc::new(Controller::new()),
        Progress::new(),
    )
    .await;
    assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
    assert_eq!(out.rows_written(), 3 * 40 * 10);
    // Per pipeline: channel capacity (2) + one being sent + one in the writer's hands.
    let bound = 2 * (2 + 2);
    assert!(
        max.load(Ordering::SeqCst) <= bound,
        "max in flight {} > {bound}",
        max.load(Ordering::SeqCst)
    );
    let mut c = sink.committed.lock().unwrap().clone();
    c.sort();
    assert_eq!(
        c,
        (0..3).map(|i| (format!("t#{i}"), 400)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_rolls_back_splits_in_flight_and_keeps_finished_ones() {
    let in_flight = Arc::new(AtomicI64::new(0));
    let (src, _) = source(6, 50, &in_flight);
    let sink = Arc::new(SlowSink {
        delay: Duration::from_millis(3),
        in_flight: in_flight.clone(),
        ..Default::default()
    });
    let ctl = Arc::new(Controller::new());
    let c2 = ctl.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        c2.stop(StopReason::Requested("test".into()));
    });
    let started = std::time::Instant::now();
    let out = run_batch(spec(src, sink.clone(), 2), ctl, Progress::new()).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(out.state, RunState::Stopped, "{:?}", out.error);
    let committed = sink.committed.lock().unwrap().clone();
    assert!(committed.len() < 6, "the stop came before the end");
    // Every committed split is whole; the interrupted ones were aborted.
    assert!(
        committed.iter().all(|(_, rows)| *rows == 500),
        "{committed:?}"
    );
    assert!(sink.aborted.load(Ordering::SeqCst) >= 1);
    assert_eq!(out.rows_written(), committed.len() as u64 * 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_split_fails_the_job_and_names_table_and_split() {
    let in_flight = Arc::new(AtomicI64::new(0));
    let (mut src, _) = source(4, 20, &in_flight);
    src.fail_split = Some(1);
    let sink = Arc::new(SlowSink {
        delay: Duration::from_millis(1),
        in_flight,
        ..Default::default()
    });
    let out = run_batch(
        spec(src, sink.clone(), 2),
        Arc::new(Controller::new()),
        Progress::new(),
    )
    .await;
    assert_eq!(out.state, RunState::Failed);
    let e = out.error.unwrap();
    assert_eq!(e.to_string(), "table t, split 1: poison row");
    assert!(
        sink.committed
            .lock()
            .unwrap()
            .iter()
            .all(|(s, _)| s != "t#1")
    );
}

// ------------------------------------------------------------------------------------------
// Issue 9 mechanisms, in process: in-doubt commits, stops that interrupt a hung write, a
// server-side cancel that is not a stop, emptied targets, acknowledgements after commits.

/// A sink that keeps checkpoints in memory and can be told to misbehave.
#[derive(Default)]
struct ScriptedSink {
    /// Committed rows and positions per split (the "target").
    store: SinkStore,
    /// The n-th commit (1-based) lands, then reports a lost connection.
    lose_answer_of_commit: Option<usize>,
    commits: Arc<AtomicUsize>,
    /// Writes of this split never return.
    hang_writes_of: Option<String>,
    /// What `holds_rows` answers.
    empty: bool,
}

struct ScriptedWriter {
    split: String,
    rows: usize,
    sink: Arc<ScriptedShared>,
}

struct ScriptedShared {
    store: SinkStore,
    lose: Option<usize>,
    commits: Arc<AtomicUsize>,
    hang: Option<String>,
}

#[async_trait]
impl Sink for ScriptedSink {
    fn keeps_checkpoints(&self) -> bool {
        true
    }
    async fn committed_positions(&self) -> Result<Option<Vec<sluice_core::Checkpoint>>> {
        Ok(Some(
            self.store
                .lock()
                .unwrap()
                .values()
                .map(|(rows, p)| sluice_core::Checkpoint {
                    position: p.clone(),
                    rows: *rows as u64,
                    table: "t".into(),
                })
                .collect(),
        ))
    }
    async fn checkpoint(&self, split: &str) -> Result<Option<Position>> {
        Ok(self
            .store
            .lock()
            .unwrap()
            .get(split)
            .map(|(_, p)| p.clone()))
    }
    async fn holds_rows(&self, _t: &TablePlan) -> Result<Option<bool>> {
        Ok(Some(!self.empty))
    }
    async fn prepare(&self, _t: &[TablePlan]) -> Result<()> {
        Ok(())
    }
    async fn open(&self, _t: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(ScriptedWriter {
            split: split.id.clone(),
            rows: 0,
            sink: Arc::new(ScriptedShared {
                store: self.store.clone(),
                lose: self.lose_answer_of_commit,
                commits: self.commits.clone(),
                hang: self.hang_writes_of.clone(),
            }),
        }))
    }
}

#[async_trait]
impl SinkWriter for ScriptedWriter {
    async fn write(&mut self, b: RecordBatch) -> Result<()> {
        if self.sink.hang.as_deref() == Some(self.split.as_str()) {
            // A lock held elsewhere, a server that stopped answering.
            futures::future::pending::<()>().await;
        }
        self.rows += b.num_rows();
        Ok(())
    }
    async fn commit(&mut self, p: &Position) -> Result<()> {
        self.sink
            .store
            .lock()
            .unwrap()
            .insert(self.split.clone(), (self.rows, p.clone()));
        let n = self.sink.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.sink.lose == Some(n) {
            return Err(Error::new(
                sluice_core::ErrorKind::Connection,
                "connection closed before the COMMIT's answer",
            ));
        }
        Ok(())
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

fn scripted_spec(source: CountingSource, sink: ScriptedSink) -> (JobSpec, Arc<ScriptedSink>) {
    let sink = Arc::new(sink);
    let mut s = spec(source, Arc::new(SlowSink::default()), 2);
    s.sink = sink.clone();
    (s, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_counts_once_when_its_checkpoint_landed() {
    let in_flight = Arc::new(AtomicI64::new(0));
    let (src, _) = source(6, 5, &in_flight);
    let (spec, sink) = scripted_spec(
        src,
        ScriptedSink {
            lose_answer_of_commit: Some(3),
            ..Default::default()
        },
    );
    let out = run_batch(spec, Arc::new(Controller::new()), Progress::new()).await;
    assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
    // Six splits, six commits: the one in doubt was found in the target, not written again.
    assert_eq!(sink.commits.load(Ordering::SeqCst), 6);
    assert_eq!(out.rows_written(), 6 * 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_interrupts_a_write_that_never_returns() {
    let in_flight = Arc::new(AtomicI64::new(0));
    let (src, _) = source(2, 5, &in_flight);
    let (spec, _) = scripted_spec(
        src,
        ScriptedSink {
            hang_writes_of: Some("t#0".into()),
            ..Default::default()
        },
    );
    let ctl = Arc::new(Controller::new());
    let c2 = ctl.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.stop(StopReason::Requested("test".into()));
    });
    let started = std::time::Instant::now();
    let out = run_batch(spec, ctl, Progress::new()).await;
    assert_eq!(out.state, RunState::Stopped, "{:?}", out.error);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_nobody_asked_for_fails_the_run_instead_of_stopping_it() {
    let in_flight = Arc::new(AtomicI64::new(0));
    let (mut src, _) = source(3, 5, &in_flight);
    src.fail_with_stopped = true;
    src.fail_split = Some(1);
    let (spec, sink) = scripted_spec(src, ScriptedSink::default());
    let out = run_batch(spec, Arc::new(Controller::new()), Progress::new()).await;
    assert_eq!(out.state, RunState::Failed);
    let e = out.error.unwrap();
    assert!(e.to_string().contains("cancelled"), "{e}");
    assert!(!sink.store.lock().unwrap().contains_key("t#1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_of_an_emptied_target_are_copied_again() {
    let in_flight = Arc::new(AtomicI64::new(0));
    let (src, _) = source(3, 5, &in_flight);
    let sink = ScriptedSink {
        empty: true,
        ..Default::default()
    };
    let mut done = Position::new("t#0", serde_json::json!(4));
    done.done = true;
    sink.store.lock().unwrap().insert("t#0".into(), (50, done));
    let (spec, sink) = scripted_spec(src, sink);
    let out = run_batch(spec, Arc::new(Controller::new()), Progress::new()).await;
    assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
    assert_eq!(
        sink.commits.load(Ordering::SeqCst),
        3,
        "split 0 was written again"
    );
    assert_eq!(out.rows_written_earlier(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_hears_of_a_position_only_after_it_committed() {
    let in_flight = Arc::new(AtomicI64::new(0));
    let (mut src, _) = source(4, 5, &in_flight);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sink = ScriptedSink::default();
    src.acked = Some((acked.clone(), sink.store.clone()));
    let (spec, _) = scripted_spec(src, sink);
    let out = run_batch(spec, Arc::new(Controller::new()), Progress::new()).await;
    assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 4);
    for (split, durable) in acked {
        assert!(durable, "split {split} was acknowledged before its commit");
    }
}

#[test]
fn the_engine_emits_its_metrics() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let in_flight = Arc::new(AtomicI64::new(0));
            let (src, _) = source(2, 3, &in_flight);
            let (spec, _) = scripted_spec(src, ScriptedSink::default());
            let out = run_batch(spec, Arc::new(Controller::new()), Progress::new()).await;
            assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
        });
    });
    let snap = snapshotter.snapshot().into_hashmap();
    let counter = |name: &str| {
        snap.iter()
            .filter(|(k, _)| k.key().name() == name)
            .map(|(_, (_, _, v))| match v {
                metrics_util::debugging::DebugValue::Counter(c) => *c,
                _ => 0,
            })
            .sum::<u64>()
    };
    assert_eq!(counter(sluice_core::metrics::SOURCE_ROWS_TOTAL), 60);
    assert_eq!(counter(sluice_core::metrics::SINK_ROWS_TOTAL), 60);
    assert_eq!(counter(sluice_core::metrics::SPLITS_COMMITTED_TOTAL), 2);
    assert_eq!(counter(sluice_core::metrics::CHECKPOINTS_TOTAL), 2);
    let last = snap
        .iter()
        .find(|(k, _)| k.key().name() == sluice_core::metrics::LAST_CHECKPOINT_TIMESTAMP_SECONDS)
        .map(|(_, (_, _, v))| match v {
            metrics_util::debugging::DebugValue::Gauge(g) => g.into_inner(),
            _ => 0.0,
        });
    assert!(last.is_some_and(|t| t > 1.7e9), "{last:?}");
    assert!(
        snap.keys()
            .any(|k| k.key().name() == sluice_core::metrics::SINK_COMMIT_DURATION_SECONDS)
    );
}
