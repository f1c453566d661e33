//! Bad records: rows a transform rejects (a value that cannot be cast, a division by zero).
//!
//! With `[errors] max_errors = 0` (the default) the first bad record fails the job. Above zero,
//! a batch whose transforms fail with a data error is bisected down to the offending rows; the
//! other rows go on, and each bad row goes to the dead-letter file with its error, table, split
//! and the split's position, until the count passes `max_errors` (or the fraction of rows read
//! passes `max_error_ratio`), which fails the job.
//!
//! Limits: only transform errors are isolated this way. A row the source cannot decode (a CSV
//! line with the wrong number of fields) or that the target rejects (a constraint violation)
//! still fails its split. The dead-letter file is appended to and fsynced per record; a split
//! redone after a crash may write its bad records again (at-least-once).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::record_batch::RecordBatch;
use sluice_core::{BoundTransform, Error, ErrorKind, Position, Result};

/// How many bad records a job tolerates, and where they go.
#[derive(Debug, Default)]
pub struct BadRecordPolicy {
    /// Bad records tolerated before the job fails (0: the first one fails it).
    pub max_errors: u64,
    /// Fraction of rows read that may be bad, e.g. 0.01.
    pub max_ratio: Option<f64>,
    /// JSON Lines file receiving each bad record.
    pub dead_letter: Option<PathBuf>,
    /// Bad records seen so far in this run.
    count: AtomicU64,
    file: Mutex<Option<std::fs::File>>,
}

impl BadRecordPolicy {
    /// A policy tolerating `max_errors` (and `max_ratio`), writing to `dead_letter`.
    pub fn new(max_errors: u64, max_ratio: Option<f64>, dead_letter: Option<PathBuf>) -> Self {
        BadRecordPolicy {
            max_errors,
            max_ratio,
            dead_letter,
            ..Default::default()
        }
    }

    /// Whether any bad record is tolerated.
    pub fn tolerant(&self) -> bool {
        self.max_errors > 0 || self.max_ratio.is_some_and(|r| r > 0.0)
    }

    /// Bad records seen so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Records one bad row; fails when the threshold is passed.
    fn record(&self, rec: serde_json::Value, rows_read: u64) -> Result<()> {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(path) = &self.dead_letter {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            if f.is_none() {
                *f = Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| {
                            Error::from_io(
                                e,
                                format!("cannot open dead-letter file {}", path.display()),
                            )
                        })?,
                );
            }
            if let Some(file) = f.as_mut() {
                let mut line = rec.to_string();
                line.push('\n');
                file.write_all(line.as_bytes())
                    .and_then(|_| file.sync_data())
                    .map_err(|e| Error::from_io(e, format!("writing {}", path.display())))?;
            }
        }
        let over_count = n > self.max_errors && self.max_ratio.is_none();
        let over_ratio = self
            .max_ratio
            .is_some_and(|r| n > self.max_errors && (n as f64) > r * (rows_read.max(1) as f64));
        if over_count || over_ratio {
            return Err(Error::data(format!(
                "too many bad records: {n} (max_errors = {}{})",
                self.max_errors,
                self.max_ratio.map(|r| format!(", max_error_ratio = {r}")).unwrap_or_default()
            ))
            .with_hint("fix the data or the transforms, or raise max_errors in [errors]; the bad records are in the dead-letter file"));
        }
        Ok(())
    }
}

/// Applies `transforms` in order.
pub(crate) fn apply_all(
    transforms: &[Box<dyn BoundTransform>],
    mut data: RecordBatch,
) -> Result<RecordBatch> {
    for t in transforms {
        data = t.apply(data)?;
    }
    Ok(data)
}

/// Where a bad record came from, for the dead-letter file.
pub(crate) struct Origin<'a> {
    pub job: &'a str,
    pub table: &'a str,
    pub split: &'a str,
    pub position: &'a Position,
    pub rows_read: u64,
}

/// Applies `transforms`; with a tolerant policy, data errors are narrowed to single rows by
/// bisection, recorded, and the good rows returned.
pub(crate) fn apply_tolerant(
    transforms: &[Box<dyn BoundTransform>],
    data: RecordBatch,
    policy: &BadRecordPolicy,
    origin: &Origin<'_>,
) -> Result<RecordBatch> {
    match apply_all(transforms, data.clone()) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == ErrorKind::Data && policy.tolerant() => {
            let mut good = Vec::new();
            bisect(transforms, &data, 0, policy, origin, &mut good)?;
            let schema = match transforms.last() {
                Some(t) => t.output().arrow.clone(),
                None => data.schema(),
            };
            Ok(arrow::compute::concat_batches(&schema, &good)?)
        }
        Err(e) => Err(e),
    }
}

fn bisect(
    transforms: &[Box<dyn BoundTransform>],
    data: &RecordBatch,
    offset: usize,
    policy: &BadRecordPolicy,
    origin: &Origin<'_>,
    good: &mut Vec<RecordBatch>,
) -> Result<()> {
    match apply_all(transforms, data.clone()) {
        Ok(d) => {
            good.push(d);
            Ok(())
        }
        Err(e) if e.kind() != ErrorKind::Data => Err(e),
        Err(e) if data.num_rows() <= 1 => {
            let row = row_json(data);
            policy.record(
                serde_json::json!({
                    "job": origin.job,
                    "table": origin.table,
                    "split": origin.split,
                    "position": origin.position,
                    "row_in_batch": offset,
                    "error": sluice_core::config::redact(&e.to_string()),
                    "row": row,
                }),
                origin.rows_read,
            )
        }
        Err(_) => {
            let half = data.num_rows() / 2;
            bisect(
                transforms,
                &data.slice(0, half),
                offset,
                policy,
                origin,
                good,
            )?;
            bisect(
                transforms,
                &data.slice(half, data.num_rows() - half),
                offset + half,
                policy,
                origin,
                good,
            )
        }
    }
}

/// One row as a JSON object (values as Arrow renders them).
fn row_json(batch: &RecordBatch) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    for (i, f) in batch.schema().fields().iter().enumerate() {
        let col = batch.column(i);
        let v = if col.is_null(0) {
            serde_json::Value::Null
        } else {
            arrow::util::display::array_value_to_string(col, 0)
                .map(serde_json::Value::String)
                .unwrap_or(serde_json::Value::Null)
        };
        obj.insert(f.name().clone(), v);
    }
    serde_json::Value::Object(obj)
}
