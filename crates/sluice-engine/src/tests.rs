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
}

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
    JobSpec {
        name: "test".into(),
        parallelism,
        timeout: None,
        source: Arc::new(source),
        sink,
        transforms: vec![],
        targets: Arc::new(|id| Ok(id.clone())),
        check_tables: Arc::new(|_| Ok(())),
        channel_capacity: 2,
        context: sluice_core::JobContext {
            job: "test".into(),
            generation: "g".into(),
        },
        checkpoints: Arc::new(crate::NoCheckpoints),
        bad_records: Arc::new(crate::BadRecordPolicy::default()),
        retry: crate::RetryPolicy::default(),
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
