//! Where jobs, runs and their outcomes live.
//!
//! [`StateStore`] is the interface; [`SqliteStore`] keeps it in `state.db` inside the state
//! directory (`.sluice/` by default). Every change is committed before the call returns, so
//! anything reported after it (a status line, an exit code) is already on disk.
//!
//! Schema (version 1):
//!
//! * `jobs(name, created_at)` — one row per job name ever run here.
//! * `runs(id, job, started_at, ended_at, state, pid, rows_written, bytes_read, error)` — one
//!   row per `sluice run`; `state` is RUNNING until the run ends. A RUNNING row whose process
//!   is gone was killed; `sluice status` says so.
//! * `run_tables(run_id, table_name, target, rows_read, rows_written, splits_done,
//!   splits_total, complete)` — per-table figures at the end of a run.
//!
//! * `jobs.generation`, `jobs.generation_finished` — the job's current generation: it starts
//!   when the job runs from scratch and lasts through every resume until a run finishes.
//! * `positions(job, split, generation, table_name, position, done, rows, updated_at)` — the
//!   last committed position of every split of the current generation. For sinks that store
//!   checkpoints with their data (databases) the sink's copy is authoritative and this one
//!   serves `status`; for file sinks this is the record.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use serde::Serialize;
use sluice_core::{Error, ErrorKind, Result};

/// Name of the database file inside the state directory.
pub const STATE_FILE: &str = "state.db";

/// One run of a job.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: Option<String>,
    /// RUNNING, FINISHED, STOPPED, ABORTED, FAILED.
    pub state: String,
    pub pid: u32,
    pub rows_written: u64,
    pub bytes_read: u64,
    /// The error message (redacted) when FAILED.
    pub error: Option<String>,
}

/// Per-table figures of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunTable {
    pub table: String,
    pub target: String,
    pub rows_read: u64,
    pub rows_written: u64,
    pub splits_done: u64,
    pub splits_total: u64,
    pub complete: bool,
}

/// The persistent state of jobs. Implementations commit before returning.
pub trait StateStore: Send + Sync {
    /// Records the start of a run of `job` by process `pid`; returns the run id.
    fn begin_run(&self, job: &str, pid: u32) -> Result<i64>;
    /// Records the end of a run with its final state, totals and per-table figures.
    fn end_run(&self, run: i64, end: &RunEnd<'_>) -> Result<()>;
    /// Job names, sorted.
    fn jobs(&self) -> Result<Vec<String>>;
    /// Runs of `job`, newest first, at most `limit`.
    fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>>;
    /// Per-table figures of a run.
    fn run_tables(&self, run: i64) -> Result<Vec<RunTable>>;
    /// The job's current generation and whether it finished.
    fn generation(&self, job: &str) -> Result<Option<(String, bool)>>;
    /// Starts a new generation: forgets the job's positions.
    fn start_generation(&self, job: &str, generation: &str) -> Result<()>;
    /// Marks the current generation finished (the next run starts a new one).
    fn finish_generation(&self, job: &str) -> Result<()>;
    /// Records a split's committed position (and the rows it wrote in total).
    fn save_position(&self, job: &str, generation: &str, rec: &SplitRecord) -> Result<()>;
    /// The positions of `job` in `generation`, ordered by split.
    fn positions(&self, job: &str, generation: &str) -> Result<Vec<SplitRecord>>;
}

/// A split's committed position, as the state store keeps it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitRecord {
    pub split: String,
    pub table: String,
    /// The position (JSON, opaque).
    pub position: sluice_core::Position,
    /// Rows written for this split so far.
    pub rows: u64,
    /// When it was recorded (RFC 3339), empty when saving.
    pub updated_at: String,
}

/// What [`StateStore::end_run`] records.
#[derive(Debug, Clone)]
pub struct RunEnd<'a> {
    pub state: &'a str,
    pub rows_written: u64,
    pub bytes_read: u64,
    pub error: Option<String>,
    pub tables: &'a [RunTable],
}

/// The embedded store: a SQLite file in the state directory.
pub struct SqliteStore {
    conn: std::sync::Mutex<Connection>,
    path: PathBuf,
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
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::from_io(
                e,
                format!("cannot create state directory {}", dir.display()),
            )
        })?;
        let path = dir.join(STATE_FILE);
        let conn = Connection::open(&path).map_err(db_err(&path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err(&path))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS jobs(
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
                complete INTEGER NOT NULL, PRIMARY KEY(run_id, table_name));
             PRAGMA user_version = 1;",
        )
        .map_err(db_err(&path))?;
        Ok(SqliteStore {
            conn: std::sync::Mutex::new(conn),
            path,
        })
    }

    /// Opens the store only if it exists (for read-only commands such as `status`).
    pub fn open_existing(dir: &Path) -> Result<Option<SqliteStore>> {
        if dir.join(STATE_FILE).exists() {
            Self::open(dir).map(Some)
        } else {
            Ok(None)
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl StateStore for SqliteStore {
    fn begin_run(&self, job: &str, pid: u32) -> Result<i64> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(db_err(&self.path))?;
        tx.execute(
            "INSERT OR IGNORE INTO jobs(name, created_at) VALUES (?1, ?2)",
            params![job, now()],
        )
        .map_err(db_err(&self.path))?;
        tx.execute(
            "INSERT INTO runs(job, started_at, state, pid) VALUES (?1, ?2, 'RUNNING', ?3)",
            params![job, now(), pid],
        )
        .map_err(db_err(&self.path))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(db_err(&self.path))?;
        Ok(id)
    }

    fn end_run(&self, run: i64, end: &RunEnd<'_>) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(db_err(&self.path))?;
        tx.execute(
            "UPDATE runs SET ended_at = ?2, state = ?3, rows_written = ?4, bytes_read = ?5,
                error = ?6 WHERE id = ?1",
            params![
                run,
                now(),
                end.state,
                end.rows_written as i64,
                end.bytes_read as i64,
                end.error
            ],
        )
        .map_err(db_err(&self.path))?;
        for t in end.tables {
            tx.execute(
                "INSERT OR REPLACE INTO run_tables VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    run,
                    t.table,
                    t.target,
                    t.rows_read as i64,
                    t.rows_written as i64,
                    t.splits_done as i64,
                    t.splits_total as i64,
                    t.complete
                ],
            )
            .map_err(db_err(&self.path))?;
        }
        tx.commit().map_err(db_err(&self.path))
    }

    fn jobs(&self) -> Result<Vec<String>> {
        let c = self.conn();
        let mut st = c
            .prepare("SELECT name FROM jobs ORDER BY name")
            .map_err(db_err(&self.path))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(db_err(&self.path))
    }

    fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT id, job, started_at, ended_at, state, pid, rows_written, bytes_read, error
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
                })
            })
            .map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(&self.path))
    }

    fn generation(&self, job: &str) -> Result<Option<(String, bool)>> {
        let c = self.conn();
        let mut st = c
            .prepare("SELECT generation, generation_finished FROM jobs WHERE name = ?1")
            .map_err(db_err(&self.path))?;
        let mut rows = st.query([job]).map_err(db_err(&self.path))?;
        match rows.next().map_err(db_err(&self.path))? {
            Some(r) => {
                let g: Option<String> = r.get(0).map_err(db_err(&self.path))?;
                let f: bool = r.get(1).map_err(db_err(&self.path))?;
                Ok(g.map(|g| (g, f)))
            }
            None => Ok(None),
        }
    }

    fn start_generation(&self, job: &str, generation: &str) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(db_err(&self.path))?;
        tx.execute(
            "INSERT INTO jobs(name, created_at, generation, generation_finished) VALUES (?1, ?2, ?3, 0)
             ON CONFLICT(name) DO UPDATE SET generation = ?3, generation_finished = 0",
            params![job, now(), generation],
        )
        .map_err(db_err(&self.path))?;
        tx.execute("DELETE FROM positions WHERE job = ?1", [job])
            .map_err(db_err(&self.path))?;
        tx.commit().map_err(db_err(&self.path))
    }

    fn finish_generation(&self, job: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE jobs SET generation_finished = 1 WHERE name = ?1",
                [job],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    fn save_position(&self, job: &str, generation: &str, rec: &SplitRecord) -> Result<()> {
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

    fn positions(&self, job: &str, generation: &str) -> Result<Vec<SplitRecord>> {
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

    fn run_tables(&self, run: i64) -> Result<Vec<RunTable>> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT table_name, target, rows_read, rows_written, splits_done, splits_total,
                        complete FROM run_tables WHERE run_id = ?1 ORDER BY table_name",
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
                })
            })
            .map_err(db_err(&self.path))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err(&self.path))
    }
}

/// Whether process `pid` is alive (Linux: `/proc/PID` exists).
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The last run of `job`, if any.
pub fn last_run(store: &dyn StateStore, job: &str) -> Result<Option<RunRecord>> {
    Ok(store.runs(job, 1)?.into_iter().next())
}

#[allow(dead_code)]
fn _assert_object_safe(_: &dyn StateStore) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lifecycle_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let id = s.begin_run("copy", 42).unwrap();
        let r = last_run(&s, "copy").unwrap().unwrap();
        assert_eq!((r.id, r.state.as_str(), r.pid), (id, "RUNNING", 42));
        let tables = [RunTable {
            table: "a".into(),
            target: "a".into(),
            rows_read: 5,
            rows_written: 5,
            splits_done: 1,
            splits_total: 1,
            complete: true,
        }];
        s.end_run(
            id,
            &RunEnd {
                state: "FINISHED",
                rows_written: 5,
                bytes_read: 9,
                error: None,
                tables: &tables,
            },
        )
        .unwrap();
        drop(s);
        let s = SqliteStore::open_existing(dir.path()).unwrap().unwrap();
        let r = last_run(&s, "copy").unwrap().unwrap();
        assert_eq!(r.state, "FINISHED");
        assert_eq!(r.rows_written, 5);
        assert_eq!(s.run_tables(id).unwrap(), tables);
        assert_eq!(s.jobs().unwrap(), ["copy"]);
    }

    #[test]
    fn generations_and_positions() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.generation("j").unwrap(), None);
        s.start_generation("j", "g1").unwrap();
        let mut p = sluice_core::Position::new("t#0", serde_json::json!({"rows": 5}));
        p.done = true;
        let rec = SplitRecord {
            split: "t#0".into(),
            table: "t".into(),
            position: p.clone(),
            rows: 5,
            updated_at: String::new(),
        };
        s.save_position("j", "g1", &rec).unwrap();
        let got = s.positions("j", "g1").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].position, p);
        assert!(s.positions("j", "g2").unwrap().is_empty());
        s.finish_generation("j").unwrap();
        assert_eq!(s.generation("j").unwrap(), Some(("g1".into(), true)));
        s.start_generation("j", "g2").unwrap();
        assert_eq!(s.generation("j").unwrap(), Some(("g2".into(), false)));
        assert!(
            s.positions("j", "g1").unwrap().is_empty(),
            "a new generation forgets positions"
        );
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
