//! What flows through a job: Arrow batches tagged with where they came from.
//!
//! A source divides its work into [`Split`]s (a file, a key range of a table, a partition,
//! a replication stream). Every batch a split produces carries the [`Position`] *after* its
//! last row, so once the sink has made the batch durable the engine can record that position
//! and a later run can resume right after it. Positions are opaque to the engine: only the
//! source that made one interprets it.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::schema::TableId;

/// Name of the operation column change-data-capture batches will carry (`"I"`, `"U"`, `"D"`).
/// Batch-mode batches have no such column: every row is an insert.
pub const OP_COLUMN: &str = "_sluice_op";

/// One unit of a source's work, read independently of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Stable across runs for the same job and input: `"main.orders#3"`. Checkpoints are keyed
    /// by it.
    pub id: String,
    /// The table this split belongs to.
    pub table: TableId,
    /// Index of this split within its table (0-based).
    pub index: usize,
    /// Estimated rows, if the source knows (for progress and ETA).
    pub estimated_rows: Option<u64>,
    /// Estimated input bytes, if the source knows (for progress and ETA).
    pub estimated_bytes: Option<u64>,
    /// Source-specific description (a file path, a key range). Only the source reads it; it
    /// must hold everything needed to read the split, because a resumed generation reads the
    /// splits persisted when it started, not ones planned anew.
    pub detail: serde_json::Value,
    /// Reads only what is new since the previous generation's final position of the split
    /// with the same id (`read = "incremental"`): the job runner carries that position over
    /// into [`start`](Self::start) when a new generation starts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
    /// The position value the split starts after (carried over for a continuing split);
    /// `None`: from its beginning. Read like a resume position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<serde_json::Value>,
}

/// Where a split stands after some batch: enough for its source to continue from there.
///
/// Opaque to everyone but the source that produced it (a row offset for a file, the last key
/// for a table chunk, an LSN for a replication stream). Serialized as JSON in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The split this position belongs to.
    pub split: String,
    /// Source-specific position.
    pub value: serde_json::Value,
    /// Set by the engine on the position that completes its split: the split needs no more
    /// reading. Sources ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

impl Position {
    /// A position for `split`.
    pub fn new(split: impl Into<String>, value: serde_json::Value) -> Self {
        Position {
            split: split.into(),
            value,
            done: false,
        }
    }
}

/// A connector's typed split detail or position, converted to and from its persisted JSON at
/// the boundary (manifests and checkpoint tables hold it, so each connector pins the form with
/// golden tests). `impl Persisted for MySplit {}` is all a type needs.
pub trait Persisted: Serialize + serde::de::DeserializeOwned {
    /// The persisted form.
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a typed split detail or position serializes")
    }

    /// A value of split `split` read back (a position's value, a detail); a form this version
    /// cannot read is a config error naming the split.
    fn from_value(split: &str, value: &serde_json::Value) -> crate::Result<Self> {
        serde_json::from_value(value.clone()).map_err(|e| {
            crate::Error::config(format!(
                "split {split}: the saved value {value} does not fit it (this version, or this \
                 split, reads it otherwise): {e}"
            ))
            .with_hint("run the job with --from-scratch")
        })
    }

    /// `split`'s detail, read back.
    fn from_detail(split: &Split) -> crate::Result<Self> {
        Self::from_value(&split.id, &split.detail)
    }
}

/// A batch of rows of one table, with the position after its last row.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The table (as named by the source).
    pub table: Arc<TableId>,
    /// The rows. Column order and types follow the table's schema at this stage.
    pub data: RecordBatch,
    /// The split's position after the last row of `data`.
    pub position: Position,
    /// Input bytes this batch consumed, for progress (0 if unknown).
    pub bytes: u64,
}

impl Batch {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.data.num_rows()
    }
}
