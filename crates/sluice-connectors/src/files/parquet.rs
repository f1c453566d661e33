//! Parquet: metadata-driven splits, a row-group streaming reader, and a bounded-memory writer.
//!
//! The schema comes from the Arrow schema the writer stored in the file (so `sluice.type`
//! field metadata such as `uuid` or `json` survives a round trip), else from the Parquet
//! schema. A large file is split into groups of row groups of about 128 MiB (compressed) so
//! several readers can work on it.
//!
//! Intervals: Parquet's INTERVAL holds unsigned months, days and milliseconds, so it cannot
//! hold Arrow's MonthDayNano (signed parts, nanoseconds). An interval (also inside a list) is
//! written as a struct of its three parts, `months` (int32), `days` (int32) and `nanoseconds`
//! (int64), marked `sluice.type = "interval"`, which any Parquet reader can query and which
//! this source reads back as the interval it was.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Field, Fields, Int32Type, Int64Type, IntervalMonthDayNano, IntervalMonthDayNanoType,
    IntervalUnit, Schema, SchemaRef,
};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use serde_json::json;
use sluice_core::sink::TablePlan;
use sluice_core::types::TYPE_KEY;
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

/// The Arrow schema of a Parquet file (intervals written as structs read as intervals).
pub(crate) fn schema_of(path: &Path) -> Result<SchemaRef> {
    let b = builder(path)?;
    // Keep field metadata; drop file-level metadata (the embedded ARROW:schema etc.).
    Ok(Arc::new(Schema::new(
        b.schema()
            .fields()
            .iter()
            .map(|f| {
                from_parquet_field(f)
                    .map(Arc::new)
                    .unwrap_or_else(|| f.clone())
            })
            .collect::<Vec<_>>(),
    )))
}

// ---------------------------------------------------------------------------------------
// Intervals as structs (see the module docs).

const MONTHS: &str = "months";
const DAYS: &str = "days";
const NANOS: &str = "nanoseconds";

fn interval_parts() -> Fields {
    Fields::from(vec![
        Field::new(MONTHS, DataType::Int32, false),
        Field::new(DAYS, DataType::Int32, false),
        Field::new(NANOS, DataType::Int64, false),
    ])
}

/// How `f` is stored in Parquet, or `None` when as it is: MonthDayNano intervals (at any
/// depth) become structs of their parts marked `sluice.type = "interval"`.
fn to_parquet_field(f: &Field) -> Option<Field> {
    let dt = match f.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let mut md = f.metadata().clone();
            md.insert(TYPE_KEY.to_string(), "interval".to_string());
            return Some(
                Field::new(
                    f.name(),
                    DataType::Struct(interval_parts()),
                    f.is_nullable(),
                )
                .with_metadata(md),
            );
        }
        DataType::List(item) => DataType::List(Arc::new(to_parquet_field(item)?)),
        DataType::LargeList(item) => DataType::LargeList(Arc::new(to_parquet_field(item)?)),
        DataType::FixedSizeList(item, n) => {
            DataType::FixedSizeList(Arc::new(to_parquet_field(item)?), *n)
        }
        _ => return None,
    };
    Some(f.clone().with_data_type(dt))
}

/// The field a Parquet field stands for: [`to_parquet_field`] undone.
fn from_parquet_field(f: &Field) -> Option<Field> {
    let dt = match f.data_type() {
        DataType::Struct(parts)
            if *parts == interval_parts()
                && f.metadata().get(TYPE_KEY).is_some_and(|t| t == "interval") =>
        {
            let mut md = f.metadata().clone();
            md.remove(TYPE_KEY);
            return Some(
                Field::new(
                    f.name(),
                    DataType::Interval(IntervalUnit::MonthDayNano),
                    f.is_nullable(),
                )
                .with_metadata(md),
            );
        }
        DataType::List(item) => DataType::List(Arc::new(from_parquet_field(item)?)),
        DataType::LargeList(item) => DataType::LargeList(Arc::new(from_parquet_field(item)?)),
        DataType::FixedSizeList(item, n) => {
            DataType::FixedSizeList(Arc::new(from_parquet_field(item)?), *n)
        }
        _ => return None,
    };
    Some(f.clone().with_data_type(dt))
}

/// `col` converted to the type of field `to` (one of [`to_parquet_field`] /
/// [`from_parquet_field`]'s pairs of types).
fn convert_column(col: &ArrayRef, to: &Field) -> Result<ArrayRef> {
    use arrow::array::{
        FixedSizeListArray, Int32Array, Int64Array, IntervalMonthDayNanoArray, LargeListArray,
        ListArray, StructArray,
    };
    if col.data_type() == to.data_type() {
        return Ok(col.clone());
    }
    Ok(match (col.data_type(), to.data_type()) {
        (DataType::Interval(IntervalUnit::MonthDayNano), DataType::Struct(parts)) => {
            let a = col.as_primitive::<IntervalMonthDayNanoType>();
            let months: Int32Array = a.values().iter().map(|v| v.months).collect();
            let days: Int32Array = a.values().iter().map(|v| v.days).collect();
            let nanos: Int64Array = a.values().iter().map(|v| v.nanoseconds).collect();
            Arc::new(StructArray::try_new(
                parts.clone(),
                vec![Arc::new(months), Arc::new(days), Arc::new(nanos)],
                a.nulls().cloned(),
            )?)
        }
        (DataType::Struct(_), DataType::Interval(IntervalUnit::MonthDayNano)) => {
            let s = col.as_struct();
            let months = s.column(0).as_primitive::<Int32Type>().values();
            let days = s.column(1).as_primitive::<Int32Type>().values();
            let nanos = s.column(2).as_primitive::<Int64Type>().values();
            let values: Vec<IntervalMonthDayNano> = (0..s.len())
                .map(|i| IntervalMonthDayNano::new(months[i], days[i], nanos[i]))
                .collect();
            Arc::new(IntervalMonthDayNanoArray::new(
                values.into(),
                s.nulls().cloned(),
            ))
        }
        (DataType::List(_), DataType::List(item)) => {
            let l = col.as_list::<i32>();
            let values = convert_column(l.values(), item)?;
            Arc::new(ListArray::try_new(
                item.clone(),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?)
        }
        (DataType::LargeList(_), DataType::LargeList(item)) => {
            let l = col.as_list::<i64>();
            let values = convert_column(l.values(), item)?;
            Arc::new(LargeListArray::try_new(
                item.clone(),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?)
        }
        (DataType::FixedSizeList(..), DataType::FixedSizeList(item, n)) => {
            let l = col.as_fixed_size_list();
            let values = convert_column(l.values(), item)?;
            Arc::new(FixedSizeListArray::try_new(
                item.clone(),
                *n,
                values,
                l.nulls().cloned(),
            )?)
        }
        (from, to) => {
            return Err(Error::internal(format!(
                "no Parquet conversion from {from} to {to}"
            )));
        }
    })
}

/// `batch`'s columns converted to the fields of `schema`.
fn convert_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| convert_column(c, f))
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), cols)
        .map_err(|e| Error::schema(format!("batch does not match the table's schema: {e}")))
}

/// The schema a Parquet file of `schema` is written with.
fn parquet_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                to_parquet_field(f)
                    .map(Arc::new)
                    .unwrap_or_else(|| f.clone())
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
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
    let stored = b.schema().clone();
    let file_schema = schema_of(path)?;
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
        let batch = if file_schema.fields() == stored.fields() {
            RecordBatch::try_new(want.clone(), batch.columns().to_vec())
                .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?
        } else {
            convert_batch(&batch, want)?
        };
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
    /// The schema the file is written with (see [`parquet_schema`]).
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
        let schema = parquet_schema(schema);
        let w = ArrowWriter::try_new(out, schema.clone(), Some(props))
            .map_err(|e| Error::schema(format!("cannot write this schema as Parquet: {e}")))?;
        Ok(Box::new(ParquetFileWriter { w, schema }))
    }

    /// Writes one row of NULLs of each column into memory: a type Parquet cannot hold fails
    /// here, naming its column, before any data moves (instead of at the first batch).
    fn check(&self, table: &TablePlan) -> Result<()> {
        for f in table.schema.arrow.fields() {
            let f = to_parquet_field(f).unwrap_or_else(|| f.as_ref().clone());
            let schema = Arc::new(Schema::new(vec![f.clone().with_nullable(true)]));
            let probe = || -> std::result::Result<(), ParquetError> {
                let mut w = ArrowWriter::try_new(std::io::sink(), schema.clone(), None)?;
                let row = arrow::array::new_null_array(f.data_type(), 1);
                w.write(&RecordBatch::try_new(schema.clone(), vec![row])?)?;
                w.close().map(|_| ())
            };
            if let Err(e) = probe() {
                return Err(Error::schema(format!(
                    "table {}, column {:?}: Parquet cannot hold {}: {e}",
                    table.target,
                    f.name(),
                    f.data_type()
                ))
                .with_hint(format!(
                    "cast it with [[transform]] type = \"cast\", columns = {{ {:?} = \"text\" }}",
                    f.name()
                )));
            }
        }
        Ok(())
    }
}

impl FormatWriter for ParquetFileWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = if batch.schema() == self.schema {
            batch.clone()
        } else {
            convert_batch(batch, &self.schema)?
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{IntervalMonthDayNanoArray, ListArray};
    use sluice_core::TableSchema;

    fn intervals() -> (SchemaRef, RecordBatch) {
        let iv = IntervalMonthDayNanoArray::from(vec![
            Some(IntervalMonthDayNano::new(14, -3, 14_706_789_000_001)),
            None,
            Some(IntervalMonthDayNano::new(-1, 0, -1)),
        ]);
        let item = Arc::new(Field::new(
            "item",
            DataType::Interval(IntervalUnit::MonthDayNano),
            true,
        ));
        let list = ListArray::new(
            item.clone(),
            arrow::buffer::OffsetBuffer::from_lengths([2, 0, 1]),
            Arc::new(iv.clone()),
            None,
        );
        let schema = Arc::new(Schema::new(vec![
            sluice_core::types::with_native_type(
                Field::new("iv", iv.data_type().clone(), true),
                "postgres",
                "interval",
            ),
            Field::new("ivs", DataType::List(item), true),
        ]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(iv), Arc::new(list)]).unwrap();
        (schema, batch)
    }

    #[test]
    fn intervals_are_stored_as_structs_and_read_back_exactly() {
        let (schema, batch) = intervals();
        let stored = parquet_schema(&schema);
        assert!(matches!(stored.field(0).data_type(), DataType::Struct(_)));
        assert_eq!(stored.field(0).metadata()[TYPE_KEY], "interval");
        assert_eq!(
            stored.field(0).metadata()["sluice.native"],
            "postgres:interval"
        );
        let written = convert_batch(&batch, &stored).unwrap();
        let mut file = Vec::new();
        let mut w = ArrowWriter::try_new(&mut file, stored.clone(), None).unwrap();
        w.write(&written).unwrap();
        w.close().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file)).unwrap();
        let read: Vec<Field> = reader
            .schema()
            .fields()
            .iter()
            .map(|f| from_parquet_field(f).unwrap_or_else(|| f.as_ref().clone()))
            .collect();
        let read = Arc::new(Schema::new(read));
        assert_eq!(read.fields(), schema.fields());
        let got = reader.build().unwrap().next().unwrap().unwrap();
        assert_eq!(convert_batch(&got, &read).unwrap(), batch);
    }

    #[test]
    fn a_type_parquet_cannot_hold_is_refused_before_any_data_moves() {
        let opts = ParquetWriteOptions {
            compression: ParquetCompression::None,
            row_group_size: 10,
        };
        let plan = |schema: SchemaRef| TablePlan {
            target: TableId::new(["t"]),
            schema: TableSchema {
                id: TableId::new(["t"]),
                arrow: schema,
                primary_key: Vec::new(),
            },
            splits: 1,
        };
        opts.check(&plan(intervals().0)).unwrap();
        // Not a type Sluice's sources produce (a struct holding an interval), but one the
        // Parquet writer cannot write: named before any data moves.
        let inner = Fields::from(vec![Field::new(
            "x",
            DataType::Interval(IntervalUnit::MonthDayNano),
            true,
        )]);
        let bad = Arc::new(Schema::new(vec![
            Field::new("ok", DataType::Int32, true),
            Field::new("s", DataType::Struct(inner), true),
        ]));
        let e = opts.check(&plan(bad)).unwrap_err();
        assert!(e.to_string().contains("table t, column \"s\""), "{e}");
        assert!(e.hint().unwrap().contains("cast"), "{e:?}");
    }
}
