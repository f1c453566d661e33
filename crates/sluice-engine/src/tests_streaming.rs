//! Streaming mode and the event path, in process: commits at barriers every interval,
//! acknowledgements after durable commits, stops that commit the last safe point, slow
//! checkpoints, rows of several tables in one split, schema changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_core::source::SourceTable;
use sluice_core::{
    BatchSender, ErrorKind, Position, Result, Sink, SinkWriter, Source, SourceBatch, SourceEvent,
    Split, TableId, TablePlan, TableSchema,
};

use crate::{Controller, JobSpec, Progress, RunState, StopReason, Streaming, run_batch};

fn schema(cols: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(*c, DataType::Int64, false))
            .collect::<Vec<_>>(),
    ))
}

fn rows(cols: &[&str], from: i64, to: i64) -> RecordBatch {
    let s = schema(cols);
    let arrays = cols
        .iter()
        .map(|_| Arc::new(Int64Array::from_iter_values(from..to)) as Arc<dyn Array>)
        .collect();
    RecordBatch::try_new(s, arrays).unwrap()
}

fn pos(split: &str, next: i64) -> Position {
    Position::new(split, serde_json::json!(next))
}

/// What a source does in a split, step by step; `Wait` pauses, the end of the script either
/// ends the split (`endless = false`) or waits for the stop.
#[derive(Clone)]
enum Step {
    /// A batch of the split's table, ids `[from, to)`, ending at a barrier.
    Batch(i64, i64),
    /// Rows of `table` without a barrier.
    Rows(&'static str, &'static [&'static str], i64, i64),
    Barrier(i64),
    Schema(&'static str, &'static [&'static str]),
    Wait(u64),
    /// From here, batches of 10 rows every `ms` forever.
    Forever(u64),
}

struct Scripted {
    tables: Vec<(&'static str, &'static [&'static str])>,
    steps: Vec<Step>,
    endless: bool,
    /// Positions acknowledged, with whether the sink held them durably by then.
    acks: Acks,
    durable: Durable,
}

#[async_trait]
impl Source for Scripted {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        Ok(self
            .tables
            .iter()
            .map(|(t, cols)| SourceTable {
                schema: TableSchema::new(TableId::new([*t]), schema(cols)),
                estimated_rows: None,
                estimated_bytes: None,
            })
            .collect())
    }
    async fn splits(&self, t: &SourceTable) -> Result<Vec<Split>> {
        if t.schema.id != TableId::new([self.tables[0].0]) {
            return Ok(vec![]);
        }
        Ok(vec![Split {
            id: "s".into(),
            table: t.schema.id.clone(),
            index: 0,
            estimated_rows: None,
            estimated_bytes: None,
            detail: serde_json::Value::Null,
            continues: false,
            start: None,
        }])
    }
    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let (own, cols) = self.tables[0];
        let mut next = resume.map_or(0, |p| p.value.as_i64().unwrap());
        let send = |e| out.send_event(e);
        let r: Result<()> = async {
            for step in &self.steps {
                match step.clone() {
                    Step::Batch(from, to) => {
                        if from < next {
                            continue; // Committed by an earlier attempt.
                        }
                        out.send(SourceBatch {
                            data: rows(cols, from, to),
                            position: pos(&split.id, to),
                            bytes: 0,
                        })
                        .await?;
                        next = to;
                    }
                    Step::Rows(t, c, from, to) => {
                        send(SourceEvent::Rows {
                            table: TableId::new([t]),
                            data: rows(c, from, to),
                            bytes: 0,
                        })
                        .await?
                    }
                    Step::Barrier(n) => send(SourceEvent::Barrier(pos(&split.id, n))).await?,
                    Step::Schema(t, c) => {
                        send(SourceEvent::Schema(TableSchema::new(
                            TableId::new([t]),
                            schema(c),
                        )))
                        .await?
                    }
                    Step::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    Step::Forever(ms) => loop {
                        out.send(SourceBatch {
                            data: rows(cols, next, next + 10),
                            position: pos(&split.id, next + 10),
                            bytes: 0,
                        })
                        .await?;
                        next += 10;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    },
                }
            }
            if self.endless {
                out.stop_token().cancelled().await;
            }
            Ok(())
        }
        .await;
        let _ = own;
        match r {
            Err(e) if e.kind() == ErrorKind::Stopped => Ok(()),
            r => r,
        }
    }
    async fn committed(&self, p: &Position) -> Result<()> {
        let n = p.value.as_i64().unwrap_or(-1);
        let durable = self
            .durable
            .lock()
            .unwrap()
            .last()
            .map(|c| c.position.clone())
            == Some(p.clone());
        self.acks.lock().unwrap().push((n, durable));
        Ok(())
    }
}

/// One commit as the sink saw it: the position and the ids per table it made durable.
#[derive(Debug, Clone)]
struct Commit {
    position: Position,
    ids: BTreeMap<String, Vec<i64>>,
}

type Durable = Arc<Mutex<Vec<Commit>>>;

/// Positions acknowledged to the source, with whether the sink held them by then.
type Acks = Arc<Mutex<Vec<(i64, bool)>>>;

#[derive(Default)]
struct Recording {
    durable: Durable,
    /// Each commit sleeps this long.
    commit_delay: Duration,
    /// Writers follow schema changes and take other tables' rows.
    flexible: bool,
    /// Schemas the writers were told about.
    schema_changes: Arc<Mutex<Vec<Vec<String>>>>,
}

struct RecordingWriter {
    table: String,
    pending: BTreeMap<String, Vec<i64>>,
    durable: Durable,
    delay: Duration,
    flexible: bool,
    schema_changes: Arc<Mutex<Vec<Vec<String>>>>,
}

#[async_trait]
impl Sink for Recording {
    fn keeps_checkpoints(&self) -> bool {
        true
    }
    async fn prepare(&self, _t: &[TablePlan]) -> Result<()> {
        Ok(())
    }
    async fn open(&self, t: &TablePlan, _s: &Split) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(RecordingWriter {
            table: t.target.to_string(),
            pending: BTreeMap::new(),
            durable: self.durable.clone(),
            delay: self.commit_delay,
            flexible: self.flexible,
            schema_changes: self.schema_changes.clone(),
        }))
    }
    async fn checkpoint(&self, split: &str) -> Result<Option<Position>> {
        Ok(self
            .durable
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|c| c.position.split == split)
            .map(|c| c.position.clone()))
    }
}

fn ids(b: &RecordBatch) -> Vec<i64> {
    b.column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

#[async_trait]
impl SinkWriter for RecordingWriter {
    async fn write(&mut self, b: RecordBatch) -> Result<()> {
        self.pending
            .entry(self.table.clone())
            .or_default()
            .extend(ids(&b));
        Ok(())
    }
    async fn write_table(&mut self, t: &TablePlan, b: RecordBatch) -> Result<()> {
        if !self.flexible {
            return Err(sluice_core::Error::schema("one table per split"));
        }
        self.pending
            .entry(t.target.to_string())
            .or_default()
            .extend(ids(&b));
        Ok(())
    }
    async fn schema_changed(&mut self, t: &TablePlan) -> Result<()> {
        if !self.flexible {
            return Err(sluice_core::Error::schema("cannot follow"));
        }
        self.schema_changes.lock().unwrap().push(
            t.schema
                .arrow
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        );
        Ok(())
    }
    async fn commit(&mut self, p: &Position) -> Result<()> {
        tokio::time::sleep(self.delay).await;
        self.durable.lock().unwrap().push(Commit {
            position: p.clone(),
            ids: std::mem::take(&mut self.pending),
        });
        Ok(())
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

fn spec(source: Scripted, sink: Arc<Recording>, streaming: Option<Streaming>) -> JobSpec {
    JobSpec {
        streaming,
        ..crate::tests::job_spec(Arc::new(source), sink, 1)
    }
}

fn scripted(
    sink: &Recording,
    tables: Vec<(&'static str, &'static [&'static str])>,
    steps: Vec<Step>,
    endless: bool,
) -> (Scripted, Acks) {
    let acks = Arc::new(Mutex::new(Vec::new()));
    (
        Scripted {
            tables,
            steps,
            endless,
            acks: acks.clone(),
            durable: sink.durable.clone(),
        },
        acks,
    )
}

fn every(ms: u64) -> Option<Streaming> {
    Some(Streaming {
        interval: Duration::from_millis(ms),
        timeout: Duration::from_secs(5),
    })
}

async fn run_for(spec: JobSpec, stop_after: Option<Duration>) -> crate::RunOutcome {
    let ctl = Arc::new(Controller::new());
    if let Some(after) = stop_after {
        let c = ctl.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            c.stop(StopReason::Requested("test".into()));
        });
    }
    tokio::time::timeout(
        Duration::from_secs(20),
        run_batch(spec, ctl, Progress::new()),
    )
    .await
    .expect("the run ended")
}

const T: &[&str] = &["id"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_commits_at_every_interval_and_acknowledges_only_durable_positions() {
    let sink = Arc::new(Recording::default());
    let (src, acks) = scripted(&sink, vec![("t", T)], vec![Step::Forever(5)], true);
    let out = run_for(
        spec(src, sink.clone(), every(100)),
        Some(Duration::from_millis(1200)),
    )
    .await;
    assert_eq!(out.state, RunState::Stopped, "{:?}", out.error);
    let commits = sink.durable.lock().unwrap().clone();
    // ~1.2 s at one commit per 100 ms, plus the stop's final one; generous for a busy machine.
    assert!(commits.len() >= 4, "{} commits", commits.len());
    // Every commit is at a barrier and covers exactly the ids since the previous one.
    let mut expect_from = 0;
    for c in &commits {
        let to = c.position.value.as_i64().unwrap();
        assert!(!c.position.done);
        assert_eq!(c.ids["t"], (expect_from..to).collect::<Vec<_>>());
        expect_from = to;
    }
    // Each position was acknowledged once, after the sink held it, in order.
    let acks = acks.lock().unwrap().clone();
    assert_eq!(
        acks,
        commits
            .iter()
            .map(|c| (c.position.value.as_i64().unwrap(), true))
            .collect::<Vec<_>>()
    );
    assert_eq!(out.rows_written(), expect_from as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_commits_the_last_safe_point_and_never_rows_after_it() {
    // Committed at 10 (the idle interval), then rows without a barrier: the stop rolls them back.
    let sink = Arc::new(Recording::default());
    let (src, _) = scripted(
        &sink,
        vec![("t", T)],
        vec![
            Step::Batch(0, 10),
            Step::Wait(300),
            Step::Rows("t", T, 10, 20),
        ],
        true,
    );
    let out = run_for(
        spec(src, sink.clone(), every(50)),
        Some(Duration::from_millis(600)),
    )
    .await;
    assert_eq!(out.state, RunState::Stopped, "{:?}", out.error);
    let commits = sink.durable.lock().unwrap().clone();
    assert_eq!(commits.len(), 1, "{commits:?}");
    assert_eq!(commits[0].position.value, serde_json::json!(10));
    assert_eq!(commits[0].ids["t"], (0..10).collect::<Vec<_>>());

    // A long interval: nothing committed yet when the stop comes; the stop commits 0..20.
    let sink = Arc::new(Recording::default());
    let (src, acks) = scripted(
        &sink,
        vec![("t", T)],
        vec![Step::Batch(0, 10), Step::Batch(10, 20)],
        true,
    );
    let out = run_for(
        spec(src, sink.clone(), every(60_000)),
        Some(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(out.state, RunState::Stopped, "{:?}", out.error);
    let commits = sink.durable.lock().unwrap().clone();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].position.value, serde_json::json!(20));
    assert_eq!(acks.lock().unwrap().clone(), vec![(20, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_stream_goes_on_after_its_last_commit() {
    let sink = Arc::new(Recording::default());
    let steps = vec![Step::Batch(0, 10), Step::Batch(10, 20), Step::Batch(20, 30)];
    let (src, _) = scripted(&sink, vec![("t", T)], steps.clone(), true);
    run_for(
        spec(src, sink.clone(), every(60_000)),
        Some(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(sink.durable.lock().unwrap().len(), 1);
    // The sink's checkpoint says 30; the engine asks it (committed_positions is the
    // recording sink's `checkpoint`): here the state store would hand it back, so feed it in.
    struct Log(Position);
    #[async_trait]
    impl crate::CheckpointLog for Log {
        async fn load(&self) -> Result<Vec<(Position, u64)>> {
            Ok(vec![(self.0.clone(), 30)])
        }
        async fn save(&self, _t: &str, _p: &Position, _r: u64) -> Result<()> {
            Ok(())
        }
    }
    let mut more = steps;
    more.push(Step::Batch(30, 40));
    let (src, _) = scripted(&sink, vec![("t", T)], more, false);
    let mut s = spec(src, sink.clone(), every(60_000));
    s.checkpoints = Arc::new(Log(pos("s", 30)));
    // This sink keeps no committed_positions of its own (None): the log is used.
    let out = run_for(s, None).await;
    assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
    let commits = sink.durable.lock().unwrap().clone();
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[1].ids["t"], (30..40).collect::<Vec<_>>());
    assert!(commits[1].position.done);
    assert_eq!(out.tables[0].rows_written_earlier, 30);
    assert_eq!(out.rows_written(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_over_its_timeout_fails_the_run() {
    let sink = Arc::new(Recording {
        commit_delay: Duration::from_millis(800),
        ..Default::default()
    });
    let (src, acks) = scripted(&sink, vec![("t", T)], vec![Step::Forever(5)], true);
    let s = spec(
        src,
        sink.clone(),
        Some(Streaming {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(100),
        }),
    );
    let out = run_for(s, None).await;
    assert_eq!(out.state, RunState::Failed);
    let e = out.error.unwrap();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.to_string().contains("checkpoint_timeout"), "{e}");
    assert!(
        acks.lock().unwrap().is_empty(),
        "nothing durable, nothing acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_commits_once_per_split_whatever_the_barriers() {
    let sink = Arc::new(Recording::default());
    let (src, _) = scripted(
        &sink,
        vec![("t", T)],
        vec![Step::Batch(0, 10), Step::Wait(50), Step::Batch(10, 20)],
        false,
    );
    let out = run_for(spec(src, sink.clone(), None), None).await;
    assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
    let commits = sink.durable.lock().unwrap().clone();
    assert_eq!(commits.len(), 1);
    assert!(commits[0].position.done);
    assert_eq!(commits[0].ids["t"], (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_split_writes_several_tables_in_one_commit() {
    let sink = Arc::new(Recording {
        flexible: true,
        ..Default::default()
    });
    let (src, _) = scripted(
        &sink,
        vec![("a", T), ("b", T)],
        vec![
            Step::Rows("a", T, 0, 3),
            Step::Rows("b", T, 100, 105),
            Step::Barrier(1),
            Step::Rows("b", T, 105, 106),
        ],
        false,
    );
    let out = run_for(spec(src, sink.clone(), None), None).await;
    assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
    let commits = sink.durable.lock().unwrap().clone();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].ids["a"], vec![0, 1, 2]);
    assert_eq!(commits[0].ids["b"], (100..106).collect::<Vec<_>>());
    let b = out.tables.iter().find(|t| t.table == "b").unwrap();
    assert_eq!((b.rows_read, b.rows_written), (6, 6));

    // A sink that takes one table per split refuses, and nothing is committed.
    let sink = Arc::new(Recording::default());
    let (src, _) = scripted(
        &sink,
        vec![("a", T), ("b", T)],
        vec![Step::Rows("b", T, 0, 1)],
        false,
    );
    let out = run_for(spec(src, sink.clone(), None), None).await;
    assert_eq!(out.state, RunState::Failed);
    assert!(sink.durable.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_rebinds_the_table_and_tells_the_writer() {
    let sink = Arc::new(Recording {
        flexible: true,
        ..Default::default()
    });
    const WIDE: &[&str] = &["id", "extra"];
    let (src, _) = scripted(
        &sink,
        vec![("t", T)],
        vec![
            Step::Rows("t", T, 0, 2),
            Step::Schema("t", WIDE),
            Step::Rows("t", WIDE, 2, 4),
            Step::Barrier(4),
        ],
        false,
    );
    let out = run_for(spec(src, sink.clone(), None), None).await;
    assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
    assert_eq!(
        sink.schema_changes.lock().unwrap().clone(),
        vec![vec!["id".to_string(), "extra".to_string()]]
    );
    assert_eq!(sink.durable.lock().unwrap()[0].ids["t"], vec![0, 1, 2, 3]);

    // A sink that cannot follow fails the run before a row of the new shape is written.
    let sink = Arc::new(Recording::default());
    let (src, _) = scripted(
        &sink,
        vec![("t", T)],
        vec![Step::Schema("t", WIDE), Step::Rows("t", WIDE, 0, 1)],
        false,
    );
    let out = run_for(spec(src, sink.clone(), None), None).await;
    assert_eq!(out.state, RunState::Failed);
    assert_eq!(out.error.unwrap().kind(), ErrorKind::Schema);
    assert!(sink.durable.lock().unwrap().is_empty());
}
