//! Arrow columns → SQLite values to bind, without a `String` per value where avoidable:
//! text and blobs are bound straight from the Arrow buffers, formatted values (dates,
//! decimals …) through one reused scratch buffer (SQLite copies bound text).
//!
//! The encodings (see the `sqlite` module docs for the table) are the inverse of `decode.rs`.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Decimal256Array, FixedSizeBinaryArray, Float32Array, Float64Array, Int8Array, Int16Array,
    Int32Array, Int64Array, IntervalMonthDayNanoArray, ListArray, StringArray,
    Time64MicrosecondArray, Time64NanosecondArray, TimestampMicrosecondArray,
    TimestampNanosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::DataType;
use rusqlite::types::{ToSqlOutput, ValueRef};
use sluice_core::types::Precision;
use sluice_core::{Error, LogicalType, Result};

use super::text::{fmt_date, fmt_decimal, fmt_interval, fmt_time, fmt_timestamp, fmt_uuid, to_hex};

/// `-0.0` as stored: its IEEE bytes, big-endian (REAL affinity would turn it into 0).
static NEG_ZERO: [u8; 8] = (-0.0f64).to_be_bytes();

/// One column of a batch, downcast once per batch.
pub enum Col<'a> {
    Bool(&'a BooleanArray),
    I8(&'a Int8Array),
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    U8(&'a UInt8Array),
    U16(&'a UInt16Array),
    U32(&'a UInt32Array),
    U64(&'a UInt64Array),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Dec128(&'a Decimal128Array, i32),
    Dec256(&'a Decimal256Array, i32),
    Str(&'a StringArray),
    Binary(&'a BinaryArray),
    Date(&'a Date32Array),
    TimeUs(&'a Time64MicrosecondArray),
    TimeNs(&'a Time64NanosecondArray),
    TsUs(&'a TimestampMicrosecondArray, bool),
    TsNs(&'a TimestampNanosecondArray, bool),
    Interval(&'a IntervalMonthDayNanoArray),
    Uuid(&'a FixedSizeBinaryArray),
    List(&'a ListArray, &'a LogicalType),
}

/// A column ready to encode: its values and its validity.
pub struct EncCol<'a> {
    col: Col<'a>,
    nulls: Option<&'a NullBuffer>,
}

/// Casts `array` to the Arrow type of `t` if it is carried differently (e.g. `Utf8View`).
pub fn normalize(array: &ArrayRef, t: &LogicalType) -> Result<ArrayRef> {
    let want = t.arrow_type();
    if array.data_type() == &want {
        return Ok(array.clone());
    }
    arrow::compute::cast(array, &want).map_err(Error::from)
}

impl<'a> EncCol<'a> {
    /// Downcasts `array` (already [`normalize`]d) as logical type `t`.
    pub fn new(array: &'a ArrayRef, t: &'a LogicalType) -> Result<EncCol<'a>> {
        use LogicalType as L;
        let a = array.as_ref();
        let bad = || {
            Error::internal(format!(
                "column of type {t} arrived as Arrow {}",
                a.data_type()
            ))
        };
        let col = match t {
            L::Bool => Col::Bool(a.as_boolean_opt().ok_or_else(bad)?),
            L::Int8 => Col::I8(a.as_primitive_opt().ok_or_else(bad)?),
            L::Int16 => Col::I16(a.as_primitive_opt().ok_or_else(bad)?),
            L::Int32 => Col::I32(a.as_primitive_opt().ok_or_else(bad)?),
            L::Int64 => Col::I64(a.as_primitive_opt().ok_or_else(bad)?),
            L::UInt8 => Col::U8(a.as_primitive_opt().ok_or_else(bad)?),
            L::UInt16 => Col::U16(a.as_primitive_opt().ok_or_else(bad)?),
            L::UInt32 => Col::U32(a.as_primitive_opt().ok_or_else(bad)?),
            L::UInt64 => Col::U64(a.as_primitive_opt().ok_or_else(bad)?),
            L::Float32 => Col::F32(a.as_primitive_opt().ok_or_else(bad)?),
            L::Float64 => Col::F64(a.as_primitive_opt().ok_or_else(bad)?),
            L::Decimal { .. } => match a.data_type() {
                DataType::Decimal128(_, s) => {
                    Col::Dec128(a.as_primitive_opt().ok_or_else(bad)?, *s as i32)
                }
                DataType::Decimal256(_, s) => {
                    Col::Dec256(a.as_primitive_opt().ok_or_else(bad)?, *s as i32)
                }
                _ => Col::Str(a.as_string_opt().ok_or_else(bad)?),
            },
            L::Text | L::Json | L::Enum(_) => Col::Str(a.as_string_opt().ok_or_else(bad)?),
            L::Binary => Col::Binary(a.as_binary_opt().ok_or_else(bad)?),
            L::Date => Col::Date(a.as_primitive_opt().ok_or_else(bad)?),
            L::Time(Precision::Micros) => Col::TimeUs(a.as_primitive_opt().ok_or_else(bad)?),
            L::Time(Precision::Nanos) => Col::TimeNs(a.as_primitive_opt().ok_or_else(bad)?),
            L::Timestamp {
                tz,
                precision: Precision::Micros,
            } => Col::TsUs(a.as_primitive_opt().ok_or_else(bad)?, *tz),
            L::Timestamp {
                tz,
                precision: Precision::Nanos,
            } => Col::TsNs(a.as_primitive_opt().ok_or_else(bad)?, *tz),
            L::Interval => Col::Interval(a.as_primitive_opt().ok_or_else(bad)?),
            L::Uuid => Col::Uuid(a.as_fixed_size_binary_opt().ok_or_else(bad)?),
            L::Array(inner) => Col::List(a.as_list_opt().ok_or_else(bad)?, inner),
        };
        Ok(EncCol {
            col,
            nulls: a.nulls(),
        })
    }

    /// The SQLite value of `row`. Formatted values are written to `scratch` (cleared first).
    pub fn value<'s>(&'s self, row: usize, scratch: &'s mut String) -> ToSqlOutput<'s> {
        use ToSqlOutput::Borrowed as B;
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            return B(ValueRef::Null);
        }
        scratch.clear();
        let int = |v: i64| B(ValueRef::Integer(v));
        match &self.col {
            Col::Bool(a) => int(i64::from(a.value(row))),
            Col::I8(a) => int(a.value(row).into()),
            Col::I16(a) => int(a.value(row).into()),
            Col::I32(a) => int(a.value(row).into()),
            Col::I64(a) => int(a.value(row)),
            Col::U8(a) => int(a.value(row).into()),
            Col::U16(a) => int(a.value(row).into()),
            Col::U32(a) => int(a.value(row).into()),
            Col::U64(a) => match i64::try_from(a.value(row)) {
                Ok(v) => int(v),
                // INTEGER affinity would turn the text into a lossy REAL; a BLOB is kept.
                Err(_) => {
                    scratch.push_str(&a.value(row).to_string());
                    B(ValueRef::Blob(scratch.as_bytes()))
                }
            },
            Col::F32(a) => float(f64::from(a.value(row))),
            Col::F64(a) => float(a.value(row)),
            Col::Dec128(a, s) => {
                let mut buf = [0u8; 48];
                fmt_decimal(i128_text(a.value(row), &mut buf), *s, scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::Dec256(a, s) => {
                fmt_decimal(&a.value(row).to_string(), *s, scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::Str(a) => B(ValueRef::Text(a.value(row).as_bytes())),
            Col::Binary(a) => B(ValueRef::Blob(a.value(row))),
            Col::Date(a) => {
                fmt_date(a.value(row).into(), scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::TimeUs(a) => {
                fmt_time(a.value(row) * 1000, Precision::Micros, scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::TimeNs(a) => {
                fmt_time(a.value(row), Precision::Nanos, scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::TsUs(a, tz) => {
                fmt_timestamp(a.value(row) as i128 * 1000, Precision::Micros, *tz, scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::TsNs(a, tz) => {
                fmt_timestamp(a.value(row) as i128, Precision::Nanos, *tz, scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::Interval(a) => {
                let v = a.value(row);
                fmt_interval(v.months, v.days, v.nanoseconds, scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::Uuid(a) => {
                fmt_uuid(a.value(row), scratch);
                B(ValueRef::Text(scratch.as_bytes()))
            }
            Col::List(a, inner) => {
                let json = list_json(&a.value(row), inner);
                scratch.push_str(&json.to_string());
                B(ValueRef::Text(scratch.as_bytes()))
            }
        }
    }

    /// The JSON form of `row` inside an array column.
    fn json(&self, row: usize) -> serde_json::Value {
        use serde_json::Value as J;
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            return J::Null;
        }
        let f = |v: f64| match serde_json::Number::from_f64(v) {
            Some(n) => J::Number(n),
            None => J::String(super::text::fmt_float(v)),
        };
        match &self.col {
            Col::Bool(a) => J::Bool(a.value(row)),
            Col::U64(a) => J::from(a.value(row)),
            Col::F32(a) => f(a.value(row).into()),
            Col::F64(a) => f(a.value(row)),
            Col::List(a, inner) => list_json(&a.value(row), inner),
            _ => {
                let mut scratch = String::new();
                match self.value(row, &mut scratch) {
                    ToSqlOutput::Borrowed(ValueRef::Integer(i)) => J::from(i),
                    ToSqlOutput::Borrowed(ValueRef::Real(r)) => f(r),
                    ToSqlOutput::Borrowed(ValueRef::Text(t)) => {
                        J::String(String::from_utf8_lossy(t).into_owned())
                    }
                    ToSqlOutput::Borrowed(ValueRef::Blob(b)) => J::String(to_hex(b)),
                    _ => J::Null,
                }
            }
        }
    }
}

/// NaN as TEXT `'NaN'` (SQLite would store NULL), `-0.0` as its bytes, the rest as REAL.
fn float(v: f64) -> ToSqlOutput<'static> {
    if v.is_nan() {
        ToSqlOutput::Borrowed(ValueRef::Text(b"NaN"))
    } else if v == 0.0 && v.is_sign_negative() {
        ToSqlOutput::Borrowed(ValueRef::Blob(&NEG_ZERO))
    } else {
        ToSqlOutput::Borrowed(ValueRef::Real(v))
    }
}

/// The elements of one list value as a JSON array.
fn list_json(values: &ArrayRef, inner: &LogicalType) -> serde_json::Value {
    let values = match normalize(values, inner) {
        Ok(v) => v,
        Err(_) => return serde_json::Value::Null,
    };
    match EncCol::new(&values, inner) {
        Ok(c) => serde_json::Value::Array((0..values.len()).map(|i| c.json(i)).collect()),
        Err(_) => serde_json::Value::Null,
    }
}

/// Decimal digits of `v` in `buf`, without allocating.
fn i128_text(v: i128, buf: &mut [u8; 48]) -> &str {
    let mut i = buf.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i128_digits() {
        let mut b = [0u8; 48];
        for v in [0i128, 7, -7, i128::MAX, i128::MIN, 1_000_000] {
            assert_eq!(i128_text(v, &mut b), v.to_string());
        }
    }

    #[test]
    fn special_floats() {
        assert!(matches!(
            float(f64::NAN),
            ToSqlOutput::Borrowed(ValueRef::Text(b"NaN"))
        ));
        assert!(matches!(
            float(-0.0),
            ToSqlOutput::Borrowed(ValueRef::Blob(_))
        ));
        assert!(matches!(
            float(0.0),
            ToSqlOutput::Borrowed(ValueRef::Real(_))
        ));
    }
}
