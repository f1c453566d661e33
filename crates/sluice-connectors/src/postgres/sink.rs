//! The PostgreSQL [`Sink`]: checks or creates tables, writes each split with binary COPY in
//! one transaction, upserts through a temporary table, swaps overwrite stages in.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use sluice_core::batch::OP_COLUMN;
use sluice_core::naming::{LOCK_WAIT, LockScope, lock_key, stage_name};
use sluice_core::sink::{JobContext, Sink, SinkWriter, TablePlan};
use sluice_core::types::{generated_expr, native_type};
use sluice_core::{
    Checkpoint, CheckpointEdit, Error, GenerationRecord, JobSlot, LogicalType, Position, Result,
    SinkLockGuard, Split, TableId, WriteMode,
};
use tokio_postgres::{Client, Config, CopyInSink};
use tracing::{debug, warn};

use crate::checkpoints::{self, Dialect};

use super::check::{self, Conn, PgColumn};
use super::copy_encode::{self, Enc, HEADER, TRAILER};
use super::error::pg_error;
use super::types::{
    create_type, dollar_tag, generated_def, native_ddl_type, oid, quote_ident, quote_literal,
};

/// PostgreSQL's identifier limit in bytes.
const MAX_IDENT: usize = 63;
const D: Dialect = Dialect::Postgres;

pub(crate) struct PgSink {
    pg: Config,
    schema: String,
    mode: WriteMode,
    create: bool,
    targets: std::sync::Mutex<HashMap<sluice_core::TableId, Arc<Target>>>,
    job: JobSlot,
}

/// One prepared target table.
struct Target {
    /// `"schema"."table"` as written in messages.
    display: String,
    schema: String,
    name: String,
    /// Where COPY writes (the table, or its overwrite stage).
    into: String,
    /// The columns written, in the order of `written`.
    cols: Vec<ColPlan>,
    /// Indices of the batch columns written, when some are not (generated in the target).
    written: Option<Vec<usize>>,
    /// DDL of the temporary table (upsert, or columns PostgreSQL must cast from text).
    temp: Option<String>,
    /// `INSERT … SELECT` from the temporary table.
    insert: Option<String>,
}

struct ColPlan {
    quoted: String,
    enc: Enc,
}

impl PgSink {
    pub(crate) fn new(pg: Config, schema: String, mode: WriteMode, create: bool) -> Self {
        PgSink {
            pg,
            schema,
            mode,
            create,
            targets: Default::default(),
            job: JobSlot::default(),
        }
    }

    fn job(&self) -> JobContext {
        self.job.get()
    }

    /// `"schema"."_sluice_checkpoints"` in the sink's default schema.
    fn checkpoint_table(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(checkpoints::CHECKPOINTS)
        )
    }

    /// `"schema"."_sluice_jobs"` in the sink's default schema.
    fn jobs_table(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(checkpoints::JOBS)
        )
    }

    /// Creates (or brings up to date) the checkpoint and job tables.
    async fn ensure_tables(&self, c: &Client) -> Result<()> {
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}; {}; {}; {}",
            quote_ident(&self.schema),
            D.create_checkpoints(&self.checkpoint_table()),
            D.add_rows_column(&self.checkpoint_table()),
            D.create_jobs(&self.jobs_table())
        );
        c.batch_execute(&sql).await.map_err(|e| {
            pg_error(
                e,
                "creating Sluice's tables _sluice_checkpoints, _sluice_jobs",
            )
        })
    }

    fn target(&self, table: &TableId) -> Result<Arc<Target>> {
        self.targets
            .lock()
            .map_err(|_| Error::internal("target map poisoned"))?
            .get(table)
            .cloned()
            .ok_or_else(|| Error::internal(format!("table {table} was not prepared")))
    }

    fn names(&self, t: &TablePlan) -> Result<(String, String)> {
        match t.target.parts() {
            [n] => Ok((self.schema.clone(), n.clone())),
            [s, n] => Ok((s.clone(), n.clone())),
            _ => Err(Error::config(format!(
                "target table {} has more than two name parts",
                t.target
            ))
            .with_hint("name targets schema.table (use table_map)")),
        }
    }

    async fn prepare_one(&self, c: &Client, plan: &TablePlan) -> Result<Target> {
        let (schema, name) = self.names(plan)?;
        let q = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
        let display = sluice_core::TableId::new([schema.clone(), name.clone()]).to_string();
        let fields = plan.schema.arrow.fields();
        // Change events carry their operation: deletes are applied by key, the rest upserted.
        let op_idx = plan.schema.arrow.index_of(OP_COLUMN).ok();
        if op_idx.is_some() && self.mode != WriteMode::Upsert {
            return Err(Error::config(format!(
                "table {display} receives change events (inserts, updates and deletes), which \
                 only write = \"upsert\" can apply"
            ))
            .with_hint("set write = \"upsert\" in [sink] (the target needs the source's key)"));
        }
        if self.mode == WriteMode::Upsert && plan.schema.primary_key.is_empty() {
            return Err(Error::config(format!(
                "write = \"upsert\" into {display} needs a primary key, and the source table has none"
            ))
            .with_hint("use write = \"append\" or \"overwrite\", or read a table with a primary key"));
        }
        let mut rel = check::find_relation(c, &schema, &name).await?;
        if rel.is_none() {
            if !self.create {
                return Err(
                    Error::schema(format!("target table {display} does not exist"))
                        .with_hint("create it, or set create_tables = true in [sink]"),
                );
            }
            let mut ddl = format!("CREATE SCHEMA IF NOT EXISTS {};\n", quote_ident(&schema));
            let mut cols = Vec::new();
            for f in fields.iter().filter(|f| f.name() != OP_COLUMN) {
                warn_refused_metadata(&display, f, &schema);
                if let (Some(Ok(_)), Some(("postgres", n)), LogicalType::Enum(labels)) = (
                    native_ddl_type(f, &schema),
                    native_type(f),
                    LogicalType::of_field(f)?,
                ) && let Some(Ok(en)) = n.strip_prefix("enum:").map(sluice_core::TableId::parse)
                {
                    let labels: Vec<String> = labels.iter().map(|l| quote_literal(l)).collect();
                    // Creates the enum in the target schema unless a type of that name exists.
                    let body = format!(
                        "BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n \
                         ON n.oid = t.typnamespace WHERE n.nspname = {} AND t.typname = {}) THEN \
                         CREATE TYPE {}.{} AS ENUM ({}); END IF; END",
                        quote_literal(&schema),
                        quote_literal(en.name()),
                        quote_ident(&schema),
                        quote_ident(en.name()),
                        labels.join(", ")
                    );
                    // A tag that no label contains, so none can end the block.
                    let tag = dollar_tag(&body);
                    ddl.push_str(&format!("DO {tag} {body} {tag};\n"));
                }
                let ty =
                    column_type(f, &schema).map_err(|e| e.context(format!("table {display}")))?;
                let nn = if f.is_nullable() { "" } else { " NOT NULL" };
                cols.push(format!("{} {ty}{nn}", quote_ident(f.name())));
            }
            if !plan.schema.primary_key.is_empty() {
                let pk: Vec<String> = plan
                    .schema
                    .primary_key
                    .iter()
                    .map(|k| quote_ident(k))
                    .collect();
                cols.push(format!("PRIMARY KEY ({})", pk.join(", ")));
            }
            ddl.push_str(&format!("CREATE TABLE {q} ({})", cols.join(", ")));
            let shown = &display;
            debug!(table = %shown, ddl = %ddl, "Creating table.");
            let generated = fields
                .iter()
                .any(|f| matches!(generated_def(f), Some(Ok(_))));
            c.batch_execute(&ddl).await.map_err(|e| {
                let e = pg_error(e, format!("creating table {display}"));
                if generated && e.hint().is_none() {
                    // The expression names source columns and functions: a transform may
                    // have renamed or dropped one, or a function may be missing here.
                    e.with_hint(
                        "a generated column's expression (GENERATED ALWAYS AS) may name a \
                         column a transform renamed or dropped, or a function the target \
                         lacks; create the table yourself, or cast the column with a \
                         [[transform]] type = \"cast\" to make it a plain column",
                    )
                } else {
                    e
                }
            })?;
            rel = check::find_relation(c, &schema, &name).await?;
        }
        let rel = rel.ok_or_else(|| Error::internal(format!("table {display} vanished")))?;
        let tcols = check::columns(c, rel).await?;
        // Every problem of an existing target is found here, before any data moves.
        if let Some(tc) = tcols
            .iter()
            .find(|t| t.not_null && !t.filled && !fields.iter().any(|f| f.name() == &t.name))
        {
            return Err(Error::schema(format!(
                "table {display}: target column {:?} is NOT NULL without a default, and the \
                 source has no such column: every row would be refused",
                tc.name
            ))
            .with_hint(
                "give the target column a DEFAULT or allow NULL in it, or add the column with \
                 a [[transform]] type = \"add\"",
            ));
        }
        let mut cols = Vec::new();
        let mut casts: Vec<Option<&PgColumn>> = Vec::new();
        let mut written: Vec<(usize, &PgColumn)> = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if Some(i) == op_idx {
                continue;
            }
            let Some(tc) = tcols.iter().find(|t| t.name == *f.name()) else {
                let names: Vec<String> = tcols.iter().map(|t| t.name.clone()).collect();
                return Err(Error::schema(format!(
                    "table {display}: source column {:?} is missing in the target (it has: {})",
                    f.name(),
                    names.join(", ")
                ))
                .with_hint(
                    "add the column to the target, or drop/rename it with a [[transform]]",
                ));
            };
            if let Some(expr) = &tc.generated {
                // The target computes this column; writing it would fail (COPY and INSERT
                // refuse generated columns).
                let shown = &display;
                if matches!(generated_expr(f), Some(("postgres", e)) if e == expr) {
                    debug!(table = %shown, column = %tc.name, "Generated column left to the target.");
                } else {
                    warn!(
                        table = %shown,
                        column = %tc.name,
                        expression = %expr,
                        "The target computes this generated column; the source's values are not written."
                    );
                }
                continue;
            }
            written.push((i, tc));
            let lt = LogicalType::of_field(f)
                .map(|l| l.to_string())
                .unwrap_or_else(|_| f.data_type().to_string());
            match copy_encode::plan(f.data_type(), &tc.ty) {
                Some(enc) => {
                    cols.push(ColPlan {
                        quoted: quote_ident(&tc.name),
                        enc,
                    });
                    casts.push(None);
                }
                None if text_castable(f.data_type(), native_type(f), tc) => {
                    let enc = match copy_encode::normalized(f.data_type()) {
                        DataType::List(_) => Enc::List(oid::TEXT, Box::new(Enc::Text)),
                        _ => Enc::Text,
                    };
                    cols.push(ColPlan {
                        quoted: quote_ident(&tc.name),
                        enc,
                    });
                    casts.push(Some(tc));
                }
                None => {
                    return Err(Error::schema(format!(
                        "table {display}, column {:?}: the target type {} cannot hold the source type {lt}",
                        f.name(),
                        tc.declared
                    ))
                    .with_hint(format!(
                        "change the target column's type (e.g. to {}), or add a [[transform]] type = \"cast\" to a type it can hold (e.g. text)",
                        create_type(f, &schema).unwrap_or_else(|_| "text".into())
                    )));
                }
            }
        }
        if cols.is_empty() {
            return Err(Error::schema(format!(
                "table {display}: every column the source has is generated in the target; \
                 there is nothing to write"
            ))
            .with_hint(
                "write to a table with plain columns, or map the table elsewhere with table_map",
            ));
        }
        if self.mode == WriteMode::Upsert {
            let keys = check::unique_keys(c, rel, false).await?;
            let mut want = plan.schema.primary_key.clone();
            want.sort();
            if !keys.iter().any(|k| {
                let mut k = k.clone();
                k.sort();
                k == want
            }) {
                return Err(Error::schema(format!(
                    "table {display} has no primary key or unique index on ({}) for upsert",
                    plan.schema.primary_key.join(", ")
                ))
                .with_hint(
                    "add a PRIMARY KEY or UNIQUE constraint on those columns in the target",
                ));
            }
        }
        let mut into = q.clone();
        if self.mode == WriteMode::Overwrite {
            let stage = quote_ident(&stage_name(&name));
            let sq = format!("{}.{stage}", quote_ident(&schema));
            // A stage left by an unfinished run is discarded with its checkpoints: overwrite
            // restarts the table.
            c.batch_execute(&format!(
                "DROP TABLE IF EXISTS {sq}; CREATE TABLE {sq} (LIKE {q} INCLUDING ALL)"
            ))
            .await
            .map_err(|e| pg_error(e, format!("creating the overwrite stage of {display}")))?;
            c.execute(
                &format!(
                    "DELETE FROM {} WHERE job = $1 AND table_name = $2",
                    self.checkpoint_table()
                ),
                &[&self.job().job, &display],
            )
            .await
            .map_err(|e| pg_error(e, format!("clearing old checkpoints of {display}")))?;
            into = sq;
        }
        let staged = self.mode == WriteMode::Upsert || casts.iter().any(Option::is_some);
        let (temp, insert) = if staged {
            let mut defs = Vec::new();
            let mut sel = Vec::new();
            for (cp, (cast, (_, tc))) in cols.iter().zip(casts.iter().zip(written.iter())) {
                match cast {
                    Some(tc) => {
                        let tt = if matches!(cp.enc, Enc::List(..)) {
                            "text[]"
                        } else {
                            "text"
                        };
                        defs.push(format!("{} {tt}", cp.quoted));
                        sel.push(format!("{}::{}", cp.quoted, tc.declared));
                    }
                    None => {
                        defs.push(format!("{} {}", cp.quoted, tc.ty.format));
                        sel.push(cp.quoted.clone());
                    }
                }
            }
            let names: Vec<&str> = cols.iter().map(|c| c.quoted.as_str()).collect();
            // COPY writes identity columns GENERATED ALWAYS; INSERT needs to be told to.
            let overriding = if written.iter().any(|(_, tc)| tc.identity_always) {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            };
            let mut ins = format!(
                "INSERT INTO {into} ({}){overriding} SELECT {} FROM pg_temp.sluice_tmp",
                names.join(", "),
                sel.join(", ")
            );
            let pk: Vec<String> = plan
                .schema
                .primary_key
                .iter()
                .map(|k| quote_ident(k))
                .collect();
            if op_idx.is_some() {
                // The last event of each key wins; deletes are applied, the rest upserted.
                let on = |a: &str, b: &str| {
                    pk.iter()
                        .map(|k| format!("{a}.{k} = {b}.{k}"))
                        .collect::<Vec<_>>()
                        .join(" AND ")
                };
                ins = format!(
                    "DELETE FROM pg_temp.sluice_tmp a USING pg_temp.sluice_tmp b WHERE {} AND \
                     a._sluice_seq < b._sluice_seq; \
                     DELETE FROM {into} t USING pg_temp.sluice_tmp s WHERE {} AND \
                     s.{OP_COLUMN} = 'D'; \
                     {ins} WHERE {OP_COLUMN} IS DISTINCT FROM 'D'",
                    on("a", "b"),
                    on("t", "s")
                );
                defs.push(format!("{OP_COLUMN} text"));
                defs.push("_sluice_seq bigserial".into());
            }
            if self.mode == WriteMode::Upsert {
                let set: Vec<String> = cols
                    .iter()
                    .filter(|c| !pk.contains(&c.quoted))
                    .map(|c| format!("{0} = EXCLUDED.{0}", c.quoted))
                    .collect();
                if set.is_empty() {
                    ins.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", pk.join(", ")));
                } else {
                    ins.push_str(&format!(
                        " ON CONFLICT ({}) DO UPDATE SET {}",
                        pk.join(", "),
                        set.join(", ")
                    ));
                }
            }
            (
                Some(format!(
                    "CREATE TEMP TABLE sluice_tmp ({}) ON COMMIT DROP",
                    defs.join(", ")
                )),
                Some(ins),
            )
        } else {
            (None, None)
        };
        let mut written: Option<Vec<usize>> =
            (written.len() < fields.len()).then(|| written.iter().map(|w| w.0).collect());
        if let (Some(op), Some(w)) = (op_idx, written.as_mut()) {
            // The operation is written last, into the temporary table only.
            w.push(op);
            cols.push(ColPlan {
                quoted: quote_ident(OP_COLUMN),
                enc: Enc::Text,
            });
        }
        Ok(Target {
            display,
            schema,
            name,
            into,
            cols,
            written,
            temp,
            insert,
        })
    }
}

/// Whether a column without a binary path may be written as text and cast by PostgreSQL:
/// the source is text, and either it came from a PostgreSQL column of the same type or the
/// target is a type that takes text input (money, inet, xml, extension and user types).
fn text_castable(dt: &DataType, native: Option<(&str, &str)>, tc: &PgColumn) -> bool {
    let dt = copy_encode::normalized(dt);
    let is_text = match &dt {
        DataType::Utf8 => true,
        DataType::List(f) => {
            copy_encode::normalized(f.data_type()) == DataType::Utf8 && tc.ty.elem.is_some()
        }
        _ => false,
    };
    if !is_text {
        return false;
    }
    if let Some(("postgres", n)) = native
        && (n == tc.declared || n == tc.ty.format)
    {
        return true;
    }
    let t = tc.ty.elem.as_deref().unwrap_or(&tc.ty);
    let binary_known = matches!(
        t.oid,
        oid::BOOL
            | oid::INT2
            | oid::INT4
            | oid::INT8
            | oid::FLOAT4
            | oid::FLOAT8
            | oid::DATE
            | oid::TIME
            | oid::TIMESTAMP
            | oid::TIMESTAMPTZ
            | oid::INTERVAL
            | oid::BYTEA
    );
    !binary_known
}

/// The column definition `CREATE TABLE` uses for `f` (without NOT NULL): its type, and for a
/// column PostgreSQL generated in the source, `GENERATED ALWAYS AS (expr) STORED` (same
/// engine, so the expression is valid here). Columns generated by another engine become plain
/// columns holding the source's values.
fn column_type(f: &arrow::datatypes::Field, schema: &str) -> Result<String> {
    let ty = create_type(f, schema)?;
    Ok(match generated_def(f) {
        Some(Ok(expr)) => format!("{ty} GENERATED ALWAYS AS ({expr}) STORED"),
        _ => ty,
    })
}

/// Warns (naming table and column) about a native type or generation expression recorded in
/// `f`'s metadata that is not written into `CREATE TABLE` because it is not plain SQL of its
/// kind (see [`native_ddl_type`], [`generated_def`]).
fn warn_refused_metadata(table: &str, f: &arrow::datatypes::Field, schema: &str) {
    if let Some(Err(native)) = native_ddl_type(f, schema) {
        warn!(
            table = %table,
            column = %f.name(),
            native = %native,
            "The column's recorded PostgreSQL type is not a type name, so it is not written \
             into CREATE TABLE; the column gets its logical type's PostgreSQL type."
        );
    }
    if let Some(Err(expr)) = generated_def(f) {
        warn!(
            table = %table,
            column = %f.name(),
            expression = %expr,
            "The column's recorded generation expression is not one plain expression, so it \
             is not written into CREATE TABLE; the column is a plain column holding the \
             source's values."
        );
    }
}

/// The advisory locks of one job, held by a connection of their own: they are released when
/// it closes (also when the process dies).
struct LockHolder {
    _conn: Conn,
}

/// Who holds advisory lock `key`, as far as `pg_stat_activity` tells.
async fn lock_holder(c: &Client, key: i64) -> String {
    let (hi, lo) = (
        ((key as u64) >> 32) as i64,
        (key as u64 & 0xffff_ffff) as i64,
    );
    let row = c
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),              a.backend_start::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid              WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int8 = $1              AND l.objid::int8 = $2 AND l.objsubid = 1",
            &[&hi, &lo],
        )
        .await
        .ok()
        .flatten();
    match row {
        Some(r) => format!(
            "server process {} ({:?} from {}, connected since {})",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3)
        ),
        None => "another session".to_string(),
    }
}

#[async_trait]
impl Sink for PgSink {
    fn keeps_checkpoints(&self) -> bool {
        true
    }

    async fn lock(&self, job: &str, targets: &[TableId]) -> Result<Option<SinkLockGuard>> {
        let mut cfg = self.pg.clone();
        cfg.application_name(format!("sluice lock: {job}"));
        let conn = check::connect(&cfg, "taking the job's locks in the target").await?;
        let db = self.pg.get_dbname().unwrap_or("").to_string();
        let mut keys = vec![lock_key(LockScope::Job, &db, job)];
        for t in targets {
            let (schema, name) = match t.parts() {
                [n] => (self.schema.clone(), n.clone()),
                [s, n] => (s.clone(), n.clone()),
                _ => continue,
            };
            let id = TableId::new([schema, name]).to_string();
            keys.push(lock_key(LockScope::Table, &db, &id));
        }
        for (key, label) in keys {
            let started = std::time::Instant::now();
            let got = loop {
                let got: bool = conn
                    .client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                    .await
                    .map_err(|e| pg_error(e, "taking the job's locks in the target"))?
                    .get(0);
                if got || started.elapsed() >= LOCK_WAIT {
                    break got;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            if !got {
                let who = lock_holder(&conn.client, key).await;
                return Err(Error::config(format!(
                    "the {label} is locked in PostgreSQL database {db:?} by {who}: another \
                     `sluice run` of this job, or another job writing this table, is running"
                ))
                .with_hint(
                    "wait for it to end or stop it (`sluice stop JOB`); two runs writing the same \
                     job or table would double or mix rows",
                ));
            }
        }
        Ok(Some(Box::new(LockHolder { _conn: conn })))
    }

    async fn check(&self, tables: &[TablePlan]) -> Result<()> {
        let conn = check::connect(&self.pg, "sink").await?;
        let c = &conn.client;
        let user: String = c
            .query_one("SELECT current_user", &[])
            .await
            .map_err(|e| pg_error(e, "sink: checking privileges"))?
            .get(0);
        // What the job writes: every target, and the checkpoint tables in the default schema.
        let mut wanted: Vec<(String, String, bool)> = Vec::with_capacity(tables.len() + 2);
        for t in tables {
            let (schema, name) = self.names(t)?;
            wanted.push((schema, name, true));
        }
        for name in [checkpoints::CHECKPOINTS, checkpoints::JOBS] {
            wanted.push((self.schema.clone(), name.to_string(), false));
        }
        for (schema, name, is_target) in wanted {
            let shown = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
            match check::find_relation(c, &schema, &name).await? {
                Some(oid) => {
                    let privs: &[&str] = match (is_target, self.mode) {
                        (false, _) => &["INSERT", "UPDATE", "SELECT"],
                        (true, WriteMode::Upsert) => &["INSERT", "UPDATE", "SELECT"],
                        (true, _) => &["INSERT"],
                    };
                    for p in privs {
                        let ok: bool = c
                            .query_one("SELECT has_table_privilege($1::oid, $2)", &[&oid, p])
                            .await
                            .map_err(|e| pg_error(e, "sink: checking privileges"))?
                            .get(0);
                        if !ok {
                            return Err(Error::new(
                                sluice_core::ErrorKind::Auth,
                                format!("role {user:?} may not {p} into {shown}"),
                            )
                            .with_hint(format!("GRANT {p} ON {shown} TO {}", quote_ident(&user))));
                        }
                    }
                }
                None if is_target && !self.create => {
                    return Err(Error::config(format!(
                        "target table {shown} does not exist and create_tables = false"
                    ))
                    .with_hint("create the table, or set create_tables = true in [sink]"));
                }
                None => {
                    let ok: Option<bool> = c
                        .query_one(
                            "SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace \
                             WHERE nspname = $1",
                            &[&schema],
                        )
                        .await
                        .ok()
                        .map(|r| r.get(0));
                    match ok {
                        Some(true) => {}
                        Some(false) => {
                            return Err(Error::new(
                                sluice_core::ErrorKind::Auth,
                                format!(
                                    "role {user:?} may not create {shown}: no CREATE privilege \
                                     on schema {}",
                                    quote_ident(&schema)
                                ),
                            )
                            .with_hint(format!(
                                "GRANT CREATE ON SCHEMA {} TO {}, or create the table first",
                                quote_ident(&schema),
                                quote_ident(&user)
                            )));
                        }
                        None => {
                            return Err(Error::config(format!(
                                "schema {} does not exist in the target database",
                                quote_ident(&schema)
                            ))
                            .with_hint(format!(
                                "CREATE SCHEMA {}, or map the table elsewhere with table_map",
                                quote_ident(&schema)
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn load_generation(&self, job: &str) -> Result<Option<GenerationRecord>> {
        let conn = check::connect(&self.pg, "reading the job's generation in the target").await?;
        if check::find_relation(&conn.client, &self.schema, checkpoints::JOBS)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let row = conn
            .client
            .query_opt(&D.select_job(&self.jobs_table()), &[&job])
            .await
            .map_err(|e| pg_error(e, "reading _sluice_jobs"))?;
        row.map(|r| checkpoints::record_of(r.get(0), r.get(1), r.get::<_, &str>(2)))
            .transpose()
    }

    async fn save_generation(&self, job: &str, record: &GenerationRecord) -> Result<()> {
        let conn = check::connect(&self.pg, "recording the job's generation in the target").await?;
        self.ensure_tables(&conn.client).await?;
        let manifest = checkpoints::manifest_text(record)?;
        conn.client
            .execute(
                &D.upsert_job(&self.jobs_table()),
                &[&job, &record.generation, &record.finished, &manifest],
            )
            .await
            .map_err(|e| pg_error(e, "writing _sluice_jobs"))?;
        Ok(())
    }

    fn begin(&self, ctx: &JobContext) -> Result<()> {
        self.job.set(ctx);
        Ok(())
    }

    async fn committed_positions(&self) -> Result<Option<Vec<Checkpoint>>> {
        let conn = check::connect(&self.pg, "reading checkpoints").await?;
        self.ensure_tables(&conn.client).await?;
        let job = self.job();
        let rows = conn
            .client
            .query(
                &D.select_checkpoints(&self.checkpoint_table()),
                &[&job.job, &job.generation],
            )
            .await
            .map_err(|e| pg_error(e, "reading checkpoints"))?;
        rows.iter()
            .map(|r| checkpoints::checkpoint_of(r.get(1), r.get(2), r.get(3)))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    async fn checkpoint(&self, split: &str) -> Result<Option<Position>> {
        let conn = check::connect(&self.pg, "reading a checkpoint").await?;
        self.ensure_tables(&conn.client).await?;
        let job = self.job();
        let row = conn
            .client
            .query_opt(
                &D.select_checkpoint(&self.checkpoint_table()),
                &[&job.job, &job.generation, &split],
            )
            .await
            .map_err(|e| pg_error(e, "reading a checkpoint"))?;
        row.map(|r| checkpoints::parse_position(r.get(0)))
            .transpose()
    }

    async fn set_checkpoints(&self, edits: &[CheckpointEdit]) -> Result<bool> {
        let what = "editing checkpoints";
        let conn = check::connect(&self.pg, what).await?;
        self.ensure_tables(&conn.client).await?;
        let (job, q) = (self.job(), self.checkpoint_table());
        let c = &conn.client;
        c.batch_execute("BEGIN")
            .await
            .map_err(|e| pg_error(e, what))?;
        for e in edits {
            match &e.position {
                None => {
                    c.execute(
                        &D.delete_checkpoint(&q),
                        &[&job.job, &job.generation, &e.split],
                    )
                    .await
                }
                Some(p) => {
                    let pos = checkpoints::position_text(p)?;
                    let rows = e.rows as i64;
                    c.execute(
                        &D.upsert_checkpoint(&q),
                        &[&job.job, &e.split, &job.generation, &e.table, &pos, &rows],
                    )
                    .await
                }
            }
            .map_err(|err| pg_error(err, what))?;
        }
        // A failure above drops the connection, which rolls the transaction back.
        c.batch_execute("COMMIT")
            .await
            .map_err(|e| pg_error(e, what))?;
        Ok(true)
    }

    async fn holds_rows(&self, table: &TablePlan) -> Result<Option<bool>> {
        let target = self.target(&table.target)?;
        let conn = check::connect(&self.pg, "sink").await?;
        let row = conn
            .client
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", target.into),
                &[],
            )
            .await
            .map_err(|e| pg_error(e, format!("checking whether {} holds rows", target.display)))?;
        Ok(Some(row.get(0)))
    }

    async fn prepare(&self, tables: &[TablePlan]) -> Result<()> {
        let conn = check::connect(&self.pg, "sink").await?;
        self.ensure_tables(&conn.client).await?;
        let mut map = HashMap::new();
        for t in tables {
            let target = self.prepare_one(&conn.client, t).await?;
            map.insert(t.target.clone(), Arc::new(target));
        }
        *self
            .targets
            .lock()
            .map_err(|_| Error::internal("target map poisoned"))? = map;
        Ok(())
    }

    fn target_types(&self, table: &TablePlan) -> Result<Option<Vec<(String, String)>>> {
        let (schema, _) = self.names(table)?;
        let mut out = Vec::new();
        for f in table.schema.arrow.fields() {
            if f.name() == OP_COLUMN {
                out.push((
                    f.name().clone(),
                    "(the change's operation: applied, not stored)".into(),
                ));
                continue;
            }
            let mut t = column_type(f, &schema)
                .map_err(|e| e.context(format!("table {}", table.target)))?;
            if let Some(Err(native)) = native_ddl_type(f, &schema) {
                t.push_str(&format!(
                    " (the recorded type {native:?} is not a type name, so it is not used)"
                ));
            }
            match generated_expr(f) {
                Some(("postgres", _)) if matches!(generated_def(f), Some(Err(_))) => {
                    t.push_str(" (the recorded generation expression is refused: a plain column)")
                }
                Some((engine, _)) if engine != "postgres" => {
                    t.push_str(&format!(" (generated in {engine}: a plain column here)"))
                }
                _ => {}
            }
            out.push((f.name().clone(), t));
        }
        Ok(Some(out))
    }

    async fn open(&self, table: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>> {
        let target = self.target(&table.target)?;
        let ctx = format!("writing {} (split {})", target.display, split.id);
        let conn = check::connect(&self.pg, &ctx).await?;
        let targets = self
            .targets
            .lock()
            .map_err(|_| Error::internal("target map poisoned"))?
            .clone();
        Ok(Box::new(PgWriter {
            conn: Some(conn),
            target,
            targets,
            current: None,
            copy: None,
            in_tx: false,
            ctx,
            buf: BytesMut::new(),
            job: self.job(),
            checkpoints: self.checkpoint_table(),
            rows: 0,
            busy: false,
        }))
    }

    async fn finish_table(&self, table: &TablePlan) -> Result<()> {
        let target = self.target(&table.target)?;
        let conn = check::connect(&self.pg, "sink").await?;
        // Idempotent: a stage that is gone was swapped in by an earlier call.
        if self.mode == WriteMode::Overwrite
            && check::find_relation(&conn.client, &target.schema, &stage_name(&target.name))
                .await?
                .is_some()
        {
            swap_in(&conn.client, &target).await?;
        }
        advance_sequences(&conn.client, &target).await
    }
}

/// Moves every sequence a column of the target owns (`serial`, identity) to at least the
/// column's largest value, so that rows inserted later without a value do not collide with
/// the loaded ones. Never moves a sequence back, so it is idempotent; descending sequences
/// are left alone. A sequence that cannot be advanced (its `MAXVALUE` is below the loaded
/// values, no privilege) is a warning: the rows are loaded, only later inserts are at risk.
async fn advance_sequences(c: &Client, t: &Target) -> Result<()> {
    let seqs = c
        .query(
            "SELECT s.oid::int8, s.oid::regclass::text, a.attname::text FROM pg_depend d \
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
             JOIN pg_sequence q ON q.seqrelid = s.oid AND q.seqincrement > 0 \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND d.refobjid = (quote_ident($1) || '.' || quote_ident($2))::regclass \
               AND d.deptype IN ('a', 'i')",
            &[&t.schema, &t.name],
        )
        .await
        .map_err(|e| pg_error(e, format!("reading the sequences of {}", t.display)))?;
    let table = format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name));
    for r in &seqs {
        let (oid, seq, col): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
        let sql = format!(
            "SELECT setval(q.seqrelid::regclass, x.m) FROM pg_sequence q, \
               (SELECT max({})::int8 AS m FROM {table}) x \
             WHERE q.seqrelid = $1::int8::oid AND x.m IS NOT NULL \
               AND x.m > coalesce(pg_sequence_last_value(q.seqrelid::regclass), q.seqstart - 1)",
            quote_ident(&col)
        );
        match c.query_opt(&sql, &[&oid]).await {
            Ok(Some(row)) => {
                let to: i64 = row.get(0);
                let shown = &t.display;
                debug!(table = %shown, sequence = %seq, value = to, "Advanced the sequence past the loaded values.");
            }
            Ok(None) => {}
            Err(e) => {
                let shown = &t.display;
                let e = pg_error(e, format!("advancing sequence {seq}"));
                warn!(
                    table = %shown,
                    sequence = %seq,
                    error = %e,
                    "Cannot advance the sequence past the loaded values; inserts without a value may collide. Fix it with setval."
                );
            }
        }
    }
    Ok(())
}

/// Replaces the target with its stage in one transaction: readers see the old table until
/// the commit, then the new one. Serial sequences move to the stage first; the stage's
/// indexes (and the constraints they back) take the target's name prefix.
async fn swap_in(c: &Client, t: &Target) -> Result<()> {
    let s = quote_ident(&t.schema);
    let stage = stage_name(&t.name);
    let err = |e| {
        pg_error(
            e,
            format!("swapping the overwrite stage into {}", t.display),
        )
    };
    c.batch_execute("BEGIN").await.map_err(err)?;
    let seqs = c
        .query(
            "SELECT s.oid::regclass::text, a.attname::text FROM pg_depend d \
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.refobjid = (quote_ident($1) || '.' || quote_ident($2))::regclass AND d.deptype = 'a'",
            &[&t.schema, &t.name],
        )
        .await
        .map_err(err)?;
    let mut sql = String::new();
    for r in &seqs {
        let (seq, col): (String, String) = (r.get(0), r.get(1));
        sql.push_str(&format!(
            "ALTER SEQUENCE {seq} OWNED BY {s}.{}.{};\n",
            quote_ident(&stage),
            quote_ident(&col)
        ));
    }
    sql.push_str(&format!(
        "DROP TABLE {s}.{}; ALTER TABLE {s}.{} RENAME TO {};",
        quote_ident(&t.name),
        quote_ident(&stage),
        quote_ident(&t.name)
    ));
    if let Err(e) = c.batch_execute(&sql).await {
        let _ = c.batch_execute("ROLLBACK").await;
        return Err(pg_error(
            e,
            format!("swapping the overwrite stage into {}", t.display),
        )
        .with_hint(
            "objects depending on the target (views, foreign keys) block the swap; drop them or \
             use write = \"append\"",
        ));
    }
    let idx = c
        .query(
            "SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             WHERE i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass",
            &[&t.schema, &t.name],
        )
        .await
        .map_err(err)?;
    let mut sql = String::new();
    for r in &idx {
        let old: String = r.get(0);
        if let Some(rest) = old.strip_prefix(&stage) {
            let new = format!("{}{rest}", t.name);
            if new.len() <= MAX_IDENT {
                sql.push_str(&format!(
                    "ALTER INDEX {s}.{} RENAME TO {};\n",
                    quote_ident(&old),
                    quote_ident(&new)
                ));
            }
        }
    }
    sql.push_str("COMMIT");
    c.batch_execute(&sql).await.map_err(err)?;
    Ok(())
}

struct PgWriter {
    conn: Option<Conn>,
    /// The split's own table (named in its checkpoint).
    target: Arc<Target>,
    /// Every prepared table, for rows of other tables of the split (`write_table`).
    targets: HashMap<sluice_core::TableId, Arc<Target>>,
    /// The table the open COPY writes.
    current: Option<Arc<Target>>,
    copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    /// A transaction is open (BEGIN sent).
    in_tx: bool,
    ctx: String,
    buf: BytesMut,
    job: JobContext,
    /// Qualified name of the checkpoint table.
    checkpoints: String,
    /// Rows of the split, from its start (stored with the checkpoint; see
    /// [`SinkWriter::counted_before`]).
    rows: i64,
    /// A `write` or `commit` began and did not return (it failed, or was dropped because the
    /// job stops while it waited on a lock or a silent server): the connection's state is
    /// unknown, so `abort` drops it instead of sending a ROLLBACK that would queue behind.
    busy: bool,
}

impl PgWriter {
    fn client(&self) -> Result<&Client> {
        self.conn
            .as_ref()
            .map(|c| &c.client)
            .ok_or_else(|| Error::internal("writer used after abort"))
    }

    /// Opens a COPY into `t` (its temporary table for upsert), in the writer's transaction
    /// (begun here if none is open).
    async fn start(&mut self, t: Arc<Target>) -> Result<()> {
        let c = self.client()?;
        let mut sql: Vec<&str> = Vec::new();
        if !self.in_tx {
            sql.push("BEGIN");
        }
        if let Some(temp) = &t.temp {
            sql.push(temp);
        }
        if !sql.is_empty() {
            c.batch_execute(&sql.join("; "))
                .await
                .map_err(|e| pg_error(e, &self.ctx))?;
        }
        let into = if t.temp.is_some() {
            "pg_temp.sluice_tmp"
        } else {
            t.into.as_str()
        };
        let cols: Vec<&str> = t.cols.iter().map(|c| c.quoted.as_str()).collect();
        let copy = format!(
            "COPY {into} ({}) FROM STDIN (FORMAT binary)",
            cols.join(", ")
        );
        let sink = c
            .copy_in::<_, Bytes>(copy.as_str())
            .await
            .map_err(|e| pg_error(e, &self.ctx))?;
        self.copy = Some(Box::pin(sink));
        self.current = Some(t);
        self.in_tx = true;
        self.buf.extend_from_slice(HEADER);
        Ok(())
    }

    /// Ends the open COPY, if any, and moves its rows from the temporary table into the
    /// target (upsert); `switching`: another table's COPY follows in the same transaction, so
    /// the temporary table is dropped now rather than at COMMIT.
    async fn finish_copy(&mut self, switching: bool) -> Result<()> {
        let Some(mut sink) = self.copy.take() else {
            return Ok(());
        };
        sink.send(Bytes::from_static(TRAILER))
            .await
            .map_err(|e| pg_error(e, &self.ctx))?;
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| pg_error(e, &self.ctx))?;
        let t = self.current.take().unwrap_or_else(|| self.target.clone());
        if let Some(ins) = &t.insert {
            let mut sql = ins.clone();
            if switching && t.temp.is_some() {
                sql.push_str("; DROP TABLE pg_temp.sluice_tmp");
            }
            self.client()?
                .batch_execute(&sql)
                .await
                .map_err(|e| pg_error(e, &self.ctx))?;
        }
        Ok(())
    }

    /// Encodes `batch` into the COPY of `t`, opening it (and ending another table's) first.
    async fn write_to(&mut self, t: Arc<Target>, batch: RecordBatch) -> Result<()> {
        self.busy = true;
        if self.current.as_ref().is_some_and(|c| !Arc::ptr_eq(c, &t)) {
            self.finish_copy(true).await?;
        }
        if self.copy.is_none() {
            self.start(t.clone()).await?;
        }
        let batch = match &t.written {
            Some(idx) => batch.project(idx)?,
            None => batch,
        };
        let encs: Vec<Enc> = t.cols.iter().map(|c| c.enc.clone()).collect();
        copy_encode::encode_batch(&batch, &encs, &mut self.buf).map_err(|e| {
            Error::data(format!(
                "{}: table {}: row {} of the batch, column {:?}: {}",
                self.ctx,
                t.display,
                e.row + 1,
                batch.schema().field(e.column).name(),
                e.message
            ))
            .with_hint("add a [[transform]] type = \"cast\", or change the target column's type")
        })?;
        let data = self.buf.split().freeze();
        let sink = self.copy.as_mut().expect("started above");
        sink.send(data).await.map_err(|e| pg_error(e, &self.ctx))?;
        self.rows += batch.num_rows() as i64;
        self.busy = false;
        Ok(())
    }
}

#[async_trait]
impl SinkWriter for PgWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.write_to(self.target.clone(), batch).await
    }

    async fn write_table(&mut self, table: &TablePlan, batch: RecordBatch) -> Result<()> {
        let t =
            self.targets.get(&table.target).cloned().ok_or_else(|| {
                Error::internal(format!("table {} was not prepared", table.target))
            })?;
        self.write_to(t, batch).await
    }

    async fn commit(&mut self, position: &Position) -> Result<()> {
        self.busy = true;
        self.finish_copy(false).await?;
        let pos = checkpoints::position_text(position)?;
        let c = self.client()?;
        if !self.in_tx {
            c.batch_execute("BEGIN")
                .await
                .map_err(|e| pg_error(e, &self.ctx))?;
        }
        c.execute(
            &D.upsert_checkpoint(&self.checkpoints),
            &[
                &self.job.job,
                &position.split,
                &self.job.generation,
                &self.target.display,
                &pos,
                &self.rows,
            ],
        )
        .await
        .map_err(|e| pg_error(e, format!("{}: writing the checkpoint", self.ctx)))?;
        // Invariant: the rows and the checkpoint row become durable together here; the engine
        // records `position` only after this COMMIT returned.
        c.batch_execute("COMMIT")
            .await
            .map_err(|e| pg_error(e, &self.ctx))?;
        self.in_tx = false;
        self.busy = false;
        Ok(())
    }

    fn counted_before(&mut self, rows: u64) {
        self.rows = rows as i64;
    }

    async fn truncate(&mut self, table: &TablePlan) -> Result<()> {
        let t =
            self.targets.get(&table.target).cloned().ok_or_else(|| {
                Error::internal(format!("table {} was not prepared", table.target))
            })?;
        self.busy = true;
        // Rows of the unit so far land first (a COPY in progress ends), then the table
        // empties, in the same transaction.
        self.finish_copy(true).await?;
        let c = self.client()?;
        let begin = if self.in_tx { "" } else { "BEGIN; " };
        c.batch_execute(&format!("{begin}TRUNCATE {}", t.into))
            .await
            .map_err(|e| pg_error(e, format!("{}: emptying {}", self.ctx, t.display)))?;
        self.in_tx = true;
        self.busy = false;
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        let mid_copy = self.copy.take().is_some() || self.busy;
        if let Some(conn) = self.conn.take() {
            if !mid_copy && self.in_tx {
                // Outside a COPY a ROLLBACK is quick; mid-COPY the connection is dropped and
                // the server rolls back when it notices.
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    conn.client.batch_execute("ROLLBACK"),
                )
                .await;
            }
            drop(conn);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::types::with_generated;
    use sluice_core::{TableId, TableSchema};

    #[test]
    fn generated_columns_in_created_tables() {
        let same = with_generated(LogicalType::Int32.field("b", true), "postgres", "(a * 2)");
        let other = with_generated(LogicalType::Int64.field("c", true), "mysql", "`a` + 1");
        assert_eq!(
            column_type(&same, "public").unwrap(),
            "integer GENERATED ALWAYS AS ((a * 2)) STORED"
        );
        assert_eq!(column_type(&other, "public").unwrap(), "bigint");
        let sink = PgSink::new(Config::new(), "public".into(), WriteMode::Append, true);
        let plan = TablePlan {
            target: TableId::new(["t"]),
            schema: TableSchema {
                id: TableId::new(["t"]),
                arrow: std::sync::Arc::new(arrow::datatypes::Schema::new(vec![same, other])),
                primary_key: Vec::new(),
            },
            splits: 1,
        };
        let types = sink.target_types(&plan).unwrap().unwrap();
        assert_eq!(
            types[1].1,
            "bigint (generated in mysql: a plain column here)"
        );
    }
}
