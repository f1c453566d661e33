//! The MySQL sink: checks or creates target tables, writes each split in one transaction
//! with `LOAD DATA LOCAL INFILE` (or multi-row `INSERT`), and swaps staging tables in for
//! `overwrite`.
//!
//! Invariant: a split's rows and its checkpoint row in `_sluice_checkpoints` commit in the
//! same InnoDB transaction before `commit` returns. Tables Sluice creates are therefore
//! loaded as InnoDB even when the source's engine is MyISAM or Aria, and converted to it in
//! `finish_table`. No value reaches the server in a form it would round: decimals and
//! fractional seconds are checked against the target column, and the note MySQL gives for a
//! truncated value fails the batch like a warning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_core::batch::{OP_COLUMN, Position, Split};
use sluice_core::config::toml_string;
use sluice_core::naming::{
    LOCK_WAIT, LockScope, MAX_IDENTIFIER_BYTES, STAGE_SUFFIX, lock_key, side_table_name,
};
use sluice_core::sink::{JobContext, Sink, SinkWriter, TablePlan};
use sluice_core::{
    Checkpoint, CheckpointEdit, Error, GenerationRecord, JobSlot, LogicalType, Result,
    SinkLockGuard, TableId, WriteMode,
};
use tracing::{info, warn};

use crate::checkpoints::{self, CHECKPOINTS as CHECKPOINT_TABLE, Dialect, JOBS};

use super::check::{connect, qualified, quote};
use super::config::{LoadMethod, SinkPlan};
use super::encode::{Cell, ColSpec, Column, to_value, write_tsv};
use super::error::map;
use super::types::{self, KeyRole, Kind};

const D: Dialect = Dialect::Mysql;
const OLD_SUFFIX: &str = "__sluice_old";
/// The per-writer temporary table `upsert` loads into.
const UPSERT_TEMP: &str = "_sluice_upsert";
/// Placeholders per `INSERT` statement (the protocol allows 65535).
const MAX_PARAMS: usize = 60_000;
/// The note MySQL gives, even in strict mode, for a value it truncated or rounded.
const WARN_DATA_TRUNCATED: u16 = 1265;

/// The columns writers fill (not those the target generates), quoted, in batch order.
fn col_list(st: &TableState) -> String {
    let c: Vec<String> = st
        .columns
        .iter()
        .filter(|c| c.write)
        .map(|c| quote(&c.name))
        .collect();
    c.join(", ")
}

/// One target column, as written.
#[derive(Debug, Clone)]
struct TargetCol {
    /// The target's spelling of the name.
    name: String,
    /// What the target column holds.
    spec: ColSpec,
    /// False for a column the target generates (`GENERATED ALWAYS AS …`): never written.
    write: bool,
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
    /// Positions of the primary-key columns in the incoming batch (to name failing rows).
    key_idx: Vec<usize>,
    /// A non-transactional engine (MyISAM, Aria, …) `write_to` is converted to once every
    /// split has committed; it is loaded as InnoDB so that a split and its checkpoint commit
    /// or roll back together.
    convert_to: Option<String>,
    /// The table receives change events: batches end with the operation column
    /// ([`OP_COLUMN`]), which is not a target column.
    changes: bool,
}

/// `table` without its operation column, if it has one (and whether it had).
fn without_op(table: &TablePlan) -> (TablePlan, bool) {
    let Ok(i) = table.schema.arrow.index_of(OP_COLUMN) else {
        return (table.clone(), false);
    };
    let mut t = table.clone();
    let mut fields: Vec<arrow::datatypes::FieldRef> = t.schema.arrow.fields().to_vec();
    fields.remove(i);
    t.schema.arrow = Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        t.schema.arrow.metadata().clone(),
    ));
    (t, true)
}

/// The comment of a table Sluice created as InnoDB and converts to another engine when the
/// load finishes, e.g. `sluice: ENGINE=MyISAM when the copy finishes` (a resumed copy reads
/// it back).
const CONVERT_MARK: &str = "sluice: ENGINE=";

/// Writes MySQL/MariaDB tables. See the module docs.
pub struct MysqlSink {
    plan: SinkPlan,
    states: Mutex<HashMap<TableId, Arc<TableState>>>,
    job: JobSlot,
    /// The database holding `_sluice_jobs`: the url's, else the first target's (set by `lock`).
    home: std::sync::OnceLock<String>,
    /// The databases the job's targets live in (set by `lock`): each has a checkpoint table.
    target_dbs: Mutex<std::collections::BTreeSet<String>>,
}

impl MysqlSink {
    fn job(&self) -> JobContext {
        self.job.get()
    }

    pub(crate) fn new(plan: SinkPlan) -> Self {
        MysqlSink {
            plan,
            states: Mutex::new(HashMap::new()),
            job: JobSlot::default(),
            home: std::sync::OnceLock::new(),
            target_dbs: Mutex::new(Default::default()),
        }
    }

    /// The databases whose checkpoint tables hold this job's rows.
    fn checkpoint_dbs(&self) -> std::collections::BTreeSet<String> {
        let mut dbs = self
            .target_dbs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        dbs.extend(
            self.states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|s| s.db.clone()),
        );
        dbs
    }

    fn home(&self) -> Result<&str> {
        self.home
            .get()
            .or(self.plan.server.database.as_ref())
            .map(String::as_str)
            .ok_or_else(|| Error::internal("mysql sink: no database for _sluice_jobs"))
    }

    /// Whether `db` exists; if it does, its checkpoint table is created or brought up to date.
    async fn checkpoints_ready(conn: &mut Conn, db: &str) -> Result<bool> {
        let exists: Option<String> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.schemata WHERE SCHEMA_NAME = ?",
                (db,),
            )
            .await
            .map_err(|e| map(e, format!("checking database {db}")))?;
        if exists.is_none() {
            return Ok(false);
        }
        Self::ensure_checkpoints(conn, db).await?;
        Ok(true)
    }

    /// Creates (or brings up to date) the checkpoint table of `db`.
    async fn ensure_checkpoints(conn: &mut Conn, db: &str) -> Result<()> {
        let q = qualified(db, CHECKPOINT_TABLE);
        conn.query_drop(D.create_checkpoints(&q))
            .await
            .map_err(|e| map(e, format!("database {db}: creating {CHECKPOINT_TABLE}")))?;
        let has_rows: Option<String> = conn
            .exec_first(
                "SELECT COLUMN_NAME FROM information_schema.columns WHERE TABLE_SCHEMA = ? \
                 AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                (db, CHECKPOINT_TABLE, checkpoints::ROWS_COLUMN),
            )
            .await
            .map_err(|e| map(e, format!("database {db}: reading {CHECKPOINT_TABLE}")))?;
        if has_rows.is_none() {
            conn.query_drop(D.add_rows_column(&q))
                .await
                .map_err(|e| map(e, format!("database {db}: upgrading {CHECKPOINT_TABLE}")))?;
        }
        Ok(())
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
        Self::ensure_checkpoints(conn, &db).await?;

        let existing = existing_columns(conn, &db, &name)
            .await
            .map_err(|e| map(e, ctx("reading its columns")))?;
        let info = table_info(conn, &db, &name)
            .await
            .map_err(|e| map(e, ctx("reading its engine")))?;
        let mut columns = Vec::with_capacity(declared.len());
        let mut convert_to = None;
        let mut new_engine = ("InnoDB".to_string(), None);
        if existing.is_empty() {
            if !self.plan.create_tables {
                return Err(Error::config(format!(
                    "table {target} does not exist in database {db:?}"
                ))
                .with_hint("create it, or set create_tables = true in [sink]"));
            }
            for f in table.schema.arrow.fields() {
                if let Some(Err(expr)) = types::generated_def(f) {
                    warn!(
                        table = %target,
                        column = %f.name(),
                        expression = %expr,
                        "The column's recorded generation expression is not one plain \
                         expression, so it is not written into CREATE TABLE; the column is a \
                         plain column holding the source's values."
                    );
                }
                if let Some(Err(native)) = types::native_ddl_type(f) {
                    warn!(
                        table = %target,
                        column = %f.name(),
                        native = %native,
                        "The column's recorded MySQL type is not a type name, so it is not \
                         written into CREATE TABLE; the column gets its logical type's MySQL \
                         type."
                    );
                }
            }
            let (engine, convert) = create_engine(conn, table, target).await?;
            new_engine = (engine.clone(), convert.clone());
            if self.plan.mode != WriteMode::Overwrite {
                conn.query_drop(create_sql(
                    &db,
                    &name,
                    table,
                    &declared,
                    &engine,
                    convert.as_deref(),
                ))
                .await
                .map_err(|e| map(e, ctx("creating it")))?;
                info!(table = %target, engine = %engine, "Created the target table.");
            }
            convert_to = convert;
            for ((n, t), f) in declared.iter().zip(table.schema.arrow.fields()) {
                let mt = types::parse(t, false).ok();
                columns.push(TargetCol {
                    name: n.clone(),
                    spec: col_spec(mt.as_ref(), f),
                    write: !matches!(types::generated_def(f), Some(Ok(_))),
                });
            }
        } else {
            if let Some((engine, comment)) = &info {
                // A table Sluice created in an earlier run of this copy, not yet converted.
                convert_to = comment
                    .strip_prefix(CONVERT_MARK)
                    .and_then(|r| r.split_whitespace().next())
                    .filter(|e| types::is_plain_name(e))
                    .map(str::to_string);
                if convert_to.is_none()
                    && self.plan.mode == WriteMode::Append
                    && !is_transactional(conn, engine).await
                {
                    warn!(
                        table = %target,
                        engine = %engine,
                        "The target table's engine cannot roll back: a split retried after an \
                         error, or resumed after a crash, may leave its first rows twice. \
                         Convert it to InnoDB, or use write = \"upsert\" or \"overwrite\"."
                    );
                }
            }
            for f in table.schema.arrow.fields() {
                let Some(col) = existing
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(f.name()))
                else {
                    return Err(Error::schema(format!(
                        "table {target}: column {:?} is missing in the existing target table",
                        f.name()
                    ))
                    .with_hint("add the column to the target, drop it with a select/drop transform, or write to a new table"));
                };
                let (tname, ttype) = (&col.name, &col.column_type);
                if col.generated {
                    info!(
                        table = %target,
                        column = %tname,
                        "The target generates this column: its values are computed there; \
                         the source's are not written."
                    );
                    columns.push(TargetCol {
                        name: tname.clone(),
                        spec: col_spec(None, f),
                        write: false,
                    });
                    continue;
                }
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
                    spec: col_spec(Some(&mt), f),
                    write: true,
                });
            }
        }
        if !columns.iter().any(|c| c.write) {
            return Err(Error::schema(format!(
                "table {target}: every column is generated by the target, so nothing can be written"
            ))
            .with_hint("write to a table with ordinary columns, or exclude the table"));
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
        let key_idx = table
            .schema
            .primary_key
            .iter()
            .filter_map(|k| table.schema.arrow.index_of(k).ok())
            .collect();
        let mut write_to = name.clone();
        if self.plan.mode == WriteMode::Overwrite {
            let stage = side_name(&name, STAGE_SUFFIX);
            conn.query_drop(format!("DROP TABLE IF EXISTS {}", qualified(&db, &stage)))
                .await
                .map_err(|e| map(e, ctx("dropping an old staging table")))?;
            let sql = if existing.is_empty() {
                let (engine, convert) = &new_engine;
                create_sql(&db, &stage, table, &declared, engine, convert.as_deref())
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
            if let Some((engine, _)) = info.as_ref().filter(|_| !existing.is_empty())
                && convert_to.is_none()
            {
                convert_to = load_transactionally(conn, &db, &stage, engine, target).await;
            }
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
        Ok(TableState {
            db,
            table: name,
            write_to,
            columns,
            key,
            key_idx,
            convert_to,
            changes: false,
        })
    }

    /// Converts `table` to `engine` (see [`TableState::convert_to`]); idempotent. A failure
    /// leaves the data in InnoDB and is only logged: every row is there.
    async fn convert_engine(&self, db: &str, table: &str, engine: &str, target: &TableId) {
        let r = async {
            let mut conn = connect(&self.plan.server, "sink").await?;
            let r = async {
                let Some((current, comment)) = table_info(&mut conn, db, table).await? else {
                    return Ok(());
                };
                let clear = if comment.starts_with(CONVERT_MARK) {
                    ", COMMENT = ''"
                } else {
                    ""
                };
                if !current.eq_ignore_ascii_case(engine) || !clear.is_empty() {
                    conn.query_drop(format!(
                        "ALTER TABLE {} ENGINE = {engine}{clear}",
                        qualified(db, table)
                    ))
                    .await?;
                    info!(table = %target, engine = %engine, "Converted the table to its source's engine.");
                }
                Ok(())
            }
            .await;
            let _ = conn.disconnect().await;
            r.map_err(|e: mysql_async::Error| map(e, "converting the engine"))
        }
        .await;
        if let Err(e) = r {
            warn!(
                table = %target,
                engine = %engine,
                error = %e,
                "The table stays InnoDB: converting it to its source's engine failed. Every row \
                 is there; run ALTER TABLE … ENGINE = {engine} yourself if it matters."
            );
        }
    }
}

/// The `(engine, comment)` of `db.table`, if it exists.
async fn table_info(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> std::result::Result<Option<(String, String)>, mysql_async::Error> {
    let row: Option<(Option<String>, Option<String>)> = conn
        .exec_first(
            "SELECT ENGINE, TABLE_COMMENT FROM information_schema.tables \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await?;
    Ok(row.map(|(e, c)| (e.unwrap_or_default(), c.unwrap_or_default())))
}

/// Whether `engine` supports transactions on this server (unknown engines count as not).
async fn is_transactional(conn: &mut Conn, engine: &str) -> bool {
    let r: std::result::Result<Option<Option<String>>, _> = conn
        .exec_first(
            "SELECT TRANSACTIONS FROM information_schema.engines WHERE ENGINE = ?",
            (engine,),
        )
        .await;
    matches!(r, Ok(Some(Some(t))) if t == "YES")
}

/// The engine a new table is created with, and the engine it is converted to when the load
/// finishes: the source's engine (a MySQL source) when the target server has it and it is
/// transactional; a non-transactional one is loaded as InnoDB and converted afterwards.
async fn create_engine(
    conn: &mut Conn,
    table: &TablePlan,
    target: &TableId,
) -> Result<(String, Option<String>)> {
    let innodb = || ("InnoDB".to_string(), None);
    let Some(source) = table
        .schema
        .arrow
        .metadata()
        .get(types::ENGINE_KEY)
        .filter(|e| types::is_plain_name(e))
    else {
        return Ok(innodb());
    };
    let row: Option<(String, String, Option<String>)> = conn
        .exec_first(
            "SELECT ENGINE, SUPPORT, TRANSACTIONS FROM information_schema.engines WHERE ENGINE = ?",
            (source,),
        )
        .await
        .map_err(|e| map(e, format!("table {target}: reading the server's engines")))?;
    match row {
        Some((name, support, tx)) if matches!(support.as_str(), "YES" | "DEFAULT") => {
            if tx.as_deref() == Some("YES") {
                Ok((name, None))
            } else {
                Ok(("InnoDB".to_string(), Some(name)))
            }
        }
        _ => {
            warn!(
                table = %target,
                engine = %source,
                "The target server has no {source} engine: the table is created as InnoDB."
            );
            Ok(innodb())
        }
    }
}

/// For `overwrite` into an existing table of a non-transactional engine: the fresh staging
/// table is made InnoDB for the load and converted back when it is swapped in. `None` (and
/// the stage is left as it is) when the engine is transactional or InnoDB cannot hold it.
async fn load_transactionally(
    conn: &mut Conn,
    db: &str,
    stage: &str,
    engine: &str,
    target: &TableId,
) -> Option<String> {
    if engine.is_empty() || is_transactional(conn, engine).await || !types::is_plain_name(engine) {
        return None;
    }
    match conn
        .query_drop(format!(
            "ALTER TABLE {} ENGINE = InnoDB",
            qualified(db, stage)
        ))
        .await
    {
        Ok(()) => Some(engine.to_string()),
        Err(e) => {
            warn!(
                table = %target,
                engine = %engine,
                error = %e,
                "The staging table cannot be InnoDB: it is loaded as {engine}, which cannot \
                 roll back, so a split retried after an error may leave its first rows twice."
            );
            None
        }
    }
}

/// How the values of source field `f` are written into a target column of type `mt`
/// (`None`: a column that is not written).
fn col_spec(mt: Option<&types::MysqlType>, f: &arrow::datatypes::Field) -> ColSpec {
    let kind = mt.map(|m| m.kind).unwrap_or(Kind::Text);
    let decimal = match mt.map(|m| &m.logical) {
        Some(LogicalType::Decimal {
            precision: Some(p),
            scale,
        }) if kind == Kind::Decimal => Some((u32::from(*p), scale.unwrap_or(0).max(0) as u32)),
        _ => None,
    };
    ColSpec {
        kind,
        uuid: LogicalType::of_field(f).is_ok_and(|t| t == LogicalType::Uuid),
        decimal,
        fsp: mt.map(|m| u32::from(m.fsp)).unwrap_or(6),
        zero_dates: f
            .metadata()
            .get(types::ZERO_DATES_KEY)
            .is_some_and(|v| v == "kept"),
    }
}

/// One column of an existing target table.
struct ExistingCol {
    name: String,
    column_type: String,
    /// `GENERATED ALWAYS AS …` (virtual or stored): the server computes it.
    generated: bool,
}

async fn existing_columns(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> std::result::Result<Vec<ExistingCol>, mysql_async::Error> {
    let cols: Vec<(String, String, Option<String>)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.columns \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    Ok(cols
        .into_iter()
        .map(|(name, column_type, extra)| {
            // `VIRTUAL GENERATED`, `STORED GENERATED`; not MySQL's `DEFAULT_GENERATED`
            // (a default expression).
            let extra = extra.unwrap_or_default().to_ascii_uppercase();
            ExistingCol {
                name,
                column_type,
                generated: extra.contains("VIRTUAL GENERATED")
                    || extra.contains("STORED GENERATED")
                    || extra.contains("PERSISTENT GENERATED"),
            }
        })
        .collect())
}

/// `name` + `suffix`, shortened (with a hash) to the identifier limit (the one rule of
/// `sluice_core::naming`).
fn side_name(name: &str, suffix: &str) -> String {
    side_table_name(name, suffix, MAX_IDENTIFIER_BYTES)
}

/// `CREATE TABLE` for `table`: the declared types; from a MySQL source (field and schema
/// metadata) also column collations, generated columns, `AUTO_INCREMENT` and the table's
/// collation; `engine`, and the [`CONVERT_MARK`] comment when it is converted later.
fn create_sql(
    db: &str,
    name: &str,
    table: &TablePlan,
    declared: &[(String, String)],
    engine: &str,
    convert_to: Option<&str>,
) -> String {
    let pk = &table.schema.primary_key;
    let mut auto_key = None;
    let mut defs: Vec<String> = declared
        .iter()
        .zip(table.schema.arrow.fields())
        .map(|((n, t), f)| {
            let md = f.metadata();
            let mut def = format!("{} {t}", quote(n));
            if let Some(c) = md
                .get(types::COLLATION_KEY)
                .filter(|c| types::is_plain_name(c))
            {
                def.push_str(&format!(" COLLATE {c}"));
            }
            if let Some(Ok((how, expr))) = types::generated_def(f) {
                def.push_str(&format!(" GENERATED ALWAYS AS ({expr}) {how}"));
                return def;
            }
            if !f.is_nullable() {
                def.push_str(" NOT NULL");
            }
            if md
                .get(types::AUTO_INCREMENT_KEY)
                .is_some_and(|v| v == "true")
                && auto_key.is_none()
            {
                def.push_str(" AUTO_INCREMENT");
                auto_key = Some(n.clone());
            }
            def
        })
        .collect();
    if !pk.is_empty() {
        let cols: Vec<String> = pk.iter().map(|k| quote(k)).collect();
        defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
    }
    // An AUTO_INCREMENT column must lead an index.
    if let Some(a) = auto_key
        && pk.first() != Some(&a)
    {
        defs.push(format!("KEY ({})", quote(&a)));
    }
    let collation = match table
        .schema
        .arrow
        .metadata()
        .get(types::TABLE_COLLATION_KEY)
        .filter(|c| types::is_plain_name(c))
    {
        Some(c) => format!("DEFAULT COLLATE={c}"),
        None => "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin".to_string(),
    };
    let comment = convert_to
        .map(|e| format!(" COMMENT='{CONVERT_MARK}{e} when the copy finishes'"))
        .unwrap_or_default();
    format!(
        "CREATE TABLE {} ({}) ENGINE={engine} {collation}{comment}",
        qualified(db, name),
        defs.join(", ")
    )
}

/// The named locks of one job, held by a connection of their own: released when it closes
/// (also when the process dies).
struct LockHolder {
    _conn: Conn,
}

#[async_trait]
impl Sink for MysqlSink {
    async fn check(&self, _tables: &[TablePlan]) -> Result<()> {
        super::check::check_sink(
            &self.plan.server,
            self.plan.method == super::config::LoadMethod::LoadData,
        )
        .await
    }

    fn keeps_checkpoints(&self) -> bool {
        true
    }

    async fn lock(&self, job: &str, targets: &[TableId]) -> Result<Option<SinkLockGuard>> {
        let mut resolved = Vec::new();
        for t in targets {
            resolved.push(self.plan.server.resolve(t)?);
        }
        let home = self
            .plan
            .server
            .database
            .clone()
            .or_else(|| resolved.iter().map(|(db, _)| db.clone()).min())
            .ok_or_else(|| {
                Error::config("the sink's url names no database and the job writes no table")
                    .with_hint("add the database to the url, e.g. mysql://root@127.0.0.1/shop")
            })?;
        let _ = self.home.set(home.clone());
        self.target_dbs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(resolved.iter().map(|(db, _)| db.clone()));
        let mut conn = connect(&self.plan.server, "taking the job's locks in the target").await?;
        let mut keys = vec![lock_key(LockScope::Job, "", job)];
        for (db, name) in &resolved {
            keys.push(lock_key(LockScope::Table, db, name));
        }
        for (key, label) in keys {
            // Lock names are at most 64 characters: the key's hex stands for the name.
            let name = format!("sluice:{:016x}", key as u64);
            let got: Option<i64> = conn
                .exec_first("SELECT GET_LOCK(?, ?)", (&name, LOCK_WAIT.as_secs()))
                .await
                .map_err(|e| map(e, "taking the job's locks in the target"))?;
            if got != Some(1) {
                let who: Option<Option<u64>> = conn
                    .exec_first("SELECT IS_USED_LOCK(?)", (&name,))
                    .await
                    .ok()
                    .flatten();
                let who = match who.flatten() {
                    Some(id) => format!("connection {id}"),
                    None => "another connection".to_string(),
                };
                let _ = conn.disconnect().await;
                return Err(Error::config(format!(
                    "the {label} is locked in MySQL at {} by {who}: another `sluice run` of this \
                     job, or another job writing this table, is running",
                    self.plan.server.display
                ))
                .with_hint(
                    "wait for it to end or stop it (`sluice stop JOB`); two runs writing the same \
                     job or table would double or mix rows",
                ));
            }
        }
        Ok(Some(Box::new(LockHolder { _conn: conn })))
    }

    async fn load_generation(&self, job: &str) -> Result<Option<GenerationRecord>> {
        let home = self.home()?.to_string();
        let mut conn = connect(&self.plan.server, "reading the job's generation").await?;
        let exists: Option<String> = conn
            .exec_first(
                "SELECT TABLE_NAME FROM information_schema.tables WHERE TABLE_SCHEMA = ? \
                 AND TABLE_NAME = ?",
                (&home, JOBS),
            )
            .await
            .map_err(|e| map(e, "reading _sluice_jobs"))?;
        let r = if exists.is_some() {
            let row: Option<(String, bool, String)> = conn
                .exec_first(D.select_job(&qualified(&home, JOBS)), (job,))
                .await
                .map_err(|e| map(e, "reading _sluice_jobs"))?;
            row.map(|(g, f, m)| checkpoints::record_of(g, f, &m))
                .transpose()
        } else {
            Ok(None)
        };
        let _ = conn.disconnect().await;
        r
    }

    async fn save_generation(&self, job: &str, record: &GenerationRecord) -> Result<()> {
        let home = self.home()?.to_string();
        let manifest = checkpoints::manifest_text(record)?;
        let mut conn = connect(&self.plan.server, "recording the job's generation").await?;
        let q = qualified(&home, JOBS);
        let r = async {
            conn.query_drop(D.create_jobs(&q)).await?;
            conn.exec_drop(
                D.upsert_job(&q),
                (job, &record.generation, record.finished, manifest),
            )
            .await
        }
        .await
        .map_err(|e| map(e, "writing _sluice_jobs"));
        let _ = conn.disconnect().await;
        r
    }

    fn begin(&self, ctx: &JobContext) -> Result<()> {
        self.job.set(ctx);
        Ok(())
    }

    async fn set_checkpoints(&self, edits: &[CheckpointEdit]) -> Result<bool> {
        let what = "editing checkpoints";
        let job = self.job();
        let mut conn = connect(&self.plan.server, what).await?;
        let mut dbs = Vec::new();
        for e in edits {
            let (db, _) = self.plan.server.resolve(&e.target)?;
            if !Self::checkpoints_ready(&mut conn, &db).await? {
                return Err(Error::config(format!(
                    "database {db} of table {} does not exist in the target",
                    e.target
                )));
            }
            dbs.push(db);
        }
        conn.query_drop("BEGIN").await.map_err(|e| map(e, what))?;
        for (e, db) in edits.iter().zip(dbs) {
            let q = qualified(&db, CHECKPOINT_TABLE);
            match &e.position {
                None => conn
                    .exec_drop(
                        D.delete_checkpoint(&q),
                        (&job.job, &job.generation, &e.split),
                    )
                    .await
                    .map_err(|err| map(err, what))?,
                Some(p) => conn
                    .exec_drop(
                        D.upsert_checkpoint(&q),
                        (
                            &job.job,
                            &e.split,
                            &job.generation,
                            &e.table,
                            checkpoints::position_text(p)?,
                            e.rows as i64,
                        ),
                    )
                    .await
                    .map_err(|err| map(err, what))?,
            }
        }
        // A failure above drops the connection, which rolls the transaction back.
        conn.query_drop("COMMIT").await.map_err(|e| map(e, what))?;
        let _ = conn.disconnect().await;
        Ok(true)
    }

    async fn committed_positions(&self) -> Result<Option<Vec<Checkpoint>>> {
        let dbs = self.checkpoint_dbs();
        let job = self.job();
        let mut conn = connect(&self.plan.server, "reading checkpoints").await?;
        let mut out = Vec::new();
        for db in dbs {
            if !Self::checkpoints_ready(&mut conn, &db).await? {
                continue;
            }
            let rows: Vec<(String, String, i64, String)> = conn
                .exec(
                    D.select_checkpoints(&qualified(&db, CHECKPOINT_TABLE)),
                    (job.job.clone(), job.generation.clone()),
                )
                .await
                .map_err(|e| map(e, "reading checkpoints"))?;
            for (_, pos, rows, table) in rows {
                out.push(checkpoints::checkpoint_of(&pos, rows, table)?);
            }
        }
        let _ = conn.disconnect().await;
        Ok(Some(out))
    }

    async fn checkpoint(&self, split: &str) -> Result<Option<sluice_core::Position>> {
        let dbs = self.checkpoint_dbs();
        let job = self.job();
        let mut conn = connect(&self.plan.server, "reading a checkpoint").await?;
        let mut found = None;
        for db in dbs {
            if !Self::checkpoints_ready(&mut conn, &db).await? {
                continue;
            }
            let row: Option<String> = conn
                .exec_first(
                    D.select_checkpoint(&qualified(&db, CHECKPOINT_TABLE)),
                    (job.job.clone(), job.generation.clone(), split),
                )
                .await
                .map_err(|e| map(e, "reading a checkpoint"))?;
            if let Some(p) = row {
                found = Some(checkpoints::parse_position(&p)?);
                break;
            }
        }
        let _ = conn.disconnect().await;
        Ok(found)
    }

    async fn holds_rows(&self, table: &TablePlan) -> Result<Option<bool>> {
        let st = self.state(&table.target)?;
        let mut conn = connect(&self.plan.server, "sink").await?;
        let r: std::result::Result<Option<i64>, _> = conn
            .query_first(format!(
                "SELECT EXISTS (SELECT 1 FROM {})",
                qualified(&st.db, &st.write_to)
            ))
            .await;
        let _ = conn.disconnect().await;
        let r = r.map_err(|e| {
            map(
                e,
                format!("table {}: checking whether it holds rows", table.target),
            )
        })?;
        Ok(Some(r == Some(1)))
    }

    async fn prepare(&self, tables: &[TablePlan]) -> Result<()> {
        let mut plans = Vec::with_capacity(tables.len());
        for t in tables {
            let (plain, changes) = without_op(t);
            if changes && self.plan.mode != WriteMode::Upsert {
                return Err(Error::config(format!(
                    "table {} receives change events (inserts, updates and deletes): they are \
                     applied by key, which needs write = \"upsert\"",
                    t.target
                ))
                .with_hint("set write = \"upsert\" in [sink]"));
            }
            Self::declared_types(&plain)?;
            plans.push((plain, changes));
        }
        let mut conn = connect(&self.plan.server, "sink").await?;
        let mut result = Ok(());
        for (t, changes) in &plans {
            match self.prepare_one(&mut conn, t).await {
                Ok(mut st) => {
                    st.changes = *changes;
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
        let mut declared = Self::declared_types(table)?;
        for ((column, ty), f) in declared.iter_mut().zip(table.schema.arrow.fields()) {
            match types::generated_def(f) {
                Some(Ok((how, expr))) => {
                    ty.push_str(&format!(" GENERATED ALWAYS AS ({expr}) {how}, not written"));
                    continue;
                }
                Some(Err(_)) => {
                    ty.push_str(" (the recorded generation expression is refused: a plain column)")
                }
                None => {}
            }
            match types::native_ddl_type(f) {
                Some(Ok(_)) => continue,
                Some(Err(native)) => {
                    ty.push_str(&format!(
                        " (the recorded type {native:?} is not a type name, so it is not used)"
                    ));
                }
                None => {}
            }
            // Said here, before any data moves, and in `sluice validate`'s listing.
            if let Some(why) = LogicalType::of_field(f)
                .ok()
                .and_then(|t| types::narrowing(&t))
            {
                warn!(
                    table = %table.target,
                    column = %column,
                    "{ty} is {why}; cast the column to text to keep every digit."
                );
                ty.push_str(&format!(" ({why})"));
            }
        }
        Ok(Some(declared))
    }

    async fn open(&self, table: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>> {
        let state = self.state(&table.target)?;
        let what = format!("table {}, split {}", table.target, split.index);
        let mut conn = connect(&self.plan.server, &what).await?;
        if self.plan.mode == WriteMode::Upsert && self.plan.method == LoadMethod::LoadData {
            let sql = format!(
                "CREATE TEMPORARY TABLE {} AS SELECT {} FROM {} LIMIT 0",
                qualified(&state.db, UPSERT_TEMP),
                col_list(&state),
                qualified(&state.db, &state.write_to)
            );
            if let Err(e) = conn.query_drop(sql).await {
                let _ = conn.disconnect().await;
                return Err(map(e, format!("{what}: creating the upsert table")));
            }
        }
        let states = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(Box::new(MysqlWriter {
            conn: Some(conn),
            state,
            temp: UPSERT_TEMP.to_string(),
            mode: self.plan.mode,
            method: self.plan.method,
            target: table.target.to_string(),
            what,
            in_tx: false,
            rows: 0,
            job: self.job(),
            states,
            temps: HashMap::new(),
        }))
    }

    async fn finish_table(&self, table: &TablePlan) -> Result<()> {
        let st = self.state(&table.target)?;
        if let Some(engine) = &st.convert_to {
            self.convert_engine(&st.db, &st.write_to, engine, &table.target)
                .await;
        }
        if self.plan.mode != WriteMode::Overwrite {
            return Ok(());
        }
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
    /// The table being written: the split's own, or for a moment another table of the split
    /// (a change stream carries many; see [`SinkWriter::write_table`]).
    state: Arc<TableState>,
    /// The temporary table `upsert` loads `state`'s rows into.
    temp: String,
    mode: WriteMode,
    method: LoadMethod,
    target: String,
    what: String,
    in_tx: bool,
    /// Rows written in this split so far, from its start (row numbers in messages; stored
    /// with the checkpoint; see [`SinkWriter::counted_before`]).
    rows: u64,
    /// Keys the checkpoint row.
    job: JobContext,
    /// Every prepared table (for the other tables of the split).
    states: HashMap<TableId, Arc<TableState>>,
    /// The temporary upsert tables made for other tables of the split, by target.
    temps: HashMap<TableId, String>,
}

impl MysqlWriter {
    /// Runs `op` with `table` (another table of the split) as the table being written; the
    /// split's own table is current again afterwards, whatever `op` returned.
    async fn as_table<T>(
        &mut self,
        table: &TablePlan,
        op: impl AsyncFnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let state =
            self.states.get(&table.target).cloned().ok_or_else(|| {
                Error::internal(format!("table {} was not prepared", table.target))
            })?;
        let temp = match self.temps.get(&table.target) {
            Some(t) => t.clone(),
            None if self.mode == WriteMode::Upsert && self.method == LoadMethod::LoadData => {
                let name = format!("{UPSERT_TEMP}_{}", self.temps.len() + 1);
                let sql = format!(
                    "CREATE TEMPORARY TABLE {} AS SELECT {} FROM {} LIMIT 0",
                    qualified(&state.db, &name),
                    col_list(&state),
                    qualified(&state.db, &state.write_to)
                );
                let what = format!("table {}", table.target);
                self.conn()?
                    .query_drop(sql)
                    .await
                    .map_err(|e| map(e, format!("{what}: creating the upsert table")))?;
                self.temps.insert(table.target.clone(), name.clone());
                name
            }
            None => String::new(),
        };
        let what = format!("table {} (in {})", table.target, self.what);
        let saved = (
            std::mem::replace(&mut self.state, state),
            std::mem::replace(&mut self.temp, temp),
            std::mem::replace(&mut self.what, what),
        );
        let r = op(self).await;
        (self.state, self.temp, self.what) = saved;
        r
    }

    /// Writes plain rows (no operation column) of the current table.
    async fn write_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_columns() != self.state.columns.len() {
            return Err(Error::internal(format!(
                "{}: batch has {} columns, the table plan {}",
                self.what,
                batch.num_columns(),
                self.state.columns.len()
            )));
        }
        let st = self.state.clone();
        match (self.method, self.mode) {
            (LoadMethod::Insert, _) => self.insert(batch).await?,
            (LoadMethod::LoadData, WriteMode::Upsert) => {
                let temp = self.temp.clone();
                self.load_data(batch, &temp).await?;
                let tmp = qualified(&st.db, &temp);
                let sql = format!(
                    "INSERT INTO {} ({c}) SELECT {c} FROM {tmp}{}",
                    qualified(&st.db, &st.write_to),
                    self.upsert_clause(),
                    c = self.col_list()
                );
                let first = self.rows;
                let r = self.conn()?.query_drop(sql).await;
                r.map_err(|e| self.data_error(e, first, batch))?;
                self.fail_on_warnings(first, batch).await?;
                let what = self.what.clone();
                self.conn()?
                    .query_drop(format!("DELETE FROM {tmp}"))
                    .await
                    .map_err(|e| map(e, what))?;
            }
            (LoadMethod::LoadData, _) => {
                let into = st.write_to.clone();
                self.load_data(batch, &into).await?
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Applies a batch of change events (the operation column last): per key the last event
    /// wins; deletes by key, the rest upserted.
    async fn apply_changes(&mut self, batch: RecordBatch) -> Result<()> {
        let op_idx = batch.schema().index_of(OP_COLUMN).map_err(|_| {
            Error::internal(format!("{}: a change batch without operations", self.what))
        })?;
        let ops = batch
            .column(op_idx)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| Error::internal("the operation column is not text"))?
            .clone();
        let mut keep: Vec<usize> = (0..batch.num_columns()).collect();
        keep.remove(op_idx);
        let rows = batch.project(&keep)?;
        let st = self.state.clone();
        let keys = arrow::row::RowConverter::new(
            st.key_idx
                .iter()
                .map(|&i| arrow::row::SortField::new(rows.column(i).data_type().clone()))
                .collect(),
        )?;
        let key_cols: Vec<arrow::array::ArrayRef> =
            st.key_idx.iter().map(|&i| rows.column(i).clone()).collect();
        let converted = keys.convert_columns(&key_cols)?;
        let mut seen = std::collections::HashSet::new();
        let (mut deletes, mut upserts) = (Vec::new(), Vec::new());
        for r in (0..rows.num_rows()).rev() {
            if seen.insert(converted.row(r)) {
                if ops.value(r) == "D" {
                    deletes.push(r as u32);
                } else {
                    upserts.push(r as u32);
                }
            }
        }
        deletes.reverse();
        upserts.reverse();
        if !deletes.is_empty() {
            self.delete_keys(&rows, &deletes).await?;
        }
        if !upserts.is_empty() {
            let idx = arrow::array::UInt32Array::from(upserts);
            let cols = rows
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c, &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let up = RecordBatch::try_new(rows.schema(), cols)?;
            self.write_rows(&up).await?;
        }
        Ok(())
    }

    /// `DELETE … WHERE (key) IN (…)` for rows `which` of `rows`, in statements of bounded size.
    async fn delete_keys(&mut self, rows: &RecordBatch, which: &[u32]) -> Result<()> {
        let st = self.state.clone();
        let cols: Vec<(usize, Column<'_>)> = st
            .key_idx
            .iter()
            .map(|&i| (i, Column::new(rows.column(i), &st.columns[i].spec)))
            .collect();
        let key = format!(
            "({})",
            st.key_idx
                .iter()
                .map(|&i| quote(&st.columns[i].name))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let tuple = format!("({})", vec!["?"; cols.len()].join(", "));
        let per_stmt = (MAX_PARAMS / cols.len().max(1)).clamp(1, 2000);
        for chunk in which.chunks(per_stmt) {
            let mut params = Vec::with_capacity(chunk.len() * cols.len());
            for &r in chunk {
                for (i, c) in &cols {
                    let cell = c
                        .cell(r as usize)
                        .map_err(|e| self.cell_error(rows, *i, r as usize, e))?;
                    params.push(to_value(cell));
                }
            }
            let sql = format!(
                "DELETE FROM {} WHERE {key} IN ({})",
                qualified(&st.db, &st.write_to),
                vec![tuple.as_str(); chunk.len()].join(", ")
            );
            let what = self.what.clone();
            self.conn()?
                .exec_drop(sql, params)
                .await
                .map_err(|e| map(e, format!("{what}: applying deletes")))?;
        }
        self.rows += which.len() as u64;
        Ok(())
    }
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
        col_list(&self.state)
    }

    fn upsert_clause(&self) -> String {
        let st = &self.state;
        let mut sets: Vec<String> = st
            .columns
            .iter()
            .filter(|c| c.write && !st.key.iter().any(|k| k.eq_ignore_ascii_case(&c.name)))
            .map(|c| format!("{q} = VALUES({q})", q = quote(&c.name)))
            .collect();
        if sets.is_empty() {
            let k = quote(&st.key[0]);
            sets.push(format!("{k} = {k}"));
        }
        format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
    }

    /// Names the failing row: MySQL says `at row N` of the statement, which began at row
    /// `first_row` of the split (0-based; the batch's first row is `self.rows`).
    fn data_error(&self, e: mysql_async::Error, first_row: u64, batch: &RecordBatch) -> Error {
        let msg = e.to_string();
        let row = msg.split("at row ").nth(1).and_then(|r| {
            r.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse::<u64>()
                .ok()
        });
        let at = match row {
            Some(r) => {
                let in_batch = (first_row + r).checked_sub(self.rows + 1);
                format!(
                    "row {} of the split{}",
                    first_row + r,
                    in_batch.map_or(String::new(), |i| self.key_of(batch, i as usize))
                )
            }
            None => format!("rows from {} of the split", first_row + 1),
        };
        map(e, format!("{}, {at}", self.what))
    }

    /// ` (id = 7)`: the primary key of row `row` of `batch`, when the table has one.
    fn key_of(&self, batch: &RecordBatch, row: usize) -> String {
        if self.state.key_idx.is_empty() || row >= batch.num_rows() {
            return String::new();
        }
        let text = ColSpec::of(Kind::Text);
        let parts: Vec<String> = self
            .state
            .key_idx
            .iter()
            .map(|&i| {
                let value = match Column::new(batch.column(i), &text).cell(row) {
                    Ok(Cell::Null) => "NULL".to_string(),
                    Ok(Cell::Int(v)) => v.to_string(),
                    Ok(Cell::UInt(v)) => v.to_string(),
                    Ok(Cell::F32(v)) => v.to_string(),
                    Ok(Cell::F64(v)) => v.to_string(),
                    Ok(Cell::Text(t)) => format!("{:?}", t.chars().take(100).collect::<String>()),
                    Ok(Cell::Bytes(b)) => format!(
                        "0x{}",
                        b.iter()
                            .take(50)
                            .map(|x| format!("{x:02x}"))
                            .collect::<String>()
                    ),
                    Err(_) => "?".to_string(),
                };
                format!("{} = {value}", batch.schema().field(i).name())
            })
            .collect();
        format!(" ({})", parts.join(", "))
    }

    async fn load_data(&mut self, batch: &RecordBatch, into: &str) -> Result<()> {
        let st = self.state.clone();
        let mut buf = Vec::with_capacity(batch.num_rows() * 64);
        let cols: Vec<(usize, Column<'_>)> = batch
            .columns()
            .iter()
            .zip(&st.columns)
            .enumerate()
            .filter(|(_, (_, c))| c.write)
            .map(|(i, (a, c))| (i, Column::new(a, &c.spec)))
            .collect();
        for row in 0..batch.num_rows() {
            for (n, (i, c)) in cols.iter().enumerate() {
                if n > 0 {
                    buf.push(b'\t');
                }
                let i = *i;
                let cell = c.cell(row).map_err(|e| self.cell_error(batch, i, row, e))?;
                match (st.columns[i].spec.kind, &cell) {
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
        for (i, c) in st.columns.iter().enumerate().filter(|(_, c)| c.write) {
            if c.spec.kind == Kind::Bit {
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
        // The text is UTF-8 (binary columns take their bytes as they are); the server
        // converts it to each column's character set.
        let sql = format!(
            "LOAD DATA LOCAL INFILE 'sluice' INTO TABLE {} CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({}){set}",
            qualified(&st.db, into),
            targets.join(", ")
        );
        let data = Bytes::from(buf);
        let conn = self.conn()?;
        conn.set_infile_handler(async move { Ok(futures::stream::iter([Ok(data)]).boxed()) });
        let first = self.rows;
        let r = self.conn()?.query_drop(sql).await;
        r.map_err(|e| self.data_error(e, first, batch))?;
        self.fail_on_warnings(first, batch).await
    }

    /// With LOCAL, MySQL turns duplicate keys and bad values into warnings (it cannot stop
    /// the client's stream), and even strict mode only notes a value it truncated or rounded
    /// (note 1265, "Data truncated"): any warning, and that note, fails the batch, naming
    /// the first one.
    async fn fail_on_warnings(&mut self, first: u64, batch: &RecordBatch) -> Result<()> {
        let conn = self.conn()?;
        if conn.get_warnings() == 0 {
            return Ok(());
        }
        let warnings: Vec<(String, u16, String)> = conn
            .query("SHOW WARNINGS LIMIT 5")
            .await
            .map_err(|e| map(e, self.what.clone()))?;
        let Some((_, code, message)) = warnings
            .into_iter()
            .find(|(level, code, _)| level != "Note" || *code == WARN_DATA_TRUNCATED)
        else {
            return Ok(());
        };
        let e = mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message,
            state: "HY000".into(),
        });
        Err(self.data_error(e, first, batch))
    }

    async fn insert(&mut self, batch: &RecordBatch) -> Result<()> {
        let st = self.state.clone();
        let cols: Vec<(usize, Column<'_>)> = batch
            .columns()
            .iter()
            .zip(&st.columns)
            .enumerate()
            .filter(|(_, (_, c))| c.write)
            .map(|(i, (a, c))| (i, Column::new(a, &c.spec)))
            .collect();
        let ncols = cols.len().max(1);
        let per_stmt = (MAX_PARAMS / ncols).clamp(1, 2000);
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
                for (i, c) in &cols {
                    let cell = c
                        .cell(row)
                        .map_err(|e| self.cell_error(batch, *i, row, e))?;
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
            r.map_err(|e| self.data_error(e, first, batch))?;
            self.fail_on_warnings(first, batch).await?;
            start += n;
        }
        Ok(())
    }

    fn cell_error(&self, batch: &RecordBatch, col: usize, row: usize, e: String) -> Error {
        let name = batch.schema().field(col).name().clone();
        Error::data(format!(
            "{}, column {name:?}, row {} of the split{}: {e}",
            self.what,
            self.rows + row as u64 + 1,
            self.key_of(batch, row)
        ))
        .with_hint(
            "cast or filter the column with a transform (e.g. [[transform]] type = \"cast\", \
             columns = { col = \"text\" }), or alter the target column to a wider type",
        )
    }
}

#[async_trait]
impl SinkWriter for MysqlWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.begin().await?;
        if self.state.changes {
            self.apply_changes(batch).await
        } else {
            self.write_rows(&batch).await
        }
    }

    async fn write_table(&mut self, table: &TablePlan, batch: RecordBatch) -> Result<()> {
        self.as_table(table, async move |w: &mut Self| w.write(batch).await)
            .await
    }

    async fn truncate(&mut self, table: &TablePlan) -> Result<()> {
        self.begin().await?;
        self.as_table(table, async |w: &mut Self| {
            // DELETE, not TRUNCATE: TRUNCATE would commit the open transaction.
            let sql = format!("DELETE FROM {}", qualified(&w.state.db, &w.state.write_to));
            let what = w.what.clone();
            w.conn()?
                .query_drop(sql)
                .await
                .map_err(|e| map(e, format!("{what}: emptying the table")))
        })
        .await
    }

    async fn commit(&mut self, position: &Position) -> Result<()> {
        self.begin().await?;
        let st = self.state.clone();
        let what = self.what.clone();
        let pos = checkpoints::position_text(position)?;
        let target = self.target.clone();
        let job = self.job.clone();
        let rows = self.rows as i64;
        let conn = self.conn()?;
        conn.exec_drop(
            D.upsert_checkpoint(&qualified(&st.db, CHECKPOINT_TABLE)),
            (
                job.job,
                position.split.clone(),
                job.generation,
                target,
                pos,
                rows,
            ),
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

    fn counted_before(&mut self, rows: u64) {
        self.rows = rows;
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
