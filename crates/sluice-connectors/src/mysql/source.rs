//! The MySQL source: tables from `information_schema`, integer key-range splits, streamed
//! reads inside consistent-snapshot transactions.
//!
//! Invariant: a read never collects a result set; rows are decoded as they arrive and sent
//! in batches of `batch_size`, so memory stays flat. A read that is cancelled (stop, abort)
//! kills its server connection, so the server stops sending at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use sluice_core::batch::{Position, Split};
use sluice_core::schema::{TableSchema, split_sql_path};
use sluice_core::source::{BatchSender, Source, SourceBatch, SourceTable};
use sluice_core::{Error, ErrorKind, LogicalType, Result, TableId};
use tokio::sync::{Mutex, OnceCell, mpsc};
use tracing::{debug, info, warn};

use super::check::{connect, kill_in_background, qualified, quote};
use super::config::{SourcePlan, ZeroDates};
use super::decode::ColBuilder;
use super::error::{is_privilege, map};
use super::position::{KeyInt, MysqlPosition, MysqlSplit};
use super::types::{self, Kind, MysqlType};
use sluice_core::Persisted;

/// Databases never listed.
const SYSTEM_DBS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// One source table, as discovered.
#[derive(Debug, Clone)]
pub(crate) struct TableMeta {
    pub db: String,
    pub table: String,
    pub columns: Vec<(String, MysqlType)>,
    /// Each column's collation (`None` for non-text columns), e.g. `latin1_swedish_ci`.
    pub collations: Vec<Option<String>>,
    /// The split column and whether it is unsigned.
    key: Option<(String, bool)>,
    pub primary_key: Vec<String>,
    pub schema: TableSchema,
    /// A view (named explicitly): not locked for the snapshot.
    view: bool,
}

/// Reads MySQL/MariaDB tables. See the module docs.
pub struct MysqlSource {
    plan: SourcePlan,
    tables: std::sync::Mutex<HashMap<TableId, Arc<TableMeta>>>,
    snapshot: OnceCell<Arc<SnapshotPool>>,
}

impl MysqlSource {
    pub(crate) fn new(plan: SourcePlan) -> Self {
        MysqlSource {
            plan,
            tables: Default::default(),
            snapshot: OnceCell::new(),
        }
    }

    pub(crate) fn meta(&self, id: &TableId) -> Result<Arc<TableMeta>> {
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("table {id} was not listed by tables()")))
    }

    /// The id a table is known by: bare in the URL's database, `db.table` elsewhere.
    fn id_of(&self, db: &str, table: &str) -> TableId {
        if self.plan.server.database.as_deref() == Some(db) {
            TableId::new([table])
        } else {
            TableId::new([db, table])
        }
    }

    /// Whether the job's `tables` and `exclude` select base table `db`.`table` (what a
    /// listing now would choose).
    pub(crate) fn selects(&self, db: &str, table: &str) -> (bool, TableId) {
        let chosen = self.plan.include.iter().any(|p| self.matches(p, db, table))
            && !self.plan.exclude.iter().any(|p| self.matches(p, db, table))
            && !table.starts_with("_sluice_");
        (chosen, self.id_of(db, table))
    }

    fn matches(&self, pattern: &sluice_core::schema::TablePattern, db: &str, table: &str) -> bool {
        let parts = split_sql_path(&pattern.to_string())
            .map(|p| p.len())
            .unwrap_or(1);
        if parts == 1 {
            self.plan.server.database.as_deref() == Some(db)
                && pattern.matches(&TableId::new([table]))
        } else {
            pattern.matches(&TableId::new([db, table]))
        }
    }

    async fn describe(&self, conn: &mut Conn, listed: &Listed) -> Result<SourceTable> {
        let (db, table, rows) = (listed.db.as_str(), listed.table.as_str(), listed.rows);
        let id = self.id_of(db, table);
        let ctx = |e| map(e, format!("table {id}: reading its columns"));
        let cols: Vec<Described> = conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, EXTRA, GENERATION_EXPRESSION, \
                 COLLATION_NAME FROM information_schema.columns \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(ctx)?;
        let pk: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.statistics WHERE TABLE_SCHEMA = ? \
                 AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
                (db, table),
            )
            .await
            .map_err(ctx)?;
        // MariaDB's JSON is a longtext with a json_valid() check; MySQL has a real json type.
        let json_cols: Vec<String> = conn
            .exec(
                "SELECT CHECK_CLAUSE FROM information_schema.check_constraints \
                 WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? AND CHECK_CLAUSE LIKE 'json_valid(%'",
                (db, table),
            )
            .await
            .unwrap_or_default();
        let same_engine = self.plan.same_engine;
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let mut collations = Vec::new();
        for (name, ctype, nullable, extra, generation, collation) in cols {
            collations.push(collation.clone());
            let is_json = json_cols
                .iter()
                .any(|c| c == &format!("json_valid({})", quote(&name)));
            let t = types::parse(&ctype, is_json).map_err(|t| {
                Error::schema(format!("table {id}, column {name:?}: MySQL type {t} is not supported"))
                    .with_hint("exclude the table, or read it through a view that casts the column to a supported type")
            })?;
            // A MySQL target holds zero dates; others get NULL (or an error) in their place.
            let nullable = nullable == "YES"
                || (t.kind.is_temporal()
                    && !same_engine
                    && self.plan.zero_dates == ZeroDates::Null);
            let mut field = types::field(&name, &t, nullable);
            if same_engine {
                let mut md = field.metadata().clone();
                if t.kind.is_temporal() {
                    md.insert(types::ZERO_DATES_KEY.to_string(), "kept".to_string());
                }
                if let Some(c) = collation.filter(|_| t.logical != LogicalType::Json) {
                    md.insert(types::COLLATION_KEY.to_string(), c);
                }
                let extra = extra.unwrap_or_default().to_ascii_uppercase();
                if let Some(expr) = generation.filter(|e| !e.is_empty()) {
                    let how = if extra.contains("STORED") || extra.contains("PERSISTENT") {
                        "STORED"
                    } else {
                        "VIRTUAL"
                    };
                    md.insert(types::GENERATED_KEY.to_string(), format!("{how} {expr}"));
                }
                if extra.contains("AUTO_INCREMENT") {
                    md.insert(types::AUTO_INCREMENT_KEY.to_string(), "true".to_string());
                }
                field = field.with_metadata(md);
            }
            fields.push(field);
            columns.push((name, t));
        }
        if listed.view {
            info!(
                table = %id,
                "{id} is a view: its rows are read as one split (ordered by all its columns, \
                 so a resumed copy continues exactly) and written to a table."
            );
        }
        if columns.is_empty() {
            return Err(
                Error::config(format!("table {id} has no columns or cannot be read"))
                    .with_hint("grant SELECT on the table to the source user"),
            );
        }
        let key = match &self.plan.split_column {
            Some(k) => {
                let Some((name, t)) = columns.iter().find(|(n, _)| n.eq_ignore_ascii_case(k))
                else {
                    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
                    let hint =
                        sluice_core::config::suggestion(k, &names, "columns").unwrap_or_default();
                    return Err(
                        Error::config(format!("table {id} has no split_column {k:?}"))
                            .with_hint(hint),
                    );
                };
                if !matches!(t.kind, Kind::Int | Kind::UInt) {
                    return Err(Error::config(format!(
                        "table {id}: split_column {k:?} is {}, not an integer",
                        t.column_type
                    ))
                    .with_hint("choose an integer column, or leave split_column out"));
                }
                Some((name.clone(), t.kind == Kind::UInt))
            }
            None if pk.len() == 1 => columns
                .iter()
                .find(|(n, t)| *n == pk[0] && matches!(t.kind, Kind::Int | Kind::UInt))
                .map(|(n, t)| (n.clone(), t.kind == Kind::UInt)),
            None => None,
        };
        let mut table_md = HashMap::new();
        if same_engine {
            if let Some(e) = &listed.engine {
                table_md.insert(types::ENGINE_KEY.to_string(), e.clone());
            }
            if let Some(c) = &listed.collation {
                table_md.insert(types::TABLE_COLLATION_KEY.to_string(), c.clone());
            }
        }
        let schema = TableSchema {
            id: id.clone(),
            arrow: Arc::new(Schema::new_with_metadata(fields, table_md)),
            primary_key: pk.clone(),
        };
        let meta = TableMeta {
            db: db.into(),
            table: table.into(),
            columns,
            collations,
            key,
            primary_key: pk,
            schema: schema.clone(),
            view: listed.view,
        };
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::new(meta));
        Ok(SourceTable {
            schema,
            estimated_rows: rows,
            estimated_bytes: None,
        })
    }

    async fn snapshot_pool(&self) -> Result<Arc<SnapshotPool>> {
        self.snapshot
            .get_or_try_init(|| async {
                let tables: Vec<(String, String)> = self
                    .tables
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .filter(|m| !m.view)
                    .map(|m| (m.db.clone(), m.table.clone()))
                    .collect();
                SnapshotPool::open(&self.plan, &tables).await.map(Arc::new)
            })
            .await
            .cloned()
    }

    /// A connection inside a consistent-snapshot transaction.
    async fn lease(&self, out: &BatchSender, what: &str) -> Result<Option<Lease>> {
        if self.plan.consistent_snapshot {
            let pool = self.snapshot_pool().await?;
            let conn = tokio::select! {
                c = pool.acquire() => c?,
                _ = out.stop_token().cancelled() => return Ok(None),
            };
            Ok(Some(Lease::new(conn, Some(pool), &self.plan)))
        } else {
            let mut conn = connect(&self.plan.server, what).await?;
            start_snapshot(&mut conn)
                .await
                .map_err(|e| map(e, format!("{what}: starting a snapshot")))?;
            Ok(Some(Lease::new(conn, None, &self.plan)))
        }
    }
}

async fn start_snapshot(conn: &mut Conn) -> std::result::Result<(), mysql_async::Error> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
}

/// Connections whose snapshot transactions were opened together. A split borrows one and
/// gives it back when done, still inside its transaction, so every split of the job reads
/// the same point in time.
struct SnapshotPool {
    tx: mpsc::UnboundedSender<Conn>,
    rx: Mutex<mpsc::UnboundedReceiver<Conn>>,
    alive: AtomicUsize,
}

impl SnapshotPool {
    async fn open(plan: &SourcePlan, tables: &[(String, String)]) -> Result<SnapshotPool> {
        let mut conns = Vec::with_capacity(plan.connections);
        for _ in 0..plan.connections {
            conns.push(connect(&plan.server, "source").await?);
        }
        let mut coordinator = connect(&plan.server, "source").await?;
        let list: Vec<String> = tables.iter().map(|(d, t)| qualified(d, t)).collect();
        let locked = if list.is_empty() {
            false
        } else {
            let _ = coordinator
                .query_drop("SET SESSION lock_wait_timeout = 30")
                .await;
            match coordinator
                .query_drop(format!("FLUSH TABLES {} WITH READ LOCK", list.join(", ")))
                .await
            {
                Ok(()) => true,
                Err(e) => {
                    let why = if is_privilege(&e) {
                        "the source user lacks the RELOAD privilege"
                    } else {
                        "the lock failed"
                    };
                    warn!(
                        error = %e,
                        "Cannot lock the tables briefly ({why}); parallel readers take their snapshots one \
                         after the other and may see slightly different points in time."
                    );
                    false
                }
            }
        };
        let mut result = Ok(());
        for c in &mut conns {
            if let Err(e) = start_snapshot(c).await {
                result = Err(map(e, "source: starting a snapshot"));
                break;
            }
        }
        if locked {
            let _ = coordinator.query_drop("UNLOCK TABLES").await;
        }
        let _ = coordinator.disconnect().await;
        result?;
        info!(
            connections = conns.len(),
            synchronized = locked,
            "Source snapshot opened."
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let alive = AtomicUsize::new(conns.len());
        for c in conns {
            let _ = tx.send(c);
        }
        Ok(SnapshotPool {
            tx,
            rx: Mutex::new(rx),
            alive,
        })
    }

    async fn acquire(&self) -> Result<Conn> {
        let mut rx = self.rx.lock().await;
        if self.alive.load(Ordering::Acquire) == 0 {
            return Err(Error::new(
                ErrorKind::Connection,
                "every source snapshot connection was lost",
            )
            .with_hint("run the job again; it resumes from its last checkpoint"));
        }
        rx.recv()
            .await
            .ok_or_else(|| Error::internal("snapshot pool closed"))
    }

    async fn close(&self) {
        let mut rx = self.rx.lock().await;
        while let Ok(mut c) = rx.try_recv() {
            let _ = c.query_drop("COMMIT").await;
            let _ = c.disconnect().await;
        }
    }
}

/// A borrowed read connection. Dropped before the read finished (stop, abort, error), it
/// kills its connection on the server; finished, it goes back to its pool.
struct Lease {
    conn: Option<Conn>,
    pool: Option<Arc<SnapshotPool>>,
    opts: mysql_async::Opts,
    finished: bool,
}

impl Lease {
    fn new(conn: Conn, pool: Option<Arc<SnapshotPool>>, plan: &SourcePlan) -> Self {
        Lease {
            conn: Some(conn),
            pool,
            opts: plan.server.opts.clone(),
            finished: false,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.finished {
            match &self.pool {
                Some(p) => {
                    let _ = p.tx.send(conn);
                }
                None => drop(conn),
            }
        } else {
            if let Some(p) = &self.pool {
                p.alive.fetch_sub(1, Ordering::AcqRel);
            }
            debug!(connection = conn.id(), "Cancelling an unfinished read.");
            kill_in_background(self.opts.clone(), conn.id());
            drop(conn);
        }
    }
}

fn key_value(v: i128) -> Value {
    if v >= 0 && v > i128::from(i64::MAX) {
        Value::UInt(v as u64)
    } else {
        Value::Int(v as i64)
    }
}

fn value_int(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// `n` split boundaries over `[min, max]`: `n - 1` interior cut points.
pub(crate) fn cut_points(min: i128, max: i128, n: u64) -> Vec<i128> {
    let span = max - min + 1;
    let n = i128::from(n).min(span).max(1);
    (1..n).map(|i| min + span * i / n).collect()
}

#[async_trait]
impl Source for MysqlSource {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let mut conn = connect(&self.plan.server, "source").await?;
        let r = self.list(&mut conn).await;
        let _ = conn.disconnect().await;
        r
    }

    async fn splits(&self, table: &SourceTable) -> Result<Vec<Split>> {
        let id = table.schema.id.clone();
        let meta = self.meta(&id)?;
        let one = |detail| {
            vec![Split {
                id: format!("{id}#0"),
                table: id.clone(),
                index: 0,
                estimated_rows: table.estimated_rows,
                estimated_bytes: None,
                detail,
                continues: false,
                start: None,
            }]
        };
        let Some((key, _)) = &meta.key else {
            return Ok(one(MysqlSplit {
                key: None,
                lo: None,
                hi: None,
            }
            .to_json()));
        };
        let mut conn = connect(&self.plan.server, "source").await?;
        let r: std::result::Result<Option<(Value, Value)>, _> = conn
            .query_first(format!(
                "SELECT MIN({k}), MAX({k}) FROM {t}",
                k = quote(key),
                t = qualified(&meta.db, &meta.table)
            ))
            .await;
        let _ = conn.disconnect().await;
        let bounds = r.map_err(|e| map(e, format!("table {id}: reading key bounds")))?;
        let (Some(min), Some(max)) = bounds
            .map(|(a, b)| (value_int(&a), value_int(&b)))
            .unwrap_or((None, None))
        else {
            return Ok(one(MysqlSplit {
                key: Some(key.clone()),
                lo: None,
                hi: None,
            }
            .to_json()));
        };
        let rows = table.estimated_rows.unwrap_or(0);
        let n = rows.div_ceil(self.plan.chunk_rows).max(1);
        let cuts = cut_points(min, max, n);
        let count = cuts.len() + 1;
        let per = (rows / count as u64).max(1);
        Ok((0..count)
            .map(|i| {
                let lo = (i > 0).then(|| KeyInt(cuts[i - 1]));
                let hi = (i + 1 < count).then(|| KeyInt(cuts[i]));
                Split {
                    id: format!("{id}#{i}"),
                    table: id.clone(),
                    index: i,
                    estimated_rows: Some(per),
                    estimated_bytes: None,
                    detail: MysqlSplit {
                        key: Some(key.clone()),
                        lo,
                        hi,
                    }
                    .to_json(),
                    continues: false,
                    start: None,
                }
            })
            .collect())
    }

    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let meta = self.meta(&split.table)?;
        let what = format!("table {}, split {}", split.table, split.index);
        let Some(mut lease) = self.lease(&out, &what).await? else {
            return Ok(());
        };
        let r = read_split(&self.plan, &meta, &split, resume, &out, &mut lease, &what).await;
        if let Ok(true) = r {
            lease.finished = true;
        }
        r.map(|_| ())
    }

    async fn close(&self) -> Result<()> {
        if let Some(p) = self.snapshot.get() {
            p.close().await;
        }
        Ok(())
    }
}

/// One row of `information_schema.columns` as `describe` reads it: name, type, nullable,
/// extra, generation expression, collation.
type Described = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A table or view as listed by `information_schema.tables`.
#[derive(Debug, Clone, PartialEq)]
struct Listed {
    db: String,
    table: String,
    rows: Option<u64>,
    view: bool,
    engine: Option<String>,
    collation: Option<String>,
}

impl MysqlSource {
    async fn list(&self, conn: &mut Conn) -> Result<Vec<SourceTable>> {
        type Row = (
            String,
            String,
            Option<u64>,
            String,
            Option<String>,
            Option<String>,
        );
        let all: Vec<Row> = conn
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS, TABLE_TYPE, ENGINE, TABLE_COLLATION \
                 FROM information_schema.tables \
                 WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'VIEW') \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME",
            )
            .await
            .map_err(|e| map(e, "source: listing tables"))?;
        let all: Vec<Listed> = all
            .into_iter()
            .filter(|(d, t, ..)| {
                !SYSTEM_DBS.contains(&d.as_str())
                    && !t.starts_with("_sluice_")
                    && !t.ends_with("__sluice_stage")
                    && !t.ends_with("__sluice_old")
            })
            .map(|(db, table, rows, kind, engine, collation)| Listed {
                db,
                table,
                rows,
                view: kind == "VIEW",
                engine,
                collation,
            })
            .collect();
        let mut chosen = Vec::new();
        for p in &self.plan.include {
            // Views are read when named, never through a glob.
            let hits: Vec<_> = all
                .iter()
                .filter(|l| self.matches(p, &l.db, &l.table) && (!l.view || !p.is_glob()))
                .collect();
            if hits.is_empty() && !p.is_glob() {
                let names: Vec<String> = all
                    .iter()
                    .filter(|l| self.plan.server.database.as_deref() == Some(l.db.as_str()))
                    .map(|l| l.table.clone())
                    .collect();
                let hint = sluice_core::config::suggestion(&p.to_string(), &names, "tables")
                    .unwrap_or_default();
                return Err(Error::config(format!(
                    "table {p} does not exist in mysql at {} (database {})",
                    self.plan.server.display,
                    self.plan.server.database.as_deref().unwrap_or("none")
                ))
                .with_hint(hint)
                .at("tables"));
            }
            for h in hits {
                if !chosen.contains(&h) {
                    chosen.push(h);
                }
            }
        }
        chosen.retain(|l| {
            !self
                .plan
                .exclude
                .iter()
                .any(|p| self.matches(p, &l.db, &l.table))
        });
        let mut out = Vec::with_capacity(chosen.len());
        for l in chosen {
            out.push(self.describe(conn, l).await?);
        }
        Ok(out)
    }
}

/// Streams one split. `Ok(true)`: read to its end; `Ok(false)`: stopped on request.
async fn read_split(
    plan: &SourcePlan,
    meta: &TableMeta,
    split: &Split,
    resume: Option<Position>,
    out: &BatchSender,
    lease: &mut Lease,
    what: &str,
) -> Result<bool> {
    let cols: Vec<String> = meta.columns.iter().map(|(n, _)| quote(n)).collect();
    let mut sql = format!(
        "SELECT {} FROM {}",
        cols.join(", "),
        qualified(&meta.db, &meta.table)
    );
    let mut params: Vec<Value> = Vec::new();
    let key_idx = meta
        .key
        .as_ref()
        .and_then(|(k, _)| meta.columns.iter().position(|(n, _)| n == k));
    let mut skip_rows = 0u64;
    let at = resume
        .as_ref()
        .map(|p| MysqlPosition::from_value(&split.id, &p.value))
        .transpose()?;
    if let (Some((key, _)), Some(_)) = (&meta.key, key_idx) {
        let k = quote(key);
        let mut conds = Vec::new();
        let detail = MysqlSplit::from_detail(split)?;
        if let Some(KeyInt(lo)) = detail.lo {
            conds.push(format!("{k} >= ?"));
            params.push(key_value(lo));
        }
        if let Some(KeyInt(hi)) = detail.hi {
            conds.push(format!("{k} < ?"));
            params.push(key_value(hi));
        }
        if let Some(MysqlPosition::Key {
            last_key: KeyInt(last),
        }) = at
        {
            conds.push(format!("{k} > ?"));
            params.push(key_value(last));
        }
        if !conds.is_empty() {
            sql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
        }
        sql.push_str(&format!(" ORDER BY {k}"));
    } else {
        if !meta.primary_key.is_empty() {
            let pk: Vec<String> = meta.primary_key.iter().map(|c| quote(c)).collect();
            sql.push_str(&format!(" ORDER BY {}", pk.join(", ")));
        } else if meta.view {
            // A view has no key and no stable scan order: every column's bytes order it, so
            // skipping `rows` on resume skips the same rows (equal rows are interchangeable).
            let all: Vec<String> = meta
                .columns
                .iter()
                .map(|(n, _)| format!("CAST({} AS BINARY)", quote(n)))
                .collect();
            sql.push_str(&format!(" ORDER BY {}", all.join(", ")));
        }
        skip_rows = match at {
            Some(MysqlPosition::Rows { rows }) => rows,
            _ => 0,
        };
        if skip_rows > 0 {
            sql.push_str(&format!(" LIMIT 18446744073709551615 OFFSET {skip_rows}"));
        }
    }
    let schema = meta.schema.arrow.clone();
    let new_builders = || -> Result<Vec<ColBuilder>> {
        schema
            .fields()
            .iter()
            .map(|f| ColBuilder::new(f, plan.batch_size).map_err(Error::internal))
            .collect()
    };
    let mut builders = new_builders()?;
    let conn = lease
        .conn
        .as_mut()
        .ok_or_else(|| Error::internal("lease without connection"))?;
    let mut result = conn
        .exec_iter(sql, params)
        .await
        .map_err(|e| map(e, what))?;
    let mut rows_in_batch = 0usize;
    let mut rows_total = skip_rows;
    let mut bytes = 0u64;
    let mut last_key: Option<i128> = None;
    loop {
        let row: Option<Row> = result.next().await.map_err(|e| map(e, what))?;
        let Some(row) = row else { break };
        let values = row.unwrap();
        if let Some(i) = key_idx {
            last_key = values.get(i).and_then(value_int);
        }
        for (ci, v) in values.into_iter().enumerate() {
            bytes += match &v {
                Value::Bytes(b) => b.len() as u64 + 1,
                _ => 8,
            };
            let (name, t) = &meta.columns[ci];
            let b = &mut builders[ci];
            let ok = b.push(t.kind, v, plan.same_engine).map_err(|e| {
                Error::data(format!(
                    "{what}, column {name:?}, {}: {e}",
                    row_name(last_key, rows_total)
                ))
            })?;
            if !ok {
                match plan.zero_dates {
                    ZeroDates::Null => b.null(),
                    ZeroDates::Error => {
                        return Err(Error::data(format!(
                            "{what}, column {name:?}, {}: zero date",
                            row_name(last_key, rows_total)
                        ))
                        .with_hint(
                            "set zero_dates = \"null\" in [source] to read zero dates as NULL",
                        ));
                    }
                }
            }
        }
        rows_in_batch += 1;
        rows_total += 1;
        if rows_in_batch == plan.batch_size {
            let batch = finish(&schema, &mut builders)?;
            let pos = position(&split.id, last_key, rows_total);
            if send(out, batch, pos, std::mem::take(&mut bytes)).await? {
                return Ok(false);
            }
            rows_in_batch = 0;
        }
    }
    drop(result);
    if rows_in_batch > 0 {
        let batch = finish(&schema, &mut builders)?;
        let pos = position(&split.id, last_key, rows_total);
        if send(out, batch, pos, bytes).await? {
            // The result was fully read: the connection may be reused.
            return Ok(true);
        }
    }
    Ok(true)
}

fn row_name(key: Option<i128>, n: u64) -> String {
    match key {
        Some(k) => format!("row with key {k}"),
        None => format!("row {}", n + 1),
    }
}

fn position(split: &str, last_key: Option<i128>, rows: u64) -> Position {
    match last_key {
        Some(k) => Position::new(
            split,
            MysqlPosition::Key {
                last_key: KeyInt(k),
            }
            .to_json(),
        ),
        None => Position::new(split, MysqlPosition::Rows { rows }.to_json()),
    }
}

fn finish(schema: &Arc<Schema>, builders: &mut [ColBuilder]) -> Result<RecordBatch> {
    let cols = builders.iter_mut().map(|b| b.finish()).collect();
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Sends a batch; `Ok(true)` means the job is stopping.
async fn send(
    out: &BatchSender,
    data: RecordBatch,
    position: Position,
    bytes: u64,
) -> Result<bool> {
    match out
        .send(SourceBatch {
            data,
            position,
            bytes,
        })
        .await
    {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == ErrorKind::Stopped => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_points_cover_the_range() {
        assert_eq!(cut_points(1, 100, 4), vec![26, 51, 76]);
        assert_eq!(cut_points(5, 5, 10), Vec::<i128>::new());
        assert_eq!(cut_points(0, 2, 10), vec![1, 2]);
        let big = cut_points(0, i128::from(u64::MAX), 2);
        assert_eq!(big, vec![i128::from(u64::MAX) / 2 + 1]);
        assert!(matches!(
            key_value(i128::from(u64::MAX)),
            Value::UInt(u64::MAX)
        ));
        assert!(matches!(key_value(-5), Value::Int(-5)));
    }
}
