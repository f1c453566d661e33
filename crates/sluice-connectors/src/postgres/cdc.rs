//! `read = "cdc"`: change data capture from PostgreSQL's logical replication (pgoutput, over
//! the streaming replication protocol with pgwire-replication; ADR 0011).
//!
//! One split carries the whole job (every table): a replication stream is one ordered log,
//! and a transaction may touch several tables, so its rows are sent as
//! [`SourceEvent::Rows`] of their tables and its commit is a [`SourceEvent::Barrier`] — the
//! engine commits whole source transactions, with their position, in the sink's transaction.
//!
//! ```text
//!  slot (created first: its consistent point C) ─► snapshot: each table's key-range splits,
//!  read in order, rows as op "R", a barrier after every batch (resumable at the batch)
//!  ─► stream from C: Begin … Insert/Update/Delete … Commit(end_lsn) ─► barrier at end_lsn
//! ```
//!
//! **Why the handover is exact.** The slot is created before the snapshot is read, so the
//! stream starts at or before the snapshot's moment; every change after C is applied again
//! over the snapshot's rows, in commit order, as upserts and deletes by key. A change the
//! snapshot already shows is rewritten with the same or an older row and then brought up to
//! date by the changes after it: once the stream has passed the snapshot's moment, the target
//! equals the source. (The target may show a row's older state for a moment during that
//! catch-up; it never ends wrong.) A snapshot interrupted at any point resumes at its last
//! committed batch, in a new snapshot (also after C): the same argument holds.
//!
//! **Acknowledgement.** The slot's `confirmed_flush_lsn` moves only in
//! [`Source::committed`], after the sink committed a transaction's rows and its position; a
//! resume starts the stream at the committed position and drops the transactions at or before
//! it (the slot may be behind the sink after a crash between the two).
//!
//! Positions (JSON): `{"start": C, "snapshot": {"done": [splits], "at": {"split", "value"}},
//! "streaming": true, "lsn": "0/16B3748"}` — `lsn` is the end of the last applied source
//! transaction (or a keepalive's WAL end while the stream was idle).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use serde::{Deserialize, Serialize};
use sluice_core::batch::OP_COLUMN;
use sluice_core::source::{BatchSender, Source, SourceEvent, SourceTable};
use sluice_core::{Error, ErrorKind, Position, Result, Split, TableId};
use tracing::{info, warn};

use super::cdc_text::{ToText, converter};
use super::check;
use super::config::SourcePlan;
use super::copy_decode::RowDecoder;
use super::error::pg_error;
use super::pgoutput::{self, Message, Relation};
use super::source::PgSource;
use super::types::{Dec, quote_ident};
use crate::cdc::{CdcDetail, SnapshotMode, SnapshotProgress, Unacked, read_snapshot};

/// The change-capture options, validated.
#[derive(Debug, Clone)]
pub(crate) struct CdcPlan {
    /// The job's name (labels its metrics).
    pub job: String,
    pub slot: String,
    pub publication: String,
    pub snapshot: SnapshotMode,
}

/// A position of the stream split (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CdcPosition {
    /// The slot's consistent point (or confirmed position) the stream starts from when no
    /// transaction was applied yet.
    start: String,
    #[serde(default)]
    snapshot: SnapshotProgress,
    /// The snapshot is over: positions now are the stream's.
    #[serde(default)]
    streaming: bool,
    /// End of the last applied transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lsn: Option<String>,
    /// When that transaction committed in the source (RFC 3339); absent for an idle
    /// position (a keepalive's WAL end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    committed_at: Option<String>,
}

/// µs between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// One captured table.
struct CdcTable {
    id: TableId,
    /// The schema sent (the table's columns, all nullable, then the operation).
    schema: SchemaRef,
    decs: Vec<Dec>,
    /// Column names, in schema order (without the operation).
    columns: Vec<String>,
    key: Vec<usize>,
    /// Generated columns: not replicated (PostgreSQL 15), sent as NULL (the sink skips them).
    generated: Vec<bool>,
    /// Columns the batch reader selects as `::text`: their binary form is printed as text.
    to_text: Vec<Option<ToText>>,
}

pub(crate) struct PgCdcSource {
    plan: SourcePlan,
    cdc: CdcPlan,
    describe: PgSource,
    tables: std::sync::Mutex<Vec<Arc<CdcTable>>>,
    /// The end of the last transaction the sink committed (0: none yet this run).
    acked: Arc<AtomicU64>,
    /// The transactions sent and not yet committed by the sink (keys: end LSNs).
    unacked: Unacked<u64>,
}

fn lsn_of(s: &str) -> Result<Lsn> {
    Lsn::parse(s).map_err(|e| Error::internal(format!("bad LSN {s:?} in a position: {e}")))
}

fn repl_error(e: pgwire_replication::PgWireError, what: &str) -> Error {
    let text = e.to_string();
    let kind = if text.contains("authentication") || text.contains("password") {
        ErrorKind::Auth
    } else {
        ErrorKind::Connection
    };
    Error::new(kind, format!("{what}: {text}"))
}

impl PgCdcSource {
    pub(crate) fn new(plan: SourcePlan, cdc: CdcPlan) -> Self {
        let unacked = Unacked::new(&cdc.job);
        PgCdcSource {
            describe: PgSource::new(plan.clone()),
            plan,
            cdc,
            tables: Default::default(),
            acked: Arc::new(AtomicU64::new(0)),
            unacked,
        }
    }

    fn captured(&self) -> Vec<Arc<CdcTable>> {
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The replication session's settings, from the source URL.
    fn replication_config(&self, start: Lsn) -> Result<ReplicationConfig> {
        let pg = &self.plan.pg;
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let user = pg.get_user().unwrap_or("postgres").to_string();
        let password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let db = pg.get_dbname().unwrap_or(&user).to_string();
        Ok(ReplicationConfig::new(
            host,
            user,
            password,
            db,
            self.cdc.slot.clone(),
            self.cdc.publication.clone(),
        )
        .with_port(port)
        .with_start_lsn(start)
        .with_ack_lsn(start)
        .with_binary(true)
        .with_status_interval(Duration::from_secs(1))
        .with_application_name("sluice"))
    }

    /// Makes the publication name exactly the captured tables, and the slot exist; returns
    /// the LSN a stream with nothing applied yet starts from.
    async fn ensure_slot(&self, tables: &[String], resume: Option<&CdcPosition>) -> Result<Lsn> {
        let conn = check::connect(&self.plan.pg, "change capture").await?;
        let c = &conn.client;
        let pubname = quote_ident(&self.cdc.publication);
        let list = tables
            .iter()
            .map(|t| TableId::parse(t).map(|id| qualified(&id)))
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        let exists = c
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&self.cdc.publication],
            )
            .await
            .map_err(|e| pg_error(e, "change capture: reading publications"))?
            .is_some();
        let sql = if exists {
            format!("ALTER PUBLICATION {pubname} SET TABLE {list}")
        } else {
            format!("CREATE PUBLICATION {pubname} FOR TABLE {list}")
        };
        c.batch_execute(&sql).await.map_err(|e| {
            pg_error(
                e,
                format!("change capture: publication {}", self.cdc.publication),
            )
        })?;
        let slot = c
            .query_opt(
                "SELECT confirmed_flush_lsn::text, plugin, database, wal_status \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.cdc.slot],
            )
            .await
            .map_err(|e| pg_error(e, "change capture: reading replication slots"))?;
        // A session still holding the slot is a run of this job that died (kill -9, a lost
        // connection) and whose walsender has not noticed yet: this run holds the job's locks,
        // so no live run of the job can own it. End it rather than wait for
        // wal_sender_timeout.
        let ended = c
            .query(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND database = current_database() AND active \
                 AND active_pid IS NOT NULL",
                &[&self.cdc.slot],
            )
            .await
            .map_err(|e| pg_error(e, "change capture: ending a stale replication session"))?;
        if !ended.is_empty() {
            warn!(slot = %self.cdc.slot, "Ended the replication session an earlier run of this job left holding the slot.");
            for _ in 0..50 {
                let busy = c
                    .query_opt(
                        "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                        &[&self.cdc.slot],
                    )
                    .await
                    .map_err(|e| pg_error(e, "change capture: reading replication slots"))?;
                if busy.is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        match (slot, resume) {
            (Some(row), _) => {
                let plugin: Option<String> = row.get(1);
                let slot_db: Option<String> = row.get(2);
                let here = self.plan.pg.get_dbname().unwrap_or_default();
                if slot_db.as_deref() != Some(here) {
                    return Err(Error::config(format!(
                        "replication slot {:?} belongs to database {:?}, not {here:?} (slot names \
                         are server-wide)",
                        self.cdc.slot,
                        slot_db.unwrap_or_default()
                    ))
                    .with_hint("name this job's slot with slot = \"…\" in [source]"));
                }
                let wal: Option<String> = row.get(3);
                if plugin.as_deref() != Some("pgoutput") {
                    return Err(Error::config(format!(
                        "replication slot {:?} exists with plugin {:?}, not pgoutput",
                        self.cdc.slot, plugin
                    ))
                    .with_hint("name another slot with slot = \"…\" in [source], or drop it"));
                }
                if wal.as_deref() == Some("lost") {
                    return Err(Error::config(format!(
                        "replication slot {:?} is invalidated (wal_status = lost): the changes \
                         it held were removed (max_slot_wal_keep_size)",
                        self.cdc.slot
                    ))
                    .with_hint(
                        "drop the slot (SELECT pg_drop_replication_slot('…')) and start the \
                         job from scratch (--from-scratch, or reset its offsets): it snapshots \
                         again",
                    ));
                }
                let confirmed: Option<String> = row.get(0);
                let confirmed = confirmed.unwrap_or_else(|| "0/0".into());
                lsn_of(&confirmed)
            }
            (None, Some(p)) => Err(Error::config(format!(
                "replication slot {:?} is gone, and the job's capture started from it at {}: \
                 the changes since its last checkpoint can no longer be read",
                self.cdc.slot, p.start
            ))
            .with_hint(
                "start the job from scratch (--from-scratch, or reset its offsets): it creates \
                 the slot again and snapshots every table",
            )),
            (None, None) => {
                let slot = &self.cdc.slot;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [slot];
                let create = c.query_one(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                    &params,
                );
                let row = tokio::select! {
                    r = create => r.map_err(|e| slot_error(e, slot))?,
                    _ = tokio::time::sleep(Duration::from_secs(300)) => {
                        return Err(Error::new(ErrorKind::Timeout, format!(
                            "creating replication slot {:?} waited 5 minutes for the \
                             transactions running on the server to end", self.cdc.slot))
                            .with_hint("find them in pg_stat_activity (state 'idle in transaction'), end them, and resume"));
                    }
                };
                let lsn: String = row.get(0);
                info!(slot = %self.cdc.slot, lsn = %lsn, "Created the replication slot.");
                lsn_of(&lsn)
            }
        }
    }
}

fn slot_error(e: tokio_postgres::Error, slot: &str) -> Error {
    let text = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string());
    if text.contains("wal_level") {
        Error::config(format!("creating replication slot {slot:?}: {text}"))
            .with_hint("set wal_level = logical in postgresql.conf and restart PostgreSQL")
    } else if text.contains("max_replication_slots")
        || text.contains("replication slots are in use")
    {
        Error::config(format!("creating replication slot {slot:?}: {text}")).with_hint(
            "raise max_replication_slots in postgresql.conf (restart), or drop an unused slot",
        )
    } else if text.contains("permission") || text.contains("must be superuser or replication") {
        Error::new(
            ErrorKind::Auth,
            format!("creating replication slot {slot:?}: {text}"),
        )
        .with_hint("ALTER ROLE … WITH REPLICATION (and grant SELECT on the tables)")
    } else {
        pg_error(e, format!("creating replication slot {slot:?}"))
    }
}

/// `"schema"."table"`.
fn qualified(id: &TableId) -> String {
    id.parts()
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// Rows of one table waiting for their transaction's commit.
struct Pending {
    table: Arc<CdcTable>,
    rows: RowDecoder,
    ops: Vec<&'static str>,
}

impl Pending {
    fn new(table: Arc<CdcTable>) -> Pending {
        let fields: Vec<Field> = table.schema.fields()[..table.columns.len()]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let rows = RowDecoder::new(Arc::new(Schema::new(fields)), &table.decs);
        Pending {
            table,
            rows,
            ops: Vec::new(),
        }
    }

    /// Sends the pending rows (with their operations) as rows of the table, if there are any.
    async fn send(&mut self, out: &BatchSender) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let data = self.rows.finish()?;
        let ops = std::mem::take(&mut self.ops);
        let mut cols: Vec<ArrayRef> = data.columns().to_vec();
        cols.push(Arc::new(StringArray::from(ops)));
        let data = RecordBatch::try_new(self.table.schema.clone(), cols)?;
        out.send_event(SourceEvent::Rows {
            table: self.table.id.clone(),
            data,
            bytes: 0,
        })
        .await
    }
}

/// A relation as the stream describes it, mapped onto the captured table.
struct RelMap {
    table: Arc<CdcTable>,
    /// For each captured column, its index in the relation's tuples.
    from: Vec<Option<usize>>,
    full: bool,
}

fn map_relation(rel: &Relation, table: &Arc<CdcTable>) -> Result<RelMap> {
    let mut from = Vec::with_capacity(table.columns.len());
    for (i, c) in table.columns.iter().enumerate() {
        let at = rel.columns.iter().position(|r| &r.name == c);
        if at.is_none() && !table.generated[i] {
            return Err(schema_changed(table, &format!("column {c:?} is gone")));
        }
        from.push(at);
    }
    if let Some(extra) = rel
        .columns
        .iter()
        .find(|r| !table.columns.contains(&r.name))
    {
        return Err(schema_changed(
            table,
            &format!("column {:?} was added", extra.name),
        ));
    }
    Ok(RelMap {
        table: table.clone(),
        from,
        full: rel.replica_identity == b'f',
    })
}

fn schema_changed(table: &CdcTable, what: &str) -> Error {
    Error::schema(format!(
        "table {} changed while it was captured ({what}); Sluice does not yet follow schema \
         changes in a stream",
        table.id
    ))
    .with_hint(
        "apply the same change to the target table, then restart the job from scratch (it \
         snapshots again); the stream stopped before the change, so nothing after it was \
         applied",
    )
}

#[async_trait]
impl Source for PgCdcSource {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let described = self.describe.tables().await?;
        let mut out = Vec::new();
        let mut captured = Vec::new();
        for t in described {
            let id = t.schema.id.clone();
            if t.schema.primary_key.is_empty() {
                return Err(Error::config(format!(
                    "table {id} has no primary key: change capture applies updates and deletes \
                     by key"
                ))
                .with_hint("add a primary key to it, or leave it out with exclude = [\"…\"]"));
            }
            let super::source::Described {
                schema,
                decs,
                casts,
            } = self.describe.described(&id)?;
            let mut to_text = Vec::with_capacity(casts.len());
            for (f, c) in schema.fields().iter().zip(&casts) {
                to_text.push(match c {
                    None => None,
                    Some(t) => Some(converter(t).ok_or_else(|| {
                        Error::schema(format!(
                            "column {:?} of table {id} has type {}, which change capture \
                             cannot decode yet",
                            f.name(),
                            t.format
                        ))
                        .with_hint(
                            "leave the table out with exclude = [\"…\"] (copy it in a batch \
                             job), or change the column's type",
                        )
                    })?),
                });
            }
            // Deletes carry only the key: every other column may be NULL in a change.
            let mut fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            let columns: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
            let generated: Vec<bool> = schema
                .fields()
                .iter()
                .map(|f| sluice_core::types::generated_expr(f).is_some())
                .collect();
            let key = t
                .schema
                .primary_key
                .iter()
                .map(|k| columns.iter().position(|c| c == k).unwrap_or(0))
                .collect();
            fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
            let with_op = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
            let mut s = t.schema.clone();
            s.arrow = with_op.clone();
            captured.push(Arc::new(CdcTable {
                id: id.clone(),
                schema: with_op,
                decs,
                columns,
                key,
                generated,
                to_text,
            }));
            out.push(SourceTable {
                schema: s,
                estimated_rows: t.estimated_rows,
                estimated_bytes: t.estimated_bytes,
            });
        }
        *self.tables.lock().unwrap_or_else(|e| e.into_inner()) = captured;
        Ok(out)
    }

    async fn check(&self, tables: &[SourceTable]) -> Result<()> {
        self.describe.check(tables).await?;
        let conn = check::connect(&self.plan.pg, "change capture").await?;
        let row = conn
            .client
            .query_one(
                "SELECT current_setting('wal_level'), \
                 (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), \
                 current_setting('max_replication_slots')::int - \
                   (SELECT count(*) FROM pg_replication_slots)::int, \
                 EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                &[&self.cdc.slot],
            )
            .await
            .map_err(|e| pg_error(e, "change capture: reading the server's settings"))?;
        let (level, may, free, has): (String, Option<bool>, i32, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if level != "logical" {
            return Err(Error::config(format!(
                "change capture needs wal_level = logical; the server has wal_level = {level}"
            ))
            .with_hint("set wal_level = logical in postgresql.conf and restart PostgreSQL"));
        }
        if may != Some(true) {
            return Err(Error::new(
                ErrorKind::Auth,
                "the source's role may not replicate (no REPLICATION attribute)",
            )
            .with_hint("ALTER ROLE <role> WITH REPLICATION"));
        }
        if !has && free <= 0 {
            return Err(Error::config(
                "every replication slot of the server is in use (max_replication_slots)",
            )
            .with_hint("raise max_replication_slots (restart), or drop an unused slot"));
        }
        Ok(())
    }

    async fn splits(&self, table: &SourceTable) -> Result<Vec<Split>> {
        let captured: Vec<TableId> = self.captured().iter().map(|t| t.id.clone()).collect();
        CdcDetail::plan(
            format!("{}#cdc", self.cdc.slot),
            &captured,
            table,
            &self.describe,
            self.cdc.snapshot != SnapshotMode::Never,
        )
        .await
    }

    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let (detail, resume) = CdcDetail::read::<CdcPosition>(&split, resume.as_ref())?;
        let start = self.ensure_slot(&detail.tables, resume.as_ref()).await?;
        let mut pos = resume.unwrap_or_else(|| CdcPosition {
            start: start.to_string(),
            ..Default::default()
        });
        if !pos.streaming {
            if self.cdc.snapshot == SnapshotMode::Never {
                pos.streaming = true;
            } else {
                if !self.snapshot(&split, &detail, &mut pos, &out).await? {
                    return Ok(());
                }
                if self.cdc.snapshot == SnapshotMode::InitialOnly {
                    return Ok(());
                }
            }
        }
        match self.stream(&split, &detail, pos, &out).await {
            Err(e) if e.kind() == ErrorKind::Stopped => Ok(()),
            r => r,
        }
    }

    async fn committed(&self, position: &Position) -> Result<()> {
        if let Ok(p) = serde_json::from_value::<CdcPosition>(position.value.clone())
            && p.streaming
            && let Some(l) = p.lsn
        {
            let lsn = lsn_of(&l)?.as_u64();
            self.acked.fetch_max(lsn, Ordering::SeqCst);
            self.unacked.committed(&lsn, lsn as f64);
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.describe.close().await
    }

    async fn release(&self) -> Result<Option<String>> {
        let conn = check::connect(&self.plan.pg, "change capture").await?;
        let c = &conn.client;
        let slot = c
            .query_opt(
                "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.cdc.slot],
            )
            .await
            .map_err(|e| pg_error(e, "change capture: reading replication slots"))?;
        let mut released = Vec::new();
        if let Some(row) = slot {
            let (active, pid): (bool, Option<i32>) = (row.get(0), row.get(1));
            if active {
                return Err(Error::config(format!(
                    "replication slot {:?} is in use by a replication session (pid {}): a run \
                     of the job is streaming from it",
                    self.cdc.slot,
                    pid.unwrap_or_default()
                ))
                .with_hint("stop the job first (sluice stop, or PUT /connectors/{name}/stop)"));
            }
            c.execute("SELECT pg_drop_replication_slot($1)", &[&self.cdc.slot])
                .await
                .map_err(|e| {
                    pg_error(e, format!("dropping replication slot {:?}", self.cdc.slot))
                })?;
            released.push(format!("replication slot {}", self.cdc.slot));
        }
        let has_publication = c
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&self.cdc.publication],
            )
            .await
            .map_err(|e| pg_error(e, "change capture: reading publications"))?
            .is_some();
        if has_publication {
            c.batch_execute(&format!(
                "DROP PUBLICATION {}",
                quote_ident(&self.cdc.publication)
            ))
            .await
            .map_err(|e| {
                pg_error(
                    e,
                    format!("dropping publication {:?}", self.cdc.publication),
                )
            })?;
            released.push(format!("publication {}", self.cdc.publication));
        }
        Ok((!released.is_empty()).then(|| released.join(" and ")))
    }
}

impl PgCdcSource {
    /// Reads the snapshot's splits not done yet; `Ok(false)` when the job stops meanwhile.
    async fn snapshot(
        &self,
        split: &Split,
        detail: &CdcDetail,
        pos: &mut CdcPosition,
        out: &BatchSender,
    ) -> Result<bool> {
        // A new snapshot, taken now: after the slot's consistent point (see the module docs).
        let reader = PgSource::new(self.plan.clone());
        reader.tables().await?;
        let schemas: HashMap<TableId, SchemaRef> = self
            .captured()
            .into_iter()
            .map(|t| (t.id.clone(), t.schema.clone()))
            .collect();
        let position = |p: &SnapshotProgress| {
            let mut at = pos.clone();
            at.snapshot = p.clone();
            self.position(split, &at)
        };
        let mut progress = pos.snapshot.clone();
        let done = read_snapshot(
            &reader,
            &detail.snapshot,
            &schemas,
            &mut progress,
            out,
            &position,
        )
        .await?;
        pos.snapshot = progress;
        if !done {
            return Ok(false);
        }
        reader.close().await?;
        pos.streaming = true;
        pos.snapshot = SnapshotProgress::default();
        info!("Snapshot done; streaming changes.");
        Ok(out
            .send_event(SourceEvent::Barrier(self.position(split, pos)?))
            .await
            .is_ok())
    }

    fn position(&self, split: &Split, pos: &CdcPosition) -> Result<Position> {
        Ok(Position::new(
            split.id.clone(),
            serde_json::to_value(pos).map_err(|e| Error::internal(format!("position: {e}")))?,
        ))
    }

    /// Streams changes from the committed position until the job stops.
    async fn stream(
        &self,
        split: &Split,
        detail: &CdcDetail,
        mut pos: CdcPosition,
        out: &BatchSender,
    ) -> Result<()> {
        let after = match &pos.lsn {
            Some(l) => lsn_of(l)?,
            None => lsn_of(&pos.start)?,
        };
        let cfg = self.replication_config(after)?;
        let mut repl = ReplicationClient::connect(cfg)
            .await
            .map_err(|e| repl_error(e, "change capture: connecting for replication"))?;
        info!(slot = %self.cdc.slot, from = %after, "Streaming changes.");
        // What an earlier attempt sent and never committed is sent again.
        self.unacked.clear();
        let by_name: HashMap<(String, String), Arc<CdcTable>> = self
            .captured()
            .into_iter()
            .filter_map(|t| {
                let p = t.id.parts();
                (p.len() == 2).then(|| ((p[0].clone(), p[1].clone()), t.clone()))
            })
            .collect();
        let mut rels: HashMap<u32, RelMap> = HashMap::new();
        let mut pending: HashMap<u32, Pending> = HashMap::new();
        let mut in_txn = false;
        let mut skipping = false;
        let mut last = after;
        let mut last_idle = Instant::now();
        let mut watch = SlotWatch {
            capturing: detail
                .tables
                .iter()
                .filter_map(|t| TableId::parse(t).ok())
                .collect(),
            ..Default::default()
        };
        let mut acked_sent = 0u64;
        let mut last_event = Instant::now();
        let batch_size = self.plan.batch_size;
        let stop = out.stop_token().clone();
        loop {
            if watch.due() {
                // A hung server must not hold the stream here (the silence check is below).
                match tokio::time::timeout(Duration::from_secs(5), self.watch_slot(&mut watch))
                    .await
                {
                    Ok(r) => r?,
                    Err(_) => {
                        watch.conn = None;
                        warn!(
                            "Cannot watch the replication slot: the server did not answer within 5 s."
                        );
                    }
                }
            }
            let acked = self.acked.load(Ordering::SeqCst);
            if acked > acked_sent {
                repl.update_applied_lsn(Lsn::from_u64(acked));
                acked_sent = acked;
            }
            let ev = tokio::select! {
                _ = stop.cancelled() => break,
                r = tokio::time::timeout(Duration::from_secs(1), repl.recv()) => match r {
                    // An idle walsender sends a keepalive every wal_sender_timeout / 2 (30 s by
                    // default): a longer silence is a hung server or a cut network.
                    Err(_) if last_event.elapsed() >= SILENCE => {
                        return Err(Error::new(ErrorKind::Connection, format!(
                            "change capture: the server sent nothing, not even a keepalive, for \
                             {} s: it is hung or the network is cut", SILENCE.as_secs()))
                            .with_hint("check the server; the job reconnects and goes on from its \
                                        last checkpoint when it answers"));
                    }
                    Err(_) => continue,
                    Ok(Err(e)) => return Err(repl_error(e, "change capture: reading the stream")),
                    Ok(Ok(None)) => {
                        return Err(Error::new(ErrorKind::Connection, "change capture: the replication stream ended"));
                    }
                    Ok(Ok(Some(ev))) => ev,
                }
            };
            last_event = Instant::now();
            match ev {
                ReplicationEvent::Begin { final_lsn, .. } => {
                    in_txn = true;
                    // Already applied: the commit of a transaction at or before the
                    // committed position comes before it.
                    skipping = final_lsn < after;
                }
                ReplicationEvent::XLogData { data, .. } => {
                    self.on_change(
                        data,
                        skipping,
                        &by_name,
                        &mut rels,
                        &mut pending,
                        batch_size,
                        out,
                    )
                    .await?;
                }
                ReplicationEvent::Commit {
                    end_lsn,
                    commit_time_micros,
                    ..
                } => {
                    in_txn = false;
                    if skipping {
                        continue;
                    }
                    flush(&mut pending, out).await?;
                    last = end_lsn;
                    pos.lsn = Some(end_lsn.to_string());
                    let at = commit_time_micros.saturating_add(PG_EPOCH_US);
                    pos.committed_at = chrono::DateTime::from_timestamp_micros(at)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
                    self.unacked.sent(end_lsn.as_u64(), at);
                    out.send_event(SourceEvent::Barrier(self.position(split, &pos)?))
                        .await?;
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    // Idle: nothing of ours is in flight, so the position may move to the
                    // server's WAL end and the slot stop pinning WAL others write.
                    if !in_txn && wal_end > last && last_idle.elapsed() >= Duration::from_secs(1) {
                        last = wal_end;
                        last_idle = Instant::now();
                        pos.lsn = Some(wal_end.to_string());
                        pos.committed_at = None;
                        out.send_event(SourceEvent::Barrier(self.position(split, &pos)?))
                            .await?;
                    }
                }
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => break,
            }
        }
        let _ = repl.shutdown().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_change(
        &self,
        data: Bytes,
        skipping: bool,
        by_name: &HashMap<(String, String), Arc<CdcTable>>,
        rels: &mut HashMap<u32, RelMap>,
        pending: &mut HashMap<u32, Pending>,
        batch_size: usize,
        out: &BatchSender,
    ) -> Result<()> {
        let msg = pgoutput::decode(data).map_err(Error::internal)?;
        let (rel, rows): (u32, Vec<(&'static str, Vec<pgoutput::Value>)>) = match msg {
            Message::Relation(r) => {
                let key = (r.namespace.clone(), r.name.clone());
                let Some(t) = by_name.get(&key) else {
                    warn!(table = %format!("{}.{}", r.namespace, r.name), "A table not captured by this job is in its publication; its changes are ignored.");
                    return Ok(());
                };
                // Rows pending in the old shape go first.
                if let Some(p) = pending.get_mut(&r.oid) {
                    p.send(out).await?;
                }
                rels.insert(r.oid, map_relation(&r, t)?);
                return Ok(());
            }
            _ if skipping => return Ok(()),
            Message::Insert { rel, new } => (rel, vec![("I", new)]),
            Message::Update { rel, old, new } => {
                let Some(m) = rels.get(&rel) else {
                    return Ok(());
                };
                let mut new = new;
                // Unchanged TOAST values: only an old row under REPLICA IDENTITY FULL has them.
                for i in 0..new.len() {
                    if new[i] == pgoutput::Value::Unchanged {
                        match old.as_ref().map(|o| &o[i]) {
                            Some(v) if m.full && *v != pgoutput::Value::Unchanged => new[i] = v.clone(),
                            _ => return Err(Error::schema(format!(
                                "an update of table {} left a large (TOASTed) value unchanged, \
                                 and PostgreSQL does not send such values unless the table's \
                                 replica identity is FULL", m.table.id))
                                .with_hint(format!("ALTER TABLE {} REPLICA IDENTITY FULL, then restart the job from scratch", qualified(&m.table.id)))),
                        }
                    }
                }
                let mut rows = Vec::new();
                // A changed key: the old key is deleted.
                if let Some(o) = old
                    && m.table
                        .key
                        .iter()
                        .any(|&k| m.from[k].is_some_and(|i| o[i] != new[i]))
                {
                    rows.push(("D", o));
                }
                rows.push(("U", new));
                (rel, rows)
            }
            Message::Delete { rel, old } => (rel, vec![("D", old)]),
            Message::Truncate {
                rels: truncated, ..
            } => {
                // Rows sent before it land first; then each captured table empties, in the
                // same sink transaction as the rest of the source transaction.
                flush(pending, out).await?;
                for o in &truncated {
                    if let Some(m) = rels.get(o) {
                        out.send_event(SourceEvent::Truncate(m.table.id.clone()))
                            .await?;
                    }
                }
                return Ok(());
            }
            Message::Other(_) => return Ok(()),
        };
        let Some(m) = rels.get(&rel) else {
            return Err(Error::internal(format!(
                "a change of relation {rel} arrived before its description"
            )));
        };
        let p = pending
            .entry(rel)
            .or_insert_with(|| Pending::new(m.table.clone()));
        for (op, tuple) in rows {
            let mut printed: Vec<Option<String>> = vec![None; m.from.len()];
            for (i, at) in m.from.iter().enumerate() {
                if let (Some(conv), Some(pgoutput::Value::Binary(b))) =
                    (m.table.to_text[i], at.map(|j| &tuple[j]))
                {
                    printed[i] = Some(conv(b).map_err(|msg| {
                        Error::data(format!(
                            "table {}, column {}: {msg}",
                            m.table.id, m.table.columns[i]
                        ))
                    })?);
                }
            }
            let values: Vec<Option<&[u8]>> = m
                .from
                .iter()
                .enumerate()
                .map(|(i, at)| match (&printed[i], at.map(|j| &tuple[j])) {
                    (Some(s), _) => Some(s.as_bytes()),
                    (None, Some(pgoutput::Value::Binary(b)))
                    | (None, Some(pgoutput::Value::Text(b))) => Some(&b[..]),
                    _ => None,
                })
                .collect();
            p.rows.push(&values).map_err(|(i, msg)| {
                Error::data(format!(
                    "table {}, column {}: {msg}",
                    m.table.id, m.table.columns[i]
                ))
            })?;
            p.ops.push(op);
        }
        if p.rows.len() >= batch_size {
            p.send(out).await?;
        }
        Ok(())
    }
}

/// How long the stream may stay silent before the connection counts as dead: longer than
/// the walsender's keepalive interval (`wal_sender_timeout / 2`, 30 s by default).
const SILENCE: Duration = Duration::from_secs(90);

/// How often the slot's retained WAL is looked at while streaming.
const WATCH_EVERY: Duration = Duration::from_secs(10);
/// Retained WAL above which an unbounded slot (`max_slot_wal_keep_size = -1`) is warned of.
const RETAINED_WARN_BYTES: i64 = 1 << 30;

/// The slot watch: a connection of its own, opened when first needed.
#[derive(Default)]
struct SlotWatch {
    conn: Option<check::Conn>,
    last: Option<Instant>,
    warned: Option<String>,
    /// The tables in the capture (its publication).
    capturing: std::collections::HashSet<TableId>,
    /// Tables matching the job's `tables` that it does not capture, already warned of.
    uncaptured: std::collections::HashSet<TableId>,
}

impl SlotWatch {
    fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= WATCH_EVERY)
    }
}

impl PgCdcSource {
    /// Reads how much WAL the slot holds back and whether the server keeps it: a metric, a
    /// warning when the WAL it needs is about to be removed (`wal_status = unreserved`) or grows
    /// without a bound, and an error once it is gone (`lost`). A failure to look is logged,
    /// never fatal (the stream itself reports a broken server).
    async fn watch_slot(&self, w: &mut SlotWatch) -> Result<()> {
        w.last = Some(Instant::now());
        if w.conn.is_none() {
            match check::connect(&self.plan.pg, "watching the replication slot").await {
                Ok(c) => w.conn = Some(c),
                Err(e) => {
                    warn!(error = %e, "Cannot watch the replication slot's retained WAL.");
                    return Ok(());
                }
            }
        }
        let c = &w.conn.as_ref().expect("set above").client;
        let row = match c
            .query_opt(
                "SELECT wal_status, (pg_current_wal_lsn() - restart_lsn)::bigint, \
                 safe_wal_size, current_setting('max_slot_wal_keep_size') \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.cdc.slot],
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                w.conn = None;
                warn!(error = %e, "Cannot watch the replication slot's retained WAL.");
                return Ok(());
            }
        };
        // A table created since the capture started matches `tables` but is not in the
        // publication: never silent.
        if let Ok((_, selected)) = super::source::select_tables(c, &self.plan).await {
            for (r, _) in selected {
                if matches!(r.kind, 'r' | 'p')
                    && !w.capturing.contains(&r.id)
                    && w.uncaptured.insert(r.id.clone())
                {
                    warn!(
                        table = %r.id,
                        "A table created since this capture started matches the job's `tables`, \
                         and the capture does not include it: its rows and changes are NOT \
                         copied. Start the job from scratch to include it, or capture it in a \
                         job of its own."
                    );
                }
            }
        }
        let Some(row) = row else { return Ok(()) };
        let (status, retained, safe, keep): (Option<String>, Option<i64>, Option<i64>, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let retained = retained.unwrap_or(0);
        metrics::gauge!(
            sluice_core::metrics::REPLICATION_RETAINED_BYTES,
            sluice_core::metrics::labels::JOB => self.cdc.job.clone()
        )
        .set(retained as f64);
        let status = status.unwrap_or_default();
        if status == "lost" {
            return Err(Error::config(format!(
                "replication slot {:?} was invalidated (wal_status = lost): PostgreSQL removed \
                 WAL the job still needed (max_slot_wal_keep_size = {keep})",
                self.cdc.slot
            ))
            .with_hint(
                "start the job from scratch (it snapshots again); raise max_slot_wal_keep_size, \
                 or keep the job from falling that far behind",
            ));
        }
        let concern = if status == "unreserved" {
            Some(format!(
                "the slot holds {} MB of WAL beyond max_slot_wal_keep_size ({keep}); PostgreSQL \
                 removes it at its next checkpoint unless the job catches up (safe: {} MB)",
                retained >> 20,
                safe.unwrap_or(0) >> 20
            ))
        } else if keep == "-1" && retained > RETAINED_WARN_BYTES {
            Some(format!(
                "the slot holds {} MB of WAL and max_slot_wal_keep_size is unlimited: the \
                 server's disk fills while the job lags or is stopped",
                retained >> 20
            ))
        } else {
            None
        };
        if concern != w.warned {
            if let Some(c) = &concern {
                warn!(slot = %self.cdc.slot, "{c}");
            }
            w.warned = concern;
        }
        Ok(())
    }
}

/// Sends every table's pending rows.
async fn flush(pending: &mut HashMap<u32, Pending>, out: &BatchSender) -> Result<()> {
    for p in pending.values_mut() {
        p.send(out).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positions_keep_their_persisted_form() {
        let p = CdcPosition {
            start: "0/16B3748".into(),
            snapshot: SnapshotProgress {
                done: vec!["public.t#0".into()],
                at: Some(("public.t#1".into(), json!({"last_key": 7}))),
            },
            streaming: false,
            lsn: None,
            committed_at: None,
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            json!({"start": "0/16B3748", "snapshot": {"done": ["public.t#0"], "at": ["public.t#1", {"last_key": 7}]}, "streaming": false})
        );
        assert_eq!(serde_json::from_value::<CdcPosition>(v).unwrap(), p);
    }
}
