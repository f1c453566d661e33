//! Writing SQLite tables: target checks and creation, append / overwrite / upsert, one
//! writer at a time.
//!
//! SQLite has one writer per database. Each [`SinkWriter`] has a connection of its own; the sink
//! holds a `tokio::sync::Mutex<()>` that a writer takes on its first `write` (or `commit`)
//! and gives back at `commit` / `abort`, so the writers of different splits take turns, one
//! transaction per turn, while readers (WAL mode) keep reading.
//!
//! Invariant: a split's rows and its checkpoint row in `_sluice_checkpoints` commit in the
//! same transaction, with `synchronous = FULL`, before `commit` returns.
//!
//! Connections are reused ([`Connections`]): a new SQLite connection parses the CREATE
//! statement of every table in the database before its first statement runs, so opening one
//! per split made a load of many tables quadratic in the number of tables.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sluice_core::batch::{OP_COLUMN, Position, Split};
use sluice_core::config::toml_string;
use sluice_core::naming::{LockScope, lock_key};
use sluice_core::sink::{JobContext, Sink, SinkWriter, TablePlan};
use sluice_core::{
    Checkpoint, CheckpointEdit, Error, GenerationRecord, JobSlot, LogicalType, Result,
    SinkLockGuard, TableId, WriteMode,
};
use tokio::sync::OwnedMutexGuard;

use crate::checkpoints::{self, Dialect, JOBS};

use super::config::SinkPlan;
use super::encode::{EncCol, normalize};
use super::source::sql_err;
use super::types::{can_hold, decl_for, logical_from_decl, quote_ident};

/// Where checkpoints live in the target database.
pub const CHECKPOINT_TABLE: &str = checkpoints::CHECKPOINTS;
const D: Dialect = Dialect::Sqlite;
/// Prefix of staging tables used by `write = "overwrite"`.
pub const STAGE_PREFIX: &str = "_sluice_stage_";

/// How one target table is written, decided in `prepare`.
#[derive(Debug, Clone)]
struct TableState {
    /// The job and generation writing (keys the checkpoint rows).
    job: JobContext,
    /// The target's name.
    target: String,
    /// Where rows go: the target, or its staging table.
    write_to: String,
    /// `INSERT …` with one `?` per column.
    insert_sql: String,
    /// Logical types of the incoming columns, in order (without the operation column).
    types: Vec<LogicalType>,
    /// Change events: how they are applied.
    changes: Option<Changes>,
}

/// How change events (rows with the operation column) are applied, row by row in order, so
/// each key ends in its last event's state: `D` deletes by key, anything else upserts.
#[derive(Debug, Clone)]
struct Changes {
    /// The operation column's index in incoming batches.
    op: usize,
    /// The key columns' indices among the written columns.
    key: Vec<usize>,
    /// `DELETE FROM … WHERE k1 = ?1 AND …`.
    delete_sql: String,
}

/// Idle connections kept for reuse, at most this many.
const MAX_IDLE: usize = 16;

/// The sink's write connections. A connection is taken for a task (prepare, a split, a swap)
/// and given back when the task ends outside a transaction. A new connection parses the whole
/// schema (every table's CREATE statement) on first use, and a connection that only sees
/// inserts never needs to parse it again; opening one per split cost O(tables) each, O(tables²)
/// for a many-table load (10,000 small tables took minutes).
struct Connections {
    plan: SinkPlan,
    idle: Mutex<Vec<Connection>>,
    /// Connections opened so far.
    opened: AtomicU64,
}

impl Connections {
    /// An idle connection, or a new one. Blocking.
    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(c) = idle {
            return Ok(c);
        }
        self.opened.fetch_add(1, Ordering::Relaxed);
        open_write(&self.plan)
    }

    /// Gives `conn` back for reuse; one inside a transaction (a failed task) is closed instead,
    /// which rolls the transaction back.
    fn give(&self, conn: Connection) {
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// The SQLite sink. Built by [`SqliteSinkConfig::build`](super::SqliteSinkConfig::build).
pub struct SqliteSink {
    plan: SinkPlan,
    job: JobSlot,
    write_lock: Arc<tokio::sync::Mutex<()>>,
    tables: Mutex<HashMap<TableId, Arc<TableState>>>,
    conns: Arc<Connections>,
}

impl SqliteSink {
    pub(crate) fn new(plan: SinkPlan) -> Self {
        SqliteSink {
            conns: Arc::new(Connections {
                plan: plan.clone(),
                idle: Mutex::new(Vec::new()),
                opened: AtomicU64::new(0),
            }),
            plan,
            job: JobSlot::default(),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            tables: Mutex::new(HashMap::new()),
        }
    }

    fn state(&self, target: &TableId) -> Result<Arc<TableState>> {
        self.tables
            .lock()
            .map_err(|_| Error::internal("sqlite sink: table cache poisoned"))?
            .get(target)
            .cloned()
            .ok_or_else(|| Error::internal(format!("table {target} was not prepared")))
    }
}

/// Opens (creating if missing) the target database with the sink's settings.
fn open_write(plan: &SinkPlan) -> Result<Connection> {
    let path = &plan.path;
    check_dir(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Error::io(format!(
            "cannot open sqlite database {}: {e}",
            path.display()
        ))
        .with_source(e)
    })?;
    let ctx = |e| sql_err(e, path.display());
    conn.busy_timeout(std::time::Duration::from_millis(plan.busy_timeout_ms))
        .map_err(ctx)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(ctx)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode = %mode, "SQLite refused WAL mode; writers will block readers.");
    }
    // FULL: a committed transaction survives power loss (the Sink contract's "durable").
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY;",
        u64::from(plan.cache_mib) * 1024
    ))
    .map_err(ctx)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// An existing table's columns: `(name, declared type, notnull, pk order)`.
type Columns = Vec<(String, String, bool, i64)>;

/// The tables of `main`, by name in ASCII lower case (SQLite's `NOCASE`), read once per
/// `prepare`: `sqlite_schema` has no index, so looking each table up in it made preparing
/// many tables quadratic.
fn table_names(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut st = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")?;
    st.query_map([], |r| r.get::<_, String>(0))?
        .map(|n| n.map(|n| n.to_ascii_lowercase()))
        .collect()
}

/// The columns of table `name`, if `tables` (see [`table_names`]) has it.
fn table_columns(
    conn: &Connection,
    tables: &HashSet<String>,
    name: &str,
) -> rusqlite::Result<Option<Columns>> {
    if !tables.contains(&name.to_ascii_lowercase()) {
        return Ok(None);
    }
    let mut stmt = conn.prepare(
        "SELECT name, type, \"notnull\", pk FROM pragma_table_xinfo(?1) \
         WHERE hidden IN (0, 3) ORDER BY cid",
    )?;
    let cols = stmt
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(cols))
}

/// Columns of a unique index of `table` that covers exactly `key` (any order), if one exists.
fn has_unique_index(conn: &Connection, table: &str, key: &[String]) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_index_list(?1) WHERE \"unique\" = 1")?;
    let indexes: Vec<String> = stmt
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for ix in indexes {
        let mut s = conn.prepare("SELECT name FROM pragma_index_info(?1)")?;
        let mut cols: Vec<String> = s
            .query_map([&ix], |r| r.get::<_, Option<String>>(0))?
            .filter_map(|c| c.ok().flatten())
            .map(|c| c.to_lowercase())
            .collect();
        let mut want: Vec<String> = key.iter().map(|k| k.to_lowercase()).collect();
        cols.sort();
        want.sort();
        if cols == want {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `CREATE TABLE` for `plan`'s columns under `name`.
fn create_sql(name: &str, types: &[(String, LogicalType, bool)], pk: &[String]) -> String {
    let mut cols: Vec<String> = types
        .iter()
        .map(|(c, t, nullable)| {
            let nn = if *nullable { "" } else { " NOT NULL" };
            format!("{} {}{nn}", quote_ident(c), decl_for(t))
        })
        .collect();
    if !pk.is_empty() {
        let k: Vec<String> = pk.iter().map(|c| quote_ident(c)).collect();
        cols.push(format!("PRIMARY KEY ({})", k.join(", ")));
    }
    format!("CREATE TABLE {} ({})", quote_ident(name), cols.join(", "))
}

/// The `CREATE TABLE` statement of `name` with the table renamed to `new_name`, so a staging
/// table keeps the user's column types and constraints. `None` if the text cannot be parsed.
fn rename_create_sql(sql: &str, new_name: &str) -> Option<String> {
    let upper = sql.to_ascii_uppercase();
    let rest_at = upper.find("TABLE")? + "TABLE".len();
    let rest = sql[rest_at..].trim_start();
    let rest = if rest.to_ascii_uppercase().starts_with("IF NOT EXISTS") {
        rest["IF NOT EXISTS".len()..].trim_start()
    } else {
        rest
    };
    // Skip the (possibly quoted, possibly schema-qualified) name up to the column list.
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'`' | b'[') => {
                let close = if q == b'[' { b']' } else { q };
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == close {
                        if close != b']' && bytes.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'(' => break,
            _ => i += 1,
        }
    }
    (i < bytes.len()).then(|| format!("CREATE TABLE {} {}", quote_ident(new_name), &rest[i..]))
}

/// Checks `plan` against the database and readies its table. Runs on a blocking thread.
fn prepare_table(
    conn: &Connection,
    tables: &mut HashSet<String>,
    sp: &SinkPlan,
    plan: &TablePlan,
    job: &JobContext,
) -> Result<TableState> {
    let target = &plan.target;
    if let Some(ns) = target.namespace().filter(|ns| *ns != "main") {
        return Err(Error::schema(format!(
            "sqlite sink: table {target} is in schema {ns:?}, but a SQLite database has only `main`"
        ))
        .with_hint(format!(
            "map the tables of schema {ns} to plain names with table_map = {{ {} = '*' }} in \
             [sink], or this one only with table_map = {{ {} = {} }}",
            toml_string(&format!("{}.*", TableId::new([ns]))),
            toml_string(&plan.schema.id.to_string()),
            toml_string(&TableId::new([target.name()]).to_string())
        )));
    }
    let name = target.name().to_string();
    let ctx = |e| sql_err(e, format!("table {target}"));
    let op = plan.schema.arrow.index_of(OP_COLUMN).ok();
    if op.is_some() && sp.mode != WriteMode::Upsert {
        return Err(Error::config(format!(
            "table {target} receives change events (inserts, updates and deletes), which only \
             write = \"upsert\" can apply"
        ))
        .with_hint("set write = \"upsert\" in [sink] (the target needs the source's key)"));
    }
    let types: Vec<_> = plan
        .schema
        .logical_types()
        .map_err(|e| e.context(format!("table {target}")))?
        .into_iter()
        .filter(|(c, _, _)| c != OP_COLUMN)
        .collect();
    let existing = table_columns(conn, tables, &name).map_err(ctx)?;

    if let Some(cols) = &existing {
        for (c, t, _) in &types {
            let Some((_, decl, _, _)) = cols.iter().find(|x| x.0.eq_ignore_ascii_case(c)) else {
                return Err(Error::schema(format!(
                    "table {target}: column {c:?} ({t}) is missing in the existing SQLite table"
                ))
                .with_hint(schema_hint(&name)));
            };
            let tt = logical_from_decl(decl);
            if !can_hold(&tt, t) {
                return Err(Error::schema(format!(
                    "table {target}: column {c:?} is {t} in the source, but the existing SQLite \
                     column is declared {decl:?} ({tt}), which cannot hold it"
                ))
                .with_hint(schema_hint(&name)));
            }
        }
    } else if !sp.create_tables {
        return Err(Error::schema(format!(
            "table {target} does not exist in sqlite database {}",
            sp.path.display()
        ))
        .with_hint("set create_tables = true in [sink], or create the table first"));
    }

    // The key an upsert conflicts on: the existing table's, else the source's.
    let existing_pk: Vec<String> = existing
        .as_ref()
        .map(|cols| {
            let mut pk: Vec<_> = cols.iter().filter(|c| c.3 > 0).collect();
            pk.sort_by_key(|c| c.3);
            pk.into_iter().map(|c| c.0.clone()).collect()
        })
        .unwrap_or_default();
    let conflict_key: Vec<String> = if sp.mode != WriteMode::Upsert {
        Vec::new()
    } else if !existing_pk.is_empty() {
        existing_pk.clone()
    } else if !plan.schema.primary_key.is_empty()
        && (existing.is_none()
            || has_unique_index(conn, &name, &plan.schema.primary_key).map_err(ctx)?)
    {
        plan.schema.primary_key.clone()
    } else {
        return Err(Error::schema(format!(
            "table {target}: write = \"upsert\" needs a primary key, and neither the source \
             nor the existing SQLite table has one"
        ))
        .with_hint(
            "use write = \"append\" or \"overwrite\", or give the target table a primary key \
             (or a unique index) on the key columns",
        ));
    };
    if sp.mode == WriteMode::Upsert {
        for k in &conflict_key {
            if !types.iter().any(|(c, _, _)| c.eq_ignore_ascii_case(k)) {
                return Err(Error::schema(format!(
                    "table {target}: upsert key column {k:?} is not among the columns written"
                ))
                .with_hint("keep the key columns in the rows (check select/drop transforms)"));
            }
        }
    }

    let create_ours = create_sql(&name, &types, &plan.schema.primary_key);
    let write_to = match sp.mode {
        WriteMode::Overwrite => {
            let stage = format!("{STAGE_PREFIX}{name}");
            // A staging table left by an earlier, unfinished run is discarded with its
            // checkpoints: overwrite restarts the table.
            conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(&stage)))
                .map_err(ctx)?;
            conn.execute(
                &format!("DELETE FROM {CHECKPOINT_TABLE} WHERE job = ?1 AND table_name = ?2"),
                [&job.job, &name],
            )
            .map_err(ctx)?;
            let existing_sql: Option<String> = conn
                .query_row(
                    "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(ctx)?;
            let ddl = existing_sql
                .and_then(|s| rename_create_sql(&s, &stage))
                .unwrap_or_else(|| create_sql(&stage, &types, &plan.schema.primary_key));
            conn.execute_batch(&ddl).map_err(ctx)?;
            stage
        }
        _ => {
            if existing.is_none() {
                conn.execute_batch(&create_ours).map_err(ctx)?;
                tables.insert(name.to_ascii_lowercase());
            }
            name.clone()
        }
    };

    let cols: Vec<String> = types.iter().map(|(c, _, _)| quote_ident(c)).collect();
    let params: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let mut insert = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote_ident(&write_to),
        cols.join(", "),
        params.join(", ")
    );
    if sp.mode == WriteMode::Upsert {
        let key: Vec<String> = conflict_key.iter().map(|c| quote_ident(c)).collect();
        let sets: Vec<String> = types
            .iter()
            .filter(|(c, _, _)| !conflict_key.iter().any(|k| k.eq_ignore_ascii_case(c)))
            .map(|(c, _, _)| format!("{0} = excluded.{0}", quote_ident(c)))
            .collect();
        insert.push_str(&format!(" ON CONFLICT ({}) DO ", key.join(", ")));
        if sets.is_empty() {
            insert.push_str("NOTHING");
        } else {
            insert.push_str(&format!("UPDATE SET {}", sets.join(", ")));
        }
    }
    let changes = match op {
        Some(op) => {
            let mut key = Vec::new();
            let mut conds = Vec::new();
            for k in &conflict_key {
                let i = types
                    .iter()
                    .position(|(c, _, _)| c.eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        Error::internal(format!("table {target}: key {k} not written"))
                    })?;
                key.push(i);
                conds.push(format!("{} = ?{}", quote_ident(k), conds.len() + 1));
            }
            Some(Changes {
                op,
                key,
                delete_sql: format!(
                    "DELETE FROM {} WHERE {}",
                    quote_ident(&write_to),
                    conds.join(" AND ")
                ),
            })
        }
        None => None,
    };
    Ok(TableState {
        job: job.clone(),
        target: name,
        write_to,
        insert_sql: insert,
        types: types.into_iter().map(|t| t.1).collect(),
        changes,
    })
}

fn schema_hint(name: &str) -> String {
    format!(
        "drop or rename the existing table {}, write elsewhere with table_map in [sink], or add \
         a cast transform so the source column fits",
        quote_ident(name)
    )
}

fn ensure_checkpoint_table(conn: &Connection) -> rusqlite::Result<()> {
    // One row per (job, split): the split's last committed position in the job's current
    // generation. Rows of an older generation are stale and ignored, then overwritten.
    let old_layout: bool = conn.query_row(
        &format!(
            "SELECT count(*) > 0 FROM pragma_table_info('{CHECKPOINT_TABLE}') WHERE name = 'table_name'"
        ),
        [],
        |r| r.get(0),
    )?;
    let has_job: bool = conn.query_row(
        &format!(
            "SELECT count(*) > 0 FROM pragma_table_info('{CHECKPOINT_TABLE}') WHERE name = 'job'"
        ),
        [],
        |r| r.get(0),
    )?;
    if old_layout && !has_job {
        // Written by a pre-release build without job names: nothing can resume from it.
        conn.execute_batch(&format!("DROP TABLE {CHECKPOINT_TABLE}"))?;
    }
    conn.execute_batch(&D.create_checkpoints(CHECKPOINT_TABLE))?;
    let has_rows: bool = conn.query_row(
        &format!(
            "SELECT count(*) > 0 FROM pragma_table_info('{CHECKPOINT_TABLE}') WHERE name = '{}'",
            checkpoints::ROWS_COLUMN
        ),
        [],
        |r| r.get(0),
    )?;
    if !has_rows {
        conn.execute_batch(&D.add_rows_column(CHECKPOINT_TABLE))?;
    }
    conn.execute_batch(&D.create_jobs(JOBS))
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )
}

/// The checkpoints committed for `job` in its current generation.
fn read_checkpoints(conn: &Connection, job: &JobContext) -> Result<Vec<Checkpoint>> {
    let ctx = |e| sql_err(e, "reading _sluice_checkpoints");
    if !table_exists(conn, CHECKPOINT_TABLE).map_err(ctx)? {
        return Ok(Vec::new());
    }
    ensure_checkpoint_table(conn).map_err(ctx)?;
    let mut st = conn
        .prepare(&D.select_checkpoints(CHECKPOINT_TABLE))
        .map_err(ctx)?;
    let rows = st
        .query_map([&job.job, &job.generation], |r| {
            Ok((
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(ctx)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(ctx)?;
    rows.into_iter()
        .map(|(p, n, t)| checkpoints::checkpoint_of(&p, n, t))
        .collect()
}

/// The lock files of one job beside the database (`.<file>.sluice-<key>.lock`): an open
/// file with an exclusive `flock`, released when closed (also when the process dies).
struct LockFiles {
    _files: Vec<std::fs::File>,
}

/// The database's directory must exist (Sluice creates the file, not directories).
fn check_dir(path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(Error::io(format!(
            "cannot create sqlite database {}: directory {} does not exist",
            path.display(),
            dir.display()
        ))
        .with_hint("create the directory first, or point `url` in [sink] at an existing one"));
    }
    Ok(())
}

fn take_locks(db: &std::path::Path, keys: Vec<(i64, String)>) -> Result<LockFiles> {
    check_dir(db)?;
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let file = db
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files = Vec::new();
    for (key, label) in keys {
        let path = dir.join(format!(".{file}.sluice-{:016x}.lock", key as u64));
        let f = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::from_io(e, format!("cannot open lock file {}", path.display())))?;
        match f.try_lock() {
            Ok(()) => files.push(f),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::config(format!(
                    "the {label} is locked by another process (lock file {}): another `sluice \
                     run` of this job, or another job writing this table, is running",
                    path.display()
                ))
                .with_hint(
                    "wait for it to end or stop it (`sluice stop JOB`); two runs writing the same \
                     job or table would double or mix rows",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::from_io(e, format!("cannot lock {}", path.display())));
            }
        }
    }
    Ok(LockFiles { _files: files })
}

/// Swaps the staging table in, in one transaction: readers see the old or the new table.
fn swap_in(conn: &mut Connection, st: &TableState) -> Result<()> {
    let ctx = |e| sql_err(e, format!("table {}", st.target));
    // Renaming must not re-check views that name the table being replaced.
    conn.execute_batch("PRAGMA legacy_alter_table = ON")
        .map_err(ctx)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(ctx)?;
    let staged: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [&st.write_to],
            |r| r.get(0),
        )
        .map_err(ctx)?;
    if !staged {
        // Already swapped in by an earlier call: finishing is idempotent.
        return Ok(());
    }
    let extras: Vec<String> = {
        let mut s = tx
            .prepare(
                "SELECT sql FROM sqlite_schema WHERE type IN ('index', 'trigger') \
                 AND tbl_name = ?1 COLLATE NOCASE AND sql IS NOT NULL",
            )
            .map_err(ctx)?;
        s.query_map([&st.target], |r| r.get(0))
            .map_err(ctx)?
            .collect::<rusqlite::Result<_>>()
            .map_err(ctx)?
    };
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS {}; ALTER TABLE {} RENAME TO {};",
        quote_ident(&st.target),
        quote_ident(&st.write_to),
        quote_ident(&st.target)
    ))
    .map_err(ctx)?;
    for sql in extras {
        tx.execute_batch(&sql).map_err(ctx)?;
    }
    tx.commit().map_err(ctx)?;
    conn.execute_batch("PRAGMA legacy_alter_table = OFF")
        .map_err(ctx)?;
    Ok(())
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("sqlite sink: {what} task failed: {e}")))?
}

impl SqliteSink {
    fn job_context(&self) -> JobContext {
        self.job.get()
    }
}

#[async_trait]
impl Sink for SqliteSink {
    async fn check(&self, _tables: &[TablePlan]) -> Result<()> {
        let path = &self.plan.path;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().readonly()
        {
            return Err(Error::config(format!(
                "sink: the database file {} is read-only",
                path.display()
            ))
            .with_hint("make it writable, or choose another file"));
        }
        // SQLite writes its journal beside the database.
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(Error::config(format!(
                "sink: the directory of {} does not exist",
                path.display()
            ))
            .with_hint("create the directory, or choose another path"));
        }
        crate::files::check_writable_dir(dir, "sink")
    }

    fn keeps_checkpoints(&self) -> bool {
        true
    }

    async fn lock(&self, job: &str, targets: &[TableId]) -> Result<Option<SinkLockGuard>> {
        let db = self.plan.path.clone();
        let mut keys = vec![lock_key(LockScope::Job, "", job)];
        for t in targets {
            keys.push(lock_key(LockScope::Table, "", &t.name().to_lowercase()));
        }
        let files = blocking("lock", move || take_locks(&db, keys)).await?;
        Ok(Some(Box::new(files)))
    }

    async fn load_generation(&self, job: &str) -> Result<Option<GenerationRecord>> {
        let sp = self.plan.clone();
        let job = job.to_string();
        if !sp.path.exists() {
            return Ok(None);
        }
        blocking("read _sluice_jobs", move || {
            let conn = open_write(&sp)?;
            let ctx = |e| sql_err(e, "reading _sluice_jobs");
            if !table_exists(&conn, JOBS).map_err(ctx)? {
                return Ok(None);
            }
            let row: Option<(String, bool, String)> = conn
                .query_row(&D.select_job(JOBS), [&job], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
                .map_err(ctx)?;
            row.map(|(g, f, m)| checkpoints::record_of(g, f, &m))
                .transpose()
        })
        .await
    }

    async fn save_generation(&self, job: &str, record: &GenerationRecord) -> Result<()> {
        let sp = self.plan.clone();
        let job = job.to_string();
        let record = record.clone();
        let manifest = checkpoints::manifest_text(&record)?;
        let _turn = self.write_lock.lock().await;
        blocking("write _sluice_jobs", move || {
            let conn = open_write(&sp)?;
            let ctx = |e| sql_err(e, "writing _sluice_jobs");
            ensure_checkpoint_table(&conn).map_err(ctx)?;
            conn.execute(
                &D.upsert_job(JOBS),
                rusqlite::params![job, record.generation, record.finished, manifest],
            )
            .map_err(ctx)?;
            Ok(())
        })
        .await
    }

    fn begin(&self, ctx: &JobContext) -> Result<()> {
        self.job.set(ctx);
        Ok(())
    }

    fn target_types(&self, table: &TablePlan) -> Result<Option<Vec<(String, String)>>> {
        let types = table
            .schema
            .logical_types()
            .map_err(|e| e.context(format!("table {}", table.target)))?;
        Ok(Some(
            types
                .into_iter()
                .map(|(c, t, _)| (c, decl_for(&t)))
                .collect(),
        ))
    }

    async fn committed_positions(&self) -> Result<Option<Vec<Checkpoint>>> {
        let conns = self.conns.clone();
        let job = self.job_context();
        blocking("read checkpoints", move || {
            let conn = conns.take()?;
            let rows = read_checkpoints(&conn, &job)?;
            conns.give(conn);
            Ok(rows)
        })
        .await
        .map(Some)
    }

    async fn set_checkpoints(&self, edits: &[CheckpointEdit]) -> Result<bool> {
        let sp = self.plan.clone();
        let job = self.job_context();
        let edits = edits.to_vec();
        blocking("edit checkpoints", move || {
            let mut conn = open_write(&sp)?;
            let ctx = |e| sql_err(e, "editing _sluice_checkpoints");
            ensure_checkpoint_table(&conn).map_err(ctx)?;
            let tx = conn.transaction().map_err(ctx)?;
            for e in &edits {
                match &e.position {
                    None => tx.execute(
                        &D.delete_checkpoint(CHECKPOINT_TABLE),
                        rusqlite::params![job.job, job.generation, e.split],
                    ),
                    Some(p) => tx.execute(
                        &D.upsert_checkpoint(CHECKPOINT_TABLE),
                        rusqlite::params![
                            job.job,
                            e.split,
                            job.generation,
                            e.table,
                            checkpoints::position_text(p)?,
                            e.rows as i64
                        ],
                    ),
                }
                .map_err(ctx)?;
            }
            tx.commit().map_err(ctx)?;
            Ok(true)
        })
        .await
    }

    async fn checkpoint(&self, split: &str) -> Result<Option<Position>> {
        let sp = self.plan.clone();
        let job = self.job_context();
        let split = split.to_string();
        blocking("read a checkpoint", move || {
            let conn = open_write(&sp)?;
            let ctx = |e| sql_err(e, "reading _sluice_checkpoints");
            if !table_exists(&conn, CHECKPOINT_TABLE).map_err(ctx)? {
                return Ok(None);
            }
            ensure_checkpoint_table(&conn).map_err(ctx)?;
            let p: Option<String> = conn
                .query_row(
                    &D.select_checkpoint(CHECKPOINT_TABLE),
                    [&job.job, &job.generation, &split],
                    |r| r.get(0),
                )
                .optional()
                .map_err(ctx)?;
            p.map(|p| checkpoints::parse_position(&p)).transpose()
        })
        .await
    }

    async fn holds_rows(&self, table: &TablePlan) -> Result<Option<bool>> {
        let st = self.state(&table.target)?;
        let sp = self.plan.clone();
        blocking("check a table", move || {
            let conn = open_write(&sp)?;
            conn.query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {})",
                    quote_ident(&st.write_to)
                ),
                [],
                |r| r.get::<_, bool>(0),
            )
            .map(Some)
            .map_err(|e| {
                sql_err(
                    e,
                    format!("table {}: checking whether it holds rows", st.target),
                )
            })
        })
        .await
    }

    async fn prepare(&self, tables: &[TablePlan]) -> Result<()> {
        let sp = self.plan.clone();
        let conns = self.conns.clone();
        let plans = tables.to_vec();
        let job = self.job_context();
        let _turn = self.write_lock.lock().await;
        let states = blocking("prepare", move || {
            let mut conn = conns.take()?;
            let ctx = |e| sql_err(e, sp.path.display());
            ensure_checkpoint_table(&conn).map_err(ctx)?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(ctx)?;
            let mut names = table_names(&tx).map_err(ctx)?;
            let mut out = Vec::new();
            for p in &plans {
                out.push((
                    p.target.clone(),
                    prepare_table(&tx, &mut names, &sp, p, &job)?,
                ));
            }
            tx.commit().map_err(ctx)?;
            conns.give(conn);
            Ok(out)
        })
        .await?;
        let mut cache = self
            .tables
            .lock()
            .map_err(|_| Error::internal("sqlite sink: table cache poisoned"))?;
        for (id, st) in states {
            cache.insert(id, Arc::new(st));
        }
        Ok(())
    }

    async fn open(&self, table: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>> {
        let state = self.state(&table.target)?;
        let states = self
            .tables
            .lock()
            .map_err(|_| Error::internal("sqlite sink: table map poisoned"))?
            .clone();
        let conns = self.conns.clone();
        let conn = blocking("open", move || conns.take()).await?;
        Ok(Box::new(SqliteWriter {
            conns: self.conns.clone(),
            conn: Some(conn),
            state,
            states,
            split: split.id.clone(),
            lock: self.write_lock.clone(),
            turn: None,
            in_tx: false,
            rows: 0,
        }))
    }

    async fn finish_table(&self, table: &TablePlan) -> Result<()> {
        if self.plan.mode != WriteMode::Overwrite {
            return Ok(());
        }
        let st = self.state(&table.target)?;
        let conns = self.conns.clone();
        let _turn = self.write_lock.lock().await;
        blocking("finish", move || {
            let mut conn = conns.take()?;
            swap_in(&mut conn, &st)?;
            conns.give(conn);
            Ok(())
        })
        .await
    }
}

/// Writes one split; see the module docs for how writers take turns.
struct SqliteWriter {
    /// Where `conn` goes back when the writer is dropped.
    conns: Arc<Connections>,
    conn: Option<Connection>,
    /// The split's own table (named in its checkpoint).
    state: Arc<TableState>,
    /// Every prepared table, for rows of other tables of the split (`write_table`).
    states: HashMap<TableId, Arc<TableState>>,
    split: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    turn: Option<OwnedMutexGuard<()>>,
    in_tx: bool,
    /// Rows of the split, from its start (stored with the checkpoint; see
    /// [`SinkWriter::counted_before`]).
    rows: i64,
}

impl Drop for SqliteWriter {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.in_tx
        {
            self.conns.give(conn);
        }
    }
}

impl SqliteWriter {
    /// Runs `f` on this writer's connection on a blocking thread, inside a transaction.
    async fn with_tx<T: Send + 'static>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Connection, &TableState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let state = self.state.clone();
        self.with_tx_on(state, what, f).await
    }

    /// Inserts `batch` into table `state`, in the writer's transaction.
    async fn write_to(&mut self, state: Arc<TableState>, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let split = self.split.clone();
        let n = batch.num_rows() as i64;
        self.with_tx_on(state, "write", move |conn, st| {
            insert_or_apply(
                conn,
                (&st.target, &st.insert_sql, &st.types),
                st.changes.as_ref(),
                &split,
                &batch,
            )
        })
        .await?;
        self.rows += n;
        Ok(())
    }

    /// [`with_tx`](Self::with_tx) for table `state` (another table of the split).
    async fn with_tx_on<T: Send + 'static>(
        &mut self,
        state: Arc<TableState>,
        what: &str,
        f: impl FnOnce(&Connection, &TableState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.turn.is_none() {
            self.turn = Some(self.lock.clone().lock_owned().await);
        }
        let conn = self
            .conn
            .take()
            .ok_or_else(|| Error::internal("sqlite writer used after an earlier failure"))?;
        let begin = !self.in_tx;
        let (conn, res) = tokio::task::spawn_blocking(move || {
            let res = (|| {
                if begin {
                    conn.execute_batch("BEGIN IMMEDIATE")
                        .map_err(|e| sql_err(e, format!("table {}", state.target)))?;
                }
                f(&conn, &state)
            })();
            (conn, res)
        })
        .await
        .map_err(|e| Error::internal(format!("sqlite sink: {what} task failed: {e}")))?;
        self.in_tx = !conn.is_autocommit();
        self.conn = Some(conn);
        res
    }
}

/// What `sluice verify --repair` does to a SQLite target, with the sink's own value
/// encodings, in one transaction: deletes the rows of `table` whose `key` is in
/// `delete_keys`, inserts the rows of `inserts`, and updates, by key, the rows of `updates`
/// (only the batch's columns: columns the target alone has keep their values). Both batches
/// have the table's column names and carry `types`. Blocking; nothing is changed if any
/// statement fails.
pub fn repair_rows(
    path: &std::path::Path,
    table: &str,
    key: &str,
    delete_keys: &[i64],
    types: &[LogicalType],
    (inserts, updates): (&RecordBatch, &RecordBatch),
) -> Result<()> {
    let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| sql_err(e, format!("opening {}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| sql_err(e, "setting busy_timeout"))?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql_err(e, "starting the repair transaction"))?;
    let t = quote_ident(table);
    for chunk in delete_keys.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        tx.execute(
            &format!(
                "DELETE FROM {t} WHERE {} IN ({})",
                quote_ident(key),
                list.join(", ")
            ),
            [],
        )
        .map_err(|e| sql_err(e, format!("table {table}")))?;
    }
    let schema = inserts.schema();
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| quote_ident(f.name()))
        .collect();
    if inserts.num_rows() > 0 {
        let marks = vec!["?"; names.len()].join(", ");
        let insert = format!("INSERT INTO {t} ({}) VALUES ({marks})", names.join(", "));
        insert_batch(&tx, (table, &insert, types), "repair", inserts)?;
    }
    if updates.num_rows() > 0 {
        let key_at = schema
            .fields()
            .iter()
            .position(|f| f.name() == key)
            .ok_or_else(|| Error::internal(format!("repair batch lacks the key {key}")))?;
        let sets: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n} = ?{}", i + 1))
            .collect();
        let update = format!(
            "UPDATE {t} SET {} WHERE {} = ?{}",
            sets.join(", "),
            quote_ident(key),
            key_at + 1
        );
        insert_batch(&tx, (table, &update, types), "repair", updates)?;
    }
    tx.commit()
        .map_err(|e| sql_err(e, format!("committing the repair of {table}")))
}

/// `target` is `(table name, statement with one `?N` per column of the batch, logical types
/// of the batch's columns)`; the statement runs once per row.
fn insert_batch(
    conn: &Connection,
    (table, insert_sql, types): (&str, &str, &[LogicalType]),
    split: &str,
    batch: &RecordBatch,
) -> Result<()> {
    insert_or_apply(conn, (table, insert_sql, types), None, split, batch)
}

/// [`insert_batch`], or, for change events, each row applied in order: deleted by key when
/// its operation is `D`, upserted otherwise.
fn insert_or_apply(
    conn: &Connection,
    (table, insert_sql, types): (&str, &str, &[LogicalType]),
    changes: Option<&Changes>,
    split: &str,
    batch: &RecordBatch,
) -> Result<()> {
    let (ops, batch) = match changes {
        Some(ch) => {
            let ops = arrow::compute::cast(batch.column(ch.op), &arrow::datatypes::DataType::Utf8)?;
            let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != ch.op).collect();
            (Some(ops), batch.project(&keep)?)
        }
        None => (None, batch.clone()),
    };
    let ops = ops.as_ref().map(|a| {
        a.as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("cast to Utf8")
    });
    let batch = &batch;
    let mut delete = match changes {
        Some(ch) => Some(
            conn.prepare_cached(&ch.delete_sql)
                .map_err(|e| sql_err(e, format!("table {table}")))?,
        ),
        None => None,
    };
    if batch.num_columns() != types.len() {
        return Err(Error::internal(format!(
            "table {table}: batch has {} columns, the plan {}",
            batch.num_columns(),
            types.len()
        )));
    }
    let arrays = batch
        .columns()
        .iter()
        .zip(types)
        .map(|(a, t)| normalize(a, t))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.context(format!("table {table}")))?;
    let cols = arrays
        .iter()
        .zip(types)
        .map(|(a, t)| EncCol::new(a, t))
        .collect::<Result<Vec<_>>>()?;
    let mut stmt = conn
        .prepare_cached(insert_sql)
        .map_err(|e| sql_err(e, format!("table {table}")))?;
    let mut scratch = String::with_capacity(64);
    for row in 0..batch.num_rows() {
        if let (Some(ops), Some(del), Some(ch)) = (ops, delete.as_mut(), changes)
            && arrow::array::Array::is_valid(ops, row)
            && ops.value(row) == "D"
        {
            for (p, &k) in ch.key.iter().enumerate() {
                let v = cols[k].value(row, &mut scratch);
                del.raw_bind_parameter(p + 1, v)
                    .map_err(|e| sql_err(e, format!("table {table}: a delete's key")))?;
            }
            del.raw_execute().map_err(|e| {
                sql_err(
                    e,
                    format!(
                        "table {table}, split {split}: row {} of the batch (a delete)",
                        row + 1
                    ),
                )
            })?;
            continue;
        }
        for (i, c) in cols.iter().enumerate() {
            let v = c.value(row, &mut scratch);
            stmt.raw_bind_parameter(i + 1, v).map_err(|e| {
                sql_err(
                    e,
                    format!("table {table}, column {}", batch.schema().field(i).name()),
                )
            })?;
        }
        stmt.raw_execute().map_err(|e| {
            sql_err(e, format!("table {table}, split {split}: row {} of the batch", row + 1))
                .with_hint("the target rejected the row (a constraint such as NOT NULL, UNIQUE or CHECK); fix the data or the table, or use write = \"upsert\" for duplicate keys")
        })?;
    }
    Ok(())
}

#[async_trait]
impl SinkWriter for SqliteWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let state = self.state.clone();
        self.write_to(state, batch).await
    }

    async fn write_table(&mut self, table: &TablePlan, batch: RecordBatch) -> Result<()> {
        let state =
            self.states.get(&table.target).cloned().ok_or_else(|| {
                Error::internal(format!("table {} was not prepared", table.target))
            })?;
        self.write_to(state, batch).await
    }

    async fn commit(&mut self, position: &Position) -> Result<()> {
        let split = self.split.clone();
        let pos = checkpoints::position_text(position)?;
        let rows = self.rows;
        let res = self
            .with_tx("commit", move |conn, st| {
                let ctx = |e| sql_err(e, format!("table {}, split {split}", st.target));
                // Invariant: the checkpoint row commits with the rows it covers.
                conn.execute(
                    &D.upsert_checkpoint(CHECKPOINT_TABLE),
                    rusqlite::params![st.job.job, split, st.job.generation, st.target, pos, rows],
                )
                .map_err(ctx)?;
                conn.execute_batch("COMMIT").map_err(ctx)
            })
            .await;
        if res.is_ok() {
            self.turn = None;
        }
        res
    }

    fn counted_before(&mut self, rows: u64) {
        self.rows = rows as i64;
    }

    async fn truncate(&mut self, table: &TablePlan) -> Result<()> {
        let state =
            self.states.get(&table.target).cloned().ok_or_else(|| {
                Error::internal(format!("table {} was not prepared", table.target))
            })?;
        self.with_tx_on(state, "truncate", |conn, st| {
            conn.execute_batch(&format!("DELETE FROM {}", quote_ident(&st.write_to)))
                .map_err(|e| sql_err(e, format!("emptying table {}", st.target)))
        })
        .await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        if let Some(conn) = self.conn.take()
            && self.in_tx
        {
            let target = self.state.target.clone();
            blocking("abort", move || {
                conn.execute_batch("ROLLBACK")
                    .map_err(|e| sql_err(e, format!("table {target}")))
            })
            .await?;
        }
        self.turn = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_statement_quotes_everything() {
        let sql = create_sql(
            "x\"; DROP TABLE y; --",
            &[
                ("a b".into(), LogicalType::Int64, false),
                ("c".into(), LogicalType::Json, true),
            ],
            &["a b".into()],
        );
        assert_eq!(
            sql,
            "CREATE TABLE \"x\"\"; DROP TABLE y; --\" (\"a b\" INTEGER NOT NULL, \"c\" JSON_TEXT, \
             PRIMARY KEY (\"a b\"))"
        );
    }

    #[test]
    fn staging_ddl_keeps_user_columns() {
        let s = rename_create_sql(
            "CREATE TABLE \"a(\"\"b\" (id INT PRIMARY KEY, v TEXT)",
            "stage",
        )
        .unwrap();
        assert_eq!(s, "CREATE TABLE \"stage\" (id INT PRIMARY KEY, v TEXT)");
        let s = rename_create_sql("create table if not exists [t] (x)", "s").unwrap();
        assert_eq!(s, "CREATE TABLE \"s\" (x)");
    }

    /// One split of each of `n` one-column tables through the sink, as the engine runs them.
    async fn load_many(sink: &SqliteSink, n: usize) {
        use arrow::array::Int64Array;
        use sluice_core::TableSchema;
        sink.begin(&JobContext {
            job: "many".into(),
            generation: "g1".into(),
            ..Default::default()
        })
        .unwrap();
        let arrow = Arc::new(arrow::datatypes::Schema::new(vec![
            LogicalType::Int64.field("id", false),
        ]));
        let plans: Vec<TablePlan> = (0..n)
            .map(|i| {
                let id = TableId::new([format!("t{i}")]);
                TablePlan {
                    target: id.clone(),
                    schema: TableSchema::new(id, arrow.clone()),
                    splits: 1,
                }
            })
            .collect();
        sink.prepare(&plans).await.unwrap();
        for p in &plans {
            let split = Split {
                id: format!("{}#0", p.target),
                table: p.target.clone(),
                index: 0,
                estimated_rows: None,
                estimated_bytes: None,
                detail: serde_json::Value::Null,
                continues: false,
                start: None,
            };
            let mut w = sink.open(p, &split).await.unwrap();
            let batch =
                RecordBatch::try_new(arrow.clone(), vec![Arc::new(Int64Array::from(vec![7]))])
                    .unwrap();
            w.write(batch).await.unwrap();
            let mut pos = Position::new(split.id.clone(), serde_json::json!({"rowid": 1}));
            pos.done = true;
            w.commit(&pos).await.unwrap();
            drop(w);
            sink.finish_table(p).await.unwrap();
        }
        assert_eq!(sink.committed_positions().await.unwrap().unwrap().len(), n);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn splits_reuse_connections_instead_of_parsing_the_schema_again() {
        for mode in [WriteMode::Append, WriteMode::Overwrite] {
            let d = tempfile::tempdir().unwrap();
            let path = d.path().join("many.db");
            let sink = SqliteSink::new(SinkPlan {
                path: path.clone(),
                mode,
                create_tables: true,
                busy_timeout_ms: 5000,
                cache_mib: 1,
            });
            load_many(&sink, 40).await;
            let opened = sink.conns.opened.load(Ordering::Relaxed);
            assert!(
                opened <= 2,
                "{mode:?}: {opened} connections opened for 40 splits, each parsing every table"
            );
            let c = Connection::open(&path).unwrap();
            let n: i64 = c
                .query_row("SELECT count(*) FROM t39", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 1, "{mode:?}");
        }
    }

    #[test]
    fn missing_parent_directory_is_clear() {
        let plan = SinkPlan {
            path: std::path::PathBuf::from("/nonexistent-dir-sluice/x.db"),
            mode: WriteMode::Append,
            create_tables: true,
            busy_timeout_ms: 10,
            cache_mib: 1,
        };
        let e = open_write(&plan).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(e.hint().is_some());
    }
}
