//! `--repair`: the statements that make the target's differing rows equal to the source's.
//!
//! Missing rows are inserted, extra rows deleted, changed rows updated (only their differing
//! columns). Values are read from the source by key (floats at full precision) and written
//! as literals cast to the target column's declared type, so the same statements are both
//! run and shown by `--dry-run`. Rows that changed during the check are left alone.

use sluice_core::Result;

use crate::canon::{ColKind, Column, Dialect, quote_ident, quote_literal};
use crate::db::{Db, Which};
use crate::diff::{KEYS_PER_QUERY, Pair};
use crate::{DiffKind, RowDiff};

/// A value as a literal for a target column.
fn literal(d: Dialect, src: &Column, dst: &Column, v: Option<&str>) -> String {
    let Some(v) = v else {
        return "NULL".to_string();
    };
    let hex = src.kind == ColKind::Binary;
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
    let extra: Vec<String> = diffs
        .iter()
        .filter(|r| r.kind == DiffKind::Extra)
        .map(|r| r.key.to_string())
        .collect();
    for batch in extra.chunks(KEYS_PER_QUERY) {
        out.push(format!(
            "DELETE FROM {t} WHERE {kq} IN ({})",
            batch.join(", ")
        ));
    }
    let wanted: Vec<&RowDiff> = diffs
        .iter()
        .filter(|r| matches!(r.kind, DiffKind::Missing | DiffKind::Changed))
        .collect();
    let cols: Vec<String> = p.dst_cols.iter().map(|c| quote_ident(d, &c.name)).collect();
    for batch in wanted.chunks(KEYS_PER_QUERY) {
        let keys: Vec<i128> = batch.iter().map(|r| r.key).collect();
        let rows = src
            .rows(&p.source, key, &p.src_cols, Which::Keys(&keys), true)
            .await?;
        for r in batch {
            // A row gone from the source since the check is left for the next run.
            let Some(values) = rows.get(&r.key) else {
                continue;
            };
            let lit = |i: usize| {
                literal(
                    d,
                    &p.src_cols[i],
                    &p.dst_cols[i],
                    values.get(i).and_then(|v| v.as_deref()),
                )
            };
            if r.kind == DiffKind::Missing {
                let vals: Vec<String> = (0..p.dst_cols.len()).map(lit).collect();
                out.push(format!(
                    "INSERT INTO {t} ({}) VALUES ({})",
                    cols.join(", "),
                    vals.join(", ")
                ));
            } else {
                let sets: Vec<String> = p
                    .src_cols
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| r.columns.contains(&c.name))
                    .map(|(i, _)| format!("{} = {}", cols[i], lit(i)))
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
