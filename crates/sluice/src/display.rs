//! What the user sees: progress bars on a terminal, periodic log lines otherwise, and the
//! summary at the end of a run.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_engine::{Progress, RunOutcome};
use tokio::sync::oneshot;

use crate::logging::LogTarget;

/// How often bars are redrawn.
const DRAW_EVERY: Duration = Duration::from_millis(200);
/// How often a progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Shows progress until the returned sender is used (or dropped).
pub fn spawn_progress(
    progress: Progress,
    logs: LogTarget,
    bars_allowed: bool,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = oneshot::channel::<()>();
    let tty = bars_allowed && std::io::stderr().is_terminal();
    let handle = tokio::spawn(async move {
        if tty {
            draw_bars(progress, logs, &mut rx).await;
        } else {
            log_lines(progress, &mut rx).await;
        }
    });
    (tx, handle)
}

async fn draw_bars(progress: Progress, logs: LogTarget, rx: &mut oneshot::Receiver<()>) {
    let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
    logs.set_bars(Some(mp.clone()));
    let style =
        ProgressStyle::with_template("{prefix:>24.bold} [{bar:30}] {percent:>3}% {msg} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let mut bars: Vec<ProgressBar> = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let snap = progress.snapshot();
        while bars.len() < snap.len() {
            let b = mp.add(ProgressBar::new(1000));
            b.set_style(style.clone());
            bars.push(b);
        }
        let secs = started.elapsed().as_secs_f64().max(0.001);
        for (b, s) in bars.iter().zip(&snap) {
            b.set_prefix(truncate(&s.name, 24));
            if let Some(f) = s.fraction() {
                b.set_position((f * 1000.0) as u64);
            }
            b.set_message(format!(
                "{} rows {}/s {} splits {}/{}",
                s.rows_read,
                ((s.rows_read as f64) / secs) as u64,
                HumanBytes(s.bytes_read),
                s.splits_done,
                s.splits_total
            ));
            if s.splits_total > 0 && s.splits_done == s.splits_total && !b.is_finished() {
                b.set_position(1000);
                b.finish();
            }
        }
        tokio::select! {
            _ = &mut *rx => break,
            _ = tokio::time::sleep(DRAW_EVERY) => {}
        }
    }
    for b in &bars {
        if !b.is_finished() {
            b.abandon();
        }
    }
    logs.set_bars(None);
}

async fn log_lines(progress: Progress, rx: &mut oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut *rx => return,
            _ = tokio::time::sleep(LOG_EVERY) => {}
        }
        for s in progress.snapshot() {
            if s.splits_total > 0 && s.splits_done < s.splits_total {
                tracing::info!(
                    table = %s.name,
                    rows = s.rows_read,
                    bytes = s.bytes_read,
                    splits_done = s.splits_done,
                    splits_total = s.splits_total,
                    percent = s.fraction().map(|f| (f * 100.0).round()).unwrap_or(0.0),
                    "Progress."
                );
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

/// The end-of-run summary: one line per table, then totals.
pub fn summary(outcome: &RunOutcome) -> String {
    let mut out = String::new();
    if outcome.tables.is_empty() {
        return format!("{:?} before any table was planned.\n", outcome.state);
    }
    let w = outcome
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 40);
    let tw = outcome
        .tables
        .iter()
        .map(|t| t.target.len())
        .max()
        .unwrap_or(6)
        .clamp(6, 40);
    out.push_str(&format!(
        "{:<w$}  {:<tw$}  {:>12}  {:>12}  {:>7}  status\n",
        "table", "target", "rows read", "rows written", "splits"
    ));
    for t in &outcome.tables {
        let status = if t.complete { "done" } else { "incomplete" };
        out.push_str(&format!(
            "{:<w$}  {:<tw$}  {:>12}  {:>12}  {:>3}/{:<3}  {status}\n",
            t.table, t.target, t.rows_read, t.rows_written, t.splits_done, t.splits_total
        ));
    }
    let secs = outcome.elapsed.as_secs_f64();
    let rows = outcome.rows_written();
    let earlier = outcome.rows_written_earlier();
    let earlier = if earlier > 0 {
        format!(" (and {earlier} by earlier runs of this copy)")
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{:?}: {} rows written{earlier}, {} read, {:.2} s, {} rows/s\n",
        outcome.state,
        rows,
        HumanBytes(outcome.bytes_read()),
        secs,
        if secs > 0.0 {
            (rows as f64 / secs) as u64
        } else {
            rows
        }
    ));
    out
}
