//! The subcommands: load, wire, run, report, and choose the exit status.

use std::path::Path;
use std::sync::Arc;

use sluice_connectors::job::JobFile;
use sluice_core::JobContext;
use sluice_core::config::redact;
use sluice_core::{Error, LogicalType};
use sluice_engine::{
    CheckpointLog, Controller, Progress, RunState, StopReason, plan_tables, run_batch,
};
use sluice_state::{RunEnd, RunTable, SplitRecord, SqliteStore, StateStore, process_alive};
use tracing::{error, info, warn};

use crate::cli::{Cli, Command, OutputFormat};
use crate::{control, display, exit, exit_code_for, logging, verify_cmd, wire};

pub async fn dispatch(cli: Cli) -> u8 {
    let logs = match logging::init(&cli.log_level, cli.log_format) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    match cli.command {
        Command::Run {
            job,
            no_progress,
            from_scratch,
        } => run(&job, &cli.state, logs, !no_progress, from_scratch).await,
        Command::Stop { job, kill, timeout } => {
            let what = if kill { "kill" } else { "stop" };
            control_cmd(&cli.state, &job, what, timeout).await
        }
        Command::Verify {
            job,
            source,
            target,
            table,
            format,
            repair,
            dry_run,
            max_diffs,
        } => {
            let loaded = match (&job, &source, &target) {
                (Some(path), _, _) => load(path),
                (None, Some(src), Some(dst)) => verify_cmd::adhoc_job(src, dst, &table),
                _ => {
                    eprintln!("error: give a job file, or --source, --target and --table");
                    return exit::USAGE;
                }
            };
            let job = match loaded {
                Ok(j) => j,
                Err(code) => return code,
            };
            let opts = verify_cmd::VerifyArgs {
                json: format == OutputFormat::Json,
                repair,
                dry_run,
                max_diffs,
            };
            verify_cmd::run(&job, &opts).await
        }
        Command::Pause { job } => control_cmd(&cli.state, &job, "pause", None).await,
        Command::Resume { job } => control_cmd(&cli.state, &job, "resume", None).await,
        Command::Validate { job } => validate(&job).await,
        Command::Status { job, format } => status(&cli.state, job.as_deref(), format),
    }
}

/// Prints an error with its hint (redacted) and returns its exit status.
fn report(e: &Error) -> u8 {
    eprintln!("error: {}", redact(e.message()));
    if let Some(h) = e.hint() {
        eprintln!("  = help: {}", redact(h));
    }
    exit_code_for(e.kind())
}

fn load(path: &Path) -> Result<JobFile, u8> {
    JobFile::load(path).map(|(job, _)| job).map_err(|e| {
        eprintln!("error: {}", e.render());
        exit::USAGE
    })
}

async fn control_cmd(
    state: &Path,
    job: &str,
    what: &str,
    timeout: Option<std::time::Duration>,
) -> u8 {
    match control::command(state, job, what, timeout).await {
        Ok(()) => exit::OK,
        Err(e) => report(&e),
    }
}

/// The state-store side of the engine's checkpoint log.
struct StoreLog {
    store: Arc<SqliteStore>,
    job: String,
    generation: String,
}

impl CheckpointLog for StoreLog {
    fn load(&self) -> sluice_core::Result<Vec<(sluice_core::Position, u64)>> {
        Ok(self
            .store
            .positions(&self.job, &self.generation)?
            .into_iter()
            .map(|r| (r.position, r.rows))
            .collect())
    }
    fn save(
        &self,
        table: &str,
        position: &sluice_core::Position,
        rows: u64,
    ) -> sluice_core::Result<()> {
        let rec = SplitRecord {
            split: position.split.clone(),
            table: table.to_string(),
            position: position.clone(),
            rows,
            updated_at: String::new(),
        };
        self.store.save_position(&self.job, &self.generation, &rec)
    }
}

/// The job's generation: the unfinished one to resume, or a new one.
fn choose_generation(
    store: &SqliteStore,
    job: &str,
    from_scratch: bool,
) -> sluice_core::Result<(String, bool)> {
    match store.generation(job)? {
        Some((g, false)) if !from_scratch => Ok((g, true)),
        _ => {
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let g = format!("{millis}-{}", std::process::id());
            store.start_generation(job, &g)?;
            Ok((g, false))
        }
    }
}

async fn run(
    path: &Path,
    state_dir: &Path,
    logs: logging::LogTarget,
    bars: bool,
    from_scratch: bool,
) -> u8 {
    let job = match load(path) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let mut spec = match wire::build_spec(&job) {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    let store = match SqliteStore::open(state_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => return report(&e),
    };
    let name = spec.name.clone();
    let _lock = match control::lock_job(state_dir, &name) {
        Ok(l) => l,
        Err(e) => return report(&e),
    };
    let (generation, resuming) = match choose_generation(&store, &name, from_scratch) {
        Ok(g) => g,
        Err(e) => return report(&e),
    };
    let run_id = match store.begin_run(&name, std::process::id()) {
        Ok(id) => id,
        Err(e) => return report(&e),
    };
    spec.context = JobContext {
        job: name.clone(),
        generation: generation.clone(),
    };
    spec.checkpoints = Arc::new(StoreLog {
        store: store.clone(),
        job: name.clone(),
        generation: generation.clone(),
    });
    if resuming {
        info!(job = %name, run = run_id, generation = %generation, "Job started; resuming the unfinished run.");
    } else {
        info!(job = %name, run = run_id, generation = %generation, "Job started.");
    }

    let bad_records = spec.bad_records.clone();
    let ctl = Arc::new(Controller::new());
    let signals = tokio::spawn(watch_signals(ctl.clone()));
    let _control = match control::serve(state_dir, &name, ctl.clone()) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(error = %e, "Cannot serve `sluice stop`; Ctrl-C and SIGTERM still stop the job.");
            None
        }
    };
    let progress = Progress::new();
    let (done_tx, display) = display::spawn_progress(progress.clone(), logs, bars);
    let outcome = run_batch(spec, ctl.clone(), progress).await;
    let _ = done_tx.send(());
    let _ = display.await;
    signals.abort();

    // `[job] verify = true`: a finished copy that does not verify is a failed run.
    let mut verify_failed: Option<sluice_core::Error> = None;
    if outcome.state == RunState::Finished && job.job.verify {
        match verify_cmd::after_run(&job).await {
            Ok(true) => info!(job = %name, "Verify: source and target are identical."),
            Ok(false) => {
                verify_failed = Some(
                    sluice_core::Error::data("verify found differences between source and target")
                        .with_hint("`sluice verify JOB.toml --repair` fixes the target"),
                )
            }
            Err(e) => verify_failed = Some(e.context("verify after the run")),
        }
    }
    let state = match outcome.state {
        _ if verify_failed.is_some() => "FAILED",
        RunState::Finished => "FINISHED",
        RunState::Stopped => "STOPPED",
        RunState::Aborted => "ABORTED",
        _ => "FAILED",
    };
    let tables: Vec<RunTable> = outcome
        .tables
        .iter()
        .map(|t| RunTable {
            table: t.table.clone(),
            target: t.target.clone(),
            rows_read: t.rows_read,
            rows_written: t.rows_written,
            splits_done: t.splits_done as u64,
            splits_total: t.splits_total as u64,
            complete: t.complete,
        })
        .collect();
    let end = RunEnd {
        state,
        rows_written: outcome.rows_written(),
        bytes_read: outcome.bytes_read(),
        error: outcome
            .error
            .as_ref()
            .or(verify_failed.as_ref())
            .map(|e| redact(&e.to_string())),
        tables: &tables,
    };
    // Invariant: the run's end is persisted before it is reported.
    if let Err(e) = store.end_run(run_id, &end) {
        error!(error = %e, "Recording the end of the run failed.");
    }
    if outcome.state == RunState::Finished
        && let Err(e) = store.finish_generation(&name)
    {
        error!(error = %e, "Recording that the job finished failed; the next run resumes it.");
    }
    print!("{}", display::summary(&outcome));
    if let Some(e) = &verify_failed {
        let code = report(e);
        return if e.kind() == sluice_core::ErrorKind::Data {
            exit::DIFFERENCES
        } else {
            code
        };
    }
    if bad_records.count() > 0 {
        let to = bad_records
            .dead_letter
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default();
        warn!(
            count = bad_records.count(),
            "Bad records were set aside{to}."
        );
    }
    match outcome.state {
        RunState::Finished => {
            info!(job = %name, "Job finished.");
            exit::OK
        }
        RunState::Stopped | RunState::Aborted => {
            let why = outcome
                .stop_reason
                .map(|r| r.to_string())
                .unwrap_or_default();
            warn!(job = %name, reason = %why, "Job stopped before the end; run it again to resume (finished splits are kept).");
            exit::STOPPED
        }
        _ => match &outcome.error {
            Some(e) => report(e),
            None => exit::FAILED,
        },
    }
}

/// First SIGINT/SIGTERM: graceful stop. Second: abort.
async fn watch_signals(ctl: Arc<Controller>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("Cannot install signal handlers; Ctrl-C will kill the job without a clean stop.");
        return;
    };
    let mut count = 0;
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        count += 1;
        if count == 1 {
            warn!(
                signal = name,
                "Stopping: finishing the batches in hand, rolling back unfinished splits. Press Ctrl-C again to abort."
            );
            ctl.stop(StopReason::Requested(name.to_string()));
        } else {
            warn!(signal = name, "Aborting now.");
            ctl.abort();
        }
    }
}

async fn validate(path: &Path) -> u8 {
    let job = match load(path) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let spec = match wire::build_spec(&job) {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    let planned = match plan_tables(&spec, &Progress::new()).await {
        Ok(p) => p,
        Err(e) => return report(&e),
    };
    let _ = spec.source.close().await;
    println!(
        "job {}: {} → {} ({} write), {} table(s)",
        job.job.name,
        job.source.type_name(),
        job.sink.type_name(),
        serde_json::to_value(job.sink.write_mode())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        planned.len()
    );
    for t in &planned {
        println!(
            "\n{} → {}  ({} split(s){})",
            t.source.schema.id,
            t.plan.target,
            t.splits.len(),
            t.source
                .estimated_rows
                .map(|r| format!(", ~{r} rows"))
                .unwrap_or_default()
        );
        let src_fields = t.source.schema.arrow.fields();
        println!("  {:<30} {:<28} target type", "column", "logical type");
        for f in t.plan.schema.arrow.fields() {
            let ty = LogicalType::of_field(f)
                .map(|t| t.to_string())
                .unwrap_or_else(|e| format!("unsupported ({e})"));
            let from = src_fields
                .iter()
                .find(|s| s.name() == f.name())
                .and_then(|s| sluice_core::types::native_type(s).map(|(e, n)| format!("{e}:{n}")))
                .unwrap_or_default();
            let target = t
                .target_types
                .as_ref()
                .and_then(|tt| tt.iter().find(|(c, _)| c == f.name()))
                .map(|(_, ty)| ty.clone())
                .unwrap_or_else(|| "-".to_string());
            let mut notes = Vec::new();
            if !f.is_nullable() {
                notes.push("not null".to_string());
            }
            if t.plan.schema.primary_key.contains(f.name()) {
                notes.push("primary key".to_string());
            }
            if !from.is_empty() {
                notes.push(format!("from {from}"));
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", notes.join(", "))
            };
            println!("  {:<30} {:<28} {target}{notes}", f.name(), ty);
        }
    }
    println!("\nOK: configuration valid, source reachable, every column mapped.");
    exit::OK
}

fn status(state_dir: &Path, job: Option<&str>, format: OutputFormat) -> u8 {
    let store = match SqliteStore::open_existing(state_dir) {
        Ok(Some(s)) => s,
        Ok(None) => {
            match format {
                OutputFormat::Json => println!("{{\"jobs\":[]}}"),
                OutputFormat::Text => println!(
                    "no jobs in {} (nothing has run here yet)",
                    state_dir.display()
                ),
            }
            return exit::OK;
        }
        Err(e) => return report(&e),
    };
    let names = match job {
        Some(j) => vec![j.to_string()],
        None => match store.jobs() {
            Ok(n) => n,
            Err(e) => return report(&e),
        },
    };
    let limit = if job.is_some() { 20 } else { 1 };
    let mut out = Vec::new();
    for name in &names {
        let runs = match store.runs(name, limit) {
            Ok(r) => r,
            Err(e) => return report(&e),
        };
        if job.is_some() && runs.is_empty() {
            let e = Error::config(format!("no job named {name:?} in {}", state_dir.display()))
                .with_hint("run `sluice status` to list the jobs");
            return report(&e);
        }
        let runs: Vec<_> = runs
            .into_iter()
            .map(|mut r| {
                if r.state == "RUNNING" && !process_alive(r.pid) {
                    r.state = "INTERRUPTED".into();
                }
                r
            })
            .collect();
        let tables = match runs.first() {
            Some(r) if job.is_some() => store.run_tables(r.id).unwrap_or_default(),
            _ => Vec::new(),
        };
        // The current generation's committed splits (what a resume would skip).
        let generation = store.generation(name).ok().flatten();
        let splits = match (&generation, job) {
            (Some((g, _)), Some(_)) => store.positions(name, g).unwrap_or_default(),
            _ => Vec::new(),
        };
        out.push((name.clone(), runs, tables, generation, splits));
    }
    match format {
        OutputFormat::Json => {
            let jobs: Vec<_> = out
                .iter()
                .map(|(n, runs, tables, generation, splits)| {
                    serde_json::json!({
                        "name": n,
                        "runs": runs,
                        "last_run_tables": tables,
                        "generation": generation.as_ref().map(|(g, done)| {
                            serde_json::json!({"id": g, "finished": done})
                        }),
                        "splits": splits,
                    })
                })
                .collect();
            println!("{}", serde_json::json!({ "jobs": jobs }));
        }
        OutputFormat::Text => {
            if job.is_none() {
                println!(
                    "{:<30} {:<12} {:<26} {:>12}",
                    "job", "last run", "started", "rows"
                );
            }
            for (name, runs, tables, generation, splits) in &out {
                if job.is_none() {
                    if let Some(r) = runs.first() {
                        println!(
                            "{:<30} {:<12} {:<26} {:>12}",
                            name, r.state, r.started_at, r.rows_written
                        );
                    }
                    continue;
                }
                println!("job {name}\n");
                println!(
                    "{:>5}  {:<12} {:<26} {:<26} {:>12}  error",
                    "run", "state", "started", "ended", "rows"
                );
                for r in runs {
                    println!(
                        "{:>5}  {:<12} {:<26} {:<26} {:>12}  {}",
                        r.id,
                        r.state,
                        r.started_at,
                        r.ended_at.as_deref().unwrap_or("-"),
                        r.rows_written,
                        r.error.as_deref().unwrap_or("")
                    );
                }
                if !tables.is_empty() {
                    println!("\nlast run, per table:");
                    for t in tables {
                        println!(
                            "  {:<30} → {:<30} {:>12} rows  splits {}/{}  {}",
                            t.table,
                            t.target,
                            t.rows_written,
                            t.splits_done,
                            t.splits_total,
                            if t.complete { "done" } else { "incomplete" }
                        );
                    }
                }
                if let Some((g, finished)) = generation {
                    let what = if *finished {
                        "finished"
                    } else {
                        "unfinished: `sluice run` resumes it"
                    };
                    println!(
                        "\ngeneration {g} ({what}), {} split(s) committed:",
                        splits.len()
                    );
                    for sp in splits {
                        println!(
                            "  {:<40} {:>12} rows  {}  at {}",
                            sp.split,
                            sp.rows,
                            if sp.position.done { "done" } else { "partial" },
                            sp.updated_at
                        );
                    }
                }
            }
        }
    }
    exit::OK
}
