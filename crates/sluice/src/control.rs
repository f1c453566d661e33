//! Talking to a running job from another terminal: a Unix socket per running job in the state
//! directory (`run/<job>.sock`), one line per request and one line per answer. Also the job
//! lock that keeps two runs of one job apart.
//!
//! Requests: `stop`, `kill`, `pause`, `resume`, `state`. Answers: `ok <STATE>` or
//! `error <message>`. A request is answered as soon as the controller has taken it, so a stop
//! is acknowledged within milliseconds; `sluice stop` then waits for the run to end (the
//! socket closes) up to its `--timeout`, and past it sends `kill`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::{Error, ErrorKind, Result};
use sluice_engine::{Controller, PERSIST_WAIT, RunState, STOP_DEADLINE, StopReason};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

/// The directory of the running jobs' sockets: `<state dir>/run`, or for a PostgreSQL state
/// store a directory under the system's temporary directory named after the store.
pub fn run_dir(state: &str) -> PathBuf {
    if sluice_state::is_postgres(state) {
        std::env::temp_dir().join(format!(
            "sluice-run-{:016x}",
            sluice_core::naming::stable_hash(state)
        ))
    } else {
        Path::new(state).join("run")
    }
}

/// The socket of `job`'s running instance.
pub fn socket_path(state: &str, job: &str) -> PathBuf {
    run_dir(state).join(format!("{}.sock", sluice_state::file_stem(job)))
}

/// Serves control requests for a running job until dropped.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts listening on the job's socket (the job lock must be held).
pub fn serve(state: &str, job: &str, ctl: Arc<Controller>) -> Result<ControlServer> {
    let dir = run_dir(state);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::from_io(e, format!("cannot create {}", dir.display())))?;
    let path = socket_path(state, job);
    // A socket left by a killed run: the lock proves nobody serves it.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| Error::from_io(e, format!("cannot listen on {}", path.display())))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let ctl = ctl.clone();
            tokio::spawn(async move {
                let _ = handle(stream, &ctl).await;
            });
        }
    });
    Ok(ControlServer { path, task })
}

fn state_name(s: RunState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn handle(stream: UnixStream, ctl: &Arc<Controller>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match line.trim() {
            "stop" => {
                info!("Stop requested through `sluice stop`.");
                ctl.stop_within(StopReason::Requested("sluice stop".into()), STOP_DEADLINE);
                // Persist, then publish: the answer comes once the store says STOPPING.
                ctl.persisted(PERSIST_WAIT).await;
                format!("ok {}", state_name(ctl.state()))
            }
            "kill" => {
                warn!("Kill requested through `sluice stop --kill`.");
                ctl.abort();
                format!("ok {}", state_name(ctl.state()))
            }
            "pause" if ctl.pause() => {
                info!("Paused through `sluice pause`.");
                ctl.persisted(PERSIST_WAIT).await;
                "ok PAUSED".to_string()
            }
            "resume" if ctl.resume() => {
                info!("Resumed through `sluice resume`.");
                ctl.persisted(PERSIST_WAIT).await;
                "ok RUNNING".to_string()
            }
            "pause" | "resume" => format!("error the job is {}", state_name(ctl.state())),
            "state" => format!("ok {}", state_name(ctl.state())),
            other => format!("error unknown request {other:?}"),
        };
        w.write_all(format!("{answer}\n").as_bytes()).await?;
    }
    Ok(())
}

/// Sends one request to `job`'s running instance; returns the answer and the open stream.
async fn request(state: &str, job: &str, what: &str) -> Result<(String, UnixStream)> {
    let path = socket_path(state, job);
    let not_running = || {
        Error::new(
            ErrorKind::Config,
            format!("job {job:?} is not running in {}", state),
        )
        .with_hint("`sluice status` lists the jobs; --state must match the one `sluice run` used")
    };
    let mut stream = UnixStream::connect(&path)
        .await
        .map_err(|_| not_running())?;
    stream
        .write_all(format!("{what}\n").as_bytes())
        .await
        .map_err(|e| Error::from_io(e, "control socket"))?;
    let mut line = String::new();
    let mut reader = BufReader::new(&mut stream);
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| Error::from_io(e, "control socket"))?;
    if line.is_empty() {
        return Err(not_running());
    }
    Ok((line.trim().to_string(), stream))
}

/// `sluice stop|pause|resume`: returns the exit status.
pub async fn command(state: &str, job: &str, what: &str, timeout: Option<Duration>) -> Result<()> {
    let started = Instant::now();
    let (answer, _stream) = request(state, job, what).await?;
    if let Some(msg) = answer.strip_prefix("error ") {
        return Err(Error::config(format!("{what}: {msg}")));
    }
    outln!(
        "{what}: acknowledged in {} ms ({})",
        started.elapsed().as_millis(),
        &answer[3..]
    );
    if what != "stop" && what != "kill" {
        return Ok(());
    }
    // Wait for the run to end: the socket disappears when the process exits.
    let deadline = timeout.map(|t| started + t);
    let path = socket_path(state, job);
    let mut killed = what == "kill";
    loop {
        if UnixStream::connect(&path).await.is_err() {
            outln!(
                "{job}: ended after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if let Some(d) = deadline
            && Instant::now() >= d
            && !killed
        {
            outln!("{job}: still running at the deadline; aborting it");
            let _ = request(state, job, "kill").await;
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
