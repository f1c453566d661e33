//! Binary `COPY … TO STDOUT` → Arrow, without an intermediate row representation.
//!
//! The stream is an 11-byte signature, flags and a header extension, then one tuple per row:
//! an `i16` field count and, per field, an `i32` length (-1 for NULL) and the type's binary
//! send format (big-endian). Values go straight into Arrow builders; `batch_size` rows make a
//! batch. Chunks from the server may split a row anywhere, so unread bytes are carried over.
//!
//! Timestamps: PostgreSQL counts µs from 2000-01-01, Arrow from 1970-01-01. `infinity` and
//! `-infinity` become `i64::MAX` / `i64::MIN` (dates: `i32::MAX` / `i32::MIN`), which the
//! PostgreSQL sink writes back as infinity. Values after 294247-01-10 (beyond Arrow's µs
//! range, PostgreSQL goes to 294276) are carried with wrapping arithmetic, so PostgreSQL →
//! PostgreSQL copies stay exact; other sinks would see them as far-past values.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, ListArray, PrimitiveBuilder,
    StringBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, Date32Type, Decimal128Type, Decimal256Type, FieldRef, Float32Type,
    Float64Type, Int16Type, Int32Type, Int64Type, IntervalMonthDayNano, IntervalMonthDayNanoType,
    SchemaRef, Time64MicrosecondType, TimestampMicrosecondType,
};
use arrow::record_batch::RecordBatch;
use bytes::{Buf, BytesMut};

use super::numeric;
use super::types::Dec;

/// µs between 1970-01-01 and 2000-01-01.
pub(crate) const EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
pub(crate) const EPOCH_OFFSET_DAYS: i32 = 10_957;
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Where a value failed: the column index, the row within the split, and why.
#[derive(Debug)]
pub struct DecodeError {
    pub column: Option<usize>,
    pub row: u64,
    pub message: String,
}

enum Col {
    Bool(BooleanBuilder),
    I16(PrimitiveBuilder<Int16Type>),
    I32(PrimitiveBuilder<Int32Type>),
    I64(PrimitiveBuilder<Int64Type>),
    F32(PrimitiveBuilder<Float32Type>),
    F64(PrimitiveBuilder<Float64Type>),
    D128(PrimitiveBuilder<Decimal128Type>, i8),
    D256(PrimitiveBuilder<Decimal256Type>, i8),
    NumText(StringBuilder),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Bits(StringBuilder),
    Bytea(BinaryBuilder),
    Date(PrimitiveBuilder<Date32Type>),
    Time(PrimitiveBuilder<Time64MicrosecondType>),
    Ts(PrimitiveBuilder<TimestampMicrosecondType>),
    Interval(PrimitiveBuilder<IntervalMonthDayNanoType>),
    Uuid(FixedSizeBinaryBuilder),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        valid: Vec<bool>,
        child: Box<Col>,
    },
}

fn prim<T: ArrowPrimitiveType>(dt: &arrow::datatypes::DataType) -> PrimitiveBuilder<T> {
    PrimitiveBuilder::<T>::new().with_data_type(dt.clone())
}

impl Col {
    fn new(dec: &Dec, field: &FieldRef) -> Col {
        let dt = field.data_type();
        match dec {
            Dec::Bool => Col::Bool(BooleanBuilder::new()),
            Dec::I16 => Col::I16(prim(dt)),
            Dec::I32 => Col::I32(prim(dt)),
            Dec::I64 => Col::I64(prim(dt)),
            Dec::F32 => Col::F32(prim(dt)),
            Dec::F64 => Col::F64(prim(dt)),
            Dec::Decimal(p, s) if *p <= 38 => Col::D128(prim(dt), *s),
            Dec::Decimal(_, s) => Col::D256(prim(dt), *s),
            Dec::NumericText => Col::NumText(StringBuilder::new()),
            Dec::Text => Col::Text(StringBuilder::new()),
            Dec::Jsonb => Col::Jsonb(StringBuilder::new()),
            Dec::Bits => Col::Bits(StringBuilder::new()),
            Dec::Bytea => Col::Bytea(BinaryBuilder::new()),
            Dec::Date => Col::Date(prim(dt)),
            Dec::Time => Col::Time(prim(dt)),
            Dec::Timestamp(_) => Col::Ts(prim(dt)),
            Dec::Interval => Col::Interval(prim(dt)),
            Dec::Uuid => Col::Uuid(FixedSizeBinaryBuilder::new(16)),
            Dec::List(inner) => {
                let arrow::datatypes::DataType::List(item) = dt else {
                    unreachable!("array columns are List fields")
                };
                Col::List {
                    field: item.clone(),
                    offsets: vec![0],
                    valid: Vec::new(),
                    child: Box::new(Col::new(inner, item)),
                }
            }
        }
    }

    fn push_null(&mut self) {
        match self {
            Col::Bool(b) => b.append_null(),
            Col::I16(b) => b.append_null(),
            Col::I32(b) => b.append_null(),
            Col::I64(b) => b.append_null(),
            Col::F32(b) => b.append_null(),
            Col::F64(b) => b.append_null(),
            Col::D128(b, _) => b.append_null(),
            Col::D256(b, _) => b.append_null(),
            Col::NumText(b) | Col::Text(b) | Col::Jsonb(b) | Col::Bits(b) => b.append_null(),
            Col::Bytea(b) => b.append_null(),
            Col::Date(b) => b.append_null(),
            Col::Time(b) => b.append_null(),
            Col::Ts(b) => b.append_null(),
            Col::Interval(b) => b.append_null(),
            Col::Uuid(b) => b.append_null(),
            Col::List { offsets, valid, .. } => {
                offsets.push(*offsets.last().unwrap_or(&0));
                valid.push(false);
            }
        }
    }

    fn push(&mut self, v: &[u8]) -> Result<(), String> {
        fn arr<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
            v.try_into()
                .map_err(|_| format!("expected {N} bytes, got {}", v.len()))
        }
        fn text(v: &[u8]) -> Result<&str, String> {
            std::str::from_utf8(v).map_err(|e| format!("invalid UTF-8: {e}"))
        }
        match self {
            Col::Bool(b) => b.append_value(arr::<1>(v)?[0] != 0),
            Col::I16(b) => b.append_value(i16::from_be_bytes(arr(v)?)),
            Col::I32(b) => b.append_value(i32::from_be_bytes(arr(v)?)),
            Col::I64(b) => b.append_value(i64::from_be_bytes(arr(v)?)),
            Col::F32(b) => b.append_value(f32::from_be_bytes(arr(v)?)),
            Col::F64(b) => b.append_value(f64::from_be_bytes(arr(v)?)),
            Col::D128(b, s) => {
                let x = numeric::to_i256(v, *s)?;
                b.append_value(x.to_i128().ok_or("numeric value overflows decimal128")?)
            }
            Col::D256(b, s) => b.append_value(numeric::to_i256(v, *s)?),
            Col::NumText(b) => {
                let mut s = String::new();
                numeric::to_text(v, &mut s)?;
                b.append_value(s)
            }
            Col::Text(b) => b.append_value(text(v)?),
            Col::Jsonb(b) => match v.split_first() {
                Some((1, rest)) => b.append_value(text(rest)?),
                _ => return Err("unsupported jsonb binary version".into()),
            },
            Col::Bits(b) => {
                if v.len() < 4 {
                    return Err("truncated bit string".into());
                }
                let n = i32::from_be_bytes(arr(&v[..4])?) as usize;
                let bytes = &v[4..];
                if bytes.len() * 8 < n {
                    return Err("truncated bit string".into());
                }
                let s: String = (0..n)
                    .map(|i| {
                        if bytes[i / 8] & (0x80 >> (i % 8)) != 0 {
                            '1'
                        } else {
                            '0'
                        }
                    })
                    .collect();
                b.append_value(s)
            }
            Col::Bytea(b) => b.append_value(v),
            Col::Date(b) => {
                let d = i32::from_be_bytes(arr(v)?);
                b.append_value(match d {
                    i32::MAX | i32::MIN => d,
                    _ => d + EPOCH_OFFSET_DAYS,
                })
            }
            Col::Time(b) => b.append_value(i64::from_be_bytes(arr(v)?)),
            Col::Ts(b) => b.append_value(pg_ts_to_arrow(i64::from_be_bytes(arr(v)?))?),
            Col::Interval(b) => {
                let v: [u8; 16] = arr(v)?;
                let us = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                let days = i32::from_be_bytes(v[8..12].try_into().expect("4 bytes"));
                let months = i32::from_be_bytes(v[12..].try_into().expect("4 bytes"));
                let nanos = us.checked_mul(1000).ok_or(
                    "interval's time part exceeds ±2562047 hours, which Arrow's nanoseconds \
                     cannot hold",
                )?;
                b.append_value(IntervalMonthDayNano::new(months, days, nanos))
            }
            Col::Uuid(b) => b.append_value(v).map_err(|e| e.to_string())?,
            Col::List {
                offsets,
                valid,
                child,
                ..
            } => {
                let mut r = v;
                if r.len() < 12 {
                    return Err("truncated array".into());
                }
                let ndim = r.get_i32();
                let _flags = r.get_i32();
                let _elem = r.get_u32();
                let n = match ndim {
                    0 => 0,
                    1 => {
                        if r.len() < 8 {
                            return Err("truncated array".into());
                        }
                        let len = r.get_i32();
                        let _lbound = r.get_i32();
                        len.max(0) as usize
                    }
                    _ => {
                        return Err(format!(
                            "a {ndim}-dimensional array value; only one-dimensional arrays are \
                             read as lists (cast the column to text in a query)"
                        ));
                    }
                };
                for _ in 0..n {
                    if r.len() < 4 {
                        return Err("truncated array".into());
                    }
                    let len = r.get_i32();
                    if len < 0 {
                        child.push_null();
                    } else {
                        let len = len as usize;
                        if r.len() < len {
                            return Err("truncated array".into());
                        }
                        child.push(&r[..len])?;
                        r.advance(len);
                    }
                }
                let last = *offsets.last().unwrap_or(&0);
                offsets.push(last + n as i32);
                valid.push(true);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Bool(b) => Arc::new(b.finish()),
            Col::I16(b) => Arc::new(b.finish()),
            Col::I32(b) => Arc::new(b.finish()),
            Col::I64(b) => Arc::new(b.finish()),
            Col::F32(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::D128(b, _) => Arc::new(b.finish()),
            Col::D256(b, _) => Arc::new(b.finish()),
            Col::NumText(b) | Col::Text(b) | Col::Jsonb(b) | Col::Bits(b) => Arc::new(b.finish()),
            Col::Bytea(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
            Col::Time(b) => Arc::new(b.finish()),
            Col::Ts(b) => Arc::new(b.finish()),
            Col::Interval(b) => Arc::new(b.finish()),
            Col::Uuid(b) => Arc::new(b.finish()),
            Col::List {
                field,
                offsets,
                valid,
                child,
            } => {
                let values = child.finish();
                let offs = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let v = std::mem::take(valid);
                let nulls = v.iter().any(|x| !x).then(|| NullBuffer::from(v));
                Arc::new(ListArray::new(field.clone(), offs, values, nulls))
            }
        }
    }
}

/// PostgreSQL µs since 2000 → Arrow µs since 1970 (see the module docs for the extremes).
pub(crate) fn pg_ts_to_arrow(us: i64) -> Result<i64, String> {
    match us {
        i64::MAX | i64::MIN => Ok(us),
        _ => {
            let v = us.wrapping_add(EPOCH_OFFSET_US);
            if v == i64::MIN || v == i64::MAX {
                return Err("timestamp at the edge of Arrow's range".into());
            }
            Ok(v)
        }
    }
}

/// One builder per field of `schema`, with its decoder.
fn columns(schema: &SchemaRef, decs: &[Dec]) -> Vec<Col> {
    schema
        .fields()
        .iter()
        .zip(decs)
        .map(|(f, d)| Col::new(d, f))
        .collect()
}

/// Builds batches of a table's schema row by row from values in the types' binary send
/// format, as logical replication delivers them (`binary 'true'`): the same decoders as COPY.
pub struct RowDecoder {
    schema: SchemaRef,
    cols: Vec<Col>,
    rows: usize,
}

impl RowDecoder {
    /// A builder for `schema`, with one decoder per field.
    pub fn new(schema: SchemaRef, decs: &[Dec]) -> Self {
        RowDecoder {
            cols: columns(&schema, decs),
            schema,
            rows: 0,
        }
    }

    /// Appends a row: one value per field, `None` for NULL. On an error (naming the
    /// column's index) the builder must be dropped: the row may be half appended.
    pub fn push(&mut self, values: &[Option<&[u8]>]) -> Result<(), (usize, String)> {
        for (i, (col, v)) in self.cols.iter_mut().zip(values).enumerate() {
            match v {
                None => col.push_null(),
                Some(v) => col.push(v).map_err(|m| (i, m))?,
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The pending rows as a batch.
    pub fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let n = std::mem::take(&mut self.rows);
        let cols: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        let opts = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(self.schema.clone(), cols, &opts)
    }
}

/// Decodes one split's COPY stream into batches of the table's schema. The last `extra`
/// fields of each row (read as text) are not part of the batch: they carry the row's
/// position (`key::text`, `ctid::text`), of which the last row's value is kept.
pub struct CopyDecoder {
    schema: SchemaRef,
    cols: Vec<Col>,
    extra: usize,
    last_extra: Vec<Option<String>>,
    buf: BytesMut,
    header_done: bool,
    finished: bool,
    rows_in_batch: usize,
    /// Rows decoded so far (all batches).
    pub rows: u64,
}

impl CopyDecoder {
    /// A decoder for `schema` with one decoder per field, plus `extra` trailing text fields.
    pub fn new(schema: SchemaRef, decs: &[Dec], extra: usize) -> Self {
        CopyDecoder {
            cols: columns(&schema, decs),
            schema,
            extra,
            last_extra: vec![None; extra],
            buf: BytesMut::new(),
            header_done: false,
            finished: false,
            rows_in_batch: 0,
            rows: 0,
        }
    }

    /// Rows buffered and not yet returned by [`take_batch`](Self::take_batch).
    pub fn pending(&self) -> usize {
        self.rows_in_batch
    }

    /// The extra fields of the last decoded row.
    pub fn last_extra(&self) -> &[Option<String>] {
        &self.last_extra
    }

    /// Feeds a chunk and decodes every complete row in it, stopping early once
    /// `batch_size` rows are pending (call again with an empty chunk to continue).
    pub fn feed(&mut self, chunk: &[u8], batch_size: usize) -> Result<(), DecodeError> {
        self.buf.extend_from_slice(chunk);
        let err = |row, message: String| DecodeError {
            column: None,
            row,
            message,
        };
        if !self.header_done {
            if self.buf.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &self.buf[..SIGNATURE.len()] != SIGNATURE {
                return Err(err(0, "not a binary COPY stream".into()));
            }
            let ext = u32::from_be_bytes(self.buf[15..19].try_into().expect("4 bytes")) as usize;
            if self.buf.len() < 19 + ext {
                return Ok(());
            }
            self.buf.advance(19 + ext);
            self.header_done = true;
        }
        while !self.finished && self.rows_in_batch < batch_size {
            let Some(end) = self.complete_row() else {
                break;
            };
            let mut r = &self.buf[..end];
            let n = r.get_i16();
            if n == -1 {
                self.finished = true;
                self.buf.advance(end);
                break;
            }
            if n as usize != self.cols.len() + self.extra {
                return Err(err(
                    self.rows,
                    format!(
                        "row has {n} fields, expected {}",
                        self.cols.len() + self.extra
                    ),
                ));
            }
            for (i, col) in self.cols.iter_mut().enumerate() {
                let len = r.get_i32();
                if len < 0 {
                    col.push_null();
                } else {
                    let (v, rest) = r.split_at(len as usize);
                    r = rest;
                    col.push(v).map_err(|message| DecodeError {
                        column: Some(i),
                        row: self.rows,
                        message,
                    })?;
                }
            }
            for slot in self.last_extra.iter_mut() {
                let len = r.get_i32();
                if len < 0 {
                    *slot = None;
                } else {
                    let (v, rest) = r.split_at(len as usize);
                    r = rest;
                    *slot = Some(String::from_utf8_lossy(v).into_owned());
                }
            }
            self.buf.advance(end);
            self.rows += 1;
            self.rows_in_batch += 1;
        }
        Ok(())
    }

    /// The byte length of the first complete row (or trailer) in the buffer, if there is one.
    fn complete_row(&self) -> Option<usize> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return None;
        }
        let n = i16::from_be_bytes([b[0], b[1]]);
        if n == -1 {
            return Some(2);
        }
        let mut pos = 2;
        for _ in 0..n.max(0) {
            if b.len() < pos + 4 {
                return None;
            }
            let len = i32::from_be_bytes(b[pos..pos + 4].try_into().expect("4 bytes"));
            pos += 4 + len.max(0) as usize;
            if b.len() < pos {
                return None;
            }
        }
        Some(pos)
    }

    /// Whether the trailer was seen.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The pending rows as a batch (`None` if there are none).
    pub fn take_batch(&mut self) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
        if self.rows_in_batch == 0 {
            return Ok(None);
        }
        let n = std::mem::take(&mut self.rows_in_batch);
        let cols: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        let opts = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(self.schema.clone(), cols, &opts).map(Some)
    }
}
