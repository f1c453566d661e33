//! Log output: text or JSON lines on stderr, with every registered secret redacted, and
//! printed above the progress bars when they are drawn.

use std::io::Write;
use std::sync::{Arc, Mutex};

use indicatif::MultiProgress;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// Where log lines go; shares the terminal with the progress bars.
#[derive(Clone, Default)]
pub struct LogTarget {
    bars: Arc<Mutex<Option<MultiProgress>>>,
}

impl LogTarget {
    /// Routes log lines through `bars` (so they print above them) until cleared.
    pub fn set_bars(&self, bars: Option<MultiProgress>) {
        *self.bars.lock().unwrap_or_else(|e| e.into_inner()) = bars;
    }
}

/// One log event's bytes; redacted and written when dropped.
pub struct EventWriter {
    buf: Vec<u8>,
    target: LogTarget,
}

impl Write for EventWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = sluice_core::config::redact(&String::from_utf8_lossy(&self.buf));
        let bars = self
            .target
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match bars {
            Some(mp) => {
                let _ = mp.println(text.trim_end());
            }
            None => {
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }
        }
    }
}

impl<'a> MakeWriter<'a> for LogTarget {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            buf: Vec::with_capacity(256),
            target: self.clone(),
        }
    }
}

/// Installs the global subscriber. Returns the target so progress bars can share the terminal.
pub fn init(level: &str, format: LogFormat) -> Result<LogTarget, String> {
    let filter = EnvFilter::try_new(level).map_err(|e| {
        format!("invalid --log-level {level:?}: {e}; use error, warn, info, debug or trace")
    })?;
    let target = LogTarget::default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(target.clone())
        .with_target(false);
    let res = match format {
        LogFormat::Text => {
            let b = builder.with_ansi(false).with_filter_reloading();
            let handle = b.reload_handle();
            let _ = RELOAD.set(Box::new(move |f| {
                handle.reload(f).map_err(|e| e.to_string())
            }));
            b.try_init()
        }
        LogFormat::Json => {
            let b = builder.json().flatten_event(true).with_filter_reloading();
            let handle = b.reload_handle();
            let _ = RELOAD.set(Box::new(move |f| {
                handle.reload(f).map_err(|e| e.to_string())
            }));
            b.try_init()
        }
    };
    res.map_err(|e| format!("cannot install the logger: {e}"))?;
    let _ = BASE.set(level.to_string());
    Ok(target)
}

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;
static RELOAD: std::sync::OnceLock<Reload> = std::sync::OnceLock::new();
static BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Log levels changed live (the server's `/admin/loggers`): `root` and per-module overrides,
/// applied by rebuilding the filter.
#[derive(Default)]
pub struct LiveLevels {
    levels: Mutex<std::collections::BTreeMap<String, String>>,
}

impl sluice_server::LogControl for LiveLevels {
    fn levels(&self) -> std::collections::BTreeMap<String, String> {
        let mut out = self
            .levels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.entry("root".into())
            .or_insert_with(|| BASE.get().cloned().unwrap_or_else(|| "info".into()));
        out
    }
    fn set(&self, logger: &str, level: &str) -> Result<(), String> {
        let mut levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = levels.clone();
        next.insert(logger.to_string(), level.to_string());
        let root = next
            .get("root")
            .cloned()
            .or_else(|| BASE.get().cloned())
            .unwrap_or_else(|| "info".into());
        let mut spec = root;
        for (k, v) in next.iter().filter(|(k, _)| *k != "root") {
            spec.push_str(&format!(",{k}={v}"));
        }
        let filter = EnvFilter::try_new(&spec).map_err(|e| format!("invalid level: {e}"))?;
        let reload = RELOAD
            .get()
            .ok_or_else(|| "the logger cannot be reloaded".to_string())?;
        reload(filter)?;
        *levels = next;
        Ok(())
    }
}
