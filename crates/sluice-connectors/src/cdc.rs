//! What every change-capture source shares (PostgreSQL's logical replication, MySQL/MariaDB's
//! binary log): the `snapshot` option, the snapshot's progress inside a stream position, and
//! the snapshot read itself.
//!
//! **The handover (both sources).** The stream's start position is taken *before* the
//! snapshot is read, so the stream starts at or before the snapshot's moment; every change
//! after it is applied again over the snapshot's rows, in commit order, as upserts and deletes
//! by key with full row images. A change the snapshot already shows is rewritten with the same
//! or an older row and then brought up to date by the changes after it: once the stream has
//! passed the snapshot's moment, the target equals the source (it may show a row's older state
//! for a moment during that catch-up; it never ends wrong). A snapshot interrupted at any
//! point resumes at its last committed batch, in a new snapshot, also after the start: the
//! same argument holds. No lock is taken.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::source::{BatchSender, Source, SourceEvent};
use sluice_core::{Error, Position, Result, Split, TableId};
use tokio::sync::mpsc;
use tracing::info;

/// `snapshot = …`: what is read before the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Every row of every table first, then the changes (the default).
    #[default]
    Initial,
    /// Only changes from the capture's start on.
    Never,
    /// The snapshot only; the job ends after it (a later run streams from the capture's
    /// start).
    InitialOnly,
}

/// How far the snapshot got: part of a change-capture position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SnapshotProgress {
    /// Snapshot splits read completely.
    #[serde(default)]
    pub done: Vec<String>,
    /// The split being read and its last committed position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<(String, Value)>,
}

/// `data` with an operation column of `op` added, as `schema` (the table's columns, then
/// the operation).
pub(crate) fn with_op(data: &RecordBatch, schema: &SchemaRef, op: &str) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = data.columns().to_vec();
    cols.push(Arc::new(StringArray::from(vec![op; data.num_rows()])));
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Reads the snapshot's splits not done yet with `reader` (a batch source of the same
/// tables), sending each batch as rows of operation `R` followed by a barrier at the position
/// `position` makes of the progress. `schemas` gives each table's schema with the operation
/// column. `Ok(false)` when the job stops meanwhile; on `Ok(true)` every split is done.
pub(crate) async fn read_snapshot(
    reader: &dyn Source,
    splits: &[Split],
    schemas: &HashMap<TableId, SchemaRef>,
    progress: &mut SnapshotProgress,
    out: &BatchSender,
    position: &(dyn Fn(&SnapshotProgress) -> Result<Position> + Sync),
) -> Result<bool> {
    for s in splits {
        if progress.done.contains(&s.id) {
            continue;
        }
        let schema = schemas.get(&s.table).cloned().ok_or_else(|| {
            Error::internal(format!("snapshot split {} of an unknown table", s.id))
        })?;
        let resume_at = match &progress.at {
            Some((id, v)) if id == &s.id => Some(Position::new(s.id.clone(), v.clone())),
            _ => None,
        };
        if resume_at.is_none() {
            info!(table = %s.table, split = %s.id, "Snapshot: reading a chunk.");
        }
        let (tx, mut rx) = mpsc::channel(2);
        let inner = BatchSender::new(tx, out.stop_token().child_token());
        let reading = reader.read(s.clone(), resume_at, inner);
        tokio::pin!(reading);
        let mut read_result = None;
        loop {
            tokio::select! {
                r = &mut reading, if read_result.is_none() => read_result = Some(r),
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    let SourceEvent::Batch(b) = ev else {
                        return Err(Error::internal("snapshot read sent a non-batch event"));
                    };
                    let data = with_op(&b.data, &schema, "R")?;
                    progress.at = Some((s.id.clone(), b.position.value.clone()));
                    if out.send_event(SourceEvent::Rows { table: s.table.clone(), data, bytes: b.bytes }).await.is_err()
                        || out.send_event(SourceEvent::Barrier(position(progress)?)).await.is_err()
                    {
                        return Ok(false);
                    }
                }
            }
        }
        match read_result {
            Some(r) => r?,
            None => reading.await?,
        }
        if out.is_stopping() {
            return Ok(false);
        }
        progress.done.push(s.id.clone());
        progress.at = None;
        if out
            .send_event(SourceEvent::Barrier(position(progress)?))
            .await
            .is_err()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The detail of a capture's one split: the tables captured and the snapshot's splits
/// (planned once, kept in the persisted plan).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CdcDetail {
    pub tables: Vec<String>,
    pub snapshot: Vec<Split>,
}

impl CdcDetail {
    /// The capture's one split, `id`, planned under the first of `captured` (every other
    /// table gets none): with `snapshot`, `reader`'s splits of every table.
    pub(crate) async fn plan(
        id: String,
        captured: &[TableId],
        table: &sluice_core::source::SourceTable,
        reader: &dyn Source,
        snapshot: bool,
    ) -> Result<Vec<Split>> {
        let Some(first) = captured.iter().min() else {
            return Ok(Vec::new());
        };
        if &table.schema.id != first {
            return Ok(Vec::new());
        }
        let mut splits = Vec::new();
        if snapshot {
            for t in reader.tables().await? {
                splits.extend(reader.splits(&t).await?);
            }
        }
        let mut tables: Vec<String> = captured.iter().map(|t| t.to_string()).collect();
        tables.sort();
        let detail = CdcDetail {
            tables,
            snapshot: splits,
        };
        Ok(vec![Split {
            id,
            table: first.clone(),
            index: 0,
            estimated_rows: None,
            estimated_bytes: None,
            detail: serde_json::to_value(&detail)
                .map_err(|e| Error::internal(format!("cdc split detail: {e}")))?,
            continues: false,
            start: None,
        }])
    }

    /// The detail of `split`, and its resume position read as `P`.
    pub(crate) fn read<P: serde::de::DeserializeOwned>(
        split: &Split,
        resume: Option<&Position>,
    ) -> Result<(CdcDetail, Option<P>)> {
        let detail = serde_json::from_value(split.detail.clone())
            .map_err(|e| Error::internal(format!("cdc split detail: {e}")))?;
        let resume = resume
            .map(|p| {
                serde_json::from_value(p.value.clone()).map_err(|e| {
                    Error::internal(format!("unreadable change-capture position: {e}"))
                })
            })
            .transpose()?;
        Ok((detail, resume))
    }
}

/// The source transactions sent and not yet committed by the sink, oldest first, each with
/// its position (ordered as the log) and the unix µs of its source commit: a checkpoint's lag
/// is its oldest transaction's.
pub(crate) struct Unacked<K> {
    job: String,
    queue: std::sync::Mutex<std::collections::VecDeque<(K, i64)>>,
}

impl<K: PartialOrd> Unacked<K> {
    pub(crate) fn new(job: &str) -> Self {
        Unacked {
            job: job.to_string(),
            queue: Default::default(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(K, i64)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transaction ending at `at`, committed in the source at `micros`, was sent.
    pub(crate) fn sent(&self, at: K, micros: i64) {
        self.queue().push_back((at, micros));
    }

    /// A new stream sends again what an earlier one sent and never saw committed.
    pub(crate) fn clear(&self) {
        self.queue().clear();
    }

    /// The sink committed up to `at`: the lag and confirmed-position metrics are set.
    pub(crate) fn committed(&self, at: &K, confirmed: f64) {
        let oldest = {
            let mut q = self.queue();
            let mut oldest = None;
            while q.front().is_some_and(|(k, _)| k <= at) {
                let (_, t) = q.pop_front().expect("front checked");
                oldest.get_or_insert(t);
            }
            oldest
        };
        let now = chrono::Utc::now().timestamp_micros();
        let lag = oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1e6);
        use sluice_core::metrics::{
            REPLICATION_CONFIRMED_POSITION, REPLICATION_LAG_SECONDS, labels,
        };
        metrics::gauge!(REPLICATION_LAG_SECONDS, labels::JOB => self.job.clone()).set(lag);
        metrics::gauge!(REPLICATION_CONFIRMED_POSITION, labels::JOB => self.job.clone())
            .set(confirmed);
    }
}
