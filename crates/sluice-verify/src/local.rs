//! A side read locally through a Sluice source connector: a SQLite database, or CSV, JSON
//! Lines and Parquet files. Rows are read as Arrow batches (`Source::splits` / `read`) and
//! turned into the same canonical row text and 60-bit md5 hash as the SQL sides compute (see
//! [`crate::values`]), so a local side compares with PostgreSQL, MySQL or another local side.
//!
//! Memory: the first question about a table (its key range or a checksum) reads it once and
//! keeps a sorted index of `(key, row hash)` for the whole table: **16 bytes per row**
//! (about 96 MB for 6 million rows). Checksums of key ranges are then sums over that index,
//! with no further reading. The rows of differing leaf ranges are read by one more pass over
//! the table per group of ranges ([`Local::prefetch`]); only the differing rows are kept
//! afterwards, so the re-check reads nothing. Keys must fit a signed 64-bit integer.

use std::collections::BTreeSet;

use arrow::record_batch::RecordBatch;
use sluice_core::source::{BatchSender, DynSource, SourceEvent, SourceTable};
use sluice_core::{Error, LogicalType, Result};
use tokio_util::sync::CancellationToken;

use crate::canon::{Column, ElemType, Form};
use crate::db::{Rows, Table, Which};
use crate::values;

/// One table of a local side, with the source that reads it.
struct LocalTable {
    source: DynSource,
    table: SourceTable,
}

/// What is known about the table last asked about.
struct Loaded {
    table: String,
    key: Option<String>,
    cols: Vec<String>,
    /// `(key, hash)` sorted by key (empty without a key).
    index: Vec<(i64, u64)>,
    count: u64,
    sum: u128,
    /// Key ranges whose rows are in `rows` (or absent from the table).
    covered: Vec<(i128, i128)>,
    rows: Rows,
}

/// A locally read side: SQLite or files.
pub struct Local {
    kind: &'static str,
    tables: Vec<LocalTable>,
    loaded: Option<Loaded>,
}

impl Local {
    /// An empty side of connector type `kind` (`sqlite`, `parquet`, …).
    pub fn new(kind: &'static str) -> Local {
        Local {
            kind,
            tables: Vec::new(),
            loaded: None,
        }
    }

    /// The connector type.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Adds the tables `source` lists.
    pub async fn add(&mut self, source: DynSource) -> Result<()> {
        for table in source.tables().await? {
            self.tables.push(LocalTable {
                source: source.clone(),
                table,
            });
        }
        Ok(())
    }

    /// Adds already listed tables of `source`.
    pub fn add_listed(&mut self, source: DynSource, tables: Vec<SourceTable>) {
        for table in tables {
            self.tables.push(LocalTable {
                source: source.clone(),
                table,
            });
        }
    }

    fn find(&self, t: &Table) -> Option<&LocalTable> {
        let last = sluice_core::TableId::parse(&t.name)
            .map(|id| id.name().to_string())
            .unwrap_or_else(|_| t.name.clone());
        self.tables
            .iter()
            .find(|l| l.table.schema.id.to_string() == t.name)
            .or_else(|| {
                self.tables
                    .iter()
                    .find(|l| l.table.schema.id.name() == last)
            })
    }

    /// The table's own name (unquoted), if the side has it.
    pub fn table_name(&self, t: &Table) -> Option<String> {
        self.find(t).map(|l| l.table.schema.id.name().to_string())
    }

    /// Forgets what was read (after the table was written, e.g. repaired).
    pub fn forget(&mut self) {
        self.loaded = None;
    }

    /// The table's columns (empty if there is no such table) and its primary key.
    pub fn columns(&self, t: &Table) -> Result<(Vec<Column>, Vec<String>)> {
        let Some(l) = self.find(t) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut cols = Vec::new();
        for f in l.table.schema.arrow.fields() {
            let lt = LogicalType::of_field(f)?;
            let mut col = Column::new(f.name().clone(), values::kind_of(&lt), lt.to_string());
            col.not_null = !f.is_nullable();
            if let LogicalType::Array(inner) = &lt {
                col.elem = Some(ElemType {
                    kind: values::kind_of(inner),
                    type_name: if **inner == LogicalType::Uuid {
                        "uuid".into()
                    } else {
                        String::new()
                    },
                });
            }
            cols.push(col);
        }
        Ok((cols, l.table.schema.primary_key.clone()))
    }

    /// The logical types of the table's columns, by name.
    pub fn logical_types(&self, t: &Table) -> Vec<(String, LogicalType)> {
        self.find(t)
            .map(|l| {
                l.table
                    .schema
                    .arrow
                    .fields()
                    .iter()
                    .filter_map(|f| Some((f.name().clone(), LogicalType::of_field(f).ok()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reads the whole table, calling `f` for every batch.
    async fn scan(&self, t: &Table, mut f: impl FnMut(&RecordBatch) -> Result<()>) -> Result<()> {
        let l = self.find(t).ok_or_else(|| {
            Error::schema(format!(
                "table {} not found in the {} side",
                t.name, self.kind
            ))
        })?;
        for split in l.source.splits(&l.table).await? {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let sender = BatchSender::new(tx, CancellationToken::new());
            let mut failed = None;
            let consume = async {
                while let Some(event) = rx.recv().await {
                    let data = match event {
                        SourceEvent::Batch(b) => b.data,
                        SourceEvent::Rows { data, .. } => data,
                        // (Only change streams truncate; verify reads tables whole.)
                        SourceEvent::Schema(_)
                        | SourceEvent::Barrier(_)
                        | SourceEvent::Truncate(_) => continue,
                    };
                    if let Err(e) = f(&data) {
                        failed = Some(e);
                        break;
                    }
                }
                drop(rx);
            };
            let (read, ()) = tokio::join!(l.source.read(split, None, sender), consume);
            if let Some(e) = failed {
                return Err(e);
            }
            read?;
        }
        Ok(())
    }

    /// Reads the table once and keeps its `(key, hash)` index (or, without a key, its count
    /// and checksum), unless that is already done for the same table and columns.
    async fn load(&mut self, t: &Table, key: Option<&str>, cols: &[Column]) -> Result<()> {
        let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
        if let Some(l) = &self.loaded
            && l.table == t.name
            && l.key.as_deref() == key
            && l.cols == names
        {
            return Ok(());
        }
        self.loaded = None;
        let logical = self.logical_types(t);
        let (mut index, mut count, mut sum) = (Vec::new(), 0u64, 0u128);
        self.scan(t, |b| {
            let (keys, texts) = batch_texts(b, key, cols, &logical, false)?;
            for (i, text) in texts.iter().enumerate() {
                let h = values::row_hash(text);
                count += 1;
                sum += u128::from(h);
                if let Some(keys) = &keys {
                    match keys[i] {
                        Some(k) => index.push((k, h)),
                        None => return Err(null_key(t, key)),
                    }
                }
            }
            Ok(())
        })
        .await?;
        index.sort_unstable();
        tracing::debug!(table = %t.name, rows = count, "Local side indexed.");
        self.loaded = Some(Loaded {
            table: t.name.clone(),
            key: key.map(str::to_owned),
            cols: names,
            index,
            count,
            sum,
            covered: Vec::new(),
            rows: Rows::new(),
        });
        Ok(())
    }

    /// `(count, min key, max key)`.
    pub async fn key_range(
        &mut self,
        t: &Table,
        key: &str,
        cols: &[Column],
    ) -> Result<(u64, Option<(i128, i128)>)> {
        self.load(t, Some(key), cols).await?;
        // A new comparison: rows prefetched by an earlier one are stale.
        if let Some(l) = &mut self.loaded {
            l.covered.clear();
            l.rows.clear();
        }
        let l = self.loaded()?;
        let range = match (l.index.first(), l.index.last()) {
            (Some(a), Some(b)) => Some((i128::from(a.0), i128::from(b.0))),
            _ => None,
        };
        Ok((l.count, range))
    }

    fn loaded(&self) -> Result<&Loaded> {
        self.loaded
            .as_ref()
            .ok_or_else(|| Error::internal("local side used before it was read"))
    }

    /// `(count, checksum)` of a key range or the whole table.
    pub async fn checksum(
        &mut self,
        t: &Table,
        cols: &[Column],
        range: Option<(&str, i128, i128)>,
    ) -> Result<(u64, String)> {
        let key = range.map(|r| r.0);
        let reuse = self
            .loaded
            .as_ref()
            .is_some_and(|l| l.table == t.name && l.key.is_some());
        if !(range.is_none() && reuse) {
            self.load(t, key, cols).await?;
        }
        let l = self.loaded()?;
        let Some((_, lo, hi)) = range else {
            return Ok((l.count, l.sum.to_string()));
        };
        let part = &l.index[slice(&l.index, lo, hi)];
        let sum: u128 = part.iter().map(|(_, h)| u128::from(*h)).sum();
        Ok((part.len() as u64, sum.to_string()))
    }

    /// `(count, checksum)` per bucket of `width` keys from `lo`, over `[lo, hi)`.
    pub async fn bucket_checksums(
        &mut self,
        t: &Table,
        cols: &[Column],
        key: &str,
        (lo, hi, width): (i128, i128, i128),
    ) -> Result<std::collections::HashMap<i128, (u64, String)>> {
        self.load(t, Some(key), cols).await?;
        let l = self.loaded()?;
        let mut acc: std::collections::HashMap<i128, (u64, u128)> = Default::default();
        for (k, h) in &l.index[slice(&l.index, lo, hi)] {
            let e = acc.entry((i128::from(*k) - lo) / width).or_default();
            e.0 += 1;
            e.1 += u128::from(*h);
        }
        Ok(acc
            .into_iter()
            .map(|(b, (c, s))| (b, (c, s.to_string())))
            .collect())
    }

    /// Reads, in one pass, the canonical rows of every range in `ranges` and keeps them for
    /// [`Local::rows`].
    pub async fn prefetch(
        &mut self,
        t: &Table,
        key: &str,
        cols: &[Column],
        ranges: &[(i128, i128)],
    ) -> Result<()> {
        let mut sorted = ranges.to_vec();
        sorted.sort_unstable();
        let rows = self
            .read_rows(t, key, cols, &Filter::Ranges(&sorted), false)
            .await?;
        if let Some(l) = &mut self.loaded {
            l.covered.extend(sorted);
            l.covered.sort_unstable();
            l.rows.extend(rows);
        }
        Ok(())
    }

    /// Forgets the prefetched rows except those with the given keys.
    pub fn keep_only(&mut self, keys: &BTreeSet<i128>) {
        if let Some(l) = &mut self.loaded {
            l.rows.retain(|k, _| keys.contains(k));
        }
    }

    /// Rows of a key range or with given keys: from the prefetched rows when they cover the
    /// request, else by reading the table.
    pub async fn rows(
        &mut self,
        t: &Table,
        key: &str,
        cols: &[Column],
        which: Which<'_>,
        repair: bool,
    ) -> Result<Rows> {
        if !repair && let Some(l) = &self.loaded {
            let covered = |k: i128| l.covered.iter().any(|&(a, b)| a <= k && k < b);
            let hit = l.table == t.name
                && match which {
                    Which::Ranges(ranges) => ranges
                        .iter()
                        .all(|&(a, b)| l.covered.iter().any(|&(x, y)| x <= a && b <= y)),
                    Which::Keys(keys) => keys.iter().all(|&k| covered(k)),
                };
            if hit {
                return Ok(l
                    .rows
                    .iter()
                    .filter(|(k, _)| match which {
                        Which::Ranges(ranges) => ranges.iter().any(|&(a, b)| a <= **k && **k < b),
                        Which::Keys(keys) => keys.contains(k),
                    })
                    .map(|(k, v)| (*k, v.clone()))
                    .collect());
            }
        }
        let filter = match which {
            Which::Ranges(ranges) => {
                let mut sorted = ranges.to_vec();
                sorted.sort_unstable();
                OwnedFilter::Ranges(sorted)
            }
            Which::Keys(keys) => OwnedFilter::Keys(keys.iter().copied().collect()),
        };
        self.read_rows(t, key, cols, &filter.as_filter(), repair)
            .await
    }

    async fn read_rows(
        &self,
        t: &Table,
        key: &str,
        cols: &[Column],
        filter: &Filter<'_>,
        repair: bool,
    ) -> Result<Rows> {
        let logical = self.logical_types(t);
        let mut out = Rows::new();
        self.scan(t, |b| {
            let (keys, vals) = batch_values(b, key, cols, &logical, repair)?;
            for (k, row) in keys.into_iter().zip(vals) {
                let k = i128::from(k.ok_or_else(|| null_key(t, Some(key)))?);
                if filter.matches(k) {
                    out.entry(k).or_default().push(row);
                }
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }
}

/// Which rows a pass keeps.
enum Filter<'a> {
    Ranges(&'a [(i128, i128)]),
    Keys(&'a BTreeSet<i128>),
}

enum OwnedFilter {
    Ranges(Vec<(i128, i128)>),
    Keys(BTreeSet<i128>),
}

impl Filter<'_> {
    fn matches(&self, k: i128) -> bool {
        match self {
            // Sorted, non-overlapping: the last range starting at or before k.
            Filter::Ranges(r) => {
                let i = r.partition_point(|&(a, _)| a <= k);
                i > 0 && k < r[i - 1].1
            }
            Filter::Keys(keys) => keys.contains(&k),
        }
    }
}

impl OwnedFilter {
    fn as_filter(&self) -> Filter<'_> {
        match self {
            OwnedFilter::Ranges(r) => Filter::Ranges(r),
            OwnedFilter::Keys(k) => Filter::Keys(k),
        }
    }
}

/// The index positions of keys in `[lo, hi)`.
fn slice(index: &[(i64, u64)], lo: i128, hi: i128) -> std::ops::Range<usize> {
    let a = index.partition_point(|(k, _)| i128::from(*k) < lo);
    let b = index.partition_point(|(k, _)| i128::from(*k) < hi);
    a..b.max(a)
}

fn null_key(t: &Table, key: Option<&str>) -> Error {
    Error::data(format!(
        "table {}: key column {:?} holds NULL",
        t.name,
        key.unwrap_or_default()
    ))
    .with_hint("verify needs a key that is never NULL")
}

fn column_index(b: &RecordBatch, name: &str) -> Result<usize> {
    let s = b.schema();
    s.index_of(name)
        .ok()
        .or_else(|| {
            s.fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| Error::schema(format!("column {name:?} not found while reading")))
}

/// A batch's key values (`None` for NULL).
type Keys = Vec<Option<i64>>;
type KeysAndValues = (Keys, Vec<Vec<Option<String>>>);

/// Keys and per-row canonical values (in `cols` order) of a batch.
fn batch_values(
    b: &RecordBatch,
    key: &str,
    cols: &[Column],
    logical: &[(String, LogicalType)],
    repair: bool,
) -> Result<KeysAndValues> {
    let keys = values::key_values(b.column(column_index(b, key)?))?;
    let columns = column_texts(b, cols, logical, repair)?;
    let rows = (0..b.num_rows())
        .map(|i| columns.iter().map(|c| c[i].clone()).collect())
        .collect();
    Ok((keys, rows))
}

fn column_texts(
    b: &RecordBatch,
    cols: &[Column],
    logical: &[(String, LogicalType)],
    repair: bool,
) -> Result<Vec<Vec<Option<String>>>> {
    cols.iter()
        .map(|c| {
            let i = column_index(b, &c.name)?;
            let name = b.schema().field(i).name().clone();
            let lt = logical
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.clone())
                .unwrap_or(LogicalType::Text);
            values::canonical_values(b.column(i), &lt, &c.form, repair)
        })
        .collect()
}

/// Keys (with a key column) and canonical row texts of a batch.
fn batch_texts(
    b: &RecordBatch,
    key: Option<&str>,
    cols: &[Column],
    logical: &[(String, LogicalType)],
    repair: bool,
) -> Result<(Option<Keys>, Vec<String>)> {
    let keys = match key {
        Some(k) => Some(values::key_values(b.column(column_index(b, k)?))?),
        None => None,
    };
    let columns = column_texts(b, cols, logical, repair)?;
    let forms: Vec<Form> = cols.iter().map(|c| c.form).collect();
    let mut refs: Vec<Option<&str>> = Vec::with_capacity(cols.len());
    let texts = (0..b.num_rows())
        .map(|i| {
            refs.clear();
            refs.extend(columns.iter().map(|c| c[i].as_deref()));
            values::row_text(&refs, &forms)
        })
        .collect();
    Ok((keys, texts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_filter_and_slices() {
        let r = [(0, 10), (20, 30)];
        let f = Filter::Ranges(&r);
        assert!(f.matches(0) && f.matches(9) && f.matches(25));
        assert!(!f.matches(10) && !f.matches(15) && !f.matches(30) && !f.matches(-1));
        let index = [(1, 0), (5, 0), (9, 0)];
        assert_eq!(slice(&index, 0, 6), 0..2);
        assert_eq!(slice(&index, 6, 9), 2..2);
        assert_eq!(slice(&index, 9, 100), 2..3);
    }
}
