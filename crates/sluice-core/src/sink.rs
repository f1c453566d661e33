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
//! 3. A writer receives batches in the split's order through [`SinkWriter::write`] (and, for a
//!    split spanning several tables, rows of the others through [`SinkWriter::write_table`], in
//!    the same unit). Nothing written is visible or durable until [`SinkWriter::commit`]
//!    returns. A writer may commit many times (streaming mode commits every
//!    `checkpoint_interval`); each commit covers what was written since the previous one.
//! 4. **Durable** means: after `commit(position)` returns, the data written so far survives a
//!    crash of Sluice and of the machine (database transaction committed; file fsynced and
//!    renamed to its final name). The engine records `position` only after that. A sink that
//!    can, stores the position in the same transaction (`_sluice_checkpoints`).
//! 5. [`SinkWriter::abort`] discards everything not yet committed (rolls back, deletes
//!    temporary files). It is called when the job fails or stops in the middle of a split.
//! 6. [`Sink::finish_table`] is called after every split of a table has committed, in a
//!    successful run only (swap a staging table in, write a manifest). It must be idempotent:
//!    after a crash it may be called again for a table it already finished.
//! 7. [`Sink::close`] is called last, in every outcome.
//!
//! ## What a sink remembers (databases)
//!
//! A sink that can keeps the truth about a job in the target itself, so that losing the
//! local state directory, or running the job from another one, never doubles or loses rows:
//!
//! * [`Sink::load_generation`] / [`Sink::save_generation`]: the job's current *generation*
//!   (one logical copy, from a from-scratch start to the run that finishes) with its
//!   manifest — what the plan depends on and every split with its bounds — in `_sluice_jobs`.
//! * [`Sink::begin`] names the job and generation; each writer stores its split's position
//!   (and the rows it wrote) in the same transaction as the rows (`_sluice_checkpoints`);
//!   [`Sink::committed_positions`] reports them, [`Sink::checkpoint`] answers for one split
//!   when a `COMMIT` failed and it is unknown whether it landed.
//! * [`Sink::lock`] takes a lock in the target per job and per target table (an advisory
//!   lock, `GET_LOCK`, a lock file), so two processes never write the same job or table.
//! * [`Sink::holds_rows`] tells whether a table still holds rows, so checkpoints of a table
//!   emptied since (truncated, dropped and re-created) are not trusted.
//!
//! A sink that cannot (files) returns `None` from these, and the engine relies on the local
//! state store instead.

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

    /// The name a job file gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Append => "append",
            WriteMode::Overwrite => "overwrite",
            WriteMode::Upsert => "upsert",
        }
    }
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    /// The job's name.
    pub job: String,
    /// Unique per generation (e.g. `"1763774400123-4242"`); never reused.
    pub generation: String,
    /// Streaming mode: a split may commit many times and continue after a resume (the engine
    /// sets it; a file sink names its parts after each commit's position).
    #[serde(default)]
    pub streaming: bool,
}

/// Where a sink keeps the [`JobContext`] given to [`Sink::begin`], which may be called again
/// (with another generation) before `prepare`.
#[derive(Debug, Default)]
pub struct JobSlot(std::sync::RwLock<Option<JobContext>>);

impl JobSlot {
    /// Replaces the context.
    pub fn set(&self, ctx: &JobContext) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(ctx.clone());
    }
    /// The context (empty names before `begin`).
    pub fn get(&self) -> JobContext {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// A split's committed position, as a sink that keeps checkpoints reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The position (`done` when the split is complete).
    pub position: Position,
    /// Rows the split wrote, all its commits together.
    pub rows: u64,
    /// The target table the rows went to, as the sink names it (`public.orders`).
    pub table: String,
}

/// An operator's edit of one split's committed position (the REST API's offsets PATCH).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointEdit {
    /// The split.
    pub split: String,
    /// The target table its rows go to.
    pub target: TableId,
    /// The table's name as the checkpoint row stores it ([`Checkpoint::table`] where the
    /// split has one, else `target` printed).
    pub table: String,
    /// The new position (`done` marks the split complete); `None` forgets the split's
    /// checkpoint, so it is read again from its start.
    pub position: Option<Position>,
    /// Rows the split counts as written with the new position.
    pub rows: u64,
}

/// A job's generation as the target remembers it (`_sluice_jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// The generation id (see [`JobContext::generation`]).
    pub generation: String,
    /// Whether a run of it finished.
    pub finished: bool,
    /// What the plan depends on and the plan itself, as the job runner wrote it. Opaque to
    /// sinks, which store it verbatim.
    pub manifest: serde_json::Value,
}

/// Held while a job writes; dropping it releases the sink's locks.
pub type SinkLockGuard = Box<dyn std::any::Any + Send + Sync>;

/// Writes one system. See the module docs for the contract.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Whether this sink keeps generations and checkpoints in the target (databases). When it
    /// does, what it reports is authoritative; when it does not, the engine relies on the
    /// local state store. Pure: no I/O.
    fn keeps_checkpoints(&self) -> bool {
        false
    }

    /// Takes the target-side locks of `job` and of each of `targets`, or fails (naming who
    /// holds them, where the target can tell) if another process holds one. Called first,
    /// before [`load_generation`](Self::load_generation); the locks last until the guard is
    /// dropped. `None`: the sink has no locks of its own (the state directory's lock applies).
    async fn lock(&self, _job: &str, _targets: &[TableId]) -> Result<Option<SinkLockGuard>> {
        Ok(None)
    }

    /// The job's current generation as the target remembers it, if any.
    async fn load_generation(&self, _job: &str) -> Result<Option<GenerationRecord>> {
        Ok(None)
    }

    /// Records the job's generation (a new one replaces the old; the same one is updated, e.g.
    /// when it finishes). Durable when it returns.
    async fn save_generation(&self, _job: &str, _record: &GenerationRecord) -> Result<()> {
        Ok(())
    }

    /// Tells the sink which job and generation it writes for. Called before
    /// [`committed_positions`](Self::committed_positions) and [`prepare`](Self::prepare), and
    /// possibly again with another generation (the last call counts). Sinks that store
    /// checkpoints or name files after the generation keep it (see [`JobSlot`]).
    fn begin(&self, _ctx: &JobContext) -> Result<()> {
        Ok(())
    }

    /// Positions this sink committed together with the data, for the current job and
    /// generation (see [`begin`](Self::begin)), one per split. Called after
    /// [`prepare`](Self::prepare). `None` means the sink keeps no checkpoints, and the engine
    /// relies on its state store instead; `Some` is authoritative: a split is resumed from the
    /// position the sink reports, or from the start if it reports none.
    async fn committed_positions(&self) -> Result<Option<Vec<Checkpoint>>> {
        Ok(None)
    }

    /// The committed position of one split of the current generation, asked when a writer's
    /// `commit` failed and it is unknown whether the `COMMIT` landed before the connection
    /// broke. `Ok(None)`: not committed (or the sink keeps no checkpoints: its commits are
    /// all-or-nothing locally, like a rename).
    async fn checkpoint(&self, _split: &str) -> Result<Option<Position>> {
        Ok(None)
    }

    /// Applies `edits` to the committed positions of the current generation (see
    /// [`begin`](Self::begin)) in one transaction: all or none. The caller holds the job's
    /// locks ([`lock`](Self::lock)) and has checked that the edits cannot double rows. Returns
    /// `false` when the sink keeps no checkpoints (the caller edits the state store's).
    async fn set_checkpoints(&self, _edits: &[CheckpointEdit]) -> Result<bool> {
        Ok(false)
    }

    /// Whether the table `table` is written to (its stage, for `overwrite`) holds any row.
    /// Called on resume for tables this generation committed rows to: an empty one was
    /// truncated or re-created since, and its checkpoints no longer describe it. `None`: the
    /// sink cannot tell.
    async fn holds_rows(&self, _table: &TablePlan) -> Result<Option<bool>> {
        Ok(None)
    }

    /// Checks that the target can take these tables, without changing anything: it answers,
    /// and the job may create or write each table (and its checkpoint table). Called by
    /// `sluice validate` (and the REST validate endpoint). An error names the table and the
    /// privilege or setting that is missing, and how to fix it.
    async fn check(&self, _tables: &[TablePlan]) -> Result<()> {
        Ok(())
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

    /// [`open`](Self::open) for a split that goes on after `resume`, its last commit as the
    /// engine recorded it (`None`: from its start). A sink that keeps no checkpoints of its
    /// own (files) removes here what a crash left committed after that record.
    async fn open_from(
        &self,
        table: &TablePlan,
        split: &Split,
        _resume: Option<&Position>,
    ) -> Result<Box<dyn SinkWriter>> {
        self.open(table, split).await
    }

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

    /// Rows of `table`, another table of this writer's split (a replication stream or a queue
    /// partition carries many), written in the same unit as the split's own rows, so one
    /// commit covers them all. A sink that cannot refuses (the default).
    async fn write_table(&mut self, table: &TablePlan, _batch: RecordBatch) -> Result<()> {
        Err(crate::Error::schema(format!(
            "this sink writes one table per split and cannot take rows of {} in the same \
             transaction",
            table.target
        ))
        .with_hint("write this source to a sink that takes several tables per split"))
    }

    /// Removes every row of `table` in the writer's unit (a source `TRUNCATE` in a change
    /// stream), after what was written before and before what is written after; durable
    /// with the next commit. A sink that cannot refuses (the default), failing the run
    /// before anything of the unit commits.
    async fn truncate(&mut self, table: &TablePlan) -> Result<()> {
        Err(crate::Error::schema(format!(
            "the source emptied table {} (TRUNCATE), and this sink cannot apply that",
            table.target
        ))
        .with_hint("empty the target table by hand, then start the job from scratch"))
    }

    /// `table`'s schema changed in the middle of the split: rows written after this call are in
    /// `table.schema`'s new shape. A sink that can follows it (ALTER TABLE in the same
    /// transaction); one that cannot refuses (the default), which fails the run before any row
    /// of the new shape is written.
    async fn schema_changed(&mut self, table: &TablePlan) -> Result<()> {
        Err(crate::Error::schema(format!(
            "the source's table changed shape while the job ran, and this sink cannot follow: \
             {} now has columns ({})",
            table.target,
            table
                .schema
                .arrow
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_hint("change the target table to match, then run the job again; it resumes"))
    }

    /// Discards everything not committed.
    async fn abort(self: Box<Self>) -> Result<()>;

    /// The split committed `rows` rows before this writer opened (it goes on after a resume
    /// position): a sink that stores a row count with its checkpoints counts on from there,
    /// so the count stays the split's total across runs. Called right after opening.
    fn counted_before(&mut self, _rows: u64) {}
}

/// A shared, type-erased sink.
pub type DynSink = std::sync::Arc<dyn Sink>;
