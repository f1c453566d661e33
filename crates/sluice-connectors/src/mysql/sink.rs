//! The MySQL sink: checks or creates target tables, writes each split in one transaction
//! with `LOAD DATA LOCAL INFILE` (or multi-row `INSERT`), and swaps staging tables in for
//! `overwrite`.
//!
//! Invariant: a split's rows and its checkpoint row in `_sluice_checkpoints` commit in the
//! same InnoDB transaction before `commit` returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_core::batch::{Position, Split};
use sluice_core::config::toml_string;
use sluice_core::sink::{JobContext, Sink, SinkWriter, TablePlan};
use sluice_core::{Error, LogicalType, Result, TableId, WriteMode};
use tracing::info;

use super::check::{connect, qualified, quote};
use super::config::{LoadMethod, SinkPlan};
use super::encode::{Cell, Column, to_value, write_tsv};
use super::error::map;
use super::types::{self, KeyRole, Kind};

/// Where positions are stored, in each target database.
pub const CHECKPOINT_TABLE: &str = "_sluice_checkpoints";
/// Suffix of staging tables used by `write = "overwrite"`.
pub const STAGE_SUFFIX: &str = "__sluice_stage";
const OLD_SUFFIX: &str = "__sluice_old";
/// The per-writer temporary table `upsert` loads into.
const UPSERT_TEMP: &str = "_sluice_upsert";
/// Placeholders per `INSERT` statement (the protocol allows 65535).
const MAX_PARAMS: usize = 60_000;

/// One target column, as written.
#[derive(Debug, Clone)]
struct TargetCol {
    /// The target's spelling of the name.
    name: String,
    kind: Kind,
}

/// How one target table is written, decided in `prepare`.
#[derive(Debug, Clone)]
struct TableState {
    db: String,
    /// The final table.
    table: String,
    /// The table writers load into (the staging table for `overwrite`).
    write_to: String,
    /// In the order of the incoming batch's columns.
    columns: Vec<TargetCol>,
    /// Primary-key column names (target spelling).
    key: Vec<String>,
    /// Incoming columns holding uuids (FixedSizeBinary(16)).
    uuid: Vec<bool>,
}

/// Writes MySQL/MariaDB tables. See the module docs.
pub struct MysqlSink {
    plan: SinkPlan,
    states: Mutex<HashMap<TableId, Arc<TableState>>>,
    job: std::sync::OnceLock<JobContext>,
}

impl MysqlSink {
    fn job(&self) -> JobContext {
        self.job.get().cloned().unwrap_or(JobContext {
            job: String::new(),
            generation: String::new(),
        })
    }

    pub(crate) fn new(plan: SinkPlan) -> Self {
        MysqlSink {
            plan,
            states: Mutex::new(HashMap::new()),
            job: std::sync::OnceLock::new(),
        }
    }

    fn state(&self, target: &TableId) -> Result<Arc<TableState>> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .cloned()
            .ok_or_else(|| Error::internal(format!("table {target} was not prepared")))
    }

    /// `(column, mysql type)` for every column of `table`, as `CREATE TABLE` would declare it.
    fn declared_types(table: &TablePlan) -> Result<Vec<(String, String)>> {
        let pk = &table.schema.primary_key;
        table
            .schema
            .arrow
            .fields()
            .iter()
            .map(|f| {
                let role = if !pk.contains(f.name()) {
                    KeyRole::None
                } else if pk.len() == 1 {
                    KeyRole::Single
                } else {
                    KeyRole::Composite
                };
                let t = types::target_type(f, role).map_err(|why| {
                    let lt = LogicalType::of_field(f)
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    types::unsupported(&table.target.to_string(), f.name(), &lt, &why)
                })?;
                Ok((f.name().clone(), t))
            })
            .collect()
    }

    async fn prepare_one(&self, conn: &mut Conn, table: &TablePlan) -> Result<TableState> {
        let target = &table.target;
        let (db, name) = self.plan.server.resolve(target)?;
        let declared = Self::declared_types(table)?;
        let ctx = |what: &str| format!("table {target}: {what}");
        if self.plan.mode == WriteMode::Upsert && table.schema.primary_key.is_empty() {
            return Err(Error::config(format!(
                "table {target}: write = \"upsert\" needs a primary key, and the source has none"
            ))
            .with_hint(
                "use write = \"append\" or \"overwrite\", or give the source table a primary key",
            ));
        }
        let db_exists: Option<String> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.schemata WHERE SCHEMA_NAME = ?",
                (&db,),
            )
            .await
            .map_err(|e| map(e, ctx("checking the database")))?;
        if db_exists.is_none() {
            return Err(Error::config(format!(
                "table {target}: database {db:?} does not exist in mysql at {}",
                self.plan.server.display
            ))
            .with_hint({
                let pattern = toml_string(&format!("{}.*", TableId::new([db.as_str()])));
                let into = match &self.plan.server.database {
                    Some(d) => format!(
                        "into the url's database {d} with table_map = {{ {pattern} = '*' }}"
                    ),
                    None => format!(
                        "into an existing database with table_map = {{ {pattern} = 'shop.*' }}"
                    ),
                };
                format!(
                    "create it (CREATE DATABASE {}), or map the tables of {db:?} {into} in [sink]",
                    quote(&db)
                )
            }));
        }
        // One row per (job, split); rows of another generation are stale and overwritten.
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (job VARCHAR(255) NOT NULL, split VARCHAR(300) NOT NULL, \
             generation VARCHAR(64) NOT NULL, table_name VARCHAR(300) NOT NULL, \
             position LONGTEXT NOT NULL, committed_at DATETIME(6) NOT NULL, PRIMARY KEY (job, split)) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            qualified(&db, CHECKPOINT_TABLE)
        ))
        .await
        .map_err(|e| map(e, ctx("creating the checkpoint table")))?;

        let existing = existing_columns(conn, &db, &name)
            .await
            .map_err(|e| map(e, ctx("reading its columns")))?;
        let mut columns = Vec::with_capacity(declared.len());
        if existing.is_empty() {
            if !self.plan.create_tables {
                return Err(Error::config(format!(
                    "table {target} does not exist in database {db:?}"
                ))
                .with_hint("create it, or set create_tables = true in [sink]"));
            }
            if self.plan.mode != WriteMode::Overwrite {
                conn.query_drop(create_sql(&db, &name, table, &declared))
                    .await
                    .map_err(|e| map(e, ctx("creating it")))?;
                info!(table = %target, "Created the target table.");
            }
            for ((n, t), _) in declared.iter().zip(table.schema.arrow.fields()) {
                let kind = types::parse(t, false).map(|m| m.kind).unwrap_or(Kind::Text);
                columns.push(TargetCol {
                    name: n.clone(),
                    kind,
                });
            }
        } else {
            for f in table.schema.arrow.fields() {
                let Some((tname, ttype)) = existing
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(f.name()))
                else {
                    return Err(Error::schema(format!(
                        "table {target}: column {:?} is missing in the existing target table",
                        f.name()
                    ))
                    .with_hint("add the column to the target, drop it with a select/drop transform, or write to a new table"));
                };
                let mt = types::parse(ttype, false).map_err(|t| {
                    Error::schema(format!(
                        "table {target}, column {tname:?}: target type {t} is not supported"
                    ))
                })?;
                if !types::compatible(&mt, f) {
                    let src = sluice_core::types::native_type(f)
                        .map(|(e, t)| format!("{e}:{t}"))
                        .or_else(|| LogicalType::of_field(f).ok().map(|t| t.to_string()))
                        .unwrap_or_default();
                    return Err(Error::schema(format!(
                        "table {target}, column {tname:?}: the target's type {ttype} cannot hold the source's {src}"
                    ))
                    .with_hint("alter the target column, cast the source column with a cast transform, or write to a new table"));
                }
                columns.push(TargetCol {
                    name: tname.clone(),
                    kind: mt.kind,
                });
            }
        }
        let key: Vec<String> = table
            .schema
            .primary_key
            .iter()
            .map(|k| {
                columns
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(k))
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| k.clone())
            })
            .collect();
        let mut write_to = name.clone();
        if self.plan.mode == WriteMode::Overwrite {
            let stage = side_name(&name, STAGE_SUFFIX);
            conn.query_drop(format!("DROP TABLE IF EXISTS {}", qualified(&db, &stage)))
                .await
                .map_err(|e| map(e, ctx("dropping an old staging table")))?;
            let sql = if existing.is_empty() {
                create_sql(&db, &stage, table, &declared)
            } else {
                format!(
                    "CREATE TABLE {} LIKE {}",
                    qualified(&db, &stage),
                    qualified(&db, &name)
                )
            };
            conn.query_drop(sql)
                .await
                .map_err(|e| map(e, ctx("creating the staging table")))?;
            conn.exec_drop(
                format!(
                    "DELETE FROM {} WHERE job = ? AND table_name = ?",
                    qualified(&db, CHECKPOINT_TABLE)
                ),
                (self.job().job, target.to_string()),
            )
            .await
            .map_err(|e| map(e, ctx("clearing old checkpoints")))?;
            write_to = stage;
        }
        let uuid = table
            .schema
            .arrow
            .fields()
            .iter()
            .map(|f| LogicalType::of_field(f).is_ok_and(|t| t == LogicalType::Uuid))
            .collect();
        Ok(TableState {
            db,
            table: name,
            write_to,
            columns,
            key,
            uuid,
        })
    }
}

async fn existing_columns(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> std::result::Result<Vec<(String, String)>, mysql_async::Error> {
    let cols: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.columns \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    Ok(cols)
}

/// `name` + `suffix`, shortened (with a hash) to MySQL's 64-character limit.
fn side_name(name: &str, suffix: &str) -> String {
    let full = format!("{name}{suffix}");
    if full.chars().count() <= 64 {
        return full;
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let keep: String = name.chars().take(64 - suffix.len() - 9).collect();
    format!("{keep}_{:08x}{suffix}", hash as u32)
}

fn create_sql(db: &str, name: &str, table: &TablePlan, declared: &[(String, String)]) -> String {
    let mut defs: Vec<String> = declared
        .iter()
        .zip(table.schema.arrow.fields())
        .map(|((n, t), f)| {
            format!(
                "{} {t}{}",
                quote(n),
                if f.is_nullable() { "" } else { " NOT NULL" }
            )
        })
        .collect();
    if !table.schema.primary_key.is_empty() {
        let pk: Vec<String> = table.schema.primary_key.iter().map(|k| quote(k)).collect();
        defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
    }
    format!(
        "CREATE TABLE {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        qualified(db, name),
        defs.join(", ")
    )
}

#[async_trait]
impl Sink for MysqlSink {
    fn begin(&self, ctx: &JobContext) -> Result<()> {
        let _ = self.job.set(ctx.clone());
        Ok(())
    }

    async fn committed_positions(&self) -> Result<Option<Vec<Position>>> {
        let dbs: std::collections::BTreeSet<String> = self
            .states
            .lock()
            .map_err(|_| Error::internal("mysql sink: table states poisoned"))?
            .values()
            .map(|s| s.db.clone())
            .collect();
        let job = self.job();
        let mut conn = connect(&self.plan.server, "reading checkpoints").await?;
        let mut out = Vec::new();
        for db in dbs {
            let rows: Vec<String> = conn
                .exec(
                    format!(
                        "SELECT position FROM {} WHERE job = ? AND generation = ?",
                        qualified(&db, CHECKPOINT_TABLE)
                    ),
                    (job.job.clone(), job.generation.clone()),
                )
                .await
                .map_err(|e| map(e, "reading checkpoints"))?;
            for r in rows {
                out.push(serde_json::from_str(&r).map_err(|e| {
                    Error::internal(format!("unreadable checkpoint row {r:?}: {e}")).with_hint(
                        "delete the job's rows from _sluice_checkpoints and run with --from-scratch",
                    )
                })?);
            }
        }
        let _ = conn.disconnect().await;
        Ok(Some(out))
    }

    async fn prepare(&self, tables: &[TablePlan]) -> Result<()> {
        for t in tables {
            Self::declared_types(t)?;
        }
        let mut conn = connect(&self.plan.server, "sink").await?;
        let mut result = Ok(());
        for t in tables {
            match self.prepare_one(&mut conn, t).await {
                Ok(st) => {
                    self.states
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(t.target.clone(), Arc::new(st));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let _ = conn.disconnect().await;
        result
    }

    fn target_types(&self, table: &TablePlan) -> Result<Option<Vec<(String, String)>>> {
        Self::declared_types(table).map(Some)
    }

    async fn open(&self, table: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>> {
        let state = self.state(&table.target)?;
        let what = format!("table {}, split {}", table.target, split.index);
        let mut conn = connect(&self.plan.server, &what).await?;
        if self.plan.mode == WriteMode::Upsert && self.plan.method == LoadMethod::LoadData {
            let sql = format!(
                "CREATE TEMPORARY TABLE {} AS SELECT * FROM {} LIMIT 0",
                qualified(&state.db, UPSERT_TEMP),
                qualified(&state.db, &state.write_to)
            );
            if let Err(e) = conn.query_drop(sql).await {
                let _ = conn.disconnect().await;
                return Err(map(e, format!("{what}: creating the upsert table")));
            }
        }
        Ok(Box::new(MysqlWriter {
            conn: Some(conn),
            state,
            mode: self.plan.mode,
            method: self.plan.method,
            target: table.target.to_string(),
            what,
            in_tx: false,
            rows: 0,
            job: self.job(),
        }))
    }

    async fn finish_table(&self, table: &TablePlan) -> Result<()> {
        if self.plan.mode != WriteMode::Overwrite {
            return Ok(());
        }
        let st = self.state(&table.target)?;
        let ctx = |what: &str| format!("table {}: {what}", table.target);
        let mut conn = connect(&self.plan.server, "sink").await?;
        let exists = !existing_columns(&mut conn, &st.db, &st.table)
            .await
            .map_err(|e| map(e, ctx("checking the target")))?
            .is_empty();
        let (t, s) = (
            qualified(&st.db, &st.table),
            qualified(&st.db, &st.write_to),
        );
        let r = async {
            if exists {
                let old = qualified(&st.db, &side_name(&st.table, OLD_SUFFIX));
                conn.query_drop(format!("DROP TABLE IF EXISTS {old}"))
                    .await?;
                // One RENAME statement is atomic: readers see the old table or the new one.
                conn.query_drop(format!("RENAME TABLE {t} TO {old}, {s} TO {t}"))
                    .await?;
                conn.query_drop(format!("DROP TABLE {old}")).await
            } else {
                conn.query_drop(format!("RENAME TABLE {s} TO {t}")).await
            }
        }
        .await;
        let _ = conn.disconnect().await;
        r.map_err(|e| map(e, ctx("swapping the staging table in")))
    }
}

/// Writes one split on its own connection, in one transaction per commit.
struct MysqlWriter {
    conn: Option<Conn>,
    state: Arc<TableState>,
    mode: WriteMode,
    method: LoadMethod,
    target: String,
    what: String,
    in_tx: bool,
    /// Rows written in this split so far (for row numbers in messages).
    rows: u64,
    /// Keys the checkpoint row.
    job: JobContext,
}

impl MysqlWriter {
    fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::internal("writer used after abort"))
    }

    async fn begin(&mut self) -> Result<()> {
        if !self.in_tx {
            let what = self.what.clone();
            self.conn()?
                .query_drop("START TRANSACTION")
                .await
                .map_err(|e| map(e, what))?;
            self.in_tx = true;
        }
        Ok(())
    }

    fn col_list(&self) -> String {
        let c: Vec<String> = self.state.columns.iter().map(|c| quote(&c.name)).collect();
        c.join(", ")
    }

    fn upsert_clause(&self) -> String {
        let st = &self.state;
        let mut sets: Vec<String> = st
            .columns
            .iter()
            .filter(|c| !st.key.iter().any(|k| k.eq_ignore_ascii_case(&c.name)))
            .map(|c| format!("{q} = VALUES({q})", q = quote(&c.name)))
            .collect();
        if sets.is_empty() {
            let k = quote(&st.key[0]);
            sets.push(format!("{k} = {k}"));
        }
        format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
    }

    /// Names the failing row: MySQL says `at row N` of the statement.
    fn data_error(&self, e: mysql_async::Error, first_row: u64) -> Error {
        let msg = e.to_string();
        let row = msg.split("at row ").nth(1).and_then(|r| {
            r.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse::<u64>()
                .ok()
        });
        let at = match row {
            Some(r) => format!("row {} of the split", first_row + r),
            None => format!("rows from {} of the split", first_row + 1),
        };
        map(e, format!("{}, {at}", self.what))
    }

    async fn load_data(&mut self, batch: &RecordBatch, into: &str) -> Result<()> {
        let st = self.state.clone();
        let mut buf = Vec::with_capacity(batch.num_rows() * 64);
        let cols: Vec<Column<'_>> = batch
            .columns()
            .iter()
            .zip(&st.columns)
            .zip(&st.uuid)
            .map(|((a, c), u)| Column::new(a, c.kind, *u))
            .collect();
        for row in 0..batch.num_rows() {
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    buf.push(b'\t');
                }
                let cell = c.cell(row).map_err(|e| self.cell_error(batch, i, row, e))?;
                match (st.columns[i].kind, &cell) {
                    (Kind::Year, Cell::Int(y)) => {
                        buf.extend_from_slice(format!("{y:04}").as_bytes())
                    }
                    (Kind::Year, Cell::UInt(y)) => {
                        buf.extend_from_slice(format!("{y:04}").as_bytes())
                    }
                    _ => write_tsv(&cell, &mut buf),
                }
            }
            buf.push(b'\n');
        }
        let mut targets = Vec::new();
        let mut sets = Vec::new();
        for (i, c) in st.columns.iter().enumerate() {
            if c.kind == Kind::Bit {
                targets.push(format!("@v{i}"));
                sets.push(format!("{} = CAST(@v{i} AS UNSIGNED)", quote(&c.name)));
            } else {
                targets.push(quote(&c.name));
            }
        }
        let set = if sets.is_empty() {
            String::new()
        } else {
            format!(" SET {}", sets.join(", "))
        };
        let sql = format!(
            "LOAD DATA LOCAL INFILE 'sluice' INTO TABLE {} CHARACTER SET binary \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({}){set}",
            qualified(&st.db, into),
            targets.join(", ")
        );
        let data = Bytes::from(buf);
        let conn = self.conn()?;
        conn.set_infile_handler(async move { Ok(futures::stream::iter([Ok(data)]).boxed()) });
        let first = self.rows;
        let r = self.conn()?.query_drop(sql).await;
        r.map_err(|e| self.data_error(e, first))?;
        self.fail_on_warnings(first).await
    }

    /// With LOCAL, MySQL turns duplicate keys and bad values into warnings (it cannot stop
    /// the client's stream): any warning fails the batch, naming the first one.
    async fn fail_on_warnings(&mut self, first: u64) -> Result<()> {
        let conn = self.conn()?;
        if conn.get_warnings() == 0 {
            return Ok(());
        }
        let warnings: Vec<(String, u16, String)> = conn
            .query("SHOW WARNINGS LIMIT 5")
            .await
            .map_err(|e| map(e, self.what.clone()))?;
        let Some((_, code, message)) = warnings.into_iter().find(|(level, _, _)| level != "Note")
        else {
            return Ok(());
        };
        let e = mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message,
            state: "HY000".into(),
        });
        Err(self.data_error(e, first))
    }

    async fn insert(&mut self, batch: &RecordBatch) -> Result<()> {
        let st = self.state.clone();
        let ncols = st.columns.len().max(1);
        let per_stmt = (MAX_PARAMS / ncols).clamp(1, 2000);
        let cols: Vec<Column<'_>> = batch
            .columns()
            .iter()
            .zip(&st.columns)
            .zip(&st.uuid)
            .map(|((a, c), u)| Column::new(a, c.kind, *u))
            .collect();
        let row_ph = format!("({})", vec!["?"; ncols].join(", "));
        let upsert = if self.mode == WriteMode::Upsert {
            self.upsert_clause()
        } else {
            String::new()
        };
        let mut start = 0;
        while start < batch.num_rows() {
            let n = per_stmt.min(batch.num_rows() - start);
            let mut params = Vec::with_capacity(n * ncols);
            for row in start..start + n {
                for (i, c) in cols.iter().enumerate() {
                    let cell = c.cell(row).map_err(|e| self.cell_error(batch, i, row, e))?;
                    params.push(to_value(cell));
                }
            }
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}{upsert}",
                qualified(&st.db, &st.write_to),
                self.col_list(),
                vec![row_ph.as_str(); n].join(", ")
            );
            let first = self.rows + start as u64;
            let r = self.conn()?.exec_drop(sql, params).await;
            r.map_err(|e| self.data_error(e, first))?;
            start += n;
        }
        Ok(())
    }

    fn cell_error(&self, batch: &RecordBatch, col: usize, row: usize, e: String) -> Error {
        let name = batch.schema().field(col).name().clone();
        Error::data(format!(
            "{}, column {name:?}, row {} of the split: {e}",
            self.what,
            self.rows + row as u64 + 1
        ))
        .with_hint("cast or filter the column with a transform")
    }
}

#[async_trait]
impl SinkWriter for MysqlWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if batch.num_columns() != self.state.columns.len() {
            return Err(Error::internal(format!(
                "{}: batch has {} columns, the table plan {}",
                self.what,
                batch.num_columns(),
                self.state.columns.len()
            )));
        }
        self.begin().await?;
        let st = self.state.clone();
        match (self.method, self.mode) {
            (LoadMethod::Insert, _) => self.insert(&batch).await?,
            (LoadMethod::LoadData, WriteMode::Upsert) => {
                self.load_data(&batch, UPSERT_TEMP).await?;
                let tmp = qualified(&st.db, UPSERT_TEMP);
                let sql = format!(
                    "INSERT INTO {} ({c}) SELECT {c} FROM {tmp}{}",
                    qualified(&st.db, &st.write_to),
                    self.upsert_clause(),
                    c = self.col_list()
                );
                let first = self.rows;
                let r = self.conn()?.query_drop(sql).await;
                r.map_err(|e| self.data_error(e, first))?;
                self.fail_on_warnings(first).await?;
                let what = self.what.clone();
                self.conn()?
                    .query_drop(format!("DELETE FROM {tmp}"))
                    .await
                    .map_err(|e| map(e, what))?;
            }
            (LoadMethod::LoadData, _) => {
                let into = st.write_to.clone();
                self.load_data(&batch, &into).await?
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    async fn commit(&mut self, position: &Position) -> Result<()> {
        self.begin().await?;
        let st = self.state.clone();
        let what = self.what.clone();
        let pos = serde_json::to_string(position).map_err(|e| Error::internal(e.to_string()))?;
        let target = self.target.clone();
        let job = self.job.clone();
        let conn = self.conn()?;
        conn.exec_drop(
            format!(
                "INSERT INTO {} (job, split, generation, table_name, position, committed_at) \
                 VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6)) \
                 ON DUPLICATE KEY UPDATE generation = VALUES(generation), table_name = VALUES(table_name), \
                 position = VALUES(position), committed_at = VALUES(committed_at)",
                qualified(&st.db, CHECKPOINT_TABLE)
            ),
            (job.job, position.split.clone(), job.generation, target, pos),
        )
        .await
        .map_err(|e| map(e, format!("{what}: writing the checkpoint")))?;
        // Invariant: the rows and the checkpoint row become durable together here.
        conn.query_drop("COMMIT")
            .await
            .map_err(|e| map(e, format!("{what}: committing")))?;
        self.in_tx = false;
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let r = if self.in_tx {
            conn.query_drop("ROLLBACK").await
        } else {
            Ok(())
        };
        let _ = conn.disconnect().await;
        r.map_err(|e| map(e, format!("{}: rolling back", self.what)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_names_fit_mysql_limits() {
        assert_eq!(side_name("t", STAGE_SUFFIX), "t__sluice_stage");
        let long = "x".repeat(60);
        let s = side_name(&long, STAGE_SUFFIX);
        assert!(s.chars().count() <= 64, "{s}");
        assert!(s.ends_with(STAGE_SUFFIX));
        assert_ne!(
            side_name(&long, STAGE_SUFFIX),
            side_name(&"y".repeat(60), STAGE_SUFFIX)
        );
    }
}
