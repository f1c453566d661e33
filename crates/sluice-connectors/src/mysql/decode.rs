//! MySQL values (binary protocol) → Arrow builders, one column at a time.
//!
//! Exactness: integers arrive as 64-bit numbers, floats as IEEE values, decimals as text
//! (parsed into Decimal128/256 without rounding), dates and times as their fields.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, IntervalMonthDayNano, i256};
use chrono::NaiveDate;
use mysql_async::Value;

use super::types::{Kind, zero_date_days, zero_datetime_micros};

/// Why a value could not be decoded (the caller adds table, column and row).
pub type DecodeError = String;

/// Result of decoding a temporal value.
pub enum Temporal {
    Value(i64),
    /// A zero date (`0000-00-00`, month or day 0), with the value that stands for it when
    /// it is kept (`types::zero_date_days` / `zero_datetime_micros`).
    Zero(i64),
}

/// One column's builder.
pub enum ColBuilder {
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    D128(Decimal128Builder, u8, i8),
    D256(Decimal256Builder, u8, i8),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Interval(IntervalMonthDayNanoBuilder),
    Uuid(FixedSizeBinaryBuilder),
}

impl ColBuilder {
    /// A builder for `field` (its Arrow type follows the logical type).
    pub fn new(field: &Field, cap: usize) -> Result<ColBuilder, DecodeError> {
        Ok(match field.data_type() {
            DataType::Int8 => Self::I8(Int8Builder::with_capacity(cap)),
            DataType::Int16 => Self::I16(Int16Builder::with_capacity(cap)),
            DataType::Int32 => Self::I32(Int32Builder::with_capacity(cap)),
            DataType::Int64 => Self::I64(Int64Builder::with_capacity(cap)),
            DataType::UInt8 => Self::U8(UInt8Builder::with_capacity(cap)),
            DataType::UInt16 => Self::U16(UInt16Builder::with_capacity(cap)),
            DataType::UInt32 => Self::U32(UInt32Builder::with_capacity(cap)),
            DataType::UInt64 => Self::U64(UInt64Builder::with_capacity(cap)),
            DataType::Float32 => Self::F32(Float32Builder::with_capacity(cap)),
            DataType::Float64 => Self::F64(Float64Builder::with_capacity(cap)),
            DataType::Decimal128(p, s) => Self::D128(Decimal128Builder::with_capacity(cap), *p, *s),
            DataType::Decimal256(p, s) => Self::D256(Decimal256Builder::with_capacity(cap), *p, *s),
            DataType::Utf8 => Self::Str(StringBuilder::with_capacity(cap, cap * 16)),
            DataType::Binary => Self::Bin(BinaryBuilder::with_capacity(cap, cap * 16)),
            DataType::Date32 => Self::Date(Date32Builder::with_capacity(cap)),
            DataType::Timestamp(_, tz) => {
                Self::Ts(TimestampMicrosecondBuilder::with_capacity(cap), tz.clone())
            }
            DataType::Interval(_) => {
                Self::Interval(IntervalMonthDayNanoBuilder::with_capacity(cap))
            }
            DataType::FixedSizeBinary(16) => {
                Self::Uuid(FixedSizeBinaryBuilder::with_capacity(cap, 16))
            }
            other => return Err(format!("no decoder for Arrow type {other}")),
        })
    }

    /// Appends a NULL.
    pub fn null(&mut self) {
        match self {
            Self::I8(b) => b.append_null(),
            Self::I16(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::U8(b) => b.append_null(),
            Self::U16(b) => b.append_null(),
            Self::U32(b) => b.append_null(),
            Self::U64(b) => b.append_null(),
            Self::F32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::D128(b, ..) => b.append_null(),
            Self::D256(b, ..) => b.append_null(),
            Self::Str(b) => b.append_null(),
            Self::Bin(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Ts(b, _) => b.append_null(),
            Self::Interval(b) => b.append_null(),
            Self::Uuid(b) => b.append_null(),
        }
    }

    /// Appends a value of a column of `kind`. A zero date is appended as its stand-in value
    /// when `keep_zero_dates` (the target is MySQL); otherwise `Ok(false)` says it is one and
    /// nothing was appended (the caller decides between NULL and an error).
    pub fn push(
        &mut self,
        kind: Kind,
        v: Value,
        keep_zero_dates: bool,
    ) -> Result<bool, DecodeError> {
        if matches!(v, Value::NULL) {
            self.null();
            return Ok(true);
        }
        match self {
            Self::I8(b) => b.append_value(int(&v)?.try_into().map_err(|_| range(&v))?),
            Self::I16(b) => b.append_value(int(&v)?.try_into().map_err(|_| range(&v))?),
            Self::I32(b) => b.append_value(int(&v)?.try_into().map_err(|_| range(&v))?),
            Self::I64(b) => b.append_value(int(&v)?.try_into().map_err(|_| range(&v))?),
            Self::U8(b) => b.append_value(int(&v)?.try_into().map_err(|_| range(&v))?),
            Self::U16(b) => b.append_value(int(&v)?.try_into().map_err(|_| range(&v))?),
            Self::U32(b) => b.append_value(int(&v)?.try_into().map_err(|_| range(&v))?),
            Self::U64(b) => {
                let n = if kind == Kind::Bit {
                    bits(&v)?
                } else {
                    int(&v)?
                };
                b.append_value(n.try_into().map_err(|_| range(&v))?)
            }
            Self::F32(b) => b.append_value(match v {
                Value::Float(f) => f,
                Value::Double(f) => f as f32,
                ref other => text(other)?.parse().map_err(|_| bad(other, "float"))?,
            }),
            Self::F64(b) => b.append_value(match v {
                Value::Double(f) => f,
                Value::Float(f) => f64::from(f),
                ref other => text(other)?.parse().map_err(|_| bad(other, "double"))?,
            }),
            Self::D128(b, _, s) => {
                let digits = decimal_digits(text(&v)?, *s).ok_or_else(|| bad(&v, "decimal"))?;
                b.append_value(digits.parse::<i128>().map_err(|_| bad(&v, "decimal"))?)
            }
            Self::D256(b, _, s) => {
                let digits = decimal_digits(text(&v)?, *s).ok_or_else(|| bad(&v, "decimal"))?;
                b.append_value(i256::from_string(&digits).ok_or_else(|| bad(&v, "decimal"))?)
            }
            Self::Str(b) => match v {
                Value::Bytes(bytes) => {
                    b.append_value(String::from_utf8(bytes).map_err(|e| {
                        format!("invalid UTF-8 text ({e}); read the column as binary")
                    })?)
                }
                ref other => b.append_value(text(other)?),
            },
            Self::Bin(b) => match v {
                Value::Bytes(bytes) => b.append_value(bytes),
                ref other => return Err(bad(other, "binary")),
            },
            Self::Date(b) => match temporal(&v, kind)? {
                Temporal::Value(days) => b.append_value(days as i32),
                Temporal::Zero(days) if keep_zero_dates => b.append_value(days as i32),
                Temporal::Zero(_) => return Ok(false),
            },
            Self::Ts(b, _) => match temporal(&v, kind)? {
                Temporal::Value(us) => b.append_value(us),
                Temporal::Zero(us) if keep_zero_dates => b.append_value(us),
                Temporal::Zero(_) => return Ok(false),
            },
            Self::Interval(b) => b.append_value(time(&v)?),
            Self::Uuid(b) => {
                let t = text(&v)?;
                let hex: String = t.chars().filter(|c| *c != '-').collect();
                let bytes = hex_decode(&hex)
                    .filter(|b| b.len() == 16)
                    .ok_or_else(|| bad(&v, "uuid"))?;
                b.append_value(bytes).map_err(|e| e.to_string())?
            }
        }
        Ok(true)
    }

    /// The finished column.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Self::I8(b) => Arc::new(b.finish()),
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::U8(b) => Arc::new(b.finish()),
            Self::U16(b) => Arc::new(b.finish()),
            Self::U32(b) => Arc::new(b.finish()),
            Self::U64(b) => Arc::new(b.finish()),
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::D128(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision checked by the type"),
            ),
            Self::D256(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision checked by the type"),
            ),
            Self::Str(b) => Arc::new(b.finish()),
            Self::Bin(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Self::Interval(b) => Arc::new(b.finish()),
            Self::Uuid(b) => Arc::new(b.finish()),
        }
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::Bytes(b) => format!("{:?}", String::from_utf8_lossy(b)),
        other => format!("{other:?}"),
    }
}

fn range(v: &Value) -> DecodeError {
    format!("value {} is out of range for the column's type", render(v))
}

fn bad(v: &Value, what: &str) -> DecodeError {
    format!("value {} is not a valid {what}", render(v))
}

fn text(v: &Value) -> Result<&str, DecodeError> {
    match v {
        Value::Bytes(b) => std::str::from_utf8(b).map_err(|_| bad(v, "text value")),
        other => Err(format!("unexpected value {other:?}")),
    }
}

fn int(v: &Value) -> Result<i128, DecodeError> {
    match v {
        Value::Int(i) => Ok(i128::from(*i)),
        Value::UInt(u) => Ok(i128::from(*u)),
        other => text(other)?
            .trim()
            .parse()
            .map_err(|_| bad(other, "integer")),
    }
}

/// `bit(n)` arrives as big-endian bytes.
fn bits(v: &Value) -> Result<i128, DecodeError> {
    match v {
        Value::Bytes(b) if b.len() <= 8 => {
            Ok(b.iter().fold(0i128, |acc, x| (acc << 8) | i128::from(*x)))
        }
        other => int(other),
    }
}

/// `"-12.5"` with scale 3 → `"-12500"`: the unscaled integer, exactly.
pub fn decimal_digits(s: &str, scale: i8) -> Option<String> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac) = body.split_once('.').unwrap_or((body, ""));
    if int_part.is_empty() && frac.is_empty()
        || !int_part.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    let mut frac = frac.to_string();
    if frac.len() > scale {
        // More digits than the scale: only trailing zeros may go.
        if frac[scale..].bytes().any(|c| c != b'0') {
            return None;
        }
        frac.truncate(scale);
    }
    while frac.len() < scale {
        frac.push('0');
    }
    let mut digits = format!("{int_part}{frac}");
    let trimmed = digits.trim_start_matches('0');
    digits = if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    };
    Some(if neg && digits != "0" {
        format!("-{digits}")
    } else {
        digits
    })
}

/// Days since 1970-01-01 for a date, microseconds since the epoch for a timestamp.
fn temporal(v: &Value, kind: Kind) -> Result<Temporal, DecodeError> {
    let (y, mo, d, h, mi, s, us) = match v {
        Value::Date(y, mo, d, h, mi, s, us) => (*y, *mo, *d, *h, *mi, *s, *us),
        Value::Bytes(_) => return parse_temporal_text(text(v)?, kind),
        other => return Err(bad(other, "date")),
    };
    if mo == 0 || d == 0 {
        return Ok(Temporal::Zero(if kind == Kind::Date {
            i64::from(zero_date_days(y, mo, d))
        } else {
            let time = ((i64::from(h) * 60 + i64::from(mi)) * 60 + i64::from(s)) * 1_000_000
                + i64::from(us);
            zero_datetime_micros(y, mo, d, time)
        }));
    }
    let date = NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(d))
        .ok_or_else(|| bad(v, "date"))?;
    if kind == Kind::Date {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        return Ok(Temporal::Value((date - epoch).num_days()));
    }
    let dt = date
        .and_hms_micro_opt(u32::from(h), u32::from(mi), u32::from(s), us)
        .ok_or_else(|| bad(v, "datetime"))?;
    Ok(Temporal::Value(dt.and_utc().timestamp_micros()))
}

fn parse_temporal_text(t: &str, kind: Kind) -> Result<Temporal, DecodeError> {
    let nums: Vec<u32> = t
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    let get = |i: usize| nums.get(i).copied().unwrap_or(0);
    let frac = t.split_once('.').map(|(_, f)| f).unwrap_or("");
    let us = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}")[..6].parse().unwrap_or(0)
    };
    let v = Value::Date(
        get(0) as u16,
        get(1) as u8,
        get(2) as u8,
        get(3) as u8,
        get(4) as u8,
        get(5) as u8,
        us,
    );
    temporal(&v, kind)
}

/// A `time` value as an interval of nanoseconds (months and days 0).
fn time(v: &Value) -> Result<IntervalMonthDayNano, DecodeError> {
    let (neg, days, h, m, s, us) = match v {
        Value::Time(neg, days, h, m, s, us) => (*neg, *days, *h, *m, *s, *us),
        Value::Bytes(_) => {
            let t = text(v)?;
            let (neg, body) = t.strip_prefix('-').map(|r| (true, r)).unwrap_or((false, t));
            let (hms, frac) = body.split_once('.').unwrap_or((body, ""));
            let p: Vec<u32> = hms.split(':').map(|x| x.parse().unwrap_or(0)).collect();
            let us = if frac.is_empty() {
                0
            } else {
                format!("{frac:0<6}")[..6].parse().unwrap_or(0)
            };
            let h = p.first().copied().unwrap_or(0);
            (
                neg,
                h / 24,
                (h % 24) as u8,
                p.get(1).copied().unwrap_or(0) as u8,
                p.get(2).copied().unwrap_or(0) as u8,
                us,
            )
        }
        other => return Err(bad(other, "time")),
    };
    let micros = ((i64::from(days) * 24 + i64::from(h)) * 3600 + i64::from(m) * 60 + i64::from(s))
        * 1_000_000
        + i64::from(us);
    let nanos = micros * 1000;
    Ok(IntervalMonthDayNano::new(
        0,
        0,
        if neg { -nanos } else { nanos },
    ))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Decimal128Type, IntervalMonthDayNanoType, TimestampMicrosecondType};
    use sluice_core::LogicalType;

    #[test]
    fn decimal_text_is_exact() {
        assert_eq!(decimal_digits("-12.5", 3).unwrap(), "-12500");
        assert_eq!(decimal_digits("0.000", 3).unwrap(), "0");
        assert_eq!(decimal_digits("-0.00", 2).unwrap(), "0");
        assert_eq!(decimal_digits("42", 0).unwrap(), "42");
        assert!(decimal_digits("1.25", 1).is_none());
        assert!(decimal_digits("abc", 1).is_none());
        let f = LogicalType::Decimal {
            precision: Some(10),
            scale: Some(2),
        }
        .field("d", true);
        let mut b = ColBuilder::new(&f, 1).unwrap();
        b.push(Kind::Decimal, Value::Bytes(b"-99999999.99".to_vec()), false)
            .unwrap();
        let a = b.finish();
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), -9_999_999_999);
    }

    #[test]
    fn unsigned_bigint_max_and_bits() {
        let f = LogicalType::UInt64.field("u", true);
        let mut b = ColBuilder::new(&f, 2).unwrap();
        b.push(Kind::UInt, Value::UInt(u64::MAX), false).unwrap();
        b.push(Kind::Bit, Value::Bytes(vec![0x01, 0x02]), false)
            .unwrap();
        let a = b.finish();
        let a = a.as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(a.value(0), u64::MAX);
        assert_eq!(a.value(1), 258);
    }

    #[test]
    fn zero_dates_and_times() {
        let f = LogicalType::Timestamp {
            tz: false,
            precision: sluice_core::types::Precision::Micros,
        }
        .field("t", true);
        let mut b = ColBuilder::new(&f, 2).unwrap();
        assert!(
            !b.push(Kind::DateTime, Value::Date(0, 0, 0, 0, 0, 0, 0), false)
                .unwrap()
        );
        b.null();
        assert!(
            b.push(Kind::DateTime, Value::Date(1970, 1, 1, 0, 0, 1, 5), false)
                .unwrap()
        );
        // Kept for a MySQL target: the stand-in value, which reads back as the zero date.
        assert!(
            b.push(Kind::DateTime, Value::Date(2024, 0, 10, 1, 2, 3, 4), true)
                .unwrap()
        );
        let a = b.finish();
        let a = a.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(a.value(1), 1_000_005);
        assert_eq!(
            crate::mysql::types::zero_datetime_text(a.value(2)).unwrap(),
            "2024-00-10 01:02:03.000004"
        );
        let d = LogicalType::Date.field("d", false);
        let mut b = ColBuilder::new(&d, 1).unwrap();
        assert!(
            b.push(Kind::Date, Value::Bytes(b"0000-00-00".to_vec()), true)
                .unwrap()
        );
        let a = b.finish();
        assert_eq!(
            crate::mysql::types::zero_date_text(
                a.as_primitive::<arrow::datatypes::Date32Type>().value(0)
            )
            .unwrap(),
            "0000-00-00"
        );
        let f = LogicalType::Interval.field("i", true);
        let mut b = ColBuilder::new(&f, 2).unwrap();
        b.push(Kind::Time, Value::Time(true, 34, 22, 59, 59, 1), false)
            .unwrap();
        b.push(
            Kind::Time,
            Value::Bytes(b"-838:59:59.000001".to_vec()),
            false,
        )
        .unwrap();
        let a = b.finish();
        let a = a.as_primitive::<IntervalMonthDayNanoType>();
        assert_eq!(a.value(0), a.value(1));
        assert_eq!(
            a.value(0).nanoseconds,
            -((838 * 3600 + 59 * 60 + 59) * 1_000_000 + 1) * 1000
        );
        assert_eq!(a.len(), 2);
    }
}
