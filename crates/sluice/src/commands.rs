//! The subcommands: load, wire, run, report, and choose the exit status.

use std::path::Path;
use std::sync::Arc;

use sluice_connectors::job::{JobFile, JobMode};
use sluice_core::config::{ConfigDoc, redact};
use sluice_core::{Error, LogicalType};
use sluice_engine::{Controller, RunState, STOP_DEADLINE, StopReason};
use sluice_job::{JobHandle, StartOptions, build_spec};
use sluice_state::observed_state;
use tracing::{info, warn};

use crate::cli::{CdcCommand, Cli, Command, OutputFormat, ServerArg};
use crate::{control, display, exit, exit_code_for, logging, remote, server_cmd, verify_cmd};

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
        Command::Stop {
            job,
            kill,
            timeout,
            server,
        } => {
            let what = if kill { "kill" } else { "stop" };
            control_cmd(&cli.state, &server, &job, what, timeout).await
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
        Command::Pause { job, server } => {
            control_cmd(&cli.state, &server, &job, "pause", None).await
        }
        Command::Resume { job, server } => {
            control_cmd(&cli.state, &server, &job, "resume", None).await
        }
        Command::Validate { job } => validate(&job).await,
        Command::Cdc {
            command: CdcCommand::DropSlot { job },
        } => drop_slot(&job, &cli.state).await,
        Command::Status {
            job,
            format,
            server: ServerArg { server: Some(url) },
        } => remote::status(&url, job.as_deref(), format).await,
        Command::Status { job, format, .. } => status(&cli.state, job.as_deref(), format).await,
        Command::Server {
            listen,
            jobs,
            tls_cert,
            tls_key,
            insecure,
            advertised_address,
        } => {
            let tls = tls_cert.zip(tls_key);
            server_cmd::run(
                &cli.state,
                server_cmd::Args {
                    listen,
                    jobs,
                    tls,
                    insecure,
                    advertised_address,
                },
            )
            .await
        }
        Command::Token { command } => server_cmd::token(&cli.state, command).await,
    }
}

/// Prints an error with its hint (redacted) and returns its exit status.
pub(crate) fn report(e: &Error) -> u8 {
    report_in(e, "")
}

/// [`report`] with a prefix naming what failed.
fn report_in(e: &Error, what: &str) -> u8 {
    eprintln!("error: {what}{}", redact(e.message()));
    if let Some(h) = e.hint() {
        eprintln!("  = help: {}", redact(h));
    }
    exit_code_for(e.kind())
}

/// [`report`], pointing into the job file when the error names an option it has
/// (`file:line:col` with the line shown).
fn report_at(e: &Error, doc: &ConfigDoc) -> u8 {
    match e.key().filter(|k| doc.has(k)) {
        Some(k) => {
            let located = doc.error_at(k, e.message(), e.hint().map(str::to_string));
            eprintln!("error: {}", located.render());
            exit_code_for(e.kind())
        }
        None => report(e),
    }
}

fn load(path: &Path) -> Result<JobFile, u8> {
    load_doc(path).map(|(job, _)| job)
}

fn load_doc(path: &Path) -> Result<(JobFile, ConfigDoc), u8> {
    JobFile::load(path).map_err(|e| {
        eprintln!("error: {}", e.render());
        exit::USAGE
    })
}

async fn control_cmd(
    state: &str,
    server: &ServerArg,
    job: &str,
    what: &str,
    timeout: Option<std::time::Duration>,
) -> u8 {
    let done = match &server.server {
        Some(url) => remote::command(url, job, what, timeout).await,
        None => control::command(state, job, what, timeout).await,
    };
    match done {
        Ok(()) => exit::OK,
        Err(e) => report(&e),
    }
}

async fn run(
    path: &Path,
    state_dir: &str,
    logs: logging::LogTarget,
    bars: bool,
    from_scratch: bool,
) -> u8 {
    let (job, doc) = match load_doc(path) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let document = doc.value.clone();
    let store = match sluice_state::open(state_dir).await {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    let name = job.job.name.clone();
    // The job's lock in the store comes before the control socket: a second run must not
    // take over the first one's socket.
    let lock = match store.lock_job(&name).await {
        Ok(l) => l,
        Err(e) => return report(&e),
    };
    info!(job = %name, "Job started.");
    let verify_job = job.clone();
    let options = StartOptions {
        from_scratch,
        actor: format!(
            "cli:{}@{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            sluice_state::host_name()
        ),
        verify: job.job.verify.enabled().then(|| -> sluice_job::Verifier {
            Box::new(move || Box::pin(async move { verify_cmd::after_run(&verify_job).await }))
        }),
    };
    let handle = JobHandle::start(job.clone(), document, options, store, Some(lock));
    let ctl = handle.controller();
    let streaming = job.job.mode == JobMode::Streaming;
    let signals = tokio::spawn(watch_signals(ctl.clone(), streaming));
    let _control = match control::serve(state_dir, &name, ctl.clone()) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(error = %e, "Cannot serve `sluice stop`; Ctrl-C and SIGTERM still stop the job.");
            None
        }
    };
    let (done_tx, display) = display::spawn_progress(handle.progress().clone(), logs, bars);
    let done = handle.wait().await;
    let _ = done_tx.send(());
    let _ = display.await;
    signals.abort();
    let outcome = &done.outcome;
    outln!("{}", display::summary(outcome).trim_end());
    match &done.verify {
        Some(Ok(true)) => info!(job = %name, "Verify: source and target are identical."),
        Some(Ok(false)) => {
            report(
                &Error::data("verify found differences between source and target")
                    .with_hint("`sluice verify JOB.toml --repair` fixes the target"),
            );
            return exit::DIFFERENCES;
        }
        Some(Err(e)) => return report_in(e, "verify after the run: "),
        None => {}
    }
    if done.bad_records > 0 {
        let to = job
            .errors
            .dead_letter
            .as_ref()
            .map(|d| format!(" to {}", d.path.display()))
            .unwrap_or_default();
        warn!(count = done.bad_records, "Bad records were set aside{to}.");
    }
    match outcome.state {
        RunState::Finished => {
            info!(job = %name, "Job finished.");
            exit::OK
        }
        RunState::Stopped | RunState::Aborted => {
            let why = outcome
                .stop_reason
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default();
            if streaming {
                warn!(job = %name, reason = %why, "Stream stopped at its last checkpoint; run it again to go on from there.");
            } else {
                warn!(job = %name, reason = %why, "Job stopped before the end; run it again to resume (finished splits are kept).");
            }
            exit::STOPPED
        }
        _ => match &outcome.error {
            Some(e) => report_at(e, &doc),
            None => exit::FAILED,
        },
    }
}

/// First SIGINT, SIGTERM or SIGHUP (the terminal closed): graceful stop, which becomes an
/// abort past [`STOP_DEADLINE`]. Second: abort now.
async fn watch_signals(ctl: Arc<Controller>, streaming: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        warn!("Cannot install signal handlers; Ctrl-C will kill the job without a clean stop.");
        return;
    };
    let mut count = 0;
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        count += 1;
        if count == 1 {
            if streaming {
                warn!(
                    signal = name,
                    "Stopping: committing the last checkpoint. Press Ctrl-C again to abort."
                );
            } else {
                warn!(
                    signal = name,
                    "Stopping: rolling back unfinished splits. Press Ctrl-C again to abort."
                );
            }
            ctl.stop_within(StopReason::Requested(name.to_string()), STOP_DEADLINE);
        } else {
            warn!(signal = name, "Aborting now.");
            ctl.abort();
        }
    }
}

/// Plans the job as a run would, with the source's and the sink's own checks (privileges,
/// settings): the source's before splits are listed (which reads), the sink's last.
async fn drop_slot(path: &Path, state: &str) -> u8 {
    let (job, doc) = match load_doc(path) {
        Ok(j) => j,
        Err(code) => return code,
    };
    if !job.source.is_cdc() {
        eprintln!(
            "error: job {:?} does not capture changes (read = \"cdc\"): it holds no slot",
            job.job.name
        );
        return exit::USAGE;
    }
    let store = match sluice_state::open(state).await {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    let actor = format!(
        "cli:{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        sluice_state::host_name()
    );
    match sluice_job::release_upstream(&job, store, &actor).await {
        Ok(Some(what)) => {
            outln!("dropped {what}");
            exit::OK
        }
        Ok(None) => {
            outln!(
                "job {:?} holds no replication slot or publication",
                job.job.name
            );
            exit::OK
        }
        Err(e) => report_at(&e, &doc),
    }
}

/// `v` as one line of JSON, cut to about `max` characters.
fn short_json(v: &serde_json::Value, max: usize) -> String {
    let s = v.to_string();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

async fn validate(path: &Path) -> u8 {
    let (job, doc) = match load_doc(path) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let spec = match build_spec(&job) {
        Ok(s) => s,
        Err(e) => return report_at(&e, &doc),
    };
    let planned = sluice_job::check(&spec).await;
    let _ = spec.source.close().await;
    let planned = match planned {
        Ok(p) => p,
        Err(e) => return report_at(&e, &doc),
    };
    let mode = match spec.streaming {
        Some(s) => format!(
            ", streaming: a checkpoint every {}, each within {}",
            humantime::format_duration(s.interval),
            humantime::format_duration(s.timeout)
        ),
        None => String::new(),
    };
    outln!(
        "job {}: {} → {} ({} write), {} table(s){mode}",
        job.job.name,
        job.source.type_name(),
        job.sink.type_name(),
        job.sink.write_mode().as_str(),
        planned.len()
    );
    for t in &planned {
        outln!(
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
        outln!("  {:<30} {:<28} target type", "column", "logical type");
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
            outln!("  {:<30} {:<28} {target}{notes}", f.name(), ty);
        }
    }
    outln!("\nOK: configuration valid, source readable, target writable, every column mapped.");
    exit::OK
}

async fn status(state_dir: &str, job: Option<&str>, format: OutputFormat) -> u8 {
    let store = match sluice_state::open_existing(state_dir).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            match format {
                OutputFormat::Json => outln!("{{\"jobs\":[]}}"),
                OutputFormat::Text => {
                    outln!("no jobs in {state_dir} (nothing has run here yet)")
                }
            }
            return exit::OK;
        }
        Err(e) => return report(&e),
    };
    let names = match job {
        Some(j) => vec![j.to_string()],
        None => match store.jobs().await {
            Ok(n) => n,
            Err(e) => return report(&e),
        },
    };
    let limit = if job.is_some() { 20 } else { 1 };
    let mut out = Vec::new();
    for name in &names {
        let runs = match store.runs(name, limit).await {
            Ok(r) => r,
            Err(e) => return report(&e),
        };
        if job.is_some() && runs.is_empty() {
            let e = Error::config(format!("no job named {name:?} in {state_dir}"))
                .with_hint("run `sluice status` to list the jobs");
            return report(&e);
        }
        let runs: Vec<_> = runs
            .into_iter()
            .map(|mut r| {
                r.state = observed_state(&r).as_str().into();
                r
            })
            .collect();
        let tables = match runs.first() {
            Some(r) if job.is_some() => store.run_tables(r.id).await.unwrap_or_default(),
            _ => Vec::new(),
        };
        // The current generation's committed splits (what a resume would skip).
        let generation = store.generation(name).await.ok().flatten();
        let splits = match (&generation, job) {
            (Some(g), Some(_)) => store.positions(name, &g.id).await.unwrap_or_default(),
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
                        "generation": generation.as_ref().map(|g| {
                            serde_json::json!({"id": g.id, "finished": g.finished})
                        }),
                        "splits": splits,
                    })
                })
                .collect();
            outln!("{}", serde_json::json!({ "jobs": jobs }));
        }
        OutputFormat::Text => {
            if job.is_none() {
                outln!(
                    "{:<30} {:<12} {:<26} {:>12}",
                    "job",
                    "last run",
                    "started",
                    "rows"
                );
            }
            for (name, runs, tables, generation, splits) in &out {
                if job.is_none() {
                    if let Some(r) = runs.first() {
                        outln!(
                            "{:<30} {:<12} {:<26} {:>12}",
                            name,
                            r.state,
                            r.started_at,
                            r.rows_written
                        );
                    }
                    continue;
                }
                outln!("job {name}\n");
                outln!(
                    "{:>5}  {:<12} {:<26} {:<26} {:>12}  error",
                    "run",
                    "state",
                    "started",
                    "ended",
                    "rows"
                );
                for r in runs {
                    outln!(
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
                    outln!("\nlast run, per table:");
                    for t in tables {
                        outln!(
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
                if let Some(g) = generation {
                    let (g, finished) = (&g.id, g.finished);
                    let what = if finished {
                        "finished"
                    } else {
                        "unfinished: `sluice run` resumes it"
                    };
                    outln!(
                        "\ngeneration {g} ({what}), {} split(s) committed, {} rows:",
                        splits.len(),
                        splits.iter().map(|s| s.rows).sum::<u64>()
                    );
                    for sp in splits {
                        outln!(
                            "  {:<40} {:>12} rows  {}  at {}",
                            sp.split,
                            sp.rows,
                            if sp.position.done { "done" } else { "partial" },
                            sp.updated_at
                        );
                        // Where a split that goes on stands (a stream's LSN and source commit
                        // time, a chunk's last key), in the source's own form.
                        if !sp.position.done && !sp.position.value.is_null() {
                            outln!("    position {}", short_json(&sp.position.value, 160));
                        }
                    }
                }
            }
        }
    }
    exit::OK
}
