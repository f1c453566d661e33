//! CSV: schema inference, the streaming reader, and the writer.
//!
//! Reading uses arrow-csv's push decoder over a 1 MiB buffered (and possibly decompressing)
//! reader, so memory is one batch plus buffers regardless of file size. Values are parsed
//! straight into typed Arrow arrays; types arrow-csv cannot parse are read as text and
//! converted by [`super::convert`].
//!
//! Line numbers in messages count records (the header is line 1); they equal physical line
//! numbers unless a quoted field spans lines. A byte range of a large file (see
//! [`super::ranges`]) is read as its file's header followed by the range, and its messages
//! add the records before the range, so they count from the file start too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::csv::reader::Format;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use sluice_core::{Error, LogicalType, Result};

use super::config::{InputCompression, OutputCompression};
use super::convert;
use super::sink::{Encoded, FormatFactory, FormatWriter, OutFile};
use super::source::{Emitter, ReadTask, open_input, read_error};

/// `line N` in an arrow-csv message, which counts records from the start of what it read.
static LINE_NUMBER: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\bline (\d+)").expect("valid regex"));

/// `msg` with every `line N` moved on by `records` (the records before a byte range).
fn shift_lines(msg: &str, records: u64) -> String {
    if records == 0 {
        return msg.to_string();
    }
    LINE_NUMBER
        .replace_all(msg, |c: &regex::Captures<'_>| match c[1].parse::<u64>() {
            Ok(n) => format!("line {}", n + records),
            Err(_) => c[0].to_string(),
        })
        .into_owned()
}

/// CSV reading options, validated.
#[derive(Debug, Clone)]
pub(crate) struct CsvReadOptions {
    pub header: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub escape: Option<u8>,
    pub null: Option<String>,
    pub overrides: BTreeMap<String, LogicalType>,
    pub infer_rows: usize,
}

/// An override naming a column that no discovered table has is a config error.
pub(crate) fn check_overrides_used(
    overrides: &BTreeMap<String, LogicalType>,
    schemas: &[(String, SchemaRef)],
) -> Result<()> {
    for col in overrides.keys() {
        if !schemas
            .iter()
            .any(|(_, s)| s.fields().iter().any(|f| f.name() == col))
        {
            let mut names: Vec<&str> = schemas
                .iter()
                .flat_map(|(_, s)| s.fields().iter().map(|f| f.name().as_str()))
                .collect();
            names.sort_unstable();
            names.dedup();
            let tables: Vec<&str> = schemas.iter().map(|(t, _)| t.as_str()).collect();
            return Err(Error::config(format!(
                "schema names column {col:?}, which no table has (tables: {})",
                tables.join(", ")
            ))
            .with_hint(format!("the columns are: {}", names.join(", "))));
        }
    }
    Ok(())
}

/// Types a CSV column cannot be read as.
pub(crate) fn check_override(col: &str, t: &LogicalType) -> Result<()> {
    if let LogicalType::Array(_) = t {
        return Err(Error::config(format!(
            "schema: column {col:?} cannot be read from CSV as {t}"
        ))
        .with_hint(format!(
            "read it as text or json, e.g. schema = {{ {col} = \"json\" }}"
        )));
    }
    Ok(())
}

/// Applies `schema` overrides to inferred fields. An override applies to every table that
/// has the column; [`check_overrides_used`] reports keys that no table has.
pub(crate) fn apply_overrides(
    fields: Vec<Field>,
    overrides: &BTreeMap<String, LogicalType>,
    _path: &Path,
) -> Result<SchemaRef> {
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|f| match overrides.get(f.name()) {
            Some(t) => t.field(f.name(), true),
            None => f,
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

impl CsvReadOptions {
    fn format(&self) -> Result<Format> {
        let mut f = Format::default()
            .with_header(self.header)
            .with_delimiter(self.delimiter)
            .with_quote(self.quote);
        if let Some(e) = self.escape {
            f = f.with_escape(e);
        }
        if let Some(null) = &self.null {
            let re = regex::Regex::new(&format!("^{}$", regex::escape(null)))
                .map_err(|e| Error::config(format!("null = {null:?}: {e}")))?;
            f = f.with_null_regex(re);
        }
        Ok(f)
    }

    /// A csv-core parser set up as arrow-csv sets up the reader's (same delimiter, quote,
    /// escape; no comments; any of CR, LF, CR LF ends a record), so that the record ends it
    /// finds are the reader's.
    pub(crate) fn boundary_parser(&self) -> csv_core::Reader {
        let mut b = csv_core::ReaderBuilder::new();
        b.delimiter(self.delimiter)
            .quote(self.quote)
            .escape(self.escape);
        b.build()
    }

    /// Infers the schema from the first `infer_rows` rows of `path`, then applies overrides.
    pub(crate) fn infer(&self, path: &Path, compression: InputCompression) -> Result<SchemaRef> {
        let input = open_input(path, compression)?;
        let (schema, _) = self
            .format()?
            .infer_schema(input.reader, Some(self.infer_rows))
            .map_err(|e| csv_error(e, path, 0))?;
        if schema.fields().is_empty() {
            return Err(Error::data(format!(
                "{} is empty: there is no header line",
                path.display()
            ))
            .with_hint("remove the empty file, or point path at the files to read"));
        }
        let fields = schema
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Null => LogicalType::Text,
                    dt => LogicalType::from_arrow(dt)?,
                };
                Ok(t.field(f.name(), true))
            })
            .collect::<Result<Vec<_>>>()?;
        apply_overrides(fields, &self.overrides, path)
    }

    /// Streams `task.path` as batches of `task.schema`.
    pub(crate) fn read(&self, task: &ReadTask<'_>, em: &mut Emitter) -> Result<()> {
        let path = task.path;
        let what = path.display().to_string();
        let mut decode_fields = Vec::new();
        let mut convs = Vec::new();
        for f in task.schema.fields() {
            let (df, conv) = convert::read_plan(f, false)?;
            decode_fields.push(df);
            convs.push(conv);
        }
        let decode_schema = Arc::new(Schema::new(decode_fields));
        let mut builder = arrow::csv::ReaderBuilder::new(decode_schema.clone())
            .with_format(self.format()?)
            .with_header_validation(self.header)
            .with_batch_size(task.batch_size);
        if task.skip > 0 {
            builder = builder.with_bounds(task.skip as usize, usize::MAX / 2);
        }
        let mut decoder = builder.build_decoder();
        let mut input = task.open()?;
        let header = u64::from(self.header);
        let first = task.first_row();
        let mut rows_before = task.skip;
        loop {
            let buf = input.reader.fill_buf().map_err(|e| read_error(e, path))?;
            let eof = buf.is_empty();
            let decoded = decoder.decode(buf).map_err(|e| csv_error(e, path, first))?;
            input.reader.consume(decoded);
            if decoded == 0 || decoder.capacity() == 0 {
                match decoder.flush() {
                    Ok(Some(batch)) => {
                        let n = batch.num_rows() as u64;
                        let base = first + rows_before + header + 1;
                        let line_of = move |r: usize| base + r as u64;
                        let batch = convert::apply(batch, &task.schema, &convs, &what, &line_of)?;
                        em.emit(batch, input.take_bytes())?;
                        rows_before += n;
                    }
                    Ok(None) if eof => break,
                    Ok(None) => {}
                    Err(e @ ArrowError::ParseError(_)) => {
                        return Err(self.diagnose(task, &decode_schema, rows_before, e));
                    }
                    Err(e) => return Err(csv_error(e, path, first)),
                }
            }
        }
        Ok(())
    }

    /// A batch failed to parse: read it again as text to find the row, column and value.
    fn diagnose(
        &self,
        task: &ReadTask<'_>,
        schema: &SchemaRef,
        rows_before: u64,
        original: ArrowError,
    ) -> Error {
        let path = task.path;
        let first = task.first_row();
        let fallback = || {
            Error::data(format!(
                "{}: rows {} to {}: {}",
                path.display(),
                first + rows_before + 1,
                first + rows_before + task.batch_size as u64,
                strip_prefix(&original)
            ))
            .with_hint("fix the data, or read the column as text with schema = { col = \"text\" }")
        };
        let text_schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let Ok(fmt) = self.format() else {
            return fallback();
        };
        let mut decoder = arrow::csv::ReaderBuilder::new(text_schema)
            .with_format(fmt)
            .with_batch_size(task.batch_size)
            .with_bounds(rows_before as usize, rows_before as usize + task.batch_size)
            .build_decoder();
        let Ok(mut input) = task.open() else {
            return fallback();
        };
        let batch = loop {
            let Ok(buf) = input.reader.fill_buf() else {
                return fallback();
            };
            let Ok(decoded) = decoder.decode(buf) else {
                return fallback();
            };
            let eof = buf.is_empty();
            input.reader.consume(decoded);
            if decoded == 0 || decoder.capacity() == 0 {
                match decoder.flush() {
                    Ok(Some(b)) => break b,
                    Ok(None) if !eof => continue,
                    _ => return fallback(),
                }
            }
        };
        let line0 = first + rows_before + u64::from(self.header) + 1;
        for (i, field) in schema.fields().iter().enumerate() {
            if field.data_type() == &DataType::Utf8 {
                continue;
            }
            let text = batch.column(i);
            let Ok(cast) = arrow::compute::cast(text, field.data_type()) else {
                continue;
            };
            let strings = text.as_string::<i32>();
            if let Some(row) = (0..strings.len()).find(|&r| strings.is_valid(r) && cast.is_null(r))
            {
                let t = task.schema.field(i);
                let lt = LogicalType::of_field(t)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                return Error::data(format!(
                    "{}: line {}, column {:?}: cannot parse {:?} as {lt}",
                    path.display(),
                    line0 + row as u64,
                    field.name(),
                    strings.value(row)
                ))
                .with_hint(format!(
                    "fix the data, or read the column as text with schema = {{ {} = \"text\" }}",
                    field.name()
                ));
            }
        }
        fallback()
    }
}

fn strip_prefix(e: &ArrowError) -> String {
    match e {
        ArrowError::CsvError(m) | ArrowError::ParseError(m) => m.clone(),
        other => other.to_string(),
    }
}

/// An arrow-csv error about `path`, classified and with a hint; `records` before what was
/// read are added to its line numbers.
fn csv_error(e: ArrowError, path: &Path, records: u64) -> Error {
    let msg = shift_lines(&strip_prefix(&e), records);
    let p = path.display();
    if let ArrowError::IoError(_, io) = e {
        return read_error(std::io::Error::new(io.kind(), msg), path);
    }
    if msg.contains("incorrect number of fields")
        || msg.contains("found record with")
        || msg.contains("unequal lengths")
    {
        Error::data(format!("{p}: {msg}")).with_hint(
            "every line must have as many fields as the header; check delimiter = \"...\" and \
             that fields containing the delimiter are quoted",
        )
    } else if msg.contains("UTF-8") || msg.contains("utf-8") || msg.contains("UTF8") {
        Error::data(format!("{p}: {msg}")).with_hint(
            "the file must be UTF-8; convert it first, e.g. iconv -f latin1 -t utf-8 in > out",
        )
    } else if msg.contains("header") {
        Error::schema(format!("{p}: {msg}")).with_hint(
            "all files of one table must have the same columns; read them as separate tables \
             (remove table = ...) or fix the header",
        )
    } else {
        Error::data(format!("{p}: {msg}"))
    }
}

/// CSV writing options, validated.
#[derive(Debug, Clone)]
pub(crate) struct CsvWriteOptions {
    pub header: bool,
    pub delimiter: u8,
    pub null: String,
    pub compression: OutputCompression,
}

struct CsvFileWriter {
    w: arrow::csv::Writer<Encoded<OutFile>>,
}

impl FormatFactory for CsvWriteOptions {
    fn extension(&self) -> String {
        format!("csv{}", self.compression.suffix())
    }

    fn create(&self, out: OutFile, _schema: &SchemaRef) -> Result<Box<dyn FormatWriter>> {
        let enc = Encoded::new(out, self.compression)?;
        let w = arrow::csv::WriterBuilder::new()
            .with_header(self.header)
            .with_delimiter(self.delimiter)
            .with_null(self.null.clone())
            .with_timestamp_format("%Y-%m-%dT%H:%M:%S%.f".to_string())
            .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.f%:z".to_string())
            .build(enc);
        Ok(Box::new(CsvFileWriter { w }))
    }
}

impl FormatWriter for CsvFileWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let b = convert::for_text_output(batch, true)?;
        self.w.write(&b).map_err(Error::from)
    }

    fn finish(self: Box<Self>) -> Result<OutFile> {
        self.w
            .into_inner()
            .finish()
            .map_err(|e| Error::from_io(e, "finishing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_must_name_a_column_of_some_table() {
        let fields = vec![Field::new("a", DataType::Int64, true)];
        let o = BTreeMap::from([("b".to_string(), LogicalType::Text)]);
        let s = apply_overrides(fields.clone(), &o, Path::new("x.csv")).unwrap();
        let e = check_overrides_used(&o, &[("x".into(), s)]).unwrap_err();
        assert!(e.to_string().contains("\"b\""), "{e}");
        assert!(e.to_string().contains("tables: x"), "{e}");
        assert!(e.hint().unwrap().contains("a"));
        let o = BTreeMap::from([("a".to_string(), LogicalType::Uuid)]);
        let s = apply_overrides(fields, &o, Path::new("x.csv")).unwrap();
        assert_eq!(
            LogicalType::of_field(s.field(0)).unwrap(),
            LogicalType::Uuid
        );
    }

    #[test]
    fn line_numbers_of_a_range_count_from_the_file_start() {
        assert_eq!(
            shift_lines(
                "incorrect number of fields for line 3, expected 2 got 3",
                100
            ),
            "incorrect number of fields for line 103, expected 2 got 3"
        );
        assert_eq!(shift_lines("line 7 and field 2", 0), "line 7 and field 2");
        assert_eq!(
            shift_lines("no number; inline 5", 10),
            "no number; inline 5"
        );
    }

    #[test]
    fn arrays_cannot_be_read_from_csv() {
        let t: LogicalType = "array<int32>".parse().unwrap();
        assert!(check_override("x", &t).is_err());
        assert!(check_override("x", &LogicalType::Json).is_ok());
    }
}
