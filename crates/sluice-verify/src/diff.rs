//! Comparing one table pair: key range, chunk checksums, bisection, row diff, re-check.
//!
//! Both sides answer the same question at once (`tokio::join!`). The first pass is one
//! `GROUP BY` query per side giving the count and checksum of every bucket of about
//! [`LEAF_ROWS`] rows, so the table is hashed once; differing buckets are read row by row
//! (a bucket much larger than that, from skewed keys, is bisected: split in [`FANOUT`] parts
//! until it holds at most [`LEAF_ROWS`] rows). Rows are compared by key. Leaf ranges are handled in groups of
//! [`LEAF_GROUP`], so that a locally read side (SQLite, files) reads a group's rows in one
//! pass over the table.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use sluice_core::{Error, Result};

use crate::canon::{Column, RowHash};
use crate::db::{Db, Row, Rows, Table, Which};
use crate::{Copies, DiffKind, RowDiff, TableReport};

/// Chunks the key range is first cut into.
pub const INITIAL_CHUNKS: i128 = 16;
/// Parts a differing chunk is cut into.
pub const FANOUT: i128 = 8;
/// A differing chunk with at most this many rows on each side is compared row by row.
pub const LEAF_ROWS: u64 = 1000;
/// Differing leaf ranges whose rows are read together.
pub const LEAF_GROUP: usize = 256;
/// Differing leaf ranges read by one query (each holds at most about [`LEAF_ROWS`] rows).
pub const RANGES_PER_QUERY: usize = 16;
/// Keys per `IN (…)` list when rows are re-read by key.
pub const KEYS_PER_QUERY: usize = 500;
/// Connections per side in the first pass when the server runs a query on one core (MySQL,
/// PostgreSQL with parallel query off), so that it uses more than one.
pub const CONNECTIONS: usize = 2;
/// Slices of the key range those connections share in the first pass.
pub const SLICES: i128 = 16;

/// What is compared: the two tables and their matched columns.
pub struct Pair {
    pub source_name: String,
    pub target_name: String,
    pub source: Table,
    pub target: Table,
    /// Source columns, in source order.
    pub src_cols: Vec<Column>,
    /// The target's columns of the same names, in the same order.
    pub dst_cols: Vec<Column>,
    /// The single integer key column, if the source has one.
    pub key: Option<String>,
    /// How both sides hash rows (agreed by [`crate::canon::plan`]).
    pub hash: RowHash,
}

/// Matches the target's columns to the source's by name (exactly, else ignoring case).
pub fn match_columns(table: &str, src: &[Column], dst: &[Column]) -> Result<Vec<Column>> {
    src.iter()
        .map(|c| {
            dst.iter()
                .find(|d| d.name == c.name)
                .or_else(|| dst.iter().find(|d| d.name.eq_ignore_ascii_case(&c.name)))
                .cloned()
                .ok_or_else(|| {
                    Error::schema(format!(
                        "table {table}: the target has no column {:?}",
                        c.name
                    ))
                    .with_hint(
                        "verify compares the source's columns by name; add the column to the \
                         target or run the copy again",
                    )
                })
        })
        .collect()
}

/// Compares one pair and returns its report (every differing row, re-checked once).
pub async fn compare(src: &mut Db, dst: &mut Db, p: &Pair) -> Result<TableReport> {
    let started = Instant::now();
    let mut rep = TableReport::new(&p.source_name, &p.target_name, p.key.clone());
    let Some(key) = p.key.as_deref() else {
        // No integer key: whole-table count and checksum only.
        let (s, d) = tokio::join!(
            src.checksum(&p.source, &p.src_cols, p.hash, None),
            dst.checksum(&p.target, &p.dst_cols, p.hash, None)
        );
        let (s, d) = (s?, d?);
        rep.source_rows = s.0;
        rep.target_rows = d.0;
        rep.checksum_differs = s != d;
        rep.seconds = started.elapsed().as_secs_f64();
        return Ok(rep);
    };
    let (s, d) = tokio::join!(
        src.key_range(&p.source, key, &p.src_cols),
        dst.key_range(&p.target, key, &p.dst_cols)
    );
    let ((s_count, s_range), (d_count, d_range)) = (s?, d?);
    // A side without a key range is empty, whatever its catalog estimates.
    rep.source_rows = if s_range.is_some() { s_count } else { 0 };
    rep.target_rows = if d_range.is_some() { d_count } else { 0 };
    let (lo, hi) = match (s_range, d_range) {
        (None, None) => {
            rep.seconds = started.elapsed().as_secs_f64();
            return Ok(rep);
        }
        (Some(a), None) | (None, Some(a)) => (a.0, a.1 + 1),
        (Some(a), Some(b)) => (a.0.min(b.0), a.1.max(b.1) + 1),
    };
    let mut diffs = Vec::new();
    let mut leaves = Vec::new();
    let mut work = Vec::new();
    let total = rep.source_rows.max(rep.target_rows);
    if total > LEAF_ROWS {
        // One pass per side: buckets of about LEAF_ROWS rows each.
        let width = ((hi - lo) * i128::from(LEAF_ROWS) / i128::from(total)).max(1);
        let (s, d) = tokio::join!(
            bucket_pass(src, &p.source, &p.src_cols, p.hash, key, (lo, hi, width)),
            bucket_pass(dst, &p.target, &p.dst_cols, p.hash, key, (lo, hi, width))
        );
        let (s, d) = (s?, d?);
        // The pass counted every row; the counts before may have been estimates.
        rep.source_rows = s.values().map(|v| v.0).sum();
        rep.target_rows = d.values().map(|v| v.0).sum();
        let buckets: BTreeSet<i128> = s.keys().chain(d.keys()).copied().collect();
        rep.chunks_checked += buckets.len() as u64;
        for b in buckets {
            let (sb, db) = (s.get(&b), d.get(&b));
            if sb == db {
                continue;
            }
            let a = lo + b * width;
            let z = (a + width).min(hi);
            let rows = sb.map_or(0, |x| x.0).max(db.map_or(0, |x| x.0));
            if rows <= 4 * LEAF_ROWS || z - a <= 1 {
                leaves.push((a, z));
            } else {
                work.extend(split(a, z, FANOUT));
            }
        }
    } else {
        work = split(lo, hi, INITIAL_CHUNKS);
    }
    for group in leaves
        .chunks(LEAF_GROUP)
        .map(<[_]>::to_vec)
        .collect::<Vec<_>>()
    {
        diffs.extend(leaf_diffs(src, dst, p, key, &group).await?);
    }
    leaves.clear();
    while let Some((a, b)) = work.pop() {
        let range = Some((key, a, b));
        let (s, d) = tokio::join!(
            src.checksum(&p.source, &p.src_cols, p.hash, range),
            dst.checksum(&p.target, &p.dst_cols, p.hash, range)
        );
        let (s, d) = (s?, d?);
        rep.chunks_checked += 1;
        if s == d {
            continue;
        }
        if s.0.max(d.0) <= LEAF_ROWS || b - a <= 1 {
            leaves.push((a, b));
            if leaves.len() >= LEAF_GROUP {
                diffs.extend(leaf_diffs(src, dst, p, key, &leaves).await?);
                leaves.clear();
            }
        } else {
            work.extend(split(a, b, FANOUT));
        }
    }
    diffs.extend(leaf_diffs(src, dst, p, key, &leaves).await?);
    let diffs = recheck(src, dst, p, key, diffs).await?;
    for d in &diffs {
        match d.kind {
            DiffKind::Missing => rep.missing += d.rows(),
            DiffKind::Extra => rep.extra += d.rows(),
            DiffKind::Changed => rep.changed += 1,
            DiffKind::ChangedDuringCheck => rep.changed_during_check += 1,
        }
    }
    rep.diffs = diffs;
    rep.seconds = started.elapsed().as_secs_f64();
    Ok(rep)
}

/// The first pass over one side: `(count, checksum)` per bucket of `width` keys from `lo`.
/// A MySQL side (or PostgreSQL with parallel query off) works through [`SLICES`] slices of
/// the key range on [`CONNECTIONS`] connections (one, if no more can be opened); PostgreSQL
/// otherwise spreads one query over its own parallel workers.
async fn bucket_pass(
    db: &mut Db,
    t: &Table,
    cols: &[Column],
    how: RowHash,
    key: &str,
    (lo, hi, width): (i128, i128, i128),
) -> Result<HashMap<i128, (u64, String)>> {
    let buckets = (hi - lo + width - 1) / width;
    if db.runs_queries_in_parallel() || db.is_local() || buckets < 2 {
        return db
            .bucket_checksums(t, cols, how, key, (lo, hi, width))
            .await;
    }
    let mut forks = Vec::new();
    for _ in 1..CONNECTIONS {
        match db.fork().await {
            Ok(Some(f)) => forks.push(f),
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "No extra connection; hashing on one.");
                break;
            }
        }
    }
    // Many more slices than connections: keys are rarely spread evenly over their range, and
    // a connection that is done takes the next slice.
    let n = SLICES.min(buckets);
    let queue: std::sync::Mutex<Vec<(i128, i128)>> = std::sync::Mutex::new(
        (0..n)
            .rev()
            .map(|i| (buckets * i / n, buckets * (i + 1) / n))
            .collect(),
    );
    let mut conns: Vec<&mut Db> = vec![db];
    conns.extend(forks.iter_mut());
    let workers = conns.into_iter().map(|conn| {
        let queue = &queue;
        async move {
            let mut out = HashMap::new();
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| Error::internal("slice queue"))?
                    .pop();
                let Some((b0, b1)) = next else { break };
                let (a, z) = (lo + b0 * width, (lo + b1 * width).min(hi));
                let m = conn
                    .bucket_checksums(t, cols, how, key, (a, z, width))
                    .await?;
                out.extend(m.into_iter().map(|(b, v)| (b + b0, v)));
            }
            Ok::<_, Error>(out)
        }
    });
    let parts = futures::future::try_join_all(workers).await;
    for f in forks {
        f.close().await;
    }
    Ok(parts?.into_iter().flatten().collect())
}

/// Reads the rows of differing leaf ranges from both sides and compares them by key.
async fn leaf_diffs(
    src: &mut Db,
    dst: &mut Db,
    p: &Pair,
    key: &str,
    leaves: &[(i128, i128)],
) -> Result<Vec<RowDiff>> {
    if leaves.is_empty() {
        return Ok(Vec::new());
    }
    let (s, d) = tokio::join!(
        src.prefetch(&p.source, key, &p.src_cols, leaves),
        dst.prefetch(&p.target, key, &p.dst_cols, leaves)
    );
    s?;
    d?;
    let mut diffs = Vec::new();
    // Rows are compared by key, so several ranges can be read in one query.
    for ranges in leaves.chunks(RANGES_PER_QUERY) {
        let (s_rows, d_rows) = tokio::join!(
            src.rows(&p.source, key, &p.src_cols, Which::Ranges(ranges), false),
            dst.rows(&p.target, key, &p.dst_cols, Which::Ranges(ranges), false)
        );
        diffs.extend(diff_rows(&s_rows?, &d_rows?, &p.src_cols));
    }
    // A local side keeps only the differing rows, for the re-check.
    let keys: BTreeSet<i128> = diffs.iter().map(|d: &RowDiff| d.key).collect();
    src.keep_only(&keys);
    dst.keep_only(&keys);
    Ok(diffs)
}

/// Cuts `[lo, hi)` into up to `n` non-empty ranges, returned last-first so that popping
/// visits them in key order.
fn split(lo: i128, hi: i128, n: i128) -> Vec<(i128, i128)> {
    let width = hi - lo;
    let step = (width + n - 1) / n;
    let step = step.max(1);
    let mut out = Vec::new();
    let mut a = lo;
    while a < hi {
        let b = (a + step).min(hi);
        out.push((a, b));
        a = b;
    }
    out.reverse();
    out
}

/// The differences between the rows of one range, in key order. A key either side holds
/// more than once is compared as a multiset of rows (see [`crate::RowDiff::copies`]).
pub fn diff_rows(src: &Rows, dst: &Rows, cols: &[Column]) -> Vec<RowDiff> {
    let keys: BTreeSet<i128> = src.keys().chain(dst.keys()).copied().collect();
    keys.into_iter()
        .filter_map(|k| {
            let none = Vec::new();
            let s = src.get(&k).unwrap_or(&none);
            let d = dst.get(&k).unwrap_or(&none);
            match (s.as_slice(), d.as_slice()) {
                ([], []) => None,
                ([_], []) => Some(RowDiff::new(k, DiffKind::Missing, Vec::new())),
                ([], [_]) => Some(RowDiff::new(k, DiffKind::Extra, Vec::new())),
                ([a], [b]) if a != b => Some(RowDiff::new(
                    k,
                    DiffKind::Changed,
                    changed_columns(cols, s, d),
                )),
                ([_], [_]) => None,
                _ => duplicated(k, s, d, cols),
            }
        })
        .collect()
}

/// A key either side holds more than once: the difference between the two multisets of
/// rows, if any.
fn duplicated(k: i128, s: &[Row], d: &[Row], cols: &[Column]) -> Option<RowDiff> {
    let (mut a, mut b) = (s.to_vec(), d.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    if a == b {
        return None;
    }
    let kind = match d.len().cmp(&s.len()) {
        std::cmp::Ordering::Greater => DiffKind::Extra,
        std::cmp::Ordering::Less => DiffKind::Missing,
        std::cmp::Ordering::Equal => DiffKind::Changed,
    };
    let columns = if kind == DiffKind::Changed {
        changed_columns(cols, s, d)
    } else {
        Vec::new()
    };
    let mut r = RowDiff::new(k, kind, columns);
    r.copies = Some(Copies {
        source: s.len() as u64,
        target: d.len() as u64,
    });
    Some(r)
}

/// The columns whose values differ between the rows of one key on the two sides (compared
/// as multisets of values when a side holds several rows).
fn changed_columns(cols: &[Column], s: &[Row], d: &[Row]) -> Vec<String> {
    fn values(rows: &[Row], i: usize) -> Vec<Option<&str>> {
        let mut v: Vec<Option<&str>> = rows
            .iter()
            .map(|r| r.get(i).and_then(|x| x.as_deref()))
            .collect();
        v.sort_unstable();
        v
    }
    cols.iter()
        .enumerate()
        .filter(|(i, _)| values(s, *i) != values(d, *i))
        .map(|(_, c)| c.name.clone())
        .collect()
}

/// Reads the differing rows once more from both sides. A row that now agrees is dropped
/// (the target caught up); a row whose values moved between the two reads on either side
/// is reported as [`DiffKind::ChangedDuringCheck`]; the others stand.
async fn recheck(
    src: &mut Db,
    dst: &mut Db,
    p: &Pair,
    key: &str,
    diffs: Vec<RowDiff>,
) -> Result<Vec<RowDiff>> {
    let mut out = Vec::with_capacity(diffs.len());
    for batch in diffs.chunks(KEYS_PER_QUERY) {
        let keys: Vec<i128> = batch.iter().map(|d| d.key).collect();
        let (s, d) = tokio::join!(
            src.rows(&p.source, key, &p.src_cols, Which::Keys(&keys), false),
            dst.rows(&p.target, key, &p.dst_cols, Which::Keys(&keys), false)
        );
        let (s, d) = (s?, d?);
        let now: std::collections::HashMap<i128, RowDiff> = diff_rows(&s, &d, &p.src_cols)
            .into_iter()
            .map(|r| (r.key, r))
            .collect();
        for first in batch {
            match now.get(&first.key) {
                None => {}
                Some(again)
                    if again.kind == first.kind
                        && again.columns == first.columns
                        && again.copies == first.copies =>
                {
                    out.push(first.clone());
                }
                Some(again) => {
                    let mut r = again.clone();
                    r.kind = DiffKind::ChangedDuringCheck;
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::ColKind;

    #[test]
    fn split_covers_the_range_in_order() {
        let mut parts = split(0, 100, 16);
        parts.reverse();
        assert_eq!(parts.first(), Some(&(0, 7)));
        assert_eq!(parts.last().map(|p| p.1), Some(100));
        assert!(parts.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(split(5, 6, 16), vec![(5, 6)]);
    }

    #[test]
    fn diff_names_changed_columns() {
        let cols = vec![
            Column::new("a", ColKind::Int, ""),
            Column::new("b", ColKind::Text, ""),
        ];
        let row = |a: &str, b: Option<&str>| vec![Some(a.to_string()), b.map(str::to_string)];
        let src: Rows = [
            (1, vec![row("1", Some("x"))]),
            (2, vec![row("2", None)]),
            (3, vec![row("3", Some(""))]),
        ]
        .into_iter()
        .collect();
        let dst: Rows = [
            (2, vec![row("2", Some(""))]),
            (3, vec![row("3", Some(""))]),
            (4, vec![row("4", None)]),
        ]
        .into_iter()
        .collect();
        let d = diff_rows(&src, &dst, &cols);
        assert_eq!(d.len(), 3);
        assert_eq!((d[0].key, d[0].kind), (1, DiffKind::Missing));
        assert_eq!((d[1].key, d[1].kind), (2, DiffKind::Changed));
        assert_eq!(d[1].columns, vec!["b".to_string()]);
        assert_eq!((d[2].key, d[2].kind), (4, DiffKind::Extra));
    }

    #[test]
    fn duplicated_keys_compare_as_multisets() {
        let cols = vec![Column::new("v", ColKind::Text, "")];
        let r = |v: &str| vec![Some(v.to_string())];
        let src: Rows = [
            (1, vec![r("a")]),
            (2, vec![r("b")]),
            (3, vec![r("c"), r("c")]),
        ]
        .into_iter()
        .collect();
        let dst: Rows = [
            (1, vec![r("a"), r("a")]),
            (2, vec![r("b")]),
            (3, vec![r("c"), r("x")]),
            (4, vec![r("d"), r("d")]),
        ]
        .into_iter()
        .collect();
        let d = diff_rows(&src, &dst, &cols);
        let copies = |s, t| {
            Some(Copies {
                source: s,
                target: t,
            })
        };
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(
            (d[0].key, d[0].kind, d[0].copies),
            (1, DiffKind::Extra, copies(1, 2))
        );
        assert_eq!(d[0].rows(), 1);
        assert_eq!((d[1].key, d[1].kind), (3, DiffKind::Changed));
        assert_eq!(d[1].columns, vec!["v".to_string()]);
        assert_eq!(
            (d[2].key, d[2].kind, d[2].copies),
            (4, DiffKind::Extra, copies(0, 2))
        );
        assert_eq!(d[2].rows(), 2);
        // The same rows in another order agree.
        let again: Rows = [(3, vec![r("c"), r("c")])].into_iter().collect();
        assert!(
            diff_rows(
                &src.clone().into_iter().filter(|e| e.0 == 3).collect(),
                &again,
                &cols
            )
            .is_empty()
        );
    }
}
