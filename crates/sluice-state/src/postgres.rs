//! The shared state store: a schema of its own (`sluice` by default, `?schema=name` in the
//! URL changes it) in a PostgreSQL database, for stores that several processes or machines
//! use (`--state postgres://…`).
//!
//! The tables mirror the SQLite store's (see the crate docs), with PostgreSQL types; times
//! are RFC 3339 text as in the SQLite store, so both report alike. Migrations are numbered
//! and recorded in `<schema>.schema_version`; [`PgStore::open`] applies the missing ones in
//! one transaction under an advisory lock, so processes opening the store at once migrate
//! it once. Calls share one connection, re-established when it broke.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sluice_core::naming::{LOCK_WAIT, LockScope, lock_key};
use sluice_core::{Error, ErrorKind, Result};
use tokio_postgres::{Client, Config, NoTls};

use crate::{
    AuditEntry, ConnectorRecord, GenerationInfo, JobLock, Lease, RunRecord, RunTable, RunUpdate,
    SplitRecord, StateStore, TargetState, TokenRecord, WorkerRecord, connector_record, now,
    token_taken,
};

/// The schema, one migration per version (index 0 makes version 1). `{s}` is the schema.
/// Never edit a released migration: add one.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE {s}.jobs (
        name text PRIMARY KEY, created_at text NOT NULL, generation text,
        generation_finished boolean NOT NULL DEFAULT false);
    CREATE TABLE {s}.positions (
        job text NOT NULL, split text NOT NULL, generation text NOT NULL,
        table_name text NOT NULL, position text NOT NULL, done boolean NOT NULL,
        rows bigint NOT NULL, updated_at text NOT NULL, PRIMARY KEY (job, split));
    CREATE TABLE {s}.runs (
        id bigserial PRIMARY KEY, job text NOT NULL REFERENCES {s}.jobs(name),
        started_at text NOT NULL, ended_at text, state text NOT NULL, pid bigint NOT NULL,
        rows_written bigint NOT NULL DEFAULT 0, bytes_read bigint NOT NULL DEFAULT 0,
        error text, generation text, rows_earlier bigint NOT NULL DEFAULT 0, updated_at text);
    CREATE INDEX runs_job ON {s}.runs (job, id);
    CREATE TABLE {s}.run_tables (
        run_id bigint NOT NULL REFERENCES {s}.runs(id), table_name text NOT NULL,
        target text NOT NULL, rows_read bigint NOT NULL, rows_written bigint NOT NULL,
        splits_done bigint NOT NULL, splits_total bigint NOT NULL, complete boolean NOT NULL,
        rows_written_earlier bigint NOT NULL DEFAULT 0, PRIMARY KEY (run_id, table_name));
    CREATE TABLE {s}.generations (
        job text NOT NULL, generation text NOT NULL, started_at text NOT NULL,
        finished_at text, manifest text, PRIMARY KEY (job, generation));
",
    "
    ALTER TABLE {s}.runs ADD COLUMN host text NOT NULL DEFAULT '';
    CREATE TABLE {s}.audit (
        id bigserial PRIMARY KEY, at text NOT NULL, job text NOT NULL, actor text NOT NULL,
        action text NOT NULL, detail text NOT NULL);
    CREATE INDEX audit_job ON {s}.audit (job, id);
    CREATE TABLE {s}.leases (
        resource text PRIMARY KEY, holder text NOT NULL, token bigint NOT NULL,
        expires_at bigint NOT NULL);
    CREATE TABLE {s}.workers (
        id text PRIMARY KEY, address text NOT NULL, started_at text NOT NULL,
        heartbeat_at bigint NOT NULL);
",
    "
    CREATE TABLE {s}.connectors (
        name text PRIMARY KEY, config text NOT NULL, target_state text NOT NULL,
        reset_pending boolean NOT NULL DEFAULT false, created_at text NOT NULL,
        updated_at text NOT NULL);
    CREATE TABLE {s}.tokens (
        id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, role text NOT NULL,
        hash text NOT NULL UNIQUE, created_at text NOT NULL);
",
];

/// The store's clock in SQL: milliseconds since the Unix epoch by the server's clock, so
/// workers on machines whose clocks disagree agree on when a lease lapses.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

fn lease_row(r: &tokio_postgres::Row) -> Lease {
    Lease {
        resource: r.get(0),
        holder: r.get(1),
        token: r.get(2),
        expires_at_ms: r.get(3),
    }
}

/// The columns [`connector_row`] reads.
const CONNECTOR_COLUMNS: &str = "name, config, target_state, reset_pending, created_at, updated_at";

fn connector_row(r: &tokio_postgres::Row) -> Result<ConnectorRecord> {
    connector_record(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

fn token_row(r: &tokio_postgres::Row) -> TokenRecord {
    TokenRecord {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        created_at: r.get(3),
    }
}

/// A client and its connection task; dropping it closes the connection.
struct Conn {
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The shared store. See the module docs.
pub struct PgStore {
    cfg: Config,
    /// The schema, quoted.
    schema: String,
    /// Where it is, for messages (no credentials).
    shown: String,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

fn pg_err(what: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |e| {
        let transient = e.as_db_error().is_none();
        let kind = if transient {
            ErrorKind::Connection
        } else {
            ErrorKind::Io
        };
        let detail = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        Error::new(kind, format!("state store: {what}: {detail}")).with_hint(
            "check that the PostgreSQL server of --state is reachable and that its user may \
             create tables in the store's schema",
        )
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn connect(cfg: &Config, shown: &str) -> Result<Conn> {
    let mut cfg = cfg.clone();
    cfg.application_name("sluice state");
    let limit = cfg
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(10));
    let connected = tokio::time::timeout(limit, cfg.connect(NoTls))
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Connection,
                format!(
                    "state store {shown}: the server did not complete the connection within {} s",
                    limit.as_secs()
                ),
            )
        })?;
    let (client, conn) = connected.map_err(|e| {
        let mut err = pg_err("connecting")(e);
        if err.kind() == ErrorKind::Io {
            err = Error::new(ErrorKind::Config, err.message().to_string())
                .with_hint("check the user, password and database of --state");
        }
        err.context(shown)
    })?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    // Notices ("schema already exists, skipping") are not worth a log line each.
    let _ = client
        .batch_execute("SET client_min_messages = warning")
        .await;
    Ok(Conn { client, task })
}

impl PgStore {
    /// Connects to the store at `url` and migrates its schema.
    pub async fn open(url: &str) -> Result<PgStore> {
        let (url, schema) = split_schema(url);
        let cfg = Config::from_str(&url).map_err(|e| {
            Error::config(format!(
                "--state {:?} is not a PostgreSQL URL: {e}",
                sluice_core::config::redact(&url)
            ))
            .with_hint("e.g. --state postgres://sluice@db.internal:5432/ops")
        })?;
        let host = cfg
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let shown = format!(
            "postgres://{host}:{}/{} (schema {schema})",
            cfg.get_ports().first().copied().unwrap_or(5432),
            cfg.get_dbname().unwrap_or("")
        );
        let store = PgStore {
            cfg,
            schema: quote_ident(&schema),
            shown,
            conn: tokio::sync::Mutex::new(None),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The shared connection, re-established if it broke.
    async fn client(&self) -> Result<tokio::sync::MappedMutexGuard<'_, Client>> {
        let mut g = self.conn.lock().await;
        if g.as_ref().is_none_or(|c| c.client.is_closed()) {
            *g = Some(connect(&self.cfg, &self.shown).await?);
        }
        Ok(tokio::sync::MutexGuard::map(g, |c| {
            &mut c.as_mut().expect("connected above").client
        }))
    }

    fn sql(&self, text: &str) -> String {
        text.replace("{s}", &self.schema).replace("{now}", NOW_MS)
    }

    async fn migrate(&self) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("starting a migration"))?;
        let (key, _) = lock_key(LockScope::Job, "state", &self.schema);
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .await
            .map_err(pg_err("locking the schema for migration"))?;
        tx.batch_execute(&self.sql(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.schema_version (version int NOT NULL);",
        ))
        .await
        .map_err(pg_err("creating the schema"))?;
        let version: i32 = tx
            .query_opt(
                &self.sql("SELECT max(version) FROM {s}.schema_version"),
                &[],
            )
            .await
            .map_err(pg_err("reading the schema version"))?
            .and_then(|r| r.get::<_, Option<i32>>(0))
            .unwrap_or(0);
        if version as usize > MIGRATIONS.len() {
            return Err(Error::config(format!(
                "the state store {} was written by a newer Sluice (schema version {version}, this \
                 one knows up to {})",
                self.shown,
                MIGRATIONS.len()
            ))
            .with_hint("run the newer sluice, or give this one another schema (?schema=…)"));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(&self.sql(m))
                .await
                .map_err(pg_err("migrating the schema"))?;
            tx.execute(
                &self.sql("INSERT INTO {s}.schema_version VALUES ($1)"),
                &[&(i as i32 + 1)],
            )
            .await
            .map_err(pg_err("migrating the schema"))?;
        }
        tx.commit().await.map_err(pg_err("migrating the schema"))
    }

    async fn write_run(&self, run: i64, u: &RunUpdate, end: bool) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg_err("recording a run"))?;
        let t = now();
        let ended = end.then_some(t.clone());
        // A progress update never overwrites a run's end (it may arrive late).
        let changed = tx
            .execute(
                &self.sql(
                    "UPDATE {s}.runs SET ended_at = $2, state = $3, rows_written = $4,
                        bytes_read = $5, error = $6, rows_earlier = $7, updated_at = $8,
                        generation = CASE WHEN $9 = '' THEN generation ELSE $9 END
                     WHERE id = $1 AND ($2::text IS NOT NULL OR ended_at IS NULL)",
                ),
                &[
                    &run,
                    &ended,
                    &u.state,
                    &(u.rows_written as i64),
                    &(u.bytes_read as i64),
                    &u.error,
                    &(u.rows_earlier as i64),
                    &t,
                    &u.generation,
                ],
            )
            .await
            .map_err(pg_err("recording a run"))?;
        if changed > 0 {
            for r in &u.tables {
                tx.execute(
                    &self.sql(
                        "INSERT INTO {s}.run_tables VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (run_id, table_name) DO UPDATE SET target = $3,
                           rows_read = $4, rows_written = $5, splits_done = $6,
                           splits_total = $7, complete = $8, rows_written_earlier = $9",
                    ),
                    &[
                        &run,
                        &r.table,
                        &r.target,
                        &(r.rows_read as i64),
                        &(r.rows_written as i64),
                        &(r.splits_done as i64),
                        &(r.splits_total as i64),
                        &r.complete,
                        &(r.rows_written_earlier as i64),
                    ],
                )
                .await
                .map_err(pg_err("recording a run"))?;
            }
        }
        tx.commit().await.map_err(pg_err("recording a run"))
    }
}

impl PgStore {
    /// Sets one column of the hosted job `name` (and its `updated_at`); false if there is none.
    async fn update_connector(
        &self,
        name: &str,
        column: &str,
        value: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                &self.sql(&format!(
                    "UPDATE {{s}}.connectors SET {column} = $2, updated_at = $3 WHERE name = $1"
                )),
                &[&name, value, &now()],
            )
            .await
            .map_err(pg_err("updating a hosted job"))?;
        Ok(n > 0)
    }
}

/// `postgres://…?schema=ops&x=y` → (`postgres://…?x=y`, `ops`); the default schema is
/// `sluice`.
fn split_schema(url: &str) -> (String, String) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), "sluice".to_string());
    };
    let mut schema = "sluice".to_string();
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(s) => {
                schema = s.to_string();
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

/// The advisory lock of one job, held by a connection of its own.
struct PgJobLock {
    _conn: Conn,
}

#[async_trait]
impl StateStore for PgStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn lock_job(&self, job: &str) -> Result<JobLock> {
        let conn = connect(&self.cfg, &self.shown).await?;
        let (key, _) = lock_key(LockScope::Job, &format!("state:{}", self.schema), job);
        let started = std::time::Instant::now();
        loop {
            let got: bool = conn
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(pg_err("taking the job's lock"))?
                .get(0);
            if got {
                return Ok(Box::new(PgJobLock { _conn: conn }));
            }
            if started.elapsed() >= LOCK_WAIT {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "job {job:?} is already running against the state store {}",
                        self.shown
                    ),
                )
                .with_hint(format!(
                    "stop it with `sluice stop {job}`, or wait for it to end"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn begin_run(&self, job: &str, generation: &str, pid: u32) -> Result<i64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg_err("recording a run"))?;
        let t = now();
        tx.execute(
            &self.sql(
                "INSERT INTO {s}.jobs (name, created_at) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
            ),
            &[&job, &t],
        )
        .await
        .map_err(pg_err("recording a run"))?;
        let id: i64 = tx
            .query_one(
                &self.sql(
                    "INSERT INTO {s}.runs (job, started_at, state, pid, generation, updated_at,
                        host)
                     VALUES ($1, $2, 'RUNNING', $3, $4, $2, $5) RETURNING id",
                ),
                &[&job, &t, &i64::from(pid), &generation, &crate::host_name()],
            )
            .await
            .map_err(pg_err("recording a run"))?
            .get(0);
        tx.commit().await.map_err(pg_err("recording a run"))?;
        Ok(id)
    }

    async fn update_run(&self, run: i64, progress: &RunUpdate) -> Result<()> {
        self.write_run(run, progress, false).await
    }

    async fn end_run(&self, run: i64, end: &RunUpdate) -> Result<()> {
        self.write_run(run, end, true).await
    }

    async fn jobs(&self) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = c
            .query(&self.sql("SELECT name FROM {s}.jobs ORDER BY name"), &[])
            .await
            .map_err(pg_err("listing jobs"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &self.sql(
                    "SELECT id, job, started_at, ended_at, state, pid, rows_written, bytes_read,
                            error, coalesce(generation, ''), rows_earlier, updated_at, host
                     FROM {s}.runs WHERE job = $1 ORDER BY id DESC LIMIT $2",
                ),
                &[&job, &(limit as i64)],
            )
            .await
            .map_err(pg_err("reading runs"))?;
        Ok(rows
            .iter()
            .map(|r| RunRecord {
                id: r.get(0),
                job: r.get(1),
                started_at: r.get(2),
                ended_at: r.get(3),
                state: r.get(4),
                pid: r.get::<_, i64>(5) as u32,
                rows_written: r.get::<_, i64>(6) as u64,
                bytes_read: r.get::<_, i64>(7) as u64,
                error: r.get(8),
                generation: r.get(9),
                rows_earlier: r.get::<_, i64>(10) as u64,
                updated_at: r.get(11),
                host: r.get(12),
            })
            .collect())
    }

    async fn run_tables(&self, run: i64) -> Result<Vec<RunTable>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &self.sql(
                    "SELECT table_name, target, rows_read, rows_written, splits_done,
                            splits_total, complete, rows_written_earlier
                     FROM {s}.run_tables WHERE run_id = $1 ORDER BY table_name",
                ),
                &[&run],
            )
            .await
            .map_err(pg_err("reading a run's tables"))?;
        Ok(rows
            .iter()
            .map(|r| RunTable {
                table: r.get(0),
                target: r.get(1),
                rows_read: r.get::<_, i64>(2) as u64,
                rows_written: r.get::<_, i64>(3) as u64,
                splits_done: r.get::<_, i64>(4) as u64,
                splits_total: r.get::<_, i64>(5) as u64,
                complete: r.get(6),
                rows_written_earlier: r.get::<_, i64>(7) as u64,
            })
            .collect())
    }

    async fn generation(&self, job: &str) -> Result<Option<GenerationInfo>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &self.sql(
                    "SELECT j.generation, j.generation_finished, g.manifest FROM {s}.jobs j
                     LEFT JOIN {s}.generations g
                       ON g.job = j.name AND g.generation = j.generation
                     WHERE j.name = $1",
                ),
                &[&job],
            )
            .await
            .map_err(pg_err("reading the job's generation"))?;
        let Some(r) = row else { return Ok(None) };
        let Some(id) = r.get::<_, Option<String>>(0) else {
            return Ok(None);
        };
        let manifest = match r.get::<_, Option<String>>(2) {
            Some(m) => Some(serde_json::from_str(&m).map_err(|e| {
                Error::internal(format!(
                    "state store: unreadable manifest of generation {id}: {e}"
                ))
                .with_hint("run the job with --from-scratch")
            })?),
            None => None,
        };
        Ok(Some(GenerationInfo {
            id,
            finished: r.get(1),
            manifest,
        }))
    }

    async fn start_generation(
        &self,
        job: &str,
        generation: &str,
        manifest: &serde_json::Value,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("starting a generation"))?;
        let t = now();
        tx.execute(
            &self.sql(
                "INSERT INTO {s}.jobs (name, created_at, generation, generation_finished)
                 VALUES ($1, $2, $3, false)
                 ON CONFLICT (name) DO UPDATE SET generation = $3, generation_finished = false",
            ),
            &[&job, &t, &generation],
        )
        .await
        .map_err(pg_err("starting a generation"))?;
        tx.execute(
            &self.sql(
                "INSERT INTO {s}.generations (job, generation, started_at, manifest)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (job, generation) DO UPDATE SET manifest = $4, finished_at = NULL",
            ),
            &[&job, &generation, &t, &manifest.to_string()],
        )
        .await
        .map_err(pg_err("starting a generation"))?;
        tx.execute(
            &self.sql("DELETE FROM {s}.positions WHERE job = $1 AND generation <> $2"),
            &[&job, &generation],
        )
        .await
        .map_err(pg_err("starting a generation"))?;
        tx.commit().await.map_err(pg_err("starting a generation"))
    }

    async fn finish_generation(&self, job: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg_err("finishing a generation"))?;
        tx.execute(
            &self.sql("UPDATE {s}.jobs SET generation_finished = true WHERE name = $1"),
            &[&job],
        )
        .await
        .map_err(pg_err("finishing a generation"))?;
        tx.execute(
            &self.sql(
                "UPDATE {s}.generations SET finished_at = $2 WHERE job = $1
                   AND generation = (SELECT generation FROM {s}.jobs WHERE name = $1)",
            ),
            &[&job, &now()],
        )
        .await
        .map_err(pg_err("finishing a generation"))?;
        tx.commit().await.map_err(pg_err("finishing a generation"))
    }

    async fn save_position(&self, job: &str, generation: &str, rec: &SplitRecord) -> Result<()> {
        let pos = serde_json::to_string(&rec.position)
            .map_err(|e| Error::internal(format!("position not serializable: {e}")))?;
        let c = self.client().await?;
        c.execute(
            &self.sql(
                "INSERT INTO {s}.positions VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (job, split) DO UPDATE SET generation = $3, table_name = $4,
                   position = $5, done = $6, rows = $7, updated_at = $8",
            ),
            &[
                &job,
                &rec.split,
                &generation,
                &rec.table,
                &pos,
                &rec.position.done,
                &(rec.rows as i64),
                &now(),
            ],
        )
        .await
        .map_err(pg_err("recording a position"))?;
        Ok(())
    }

    async fn forget_position(&self, job: &str, generation: &str, split: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            &self
                .sql("DELETE FROM {s}.positions WHERE job = $1 AND generation = $2 AND split = $3"),
            &[&job, &generation, &split],
        )
        .await
        .map_err(pg_err("forgetting a position"))?;
        Ok(())
    }

    async fn positions(&self, job: &str, generation: &str) -> Result<Vec<SplitRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &self.sql(
                    "SELECT split, table_name, position, rows, updated_at FROM {s}.positions
                     WHERE job = $1 AND generation = $2 ORDER BY table_name, split",
                ),
                &[&job, &generation],
            )
            .await
            .map_err(pg_err("reading positions"))?;
        rows.iter()
            .map(|r| {
                let split: String = r.get(0);
                let position = serde_json::from_str(r.get::<_, &str>(2)).map_err(|e| {
                    Error::internal(format!(
                        "state store: unreadable position of split {split}: {e}"
                    ))
                    .with_hint("run the job with --from-scratch")
                })?;
                Ok(SplitRecord {
                    split,
                    table: r.get(1),
                    position,
                    rows: r.get::<_, i64>(3) as u64,
                    updated_at: r.get(4),
                })
            })
            .collect()
    }

    async fn record_audit(&self, e: &AuditEntry) -> Result<i64> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &self.sql(
                    "INSERT INTO {s}.audit (at, job, actor, action, detail)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                ),
                &[&now(), &e.job, &e.actor, &e.action, &e.detail],
            )
            .await
            .map_err(pg_err("recording an audit entry"))?;
        Ok(row.get(0))
    }

    async fn audit(&self, job: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &self.sql(
                    "SELECT id, at, job, actor, action, detail FROM {s}.audit
                     WHERE $1::text IS NULL OR job = $1 ORDER BY id DESC LIMIT $2",
                ),
                &[&job, &(limit as i64)],
            )
            .await
            .map_err(pg_err("reading the audit log"))?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at: r.get(1),
                job: r.get(2),
                actor: r.get(3),
                action: r.get(4),
                detail: r.get(5),
            })
            .collect())
    }

    async fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let c = self.client().await?;
        // The token stays only when the same holder extends a lease that is still running.
        // The row lock the upsert takes orders concurrent acquirers: one wins, the others
        // see its running lease.
        let row = c
            .query_opt(
                &self.sql(
                    "INSERT INTO {s}.leases AS l (resource, holder, token, expires_at)
                     VALUES ($1, $2, 1, {now} + $3)
                     ON CONFLICT (resource) DO UPDATE SET
                       token = CASE WHEN l.holder = excluded.holder AND l.expires_at > {now}
                                    THEN l.token ELSE l.token + 1 END,
                       holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE l.holder = excluded.holder OR l.expires_at <= {now}
                     RETURNING resource, holder, token, expires_at",
                ),
                &[&resource, &holder, &ttl_ms(ttl)],
            )
            .await
            .map_err(pg_err("taking a lease"))?;
        Ok(row.as_ref().map(lease_row))
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &self.sql(
                    "UPDATE {s}.leases SET expires_at = {now} + $4
                     WHERE resource = $1 AND holder = $2 AND token = $3 AND expires_at > {now}
                     RETURNING resource, holder, token, expires_at",
                ),
                &[&lease.resource, &lease.holder, &lease.token, &ttl_ms(ttl)],
            )
            .await
            .map_err(pg_err("renewing a lease"))?;
        Ok(row.as_ref().map(lease_row))
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let c = self.client().await?;
        // Kept, lapsed, so the next holder's token is greater.
        c.execute(
            &self.sql(
                "UPDATE {s}.leases SET expires_at = {now}
                 WHERE resource = $1 AND holder = $2 AND token = $3 AND expires_at > {now}",
            ),
            &[&lease.resource, &lease.holder, &lease.token],
        )
        .await
        .map_err(pg_err("giving a lease back"))?;
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &self.sql(
                    "SELECT resource, holder, token, expires_at FROM {s}.leases ORDER BY resource",
                ),
                &[],
            )
            .await
            .map_err(pg_err("reading leases"))?;
        Ok(rows.iter().map(lease_row).collect())
    }

    async fn heartbeat(&self, id: &str, address: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            &self.sql(
                "INSERT INTO {s}.workers (id, address, started_at, heartbeat_at)
                 VALUES ($1, $2, $3, {now})
                 ON CONFLICT (id) DO UPDATE SET address = $2, heartbeat_at = {now}",
            ),
            &[&id, &address, &now()],
        )
        .await
        .map_err(pg_err("recording a heartbeat"))?;
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &self.sql(
                    "SELECT id, address, started_at, heartbeat_at, {now} - heartbeat_at
                     FROM {s}.workers ORDER BY id",
                ),
                &[],
            )
            .await
            .map_err(pg_err("reading workers"))?;
        Ok(rows
            .iter()
            .map(|r| WorkerRecord {
                id: r.get(0),
                address: r.get(1),
                started_at: r.get(2),
                heartbeat_at_ms: r.get(3),
                heartbeat_age_ms: r.get(4),
            })
            .collect())
    }

    async fn create_connector(
        &self,
        name: &str,
        config: &serde_json::Value,
        target: TargetState,
    ) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                &self.sql(
                    "INSERT INTO {s}.connectors (name, config, target_state, reset_pending,
                        created_at, updated_at) VALUES ($1, $2, $3, false, $4, $4)
                     ON CONFLICT (name) DO NOTHING",
                ),
                &[&name, &config.to_string(), &target.as_str(), &now()],
            )
            .await
            .map_err(pg_err("creating a hosted job"))?;
        Ok(n > 0)
    }

    async fn update_connector_config(
        &self,
        name: &str,
        config: &serde_json::Value,
    ) -> Result<bool> {
        self.update_connector(name, "config", &config.to_string())
            .await
    }

    async fn set_target_state(&self, name: &str, target: TargetState) -> Result<bool> {
        self.update_connector(name, "target_state", &target.as_str())
            .await
    }

    async fn set_reset_pending(&self, name: &str, pending: bool) -> Result<bool> {
        self.update_connector(name, "reset_pending", &pending).await
    }

    async fn connector(&self, name: &str) -> Result<Option<ConnectorRecord>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &self.sql(&format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM {{s}}.connectors WHERE name = $1"
                )),
                &[&name],
            )
            .await
            .map_err(pg_err("reading a hosted job"))?;
        row.as_ref().map(connector_row).transpose()
    }

    async fn connectors(&self) -> Result<Vec<ConnectorRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &self.sql(&format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM {{s}}.connectors ORDER BY name"
                )),
                &[],
            )
            .await
            .map_err(pg_err("listing hosted jobs"))?;
        rows.iter().map(connector_row).collect()
    }

    async fn delete_connector(&self, name: &str) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                &self.sql("DELETE FROM {s}.connectors WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(pg_err("deleting a hosted job"))?;
        Ok(n > 0)
    }

    async fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<i64> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &self.sql(
                    "INSERT INTO {s}.tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING RETURNING id",
                ),
                &[&name, &role, &hash, &now()],
            )
            .await
            .map_err(pg_err("recording a token"))?;
        if let Some(r) = row {
            return Ok(r.get(0));
        }
        let name_taken = c
            .query_opt(
                &self.sql("SELECT 1 FROM {s}.tokens WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(pg_err("recording a token"))?
            .is_some();
        Err(token_taken(name, name_taken))
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &self.sql("SELECT id, name, role, created_at FROM {s}.tokens WHERE hash = $1"),
                &[&hash],
            )
            .await
            .map_err(pg_err("reading a token"))?;
        Ok(row.as_ref().map(token_row))
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &self.sql("SELECT id, name, role, created_at FROM {s}.tokens ORDER BY name"),
                &[],
            )
            .await
            .map_err(pg_err("listing tokens"))?;
        Ok(rows.iter().map(token_row).collect())
    }

    async fn revoke_token(&self, name: &str) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                &self.sql("DELETE FROM {s}.tokens WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(pg_err("revoking a token"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose schema is at the version before hosted jobs and tokens (3 in the crate's
    /// numbering, this store's second migration) is migrated, its rows kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_3_store_is_migrated() {
        let schema = format!("sluice_v3_{}", std::process::id());
        let url = format!("postgres://postgres@127.0.0.1:5432/postgres?schema={schema}");
        let (plain, _) = split_schema(&url);
        let conn = connect(&Config::from_str(&plain).unwrap(), "test")
            .await
            .unwrap();
        let q = quote_ident(&schema);
        let sql = |t: &str| t.replace("{s}", &q);
        conn.client
            .batch_execute(&sql("DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s};
                 CREATE TABLE {s}.schema_version (version int NOT NULL);"))
            .await
            .unwrap();
        for (i, m) in MIGRATIONS[..2].iter().enumerate() {
            conn.client.batch_execute(&sql(m)).await.unwrap();
            conn.client
                .execute(
                    &sql("INSERT INTO {s}.schema_version VALUES ($1)"),
                    &[&(i as i32 + 1)],
                )
                .await
                .unwrap();
        }
        conn.client
            .batch_execute(&sql(
                "INSERT INTO {s}.jobs (name, created_at) VALUES ('j', 'x');
                 INSERT INTO {s}.runs (job, started_at, state, pid, host)
                   VALUES ('j', 'x', 'STOPPED', 1, 'h');",
            ))
            .await
            .unwrap();

        let s = PgStore::open(&url).await.unwrap();
        let r = s.runs("j", 1).await.unwrap().remove(0);
        assert_eq!((r.state.as_str(), r.host.as_str()), ("STOPPED", "h"));
        assert!(s.connectors().await.unwrap().is_empty());
        let config = serde_json::json!({"source": {"kind": "postgres"}});
        assert!(
            s.create_connector("j", &config, TargetState::Paused)
                .await
                .unwrap()
        );
        let got = s.connector("j").await.unwrap().unwrap();
        assert_eq!(
            (got.config, got.target_state),
            (config, TargetState::Paused)
        );
        assert!(s.create_token("t", "admin", "h1").await.unwrap() > 0);
        let version: i32 = conn
            .client
            .query_one(&sql("SELECT max(version) FROM {s}.schema_version"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(version as usize, MIGRATIONS.len());
        drop(s);
        conn.client
            .batch_execute(&sql("DROP SCHEMA {s} CASCADE"))
            .await
            .unwrap();
    }

    #[test]
    fn the_schema_parameter_is_taken_out_of_the_url() {
        assert_eq!(
            split_schema("postgres://h/db"),
            ("postgres://h/db".to_string(), "sluice".to_string())
        );
        assert_eq!(
            split_schema("postgres://h/db?schema=ops&connect_timeout=3"),
            (
                "postgres://h/db?connect_timeout=3".to_string(),
                "ops".to_string()
            )
        );
        assert_eq!(
            split_schema("postgres://h/db?schema=ops"),
            ("postgres://h/db".to_string(), "ops".to_string())
        );
    }
}
