//! `--repair`: the statements that make the target's differing rows equal to the source's.
//!
//! Missing rows are inserted, extra rows deleted, changed rows updated (only their differing
//! columns). Values are read from the source by key (floats at full precision) and written
//! as literals cast to the target column's declared type, so the same statements are both
//! run and shown by `--dry-run`. Rows that changed during the check are left alone. A SQLite
//! target is written through the SQLite sink's encoder instead ([`sqlite`]).

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use sluice_core::{Error, Result};

use crate::canon::{ColKind, Column, Dialect, quote_ident, quote_literal};
use crate::db::{Db, Which};
use crate::diff::{KEYS_PER_QUERY, Pair};
use crate::local::Local;
use crate::values;
use crate::{DiffKind, RowDiff};

/// A value as a literal for a target column.
fn literal(d: Dialect, src: &Column, dst: &Column, v: Option<&str>) -> String {
    let Some(v) = v else {
        return "NULL".to_string();
    };
    let hex = src.kind == ColKind::Binary;
    // An array's repair value is a JSON array (see `canon::repair_expr`): a PostgreSQL
    // array column is built from its elements; MySQL stores the JSON itself.
    if let (Dialect::Postgres, Some(_), Some(e)) = (d, &dst.elem, dst.form.elem) {
        let x = quote_ident(d, "__sluice_v");
        let item = if e.kind == ColKind::Binary {
            format!("decode({x}, 'hex')")
        } else {
            x.clone()
        };
        return format!(
            "(SELECT coalesce(array_agg({item} ORDER BY \"__sluice_i\"), '{{}}') \
             FROM json_array_elements_text({}::json) WITH ORDINALITY AS \"__sluice_a\"({x}, \
             \"__sluice_i\"))::{}",
            quote_literal(d, v),
            dst.sql_type
        );
    }
    match d {
        Dialect::Postgres if dst.kind == ColKind::Binary && hex => {
            format!("decode({}, 'hex')", quote_literal(d, v))
        }
        Dialect::Postgres => format!("{}::{}", quote_literal(d, v), dst.sql_type),
        Dialect::Mysql if dst.kind == ColKind::Binary && hex => {
            format!("X{}", quote_literal(d, v))
        }
        Dialect::Mysql => quote_literal(d, v),
    }
}

/// The repair statements for one table.
pub async fn statements(
    src: &mut Db,
    d: Dialect,
    p: &Pair,
    diffs: &[RowDiff],
) -> Result<Vec<String>> {
    let Some(key) = p.key.as_deref() else {
        return Ok(Vec::new());
    };
    let t = p.target.sql(d);
    let kq = quote_ident(d, key);
    let mut out = Vec::new();
    // Extra rows go, and so do all rows of a duplicated key: the source's rows of that key
    // are inserted afresh below.
    let delete: Vec<String> = diffs
        .iter()
        .filter(|r| r.kind == DiffKind::Extra || r.copies.is_some())
        .map(|r| r.key.to_string())
        .collect();
    for batch in delete.chunks(KEYS_PER_QUERY) {
        out.push(format!(
            "DELETE FROM {t} WHERE {kq} IN ({})",
            batch.join(", ")
        ));
    }
    let wanted: Vec<&RowDiff> = diffs
        .iter()
        .filter(|r| matches!(r.kind, DiffKind::Missing | DiffKind::Changed) || r.copies.is_some())
        .collect();
    let cols: Vec<String> = p.dst_cols.iter().map(|c| quote_ident(d, &c.name)).collect();
    for batch in wanted.chunks(KEYS_PER_QUERY) {
        let keys: Vec<i128> = batch.iter().map(|r| r.key).collect();
        let rows = src
            .rows(&p.source, key, &p.src_cols, Which::Keys(&keys), true)
            .await?;
        for r in batch {
            // A row gone from the source since the check is left for the next run.
            let Some(copies) = rows.get(&r.key) else {
                continue;
            };
            let lit = |values: &[Option<String>], i: usize| {
                literal(
                    d,
                    &p.src_cols[i],
                    &p.dst_cols[i],
                    values.get(i).and_then(|v| v.as_deref()),
                )
            };
            if r.kind == DiffKind::Missing || r.copies.is_some() {
                for values in copies {
                    let vals: Vec<String> = (0..p.dst_cols.len()).map(|i| lit(values, i)).collect();
                    out.push(format!(
                        "INSERT INTO {t} ({}) VALUES ({})",
                        cols.join(", "),
                        vals.join(", ")
                    ));
                }
            } else if let Some(values) = copies.first() {
                let sets: Vec<String> = p
                    .src_cols
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| r.columns.contains(&c.name))
                    .map(|(i, _)| format!("{} = {}", cols[i], lit(values, i)))
                    .collect();
                if !sets.is_empty() {
                    out.push(format!(
                        "UPDATE {t} SET {} WHERE {kq} = {}",
                        sets.join(", "),
                        r.key
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Repairs a SQLite target, in one transaction per table: deletes the extra rows, inserts
/// the missing ones and updates the changed ones (every compared column) with the source's
/// current values, written with the SQLite sink's own encodings (so they read back as the
/// sink wrote them).
/// Returns the statements, values shown as literals; with `dry_run` changes nothing.
pub async fn sqlite(
    src: &mut Db,
    dst: &Local,
    path: &Path,
    p: &Pair,
    diffs: &[RowDiff],
    dry_run: bool,
) -> Result<Vec<String>> {
    let Some(key) = p.key.as_deref() else {
        return Ok(Vec::new());
    };
    let table = dst.table_name(&p.target).ok_or_else(|| {
        Error::schema(format!(
            "table {} not found in the SQLite target",
            p.target_name
        ))
    })?;
    let logical = dst.logical_types(&p.target);
    let types = p
        .dst_cols
        .iter()
        .map(|c| {
            logical
                .iter()
                .find(|(n, _)| *n == c.name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| Error::schema(format!("column {} not found", c.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let as_i64 =
        |k: i128| i64::try_from(k).map_err(|_| Error::data(format!("key {k} does not fit SQLite")));
    // Extra rows go, and so do all rows of a duplicated key (re-inserted from the source).
    let mut delete: Vec<i64> = Vec::new();
    for r in diffs
        .iter()
        .filter(|r| r.kind == DiffKind::Extra || r.copies.is_some())
    {
        delete.push(as_i64(r.key)?);
    }
    // The key as the target names it (columns are matched ignoring case).
    let dst_key = p
        .src_cols
        .iter()
        .position(|c| c.name == key)
        .map_or(key, |i| p.dst_cols[i].name.as_str());
    let t = sqlite_ident(&table);
    let names: Vec<String> = p.dst_cols.iter().map(|c| sqlite_ident(&c.name)).collect();
    let mut out = Vec::new();
    for chunk in delete.chunks(KEYS_PER_QUERY) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        out.push(format!(
            "DELETE FROM {t} WHERE {} IN ({})",
            sqlite_ident(dst_key),
            list.join(", ")
        ));
    }
    // Missing rows are inserted, changed rows updated in place (columns only the target has
    // keep their values), with the source's current values.
    let mut batches = Vec::new();
    for kind in [DiffKind::Missing, DiffKind::Changed] {
        // A duplicated key counts as missing: its rows were all deleted above.
        let wanted: Vec<i128> = diffs
            .iter()
            .filter(|r| match kind {
                DiffKind::Missing => r.kind == kind || r.copies.is_some(),
                _ => r.kind == kind && r.copies.is_none(),
            })
            .map(|r| r.key)
            .collect();
        let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); p.dst_cols.len()];
        for batch in wanted.chunks(KEYS_PER_QUERY) {
            let rows = src
                .rows(&p.source, key, &p.src_cols, Which::Keys(batch), true)
                .await?;
            for k in batch {
                // A row gone from the source since the check is left for the next run.
                let Some(copies) = rows.get(k) else { continue };
                let copies = if kind == DiffKind::Missing {
                    &copies[..]
                } else {
                    &copies[..1]
                };
                for values in copies {
                    let shown: Vec<String> = values
                        .iter()
                        .zip(&p.src_cols)
                        .map(|(v, c)| match v {
                            None => "NULL".to_string(),
                            Some(v) if c.kind == ColKind::Binary => format!("X'{v}'"),
                            Some(v) => quote_literal(Dialect::Postgres, v),
                        })
                        .collect();
                    out.push(if kind == DiffKind::Missing {
                        format!(
                            "INSERT INTO {t} ({}) VALUES ({})",
                            names.join(", "),
                            shown.join(", ")
                        )
                    } else {
                        let sets: Vec<String> = names
                            .iter()
                            .zip(&shown)
                            .map(|(n, v)| format!("{n} = {v}"))
                            .collect();
                        format!(
                            "UPDATE {t} SET {} WHERE {} = {k}",
                            sets.join(", "),
                            sqlite_ident(dst_key)
                        )
                    });
                    for (i, v) in values.iter().enumerate() {
                        columns[i].push(v.clone());
                    }
                }
            }
        }
        batches.push(text_batch(p, &types, &columns)?);
    }
    let updates = batches
        .pop()
        .ok_or_else(|| Error::internal("no update batch"))?;
    let inserts = batches
        .pop()
        .ok_or_else(|| Error::internal("no insert batch"))?;
    if !dry_run && !out.is_empty() {
        let (path, key) = (path.to_path_buf(), dst_key.to_string());
        tokio::task::spawn_blocking(move || {
            sluice_connectors::sqlite::repair_rows(
                &path,
                &table,
                &key,
                &delete,
                &types,
                (&inserts, &updates),
            )
        })
        .await
        .map_err(|e| Error::internal(format!("repair task: {e}")))?
        .map_err(|e| {
            e.with_hint("nothing was changed in this table; fix the cause and run again")
        })?;
    }
    Ok(out)
}

/// A batch of the pair's target columns, typed `types`, from the source's repair texts.
fn text_batch(
    p: &Pair,
    types: &[sluice_core::LogicalType],
    columns: &[Vec<Option<String>>],
) -> Result<RecordBatch> {
    let arrays = columns
        .iter()
        .zip(types)
        .zip(&p.src_cols)
        .map(|((texts, t), c)| {
            let refs: Vec<Option<&str>> = texts.iter().map(Option::as_deref).collect();
            values::text_array(&refs, t, c.kind == ColKind::Binary)
                .map_err(|e| e.context(format!("column {}", c.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let fields: Vec<Field> = p
        .dst_cols
        .iter()
        .zip(&arrays)
        .map(|(c, a)| Field::new(&c.name, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::internal(format!("repair batch: {e}")))
}

/// A SQLite identifier in double quotes.
fn sqlite_ident(s: &str) -> String {
    quote_ident(Dialect::Postgres, s)
}

/// Runs `stmts` in one transaction; rolls back on the first failure.
pub async fn apply(dst: &mut Db, stmts: &[String]) -> Result<()> {
    if stmts.is_empty() {
        return Ok(());
    }
    let begin = match dst.dialect() {
        Dialect::Postgres => "BEGIN",
        Dialect::Mysql => "START TRANSACTION",
    };
    dst.exec(begin).await?;
    for s in stmts {
        if let Err(e) = dst.exec(s).await {
            let _ = dst.exec("ROLLBACK").await;
            return Err(
                e.with_hint("nothing was changed in this table; fix the cause and run again")
            );
        }
    }
    dst.exec("COMMIT").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: ColKind, ty: &str) -> Column {
        Column::new("c", kind, ty)
    }

    #[test]
    fn literals_cast_to_the_target_type() {
        let pg = Dialect::Postgres;
        let my = Dialect::Mysql;
        let b = col(ColKind::Binary, "bytea");
        assert_eq!(literal(pg, &b, &b, Some("00ff")), "decode('00ff', 'hex')");
        assert_eq!(
            literal(my, &b, &col(ColKind::Binary, "blob"), Some("00ff")),
            "X'00ff'"
        );
        let n = col(ColKind::Decimal, "numeric(10,2)");
        assert_eq!(literal(pg, &n, &n, Some("1.5")), "'1.5'::numeric(10,2)");
        assert_eq!(literal(my, &n, &n, None), "NULL");
        let t = col(ColKind::Text, "text");
        assert_eq!(literal(my, &t, &t, Some("a'b\\")), "'a\\'b\\\\'");
    }
}
