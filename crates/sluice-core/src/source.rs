//! The [`Source`] trait: how the engine reads a system.
//!
//! ## Contract
//!
//! 1. The engine calls [`Source::tables`] once, before anything else, to learn the tables and
//!    their schemas. Nothing is read yet; configuration problems (no table matches, a file is
//!    missing, a type is unsupported) are reported here.
//! 2. For each table it calls [`Source::splits`], and then [`Source::read`] for each split,
//!    possibly several splits at once from different tasks (up to the job's `parallelism`).
//! 3. `read` sends the split's rows, in order, as events through the [`BatchSender`]
//!    ([`SourceEvent`]). A [`SourceBatch`] is rows of the split's table ending at a safe point:
//!    it carries the [`Position`] after its last row, and the engine may commit there. A source
//!    whose rows are not all safe points (a replication stream in the middle of a transaction)
//!    sends [`SourceEvent::Rows`] and marks the safe points with [`SourceEvent::Barrier`]; such
//!    rows may belong to any table the source described (a split may span tables). A schema
//!    change of a table is announced with [`SourceEvent::Schema`] before its first rows in the
//!    new shape. Given `resume = Some(p)` the read starts right after `p`. Delivery is
//!    at-least-once: the engine absorbs replays. The engine commits only at safe points: at the
//!    end of a split in batch mode, and at the first safe point after each
//!    `checkpoint_interval` in streaming mode (where a split may never end).
//! 4. `read` returns `Ok(())` when the split is exhausted, or when [`BatchSender::send`]
//!    reports that the job is stopping (the source just returns: nothing is lost, the engine
//!    resumes from its checkpoint). It returns an error naming the table, split and, where it
//!    can, the row.
//! 5. [`Source::committed`] is called after the engine has durably committed a position. Only
//!    then may a source tell its upstream (acknowledge messages, advance a replication slot).
//!
//! Sources doing blocking I/O (SQLite, files) run it on `spawn_blocking` threads and use
//! [`BatchSender::blocking_send`].

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::{Position, Split};
use crate::error::{Error, Result};
use crate::schema::TableSchema;

/// A table a source will read.
#[derive(Debug, Clone)]
pub struct SourceTable {
    /// Name and shape.
    pub schema: TableSchema,
    /// Estimated rows, if cheaply known.
    pub estimated_rows: Option<u64>,
    /// Estimated bytes, if cheaply known (file sizes).
    pub estimated_bytes: Option<u64>,
}

/// Rows a source hands to the engine: data plus the position after the last row.
#[derive(Debug)]
pub struct SourceBatch {
    /// The rows, in the table's schema.
    pub data: arrow::record_batch::RecordBatch,
    /// Position after the last row.
    pub position: Position,
    /// Input bytes consumed by this batch (for progress), 0 if unknown.
    pub bytes: u64,
}

/// What a source sends the engine while reading a split (see the module docs).
#[derive(Debug)]
pub enum SourceEvent {
    /// Rows of the split's table, ending at a safe point (a barrier at `position`).
    Batch(SourceBatch),
    /// Rows of `table` (any table the source described) that do not end at a safe point; the
    /// next [`Barrier`](SourceEvent::Barrier) covers them.
    Rows {
        /// The table, as the source named it in [`Source::tables`].
        table: crate::schema::TableId,
        /// The rows, in the table's current schema (with [`crate::batch::OP_COLUMN`] for
        /// change events).
        data: arrow::record_batch::RecordBatch,
        /// Input bytes consumed (for progress), 0 if unknown.
        bytes: u64,
    },
    /// A table's schema changed: rows sent after this are in `schema`'s shape.
    Schema(TableSchema),
    /// Every row of `table` was removed (a `TRUNCATE` in the source), after the rows sent
    /// before and before the rows sent after; the next barrier covers it.
    Truncate(crate::schema::TableId),
    /// Everything sent before is a consistent unit: committing here and resuming after
    /// `position` is exact.
    Barrier(Position),
}

/// Reads one system. See the module docs for the contract.
#[async_trait]
pub trait Source: Send + Sync {
    /// The tables this source will read, with schemas. Reads no data.
    async fn tables(&self) -> Result<Vec<SourceTable>>;

    /// Divides a table's work into independently readable splits. Split ids must be stable
    /// across runs for the same input.
    async fn splits(&self, table: &SourceTable) -> Result<Vec<Split>>;

    /// Reads `split`, starting after `resume` if given, sending batches to `out`.
    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()>;

    /// Checks what reading needs beyond what [`tables`](Self::tables) proves (it already
    /// reached the source): privileges to read each table, and the server settings a mode
    /// needs. Called by `sluice validate` (and the REST validate endpoint) after `tables`;
    /// reads no data and changes nothing. An error says what is missing and how to grant it.
    async fn check(&self, _tables: &[SourceTable]) -> Result<()> {
        Ok(())
    }

    /// Called when a copy resumes with `splits` of `table` planned by an earlier run (in
    /// another snapshot of the source), `committed[i]` telling which of them are already in
    /// the target. A source whose splits cannot be resumed exactly once the data changed (page
    /// ranges: an updated row moves between pages) checks here whether it changed, and refuses
    /// with an error naming the table if it did. Key ranges and files need no check: a row
    /// belongs to one range whatever else changes.
    async fn check_resume(
        &self,
        _table: &SourceTable,
        _splits: &[Split],
        _committed: &[bool],
    ) -> Result<()> {
        Ok(())
    }

    /// The engine has durably committed `position`; upstream may now be told.
    async fn committed(&self, _position: &Position) -> Result<()> {
        Ok(())
    }

    /// Releases what the source holds upstream for the job between runs (a replication slot
    /// and its publication): called when the job is retired, never by a run. Refuses while a
    /// run reads from it. Returns what was released, `None` if the source holds nothing.
    async fn release(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Releases connections. Called once, after all reads have returned.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// The sending half a source writes batches to. Bounded: a slow sink makes `send` wait,
/// which is what keeps memory flat. Cloneable; cheap.
#[derive(Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<SourceEvent>,
    stop: CancellationToken,
    paused: Option<tokio::sync::watch::Receiver<bool>>,
}

impl BatchSender {
    /// A sender over `tx`; `stop` is cancelled when the job is asked to stop reading.
    pub fn new(tx: mpsc::Sender<SourceEvent>, stop: CancellationToken) -> Self {
        BatchSender {
            tx,
            stop,
            paused: None,
        }
    }

    /// Makes [`send`](Self::send) wait while `paused` holds `true` (pause/resume).
    pub fn with_pause(mut self, paused: tokio::sync::watch::Receiver<bool>) -> Self {
        self.paused = Some(paused);
        self
    }

    /// Whether the job asked sources to stop. Long reads should check it between batches.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// A token cancelled when the job stops reading (for `select!` in async sources).
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Sends a batch, waiting for room. `Err(Stopped)` means the job is stopping (or the
    /// consumer is gone): the source should return `Ok(())` promptly.
    pub async fn send(&self, batch: SourceBatch) -> Result<()> {
        self.send_event(SourceEvent::Batch(batch)).await
    }

    /// Sends any event (rows of another table, a schema change, a barrier); waits and stops
    /// like [`send`](Self::send).
    pub async fn send_event(&self, event: SourceEvent) -> Result<()> {
        if self.stop.is_cancelled() {
            return Err(Error::stopped());
        }
        if let Some(p) = &self.paused
            && *p.borrow()
        {
            let mut p = p.clone();
            tokio::select! {
                _ = p.wait_for(|paused| !paused) => {}
                _ = self.stop.cancelled() => return Err(Error::stopped()),
            }
        }
        tokio::select! {
            r = self.tx.send(event) => r.map_err(|_| Error::stopped()),
            _ = self.stop.cancelled() => Err(Error::stopped()),
        }
    }

    /// [`send`](Self::send) for sources running on blocking threads (`spawn_blocking`);
    /// a stop request is noticed even while the channel is full.
    ///
    /// # Panics
    /// If called outside a Tokio runtime context (a plain `std::thread`).
    pub fn blocking_send(&self, batch: SourceBatch) -> Result<()> {
        tokio::runtime::Handle::current().block_on(self.send(batch))
    }
}

/// A shared, type-erased source.
pub type DynSource = Arc<dyn Source>;
