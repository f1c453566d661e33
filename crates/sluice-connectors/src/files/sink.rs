//! The file sink: temporary files, atomic renames, write modes. Shared by every format.
//!
//! Invariant: a file with a final name is always complete. Each writer writes to
//! `.<final-name>.sluice-tmp` in the same directory; `commit` finishes the format (Parquet
//! footer, compressor trailer), fsyncs the file, renames it to its final name and fsyncs the
//! directory. Only then does `commit` return, and only then may the engine record the
//! position. `abort` (and dropping an uncommitted writer) deletes the temporary file; a
//! killed run's leftovers are deleted by the next run's `prepare`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_core::sink::{JobContext, Sink, SinkWriter, TablePlan};
use sluice_core::{Error, Position, Result, Split, WriteMode};

use super::config::OutputCompression;
use super::discover::TMP_SUFFIX;

/// Makes writers of one format.
pub(crate) trait FormatFactory: Send + Sync + std::fmt::Debug {
    /// The file extension without the leading dot (`csv.gz`, `parquet`).
    fn extension(&self) -> String;
    /// A writer of `schema` into `out`.
    fn create(&self, out: OutFile, schema: &SchemaRef) -> Result<Box<dyn FormatWriter>>;
    /// Whether every column of `table` can be written, checked before any data moves; the
    /// error names table, column and the cast that makes it go.
    fn check(&self, _table: &TablePlan) -> Result<()> {
        Ok(())
    }
}

/// Writes one file of one format.
pub(crate) trait FormatWriter: Send {
    /// Appends rows.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Completes the file (footer, compressor trailer) and hands back the output.
    fn finish(self: Box<Self>) -> Result<OutFile>;
}

type SavedError = Arc<Mutex<Option<(io::ErrorKind, Option<i32>)>>>;

/// A buffered output file that remembers the last I/O error, so a full disk is reported as
/// such even when a format library wraps the error in its own.
pub(crate) struct OutFile {
    buf: BufWriter<File>,
    saved: SavedError,
}

impl OutFile {
    fn save<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            *self.saved.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((e.kind(), e.raw_os_error()));
        }
        r
    }

    /// Flushes and returns the file.
    fn into_file(self) -> io::Result<File> {
        let saved = self.saved.clone();
        self.buf.into_inner().map_err(|e| {
            let e = e.into_error();
            *saved.lock().unwrap_or_else(|p| p.into_inner()) = Some((e.kind(), e.raw_os_error()));
            e
        })
    }
}

impl Write for OutFile {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let r = self.buf.write(b);
        self.save(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.buf.flush();
        self.save(r)
    }
}

/// Optionally compressed output.
pub(crate) enum Encoded<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoded<W> {
    pub(crate) fn new(w: W, c: OutputCompression) -> Result<Self> {
        Ok(match c {
            OutputCompression::None => Encoded::Plain(w),
            OutputCompression::Gzip => Encoded::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            )),
            OutputCompression::Zstd => Encoded::Zstd(
                zstd::stream::write::Encoder::new(w, 3)
                    .map_err(|e| Error::from_io(e, "starting zstd compression"))?,
            ),
        })
    }

    /// Writes the compressor's trailer and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoded::Plain(w) => Ok(w),
            Encoded::Gzip(g) => g.finish(),
            Encoded::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoded<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Encoded::Plain(w) => w.write(b),
            Encoded::Gzip(w) => w.write(b),
            Encoded::Zstd(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoded::Plain(w) => w.flush(),
            Encoded::Gzip(w) => w.flush(),
            Encoded::Zstd(w) => w.flush(),
        }
    }
}

const WRITE_BUFFER: usize = 1 << 20;

/// Writes tables as files under one directory. See the module docs.
#[derive(Debug)]
pub(crate) struct FileSink {
    dir: PathBuf,
    mode: WriteMode,
    format: Arc<dyn FormatFactory>,
    /// Final paths committed by this run.
    written: Arc<Mutex<HashSet<PathBuf>>>,
    /// Names of all tables this run writes.
    tables: Mutex<HashSet<String>>,
    /// The job's generation, set by `begin`; names append-mode files.
    generation: std::sync::RwLock<Option<String>>,
    /// Streaming mode (set by `begin`): every table is written as parts in `<dir>/<table>/`,
    /// one per commit, named after the commit's position.
    streaming: std::sync::atomic::AtomicBool,
}

impl FileSink {
    pub(crate) fn new(path: &str, mode: WriteMode, format: Arc<dyn FormatFactory>) -> Self {
        FileSink {
            dir: PathBuf::from(path),
            mode,
            format,
            written: Arc::default(),
            tables: Mutex::default(),
            generation: std::sync::RwLock::new(None),
            streaming: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(
            Error::config(format!("table name {name:?} cannot be used as a file name"))
                .with_hint("rename the table with table_map = { \"src\" = \"new_name\" }"),
        );
    }
    Ok(())
}

fn dir_error(e: io::Error, dir: &Path, what: &str) -> Error {
    let kind = e.kind();
    let err = Error::from_io(e, format!("output directory {} {what}", dir.display()));
    if matches!(
        kind,
        io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists
    ) {
        err.with_hint("a file is in the way of the path; choose a directory path")
    } else {
        err
    }
}

/// Creates `dir` and proves it is writable by creating and deleting a probe file.
fn ensure_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| dir_error(e, dir, "cannot be created"))?;
    if !dir.is_dir() {
        return Err(
            Error::io(format!("output path {} is not a directory", dir.display()))
                .with_hint("point path at a directory (it is created if missing)"),
        );
    }
    let probe = dir.join(format!(".sluice-probe-{}{TMP_SUFFIX}", std::process::id()));
    let r = File::create(&probe).and_then(|mut f| f.write_all(b"x").and_then(|_| f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    r.map_err(|e| dir_error(e, dir, "is not writable"))
}

/// Deletes `.{name}.*.sluice-tmp` / `.{name}-*.sluice-tmp` in `dir`, and every
/// `.*.sluice-tmp` in `dir/name/`: leftovers of a killed run.
fn remove_stale_tmp(dir: &Path, name: &str) -> Result<()> {
    let remove_matching = |d: &Path, pred: &dyn Fn(&str) -> bool| -> Result<()> {
        let Ok(rd) = std::fs::read_dir(d) else {
            return Ok(());
        };
        for entry in rd.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') && n.ends_with(TMP_SUFFIX) && pred(&n) {
                tracing::info!(file = %entry.path().display(), "Removing unfinished file of an earlier run.");
                std::fs::remove_file(entry.path()).map_err(|e| {
                    Error::from_io(e, format!("removing {}", entry.path().display()))
                })?;
            }
        }
        Ok(())
    };
    let (a, b) = (format!(".{name}."), format!(".{name}-"));
    remove_matching(dir, &|n| n.starts_with(&a) || n.starts_with(&b))?;
    remove_matching(&dir.join(name), &|_| true)
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// `stem` → (`base`, `Some(n)`) when it ends in `-<digits>`.
fn split_suffix(stem: &str) -> (&str, Option<u64>) {
    match stem.rsplit_once('-') {
        Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => {
            (b, n.parse().ok())
        }
        _ => (stem, None),
    }
}

/// A file's stem if it ends in `.{ext}`.
fn stem_of<'a>(file: &'a str, ext: &str) -> Option<&'a str> {
    file.strip_suffix(ext)?.strip_suffix('.')
}

impl Cleanup {
    /// Overwrite: deletes this table's files that this run did not write and that belong to
    /// the same layout slots this run rewrote (or to split indexes beyond the plan). Files of
    /// splits finished by an earlier, resumed run keep their names and are kept.
    fn remove_stale(&self, table: &TablePlan) -> Result<()> {
        let name = table.target.name();
        let ext = self.format.extension();
        let written = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let planned = &self.tables;
        let remove = |p: &Path| -> Result<()> {
            tracing::info!(file = %p.display(), "Removing output of an earlier run.");
            std::fs::remove_file(p)
                .map_err(|e| Error::from_io(e, format!("removing {}", p.display())))
        };
        let list = |d: &Path| -> Vec<(String, PathBuf)> {
            std::fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let sub = self.dir.join(name);
        let single = self.dir.join(format!("{name}.{ext}"));
        let wrote_single = written.contains(&single);
        let wrote_parts = written.iter().any(|p| p.parent() == Some(sub.as_path()));
        if !wrote_single && !wrote_parts {
            return Ok(());
        }
        // Single-file layout: `name.ext`, `name-<n>.ext`.
        for (file, path) in list(&self.dir) {
            let Some(stem) = stem_of(&file, &ext) else {
                continue;
            };
            let (base, n) = split_suffix(stem);
            let is_ours =
                (stem == name) || (base == name && n.is_some() && !planned.contains(stem));
            if is_ours && !written.contains(&path) && (wrote_parts || n.is_some()) {
                remove(&path)?;
            }
        }
        // Multi-part layout: `name/part-<idx>[-<n>].ext`.
        for (file, path) in list(&sub) {
            let Some(stem) = stem_of(&file, &ext) else {
                continue;
            };
            let Some(rest) = stem.strip_prefix("part-") else {
                continue;
            };
            let (idx, n) = split_suffix(rest);
            let Ok(idx) = idx.parse::<usize>() else {
                continue;
            };
            if written.contains(&path) {
                continue;
            }
            let slot = sub.join(format!("part-{idx:05}.{ext}"));
            let stale =
                wrote_single || idx >= table.splits || (n.is_some() && written.contains(&slot));
            if stale {
                remove(&path)?;
            }
        }
        if wrote_single && std::fs::read_dir(&sub).is_ok_and(|mut rd| rd.next().is_none()) {
            let _ = std::fs::remove_dir(&sub);
        }
        fsync_dir(&self.dir).map_err(|e| Error::from_io(e, self.dir.display()))
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn check(&self, _tables: &[TablePlan]) -> Result<()> {
        super::check_writable_dir(&self.dir, "sink")
    }

    async fn prepare(&self, tables: &[TablePlan]) -> Result<()> {
        let dir = self.dir.clone();
        let streaming = self.streaming.load(std::sync::atomic::Ordering::Relaxed);
        let mut names = Vec::new();
        for t in tables {
            check_name(t.target.name())?;
            self.format.check(t)?;
            names.push((t.target.name().to_string(), t.splits));
        }
        {
            let mut planned = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            planned.extend(names.iter().map(|(n, _)| n.clone()));
        }
        blocking(move || {
            ensure_writable_dir(&dir)?;
            for (name, splits) in &names {
                remove_stale_tmp(&dir, name)?;
                if *splits > 1 || streaming {
                    let sub = dir.join(name);
                    std::fs::create_dir_all(&sub)
                        .map_err(|e| dir_error(e, &sub, "cannot be created"))?;
                }
            }
            Ok(())
        })
        .await
    }

    fn target_types(&self, table: &TablePlan) -> Result<Option<Vec<(String, String)>>> {
        self.format.check(table)?;
        Ok(None)
    }

    fn begin(&self, ctx: &JobContext) -> Result<()> {
        let safe: String = ctx
            .generation
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        *self.generation.write().unwrap_or_else(|p| p.into_inner()) = Some(safe);
        self.streaming
            .store(ctx.streaming, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn open(&self, table: &TablePlan, split: &Split) -> Result<Box<dyn SinkWriter>> {
        self.open_from(table, split, None).await
    }

    async fn open_from(
        &self,
        table: &TablePlan,
        split: &Split,
        resume: Option<&Position>,
    ) -> Result<Box<dyn SinkWriter>> {
        let name = table.target.name();
        check_name(name)?;
        let streaming = self.streaming.load(std::sync::atomic::Ordering::Relaxed);
        let (dir, base) = if table.splits <= 1 && !streaming {
            (self.dir.clone(), name.to_string())
        } else {
            (self.dir.join(name), format!("part-{:05}", split.index))
        };
        let append = self.mode == WriteMode::Append;
        let unique = append.then(|| {
            self.generation
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| unix_millis().to_string())
        });
        let ext = self.format.extension();
        let stream = if streaming {
            let (d, b, u, e) = (dir.clone(), base.clone(), unique.clone(), ext.clone());
            let after = resume.map(|p| position_tag(&p.value));
            let split_id = split.id.clone();
            Some(
                blocking(move || continue_parts(&d, &b, u.as_deref(), &e, after, &split_id))
                    .await?,
            )
        } else {
            None
        };
        Ok(Box::new(FileSinkWriter {
            state: Some(PartState {
                dir,
                base,
                unique,
                stream,
                ext,
                format: self.format.clone(),
                schema: table.schema.arrow.clone(),
                unit: 0,
                current: None,
                written: self.written.clone(),
            }),
        }))
    }

    async fn finish_table(&self, table: &TablePlan) -> Result<()> {
        if self.mode != WriteMode::Overwrite {
            return Ok(());
        }
        let cleanup = Cleanup {
            dir: self.dir.clone(),
            format: self.format.clone(),
            written: self.written.clone(),
            tables: self
                .tables
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        let table = table.clone();
        blocking(move || cleanup.remove_stale(&table)).await
    }
}

/// What `finish_table` needs on its blocking thread.
struct Cleanup {
    dir: PathBuf,
    format: Arc<dyn FormatFactory>,
    written: Arc<Mutex<HashSet<PathBuf>>>,
    /// Names of all tables this run writes.
    tables: HashSet<String>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("file writer task failed: {e}")))?
}

/// One file being written.
struct Open {
    writer: Box<dyn FormatWriter>,
    tmp: PathBuf,
    final_path: PathBuf,
    saved: SavedError,
}

/// The blocking state of one split's writer.
struct PartState {
    dir: PathBuf,
    /// `orders` or `part-00003`.
    base: String,
    /// Append mode: the job generation (or a millisecond stamp) making names unique. A
    /// resumed run of the same generation rewrites the same names, so a split redone after a
    /// crash replaces its earlier attempt instead of doubling it.
    unique: Option<String>,
    ext: String,
    format: Arc<dyn FormatFactory>,
    schema: SchemaRef,
    /// Files committed so far by this writer.
    unit: usize,
    /// Streaming: the sequence number of the next part (parts are named
    /// `<base>[-<unique>]-s<seq>-<position tag>.<ext>`).
    stream: Option<u64>,
    current: Option<Open>,
    written: Arc<Mutex<HashSet<PathBuf>>>,
}

impl PartState {
    fn final_name(&self) -> String {
        let mut s = self.base.clone();
        if let Some(u) = &self.unique {
            s.push_str(&format!("-{u}"));
        }
        if self.unit > 0 {
            s.push_str(&format!("-{}", self.unit));
        }
        format!("{s}.{}", self.ext)
    }

    fn open_file(&mut self) -> Result<&mut Open> {
        let final_path = self.dir.join(self.final_name());
        let tmp = self.dir.join(format!(".{}{TMP_SUFFIX}", self.final_name()));
        let file = File::create(&tmp)
            .map_err(|e| Error::from_io(e, format!("cannot create {}", tmp.display())))?;
        let saved = SavedError::default();
        let out = OutFile {
            buf: BufWriter::with_capacity(WRITE_BUFFER, file),
            saved: saved.clone(),
        };
        let writer = match self.format.create(out, &self.schema) {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.context(format!("writing {}", tmp.display())));
            }
        };
        Ok(self.current.insert(Open {
            writer,
            tmp,
            final_path,
            saved,
        }))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let open = match self.current {
            Some(ref mut o) => o,
            None => self.open_file()?,
        };
        let r = open.writer.write(batch);
        r.map_err(|e| io_or(e, &open.saved, &open.tmp))
    }

    fn commit(&mut self, position: &Position) -> Result<()> {
        if self.current.is_none() {
            if self.unit > 0 || self.stream.is_some() {
                return Ok(()); // Nothing new since the last commit.
            }
            // An empty split still gets a (header-only / schema-only) file.
            let empty = RecordBatch::new_empty(self.schema.clone());
            self.write(&empty)?;
        }
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        let Open {
            writer,
            tmp,
            mut final_path,
            saved,
        } = open;
        if let Some(seq) = self.stream {
            // Named after the position it ends at, so a resume can tell which parts its
            // recorded position covers.
            final_path = self.dir.join(part_name(
                &self.base,
                self.unique.as_deref(),
                seq,
                &position_tag(&position.value),
                &self.ext,
            ));
        }
        let result = (|| {
            let out = writer.finish().map_err(|e| io_or(e, &saved, &tmp))?;
            let file = out
                .into_file()
                .map_err(|e| Error::from_io(e, format!("writing {}", tmp.display())))?;
            file.sync_all()
                .map_err(|e| Error::from_io(e, format!("syncing {}", tmp.display())))?;
            drop(file);
            std::fs::rename(&tmp, &final_path).map_err(|e| {
                Error::from_io(
                    e,
                    format!("renaming {} to {}", tmp.display(), final_path.display()),
                )
            })?;
            fsync_dir(&self.dir)
                .map_err(|e| Error::from_io(e, format!("syncing {}", self.dir.display())))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(final_path);
        self.unit += 1;
        if let Some(seq) = self.stream.as_mut() {
            *seq += 1;
        }
        Ok(())
    }

    fn abort(&mut self) {
        if let Some(open) = self.current.take() {
            drop(open.writer);
            let _ = std::fs::remove_file(&open.tmp);
        }
    }
}

impl Drop for PartState {
    fn drop(&mut self) {
        self.abort();
    }
}

/// A position's tag in part names: 8 hex digits of a stable hash of its JSON.
fn position_tag(value: &serde_json::Value) -> String {
    format!(
        "{:08x}",
        sluice_core::naming::stable_hash(&value.to_string()) as u32
    )
}

/// `<base>[-<unique>]-s<seq>-<tag>.<ext>`: a streaming part.
fn part_name(base: &str, unique: Option<&str>, seq: u64, tag: &str, ext: &str) -> String {
    let mut s = base.to_string();
    if let Some(u) = unique {
        s.push_str(&format!("-{u}"));
    }
    format!("{s}-s{seq:06}-{tag}.{ext}")
}

/// Streaming parts of a split already in `dir`, as `(seq, tag, path)`.
fn stream_parts(
    dir: &Path,
    base: &str,
    unique: Option<&str>,
    ext: &str,
) -> Result<Vec<(u64, String, PathBuf)>> {
    let mut prefix = base.to_string();
    if let Some(u) = unique {
        prefix.push_str(&format!("-{u}"));
    }
    prefix.push_str("-s");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::from_io(e, format!("listing {}", dir.display()))),
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = stem_of(&file, ext) else {
            continue;
        };
        let Some(rest) = stem.strip_prefix(&prefix) else {
            continue;
        };
        let Some((seq, tag)) = rest.split_once('-') else {
            continue;
        };
        if let Ok(seq) = seq.parse::<u64>() {
            out.push((seq, tag.to_string(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Where a streaming split's parts go on: after the part of its recorded position `after`
/// (parts after it were renamed by a run that died before recording them: their rows are
/// read again, so they are removed), or from the first part when it starts over. The next
/// part's sequence number.
fn continue_parts(
    dir: &Path,
    base: &str,
    unique: Option<&str>,
    ext: &str,
    after: Option<String>,
    split: &str,
) -> Result<u64> {
    let parts = stream_parts(dir, base, unique, ext)?;
    let keep_through = match &after {
        None => 0,
        Some(tag) => match parts.iter().rev().find(|(_, t, _)| t == tag) {
            Some((seq, _, _)) => *seq,
            None => {
                return Err(Error::config(format!(
                    "split {split}: no part in {} holds the position the state store recorded \
                     for it (the output was moved or deleted, or the state directory belongs to \
                     another output)",
                    dir.display()
                ))
                .with_hint("run the job with --from-scratch to write the stream again"));
            }
        },
    };
    for (seq, _, path) in &parts {
        if *seq > keep_through {
            tracing::warn!(part = %path.display(), "Removing a part no checkpoint covers (written by a run that died before recording it); its rows are read again.");
            std::fs::remove_file(path)
                .map_err(|e| Error::from_io(e, format!("removing {}", path.display())))?;
        }
    }
    fsync_dir(dir).map_err(|e| Error::from_io(e, format!("syncing {}", dir.display())))?;
    Ok(keep_through + 1)
}

/// A format error, or the disk error underneath it if there was one.
fn io_or(e: Error, saved: &SavedError, path: &Path) -> Error {
    let s = *saved.lock().unwrap_or_else(|p| p.into_inner());
    match s {
        Some((_, Some(code))) => Error::from_io(
            io::Error::from_raw_os_error(code),
            format!("writing {}", path.display()),
        ),
        Some((kind, None)) => {
            Error::from_io(io::Error::from(kind), format!("writing {}", path.display()))
        }
        None => e.context(format!("writing {}", path.display())),
    }
}

/// Writes one split. The blocking work runs on `spawn_blocking`; the state travels there and
/// back.
struct FileSinkWriter {
    state: Option<PartState>,
}

impl FileSinkWriter {
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut PartState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut state = self
            .state
            .take()
            .ok_or_else(|| Error::internal("file writer used after a failed write"))?;
        let (state, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut state);
            (state, r)
        })
        .await
        .map_err(|e| Error::internal(format!("file writer task failed: {e}")))?;
        self.state = Some(state);
        r
    }
}

#[async_trait]
impl SinkWriter for FileSinkWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.run(move |s| s.write(&batch)).await
    }

    async fn commit(&mut self, position: &Position) -> Result<()> {
        // Invariant: returns only after the file is fsynced and renamed to its final name.
        let position = position.clone();
        self.run(move |s| s.commit(&position)).await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.run(|s| {
            s.abort();
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_stems() {
        assert_eq!(split_suffix("orders-3"), ("orders", Some(3)));
        assert_eq!(split_suffix("orders"), ("orders", None));
        assert_eq!(split_suffix("a-b"), ("a-b", None));
        assert_eq!(stem_of("orders.csv.gz", "csv.gz"), Some("orders"));
        assert_eq!(stem_of("orders.csv", "csv.gz"), None);
    }

    #[test]
    fn names_that_are_not_file_names_are_rejected() {
        for bad in ["", ".", "..", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("Order Items").is_ok());
    }
}
