//! Where jobs, runs and their outcomes live.
//!
//! [`StateStore`] is the interface, async so that no implementation blocks a runtime thread,
//! with two implementations that pass one test suite (`tests/suite.rs`):
//!
//! * [`SqliteStore`]: `state.db` inside the state directory (`.sluice/` by default), the
//!   embedded default, on blocking threads;
//! * [`PgStore`]: a schema of its own (`sluice`) in a PostgreSQL database
//!   (`--state postgres://…`), shared by every process pointed at it.
//!
//! [`open`] picks one from a `--state` value. Every change is committed before the call
//! returns, so anything reported after it (a status line, an exit code) is durable. Each
//! store's schema is versioned and migrated when it is opened (under a lock, so processes
//! opening one store at once migrate it once); a store written by a newer Sluice is refused.
//!
//! The tables, version 1:
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
//!
//! Version 2:
//!
//! * `generations(job, generation, started_at, finished_at, manifest)` — every generation a
//!   job started, with its manifest (what the plan depends on, and every split with its
//!   bounds), so a resume reads exactly the planned splits.
//! * `runs.generation`, `runs.rows_earlier` (rows committed by earlier runs of the same
//!   generation), `runs.updated_at`; `run_tables.rows_written_earlier`. A running job updates
//!   its run row (state, rows so far) as it goes, so `status` shows it live.
//!
//! Version 3 (what the server and distributed mode stand on):
//!
//! * `runs.host` — the machine that ran it, so a run whose process is gone is told from one
//!   running elsewhere; a live run rewrites `updated_at` every second, which is its
//!   heartbeat wherever it runs ([`observed_state`]).
//! * `audit(id, at, job, actor, action, detail)` — who asked for what: runs started and
//!   ended, stops, pauses, resumes, config changes ([`AuditEntry`]).
//! * `leases(resource, holder, token, expires_at)` — time-limited ownership of a job or a
//!   split by one worker, with a *fencing token* that grows whenever the lease changes hands
//!   or lapses ([`Lease`]); expiry is measured by the store's clock (PostgreSQL's for the
//!   shared store), never by the workers' clocks.
//! * `workers(id, address, started_at, heartbeat_at)` — the processes serving a store.
//!
//! Version 4 (what the REST server, `sluice server`, stands on):
//!
//! * `connectors(name, config, target_state, reset_pending, created_at, updated_at)` — the
//!   jobs a server hosts: each job document as posted (JSON text; it may hold secrets), the
//!   state it was asked to be in ([`TargetState`]), and whether its next run starts from
//!   scratch ([`ConnectorRecord`]). Forgetting one leaves its runs, positions and audit.
//! * `tokens(id, name, role, hash, created_at)` — API tokens, by name, stored only as hashes
//!   ([`TokenRecord`]); names and hashes are unique.

mod postgres;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sluice_core::Result;

pub use postgres::PgStore;
pub use sqlite::{STATE_FILE, SqliteStore, file_stem};

/// A run's state as the store keeps it: the one list of state names, and the one place
/// they are mapped to Kafka Connect's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Planning or moving data.
    Running,
    /// Readers hold; positions and plan kept.
    Paused,
    /// A stop was asked for; in-flight splits are being rolled back.
    Stopping,
    /// Stopped before the end; resumable.
    Stopped,
    /// Aborted (a second signal, a kill, a stop past its deadline); resumable.
    Aborted,
    /// Ended with an error; resumable once the cause is fixed.
    Failed,
    /// Every split committed.
    Finished,
    /// Recorded as running, but its process is gone or stopped recording (killed, machine
    /// lost); resumable.
    Interrupted,
}

impl JobState {
    /// Every state, in the order above.
    pub const ALL: [JobState; 8] = [
        JobState::Running,
        JobState::Paused,
        JobState::Stopping,
        JobState::Stopped,
        JobState::Aborted,
        JobState::Failed,
        JobState::Finished,
        JobState::Interrupted,
    ];

    /// The name written to the store and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "RUNNING",
            JobState::Paused => "PAUSED",
            JobState::Stopping => "STOPPING",
            JobState::Stopped => "STOPPED",
            JobState::Aborted => "ABORTED",
            JobState::Failed => "FAILED",
            JobState::Finished => "FINISHED",
            JobState::Interrupted => "INTERRUPTED",
        }
    }

    /// The state a stored name stands for.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether a process is (supposed to be) working on the run.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            JobState::Running | JobState::Paused | JobState::Stopping
        )
    }

    /// Kafka Connect's name for the state (`UNASSIGNED`, `RUNNING`, `PAUSED`, `STOPPED`,
    /// `FAILED`; `RESTARTING` is the server's own, during a restart). A stopping job still
    /// runs; a finished batch copy and an aborted one are stopped (Sluice's own state goes in
    /// added fields); a run whose process vanished is running nowhere, so unassigned.
    pub fn connect_state(self) -> &'static str {
        match self {
            JobState::Running | JobState::Stopping => "RUNNING",
            JobState::Paused => "PAUSED",
            JobState::Stopped | JobState::Aborted | JobState::Finished => "STOPPED",
            JobState::Failed => "FAILED",
            JobState::Interrupted => "UNASSIGNED",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a hosted job was asked to be in (Kafka Connect's target states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetState {
    /// Running, or to be started.
    Running,
    /// Readers hold; positions and plan kept.
    Paused,
    /// Not running; positions kept, so resumable.
    Stopped,
}

impl TargetState {
    /// Every target state, in the order above.
    pub const ALL: [TargetState; 3] = [
        TargetState::Running,
        TargetState::Paused,
        TargetState::Stopped,
    ];

    /// The name written to the store and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Running => "RUNNING",
            TargetState::Paused => "PAUSED",
            TargetState::Stopped => "STOPPED",
        }
    }

    /// The target state a stored name stands for.
    pub fn parse(s: &str) -> Option<TargetState> {
        TargetState::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for TargetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job hosted by a server: its config as posted and what it was asked to be in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectorRecord {
    pub name: String,
    /// The job document (the TOML's tables as JSON), as posted: may hold secrets; never
    /// returned by the API as is.
    pub config: serde_json::Value,
    pub target_state: TargetState,
    /// The next run starts from scratch (offsets were reset).
    pub reset_pending: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// When the config, target state or reset flag last changed (RFC 3339, UTC).
    pub updated_at: String,
}

/// An API token, without its secret (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRecord {
    /// Assigned by the store.
    pub id: i64,
    pub name: String,
    pub role: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A connector row as both stores read it: the config and target state are checked here.
pub(crate) fn connector_record(
    name: String,
    config: &str,
    target_state: &str,
    reset_pending: bool,
    created_at: String,
    updated_at: String,
) -> Result<ConnectorRecord> {
    let config = serde_json::from_str(config).map_err(|e| {
        sluice_core::Error::internal(format!(
            "state store: unreadable config of hosted job {name:?}: {e}"
        ))
        .with_hint("post the job's config again")
    })?;
    let target_state = TargetState::parse(target_state).ok_or_else(|| {
        sluice_core::Error::internal(format!(
            "state store: unknown target state {target_state:?} of hosted job {name:?}"
        ))
        .with_hint("set the job's state again (pause, resume or stop it)")
    })?;
    Ok(ConnectorRecord {
        name,
        config,
        target_state,
        reset_pending,
        created_at,
        updated_at,
    })
}

/// The refusal of a token whose name or hash is taken.
pub(crate) fn token_taken(name: &str, name_taken: bool) -> sluice_core::Error {
    if name_taken {
        sluice_core::Error::config(format!("a token named {name:?} already exists"))
            .with_hint("revoke it first, or choose another name")
    } else {
        sluice_core::Error::config(format!(
            "the token given for {name:?} is already stored (its hash is taken)"
        ))
        .with_hint("generate a new token")
    }
}

/// How long a live run may go without rewriting its record (it does every second) before
/// it counts as interrupted, wherever it ran.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(30);

/// The state a run is in as far as anyone can tell: a live run (RUNNING, PAUSED, STOPPING)
/// is INTERRUPTED if it ran on this machine and its process is gone, or if it stopped
/// rewriting its record more than [`HEARTBEAT_STALE`] ago (a machine lost, a process
/// frozen).
pub fn observed_state(run: &RunRecord) -> JobState {
    let Some(state) = JobState::parse(&run.state) else {
        return JobState::Interrupted;
    };
    if !state.is_live() {
        return state;
    }
    let here = run.host.is_empty() || run.host == host_name();
    if here && !process_alive(run.pid) {
        return JobState::Interrupted;
    }
    let beat = run.updated_at.as_deref().unwrap_or(&run.started_at);
    let stale = chrono::DateTime::parse_from_rfc3339(beat).is_ok_and(|t| {
        chrono::Utc::now().signed_duration_since(t)
            > chrono::Duration::from_std(HEARTBEAT_STALE).expect("small")
    });
    if stale { JobState::Interrupted } else { state }
}

/// This machine's name, as runs record it (`/proc/sys/kernel/hostname`, else `HOSTNAME`).
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into())
    })
    .clone()
}

/// One line of the audit log: who asked for what, when.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    /// Assigned by the store (0 when recording).
    pub id: i64,
    /// RFC 3339, UTC; set by the store when recording.
    pub at: String,
    pub job: String,
    /// Who: `cli:USER@HOST`, a token's name, `scheduler`, `server`.
    pub actor: String,
    /// What: `run.start`, `run.end`, `stop`, `pause`, `resume`, `config` …
    pub action: String,
    /// Details (redacted before they get here).
    pub detail: String,
}

impl AuditEntry {
    /// An entry to record.
    pub fn new(
        job: impl Into<String>,
        actor: impl Into<String>,
        action: impl Into<String>,
        detail: impl Into<String>,
    ) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: String::new(),
            job: job.into(),
            actor: actor.into(),
            action: action.into(),
            detail: detail.into(),
        }
    }
}

/// Time-limited ownership of a resource (a job, a split) by one holder (a worker).
///
/// `token` is a fencing token: it grows every time the lease changes hands or lapses, so a
/// write that carries the token it was granted under can be refused once anyone else (or
/// the same holder, after a lapse) holds the resource.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Lease {
    pub resource: String,
    pub holder: String,
    pub token: i64,
    /// Milliseconds since the Unix epoch, by the store's clock.
    pub expires_at_ms: i64,
}

/// A process serving a store, as its heartbeats record it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkerRecord {
    pub id: String,
    /// Where its API answers (`host:port`), as Kafka Connect's `worker_id`.
    pub address: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Milliseconds since the Unix epoch, by the store's clock.
    pub heartbeat_at_ms: i64,
    /// How long ago that was, by the store's clock, when read.
    pub heartbeat_age_ms: i64,
}

/// One run of a job.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    /// The generation the run worked on (empty for runs recorded before version 2).
    pub generation: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: Option<String>,
    /// RUNNING, PAUSED, STOPPING while the process runs; FINISHED, STOPPED, ABORTED, FAILED
    /// at its end.
    pub state: String,
    pub pid: u32,
    /// The machine the run's process ran on (empty for runs recorded before version 3).
    pub host: String,
    /// Rows this run committed (so far, while it runs).
    pub rows_written: u64,
    /// Rows earlier runs of the same generation committed.
    pub rows_earlier: u64,
    pub bytes_read: u64,
    /// The error message (redacted) when FAILED.
    pub error: Option<String>,
    /// When the run row was last updated (RFC 3339).
    pub updated_at: Option<String>,
}

/// Per-table figures of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunTable {
    pub table: String,
    pub target: String,
    pub rows_read: u64,
    /// Rows this run committed.
    pub rows_written: u64,
    /// Rows earlier runs of the same generation committed.
    pub rows_written_earlier: u64,
    pub splits_done: u64,
    pub splits_total: u64,
    pub complete: bool,
}

/// A job's generation as the state store keeps it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GenerationInfo {
    pub id: String,
    pub finished: bool,
    /// What the plan depends on and the plan (absent for generations recorded before
    /// version 2).
    pub manifest: Option<serde_json::Value>,
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

/// What [`StateStore::update_run`] and [`StateStore::end_run`] record.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub state: String,
    /// The generation the run works on, once chosen (empty: unchanged).
    pub generation: String,
    pub rows_written: u64,
    pub rows_earlier: u64,
    pub bytes_read: u64,
    pub error: Option<String>,
    pub tables: Vec<RunTable>,
}

/// Held while a job runs; dropping it releases the job's lock in the store.
pub type JobLock = Box<dyn std::any::Any + Send + Sync>;

/// The persistent state of jobs. Implementations commit before returning.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Where the store is, for messages (`.sluice`, `postgres://host/db (schema sluice)`).
    fn describe(&self) -> String;
    /// Takes the job's lock in the store: a second run of the job against the same store is
    /// refused while it is held (also from another machine, for a shared store).
    async fn lock_job(&self, job: &str) -> Result<JobLock>;
    /// Records the start of a run of `job`'s `generation` by process `pid`; returns the run id.
    async fn begin_run(&self, job: &str, generation: &str, pid: u32) -> Result<i64>;
    /// Records a running run's state and figures so far (persisted before they are shown). A
    /// run that already ended is left as it is.
    async fn update_run(&self, run: i64, progress: &RunUpdate) -> Result<()>;
    /// Records the end of a run with its final state, totals and per-table figures.
    async fn end_run(&self, run: i64, end: &RunUpdate) -> Result<()>;
    /// Job names, sorted.
    async fn jobs(&self) -> Result<Vec<String>>;
    /// Runs of `job`, newest first, at most `limit`.
    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>>;
    /// Per-table figures of a run.
    async fn run_tables(&self, run: i64) -> Result<Vec<RunTable>>;
    /// The job's current generation.
    async fn generation(&self, job: &str) -> Result<Option<GenerationInfo>>;
    /// Makes `generation` (with its manifest) the job's current one, unfinished: forgets the
    /// positions of any other generation. Also used to adopt a generation the target holds.
    async fn start_generation(
        &self,
        job: &str,
        generation: &str,
        manifest: &serde_json::Value,
    ) -> Result<()>;
    /// Marks the current generation finished (the next run starts a new one).
    async fn finish_generation(&self, job: &str) -> Result<()>;
    /// Records a split's committed position (and the rows it wrote in total).
    async fn save_position(&self, job: &str, generation: &str, rec: &SplitRecord) -> Result<()>;
    /// Forgets a split's position in `generation` (an offset edit: the split is read again).
    async fn forget_position(&self, job: &str, generation: &str, split: &str) -> Result<()>;
    /// The positions of `job` in `generation`, ordered by split.
    async fn positions(&self, job: &str, generation: &str) -> Result<Vec<SplitRecord>>;

    /// Appends `entry` to the audit log (its `id` and `at` are assigned); returns the id.
    async fn record_audit(&self, entry: &AuditEntry) -> Result<i64>;
    /// Audit entries, newest first, of one job or of all, at most `limit`.
    async fn audit(&self, job: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>>;

    /// Takes the lease on `resource` for `holder` for `ttl`: granted when it is free, lapsed,
    /// or held by `holder` already (then extended, same token). `None` while another holder's
    /// lease runs. A lease that changes hands or had lapsed gets a greater token.
    async fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>>;
    /// Extends a lease still held under its token and not lapsed; `None` if it was lost (the
    /// holder must stop what the lease covered at once).
    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>>;
    /// Gives a lease back (it lapses now; its token stays spent).
    async fn release_lease(&self, lease: &Lease) -> Result<()>;
    /// Every lease, lapsed ones included, by resource.
    async fn leases(&self) -> Result<Vec<Lease>>;

    /// Records that worker `id`, answering at `address`, is alive.
    async fn heartbeat(&self, id: &str, address: &str) -> Result<()>;
    /// Workers by id, with the age of their last heartbeat.
    async fn workers(&self) -> Result<Vec<WorkerRecord>>;

    /// Creates a hosted job; false (and nothing changed) if one of that name exists.
    async fn create_connector(
        &self,
        name: &str,
        config: &serde_json::Value,
        target: TargetState,
    ) -> Result<bool>;
    /// Replaces a hosted job's config (target state kept); false if there is none of that name.
    async fn update_connector_config(&self, name: &str, config: &serde_json::Value)
    -> Result<bool>;
    /// Sets what a hosted job is asked to be in; false if there is none of that name.
    async fn set_target_state(&self, name: &str, target: TargetState) -> Result<bool>;
    /// Sets or clears "the next run starts from scratch"; false if there is none of that name.
    async fn set_reset_pending(&self, name: &str, pending: bool) -> Result<bool>;
    /// The hosted job named `name`.
    async fn connector(&self, name: &str) -> Result<Option<ConnectorRecord>>;
    /// Every hosted job, by name.
    async fn connectors(&self) -> Result<Vec<ConnectorRecord>>;
    /// Forgets a hosted job's config (its runs, positions and audit stay); false if there was
    /// none.
    async fn delete_connector(&self, name: &str) -> Result<bool>;

    /// Records a token (its hash only); returns its id. An error (ErrorKind Config, saying
    /// which) if the name or the hash is taken.
    async fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<i64>;
    /// The token whose hash is `hash`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// Every token, by name.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Deletes the token named `name`; false if there was none.
    async fn revoke_token(&self, name: &str) -> Result<bool>;
}

/// Opens the store a `--state` value names: a `postgres://` (or `postgresql://`) URL, else a
/// directory (created if missing).
pub async fn open(state: &str) -> Result<Arc<dyn StateStore>> {
    if is_postgres(state) {
        Ok(Arc::new(PgStore::open(state).await?))
    } else {
        let dir = Path::new(state).to_path_buf();
        let s = tokio::task::spawn_blocking(move || SqliteStore::open(&dir))
            .await
            .map_err(|e| sluice_core::Error::internal(format!("state store task failed: {e}")))??;
        Ok(Arc::new(s))
    }
}

/// Opens the store only if it exists (for read-only commands such as `status`); a
/// PostgreSQL store always exists once reachable.
pub async fn open_existing(state: &str) -> Result<Option<Arc<dyn StateStore>>> {
    if is_postgres(state) || Path::new(state).join(STATE_FILE).exists() {
        open(state).await.map(Some)
    } else {
        Ok(None)
    }
}

/// Whether a `--state` value is a PostgreSQL URL.
pub fn is_postgres(state: &str) -> bool {
    state.starts_with("postgres://") || state.starts_with("postgresql://")
}

/// Whether process `pid` is alive (Linux: `/proc/PID` exists).
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The last run of `job`, if any.
pub async fn last_run(store: &dyn StateStore, job: &str) -> Result<Option<RunRecord>> {
    Ok(store.runs(job, 1).await?.into_iter().next())
}

/// The time as the stores write it: RFC 3339, UTC, milliseconds.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
