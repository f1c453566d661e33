//! The file source: discovery, splits, and the blocking read loop shared by the formats.
//!
//! A CSV or JSON Lines file is one split, or, when it is uncompressed and larger than
//! `split_bytes`, one split per byte range (see [`super::ranges`]). Split ids are
//! `<table>#<file>` for a whole file and `<table>#<file>.<range>` for a range, numbered over
//! the table's files sorted by path; `index` numbers the table's splits in that order.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::json;
use sluice_core::source::{BatchSender, Source, SourceBatch, SourceTable};
use sluice_core::{Error, ErrorKind, Position, Result, Split, TableId, TableSchema};

use super::config::InputCompression;
use super::csv::CsvReadOptions;
use super::discover::{self, FoundTable, compression_of};
use super::jsonl::JsonlReadOptions;
use super::parquet;
use super::ranges::{self, ByteRange, FileSpan};

/// The format a [`FileSource`] reads, with its options.
#[derive(Debug, Clone)]
pub(crate) enum SourceFormat {
    Csv(CsvReadOptions),
    Jsonl(JsonlReadOptions),
    Parquet,
}

/// A table as discovered: its files and schema.
#[derive(Debug, Clone)]
struct Known {
    files: Vec<PathBuf>,
    schema: SchemaRef,
}

#[derive(Debug)]
struct Inner {
    path: String,
    table: Option<String>,
    format: SourceFormat,
    compression: InputCompression,
    batch_size: usize,
    /// CSV and JSON Lines files larger than this are read as several byte ranges.
    split_bytes: u64,
    known: Mutex<BTreeMap<String, Known>>,
}

/// Reads CSV, JSON Lines or Parquet files. See the module docs of `files`.
#[derive(Debug, Clone)]
pub(crate) struct FileSource {
    inner: Arc<Inner>,
}

/// What one blocking read needs.
pub(crate) struct ReadTask<'a> {
    pub path: &'a Path,
    pub compression: InputCompression,
    /// The byte range to read (uncompressed CSV and JSON Lines); `None`: the whole file.
    pub range: Option<ByteRange>,
    pub schema: SchemaRef,
    /// Data rows to skip (resume).
    pub skip: u64,
    pub batch_size: usize,
}

impl ReadTask<'_> {
    /// Opens what the task reads: the whole file (decompressed), or the header and the range.
    pub(crate) fn open(&self) -> Result<Input> {
        match &self.range {
            Some(r) => ranges::open_range(self.path, r),
            None => open_input(self.path, self.compression),
        }
    }

    /// Records of the file before what this task reads, for row and line numbers.
    pub(crate) fn first_row(&self) -> u64 {
        self.range.map_or(0, |r| r.first_row)
    }
}

impl FileSource {
    pub(crate) fn new(
        path: &str,
        table: Option<String>,
        format: SourceFormat,
        compression: InputCompression,
        batch_size: usize,
        split_bytes: u64,
    ) -> Self {
        FileSource {
            inner: Arc::new(Inner {
                path: path.to_string(),
                table,
                format,
                compression,
                batch_size,
                split_bytes,
                known: Mutex::new(BTreeMap::new()),
            }),
        }
    }
}

impl Inner {
    fn schema_of(&self, t: &FoundTable) -> Result<SchemaRef> {
        let first = &t.files[0];
        match &self.format {
            SourceFormat::Csv(o) => o.infer(first, compression_of(first, self.compression)),
            SourceFormat::Jsonl(o) => o.infer(first, compression_of(first, self.compression)),
            SourceFormat::Parquet => parquet::schema_of(first),
        }
    }

    /// Discovers tables and infers their schemas (blocking).
    fn discover(&self) -> Result<Vec<SourceTable>> {
        let found = discover::discover(&self.path, self.table.as_deref())?;
        let mut out = Vec::with_capacity(found.len());
        let mut known = BTreeMap::new();
        for t in found {
            let schema = self.schema_of(&t)?;
            let mut bytes = 0;
            for f in &t.files {
                bytes += std::fs::metadata(f)
                    .map_err(|e| Error::from_io(e, f.display()))?
                    .len();
            }
            let rows = match self.format {
                SourceFormat::Parquet => Some(parquet::count_rows(&t.files)?),
                _ => None,
            };
            out.push(SourceTable {
                schema: TableSchema::new(TableId::new([t.name.clone()]), schema.clone()),
                estimated_rows: rows,
                estimated_bytes: Some(bytes),
            });
            known.insert(
                t.name,
                Known {
                    files: t.files,
                    schema,
                },
            );
        }
        let overrides = match &self.format {
            SourceFormat::Csv(o) => Some(&o.overrides),
            SourceFormat::Jsonl(o) => Some(&o.overrides),
            _ => None,
        };
        if let Some(o) = overrides {
            let schemas: Vec<_> = out
                .iter()
                .map(|t| (t.schema.id.to_string(), t.schema.arrow.clone()))
                .collect();
            super::csv::check_overrides_used(o, &schemas)?;
        }
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = known;
        Ok(out)
    }

    fn known(&self, name: &str) -> Result<Known> {
        let get = || {
            self.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .cloned()
        };
        if let Some(k) = get() {
            return Ok(k);
        }
        self.discover()?;
        get().ok_or_else(|| {
            Error::io(format!(
                "table {name:?} is no longer found under {:?}",
                self.path
            ))
            .with_hint("the input files changed since the job started; check the path")
        })
    }

    fn splits(&self, table: &TableId) -> Result<Vec<Split>> {
        let name = table.name();
        let known = self.known(name)?;
        if let SourceFormat::Parquet = self.format {
            return parquet::splits(table, &known.files);
        }
        let mut out = Vec::with_capacity(known.files.len());
        for (file, f) in known.files.iter().enumerate() {
            let stamp = ranges::stamp(f)?;
            let parts = self.ranges_of(f, stamp.size)?;
            if parts.len() <= 1 {
                out.push(Split {
                    id: format!("{name}#{file}"),
                    table: table.clone(),
                    index: out.len(),
                    estimated_rows: None,
                    estimated_bytes: Some(stamp.size),
                    detail: span_detail(&FileSpan::whole(f, stamp))?,
                    continues: false,
                    start: None,
                });
                continue;
            }
            for (part, r) in parts.into_iter().enumerate() {
                out.push(Split {
                    id: format!("{name}#{file}.{part}"),
                    table: table.clone(),
                    index: out.len(),
                    estimated_rows: None,
                    estimated_bytes: Some(r.end - r.start),
                    detail: span_detail(&FileSpan::part(f, stamp, r))?,
                    continues: false,
                    start: None,
                });
            }
        }
        Ok(out)
    }

    /// The byte ranges `f` is read in: none (read it whole) unless it is an uncompressed CSV
    /// or JSON Lines file larger than `split_bytes`.
    fn ranges_of(&self, f: &Path, size: u64) -> Result<Vec<ByteRange>> {
        if size <= self.split_bytes || compression_of(f, self.compression) != InputCompression::None
        {
            return Ok(Vec::new());
        }
        match &self.format {
            SourceFormat::Csv(o) => {
                ranges::plan_csv(f, size, self.split_bytes, o.boundary_parser(), o.header)
            }
            SourceFormat::Jsonl(_) => ranges::plan_jsonl(f, size, self.split_bytes),
            SourceFormat::Parquet => Ok(Vec::new()),
        }
    }

    fn read(&self, split: &Split, skip: u64, em: &mut Emitter) -> Result<()> {
        let known = self.known(split.table.name())?;
        let span = FileSpan::of(split)?;
        span.check_unchanged()?;
        let path = Path::new(&span.path);
        let task = ReadTask {
            path,
            compression: compression_of(path, self.compression),
            range: span.range,
            schema: known.schema,
            skip,
            batch_size: self.batch_size,
        };
        match &self.format {
            SourceFormat::Csv(o) => o.read(&task, em)?,
            SourceFormat::Jsonl(o) => o.read(&task, em)?,
            SourceFormat::Parquet => parquet::read(&task, &split.detail, em)?,
        }
        // A file rewritten while its range was read may have given torn records.
        span.check_unchanged()
    }
}

#[async_trait]
impl Source for FileSource {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let inner = self.inner.clone();
        blocking(move || inner.discover()).await
    }

    async fn splits(&self, table: &SourceTable) -> Result<Vec<Split>> {
        let inner = self.inner.clone();
        let id = table.schema.id.clone();
        blocking(move || inner.splits(&id)).await
    }

    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let skip = match &resume {
            None => 0,
            Some(p) => p
                .value
                .get("rows")
                .and_then(|r| r.as_u64())
                .ok_or_else(|| {
                    Error::internal(format!(
                        "split {}: checkpoint position {} has no row count",
                        split.id, p.value
                    ))
                })?,
        };
        let inner = self.inner.clone();
        let result = blocking(move || {
            let mut em = Emitter {
                out,
                split: split.id.clone(),
                rows: skip,
            };
            inner.read(&split, skip, &mut em).map_err(|e| {
                if e.kind() == ErrorKind::Stopped {
                    e
                } else {
                    e.context(format!("table {}, split {}", split.table, split.id))
                }
            })
        })
        .await;
        match result {
            Err(e) if e.kind() == ErrorKind::Stopped => Ok(()),
            other => other,
        }
    }
}

fn span_detail(span: &FileSpan) -> Result<serde_json::Value> {
    serde_json::to_value(span)
        .map_err(|e| Error::internal(format!("split detail not serializable: {e}")))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("file reader task failed: {e}")))?
}

/// Sends batches with their positions: `{"rows": n}` = data rows of the split read so far.
pub(crate) struct Emitter {
    out: BatchSender,
    split: String,
    rows: u64,
}

impl Emitter {
    /// Sends `batch`; `Err(Stopped)` when the job is stopping.
    pub(crate) fn emit(&mut self, batch: RecordBatch, bytes: u64) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        let position = Position::new(self.split.clone(), json!({ "rows": self.rows }));
        self.out.blocking_send(SourceBatch {
            data: batch,
            position,
            bytes,
        })
    }
}

/// Counts bytes read from the underlying file (compressed bytes for compressed input).
struct Counting {
    file: File,
    count: Rc<Cell<u64>>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// An opened input: decompressed text plus a counter of file bytes consumed.
pub(crate) struct Input {
    pub reader: Box<dyn BufRead>,
    count: Rc<Cell<u64>>,
    reported: u64,
}

impl Input {
    /// An input reading `reader`, whose file bytes `count` counts.
    pub(crate) fn new(reader: Box<dyn BufRead>, count: Rc<Cell<u64>>) -> Input {
        Input {
            reader,
            count,
            reported: 0,
        }
    }

    /// File bytes read since the last call.
    pub(crate) fn take_bytes(&mut self) -> u64 {
        let now = self.count.get();
        let d = now - self.reported;
        self.reported = now;
        d
    }
}

pub(crate) const READ_BUFFER: usize = 1 << 20;

/// Opens `path`, decompressing as `compression` says (never `Auto` here).
pub(crate) fn open_input(path: &Path, compression: InputCompression) -> Result<Input> {
    let file = File::open(path)
        .map_err(|e| Error::from_io(e, format!("cannot open {}", path.display())))?;
    let count = Rc::new(Cell::new(0));
    let raw = Counting {
        file,
        count: count.clone(),
    };
    let reader: Box<dyn BufRead> = match compression {
        InputCompression::Gzip => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER, raw)),
        )),
        InputCompression::Zstd => {
            let d = zstd::stream::read::Decoder::new(raw)
                .map_err(|e| Error::from_io(e, format!("cannot open {}", path.display())))?;
            Box::new(BufReader::with_capacity(READ_BUFFER, d))
        }
        InputCompression::None | InputCompression::Auto => {
            Box::new(BufReader::with_capacity(READ_BUFFER, raw))
        }
    };
    Ok(Input {
        reader,
        count,
        reported: 0,
    })
}

/// An error reading `path` (after opening it): corrupt compression is called out.
pub(crate) fn read_error(e: std::io::Error, path: &Path) -> Error {
    let invalid = e.kind() == std::io::ErrorKind::InvalidData
        || e.kind() == std::io::ErrorKind::InvalidInput
        || e.kind() == std::io::ErrorKind::UnexpectedEof;
    let err = Error::from_io(e, format!("reading {}", path.display()));
    if invalid {
        err.with_hint(
            "the file is truncated or not in the compression its name says; check it, or set \
             compression = \"none\" / \"gzip\" / \"zstd\"",
        )
    } else {
        err
    }
}
