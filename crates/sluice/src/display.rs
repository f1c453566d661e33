//! What the user sees: progress bars on a terminal, periodic log lines otherwise, and the
//! summary at the end of a run.
//!
//! A job of up to [`MAX_TABLE_BARS`] tables shows a bar (or logs a line) per table. A larger
//! one shows a bar for all tables plus bars for the tables in progress, at most
//! [`MAX_TABLE_BARS`]: a bar per table made every redraw, and so a run, cost time in
//! proportion to the number of tables (10,000 tables took minutes to draw).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_engine::{Progress, RunOutcome, TableSnapshot};
use tokio::sync::oneshot;

use crate::logging::LogTarget;

/// How often bars are redrawn.
const DRAW_EVERY: Duration = Duration::from_millis(200);
/// How often a progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Tables shown (or logged) one by one; beyond this, a total and the tables in progress.
const MAX_TABLE_BARS: usize = 10;

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
    let mut bars = Bars::new(mp);
    loop {
        bars.frame(&progress.snapshot());
        tokio::select! {
            _ = &mut *rx => break,
            _ = tokio::time::sleep(DRAW_EVERY) => {}
        }
    }
    bars.end();
    logs.set_bars(None);
}

/// The bars on screen.
struct Bars {
    mp: MultiProgress,
    style: ProgressStyle,
    started: Instant,
    /// (index in the snapshot, bar), in the order shown.
    tables: Vec<(usize, ProgressBar)>,
    /// The bar for all tables, once there are more than [`MAX_TABLE_BARS`].
    total: Option<ProgressBar>,
}

fn is_done(s: &TableSnapshot) -> bool {
    s.splits_total > 0 && s.splits_done == s.splits_total
}

fn is_started(s: &TableSnapshot) -> bool {
    s.rows_read > 0 || s.bytes_read > 0 || s.splits_done > 0
}

/// The sum of `snap`, and how many tables are done.
fn totals(snap: &[TableSnapshot]) -> (TableSnapshot, usize) {
    let mut t = TableSnapshot {
        name: format!("all {} tables", snap.len()),
        ..TableSnapshot::default()
    };
    let mut done = 0;
    for s in snap {
        t.rows_read += s.rows_read;
        t.rows_written += s.rows_written;
        t.bytes_read += s.bytes_read;
        t.rows_total += s.rows_total;
        t.bytes_total += s.bytes_total;
        t.splits_done += s.splits_done;
        t.splits_total += s.splits_total;
        done += usize::from(is_done(s));
    }
    (t, done)
}

impl Bars {
    fn new(mp: MultiProgress) -> Bars {
        let style = ProgressStyle::with_template(
            "{prefix:>24.bold} [{bar:30}] {percent:>3}% {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Bars {
            mp,
            style,
            started: Instant::now(),
            tables: Vec::new(),
            total: None,
        }
    }

    fn bar(&self) -> ProgressBar {
        let b = ProgressBar::new(1000);
        b.set_style(self.style.clone());
        b
    }

    /// Brings the bars up to date with `snap`.
    fn frame(&mut self, snap: &[TableSnapshot]) {
        if snap.len() > MAX_TABLE_BARS && self.total.is_none() {
            for (_, b) in self.tables.drain(..) {
                b.finish_and_clear();
                self.mp.remove(&b);
            }
            self.total = Some(self.mp.insert(0, self.bar()));
        }
        if self.total.is_some() {
            // Many tables: a bar for each table in progress; a finished one makes room.
            let mp = &self.mp;
            self.tables.retain(|(i, b)| {
                let finished = snap.get(*i).is_none_or(is_done);
                if finished {
                    b.finish_and_clear();
                    mp.remove(b);
                }
                !finished
            });
            for (i, s) in snap.iter().enumerate() {
                if self.tables.len() >= MAX_TABLE_BARS {
                    break;
                }
                if is_started(s) && !is_done(s) && !self.tables.iter().any(|(j, _)| *j == i) {
                    let b = self.mp.add(self.bar());
                    self.tables.push((i, b));
                }
            }
        } else {
            while self.tables.len() < snap.len() {
                let b = self.mp.add(self.bar());
                self.tables.push((self.tables.len(), b));
            }
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        for (i, b) in &self.tables {
            show(b, &snap[*i], secs, None);
        }
        if let Some(t) = &self.total {
            let (sum, done) = totals(snap);
            show(t, &sum, secs, Some((done, snap.len())));
        }
    }

    /// Leaves the bars as they are, finished or not.
    fn end(self) {
        for b in self.total.iter().chain(self.tables.iter().map(|(_, b)| b)) {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}

/// Draws `s` on `b`; `tables` (done, total) for the bar of all tables.
fn show(b: &ProgressBar, s: &TableSnapshot, secs: f64, tables: Option<(usize, usize)>) {
    b.set_prefix(truncate(&s.name, 24));
    if let Some(f) = s.fraction() {
        b.set_position((f * 1000.0) as u64);
    }
    let tables = tables
        .map(|(d, n)| format!(" tables {d}/{n}"))
        .unwrap_or_default();
    b.set_message(format!(
        "{} rows {}/s {}{tables} splits {}/{}",
        s.rows_read,
        ((s.rows_read as f64) / secs) as u64,
        HumanBytes(s.bytes_read),
        s.splits_done,
        s.splits_total
    ));
    if is_done(s) && !b.is_finished() {
        b.set_position(1000);
        b.finish();
    }
}

/// What a progress log shows: every unfinished table, or, for a job of more than
/// [`MAX_TABLE_BARS`] tables, the totals (with the count of tables done) and the tables in
/// progress.
fn log_selection(snap: &[TableSnapshot]) -> (Option<(TableSnapshot, usize)>, Vec<&TableSnapshot>) {
    if snap.len() <= MAX_TABLE_BARS {
        let open = snap
            .iter()
            .filter(|s| s.splits_total > 0 && !is_done(s))
            .collect();
        return (None, open);
    }
    let active = snap
        .iter()
        .filter(|s| is_started(s) && !is_done(s))
        .take(MAX_TABLE_BARS)
        .collect();
    (Some(totals(snap)), active)
}

async fn log_lines(progress: Progress, rx: &mut oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut *rx => return,
            _ = tokio::time::sleep(LOG_EVERY) => {}
        }
        let snap = progress.snapshot();
        let (total, tables) = log_selection(&snap);
        if let Some((t, done)) = total {
            tracing::info!(
                tables = snap.len(),
                tables_done = done,
                rows = t.rows_read,
                bytes = t.bytes_read,
                splits_done = t.splits_done,
                splits_total = t.splits_total,
                percent = t.fraction().map(|f| (f * 100.0).round()).unwrap_or(0.0),
                "Progress of all tables."
            );
        }
        for s in tables {
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A terminal of 50 lines that keeps the text drawn on it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn take(&self) -> String {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn height(&self) -> u16 {
            50
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            let mut t = self.0.lock().unwrap();
            t.push_str(s);
            t.push('\n');
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `n` one-split tables: the first `done` finished, those in `active` half read.
    fn tables(n: usize, done: usize, active: &[usize]) -> Vec<TableSnapshot> {
        (0..n)
            .map(|i| TableSnapshot {
                name: format!("t{i:05}"),
                rows_read: if i < done || active.contains(&i) {
                    2
                } else {
                    0
                },
                rows_total: 4,
                splits_done: usize::from(i < done),
                splits_total: 1,
                ..TableSnapshot::default()
            })
            .collect()
    }

    /// The bars drawn after `frames`, in a forced redraw: one string per bar.
    fn drawn(frames: &[Vec<TableSnapshot>]) -> Vec<String> {
        let screen = Screen::default();
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(
            screen.clone(),
        )));
        let mut bars = Bars::new(mp.clone());
        for f in frames {
            bars.frame(f);
        }
        screen.take();
        mp.println("-- redraw --").unwrap();
        let text = screen.take();
        let bars = text.split_once("-- redraw --").map_or("", |(_, b)| b);
        bars.split_inclusive(" ETA ")
            .filter(|b| b.ends_with(" ETA "))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_job_of_many_tables_draws_a_total_and_the_tables_in_progress() {
        let lines = drawn(&[tables(2000, 0, &[]), tables(2000, 1000, &[1500, 1700])]);
        // The total and at most ten tables, whatever the terminal's height (50 here).
        assert!(
            lines.len() <= 11,
            "{} bars drawn for 2,000 tables",
            lines.len()
        );
        assert!(
            lines[0].contains("all 2000 tables") && lines[0].contains("tables 1000/2000"),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("t01500")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("t01700")), "{lines:?}");
        assert!(
            !lines.iter().any(|l| l.contains("t00000")),
            "finished tables make room"
        );
    }

    #[test]
    fn a_job_of_few_tables_draws_a_bar_per_table() {
        let lines = drawn(&[tables(3, 1, &[2])]);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains("all ")), "{lines:?}");
    }

    #[test]
    fn progress_logs_of_many_tables_are_a_total_and_the_tables_in_progress() {
        let snap = tables(10_000, 4000, &[5000, 6000]);
        let (total, lines) = log_selection(&snap);
        let (t, done) = total.unwrap();
        assert_eq!(done, 4000);
        assert_eq!(t.splits_total, 10_000);
        let names: Vec<&str> = lines.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["t05000", "t06000"]);
        let few = tables(3, 1, &[]);
        let (total, lines) = log_selection(&few);
        assert!(total.is_none());
        assert_eq!(lines.len(), 2, "every unfinished table");
    }
}
