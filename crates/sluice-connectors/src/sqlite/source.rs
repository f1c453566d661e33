//! Reading SQLite tables: discovery, rowid-range splits, batched reads with resume.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use sluice_core::batch::{Position, Split};
use sluice_core::source::{BatchSender, Source, SourceBatch, SourceTable};
use sluice_core::{Error, ErrorKind, LogicalType, Result, TableId, TableSchema};

use super::config::SourcePlan;
use super::decode::{ColumnBuilder, describe};
use super::position::{SqlitePosition, SqliteSplit};
use super::types::{logical_from_decl, quote_ident};
use sluice_core::Persisted;

/// What `tables()` learned about one table, for `splits()` and `read()`.
#[derive(Debug, Clone)]
struct TableMeta {
    name: String,
    schema: TableSchema,
    types: Vec<LogicalType>,
    /// The name that reaches the rowid (`rowid`, `_rowid_` or `oid`), if the table has one
    /// and no column shadows all three. `None`: read in primary-key order with an offset.
    rowid: Option<&'static str>,
}

/// The SQLite source. Built by [`SqliteSourceConfig::build`](super::SqliteSourceConfig::build).
pub struct SqliteSource {
    plan: SourcePlan,
    tables: Mutex<HashMap<TableId, Arc<TableMeta>>>,
}

impl SqliteSource {
    pub(crate) fn new(plan: SourcePlan) -> Self {
        SqliteSource {
            plan,
            tables: Mutex::new(HashMap::new()),
        }
    }

    fn meta(&self, id: &TableId) -> Result<Arc<TableMeta>> {
        self.tables
            .lock()
            .map_err(|_| Error::internal("sqlite source: table cache poisoned"))?
            .get(id)
            .cloned()
            .ok_or_else(|| {
                Error::internal(format!(
                    "table {id} was not listed by tables() before reading"
                ))
            })
    }
}

/// Opens an existing database read-only; a missing file is a config error (the job names a
/// database that does not exist), never created.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.exists() {
        return Err(
            Error::config(format!("sqlite database {} does not exist", path.display())).with_hint(
                "check `url` in [source]: the path is relative to the current directory \
                 (sqlite://data/shop.db) unless it starts with a third slash (sqlite:///abs.db)",
            ),
        );
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Error::io(format!(
            "cannot open sqlite database {}: {e}",
            path.display()
        ))
        .with_source(e)
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(|e| sql_err(e, path.display()))?;
    // A file that is not a database fails here rather than on the first read.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(|e| sql_err(e, path.display()))?;
    Ok(conn)
}

/// A rusqlite error as a Sluice error (busy/locked is transient).
pub(crate) fn sql_err(e: rusqlite::Error, what: impl std::fmt::Display) -> Error {
    use rusqlite::ffi::ErrorCode as C;
    let kind = match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => ErrorKind::Connection,
        Some(
            C::DiskFull | C::CannotOpen | C::ReadOnly | C::PermissionDenied | C::SystemIoFailure,
        ) => ErrorKind::Io,
        Some(C::NotADatabase | C::DatabaseCorrupt) => ErrorKind::Io,
        Some(C::ConstraintViolation | C::TypeMismatch | C::TooBig) => ErrorKind::Data,
        _ => ErrorKind::Internal,
    };
    let hint = match e.sqlite_error_code() {
        Some(C::NotADatabase) => Some("the file is not a SQLite database; check `url`"),
        Some(C::DatabaseBusy | C::DatabaseLocked) => {
            Some("another process holds the database lock; retry or stop that process")
        }
        Some(C::DiskFull) => Some("the disk is full; free space and run again"),
        _ => None,
    };
    let mut err = Error::new(kind, format!("{what}: {e}"));
    if let Some(h) = hint {
        err = err.with_hint(h);
    }
    err.with_source(e)
}

/// Lists the tables of `main` that the patterns select, with schemas.
fn discover(plan: &SourcePlan) -> Result<Vec<TableMeta>> {
    let path = &plan.path;
    let conn = open_read_only(path)?;
    let ctx = |e| sql_err(e, path.display());
    let mut stmt = conn
        .prepare(
            "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND name NOT LIKE '\\_sluice\\_%' ESCAPE '\\' ORDER BY name",
        )
        .map_err(ctx)?;
    let all: Vec<(String, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(ctx)?
        .collect::<rusqlite::Result<_>>()
        .map_err(ctx)?;
    let id_of = |name: &str| TableId::new(["main", name]);

    // A name without wildcards must exist.
    let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
    for p in plan.include.iter().filter(|p| !p.is_glob()) {
        if !all.iter().any(|(n, _)| p.matches(&id_of(n))) {
            let word = TableId::parse(&p.to_string()).map(|t| t.name().to_string());
            let hint = sluice_core::config::suggestion(&word.unwrap_or_default(), &names, "tables")
                .unwrap_or_default();
            return Err(Error::config(format!(
                "table {p} not found in sqlite database {}",
                path.display()
            ))
            .with_hint(hint)
            .at("tables"));
        }
    }

    let mut out = Vec::new();
    for (name, without_rowid) in all {
        let id = id_of(&name);
        if !plan.include.iter().any(|p| p.matches(&id))
            || plan.exclude.iter().any(|p| p.matches(&id))
        {
            continue;
        }
        out.push(describe_table(&conn, plan, &name, without_rowid)?);
    }
    // Every `columns` override must name a column that exists.
    for (table, column, _) in &plan.columns {
        let known = out.iter().any(|m| {
            overrides_table(table, &m.name)
                && m.schema.arrow.fields().iter().any(|f| f.name() == column)
        });
        if !known {
            return Err(Error::config(format!(
                "`columns` names {table}.{column}, which is not a column of a table being read"
            ))
            .with_hint("check the spelling in `columns`; keys are `table.column`"));
        }
    }
    Ok(out)
}

/// Whether a `columns` key's table part names the table `name`.
fn overrides_table(key: &TableId, name: &str) -> bool {
    key.name() == name && key.namespace().is_none_or(|ns| ns == "main")
}

fn describe_table(
    conn: &Connection,
    plan: &SourcePlan,
    name: &str,
    without_rowid: bool,
) -> Result<TableMeta> {
    let id = TableId::new(["main", name]);
    let ctx = |e| sql_err(e, format!("table {id}"));
    let mut stmt = conn
        .prepare(
            "SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid",
        )
        .map_err(ctx)?;
    let cols: Vec<(String, String, bool, i64, i64)> = stmt
        .query_map([name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(ctx)?
        .collect::<rusqlite::Result<_>>()
        .map_err(ctx)?;
    let cols: Vec<_> = cols.into_iter().filter(|c| c.4 != 1).collect();
    let pk_count = cols.iter().filter(|c| c.3 > 0).count();
    let mut fields = Vec::new();
    let mut types = Vec::new();
    for (col, decl, notnull, pk, _) in &cols {
        let t = plan
            .columns
            .iter()
            .find(|(tbl, c, _)| overrides_table(tbl, name) && c == col)
            .map(|(_, _, t)| t.clone())
            .unwrap_or_else(|| logical_from_decl(decl));
        // Rowid tables let a non-INTEGER primary key hold NULL (an old SQLite quirk).
        let rowid_alias =
            !without_rowid && *pk > 0 && pk_count == 1 && decl.eq_ignore_ascii_case("INTEGER");
        let nullable = !(*notnull || rowid_alias || (without_rowid && *pk > 0));
        fields.push(t.field(col, nullable));
        types.push(t);
    }
    let mut pk: Vec<(i64, String)> = cols
        .iter()
        .filter(|c| c.3 > 0)
        .map(|c| (c.3, c.0.clone()))
        .collect();
    pk.sort();
    let rowid = if without_rowid {
        None
    } else {
        ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|r| !cols.iter().any(|c| c.0.eq_ignore_ascii_case(r)))
    };
    let arrow: SchemaRef = Arc::new(Schema::new(fields));
    Ok(TableMeta {
        name: name.to_string(),
        schema: TableSchema {
            id,
            arrow,
            primary_key: pk.into_iter().map(|p| p.1).collect(),
        },
        types,
        rowid,
    })
}

#[async_trait]
impl Source for SqliteSource {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let plan = self.plan.clone();
        let metas = tokio::task::spawn_blocking(move || discover(&plan))
            .await
            .map_err(|e| Error::internal(format!("sqlite discovery task failed: {e}")))??;
        let path = self.plan.path.clone();
        let estimates = tokio::task::spawn_blocking({
            let metas = metas.clone();
            move || -> Result<Vec<Option<u64>>> {
                let conn = open_read_only(&path)?;
                Ok(metas.iter().map(|m| estimate_rows(&conn, m)).collect())
            }
        })
        .await
        .map_err(|e| Error::internal(format!("sqlite discovery task failed: {e}")))??;
        let mut cache = self
            .tables
            .lock()
            .map_err(|_| Error::internal("sqlite source: table cache poisoned"))?;
        let mut out = Vec::new();
        for (m, est) in metas.into_iter().zip(estimates) {
            out.push(SourceTable {
                schema: m.schema.clone(),
                estimated_rows: est,
                estimated_bytes: None,
            });
            cache.insert(m.schema.id.clone(), Arc::new(m));
        }
        Ok(out)
    }

    async fn splits(&self, table: &SourceTable) -> Result<Vec<Split>> {
        let meta = self.meta(&table.schema.id)?;
        let path = self.plan.path.clone();
        let chunk = self.plan.chunk_rows;
        tokio::task::spawn_blocking(move || make_splits(&path, &meta, chunk))
            .await
            .map_err(|e| Error::internal(format!("sqlite split task failed: {e}")))?
    }

    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let meta = self.meta(&split.table)?;
        let path = self.plan.path.clone();
        let batch_size = self.plan.batch_size;
        let id = split.id.clone();
        tokio::task::spawn_blocking(move || {
            read_split(&path, &meta, &split, resume.as_ref(), batch_size, &out)
        })
        .await
        .map_err(|e| Error::internal(format!("sqlite read task for split {id} failed: {e}")))?
    }
}

/// `max(rowid) - min(rowid) + 1`: two index lookups, an upper bound of the row count.
fn estimate_rows(conn: &Connection, m: &TableMeta) -> Option<u64> {
    let r = m.rowid?;
    let sql = format!(
        "SELECT max({r}) - min({r}) + 1 FROM {}",
        quote_ident(&m.name)
    );
    conn.query_row(&sql, [], |row| row.get::<_, Option<i64>>(0))
        .ok()
        .map(|n| n.unwrap_or(0).max(0) as u64)
}

/// Rowid tables: `chunk_rows`-sized rowid ranges `(lo, hi]`, the first open below and the
/// last open above (rows added meanwhile are read too). Without rowid: one split.
fn make_splits(path: &Path, m: &TableMeta, chunk_rows: u64) -> Result<Vec<Split>> {
    let id = &m.schema.id;
    let split = |index: usize, est: Option<u64>, detail: serde_json::Value| Split {
        id: format!("{id}#{index}"),
        table: id.clone(),
        index,
        estimated_rows: est,
        estimated_bytes: None,
        detail,
        continues: false,
        start: None,
    };
    let conn = open_read_only(path)?;
    let Some(r) = m.rowid else {
        let count: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", quote_ident(&m.name)),
                [],
                |x| x.get(0),
            )
            .map_err(|e| sql_err(e, format!("table {id}")))?;
        return Ok(vec![split(
            0,
            Some(count as u64),
            SqliteSplit::KeyOrder {
                order: "primary key".into(),
            }
            .to_json(),
        )]);
    };
    let sql = format!(
        "SELECT min({r}), max({r}), count(*) FROM {}",
        quote_ident(&m.name)
    );
    let (lo, hi, count): (Option<i64>, Option<i64>, i64) = conn
        .query_row(&sql, [], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)))
        .map_err(|e| sql_err(e, format!("table {id}")))?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(vec![split(
            0,
            Some(0),
            SqliteSplit::Rowid { lo: None, hi: None }.to_json(),
        )]);
    };
    let count = count as u64;
    let n = count.div_ceil(chunk_rows).max(1);
    let span = hi as i128 - lo as i128 + 1;
    let step = (span + n as i128 - 1) / n as i128;
    let bound = |i: u64| (lo as i128 - 1 + i as i128 * step) as i64;
    Ok((0..n)
        .map(|i| {
            let from = (i > 0).then(|| bound(i));
            let to = (i + 1 < n).then(|| bound(i + 1));
            let detail = SqliteSplit::Rowid { lo: from, hi: to }.to_json();
            split(i as usize, Some(count / n), detail)
        })
        .collect())
}

fn read_split(
    path: &Path,
    m: &TableMeta,
    split: &Split,
    resume: Option<&Position>,
    batch_size: usize,
    out: &BatchSender,
) -> Result<()> {
    let id = &m.schema.id;
    let conn = open_read_only(path)?;
    let cols: Vec<String> = m
        .schema
        .arrow
        .fields()
        .iter()
        .map(|f| quote_ident(f.name()))
        .collect();
    let table = quote_ident(&m.name);
    let at = resume
        .map(|p| SqlitePosition::from_value(&split.id, &p.value))
        .transpose()?;
    // Column 0 is the row's key for positions: the rowid, or a running offset.
    let (sql, params): (String, Vec<i64>) = match m.rowid {
        Some(r) => {
            let (lo, hi) = match SqliteSplit::from_detail(split)? {
                SqliteSplit::Rowid { lo, hi } => (lo, hi),
                SqliteSplit::KeyOrder { .. } => {
                    return Err(Error::config(format!(
                        "split {} was planned in key order, but table {id} now has a rowid",
                        split.id
                    ))
                    .with_hint("run the job with --from-scratch"));
                }
            };
            let after = match at {
                Some(SqlitePosition::Rowid { rowid }) => Some(rowid),
                _ => None,
            };
            let lo = match (lo, after) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let mut conds = Vec::new();
            let mut params = Vec::new();
            if let Some(lo) = lo {
                conds.push(format!("{r} > ?{}", params.len() + 1));
                params.push(lo);
            }
            if let Some(hi) = hi {
                conds.push(format!("{r} <= ?{}", params.len() + 1));
                params.push(hi);
            }
            let filter = if conds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conds.join(" AND "))
            };
            let select = if cols.is_empty() {
                String::new()
            } else {
                format!(", {}", cols.join(", "))
            };
            (
                format!("SELECT {r}{select} FROM {table}{filter} ORDER BY {r}"),
                params,
            )
        }
        None => {
            let offset = match at {
                Some(SqlitePosition::Offset { offset }) => Some(offset),
                _ => None,
            };
            let order: Vec<String> = m
                .schema
                .primary_key
                .iter()
                .map(|c| quote_ident(c))
                .collect();
            let order = if order.is_empty() {
                cols.clone()
            } else {
                order
            };
            (
                format!(
                    "SELECT 0, {} FROM {table} ORDER BY {} LIMIT -1 OFFSET ?1",
                    cols.join(", "),
                    order.join(", ")
                ),
                vec![offset.unwrap_or(0)],
            )
        }
    };
    let ctx = |e| sql_err(e, format!("table {id}, split {}", split.id));
    let mut stmt = conn.prepare(&sql).map_err(ctx)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(ctx)?;
    let mut builders: Vec<ColumnBuilder> = m
        .types
        .iter()
        .map(|t| ColumnBuilder::new(t, batch_size))
        .collect();
    let mut in_batch = 0usize;
    let mut last_rowid = 0i64;
    let mut offset = match m.rowid {
        None => params[0],
        Some(_) => 0,
    };
    let flush = |builders: &mut Vec<ColumnBuilder>, last_rowid: i64, offset: i64| -> Result<bool> {
        let arrays = builders.iter_mut().map(|b| b.finish()).collect();
        let data = RecordBatch::try_new(m.schema.arrow.clone(), arrays)
            .map_err(|e| Error::from(e).context(format!("table {id}, split {}", split.id)))?;
        let pos = match m.rowid {
            Some(_) => SqlitePosition::Rowid { rowid: last_rowid },
            None => SqlitePosition::Offset { offset },
        }
        .to_json();
        let batch = SourceBatch {
            data,
            position: Position::new(split.id.clone(), pos),
            bytes: 0,
        };
        match out.blocking_send(batch) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::Stopped => Ok(false),
            Err(e) => Err(e),
        }
    };
    while let Some(row) = rows.next().map_err(ctx)? {
        let key: i64 = row.get(0).map_err(ctx)?;
        for (i, b) in builders.iter_mut().enumerate() {
            let v = row.get_ref(i + 1).map_err(ctx)?;
            if let Err(reason) = b.append(v) {
                let col = m.schema.arrow.field(i).name();
                let at = match m.rowid {
                    Some(_) => format!("rowid {key}"),
                    None => format!("row {} in primary-key order", offset + 1),
                };
                return Err(Error::data(format!(
                    "table {id}, column {col:?}, {at}: {} does not fit {}: {reason}",
                    describe(v),
                    m.types[i]
                ))
                .with_hint(format!(
                    "SQLite does not enforce declared types; to read this column as it is \
                     stored, set columns = {{ \"{}.{}\" = \"text\" }} in [source]",
                    m.name.replace('"', "\\\""),
                    col.replace('"', "\\\"")
                )));
            }
        }
        last_rowid = key;
        offset += 1;
        in_batch += 1;
        if in_batch == batch_size {
            in_batch = 0;
            if !flush(&mut builders, last_rowid, offset)? || out.is_stopping() {
                return Ok(());
            }
        }
    }
    if in_batch > 0 {
        flush(&mut builders, last_rowid, offset)?;
    }
    Ok(())
}
