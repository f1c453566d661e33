//! The conformance suite every sink passes (after Vector's `run_and_assert_sink_compliance`
//! and Conduit's acceptance tests): the same scenarios, through the real engine, against each
//! real target, with faults injected by a wrapper around the sink.
//!
//! | scenario | fault | expected |
//! | --- | --- | --- |
//! | `clean` | none | every row exactly once |
//! | `crash_mid_split` | a write fails in a later split (the run fails) | the resume writes the rest; every row once |
//! | `commit_answer_lost` | a COMMIT lands, its answer is lost | the sink says it landed (or the split is redone into the same names); every row once, in one run |
//! | `commit_lost` | a COMMIT never reaches the target | the split is redone; every row once, in one run |
//! | `stop_and_resume` | a stop after two commits | STOPPED; the resume skips what is committed; every row once |
//! | `ack_after_commit` | — | the source hears of each position only once the sink reports it committed |
//! | `multi_table_split` | one split carries rows of two tables, then a failure, then a resume | both tables complete, each row once (sinks that write several tables per split; the others refuse, writing nothing) |
//! | `apply_changes` | change events (the operation column): inserts, updates, deletes, a key deleted and inserted again, within one commit and across commits | the target holds each key's last state (PostgreSQL and SQLite with `upsert`); MySQL refuses before any row moves |
//! | `edit_checkpoints` | an operator's offset edit between a stop and the resume (upsert): a committed split forgotten, an uncommitted one marked done | the sink reports the edit; the resume reads the forgotten split again and skips the done one; every other row once (sinks that keep checkpoints) |
//! | `truncate_in_a_change_stream` | a TRUNCATE between change events; a failure after it, then a resume | the failed unit rolls back whole (the committed rows stay); the resume leaves only the rows after the TRUNCATE (PostgreSQL, SQLite); MySQL refuses |
//! | `streaming_*` | streaming mode, a commit at every barrier: clean, a write failing after two commits of a split, a mid-split COMMIT whose answer is lost | every row once; the resume goes on after the last commit, not from the split's start (databases; files by naming each part after its position) |
//!
//! A new connector gets the suite by adding a [`Target`] (how to build its sink for a fresh
//! target, and how to read the target's ids back).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::json;
use sluice_connectors::registry::SinkConfig;
use sluice_core::sink::DynSink;
use sluice_core::source::SourceTable;
use sluice_core::{
    BatchSender, Checkpoint, Error, ErrorKind, GenerationRecord, JobContext, Position, Result,
    Sink, SinkLockGuard, SinkWriter, Source, SourceBatch, Split, TableId, TablePlan, TableSchema,
};
use sluice_engine::{
    BadRecordPolicy, CheckpointLog, Controller, JobSpec, Progress, RetryPolicy, RunState,
    StopReason, Streaming, run_batch,
};

const SPLITS: usize = 6;
const BATCHES: usize = 4;
const ROWS_PER_BATCH: usize = 100;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]))
}

fn all_ids() -> Vec<i64> {
    (0..(SPLITS * BATCHES * ROWS_PER_BATCH) as i64).collect()
}

/// `SPLITS` splits of `BATCHES` batches; ids unique across splits. Records acknowledgements
/// and checks each against the sink at that moment.
struct Synthetic {
    sink: Mutex<Option<DynSink>>,
    acks: Mutex<Vec<(String, bool)>>,
}

#[async_trait]
impl Source for Synthetic {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let mut s = TableSchema::new(TableId::new(["conf"]), schema());
        s.primary_key = vec!["id".into()];
        Ok(vec![SourceTable {
            schema: s,
            estimated_rows: None,
            estimated_bytes: None,
        }])
    }
    async fn splits(&self, t: &SourceTable) -> Result<Vec<Split>> {
        Ok((0..SPLITS)
            .map(|i| Split {
                id: format!("conf#{i}"),
                table: t.schema.id.clone(),
                index: i,
                estimated_rows: None,
                estimated_bytes: None,
                detail: json!({ "i": i }),
                continues: false,
                start: None,
            })
            .collect())
    }
    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let first = resume
            .and_then(|p| p.value.as_u64())
            .map(|b| b as usize + 1)
            .unwrap_or(0);
        for b in first..BATCHES {
            let base = (split.index * BATCHES + b) * ROWS_PER_BATCH;
            let ids: Vec<i64> = (base..base + ROWS_PER_BATCH).map(|i| i as i64).collect();
            let notes: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
            let data = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(notes)),
                ],
            )?;
            let batch = SourceBatch {
                data,
                position: Position::new(split.id.clone(), json!(b)),
                bytes: 0,
            };
            if let Err(e) = out.send(batch).await {
                return if e.kind() == ErrorKind::Stopped {
                    Ok(())
                } else {
                    Err(e)
                };
            }
        }
        Ok(())
    }
    async fn committed(&self, p: &Position) -> Result<()> {
        let sink = self.sink.lock().unwrap().clone();
        let durable = match sink {
            Some(s) => match s.committed_positions().await? {
                Some(list) => list.iter().any(|c| c.position == *p),
                // A sink without checkpoints commits locally (a rename): nothing to ask.
                None => true,
            },
            None => false,
        };
        self.acks.lock().unwrap().push((p.split.clone(), durable));
        Ok(())
    }
}

/// What goes wrong, once.
#[derive(Default)]
struct Faults {
    /// A write of this split fails with a data error.
    fail_write_of: Option<String>,
    /// Only the write with this index (0-based) of that split fails.
    fail_write_index: Option<usize>,
    /// This split's COMMIT lands, then the connection "breaks".
    lose_answer_of: Option<String>,
    /// This split's COMMIT never reaches the target.
    lose_commit_of: Option<String>,
    /// Stop the run after this many commits.
    stop_after: Option<usize>,
    fired: AtomicBool,
    commits: AtomicUsize,
    ctl: Mutex<Option<Arc<Controller>>>,
}

impl Faults {
    fn fire(&self) -> bool {
        !self.fired.swap(true, Ordering::SeqCst)
    }
}

/// A sink that delegates to a real one and injects [`Faults`].
struct Faulty {
    inner: DynSink,
    faults: Arc<Faults>,
}

#[async_trait]
impl Sink for Faulty {
    fn keeps_checkpoints(&self) -> bool {
        self.inner.keeps_checkpoints()
    }
    async fn lock(&self, job: &str, t: &[TableId]) -> Result<Option<SinkLockGuard>> {
        self.inner.lock(job, t).await
    }
    async fn load_generation(&self, job: &str) -> Result<Option<GenerationRecord>> {
        self.inner.load_generation(job).await
    }
    async fn save_generation(&self, job: &str, r: &GenerationRecord) -> Result<()> {
        self.inner.save_generation(job, r).await
    }
    fn begin(&self, ctx: &JobContext) -> Result<()> {
        self.inner.begin(ctx)
    }
    async fn committed_positions(&self) -> Result<Option<Vec<Checkpoint>>> {
        self.inner.committed_positions().await
    }
    async fn checkpoint(&self, split: &str) -> Result<Option<Position>> {
        self.inner.checkpoint(split).await
    }
    async fn holds_rows(&self, t: &TablePlan) -> Result<Option<bool>> {
        self.inner.holds_rows(t).await
    }
    async fn set_checkpoints(&self, edits: &[sluice_core::CheckpointEdit]) -> Result<bool> {
        self.inner.set_checkpoints(edits).await
    }
    async fn prepare(&self, t: &[TablePlan]) -> Result<()> {
        self.inner.prepare(t).await
    }
    fn target_types(&self, t: &TablePlan) -> Result<Option<Vec<(String, String)>>> {
        self.inner.target_types(t)
    }
    async fn open(&self, t: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>> {
        self.open_from(t, split, None).await
    }
    async fn open_from(
        &self,
        t: &TablePlan,
        split: &Split,
        resume: Option<&Position>,
    ) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(FaultyWriter {
            inner: Some(self.inner.open_from(t, split, resume).await?),
            split: split.id.clone(),
            faults: self.faults.clone(),
            writes: 0,
        }))
    }
    async fn finish_table(&self, t: &TablePlan) -> Result<()> {
        self.inner.finish_table(t).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

struct FaultyWriter {
    inner: Option<Box<dyn SinkWriter>>,
    split: String,
    faults: Arc<Faults>,
    writes: usize,
}

fn lost() -> Error {
    Error::new(
        ErrorKind::Connection,
        "the connection broke during COMMIT (injected)",
    )
}

#[async_trait]
impl SinkWriter for FaultyWriter {
    async fn write(&mut self, b: RecordBatch) -> Result<()> {
        let index = self.writes;
        self.writes += 1;
        if self.faults.fail_write_of.as_deref() == Some(self.split.as_str())
            && self.faults.fail_write_index.is_none_or(|i| i == index)
            && self.faults.fire()
        {
            return Err(Error::data("a bad row (injected)"));
        }
        self.inner.as_mut().unwrap().write(b).await
    }
    async fn commit(&mut self, p: &Position) -> Result<()> {
        if self.faults.lose_commit_of.as_deref() == Some(self.split.as_str()) && self.faults.fire()
        {
            return Err(lost());
        }
        self.inner.as_mut().unwrap().commit(p).await?;
        let n = self.faults.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(n) == self.faults.stop_after
            && let Some(ctl) = self.faults.ctl.lock().unwrap().as_ref()
        {
            ctl.stop(StopReason::Requested("conformance test".into()));
        }
        if self.faults.lose_answer_of.as_deref() == Some(self.split.as_str()) && self.faults.fire()
        {
            return Err(lost());
        }
        Ok(())
    }
    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.inner.take().unwrap().abort().await
    }
    fn counted_before(&mut self, rows: u64) {
        self.inner.as_mut().unwrap().counted_before(rows)
    }
}

/// Positions in memory, standing in for the state store (the record for sinks without
/// checkpoints of their own).
#[derive(Default)]
struct MemLog(Mutex<Vec<(Position, u64)>>);

#[async_trait]
impl CheckpointLog for MemLog {
    async fn load(&self) -> Result<Vec<(Position, u64)>> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn save(&self, _t: &str, p: &Position, rows: u64) -> Result<()> {
        let mut v = self.0.lock().unwrap();
        v.retain(|(q, _)| q.split != p.split);
        v.push((p.clone(), rows));
        Ok(())
    }
}

type ReadIds = Box<dyn Fn(&str) -> Vec<i64>>;

/// A target: how to build its sink for a fresh target, how to read its ids back.
struct Target {
    name: &'static str,
    sink: serde_json::Value,
    /// The ids in a target table (`conf` unless the scenario writes others).
    read: ReadIds,
    _keep: Box<dyn std::any::Any>,
}

fn sqlite_target() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let db: PathBuf = dir.path().join("out.db");
    let path = db.clone();
    Target {
        name: "sqlite",
        sink: json!({"type": "sqlite", "url": format!("sqlite://{}", db.display()), "write": "append"}),
        read: Box::new(move |table| {
            let c = rusqlite::Connection::open(&path).unwrap();
            let mut st = c
                .prepare(&format!("SELECT id FROM {table} ORDER BY id"))
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }),
        _keep: Box::new(dir),
    }
}

fn jsonl_target() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let root = out.clone();
    Target {
        name: "jsonl",
        sink: json!({"type": "jsonl", "path": out.display().to_string(), "write": "append"}),
        read: Box::new(move |table| {
            let mut ids = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    let name = e.file_name().to_string_lossy().into_owned();
                    if p.is_dir() {
                        if name == table {
                            stack.push(p);
                        }
                    } else if name.ends_with(".jsonl")
                        && !name.starts_with('.')
                        && (d != root || name == format!("{table}.jsonl"))
                    {
                        for line in std::fs::read_to_string(&p).unwrap().lines() {
                            let v: serde_json::Value = serde_json::from_str(line).unwrap();
                            ids.push(v["id"].as_i64().unwrap());
                        }
                    }
                }
            }
            ids.sort();
            ids
        }),
        _keep: Box::new(dir),
    }
}

fn sh(cmd: &mut std::process::Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {} (are the services up? bash scripts/test-services.sh)",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

static DBS: AtomicUsize = AtomicUsize::new(0);

fn psql(db: &str, sql: &str) -> String {
    sh(std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
        ])
        .arg(sql))
}

fn mariadb(db: &str, sql: &str) -> String {
    sh(std::process::Command::new("mariadb")
        .args(["-h127.0.0.1", "-uroot", "-N", "-B"])
        .args((!db.is_empty()).then_some(db))
        .args(["-e", sql]))
}

struct DropDb(String, &'static str);
impl Drop for DropDb {
    fn drop(&mut self) {
        let sql = match self.1 {
            "pg" => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
            _ => format!("DROP DATABASE IF EXISTS {}", self.0),
        };
        let _ = match self.1 {
            "pg" => std::process::Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                ])
                .arg(&sql)
                .output(),
            _ => std::process::Command::new("mariadb")
                .args(["-h127.0.0.1", "-uroot", "-e"])
                .arg(&sql)
                .output(),
        };
    }
}

fn pg_target() -> Target {
    let name = format!(
        "sluice_conf_{}_{}",
        std::process::id(),
        DBS.fetch_add(1, Ordering::SeqCst)
    );
    psql("postgres", &format!("CREATE DATABASE {name}"));
    let db = name.clone();
    Target {
        name: "postgres",
        sink: json!({"type": "postgres", "url": format!("postgres://postgres@127.0.0.1:5432/{name}"), "write": "append"}),
        read: Box::new(move |table| {
            psql(&db, &format!("SELECT id FROM {table} ORDER BY id"))
                .lines()
                .map(|l| l.parse().unwrap())
                .collect()
        }),
        _keep: Box::new(DropDb(name, "pg")),
    }
}

fn mysql_target() -> Target {
    let name = format!(
        "sluice_conf_{}_{}",
        std::process::id(),
        DBS.fetch_add(1, Ordering::SeqCst)
    );
    mariadb("", &format!("CREATE DATABASE {name}"));
    let db = name.clone();
    Target {
        name: "mysql",
        sink: json!({"type": "mysql", "url": format!("mysql://root@127.0.0.1:3306/{name}"), "write": "append"}),
        read: Box::new(move |table| {
            mariadb(&db, &format!("SELECT id FROM {table} ORDER BY id"))
                .lines()
                .map(|l| l.parse().unwrap())
                .collect()
        }),
        _keep: Box::new(DropDb(name, "my")),
    }
}

/// One run of the synthetic job into `target` (the same generation each time, so a run
/// after a failed one resumes it).
async fn run(
    target: &Target,
    faults: Arc<Faults>,
    log: Arc<MemLog>,
) -> (sluice_engine::RunOutcome, Arc<Synthetic>) {
    run_in(target, faults, log, None).await
}

/// [`run`] in streaming mode with a commit at every barrier (every batch).
async fn run_streaming(
    target: &Target,
    faults: Arc<Faults>,
    log: Arc<MemLog>,
) -> (sluice_engine::RunOutcome, Arc<Synthetic>) {
    let every_barrier = Streaming {
        interval: std::time::Duration::ZERO,
        timeout: std::time::Duration::from_secs(30),
    };
    run_in(target, faults, log, Some(every_barrier)).await
}

/// The job every scenario runs: named `conformance`, generation `g1` (so a run after a failed
/// one resumes it), no transforms, quick retries.
fn conformance_spec(
    source: Arc<dyn Source>,
    sink: DynSink,
    log: Arc<MemLog>,
    parallelism: usize,
    streaming: Option<Streaming>,
) -> JobSpec {
    JobSpec {
        name: "conformance".into(),
        parallelism,
        timeout: None,
        source,
        sink,
        transforms: vec![],
        targets: Arc::new(|id| Ok(id.clone())),
        check_tables: Arc::new(|_| Ok(())),
        channel_capacity: 2,
        context: JobContext {
            job: "conformance".into(),
            generation: "g1".into(),
            ..Default::default()
        },
        checkpoints: log,
        bad_records: Arc::new(BadRecordPolicy::default()),
        retry: RetryPolicy {
            first: std::time::Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        streaming,
    }
}

async fn run_in(
    target: &Target,
    faults: Arc<Faults>,
    log: Arc<MemLog>,
    streaming: Option<Streaming>,
) -> (sluice_engine::RunOutcome, Arc<Synthetic>) {
    let config: SinkConfig = serde_json::from_value(target.sink.clone()).unwrap();
    let inner = config.build().unwrap();
    let sink: DynSink = Arc::new(Faulty {
        inner: inner.clone(),
        faults: faults.clone(),
    });
    let source = Arc::new(Synthetic {
        sink: Mutex::new(Some(inner)),
        acks: Mutex::new(Vec::new()),
    });
    let ctl = Arc::new(Controller::new());
    *faults.ctl.lock().unwrap() = Some(ctl.clone());
    let spec = conformance_spec(source.clone(), sink, log, 2, streaming);
    (run_batch(spec, ctl, Progress::new()).await, source)
}

fn targets() -> Vec<Target> {
    vec![sqlite_target(), jsonl_target(), pg_target(), mysql_target()]
}

fn faults(f: impl FnOnce(&mut Faults)) -> Arc<Faults> {
    let mut x = Faults::default();
    f(&mut x);
    Arc::new(x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_clean() {
    for t in targets() {
        let (out, _) = run(&t, faults(|_| {}), Arc::default()).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert_eq!((t.read)("conf"), all_ids(), "{}", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_crash_mid_split_then_resume() {
    for t in targets() {
        let log = Arc::new(MemLog::default());
        let f = faults(|f| f.fail_write_of = Some("conf#4".into()));
        let (out, _) = run(&t, f, log.clone()).await;
        assert_eq!(out.state, RunState::Failed, "{}", t.name);
        let (out, _) = run(&t, faults(|_| {}), log).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert!(
            out.rows_written_earlier() > 0,
            "{}: nothing was kept",
            t.name
        );
        assert_eq!((t.read)("conf"), all_ids(), "{}", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_commit_answer_lost() {
    for t in targets() {
        let f = faults(|f| f.lose_answer_of = Some("conf#2".into()));
        let (out, _) = run(&t, f, Arc::default()).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert_eq!((t.read)("conf"), all_ids(), "{}: each row once", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_commit_lost() {
    for t in targets() {
        let f = faults(|f| f.lose_commit_of = Some("conf#2".into()));
        let (out, _) = run(&t, f, Arc::default()).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert_eq!((t.read)("conf"), all_ids(), "{}: each row once", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_stop_then_resume() {
    for t in targets() {
        let log = Arc::new(MemLog::default());
        let f = faults(|f| f.stop_after = Some(2));
        let (out, _) = run(&t, f, log.clone()).await;
        assert_eq!(out.state, RunState::Stopped, "{}: {:?}", t.name, out.error);
        let (out, _) = run(&t, faults(|_| {}), log).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert!(out.rows_written_earlier() >= 2 * 400, "{}", t.name);
        assert_eq!((t.read)("conf"), all_ids(), "{}", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_acknowledges_only_what_is_committed() {
    for t in targets() {
        let (out, src) = run(&t, faults(|_| {}), Arc::default()).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        let acks = src.acks.lock().unwrap().clone();
        assert_eq!(
            acks.len(),
            SPLITS,
            "{}: one acknowledgement per split",
            t.name
        );
        assert!(
            acks.iter().all(|(_, durable)| *durable),
            "{}: acknowledged before the sink had it: {acks:?}",
            t.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_streaming_commits_at_every_barrier() {
    for t in resumable_targets() {
        let (out, src) = run_streaming(&t, faults(|_| {}), Arc::default()).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert_eq!((t.read)("conf"), all_ids(), "{}", t.name);
        // One commit per batch, and one more that marks each split done; each acknowledged
        // only once the sink held it.
        let acks = src.acks.lock().unwrap().clone();
        assert_eq!(acks.len(), SPLITS * (BATCHES + 1), "{}: {acks:?}", t.name);
        assert!(acks.iter().all(|(_, d)| *d), "{}: {acks:?}", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_edit_checkpoints() {
    // Files keep no checkpoints (the state store's are edited; the server's tests cover it).
    for mut t in [sqlite_target(), pg_target(), mysql_target()] {
        t.sink["write"] = json!("upsert");
        let config: SinkConfig = serde_json::from_value(t.sink.clone()).unwrap();
        let log = Arc::new(MemLog::default());
        let (out, _) = run(&t, faults(|f| f.stop_after = Some(2)), log.clone()).await;
        assert_eq!(out.state, RunState::Stopped, "{}: {:?}", t.name, out.error);

        let sink = config.build().unwrap();
        sink.begin(&JobContext {
            job: "conformance".into(),
            generation: "g1".into(),
            ..Default::default()
        })
        .unwrap();
        let target = TableId::new(["conf"]);
        let guard = sink
            .lock("conformance", std::slice::from_ref(&target))
            .await
            .unwrap();
        let before = sink.committed_positions().await.unwrap().unwrap();
        assert!(before.len() >= 2, "{}: {before:?}", t.name);
        let redo = before[0].position.split.clone();
        let skip = (0..SPLITS)
            .map(|i| format!("conf#{i}"))
            .find(|s| before.iter().all(|c| &c.position.split != s))
            .unwrap();
        let done = Position {
            done: true,
            ..Position::new(skip.clone(), json!(null))
        };
        let edits = [
            sluice_core::CheckpointEdit {
                split: redo.clone(),
                target: target.clone(),
                table: before[0].table.clone(),
                position: None,
                rows: 0,
            },
            sluice_core::CheckpointEdit {
                split: skip.clone(),
                target: target.clone(),
                table: before[0].table.clone(),
                position: Some(done.clone()),
                rows: 0,
            },
        ];
        assert!(sink.set_checkpoints(&edits).await.unwrap(), "{}", t.name);
        let after = sink.committed_positions().await.unwrap().unwrap();
        assert!(
            after.iter().all(|c| c.position.split != redo),
            "{}: {redo} still has a checkpoint: {after:?}",
            t.name
        );
        assert!(
            after.iter().any(|c| c.position == done),
            "{}: {skip} is not done: {after:?}",
            t.name
        );
        assert_eq!(after.len(), before.len(), "{}: {after:?}", t.name);
        drop(guard);
        sink.close().await.unwrap();

        let (out, _) = run(&t, faults(|_| {}), log).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        let i: usize = skip.trim_start_matches("conf#").parse().unwrap();
        let per = (BATCHES * ROWS_PER_BATCH) as i64;
        let skipped = (i as i64 * per)..((i as i64 + 1) * per);
        let expected: Vec<i64> = all_ids()
            .into_iter()
            .filter(|id| !skipped.contains(id))
            .collect();
        assert_eq!((t.read)("conf"), expected, "{}", t.name);
    }
}

/// Targets a split can continue in after a mid-split commit (streaming): databases keep the
/// position with the rows; a file sink names each part after its position and removes, on
/// resume, parts no recorded position covers.
fn resumable_targets() -> Vec<Target> {
    vec![sqlite_target(), jsonl_target(), pg_target(), mysql_target()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_streaming_failure_then_resume_goes_on_after_the_last_commit() {
    for t in resumable_targets() {
        let log = Arc::new(MemLog::default());
        let f = faults(|f| {
            f.fail_write_of = Some("conf#4".into());
            f.fail_write_index = Some(2);
        });
        let (out, _) = run_streaming(&t, f, log.clone()).await;
        assert_eq!(out.state, RunState::Failed, "{}", t.name);
        // The failed split committed two of its batches before the failure.
        let kept: Vec<i64> = (t.read)("conf")
            .into_iter()
            .filter(|id| (1600..2000).contains(id))
            .collect();
        assert_eq!(kept, (1600..1800).collect::<Vec<_>>(), "{}", t.name);
        let (out, _) = run_streaming(&t, faults(|_| {}), log.clone()).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert_eq!((t.read)("conf"), all_ids(), "{}: every row once", t.name);
        // Each split's recorded row count is its total, across both runs.
        let sink = serde_json::from_value::<SinkConfig>(t.sink.clone())
            .unwrap()
            .build()
            .unwrap();
        sink.begin(&JobContext {
            job: "conformance".into(),
            generation: "g1".into(),
            ..Default::default()
        })
        .unwrap();
        // (MySQL learns from the locks which databases hold checkpoints.)
        let _guard = sink
            .lock("conformance", &[TableId::new(["conf"])])
            .await
            .unwrap();
        let counts: Vec<(String, u64)> = match sink.committed_positions().await.unwrap() {
            Some(list) => list
                .into_iter()
                .map(|c| (c.position.split, c.rows))
                .collect(),
            None => log
                .load()
                .await
                .unwrap()
                .into_iter()
                .map(|(p, r)| (p.split, r))
                .collect(),
        };
        assert_eq!(counts.len(), SPLITS, "{}: {counts:?}", t.name);
        let per = (BATCHES * ROWS_PER_BATCH) as u64;
        assert!(
            counts.iter().all(|(_, rows)| *rows == per),
            "{}: {counts:?}",
            t.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_streaming_commit_answer_lost_mid_split() {
    for t in resumable_targets() {
        let f = faults(|f| f.lose_answer_of = Some("conf#3".into()));
        let (out, _) = run_streaming(&t, f, Arc::default()).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert_eq!((t.read)("conf"), all_ids(), "{}: each row once", t.name);
    }
}

/// One split of table `conf` whose events also carry rows of table `conf_b` (as a replication
/// stream carries many tables): every batch of `conf` is followed by the same ids for `conf_b`
/// and a barrier. Fails once, after two barriers, when `fail` is set.
struct TwoTables {
    fail: AtomicBool,
}

#[async_trait]
impl Source for TwoTables {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        Ok(["conf", "conf_b"]
            .iter()
            .map(|n| {
                let mut s = TableSchema::new(TableId::new([*n]), schema());
                s.primary_key = vec!["id".into()];
                SourceTable {
                    schema: s,
                    estimated_rows: None,
                    estimated_bytes: None,
                }
            })
            .collect())
    }
    async fn splits(&self, t: &SourceTable) -> Result<Vec<Split>> {
        if t.schema.id != TableId::new(["conf"]) {
            return Ok(vec![]);
        }
        Ok(vec![Split {
            id: "conf#stream".into(),
            table: t.schema.id.clone(),
            index: 0,
            estimated_rows: None,
            estimated_bytes: None,
            detail: json!({}),
            continues: false,
            start: None,
        }])
    }
    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let first = resume
            .and_then(|p| p.value.as_u64())
            .map_or(0, |b| b as usize + 1);
        for b in first..BATCHES {
            if b == 2 && self.fail.swap(false, Ordering::SeqCst) {
                return Err(Error::data("a bad row (injected)"));
            }
            let ids: Vec<i64> = (b * ROWS_PER_BATCH..(b + 1) * ROWS_PER_BATCH)
                .map(|i| i as i64)
                .collect();
            let notes: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
            let data = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(notes)),
                ],
            )?;
            let events = [
                sluice_core::SourceEvent::Rows {
                    table: TableId::new(["conf"]),
                    data: data.clone(),
                    bytes: 0,
                },
                sluice_core::SourceEvent::Rows {
                    table: TableId::new(["conf_b"]),
                    data,
                    bytes: 0,
                },
                sluice_core::SourceEvent::Barrier(Position::new(split.id.clone(), json!(b))),
            ];
            for e in events {
                if let Err(e) = out.send_event(e).await {
                    return if e.kind() == ErrorKind::Stopped {
                        Ok(())
                    } else {
                        Err(e)
                    };
                }
            }
        }
        Ok(())
    }
}

async fn run_two_tables(
    target: &Target,
    fail: bool,
    log: Arc<MemLog>,
) -> sluice_engine::RunOutcome {
    let config: SinkConfig = serde_json::from_value(target.sink.clone()).unwrap();
    let source = Arc::new(TwoTables {
        fail: AtomicBool::new(fail),
    });
    let every_barrier = Streaming {
        interval: std::time::Duration::ZERO,
        timeout: std::time::Duration::from_secs(30),
    };
    let spec = conformance_spec(source, config.build().unwrap(), log, 1, Some(every_barrier));
    run_batch(spec, Arc::new(Controller::new()), Progress::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_multi_table_split() {
    let want: Vec<i64> = (0..(BATCHES * ROWS_PER_BATCH) as i64).collect();
    for t in [sqlite_target(), pg_target(), mysql_target()] {
        let log = Arc::new(MemLog::default());
        let out = run_two_tables(&t, true, log.clone()).await;
        assert_eq!(out.state, RunState::Failed, "{}", t.name);
        // Two barriers committed both tables' rows together.
        let half: Vec<i64> = (0..(2 * ROWS_PER_BATCH) as i64).collect();
        assert_eq!((t.read)("conf"), half, "{}", t.name);
        assert_eq!((t.read)("conf_b"), half, "{}", t.name);
        let out = run_two_tables(&t, false, log).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert_eq!((t.read)("conf"), want, "{}", t.name);
        assert_eq!((t.read)("conf_b"), want, "{}", t.name);
    }
}

/// Change events of table `conf` (`id`, `note`, `_sluice_op`), one batch per step.
struct Changes;

fn changes_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
        Field::new(sluice_core::batch::OP_COLUMN, DataType::Utf8, false),
    ]))
}

/// `(id, note, op)` per batch: 1 inserted then deleted, 2 inserted then updated twice, 3
/// deleted then inserted again, 4 inserted and deleted in one batch, 5 only inserted.
const CHANGES: &[&[(i64, &str, &str)]] = &[
    &[
        (1, "a", "I"),
        (2, "b", "I"),
        (3, "c", "I"),
        (4, "d", "I"),
        (4, "d", "D"),
    ],
    &[(2, "b2", "U"), (1, "a", "D"), (3, "c", "D")],
    &[(3, "c3", "I"), (2, "b3", "U"), (5, "e", "R")],
];

#[async_trait]
impl Source for Changes {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let mut s = TableSchema::new(TableId::new(["conf"]), changes_schema());
        s.primary_key = vec!["id".into()];
        Ok(vec![SourceTable {
            schema: s,
            estimated_rows: None,
            estimated_bytes: None,
        }])
    }
    async fn splits(&self, t: &SourceTable) -> Result<Vec<Split>> {
        Ok(vec![Split {
            id: "conf#changes".into(),
            table: t.schema.id.clone(),
            index: 0,
            estimated_rows: None,
            estimated_bytes: None,
            detail: json!({}),
            continues: false,
            start: None,
        }])
    }
    async fn read(&self, split: Split, _resume: Option<Position>, out: BatchSender) -> Result<()> {
        for (b, rows) in CHANGES.iter().enumerate() {
            let data = RecordBatch::try_new(
                changes_schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                ],
            )?;
            out.send(SourceBatch {
                data,
                position: Position::new(split.id.clone(), json!(b)),
                bytes: 0,
            })
            .await?;
        }
        Ok(())
    }
}

async fn run_changes(target: &Target, streaming: Option<Streaming>) -> sluice_engine::RunOutcome {
    let mut sink = target.sink.clone();
    sink["write"] = json!("upsert");
    let config: SinkConfig = serde_json::from_value(sink).unwrap();
    let sink = config.build().unwrap();
    let spec = conformance_spec(Arc::new(Changes), sink, Arc::default(), 1, streaming);
    run_batch(spec, Arc::new(Controller::new()), Progress::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_apply_changes() {
    let every_barrier = Some(Streaming {
        interval: std::time::Duration::ZERO,
        timeout: std::time::Duration::from_secs(30),
    });
    // All events in one commit (batch mode), then each batch its own commit (streaming).
    for streaming in [None, every_barrier] {
        let t = pg_target();
        let out = run_changes(&t, streaming).await;
        assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
        let db = t.sink["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let rows = psql(&db, "SELECT id, note FROM conf ORDER BY id");
        assert_eq!(
            rows.trim(),
            "2|b3\n3|c3\n5|e",
            "streaming: {}",
            streaming.is_some()
        );
        let cols = psql(
            &db,
            "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM \
             information_schema.columns WHERE table_name = 'conf'",
        );
        assert_eq!(
            cols.trim(),
            "id,note",
            "the operation is applied, not stored"
        );
    }
    // SQLite applies each event in order.
    for streaming in [None, every_barrier] {
        let t = sqlite_target();
        let out = run_changes(&t, streaming).await;
        assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
        assert_eq!(
            (t.read)("conf"),
            vec![2, 3, 5],
            "streaming: {}",
            streaming.is_some()
        );
        let path = t.sink["url"]
            .as_str()
            .unwrap()
            .trim_start_matches("sqlite://")
            .to_string();
        let c = rusqlite::Connection::open(&path).unwrap();
        let notes: Vec<String> = c
            .prepare("SELECT note FROM conf ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(notes, ["b3", "c3", "e"]);
        let cols: Vec<String> = c
            .prepare("SELECT name FROM pragma_table_info('conf')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(cols, ["id", "note"], "the operation is applied, not stored");
    }
    // MySQL keeps the last event of each key: deletes by key, the rest upserted.
    for streaming in [None, every_barrier] {
        let t = mysql_target();
        let out = run_changes(&t, streaming).await;
        assert_eq!(out.state, RunState::Finished, "{:?}", out.error);
        let db = t.sink["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let rows = mariadb(&db, "SELECT CONCAT(id, '|', note) FROM conf ORDER BY id");
        assert_eq!(
            rows.trim(),
            "2|b3\n3|c3\n5|e",
            "streaming: {}",
            streaming.is_some()
        );
        let cols = mariadb(
            &db,
            &format!(
                "SELECT GROUP_CONCAT(column_name ORDER BY ordinal_position) FROM \
                 information_schema.columns WHERE table_schema = '{db}' AND table_name = 'conf'"
            ),
        );
        assert_eq!(
            cols.trim(),
            "id,note",
            "the operation is applied, not stored"
        );
    }
}

/// Change events with a TRUNCATE between them: ids 1-3 inserted and committed, then in one
/// unit 4 inserted, the table truncated, 5 and 6 inserted (and, with `fail`, a write error
/// after that, so the unit rolls back whole).
struct Truncating {
    fail: bool,
}

fn changes_batch(rows: &[(i64, &str, &str)]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        changes_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )?)
}

#[async_trait]
impl Source for Truncating {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        Changes.tables().await
    }
    async fn splits(&self, t: &SourceTable) -> Result<Vec<Split>> {
        Changes.splits(t).await
    }
    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        use sluice_core::SourceEvent as E;
        let conf = TableId::new(["conf"]);
        if resume.is_none() {
            let data = changes_batch(&[(1, "a", "I"), (2, "b", "I"), (3, "c", "I")])?;
            out.send_event(E::Rows {
                table: conf.clone(),
                data,
                bytes: 0,
            })
            .await?;
            out.send_event(E::Barrier(Position::new(split.id.clone(), json!(1))))
                .await?;
        }
        let data = changes_batch(&[(4, "d", "I")])?;
        out.send_event(E::Rows {
            table: conf.clone(),
            data,
            bytes: 0,
        })
        .await?;
        out.send_event(E::Truncate(conf.clone())).await?;
        let data = changes_batch(&[(5, "e", "I"), (6, "f", "I")])?;
        out.send_event(E::Rows {
            table: conf.clone(),
            data,
            bytes: 0,
        })
        .await?;
        if self.fail {
            return Err(Error::data(
                "the source broke after the TRUNCATE (injected)",
            ));
        }
        out.send_event(E::Barrier(Position::new(split.id.clone(), json!(2))))
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_truncate_in_a_change_stream() {
    let every_barrier = Some(Streaming {
        interval: std::time::Duration::ZERO,
        timeout: std::time::Duration::from_secs(30),
    });
    for t in [sqlite_target(), pg_target(), mysql_target()] {
        let mut sink = t.sink.clone();
        sink["write"] = json!("upsert");
        let config: SinkConfig = serde_json::from_value(sink).unwrap();
        let log = Arc::new(MemLog::default());
        // A failure after the TRUNCATE rolls the unit back whole: the committed rows stay.
        let spec = conformance_spec(
            Arc::new(Truncating { fail: true }),
            config.build().unwrap(),
            log.clone(),
            1,
            every_barrier,
        );
        let out = run_batch(spec, Arc::new(Controller::new()), Progress::new()).await;
        assert_eq!(out.state, RunState::Failed, "{}", t.name);
        assert_eq!((t.read)("conf"), vec![1, 2, 3], "{}", t.name);
        // The resume applies it: only the rows after it remain.
        let spec = conformance_spec(
            Arc::new(Truncating { fail: false }),
            config.build().unwrap(),
            log,
            1,
            every_barrier,
        );
        let out = run_batch(spec, Arc::new(Controller::new()), Progress::new()).await;
        assert_eq!(out.state, RunState::Finished, "{}: {:?}", t.name, out.error);
        assert_eq!((t.read)("conf"), vec![5, 6], "{}", t.name);
    }
}
