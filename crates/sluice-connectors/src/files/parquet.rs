//! Parquet: metadata-driven splits, a row-group streaming reader, and a bounded-memory writer.
//!
//! The schema comes from the Arrow schema the writer stored in the file (so `sluice.type`
//! field metadata such as `uuid` or `json` survives a round trip), else from the Parquet
//! schema. A large file is split into groups of row groups of about 128 MiB (compressed) so
//! several readers can work on it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use serde_json::json;
use sluice_core::{Error, Result, Split, TableId};

use super::config::ParquetCompression;
use super::sink::{FormatFactory, FormatWriter, OutFile};
use super::source::{Emitter, ReadTask};

/// Default rows per row group.
pub(crate) const DEFAULT_ROW_GROUP_SIZE: usize = 122_880;
/// A row group in progress is flushed beyond this many bytes, to bound memory.
const MAX_IN_PROGRESS_BYTES: usize = 64 << 20;
/// Target compressed size of one split of a large file.
const SPLIT_BYTES: i64 = 128 << 20;

fn parquet_error(e: ParquetError, path: &Path) -> Error {
    match e {
        ParquetError::External(inner) if inner.is::<std::io::Error>() => {
            let io = *inner.downcast::<std::io::Error>().expect("checked by is()");
            Error::from_io(io, format!("reading {}", path.display()))
        }
        e => Error::data(format!(
            "{} is not a readable Parquet file: {e}",
            path.display()
        ))
        .with_hint(
            "check that the file is Parquet and complete (a writer killed midway leaves no \
                 footer); set type = \"csv\" or \"jsonl\" for other formats",
        ),
    }
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path)
        .map_err(|e| Error::from_io(e, format!("cannot open {}", path.display())))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(e, path))
}

/// The Arrow schema of a Parquet file.
pub(crate) fn schema_of(path: &Path) -> Result<SchemaRef> {
    let b = builder(path)?;
    // Keep field metadata; drop file-level metadata (the embedded ARROW:schema etc.).
    Ok(Arc::new(Schema::new(b.schema().fields().clone())))
}

/// Total rows of `files`, from their footers.
pub(crate) fn count_rows(files: &[PathBuf]) -> Result<u64> {
    let mut n = 0;
    for f in files {
        n += builder(f)?.metadata().file_metadata().num_rows().max(0) as u64;
    }
    Ok(n)
}

/// Splits: per file, consecutive row groups of about [`SPLIT_BYTES`].
pub(crate) fn splits(table: &TableId, files: &[PathBuf]) -> Result<Vec<Split>> {
    let name = table.name();
    let mut out = Vec::new();
    for f in files {
        let b = builder(f)?;
        let meta = b.metadata();
        let mut groups: Vec<(Vec<usize>, u64, u64)> = Vec::new();
        let mut cur: (Vec<usize>, u64, u64) = (Vec::new(), 0, 0);
        let mut cur_bytes: i64 = 0;
        for (i, rg) in meta.row_groups().iter().enumerate() {
            if !cur.0.is_empty() && cur_bytes + rg.compressed_size() > SPLIT_BYTES {
                groups.push(std::mem::take(&mut cur));
                cur_bytes = 0;
            }
            cur.0.push(i);
            cur.1 += rg.num_rows().max(0) as u64;
            cur.2 += rg.compressed_size().max(0) as u64;
            cur_bytes += rg.compressed_size();
        }
        // A file without row groups still gets a split (it has a schema and zero rows).
        if !cur.0.is_empty() || groups.is_empty() {
            groups.push(cur);
        }
        for (rgs, rows, bytes) in groups {
            let index = out.len();
            out.push(Split {
                id: format!("{name}#{index}"),
                table: table.clone(),
                index,
                estimated_rows: Some(rows),
                estimated_bytes: Some(bytes),
                detail: json!({ "path": f.to_string_lossy(), "row_groups": rgs }),
                continues: false,
                start: None,
            });
        }
    }
    Ok(out)
}

/// Streams the split's row groups, skipping `task.skip` rows.
pub(crate) fn read(
    task: &ReadTask<'_>,
    detail: &serde_json::Value,
    em: &mut Emitter,
) -> Result<()> {
    let path = task.path;
    let rgs: Vec<usize> = detail
        .get("row_groups")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default();
    let b = builder(path)?;
    let file_schema = b.schema().clone();
    let want = &task.schema;
    let same = file_schema.fields().len() == want.fields().len()
        && file_schema
            .fields()
            .iter()
            .zip(want.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        let cols = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Error::schema(format!(
            "{} has columns ({}) but the table's first file has ({})",
            path.display(),
            cols(&file_schema),
            cols(want)
        ))
        .with_hint(
            "all files of one table must have the same columns; read them as separate tables",
        ));
    }
    let meta = b.metadata().clone();
    let total_rows: u64 = rgs
        .iter()
        .map(|&i| meta.row_group(i).num_rows().max(0) as u64)
        .sum();
    let total_bytes: u64 = rgs
        .iter()
        .map(|&i| meta.row_group(i).compressed_size().max(0) as u64)
        .sum();
    let reader = b
        .with_row_groups(rgs)
        .with_batch_size(task.batch_size)
        .with_offset(task.skip as usize)
        .build()
        .map_err(|e| parquet_error(e, path))?;
    for batch in reader {
        let batch = batch.map_err(|e| {
            Error::data(format!(
                "{} is not a readable Parquet file: {e}",
                path.display()
            ))
            .with_hint("the file is damaged; write it again")
        })?;
        let bytes = total_bytes * batch.num_rows() as u64 / total_rows.max(1);
        let batch = RecordBatch::try_new(want.clone(), batch.columns().to_vec())
            .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
        em.emit(batch, bytes)?;
    }
    Ok(())
}

/// Parquet writing options, validated.
#[derive(Debug, Clone)]
pub(crate) struct ParquetWriteOptions {
    pub compression: ParquetCompression,
    pub row_group_size: usize,
}

struct ParquetFileWriter {
    w: ArrowWriter<OutFile>,
    schema: SchemaRef,
}

impl FormatFactory for ParquetWriteOptions {
    fn extension(&self) -> String {
        "parquet".to_string()
    }

    fn create(&self, out: OutFile, schema: &SchemaRef) -> Result<Box<dyn FormatWriter>> {
        let compression = match self.compression {
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
            ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
            ParquetCompression::Lz4 => Compression::LZ4_RAW,
            ParquetCompression::None => Compression::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_size))
            .build();
        let w = ArrowWriter::try_new(out, schema.clone(), Some(props))
            .map_err(|e| Error::schema(format!("cannot write this schema as Parquet: {e}")))?;
        Ok(Box::new(ParquetFileWriter {
            w,
            schema: schema.clone(),
        }))
    }
}

impl FormatWriter for ParquetFileWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = if batch.schema() == self.schema {
            batch.clone()
        } else {
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(|e| {
                Error::schema(format!("batch does not match the table's schema: {e}"))
            })?
        };
        self.w.write(&batch).map_err(|e| Error::io(e.to_string()))?;
        if self.w.in_progress_size() > MAX_IN_PROGRESS_BYTES {
            self.w.flush().map_err(|e| Error::io(e.to_string()))?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<OutFile> {
        self.w.into_inner().map_err(|e| Error::io(e.to_string()))
    }
}
