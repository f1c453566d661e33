//! The embedded state store: a SQLite file (`state.db`) in the state directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sluice_core::{Error, ErrorKind, Result};

use std::time::Duration;

use crate::{
    AuditEntry, ConnectorRecord, GenerationInfo, JobLock, Lease, RunRecord, RunTable, RunUpdate,
    SplitRecord, StateStore, TargetState, TokenRecord, WorkerRecord, connector_record, now,
    token_taken,
};

/// Name of the database file inside the state directory.
pub const STATE_FILE: &str = "state.db";

/// The embedded store: a SQLite file in the state directory. Cheap to clone; its calls run
/// on blocking threads.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<SqliteInner>,
}

/// The connection and the synchronous implementation.
pub(crate) struct SqliteInner {
    conn: std::sync::Mutex<Connection>,
    path: PathBuf,
    dir: PathBuf,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        Error::new(
            ErrorKind::Io,
            format!("state store {}: {e}", path.display()),
        )
        .with_hint(
            "check that the state directory is writable (--state DIR or SLUICE_STATE moves it)",
        )
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in directory `dir`. Blocking.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::from_io(
                e,
                format!("cannot create state directory {}", dir.display()),
            )
        })?;
        // Processes opening one directory at once (a run starting while `status` polls) take
        // turns: switching a new database to WAL and migrating it can answer SQLITE_BUSY
        // without waiting for the busy timeout.
        let _opening = lock_opening(dir, OPEN_WAIT)?;
        let path = dir.join(STATE_FILE);
        let mut conn = Connection::open(&path).map_err(db_err(&path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err(&path))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(db_err(&path))?;
        migrate(&mut conn).map_err(|e| match e {
            Migration::Db(e) => db_err(&path)(e),
            Migration::Newer(v) => Error::config(format!(
                "the state directory {} was written by a newer Sluice (schema version {v}, this \
                 one knows up to {})",
                dir.display(),
                MIGRATIONS.len()
            ))
            .with_hint("run the newer sluice, or give this one another --state directory"),
        })?;
        Ok(SqliteStore {
            inner: Arc::new(SqliteInner {
                conn: std::sync::Mutex::new(conn),
                path,
                dir: dir.to_path_buf(),
            }),
        })
    }

    /// Runs `f` on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SqliteInner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::internal(format!("state store task failed: {e}")))?
    }

    /// Opens the store only if it exists (for read-only commands such as `status`).
    pub fn open_existing(dir: &Path) -> Result<Option<SqliteStore>> {
        if dir.join(STATE_FILE).exists() {
            Self::open(dir).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl SqliteInner {
    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_run(&self, run: i64, u: &RunUpdate, end: bool) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(db_err(&self.path))?;
        let t = now();
        // A progress update never overwrites a run's end (it may arrive late).
        let changed = tx
            .execute(
                "UPDATE runs SET ended_at = ?2, state = ?3, rows_written = ?4, bytes_read = ?5,
                error = ?6, rows_earlier = ?7, updated_at = ?8,
                generation = CASE WHEN ?9 = '' THEN generation ELSE ?9 END
             WHERE id = ?1 AND (?2 IS NOT NULL OR ended_at IS NULL)",
                params![
                    run,
                    end.then_some(&t),
                    u.state.as_str(),
                    u.rows_written as i64,
                    u.bytes_read as i64,
                    u.error,
                    u.rows_earlier as i64,
                    t,
                    u.generation
                ],
            )
            .map_err(db_err(&self.path))?;
        if changed == 0 {
            return Ok(());
        }
        for r in &u.tables {
            tx.execute(
                "INSERT OR REPLACE INTO run_tables(run_id, table_name, target, rows_read,
                    rows_written, splits_done, splits_total, complete, rows_written_earlier)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run,
                    r.table,
                    r.target,
                    r.rows_read as i64,
                    r.rows_written as i64,
                    r.splits_done as i64,
                    r.splits_total as i64,
                    r.complete,
                    r.rows_written_earlier as i64
                ],
            )
            .map_err(db_err(&self.path))?;
        }
        tx.commit().map_err(db_err(&self.path))
    }
}

/// The schema, one migration per version (index 0 makes version 1). Never edit a released
/// migration: add one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS jobs(
        name TEXT PRIMARY KEY, created_at TEXT NOT NULL, generation TEXT,
        generation_finished INTEGER NOT NULL DEFAULT 0);
     CREATE TABLE IF NOT EXISTS positions(
        job TEXT NOT NULL, split TEXT NOT NULL, generation TEXT NOT NULL,
        table_name TEXT NOT NULL, position TEXT NOT NULL, done INTEGER NOT NULL,
        rows INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY(job, split));
     CREATE TABLE IF NOT EXISTS runs(
        id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL REFERENCES jobs(name),
        started_at TEXT NOT NULL, ended_at TEXT, state TEXT NOT NULL, pid INTEGER NOT NULL,
        rows_written INTEGER NOT NULL DEFAULT 0, bytes_read INTEGER NOT NULL DEFAULT 0,
        error TEXT);
     CREATE INDEX IF NOT EXISTS runs_job ON runs(job, id);
     CREATE TABLE IF NOT EXISTS run_tables(
        run_id INTEGER NOT NULL REFERENCES runs(id), table_name TEXT NOT NULL,
        target TEXT NOT NULL, rows_read INTEGER NOT NULL, rows_written INTEGER NOT NULL,
        splits_done INTEGER NOT NULL, splits_total INTEGER NOT NULL,
        complete INTEGER NOT NULL, PRIMARY KEY(run_id, table_name));",
    "CREATE TABLE generations(
        job TEXT NOT NULL, generation TEXT NOT NULL, started_at TEXT NOT NULL,
        finished_at TEXT, manifest TEXT, PRIMARY KEY(job, generation));
     ALTER TABLE runs ADD COLUMN generation TEXT;
     ALTER TABLE runs ADD COLUMN rows_earlier INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN updated_at TEXT;
     ALTER TABLE run_tables ADD COLUMN rows_written_earlier INTEGER NOT NULL DEFAULT 0;",
    "ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
     CREATE TABLE audit(
        id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, job TEXT NOT NULL,
        actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL);
     CREATE INDEX audit_job ON audit(job, id);
     CREATE TABLE leases(
        resource TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL,
        expires_at INTEGER NOT NULL);
     CREATE TABLE workers(
        id TEXT PRIMARY KEY, address TEXT NOT NULL, started_at TEXT NOT NULL,
        heartbeat_at INTEGER NOT NULL);",
    "CREATE TABLE connectors(
        name TEXT PRIMARY KEY, config TEXT NOT NULL, target_state TEXT NOT NULL,
        reset_pending INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL);
     CREATE TABLE tokens(
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);",
];

/// How long opening a state directory waits for another process opening it.
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// An exclusive lock on `<dir>/state.lock` while the store is opened and migrated, waiting at
/// most `wait` for another opener; released when dropped.
fn lock_opening(dir: &Path, wait: Duration) -> Result<std::fs::File> {
    let path = dir.join("state.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::from_io(e, format!("cannot open {}", path.display())))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "the state directory {} is being opened by another process that does \
                         not finish",
                        dir.display()
                    ),
                )
                .with_hint("check for a hung sluice process using this --state directory"));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::from_io(e, format!("cannot lock {}", path.display())));
            }
        }
    }
}

/// The store's clock: milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The columns [`connector_row`] reads.
const CONNECTOR_COLUMNS: &str = "name, config, target_state, reset_pending, created_at, updated_at";

type ConnectorRow = (String, String, String, bool, String, String);

fn connector_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConnectorRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn into_connector(
    (name, config, target, reset, created, updated): ConnectorRow,
) -> Result<ConnectorRecord> {
    connector_record(name, &config, &target, reset, created, updated)
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        resource: r.get(0)?,
        holder: r.get(1)?,
        token: r.get(2)?,
        expires_at_ms: r.get(3)?,
    })
}

enum Migration {
    Db(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for Migration {
    fn from(e: rusqlite::Error) -> Self {
        Migration::Db(e)
    }
}

/// Brings the schema to the newest version, one migration per transaction. Each transaction
/// takes the write lock first and reads the version under it, so processes opening the same
/// state directory at once (a run starting while `status` polls) migrate it once.
fn migrate(conn: &mut Connection) -> std::result::Result<(), Migration> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(Migration::Newer(version));
        }
        let Some(sql) = MIGRATIONS.get(version.max(0) as usize) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", version.max(0) + 1))?;
        tx.commit()?;
    }
}

impl SqliteInner {
    pub(crate) fn begin_run(&self, job: &str, generation: &str, pid: u32) -> Result<i64> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(db_err(&self.path))?;
        tx.execute(
            "INSERT OR IGNORE INTO jobs(name, created_at) VALUES (?1, ?2)",
            params![job, now()],
        )
        .map_err(db_err(&self.path))?;
        tx.execute(
            "INSERT INTO runs(job, started_at, state, pid, generation, updated_at, host)
             VALUES (?1, ?2, 'RUNNING', ?3, ?4, ?2, ?5)",
            params![job, now(), pid, generation, crate::host_name()],
        )
        .map_err(db_err(&self.path))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(db_err(&self.path))?;
        Ok(id)
    }

    pub(crate) fn update_run(&self, run: i64, u: &RunUpdate) -> Result<()> {
        self.write_run(run, u, false)
    }

    pub(crate) fn end_run(&self, run: i64, end: &RunUpdate) -> Result<()> {
        self.write_run(run, end, true)
    }

    pub(crate) fn jobs(&self) -> Result<Vec<String>> {
        let c = self.conn();
        let mut st = c
            .prepare("SELECT name FROM jobs ORDER BY name")
            .map_err(db_err(&self.path))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT id, job, started_at, ended_at, state, pid, rows_written, bytes_read, error,
                        coalesce(generation, ''), rows_earlier, updated_at, host
                 FROM runs WHERE job = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(db_err(&self.path))?;
        let rows = st
            .query_map(params![job, limit as i64], |r| {
                Ok(RunRecord {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    started_at: r.get(2)?,
                    ended_at: r.get(3)?,
                    state: r.get(4)?,
                    pid: r.get(5)?,
                    rows_written: r.get::<_, i64>(6)? as u64,
                    bytes_read: r.get::<_, i64>(7)? as u64,
                    error: r.get(8)?,
                    generation: r.get(9)?,
                    rows_earlier: r.get::<_, i64>(10)? as u64,
                    updated_at: r.get(11)?,
                    host: r.get(12)?,
                })
            })
            .map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn generation(&self, job: &str) -> Result<Option<GenerationInfo>> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT j.generation, j.generation_finished, g.manifest FROM jobs j
                 LEFT JOIN generations g ON g.job = j.name AND g.generation = j.generation
                 WHERE j.name = ?1",
            )
            .map_err(db_err(&self.path))?;
        let mut rows = st.query([job]).map_err(db_err(&self.path))?;
        let Some(r) = rows.next().map_err(db_err(&self.path))? else {
            return Ok(None);
        };
        let g: Option<String> = r.get(0).map_err(db_err(&self.path))?;
        let finished: bool = r.get(1).map_err(db_err(&self.path))?;
        let manifest: Option<String> = r.get(2).map_err(db_err(&self.path))?;
        let Some(id) = g else { return Ok(None) };
        let manifest = match manifest {
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
            finished,
            manifest,
        }))
    }

    pub(crate) fn start_generation(
        &self,
        job: &str,
        generation: &str,
        manifest: &serde_json::Value,
    ) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(db_err(&self.path))?;
        tx.execute(
            "INSERT INTO jobs(name, created_at, generation, generation_finished) VALUES (?1, ?2, ?3, 0)
             ON CONFLICT(name) DO UPDATE SET generation = ?3, generation_finished = 0",
            params![job, now(), generation],
        )
        .map_err(db_err(&self.path))?;
        tx.execute(
            "INSERT INTO generations(job, generation, started_at, manifest) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(job, generation) DO UPDATE SET manifest = ?4, finished_at = NULL",
            params![job, generation, now(), manifest.to_string()],
        )
        .map_err(db_err(&self.path))?;
        tx.execute(
            "DELETE FROM positions WHERE job = ?1 AND generation <> ?2",
            [job, generation],
        )
        .map_err(db_err(&self.path))?;
        tx.commit().map_err(db_err(&self.path))
    }

    pub(crate) fn finish_generation(&self, job: &str) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(db_err(&self.path))?;
        tx.execute(
            "UPDATE jobs SET generation_finished = 1 WHERE name = ?1",
            [job],
        )
        .map_err(db_err(&self.path))?;
        tx.execute(
            "UPDATE generations SET finished_at = ?2 WHERE job = ?1
               AND generation = (SELECT generation FROM jobs WHERE name = ?1)",
            params![job, now()],
        )
        .map_err(db_err(&self.path))?;
        tx.commit().map_err(db_err(&self.path))
    }

    pub(crate) fn forget_position(&self, job: &str, generation: &str, split: &str) -> Result<()> {
        self.conn()
            .execute(
                "DELETE FROM positions WHERE job = ?1 AND generation = ?2 AND split = ?3",
                params![job, generation, split],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    pub(crate) fn save_position(
        &self,
        job: &str,
        generation: &str,
        rec: &SplitRecord,
    ) -> Result<()> {
        let pos = serde_json::to_string(&rec.position)
            .map_err(|e| Error::internal(format!("position not serializable: {e}")))?;
        self.conn()
            .execute(
                "INSERT INTO positions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(job, split) DO UPDATE SET generation = ?3, table_name = ?4,
                   position = ?5, done = ?6, rows = ?7, updated_at = ?8",
                params![
                    job,
                    rec.split,
                    generation,
                    rec.table,
                    pos,
                    rec.position.done,
                    rec.rows as i64,
                    now()
                ],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    pub(crate) fn positions(&self, job: &str, generation: &str) -> Result<Vec<SplitRecord>> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT split, table_name, position, rows, updated_at FROM positions
                 WHERE job = ?1 AND generation = ?2 ORDER BY table_name, split",
            )
            .map_err(db_err(&self.path))?;
        let rows = st
            .query_map([job, generation], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(db_err(&self.path))?;
        let mut out = Vec::new();
        for r in rows {
            let (split, table, pos, n, at) = r.map_err(db_err(&self.path))?;
            let position = serde_json::from_str(&pos).map_err(|e| {
                Error::internal(format!(
                    "state store: unreadable position of split {split}: {e}"
                ))
                .with_hint("run the job with --from-scratch")
            })?;
            out.push(SplitRecord {
                split,
                table,
                position,
                rows: n as u64,
                updated_at: at,
            });
        }
        Ok(out)
    }

    pub(crate) fn record_audit(&self, e: &AuditEntry) -> Result<i64> {
        let c = self.conn();
        c.execute(
            "INSERT INTO audit(at, job, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now(), e.job, e.actor, e.action, e.detail],
        )
        .map_err(db_err(&self.path))?;
        Ok(c.last_insert_rowid())
    }

    pub(crate) fn audit(&self, job: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT id, at, job, actor, action, detail FROM audit
                 WHERE ?1 IS NULL OR job = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(db_err(&self.path))?;
        let rows = st
            .query_map(params![job, limit as i64], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    job: r.get(2)?,
                    actor: r.get(3)?,
                    action: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let now = now_ms();
        // The token stays only when the same holder extends a lease that is still running.
        self.conn()
            .query_row(
                "INSERT INTO leases(resource, holder, token, expires_at) VALUES (?1, ?2, 1, ?3 + ?4)
                 ON CONFLICT(resource) DO UPDATE SET
                   token = CASE WHEN holder = excluded.holder AND expires_at > ?3
                                THEN token ELSE token + 1 END,
                   holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE holder = excluded.holder OR expires_at <= ?3
                 RETURNING resource, holder, token, expires_at",
                params![resource, holder, now, ttl_ms(ttl)],
                lease_row,
            )
            .optional()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let now = now_ms();
        self.conn()
            .query_row(
                "UPDATE leases SET expires_at = ?4 + ?5
                 WHERE resource = ?1 AND holder = ?2 AND token = ?3 AND expires_at > ?4
                 RETURNING resource, holder, token, expires_at",
                params![lease.resource, lease.holder, lease.token, now, ttl_ms(ttl)],
                lease_row,
            )
            .optional()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn release_lease(&self, lease: &Lease) -> Result<()> {
        // Kept, lapsed, so the next holder's token is greater.
        self.conn()
            .execute(
                "UPDATE leases SET expires_at = ?4
                 WHERE resource = ?1 AND holder = ?2 AND token = ?3 AND expires_at > ?4",
                params![lease.resource, lease.holder, lease.token, now_ms()],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    pub(crate) fn leases(&self) -> Result<Vec<Lease>> {
        let c = self.conn();
        let mut st = c
            .prepare("SELECT resource, holder, token, expires_at FROM leases ORDER BY resource")
            .map_err(db_err(&self.path))?;
        let rows = st.query_map([], lease_row).map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn heartbeat(&self, id: &str, address: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO workers(id, address, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET address = ?2, heartbeat_at = ?4",
                params![id, address, now(), now_ms()],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    pub(crate) fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let now = now_ms();
        let c = self.conn();
        let mut st = c
            .prepare("SELECT id, address, started_at, heartbeat_at FROM workers ORDER BY id")
            .map_err(db_err(&self.path))?;
        let rows = st
            .query_map([], |r| {
                let beat: i64 = r.get(3)?;
                Ok(WorkerRecord {
                    id: r.get(0)?,
                    address: r.get(1)?,
                    started_at: r.get(2)?,
                    heartbeat_at_ms: beat,
                    heartbeat_age_ms: now - beat,
                })
            })
            .map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn create_connector(
        &self,
        name: &str,
        config: &serde_json::Value,
        target: TargetState,
    ) -> Result<bool> {
        let t = now();
        let n = self
            .conn()
            .execute(
                "INSERT INTO connectors(name, config, target_state, reset_pending, created_at,
                    updated_at) VALUES (?1, ?2, ?3, 0, ?4, ?4)
                 ON CONFLICT(name) DO NOTHING",
                params![name, config.to_string(), target.as_str(), t],
            )
            .map_err(db_err(&self.path))?;
        Ok(n > 0)
    }

    /// Sets one column of the hosted job `name` (and its `updated_at`); false if there is none.
    fn update_connector(
        &self,
        name: &str,
        column: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                &format!("UPDATE connectors SET {column} = ?2, updated_at = ?3 WHERE name = ?1"),
                params![name, value, now()],
            )
            .map_err(db_err(&self.path))?;
        Ok(n > 0)
    }

    pub(crate) fn connector(&self, name: &str) -> Result<Option<ConnectorRecord>> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE name = ?1"),
                [name],
                connector_row,
            )
            .optional()
            .map_err(db_err(&self.path))?;
        row.map(into_connector).transpose()
    }

    pub(crate) fn connectors(&self) -> Result<Vec<ConnectorRecord>> {
        let rows = {
            let c = self.conn();
            let mut st = c
                .prepare(&format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connectors ORDER BY name"
                ))
                .map_err(db_err(&self.path))?;
            st.query_map([], connector_row)
                .map_err(db_err(&self.path))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err(&self.path))?
        };
        rows.into_iter().map(into_connector).collect()
    }

    pub(crate) fn delete_connector(&self, name: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM connectors WHERE name = ?1", [name])
            .map_err(db_err(&self.path))?;
        Ok(n > 0)
    }

    pub(crate) fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<i64> {
        let c = self.conn();
        let id = c
            .query_row(
                "INSERT INTO tokens(name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING RETURNING id",
                params![name, role, hash, now()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(&self.path))?;
        if let Some(id) = id {
            return Ok(id);
        }
        let name_taken = c
            .query_row("SELECT 1 FROM tokens WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map_err(db_err(&self.path))?
            .is_some();
        Err(token_taken(name, name_taken))
    }

    pub(crate) fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.conn()
            .query_row(
                "SELECT id, name, role, created_at FROM tokens WHERE hash = ?1",
                [hash],
                token_row,
            )
            .optional()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let c = self.conn();
        let mut st = c
            .prepare("SELECT id, name, role, created_at FROM tokens ORDER BY name")
            .map_err(db_err(&self.path))?;
        let rows = st.query_map([], token_row).map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn revoke_token(&self, name: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM tokens WHERE name = ?1", [name])
            .map_err(db_err(&self.path))?;
        Ok(n > 0)
    }

    pub(crate) fn run_tables(&self, run: i64) -> Result<Vec<RunTable>> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT table_name, target, rows_read, rows_written, splits_done, splits_total,
                        complete, rows_written_earlier FROM run_tables WHERE run_id = ?1
                 ORDER BY table_name",
            )
            .map_err(db_err(&self.path))?;
        let rows = st
            .query_map([run], |r| {
                Ok(RunTable {
                    table: r.get(0)?,
                    target: r.get(1)?,
                    rows_read: r.get::<_, i64>(2)? as u64,
                    rows_written: r.get::<_, i64>(3)? as u64,
                    splits_done: r.get::<_, i64>(4)? as u64,
                    splits_total: r.get::<_, i64>(5)? as u64,
                    complete: r.get(6)?,
                    rows_written_earlier: r.get::<_, i64>(7)? as u64,
                })
            })
            .map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(&self.path))
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    fn describe(&self) -> String {
        self.inner.dir.display().to_string()
    }

    async fn lock_job(&self, job: &str) -> Result<JobLock> {
        let dir = self.inner.dir.join("run");
        let job = job.to_string();
        let shown = self.describe();
        self.blocking(move |_| {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::from_io(e, format!("cannot create {}", dir.display())))?;
            let path = dir.join(format!("{}.lock", file_stem(&job)));
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::from_io(e, format!("cannot open {}", path.display())))?;
            match file.try_lock() {
                Ok(()) => Ok(Box::new(file) as JobLock),
                Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
                    ErrorKind::Config,
                    format!("job {job:?} is already running from the state directory {shown}"),
                )
                .with_hint(format!(
                    "stop it with `sluice stop {job}`, or wait for it to end"
                ))),
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(Error::from_io(e, format!("cannot lock {}", path.display())))
                }
            }
        })
        .await
    }

    async fn begin_run(&self, job: &str, generation: &str, pid: u32) -> Result<i64> {
        let (job, generation) = (job.to_string(), generation.to_string());
        self.blocking(move |s| s.begin_run(&job, &generation, pid))
            .await
    }

    async fn update_run(&self, run: i64, progress: &RunUpdate) -> Result<()> {
        let u = progress.clone();
        self.blocking(move |s| s.update_run(run, &u)).await
    }

    async fn end_run(&self, run: i64, end: &RunUpdate) -> Result<()> {
        let u = end.clone();
        self.blocking(move |s| s.end_run(run, &u)).await
    }

    async fn jobs(&self) -> Result<Vec<String>> {
        self.blocking(|s| s.jobs()).await
    }

    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>> {
        let job = job.to_string();
        self.blocking(move |s| s.runs(&job, limit)).await
    }

    async fn run_tables(&self, run: i64) -> Result<Vec<RunTable>> {
        self.blocking(move |s| s.run_tables(run)).await
    }

    async fn generation(&self, job: &str) -> Result<Option<GenerationInfo>> {
        let job = job.to_string();
        self.blocking(move |s| s.generation(&job)).await
    }

    async fn start_generation(
        &self,
        job: &str,
        generation: &str,
        manifest: &serde_json::Value,
    ) -> Result<()> {
        let (job, generation, manifest) =
            (job.to_string(), generation.to_string(), manifest.clone());
        self.blocking(move |s| s.start_generation(&job, &generation, &manifest))
            .await
    }

    async fn finish_generation(&self, job: &str) -> Result<()> {
        let job = job.to_string();
        self.blocking(move |s| s.finish_generation(&job)).await
    }

    async fn save_position(&self, job: &str, generation: &str, rec: &SplitRecord) -> Result<()> {
        let (job, generation, rec) = (job.to_string(), generation.to_string(), rec.clone());
        self.blocking(move |s| s.save_position(&job, &generation, &rec))
            .await
    }

    async fn forget_position(&self, job: &str, generation: &str, split: &str) -> Result<()> {
        let (job, generation, split) = (job.to_string(), generation.to_string(), split.to_string());
        self.blocking(move |s| s.forget_position(&job, &generation, &split))
            .await
    }

    async fn positions(&self, job: &str, generation: &str) -> Result<Vec<SplitRecord>> {
        let (job, generation) = (job.to_string(), generation.to_string());
        self.blocking(move |s| s.positions(&job, &generation)).await
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<i64> {
        let e = entry.clone();
        self.blocking(move |s| s.record_audit(&e)).await
    }

    async fn audit(&self, job: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let job = job.map(str::to_string);
        self.blocking(move |s| s.audit(job.as_deref(), limit)).await
    }

    async fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let (resource, holder) = (resource.to_string(), holder.to_string());
        self.blocking(move |s| s.acquire_lease(&resource, &holder, ttl))
            .await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let lease = lease.clone();
        self.blocking(move |s| s.renew_lease(&lease, ttl)).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        self.blocking(move |s| s.release_lease(&lease)).await
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        self.blocking(|s| s.leases()).await
    }

    async fn heartbeat(&self, id: &str, address: &str) -> Result<()> {
        let (id, address) = (id.to_string(), address.to_string());
        self.blocking(move |s| s.heartbeat(&id, &address)).await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        self.blocking(|s| s.workers()).await
    }

    async fn create_connector(
        &self,
        name: &str,
        config: &serde_json::Value,
        target: TargetState,
    ) -> Result<bool> {
        let (name, config) = (name.to_string(), config.clone());
        self.blocking(move |s| s.create_connector(&name, &config, target))
            .await
    }

    async fn update_connector_config(
        &self,
        name: &str,
        config: &serde_json::Value,
    ) -> Result<bool> {
        let (name, config) = (name.to_string(), config.to_string());
        self.blocking(move |s| s.update_connector(&name, "config", &config))
            .await
    }

    async fn set_target_state(&self, name: &str, target: TargetState) -> Result<bool> {
        let name = name.to_string();
        self.blocking(move |s| s.update_connector(&name, "target_state", &target.as_str()))
            .await
    }

    async fn set_reset_pending(&self, name: &str, pending: bool) -> Result<bool> {
        let name = name.to_string();
        self.blocking(move |s| s.update_connector(&name, "reset_pending", &pending))
            .await
    }

    async fn connector(&self, name: &str) -> Result<Option<ConnectorRecord>> {
        let name = name.to_string();
        self.blocking(move |s| s.connector(&name)).await
    }

    async fn connectors(&self) -> Result<Vec<ConnectorRecord>> {
        self.blocking(|s| s.connectors()).await
    }

    async fn delete_connector(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.blocking(move |s| s.delete_connector(&name)).await
    }

    async fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<i64> {
        let (name, role, hash) = (name.to_string(), role.to_string(), hash.to_string());
        self.blocking(move |s| s.create_token(&name, &role, &hash))
            .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let hash = hash.to_string();
        self.blocking(move |s| s.token_by_hash(&hash)).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.blocking(|s| s.tokens()).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.blocking(move |s| s.revoke_token(&name)).await
    }
}

/// A file-system-safe, collision-free name for `job`.
pub fn file_stem(job: &str) -> String {
    let safe: String = job
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{safe}-{:08x}",
        sluice_core::naming::stable_hash(job) as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_state_directory_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(STATE_FILE)).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO jobs VALUES ('j', 'x', 'g0', 0);
                 INSERT INTO runs(job, started_at, state, pid) VALUES ('j', 'x', 'STOPPED', 1);",
            )
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let g = s.inner.generation("j").unwrap().unwrap();
        assert_eq!((g.id.as_str(), g.finished, g.manifest), ("g0", false, None));
        let r = s.inner.runs("j", 1).unwrap().remove(0);
        assert_eq!((r.state.as_str(), r.generation.as_str()), ("STOPPED", ""));
    }

    #[test]
    fn a_version_3_state_directory_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(STATE_FILE)).unwrap();
            for m in &MIGRATIONS[..3] {
                c.execute_batch(m).unwrap();
            }
            c.execute_batch(
                "PRAGMA user_version = 3;
                 INSERT INTO jobs VALUES ('j', 'x', 'g0', 0);
                 INSERT INTO runs(job, started_at, state, pid, host)
                   VALUES ('j', 'x', 'STOPPED', 1, 'h');
                 INSERT INTO audit(at, job, actor, action, detail)
                   VALUES ('x', 'j', 'cli', 'stop', '');",
            )
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let r = s.inner.runs("j", 1).unwrap().remove(0);
        assert_eq!((r.state.as_str(), r.host.as_str()), ("STOPPED", "h"));
        assert_eq!(s.inner.audit(Some("j"), 10).unwrap().len(), 1);
        assert!(s.inner.connectors().unwrap().is_empty());
        assert!(s.inner.tokens().unwrap().is_empty());
        let config = serde_json::json!({"source": {"kind": "postgres"}});
        assert!(
            s.inner
                .create_connector("j", &config, TargetState::Paused)
                .unwrap()
        );
        let got = s.inner.connector("j").unwrap().unwrap();
        assert_eq!(
            (got.config, got.target_state),
            (config, TargetState::Paused)
        );
        assert!(s.inner.create_token("t", "admin", "h1").unwrap() > 0);
        drop(s);
        let c = Connection::open(dir.path().join(STATE_FILE)).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 4);
    }

    #[test]
    fn an_opener_that_never_finishes_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_opening(dir.path(), OPEN_WAIT).unwrap();
        let e = lock_opening(dir.path(), Duration::from_millis(50)).unwrap_err();
        assert!(
            e.to_string().contains("being opened by another process"),
            "{e}"
        );
        assert!(format!("{e:?}").contains("hung sluice process"), "{e:?}");
        drop(held);
        assert!(lock_opening(dir.path(), Duration::from_millis(50)).is_ok());
    }

    #[test]
    fn processes_opening_a_new_state_directory_at_once_migrate_it_once() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let opened: Vec<_> = (0..6)
                .map(|_| {
                    let d = dir.path().to_path_buf();
                    std::thread::spawn(move || SqliteStore::open(&d).map(|_| ()))
                })
                .collect();
            for t in opened {
                t.join().unwrap().unwrap();
            }
            let c = Connection::open(dir.path().join(STATE_FILE)).unwrap();
            let v: i64 = c
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, MIGRATIONS.len() as i64);
        }
    }

    #[test]
    fn a_newer_state_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(STATE_FILE)).unwrap();
            c.execute_batch("PRAGMA user_version = 99").unwrap();
        }
        let e = SqliteStore::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("newer Sluice"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn unwritable_state_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let e = SqliteStore::open(&file.join("sub")).err().unwrap();
        assert!(
            e.to_string().contains("cannot create state directory"),
            "{e}"
        );
    }
}
