//! JSON Lines: schema inference, the streaming reader, and the writer.
//!
//! Inference reads the first `infer_rows` objects and keeps keys in first-seen order:
//! booleans → `bool`, integers → `int64`, any fractional number → `float64`, strings →
//! `text`, objects and arrays → `json` (the value's JSON text). Conflicting scalars become
//! `text`; anything mixed with an object or array becomes `json`; a key that is always null
//! is `text`. Overrides such as `tags = "array<text>"` read arrays into Arrow lists.
//!
//! Reading uses arrow-json's tape decoder; `json` columns use a small custom decoder that
//! writes the value back as compact JSON text. Keys not in the schema are ignored. A byte
//! range of a large file (see [`super::ranges`]) starts after a newline; its messages add the
//! lines before it, so line numbers count from the file start.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::reader::{ArrayDecoder, DecoderContext, DecoderFactory, Tape, TapeElement};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use sluice_core::types::TYPE_KEY;
use sluice_core::{Error, LogicalType, Result};

use super::config::{InputCompression, OutputCompression};
use super::convert;
use super::csv::apply_overrides;
use super::sink::{Encoded, FormatFactory, FormatWriter, OutFile};
use super::source::{Emitter, ReadTask, open_input, read_error};

/// JSON Lines reading options, validated.
#[derive(Debug, Clone)]
pub(crate) struct JsonlReadOptions {
    pub overrides: BTreeMap<String, LogicalType>,
    pub infer_rows: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Text,
    Json,
}

impl Kind {
    fn of(v: &serde_json::Value) -> Kind {
        use serde_json::Value as V;
        match v {
            V::Null => Kind::Null,
            V::Bool(_) => Kind::Bool,
            V::Number(n) if n.is_i64() => Kind::Int,
            V::Number(_) => Kind::Float,
            V::String(_) => Kind::Text,
            V::Array(_) | V::Object(_) => Kind::Json,
        }
    }

    fn merge(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Null, x) | (x, Kind::Null) => x,
            (Kind::Json, _) | (_, Kind::Json) => Kind::Json,
            (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
            _ => Kind::Text,
        }
    }

    fn logical(self) -> LogicalType {
        match self {
            Kind::Null | Kind::Text => LogicalType::Text,
            Kind::Bool => LogicalType::Bool,
            Kind::Int => LogicalType::Int64,
            Kind::Float => LogicalType::Float64,
            Kind::Json => LogicalType::Json,
        }
    }
}

/// A JSON object with its keys in document order.
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Infers column kinds from lines of JSON objects, keys in first-seen order.
fn infer_kinds(
    lines: impl Iterator<Item = (u64, Vec<u8>)>,
    path: &Path,
) -> Result<Vec<(String, Kind)>> {
    let mut cols: Vec<(String, Kind)> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (line, bytes) in lines {
        let text = std::str::from_utf8(&bytes).map_err(|_| utf8_error(path, line))?;
        let obj: Ordered = serde_json::from_str(text).map_err(|e| syntax_error(path, line, &e))?;
        for (k, v) in obj.0 {
            let kind = Kind::of(&v);
            match index.get(&k) {
                Some(&i) => cols[i].1 = cols[i].1.merge(kind),
                None => {
                    index.insert(k.clone(), cols.len());
                    cols.push((k, kind));
                }
            }
        }
    }
    Ok(cols)
}

fn utf8_error(path: &Path, line: u64) -> Error {
    Error::data(format!("{}: line {line}: invalid UTF-8", path.display())).with_hint(
        "the file must be UTF-8; convert it first, e.g. iconv -f latin1 -t utf-8 in > out",
    )
}

fn syntax_error(path: &Path, line: u64, e: &serde_json::Error) -> Error {
    Error::data(format!(
        "{}: line {line}: not a JSON object: {e}",
        path.display()
    ))
    .with_hint("each line must hold one JSON object, e.g. {\"id\": 1, \"name\": \"a\"}")
}

/// Non-blank lines of `reader` with their 1-based line numbers, up to `limit`.
struct Lines<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
    err: Option<std::io::Error>,
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = (u64, Vec<u8>);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some((self.line, self.buf.clone()));
                }
                Err(e) => {
                    self.err = Some(e);
                    return None;
                }
            }
        }
    }
}

impl JsonlReadOptions {
    /// Infers the schema from the first `infer_rows` objects of `path`, then applies overrides.
    pub(crate) fn infer(&self, path: &Path, compression: InputCompression) -> Result<SchemaRef> {
        let input = open_input(path, compression)?;
        let mut lines = Lines {
            reader: input.reader,
            line: 0,
            buf: Vec::new(),
            err: None,
        };
        let kinds = infer_kinds(lines.by_ref().take(self.infer_rows), path)?;
        if let Some(e) = lines.err {
            return Err(read_error(e, path));
        }
        if kinds.is_empty() {
            return Err(
                Error::data(format!("{} has no JSON objects with keys", path.display()))
                    .with_hint("remove the empty file, or point path at the files to read"),
            );
        }
        let fields = kinds
            .into_iter()
            .map(|(k, kind)| kind.logical().field(&k, true))
            .collect();
        apply_overrides(fields, &self.overrides, path)
    }

    fn decoder(schema: SchemaRef, batch_size: usize) -> Result<arrow::json::reader::Decoder> {
        arrow::json::ReaderBuilder::new(schema)
            .with_batch_size(batch_size)
            .with_coerce_primitive(true)
            .with_decoder_factory(Arc::new(JsonTextFactory))
            .build_decoder()
            .map_err(|e| Error::schema(format!("cannot read this schema from JSON: {e}")))
    }

    /// Streams `task.path` as batches of `task.schema`.
    pub(crate) fn read(&self, task: &ReadTask<'_>, em: &mut Emitter) -> Result<()> {
        let path = task.path;
        let what = path.display().to_string();
        let mut fields = Vec::new();
        let mut convs = Vec::new();
        for f in task.schema.fields() {
            let (df, conv) = convert::read_plan(f, true)?;
            fields.push(df);
            convs.push(conv);
        }
        let decode_schema = Arc::new(Schema::new(fields));
        let mut decoder = Self::decoder(decode_schema.clone(), task.batch_size)?;
        let mut input = task.open()?;
        let first = task.first_row();
        // Resume: skip records (non-blank lines).
        let mut skipped = 0;
        let mut line = Vec::new();
        while skipped < task.skip {
            line.clear();
            let n = input
                .reader
                .read_until(b'\n', &mut line)
                .map_err(|e| read_error(e, path))?;
            if n == 0 {
                break;
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                skipped += 1;
            }
        }
        let mut rows_before = task.skip;
        loop {
            let buf = input.reader.fill_buf().map_err(|e| read_error(e, path))?;
            let eof = buf.is_empty();
            let decoded = match decoder.decode(buf) {
                Ok(n) => n,
                Err(e) => return Err(self.diagnose(task, &decode_schema, rows_before, e)),
            };
            input.reader.consume(decoded);
            if decoded == 0 || eof {
                match decoder.flush() {
                    Ok(Some(batch)) => {
                        let n = batch.num_rows() as u64;
                        let base = first + rows_before + 1;
                        let line_of = move |r: usize| base + r as u64;
                        let batch = convert::apply(batch, &task.schema, &convs, &what, &line_of)?;
                        em.emit(batch, input.take_bytes())?;
                        rows_before += n;
                    }
                    Ok(None) if eof => break,
                    Ok(None) => {}
                    Err(e) => return Err(self.diagnose(task, &decode_schema, rows_before, e)),
                }
            }
        }
        Ok(())
    }

    /// A batch failed: go through its lines one by one to find the line, column and value.
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
                "{}: after row {}: {original}",
                path.display(),
                first + rows_before
            ))
            .with_hint("fix the data, or read the column as text with schema = { col = \"text\" }")
        };
        let Ok(input) = task.open() else {
            return fallback();
        };
        let lines = Lines {
            reader: input.reader,
            line: first,
            buf: Vec::new(),
            err: None,
        };
        let window = lines.skip(rows_before as usize).take(task.batch_size + 1);
        for (line, bytes) in window {
            let Ok(text) = std::str::from_utf8(&bytes) else {
                return utf8_error(path, line);
            };
            let obj: serde_json::Value = match serde_json::from_str(text) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                Ok(_) => {
                    return Error::data(format!(
                        "{}: line {line}: not a JSON object",
                        path.display()
                    ))
                    .with_hint("each line must hold one JSON object, e.g. {\"id\": 1}");
                }
                Err(e) => return syntax_error(path, line, &e),
            };
            for field in schema.fields() {
                let one = Arc::new(Schema::new(vec![field.as_ref().clone()]));
                let Ok(mut d) = Self::decoder(one, 1) else {
                    continue;
                };
                let ok = d.decode(text.as_bytes()).is_ok() && d.flush().is_ok();
                if !ok {
                    let lt = LogicalType::of_field(
                        task.schema.field_with_name(field.name()).unwrap_or(field),
                    )
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                    let value = obj
                        .get(field.name())
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    return Error::data(format!(
                        "{}: line {line}, column {:?}: cannot read {value} as {lt}",
                        path.display(),
                        field.name()
                    ))
                    .with_hint(format!(
                        "fix the data, or read the column as text with schema = {{ {} = \"text\" }}",
                        field.name()
                    ));
                }
            }
        }
        fallback()
    }
}

/// Decodes `json` columns (Utf8 with `sluice.type = json`) as the value's compact JSON text.
#[derive(Debug)]
struct JsonTextFactory;

impl DecoderFactory for JsonTextFactory {
    fn make_default_decoder(
        &self,
        _ctx: &DecoderContext,
        field: &FieldRef,
        _is_nullable: bool,
    ) -> std::result::Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        let is_json = field.data_type() == &DataType::Utf8
            && field.metadata().get(TYPE_KEY).is_some_and(|t| t == "json");
        Ok(is_json.then(|| Box::new(JsonTextDecoder) as Box<dyn ArrayDecoder>))
    }
}

struct JsonTextDecoder;

impl ArrayDecoder for JsonTextDecoder {
    fn decode(
        &mut self,
        tape: &Tape<'_>,
        pos: &[u32],
    ) -> std::result::Result<ArrayRef, ArrowError> {
        let mut b = StringBuilder::with_capacity(pos.len(), pos.len() * 16);
        let mut buf = String::new();
        for &p in pos {
            if tape.get(p) == TapeElement::Null {
                b.append_null();
            } else {
                buf.clear();
                write_json(tape, p, &mut buf);
                b.append_value(&buf);
            }
        }
        Ok(Arc::new(b.finish()))
    }
}

/// Writes the value at `idx` as compact JSON; returns the index after it.
fn write_json(tape: &Tape<'_>, idx: u32, out: &mut String) -> u32 {
    match tape.get(idx) {
        TapeElement::StartObject(end) => {
            out.push('{');
            let mut cur = idx + 1;
            let mut first = true;
            while cur < end {
                if !first {
                    out.push(',');
                }
                first = false;
                cur = write_json(tape, cur, out);
                out.push(':');
                cur = write_json(tape, cur, out);
            }
            out.push('}');
            end + 1
        }
        TapeElement::StartList(end) => {
            out.push('[');
            let mut cur = idx + 1;
            let mut first = true;
            while cur < end {
                if !first {
                    out.push(',');
                }
                first = false;
                cur = write_json(tape, cur, out);
            }
            out.push(']');
            end + 1
        }
        TapeElement::String(s) => {
            out.push_str(&serde_json::to_string(tape.get_string(s)).unwrap_or_default());
            idx + 1
        }
        TapeElement::Number(s) => {
            out.push_str(tape.get_string(s));
            idx + 1
        }
        TapeElement::I64(hi) => {
            let lo = match tape.get(idx + 1) {
                TapeElement::I32(lo) => lo as u32 as i64,
                _ => 0,
            };
            let _ = write!(out, "{}", ((hi as i64) << 32) | lo);
            idx + 2
        }
        TapeElement::I32(v) => {
            let _ = write!(out, "{v}");
            idx + 1
        }
        TapeElement::F64(hi) => {
            let lo = match tape.get(idx + 1) {
                TapeElement::F32(lo) => lo as u64,
                _ => 0,
            };
            let _ = write!(out, "{}", f64::from_bits(((hi as u64) << 32) | lo));
            idx + 2
        }
        TapeElement::F32(v) => {
            let _ = write!(out, "{}", f32::from_bits(v));
            idx + 1
        }
        TapeElement::True => {
            out.push_str("true");
            idx + 1
        }
        TapeElement::False => {
            out.push_str("false");
            idx + 1
        }
        _ => {
            out.push_str("null");
            idx + 1
        }
    }
}

/// JSON Lines writing options, validated.
#[derive(Debug, Clone)]
pub(crate) struct JsonlWriteOptions {
    pub compression: OutputCompression,
}

type JsonWriter = arrow::json::Writer<Encoded<OutFile>, arrow::json::writer::LineDelimited>;

struct JsonlFileWriter {
    w: JsonWriter,
}

impl FormatFactory for JsonlWriteOptions {
    fn extension(&self) -> String {
        format!("jsonl{}", self.compression.suffix())
    }

    fn create(&self, out: OutFile, _schema: &SchemaRef) -> Result<Box<dyn FormatWriter>> {
        let enc = Encoded::new(out, self.compression)?;
        let w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_encoder_factory(Arc::new(convert::JsonValues))
            .build(enc);
        Ok(Box::new(JsonlFileWriter { w }))
    }
}

impl FormatWriter for JsonlFileWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let b = convert::for_text_output(batch, false)?;
        self.w.write(&b).map_err(Error::from)
    }

    fn finish(mut self: Box<Self>) -> Result<OutFile> {
        self.w.finish().map_err(Error::from)?;
        self.w
            .into_inner()
            .finish()
            .map_err(|e| Error::from_io(e, "finishing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(String, Kind)> {
        let lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.as_bytes().to_vec()));
        infer_kinds(lines, Path::new("t.jsonl")).unwrap()
    }

    #[test]
    fn inference_keeps_key_order_and_widens() {
        let k = kinds(
            "{\"z\":1,\"a\":true,\"n\":null,\"o\":{\"x\":1}}\n{\"z\":1.5,\"a\":\"x\",\"n\":null,\"o\":3,\"new\":[1]}",
        );
        let names: Vec<_> = k.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["z", "a", "n", "o", "new"]);
        let kinds: Vec<_> = k.iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            [Kind::Float, Kind::Text, Kind::Null, Kind::Json, Kind::Json]
        );
        assert_eq!(Kind::Null.logical(), LogicalType::Text);
    }

    #[test]
    fn inference_names_the_bad_line() {
        let lines = vec![(1, b"{\"a\":1}".to_vec()), (2, b"{\"a\":".to_vec())];
        let e = infer_kinds(lines.into_iter(), Path::new("t.jsonl"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("t.jsonl: line 2"), "{e}");
    }
}
