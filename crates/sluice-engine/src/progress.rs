//! Live progress counters, shared between the runner (which updates them per batch) and
//! whoever displays them (progress bar, `sluice status`, metrics).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one table. Updated per batch, never per row.
#[derive(Debug, Default)]
pub struct TableProgress {
    /// The table's name as the source names it.
    pub name: String,
    /// Rows the source produced.
    pub rows_read: AtomicU64,
    /// Rows made durable in the sink by this run (counted at split commit).
    pub rows_written: AtomicU64,
    /// Rows earlier runs of the same generation made durable (splits this run skips).
    pub rows_written_earlier: AtomicU64,
    /// Input bytes consumed.
    pub bytes_read: AtomicU64,
    /// Estimated total rows (0 if unknown).
    pub rows_total: AtomicU64,
    /// Estimated total input bytes (0 if unknown).
    pub bytes_total: AtomicU64,
    /// Splits committed.
    pub splits_done: AtomicUsize,
    /// Splits planned.
    pub splits_total: AtomicUsize,
}

/// A point-in-time copy of [`TableProgress`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TableSnapshot {
    pub name: String,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_written_earlier: u64,
    pub bytes_read: u64,
    pub rows_total: u64,
    pub bytes_total: u64,
    pub splits_done: usize,
    pub splits_total: usize,
}

impl TableSnapshot {
    /// Fraction done in [0, 1], by bytes when known, else rows, else splits.
    pub fn fraction(&self) -> Option<f64> {
        if self.bytes_total > 0 {
            Some((self.bytes_read as f64 / self.bytes_total as f64).min(1.0))
        } else if self.rows_total > 0 {
            Some((self.rows_read as f64 / self.rows_total as f64).min(1.0))
        } else if self.splits_total > 0 {
            Some(self.splits_done as f64 / self.splits_total as f64)
        } else {
            None
        }
    }
}

impl TableProgress {
    fn snapshot(&self) -> TableSnapshot {
        TableSnapshot {
            name: self.name.clone(),
            rows_read: self.rows_read.load(Ordering::Relaxed),
            rows_written: self.rows_written.load(Ordering::Relaxed),
            rows_written_earlier: self.rows_written_earlier.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            rows_total: self.rows_total.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            splits_done: self.splits_done.load(Ordering::Relaxed),
            splits_total: self.splits_total.load(Ordering::Relaxed),
        }
    }
}

/// Progress of a whole run: one entry per table, in plan order.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    tables: Arc<Mutex<Vec<Arc<TableProgress>>>>,
}

impl Progress {
    /// An empty progress (tables are added while planning).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a table and returns its counters.
    pub fn add_table(&self, name: String) -> Arc<TableProgress> {
        let t = Arc::new(TableProgress {
            name,
            ..Default::default()
        });
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(t.clone());
        t
    }

    /// Copies every table's counters.
    pub fn snapshot(&self) -> Vec<TableSnapshot> {
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|t| t.snapshot())
            .collect()
    }
}
