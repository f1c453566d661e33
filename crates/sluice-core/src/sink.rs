//! The [`Sink`] trait: how the engine writes a system.
//!
//! ## Contract
//!
//! 1. [`Sink::prepare`] is called once with every table the job will write, before any data
//!    flows. It checks the target (an existing table whose schema cannot take the source's is
//!    an error naming table, column and both types), creates missing tables when
//!    `create_tables` allows, and readies write modes (a staging table for `overwrite`).
//! 2. [`Sink::open`] returns a [`SinkWriter`] for one split. Writers of different splits may
//!    run at the same time on different tasks; a sink that cannot write concurrently
//!    serializes internally.
//! 3. A writer receives batches in the split's order through [`SinkWriter::write`]. Nothing
//!    written is visible or durable until [`SinkWriter::commit`] returns.
//! 4. **Durable** means: after `commit(position)` returns, the data written so far survives a
//!    crash of Sluice and of the machine (database transaction committed; file fsynced and
//!    renamed to its final name). The engine records `position` only after that. A sink that
//!    can, stores the position in the same transaction (`_sluice_checkpoints`).
//! 5. [`SinkWriter::abort`] discards everything not yet committed (rolls back, deletes
//!    temporary files). It is called when the job fails or stops in the middle of a split.
//! 6. [`Sink::finish_table`] is called after every split of a table has committed, in a
//!    successful run only (swap a staging table in, write a manifest). It must be idempotent:
//!    after a crash it may be called again for a table it already finished.
//! 8. Checkpoints: [`Sink::begin`] names the job and its generation before `prepare`. A sink
//!    that can stores each split's position in the same transaction as the split's rows
//!    (`_sluice_checkpoints`) and reports them through [`Sink::committed_positions`].
//! 7. [`Sink::close`] is called last, in every outcome.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::batch::{Position, Split};
use crate::error::Result;
use crate::schema::{TableId, TableSchema};

/// How a sink treats rows already in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add rows to what is there (the default).
    #[default]
    Append,
    /// Replace the target's content; readers never see it empty or half written.
    Overwrite,
    /// Insert or update by primary key.
    Upsert,
}

impl WriteMode {
    /// The values accepted in job files, for messages.
    pub const ACCEPTED: &'static str = "append, overwrite, upsert";
}

/// One table as the sink will write it.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// The target's name (after `table_map`).
    pub target: TableId,
    /// The schema of the rows the sink receives (after transforms), with the source's primary
    /// key (renamed columns followed).
    pub schema: TableSchema,
    /// How many splits the table has (a file sink may name its output after it).
    pub splits: usize,
}

/// Which job and which generation of it is writing. A generation starts when a job runs from
/// scratch and lasts through every resume until the job finishes; checkpoints of another
/// generation are stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    /// The job's name.
    pub job: String,
    /// Unique per generation (e.g. `"1763774400123-4242"`); never reused.
    pub generation: String,
}

/// Writes one system. See the module docs for the contract.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Tells the sink which job and generation it writes for. Called once, before
    /// [`prepare`](Self::prepare). Sinks that store checkpoints or name files after the
    /// generation keep it.
    fn begin(&self, _ctx: &JobContext) -> Result<()> {
        Ok(())
    }

    /// Positions this sink committed together with the data, for the current job and
    /// generation (see [`begin`](Self::begin)), one per split. Called after
    /// [`prepare`](Self::prepare). `None` means the sink keeps no checkpoints, and the engine
    /// relies on its state store instead; `Some` is authoritative: a split is resumed from the
    /// position the sink reports, or from the start if it reports none.
    async fn committed_positions(&self) -> Result<Option<Vec<Position>>> {
        Ok(None)
    }

    /// Checks and prepares the target for these tables. Moves no data.
    async fn prepare(&self, tables: &[TablePlan]) -> Result<()>;

    /// The target column types this sink would use for `table`, as `(column, type)` in the
    /// target's own vocabulary, without I/O. `sluice validate` prints them. A source type the
    /// target cannot hold is an error naming table, column and type, with the override that
    /// makes it go (e.g. a cast transform to text). `None` when the sink has no column types
    /// (CSV, JSON Lines).
    fn target_types(&self, _table: &TablePlan) -> Result<Option<Vec<(String, String)>>> {
        Ok(None)
    }

    /// A writer for one split of `table`.
    async fn open(&self, table: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>>;

    /// Every split of `table` has committed; make the table final.
    async fn finish_table(&self, _table: &TablePlan) -> Result<()> {
        Ok(())
    }

    /// Called last, whatever the outcome.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// Writes the batches of one split. Not shared between tasks.
#[async_trait]
pub trait SinkWriter: Send {
    /// Buffers or writes `batch`; nothing becomes visible before [`commit`](Self::commit).
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// Makes everything written so far durable, together with `position` where the sink can
    /// store it. Later writes start a new unit (transaction, part file).
    async fn commit(&mut self, position: &Position) -> Result<()>;

    /// Discards everything not committed.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// A shared, type-erased sink.
pub type DynSink = std::sync::Arc<dyn Sink>;
