//! The PostgreSQL [`Source`]: one snapshot, split by key or page ranges, read with binary COPY.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use sluice_core::config::suggestion;
use sluice_core::source::{BatchSender, Source, SourceBatch, SourceTable};
use sluice_core::types::{with_generated, with_native_type};
use sluice_core::{Error, ErrorKind, Persisted, Position, Result, Split, TableId, TableSchema};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};
use tracing::{debug, info};

use super::check::{self, Conn, PgColumn, PgRelation};
use super::config::SourcePlan;
use super::copy_decode::CopyDecoder;
use super::error::pg_error;
use super::position::{CursorPosition, KeyPosition, PgSplit, RowsPosition};
use super::types::{Dec, PgType, oid, quote_ident, quote_literal, read_mapping};

/// The alias of the table in every reading query, so ORDER BY names input columns.
const ALIAS: &str = "sluice_src";

/// The coordinator: holds the exported snapshot open until `close`.
struct Coordinator {
    conn: Conn,
    snapshot: String,
}

/// How a table is divided.
#[derive(Debug, Clone)]
enum SplitBy {
    /// An integer column (quoted).
    Key(String),
    /// Physical page ranges.
    Ctid,
    /// One split (views, queries).
    Whole,
    /// One split in (cursor, key) order.
    Incremental {
        cursor: String,
        cursor_type: String,
        key: Vec<(String, String)>,
    },
}

/// Which rows of a table in an inheritance tree (`INHERITS`) the source reads. `SELECT … FROM
/// parent` also returns the rows of every child; a child that is copied as a table of its own
/// must not be read through its parent as well. `sluice verify` reads each source table with
/// the same scope ([`crate::postgres::PostgresSourceConfig::read_scopes`]), so that it compares
/// the rows the copy wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadScope {
    /// The table with all its descendants (no inheritance, or none of them is selected).
    Whole,
    /// `FROM ONLY`: the table's own rows.
    Only,
    /// The rows stored in these tables (`tableoid`, the table's own oid first): the table
    /// itself and the descendants that go with it.
    Tables(Vec<u32>),
}

impl ReadScope {
    /// The `FROM` item reading `table` (a quoted, qualified name) with this scope:
    /// `ONLY table` for [`ReadScope::Only`], else the name.
    pub fn from_item(&self, table: &str) -> String {
        match self {
            ReadScope::Only => format!("ONLY {table}"),
            _ => table.to_string(),
        }
    }

    /// The condition a read with this scope adds to its `WHERE`, if any: `tableoid = ANY(…)`
    /// for [`ReadScope::Tables`], the column qualified by `alias` when one is given.
    pub fn condition(&self, alias: Option<&str>) -> Option<String> {
        match self {
            ReadScope::Tables(oids) => {
                let list: Vec<String> = oids.iter().map(u32::to_string).collect();
                let col = match alias {
                    Some(a) => format!("{a}.tableoid"),
                    None => "tableoid".to_string(),
                };
                Some(format!("{col} = ANY('{{{}}}'::oid[])", list.join(",")))
            }
            _ => None,
        }
    }
}

/// The [`ReadScope`] of each selected table (oids, in listing order) given the inheritance
/// `edges` (`(child, parent)`). Every row is read exactly once: by the table that stores it
/// if that is selected, else by its nearest selected ancestor (the first in listing order
/// among equally near ones, for multiple inheritance); rows with no selected ancestor are not
/// read.
fn inheritance_scopes(selected: &[u32], edges: &[(u32, u32)]) -> HashMap<u32, ReadScope> {
    use std::collections::{BTreeSet, HashSet};
    let order: HashMap<u32, usize> = selected.iter().enumerate().map(|(i, o)| (*o, i)).collect();
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (c, p) in edges {
        parents.entry(*c).or_default().push(*p);
        children.entry(*p).or_default().push(*c);
    }
    let owner = |t: u32| -> Option<u32> {
        if order.contains_key(&t) {
            return Some(t);
        }
        let mut seen = HashSet::from([t]);
        let mut frontier: Vec<u32> = parents.get(&t).cloned().unwrap_or_default();
        while !frontier.is_empty() {
            if let Some(o) = frontier
                .iter()
                .filter(|p| order.contains_key(p))
                .min_by_key(|p| order[p])
            {
                return Some(*o);
            }
            let mut next = Vec::new();
            for p in frontier {
                if seen.insert(p) {
                    next.extend(parents.get(&p).into_iter().flatten().copied());
                }
            }
            frontier = next;
        }
        None
    };
    let mut out = HashMap::new();
    for r in selected {
        let mut desc = BTreeSet::new();
        let mut stack: Vec<u32> = children.get(r).cloned().unwrap_or_default();
        while let Some(c) = stack.pop() {
            if c != *r && desc.insert(c) {
                stack.extend(children.get(&c).into_iter().flatten().copied());
            }
        }
        let owned: Vec<u32> = desc
            .iter()
            .copied()
            .filter(|d| owner(*d) == Some(*r))
            .collect();
        let scope = if owned.len() == desc.len() {
            ReadScope::Whole
        } else if owned.is_empty() {
            ReadScope::Only
        } else {
            ReadScope::Tables(std::iter::once(*r).chain(owned).collect())
        };
        out.insert(*r, scope);
    }
    out
}

/// The relations of the source database (`list_relations`), and those `tables` and
/// `exclude` select, in listing order, each with its [`ReadScope`]. A named table that does
/// not exist, or a selection that is empty, is a config error.
pub(crate) async fn select_tables(
    c: &Client,
    plan: &SourcePlan,
) -> Result<(Vec<PgRelation>, Vec<(PgRelation, ReadScope)>)> {
    let rels = check::list_relations(c).await?;
    for p in &plan.tables {
        if !p.is_glob() && !rels.iter().any(|r| p.matches(&r.id)) {
            // Suggest names written like the pattern: bare if it has no schema.
            let bare = TableId::parse(&p.to_string()).is_ok_and(|t| t.parts().len() == 1);
            let names: Vec<String> = rels
                .iter()
                .map(|r| {
                    if bare {
                        TableId::new([r.id.name()]).to_string()
                    } else {
                        r.id.to_string()
                    }
                })
                .collect();
            let mut e = Error::config(format!("table {p} not found in the source database"));
            if let Some(h) = suggestion(&p.to_string(), &names, "tables") {
                e = e.with_hint(h);
            }
            return Err(e);
        }
    }
    let selected: Vec<&PgRelation> = rels
        .iter()
        .filter(|r| {
            let wanted = plan
                .tables
                .iter()
                .any(|p| p.matches(&r.id) && (!p.is_glob() || matches!(r.kind, 'r' | 'p')));
            wanted && !plan.exclude.iter().any(|p| p.matches(&r.id))
        })
        .collect();
    if selected.is_empty() {
        let pats: Vec<String> = plan.tables.iter().map(|p| p.to_string()).collect();
        return Err(Error::config(format!(
            "no table of the source database matches {}",
            pats.join(", ")
        ))
        .with_hint("check `tables` and `exclude`; globs match tables, views must be named")
        .at("tables"));
    }
    let edges = check::inheritance(c).await?;
    let oids: Vec<u32> = selected.iter().map(|r| r.oid).collect();
    let scopes = inheritance_scopes(&oids, &edges);
    let selected = selected
        .into_iter()
        .map(|r| {
            let scope = scopes.get(&r.oid).cloned().unwrap_or(ReadScope::Whole);
            (r.clone(), scope)
        })
        .collect();
    Ok((rels, selected))
}

/// The [`ReadScope`] of every table the source reads, by the same selection and rule as
/// `tables()` (one catalog read on a connection of its own). A `query` source reads no table:
/// the list is empty.
pub(crate) async fn read_scopes(plan: &SourcePlan) -> Result<Vec<(TableId, ReadScope)>> {
    if plan.query.is_some() {
        return Ok(Vec::new());
    }
    let conn = check::connect(&plan.pg, "source").await?;
    let (_, selected) = select_tables(&conn.client, plan).await?;
    Ok(selected.into_iter().map(|(r, s)| (r.id, s)).collect())
}

/// `"schema"."name"`.
fn quote_table(id: &TableId) -> String {
    id.parts()
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// What `read` needs to know about a table.
struct TableInfo {
    oid: Option<u32>,
    schema: SchemaRef,
    from: String,
    /// A condition every read of the table adds (which inheritance children it takes).
    filter: Option<String>,
    select: String,
    decs: Vec<Dec>,
    /// Columns read as `::text` (types without a decoder of their own), with their type.
    casts: Vec<Option<PgType>>,
    split_by: SplitBy,
    reltuples: f64,
}

/// A described table, as the change-capture source decodes its changes.
pub(crate) struct Described {
    pub schema: SchemaRef,
    pub decs: Vec<Dec>,
    pub casts: Vec<Option<PgType>>,
}

pub(crate) struct PgSource {
    plan: SourcePlan,
    coord: Mutex<Option<Coordinator>>,
    tables: std::sync::Mutex<HashMap<TableId, Arc<TableInfo>>>,
}

impl PgSource {
    pub(crate) fn new(plan: SourcePlan) -> Self {
        PgSource {
            plan,
            coord: Mutex::new(None),
            tables: Default::default(),
        }
    }

    /// A described table's relation oid, Arrow schema and per-column decoders (after
    /// [`Source::tables`]), for the change-capture source that decodes its changes.
    /// Also, per column, the type of those read as `::text` (no decoder of their own).
    pub(crate) fn described(&self, id: &TableId) -> Result<Described> {
        let i = self.info(id)?;
        Ok(Described {
            schema: i.schema.clone(),
            decs: i.decs.clone(),
            casts: i.casts.clone(),
        })
    }

    fn info(&self, id: &TableId) -> Result<Arc<TableInfo>> {
        let map = self
            .tables
            .lock()
            .map_err(|_| Error::internal("table map poisoned"))?;
        map.get(id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("table {id} was not listed by tables()")))
    }

    fn build_table(
        &self,
        id: &TableId,
        cols: &[PgColumn],
        pk: Vec<String>,
        rel: Option<&PgRelation>,
        scope: &ReadScope,
    ) -> Result<(SourceTable, TableInfo)> {
        let mut fields = Vec::with_capacity(cols.len());
        let mut decs = Vec::with_capacity(cols.len());
        let mut select = Vec::with_capacity(cols.len());
        let mut casts = Vec::with_capacity(cols.len());
        for c in cols {
            let m = read_mapping(&c.ty);
            let mut f = m.logical.field(&c.name, !c.not_null);
            if let Some(n) = &m.native {
                f = with_native_type(f, "postgres", n);
            }
            if let Some(expr) = &c.generated {
                f = with_generated(f, "postgres", expr);
            }
            fields.push(f);
            decs.push(m.dec);
            casts.push(m.cast.map(|_| c.ty.clone()));
            select.push(match m.cast {
                Some(t) => format!("{}::{t}", quote_ident(&c.name)),
                None => quote_ident(&c.name),
            });
        }
        let find = |name: &str, what: &str| -> Result<&PgColumn> {
            cols.iter().find(|c| c.name == name).ok_or_else(|| {
                let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
                let mut e = Error::config(format!("{what} {name:?} is not a column of table {id}"));
                if let Some(h) = suggestion(name, &names, "columns") {
                    e = e.with_hint(h);
                }
                e
            })
        };
        let is_int = |c: &PgColumn| {
            matches!(c.ty.oid, oid::INT2 | oid::INT4 | oid::INT8) && c.ty.elem.is_none()
        };
        let split_by = if let Some((cursor, _)) = &self.plan.incremental {
            let c = find(cursor, "cursor_column")?;
            let key = pk
                .iter()
                .map(|k| find(k, "key").map(|c| (quote_ident(&c.name), c.declared.clone())))
                .collect::<Result<Vec<_>>>()?;
            SplitBy::Incremental {
                cursor: quote_ident(&c.name),
                cursor_type: c.declared.clone(),
                key,
            }
        } else if let Some(sc) = &self.plan.split_column {
            let c = find(sc, "split_column")?;
            if !is_int(c) {
                return Err(Error::config(format!(
                    "split_column {sc:?} of table {id} has type {}, not an integer type",
                    c.ty.format
                ))
                .with_hint("choose a smallint, integer or bigint column, or remove split_column to split by pages"));
            }
            SplitBy::Key(quote_ident(sc))
        } else if pk.len() == 1 && cols.iter().any(|c| c.name == pk[0] && is_int(c)) {
            SplitBy::Key(quote_ident(&pk[0]))
        } else if rel.is_some_and(|r| matches!(r.kind, 'r' | 'm')) {
            SplitBy::Ctid
        } else {
            SplitBy::Whole
        };
        let arrow: SchemaRef = Arc::new(Schema::new(fields));
        let schema = TableSchema {
            id: id.clone(),
            arrow: arrow.clone(),
            primary_key: pk,
        };
        let reltuples = rel.map_or(-1.0, |r| r.reltuples);
        let st = SourceTable {
            schema,
            estimated_rows: (reltuples >= 0.0).then_some(reltuples as u64),
            estimated_bytes: None,
        };
        let filter = scope.condition(Some(ALIAS));
        let from = match rel {
            Some(_) => format!("{} AS {ALIAS}", scope.from_item(&quote_table(id))),
            None => format!(
                "({}) AS {ALIAS}",
                self.plan.query.as_deref().unwrap_or_default()
            ),
        };
        let select = if select.is_empty() {
            String::new()
        } else {
            select.join(", ")
        };
        let info = TableInfo {
            oid: rel.map(|r| r.oid),
            schema: arrow,
            from,
            filter,
            select,
            decs,
            casts,
            split_by,
            reltuples,
        };
        Ok((st, info))
    }

    async fn coordinator(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Coordinator>>> {
        let mut g = self.coord.lock().await;
        if g.is_none() {
            let conn = check::connect(&self.plan.pg, "source").await?;
            conn.client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| pg_error(e, "source: starting the snapshot transaction"))?;
            let snapshot: String = conn
                .client
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(|e| pg_error(e, "source: exporting the snapshot"))?
                .get(0);
            debug!(snapshot = %snapshot, "Exported snapshot.");
            *g = Some(Coordinator { conn, snapshot });
        }
        Ok(g)
    }

    async fn query_table(&self, c: &Client) -> Result<(SourceTable, TableInfo)> {
        let q = self.plan.query.as_deref().unwrap_or_default();
        let stmt = c
            .prepare(q)
            .await
            .map_err(|e| pg_error(e, "source: preparing `query`"))?;
        let keys: Vec<(u32, i32)> = stmt
            .columns()
            .iter()
            .map(|c| (c.type_().oid(), -1))
            .collect();
        let types: Vec<PgType> = check::resolve_types(c, &keys).await?;
        let cols: Vec<PgColumn> = stmt
            .columns()
            .iter()
            .zip(types)
            .map(|(col, ty)| PgColumn {
                name: col.name().to_string(),
                declared: ty.format.clone(),
                ty,
                not_null: false,
                generated: None,
                identity_always: false,
                filled: false,
            })
            .collect();
        self.build_table(
            &TableId::new(["query"]),
            &cols,
            Vec::new(),
            None,
            &ReadScope::Whole,
        )
    }
}

#[async_trait]
impl Source for PgSource {
    async fn check(&self, tables: &[SourceTable]) -> Result<()> {
        let guard = self.coordinator().await?;
        let c = &guard.as_ref().expect("coordinator set").conn.client;
        for t in tables {
            let oid = {
                let infos = self
                    .tables
                    .lock()
                    .map_err(|_| Error::internal("table map poisoned"))?;
                infos.get(&t.schema.id).and_then(|i| i.oid)
            };
            let Some(oid) = oid else { continue };
            let row = c
                .query_one(
                    "SELECT has_table_privilege(c.oid, 'SELECT'), current_user, \
                     format('%I.%I', n.nspname, c.relname) FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid",
                    &[&oid],
                )
                .await
                .map_err(|e| pg_error(e, "source: checking privileges"))?;
            let (ok, user, shown): (bool, String, String) = (row.get(0), row.get(1), row.get(2));
            if !ok {
                return Err(Error::new(
                    ErrorKind::Auth,
                    format!("role {user:?} may not SELECT from {shown}"),
                )
                .with_hint(format!("GRANT SELECT ON {shown} TO {user:?}")));
            }
        }
        Ok(())
    }

    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let guard = self.coordinator().await?;
        let c = &guard.as_ref().expect("coordinator set").conn.client;
        let mut out = Vec::new();
        let mut infos = HashMap::new();
        if self.plan.query.is_some() {
            let (st, info) = self.query_table(c).await?;
            infos.insert(st.schema.id.clone(), Arc::new(info));
            out.push(st);
        } else {
            let (rels, selected) = select_tables(c, &self.plan).await?;
            let name_of = |oid: &u32| {
                rels.iter()
                    .find(|r| r.oid == *oid)
                    .map_or_else(|| format!("oid {oid}"), |r| r.id.to_string())
            };
            for (r, scope) in &selected {
                let what = match r.kind {
                    'v' => Some("view"),
                    'm' => Some("materialized view"),
                    'f' => Some("foreign table"),
                    _ => None,
                };
                if let Some(what) = what {
                    // Only named ones get here (globs match tables): legitimate, never silent.
                    info!(
                        table = %r.id,
                        kind = what,
                        "Reading a {what}: its rows are copied into a table."
                    );
                }
                match scope {
                    ReadScope::Whole => {}
                    ReadScope::Only => info!(
                        table = %r.id,
                        "Reading only the table's own rows: its inheritance children are copied as tables of their own."
                    ),
                    ReadScope::Tables(oids) => {
                        let with: Vec<String> = oids[1..].iter().map(name_of).collect();
                        info!(
                            table = %r.id,
                            with = %with.join(", "),
                            "Reading the table's own rows and those of the inheritance children not copied on their own."
                        );
                    }
                }
                let cols = check::columns(c, r.oid).await?;
                let pk = check::unique_keys(c, r.oid, true)
                    .await?
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                let (st, info) = self
                    .build_table(&r.id, &cols, pk, Some(r), scope)
                    .map_err(|e| e.context(format!("table {}", r.id)))?;
                infos.insert(r.id.clone(), Arc::new(info));
                out.push(st);
            }
        }
        *self
            .tables
            .lock()
            .map_err(|_| Error::internal("table map poisoned"))? = infos;
        Ok(out)
    }

    async fn splits(&self, table: &SourceTable) -> Result<Vec<Split>> {
        let id = &table.schema.id;
        let info = self.info(id)?;
        let guard = self.coordinator().await?;
        let c = &guard.as_ref().expect("coordinator set").conn.client;
        let chunk = self.plan.chunk_rows as f64;
        let split = |index: usize, est: Option<u64>, detail: Value| Split {
            id: format!("{id}#{index}"),
            table: id.clone(),
            index,
            estimated_rows: est,
            estimated_bytes: None,
            detail,
            continues: false,
            start: None,
        };
        let est_total = (info.reltuples >= 0.0).then_some(info.reltuples as u64);
        match &info.split_by {
            SplitBy::Whole => Ok(vec![split(0, est_total, PgSplit::All.to_json())]),
            // One split that continues where the previous generation's read ended: rows
            // with a cursor past its final position.
            SplitBy::Incremental { .. } => Ok(vec![Split {
                continues: true,
                ..split(0, est_total, PgSplit::Incremental.to_json())
            }]),
            SplitBy::Key(k) => {
                let row = c
                    .query_one(
                        &format!(
                            "SELECT min({k})::int8, max({k})::int8 FROM {}{}",
                            info.from,
                            info.filter
                                .as_ref()
                                .map(|f| format!(" WHERE {f}"))
                                .unwrap_or_default()
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| pg_error(e, format!("table {id}: reading key bounds")))?;
                let (Some(lo), Some(hi)) =
                    (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
                else {
                    return Ok(vec![split(
                        0,
                        Some(0),
                        PgSplit::Key { lo: None, hi: None }.to_json(),
                    )]);
                };
                let span = (hi as i128 - lo as i128 + 1) as f64;
                let est = if info.reltuples >= 0.0 {
                    info.reltuples
                } else {
                    span
                };
                let n = ((est / chunk).ceil() as u64)
                    .clamp(1, span as u64)
                    .min(100_000);
                let width = (span / n as f64).ceil() as i128;
                let per = (est / n as f64).ceil() as u64;
                Ok((0..n as usize)
                    .map(|i| {
                        let b = |j: usize| (lo as i128 + j as i128 * width) as i64;
                        let lo = (i > 0).then(|| b(i));
                        let hi = (i + 1 < n as usize).then(|| b(i + 1));
                        split(i, Some(per), PgSplit::Key { lo, hi }.to_json())
                    })
                    .collect())
            }
            SplitBy::Ctid => {
                let pages: i64 = c
                    .query_one(
                        "SELECT (pg_relation_size($1::int8::oid) / current_setting('block_size')::int8)::int8",
                        &[&(info.oid.unwrap_or(0) as i64)],
                    )
                    .await
                    .map_err(|e| pg_error(e, format!("table {id}: reading its size")))?
                    .get(0);
                let per_page = if info.reltuples > 0.0 && pages > 0 {
                    (info.reltuples / pages as f64).max(1.0)
                } else {
                    60.0
                };
                let pages_per = ((chunk / per_page).ceil() as i64).max(1);
                let n = ((pages + pages_per - 1) / pages_per).max(1) as usize;
                let per = (per_page * pages_per as f64) as u64;
                // The planning snapshot, so that a resume in another snapshot can tell whether
                // rows moved since (see `check_resume`): transactions at or past `xmax`, or in
                // progress (`xip`), were not visible to it. 32-bit xids, as `xmin` is.
                let snap = c
                    .query_one(
                        "SELECT (pg_snapshot_xmax(s)::text::numeric % 4294967296)::int8, \
                         ARRAY(SELECT (x::text::numeric % 4294967296)::int8 \
                               FROM pg_snapshot_xip(s) x) \
                         FROM pg_current_snapshot() s",
                        &[],
                    )
                    .await
                    .map_err(|e| pg_error(e, format!("table {id}: reading the snapshot")))?;
                let (xmax, xip): (i64, Vec<i64>) = (snap.get(0), snap.get(1));
                Ok((0..n)
                    .map(|i| {
                        let detail = PgSplit::Ctid {
                            lo: (i > 0).then_some(i as i64 * pages_per),
                            hi: (i + 1 < n).then_some((i as i64 + 1) * pages_per),
                            xmax,
                            xip: xip.clone(),
                        };
                        split(i, Some(per), detail.to_json())
                    })
                    .collect())
            }
        }
    }

    async fn check_resume(
        &self,
        table: &SourceTable,
        splits: &[Split],
        committed: &[bool],
    ) -> Result<()> {
        let id = &table.schema.id;
        let info = self.info(id)?;
        if !matches!(info.split_by, SplitBy::Ctid)
            || committed.iter().all(|c| *c)
            || !committed.iter().any(|c| *c)
        {
            return Ok(());
        }
        // Page ranges planned in an earlier snapshot: a row inserted or updated since may sit
        // in a page range already copied (lost) while its old version was copied from another
        // (doubled). Any row version the planning snapshot could not see means exactly that.
        let (xmax, xip) = match PgSplit::from_detail(&splits[0])? {
            PgSplit::Ctid { xmax, xip, .. } => (Some(xmax), xip),
            _ => (None, Vec::new()),
        };
        let changed = match xmax {
            Some(xmax) => {
                let conn = check::connect(&self.plan.pg, "source").await?;
                let filter = info
                    .filter
                    .as_ref()
                    .map(|f| format!(" AND {f}"))
                    .unwrap_or_default();
                let sql = format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE (age({ALIAS}.xmin) <= age($1::text::xid) \
                     OR {ALIAS}.xmin::text::int8 = ANY($2::int8[])){filter})",
                    info.from
                );
                conn.client
                    .query_one(&sql, &[&xmax.to_string(), &xip])
                    .await
                    .map_err(|e| pg_error(e, format!("table {id}: checking for changes")))?
                    .get::<_, bool>(0)
            }
            None => true,
        };
        if changed {
            return Err(Error::config(format!(
                "table {id} changed since the copy started (rows were inserted or updated): it \
                 has no integer key, so it is read in page ranges, and a row that moved between \
                 pages would be lost or copied twice if the copy resumed"
            ))
            .with_hint(
                "run the job with --from-scratch (with write = \"append\", empty the target table \
                 first); or give the table an integer primary key, or set split_column to an \
                 integer column, so that copies resume by key",
            ));
        }
        Ok(())
    }

    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let ctx = format!("table {}, split {}", split.table, split.index);
        let r = self.read_split(&split, resume, &out).await;
        match r {
            // A cancel Sluice sent because the job stops ends the read quietly; one nobody
            // asked for (an administrator) is an error, never a short split.
            Err(e) if e.kind() == ErrorKind::Stopped && out.is_stopping() => Ok(()),
            Err(e) => Err(e.context(ctx)),
            Ok(()) => Ok(()),
        }
    }

    async fn close(&self) -> Result<()> {
        // Ends the snapshot transaction: dropping the connection rolls the read-only
        // transaction back.
        self.coord.lock().await.take();
        Ok(())
    }
}

impl PgSource {
    /// The `COPY (SELECT …)` for a split, and how many trailing position fields it has.
    fn copy_sql(
        &self,
        info: &TableInfo,
        split: &Split,
        resume: Option<&Value>,
    ) -> Result<(String, usize)> {
        let detail = PgSplit::from_detail(split)?;
        let mut conds: Vec<String> = Vec::new();
        let mut extra: Vec<String> = Vec::new();
        let mut order = String::new();
        let mut offset = String::new();
        match (&info.split_by, &detail) {
            (SplitBy::Key(k), &PgSplit::Key { lo, hi }) => {
                extra.push(format!("{k}::text"));
                let last = match resume {
                    Some(v) => KeyPosition::from_value(&split.id, v)?.last_key,
                    None => None,
                };
                match (lo, last) {
                    (_, Some(l)) => conds.push(format!("{k} > {l}")),
                    (Some(lo), None) => conds.push(format!("{k} >= {lo}")),
                    (None, None) => {}
                }
                if let Some(hi) = hi {
                    // Rows with a NULL split key are read by the first split.
                    if lo.is_none() && last.is_none() {
                        conds.push(format!("({k} < {hi} OR {k} IS NULL)"));
                    } else {
                        conds.push(format!("{k} < {hi}"));
                    }
                }
                order = format!(" ORDER BY {ALIAS}.{k} NULLS FIRST");
            }
            (SplitBy::Ctid, &PgSplit::Ctid { lo, hi, .. }) => {
                if let Some(lo) = lo {
                    conds.push(format!("ctid >= '({lo},0)'::tid"));
                }
                if let Some(hi) = hi {
                    conds.push(format!("ctid < '({hi},0)'::tid"));
                }
            }
            (
                SplitBy::Incremental {
                    cursor,
                    cursor_type,
                    key,
                },
                _,
            ) => {
                extra.push(format!("{cursor}::text"));
                extra.extend(key.iter().map(|(k, _)| format!("{k}::text")));
                // A position without a cursor (none read yet) or with NULL key parts reads
                // as "from the start" / "ties again", as it always did.
                let at: Option<CursorPosition> =
                    resume.and_then(|v| serde_json::from_value(v.clone()).ok());
                let res_cursor = at.as_ref().and_then(|p| p.cursor.as_deref());
                let res_key: Option<Vec<String>> =
                    at.as_ref().and_then(|p| p.key.iter().cloned().collect());
                match (res_cursor, res_key) {
                    (Some(c), Some(ks)) if ks.len() == key.len() && !key.is_empty() => {
                        let mut l = vec![format!("{}::{cursor_type}", quote_literal(c))];
                        l.extend(
                            ks.iter()
                                .zip(key)
                                .map(|(v, (_, t))| format!("{}::{t}", quote_literal(v))),
                        );
                        let mut r = vec![cursor.clone()];
                        r.extend(key.iter().map(|(k, _)| k.clone()));
                        conds.push(format!("({}) > ({})", r.join(", "), l.join(", ")));
                    }
                    // Without a key, ties at the resume point are read again (at-least-once).
                    (Some(c), _) => {
                        conds.push(format!("{cursor} >= {}::{cursor_type}", quote_literal(c)))
                    }
                    (None, _) => {
                        if let Some((_, Some(sa))) = &self.plan.incremental {
                            conds.push(format!("{cursor} > {}::{cursor_type}", quote_literal(sa)));
                        }
                    }
                }
                conds.push(format!("{cursor} IS NOT NULL"));
                let mut o = vec![format!("{ALIAS}.{cursor}")];
                o.extend(key.iter().map(|(k, _)| format!("{ALIAS}.{k}")));
                order = format!(" ORDER BY {}", o.join(", "));
            }
            (SplitBy::Whole, PgSplit::All) => {
                // A whole read restarts from the beginning unless a row count says how far
                // the previous attempt got.
                if let Some(v) = resume {
                    let n = RowsPosition::from_value(&split.id, v)?.rows;
                    offset = format!(" OFFSET {n}");
                }
            }
            (how, planned) => {
                // The split was planned (and persisted) when the copy started; the table no
                // longer divides the same way (its key or kind changed).
                return Err(Error::config(format!(
                    "split {} was planned as a {} range, but table {} now reads as {}: its key \
                     or kind changed since the copy started",
                    split.id,
                    planned.kind(),
                    split.table,
                    match how {
                        SplitBy::Key(_) => "key ranges",
                        SplitBy::Ctid => "page ranges",
                        SplitBy::Whole => "one split",
                        SplitBy::Incremental { .. } => "an incremental read",
                    }
                ))
                .with_hint("run the job with --from-scratch"));
            }
        }
        if let Some(f) = &info.filter {
            conds.push(f.clone());
        }
        let mut cols = info.select.clone();
        for (i, e) in extra.iter().enumerate() {
            if !cols.is_empty() {
                cols.push_str(", ");
            }
            cols.push_str(&format!("{e} AS sluice_pos_{i}"));
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        Ok((
            format!(
                "COPY (SELECT {cols} FROM {}{where_}{order}{offset}) TO STDOUT (FORMAT binary)",
                info.from
            ),
            extra.len(),
        ))
    }

    async fn read_split(
        &self,
        split: &Split,
        resume: Option<Position>,
        out: &BatchSender,
    ) -> Result<()> {
        let info = self.info(&split.table)?;
        let snapshot = self.coord.lock().await.as_ref().map(|c| c.snapshot.clone());
        let conn = check::connect(&self.plan.pg, "source").await?;
        let mut begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_string();
        if let Some(s) = &snapshot {
            begin.push_str(&format!("; SET TRANSACTION SNAPSHOT {}", quote_literal(s)));
        }
        conn.client
            .batch_execute(&begin)
            .await
            .map_err(|e| pg_error(e, "joining the snapshot"))?;
        let (sql, extra) = self.copy_sql(&info, split, resume.as_ref().map(|p| &p.value))?;
        debug!(split = %split.id, sql = %sql, "Reading split.");
        let stop = out.stop_token().clone();
        let stream = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // The COPY may already run on the server: cancel it there too.
                cancel_on_server(&conn.client).await;
                return Ok(());
            }
            s = conn.client.copy_out(sql.as_str()) => s.map_err(|e| pg_error(e, "starting COPY"))?,
        };
        futures::pin_mut!(stream);
        let batch_size = self.plan.batch_size;
        let mut dec = CopyDecoder::new(info.schema.clone(), &info.decs, extra);
        let base_rows = resume
            .as_ref()
            .and_then(|p| p.value.get("rows"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut bytes = 0u64;
        let decode_err = |e: super::copy_decode::DecodeError| {
            let col = e
                .column
                .map(|c| format!(", column {:?}", info.schema.field(c).name()))
                .unwrap_or_default();
            Error::data(format!(
                "row {} of the split{col}: {}",
                base_rows + e.row + 1,
                e.message
            ))
            .with_hint(
                "read the column as text (a `query` with col::text) or fix the value in the source",
            )
        };
        loop {
            let chunk = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    // Stop promptly: cancel the server side and drop the stream.
                    cancel_on_server(&conn.client).await;
                    return Ok(());
                }
                c = stream.next() => c,
            };
            let Some(chunk) = chunk else { break };
            let chunk = chunk.map_err(|e| pg_error(e, "reading COPY data"))?;
            bytes += chunk.len() as u64;
            dec.feed(&chunk, batch_size).map_err(decode_err)?;
            while dec.pending() >= batch_size {
                if !self
                    .emit(&mut dec, &info, split, base_rows, &mut bytes, out)
                    .await?
                {
                    return Ok(());
                }
                dec.feed(&[], batch_size).map_err(decode_err)?;
            }
        }
        while dec.pending() > 0 {
            if !self
                .emit(&mut dec, &info, split, base_rows, &mut bytes, out)
                .await?
            {
                return Ok(());
            }
            dec.feed(&[], batch_size).map_err(decode_err)?;
        }
        if !dec.is_finished() {
            return Err(Error::new(
                ErrorKind::Connection,
                "the COPY stream ended without its trailer",
            )
            .with_hint("the connection was interrupted; run the job again"));
        }
        Ok(())
    }

    /// Sends the pending rows; `Ok(false)` when the job is stopping.
    async fn emit(
        &self,
        dec: &mut CopyDecoder,
        info: &TableInfo,
        split: &Split,
        base_rows: u64,
        bytes: &mut u64,
        out: &BatchSender,
    ) -> Result<bool> {
        let Some(data) = dec.take_batch()? else {
            return Ok(true);
        };
        let rows = base_rows + dec.rows;
        let ex = dec.last_extra();
        let value = match &info.split_by {
            SplitBy::Key(_) => KeyPosition {
                last_key: ex.first().cloned().flatten().and_then(|s| s.parse().ok()),
                rows,
            }
            .to_json(),
            SplitBy::Incremental { .. } => CursorPosition {
                cursor: ex.first().cloned().flatten(),
                key: ex[1..].to_vec(),
                rows,
            }
            .to_json(),
            _ => RowsPosition { rows }.to_json(),
        };
        let batch = SourceBatch {
            data,
            position: Position::new(split.id.clone(), value),
            bytes: std::mem::take(bytes),
        };
        match out.send(batch).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::Stopped => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Asks the server to cancel what `client` is running, and waits (at most 2 s) for the
/// request to be delivered: a cancel sent from a detached task could be lost when the
/// process exits right after a stop, leaving the query running on the server (a backend
/// does not notice its client is gone while it computes).
async fn cancel_on_server(client: &tokio_postgres::Client) {
    let token = client.cancel_token();
    let sent =
        tokio::time::timeout(std::time::Duration::from_secs(2), token.cancel_query(NoTls)).await;
    if !matches!(sent, Ok(Ok(()))) {
        debug!("Cancelling the server-side query failed or timed out.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inheritance_rows_are_read_once() {
        // 1 ← 2, 1 ← 3, 3 ← 4 (child ← parent written as (child, parent) below).
        let edges = [(2, 1), (3, 1), (4, 3)];
        let s = |sel: &[u32]| {
            let m = inheritance_scopes(sel, &edges);
            sel.iter().map(|o| m[o].clone()).collect::<Vec<_>>()
        };
        // Everything selected: each its own rows; the leaves have nothing below them.
        assert_eq!(
            s(&[1, 2, 3, 4]),
            [
                ReadScope::Only,
                ReadScope::Whole,
                ReadScope::Only,
                ReadScope::Whole
            ]
        );
        // The root alone takes everything.
        assert_eq!(s(&[1]), [ReadScope::Whole]);
        // Root and 3: 3 takes 4; the root takes 2.
        assert_eq!(
            s(&[1, 3]),
            [ReadScope::Tables(vec![1, 2]), ReadScope::Whole]
        );
        // Root and 4: the root takes 2 and 3 but not 4.
        assert_eq!(
            s(&[1, 4]),
            [ReadScope::Tables(vec![1, 2, 3]), ReadScope::Whole]
        );
        // Tables without inheritance are whole.
        assert_eq!(s(&[9]), [ReadScope::Whole]);
        // Multiple inheritance: 5 has parents 6 and 7; the first selected takes its rows.
        let m = inheritance_scopes(&[6, 7], &[(5, 6), (5, 7)]);
        assert_eq!(m[&6], ReadScope::Whole);
        assert_eq!(m[&7], ReadScope::Only);
    }
}
