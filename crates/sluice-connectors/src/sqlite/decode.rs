//! SQLite values → Arrow arrays, one [`ColumnBuilder`] per column.
//!
//! Each builder takes SQLite values of any storage class and either appends the value its
//! logical type means or says why it cannot (the caller names table, column and rowid).
//! Values inside array columns are JSON (see `encode.rs`) and go through
//! [`ColumnBuilder::append_json`].

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder, ListArray, StringBuilder,
    Time64MicrosecondBuilder, Time64NanosecondBuilder, TimestampMicrosecondBuilder,
    TimestampNanosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, FieldRef, IntervalMonthDayNano, i256};
use rusqlite::types::ValueRef;
use sluice_core::LogicalType;
use sluice_core::types::Precision;

use super::text::{
    DecimalError, digit_count, fmt_float, from_hex, parse_date, parse_decimal, parse_float,
    parse_interval, parse_time, parse_timestamp, parse_uuid,
};

/// Why a value does not fit its column.
pub type Reason = String;

/// Builds one Arrow column from SQLite values.
pub enum ColumnBuilder {
    Bool(BooleanBuilder),
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
    Dec128(Decimal128Builder, u16, i32),
    Dec256(Decimal256Builder, u16, i32),
    /// Unconstrained or wider than 76 digits: canonical text.
    DecText(StringBuilder, Option<u16>, i32),
    Text(StringBuilder),
    Json(StringBuilder),
    Enum(StringBuilder, Vec<String>),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    TimeUs(Time64MicrosecondBuilder),
    TimeNs(Time64NanosecondBuilder),
    TsUs(TimestampMicrosecondBuilder, bool),
    TsNs(TimestampNanosecondBuilder, bool),
    Interval(IntervalMonthDayNanoBuilder),
    Uuid(FixedSizeBinaryBuilder),
    List {
        field: FieldRef,
        child: Box<ColumnBuilder>,
        offsets: Vec<i32>,
        valid: Vec<bool>,
    },
}

impl ColumnBuilder {
    /// A builder for `t`, with room for `cap` values.
    pub fn new(t: &LogicalType, cap: usize) -> ColumnBuilder {
        use LogicalType as L;
        let dt = t.arrow_type();
        match t {
            L::Bool => Self::Bool(BooleanBuilder::with_capacity(cap)),
            L::Int8 => Self::I8(Int8Builder::with_capacity(cap)),
            L::Int16 => Self::I16(Int16Builder::with_capacity(cap)),
            L::Int32 => Self::I32(Int32Builder::with_capacity(cap)),
            L::Int64 => Self::I64(Int64Builder::with_capacity(cap)),
            L::UInt8 => Self::U8(UInt8Builder::with_capacity(cap)),
            L::UInt16 => Self::U16(UInt16Builder::with_capacity(cap)),
            L::UInt32 => Self::U32(UInt32Builder::with_capacity(cap)),
            L::UInt64 => Self::U64(UInt64Builder::with_capacity(cap)),
            L::Float32 => Self::F32(Float32Builder::with_capacity(cap)),
            L::Float64 => Self::F64(Float64Builder::with_capacity(cap)),
            L::Decimal { precision, scale } => {
                let s = scale.unwrap_or(0) as i32;
                match (precision, &dt) {
                    (Some(p), DataType::Decimal128(..)) => Self::Dec128(
                        Decimal128Builder::with_capacity(cap).with_data_type(dt),
                        *p,
                        s,
                    ),
                    (Some(p), DataType::Decimal256(..)) => Self::Dec256(
                        Decimal256Builder::with_capacity(cap).with_data_type(dt),
                        *p,
                        s,
                    ),
                    _ => Self::DecText(StringBuilder::with_capacity(cap, cap * 8), *precision, s),
                }
            }
            L::Text => Self::Text(StringBuilder::with_capacity(cap, cap * 16)),
            L::Json => Self::Json(StringBuilder::with_capacity(cap, cap * 16)),
            L::Enum(labels) => {
                Self::Enum(StringBuilder::with_capacity(cap, cap * 8), labels.clone())
            }
            L::Binary => Self::Binary(BinaryBuilder::with_capacity(cap, cap * 16)),
            L::Date => Self::Date(Date32Builder::with_capacity(cap)),
            L::Time(Precision::Micros) => {
                Self::TimeUs(Time64MicrosecondBuilder::with_capacity(cap))
            }
            L::Time(Precision::Nanos) => Self::TimeNs(Time64NanosecondBuilder::with_capacity(cap)),
            L::Timestamp {
                tz,
                precision: Precision::Micros,
            } => Self::TsUs(
                TimestampMicrosecondBuilder::with_capacity(cap).with_data_type(dt),
                *tz,
            ),
            L::Timestamp {
                tz,
                precision: Precision::Nanos,
            } => Self::TsNs(
                TimestampNanosecondBuilder::with_capacity(cap).with_data_type(dt),
                *tz,
            ),
            L::Interval => Self::Interval(IntervalMonthDayNanoBuilder::with_capacity(cap)),
            L::Uuid => Self::Uuid(FixedSizeBinaryBuilder::with_capacity(cap, 16)),
            L::Array(inner) => {
                let DataType::List(field) = dt else {
                    unreachable!("arrays are Arrow lists")
                };
                Self::List {
                    field,
                    child: Box::new(ColumnBuilder::new(inner, cap)),
                    offsets: vec![0],
                    valid: Vec::with_capacity(cap),
                }
            }
        }
    }

    /// Appends one SQLite value.
    pub fn append(&mut self, v: ValueRef<'_>) -> Result<(), Reason> {
        macro_rules! int {
            ($b:expr, $t:ty) => {{
                match v {
                    ValueRef::Null => $b.append_null(),
                    v => {
                        let i = int_of(v)?;
                        let x = <$t>::try_from(i)
                            .map_err(|_| format!("{i} is out of range for {}", stringify!($t)))?;
                        $b.append_value(x);
                    }
                }
            }};
        }
        macro_rules! nullable {
            ($b:expr, $conv:expr) => {{
                match v {
                    ValueRef::Null => $b.append_null(),
                    v => {
                        let x = $conv(v)?;
                        $b.append_value(x);
                    }
                }
            }};
        }
        match self {
            Self::Bool(b) => nullable!(b, bool_of),
            Self::I8(b) => int!(b, i8),
            Self::I16(b) => int!(b, i16),
            Self::I32(b) => int!(b, i32),
            Self::I64(b) => int!(b, i64),
            Self::U8(b) => int!(b, u8),
            Self::U16(b) => int!(b, u16),
            Self::U32(b) => int!(b, u32),
            Self::U64(b) => int!(b, u64),
            Self::F32(b) => nullable!(b, |v| float_of(v).map(|f| f as f32)),
            Self::F64(b) => nullable!(b, float_of),
            Self::Dec128(b, p, s) => nullable!(b, |v| {
                let u = decimal_of(v, *p, *s)?;
                u.parse::<i128>()
                    .map_err(|_| format!("{u} does not fit decimal({p},{s})"))
            }),
            Self::Dec256(b, p, s) => nullable!(b, |v| {
                let u = decimal_of(v, *p, *s)?;
                i256::from_string(&u).ok_or_else(|| format!("{u} does not fit decimal({p},{s})"))
            }),
            Self::DecText(b, p, s) => nullable!(b, |v| decimal_text_of(v, *p, *s)),
            Self::Text(b) | Self::Json(b) => match v {
                ValueRef::Null => b.append_null(),
                v => b.append_value(text_of(v)?),
            },
            Self::Enum(b, labels) => match v {
                ValueRef::Null => b.append_null(),
                ValueRef::Integer(i) => {
                    let l = labels.iter().find(|l| l.trim().parse::<i64>() == Ok(i));
                    b.append_value(l.cloned().unwrap_or_else(|| i.to_string()));
                }
                ValueRef::Real(r) => {
                    let l = labels.iter().find(|l| l.trim().parse::<f64>() == Ok(r));
                    b.append_value(l.cloned().unwrap_or_else(|| fmt_float(r)));
                }
                v => b.append_value(text_of(v)?),
            },
            Self::Binary(b) => match v {
                ValueRef::Null => b.append_null(),
                ValueRef::Blob(x) | ValueRef::Text(x) => b.append_value(x),
                _ => return Err("expected a blob".into()),
            },
            Self::Date(b) => nullable!(b, |v| {
                let t = str_of(v, "a date (YYYY-MM-DD)")?;
                let d = parse_date(&t).ok_or("expected a date (YYYY-MM-DD)")?;
                i32::try_from(d).map_err(|_| "date out of range".to_string())
            }),
            Self::TimeUs(b) => nullable!(b, |v| time_of(v).map(|n| n / 1000)),
            Self::TimeNs(b) => nullable!(b, time_of),
            Self::TsUs(b, tz) => nullable!(b, |v| timestamp_of(v, *tz, 1000)),
            Self::TsNs(b, tz) => nullable!(b, |v| timestamp_of(v, *tz, 1)),
            Self::Interval(b) => nullable!(b, |v| {
                let t = str_of(v, "an ISO 8601 interval (P1Y2M3DT4H5M6S)")?;
                let (m, d, n) =
                    parse_interval(&t).ok_or("expected an ISO 8601 interval (P1Y2M3DT4H5M6S)")?;
                Ok::<_, Reason>(IntervalMonthDayNano::new(m, d, n))
            }),
            Self::Uuid(b) => match v {
                ValueRef::Null => b.append_null(),
                ValueRef::Blob(x) if x.len() == 16 => {
                    b.append_value(x).map_err(|e| e.to_string())?
                }
                v => {
                    let t = str_of(v, "a UUID")?;
                    let u = parse_uuid(&t).ok_or("expected a UUID")?;
                    b.append_value(u).map_err(|e| e.to_string())?;
                }
            },
            Self::List {
                child,
                offsets,
                valid,
                ..
            } => match v {
                ValueRef::Null => {
                    offsets.push(*offsets.last().unwrap_or(&0));
                    valid.push(false);
                }
                v => {
                    let t = str_of(v, "a JSON array")?;
                    let items = match serde_json::from_str(&t) {
                        Ok(serde_json::Value::Array(items)) => items,
                        _ => return Err("expected a JSON array".into()),
                    };
                    for (i, item) in items.iter().enumerate() {
                        child
                            .append_json(item)
                            .map_err(|e| format!("element {i}: {e}"))?;
                    }
                    let last = *offsets.last().unwrap_or(&0);
                    let next = i32::try_from(items.len())
                        .ok()
                        .and_then(|n| last.checked_add(n))
                        .ok_or("array too large")?;
                    offsets.push(next);
                    valid.push(true);
                }
            },
        }
        Ok(())
    }

    /// Appends one element of an array column (the JSON form written by the sink).
    pub fn append_json(&mut self, v: &serde_json::Value) -> Result<(), Reason> {
        use serde_json::Value as J;
        match v {
            J::Null => self.append(ValueRef::Null),
            J::Bool(b) => self.append(ValueRef::Integer(i64::from(*b))),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.append(ValueRef::Integer(i))
                } else if let Some(u) = n.as_u64() {
                    let s = u.to_string();
                    self.append(ValueRef::Text(s.as_bytes()))
                } else {
                    let f = n.as_f64().ok_or("not a number")?;
                    match self {
                        Self::DecText(..) | Self::Dec128(..) | Self::Dec256(..) => {
                            let s = n.to_string();
                            self.append(ValueRef::Text(s.as_bytes()))
                        }
                        _ => self.append(ValueRef::Real(f)),
                    }
                }
            }
            J::String(s) => match self {
                Self::Binary(_) => {
                    let bytes = from_hex(s).ok_or("expected hex digits")?;
                    self.append(ValueRef::Blob(&bytes))
                }
                _ => self.append(ValueRef::Text(s.as_bytes())),
            },
            J::Array(_) => match self {
                Self::List { .. } => {
                    let s = v.to_string();
                    self.append(ValueRef::Text(s.as_bytes()))
                }
                _ => Err("unexpected nested array".into()),
            },
            J::Object(_) => match self {
                Self::Json(_) | Self::Text(_) => {
                    let s = v.to_string();
                    self.append(ValueRef::Text(s.as_bytes()))
                }
                _ => Err("unexpected JSON object".into()),
            },
        }
    }

    /// The column built so far; the builder is left empty for the next batch.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
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
            Self::Dec128(b, ..) => Arc::new(b.finish()),
            Self::Dec256(b, ..) => Arc::new(b.finish()),
            Self::DecText(b, ..) | Self::Text(b) | Self::Json(b) | Self::Enum(b, _) => {
                Arc::new(b.finish())
            }
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::TimeUs(b) => Arc::new(b.finish()),
            Self::TimeNs(b) => Arc::new(b.finish()),
            Self::TsUs(b, _) => Arc::new(b.finish()),
            Self::TsNs(b, _) => Arc::new(b.finish()),
            Self::Interval(b) => Arc::new(b.finish()),
            Self::Uuid(b) => Arc::new(b.finish()),
            Self::List {
                field,
                child,
                offsets,
                valid,
            } => {
                let values = child.finish();
                let offs = std::mem::replace(offsets, vec![0]);
                let nulls = NullBuffer::from(std::mem::take(valid));
                Arc::new(ListArray::new(
                    field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offs)),
                    values,
                    Some(nulls),
                ))
            }
        }
    }
}

/// `integer 5`, `text "abc"`, `blob of 3 bytes`: for error messages.
pub fn describe(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => format!("integer {i}"),
        ValueRef::Real(r) => format!("real {}", fmt_float(r)),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            let short: String = s.chars().take(60).collect();
            let more = if short.len() < s.len() { "…" } else { "" };
            format!("text {short:?}{more}")
        }
        ValueRef::Blob(b) => format!("blob of {} bytes", b.len()),
    }
}

/// The text of a TEXT (or UTF-8 BLOB) value; numbers are rendered.
fn text_of(v: ValueRef<'_>) -> Result<Cow<'_, str>, Reason> {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
            .map(Cow::Borrowed)
            .map_err(|e| format!("not valid UTF-8 ({e})")),
        ValueRef::Integer(i) => Ok(Cow::Owned(i.to_string())),
        ValueRef::Real(r) => Ok(Cow::Owned(fmt_float(r))),
        ValueRef::Null => Err("unexpected NULL".into()),
    }
}

/// The text of a value that must be text (dates, intervals …).
fn str_of<'a>(v: ValueRef<'a>, what: &str) -> Result<Cow<'a, str>, Reason> {
    match v {
        ValueRef::Text(_) | ValueRef::Blob(_) => text_of(v),
        _ => Err(format!("expected {what} as text")),
    }
}

fn int_of(v: ValueRef<'_>) -> Result<i128, Reason> {
    match v {
        ValueRef::Integer(i) => Ok(i128::from(i)),
        ValueRef::Real(r) if r.fract() == 0.0 && r.abs() < 1e30 => Ok(r as i128),
        ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse::<i128>().ok())
            .ok_or_else(|| "expected an integer".to_string()),
        _ => Err("expected an integer".into()),
    }
}

fn bool_of(v: ValueRef<'_>) -> Result<bool, Reason> {
    match v {
        ValueRef::Integer(0) => Ok(false),
        ValueRef::Integer(1) => Ok(true),
        ValueRef::Real(r) if r == 0.0 || r == 1.0 => Ok(r == 1.0),
        ValueRef::Text(t) => match std::str::from_utf8(t)
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "1" | "true" | "t" | "yes" | "y" => Ok(true),
            "0" | "false" | "f" | "no" | "n" => Ok(false),
            _ => Err("expected a boolean (0 or 1)".into()),
        },
        _ => Err("expected a boolean (0 or 1)".into()),
    }
}

fn float_of(v: ValueRef<'_>) -> Result<f64, Reason> {
    match v {
        ValueRef::Real(r) => Ok(r),
        ValueRef::Integer(i) => Ok(i as f64),
        // -0.0 is stored as its 8 IEEE bytes (REAL affinity would turn it into 0).
        ValueRef::Blob(b) if b.len() == 8 => {
            Ok(f64::from_be_bytes(b.try_into().expect("length checked")))
        }
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(parse_float)
            .ok_or_else(|| "expected a number".to_string()),
        _ => Err("expected a number".into()),
    }
}

/// The unscaled integer text of a decimal value, checked against precision `p`.
fn decimal_of(v: ValueRef<'_>, p: u16, s: i32) -> Result<String, Reason> {
    let u = match v {
        ValueRef::Integer(i) => parse_decimal(&i.to_string(), s, false),
        ValueRef::Real(r) if r.is_finite() => parse_decimal(&format!("{r}"), s, true),
        ValueRef::Text(_) | ValueRef::Blob(_) => parse_decimal(&text_of(v)?, s, false),
        _ => Err(DecimalError::Syntax),
    }
    .map_err(|e| match e {
        DecimalError::Syntax => "expected a decimal number".to_string(),
        DecimalError::Scale => format!("more than {s} digits after the point"),
    })?;
    if digit_count(&u) > p as usize {
        return Err(format!("more than {p} digits"));
    }
    Ok(u)
}

/// Canonical text of an unconstrained (or very wide) decimal.
fn decimal_text_of(v: ValueRef<'_>, p: Option<u16>, s: i32) -> Result<String, Reason> {
    if let Some(p) = p {
        let u = decimal_of(v, p, s)?;
        let mut out = String::new();
        super::text::fmt_decimal(&u, s, &mut out);
        return Ok(out);
    }
    match v {
        ValueRef::Integer(i) => Ok(i.to_string()),
        ValueRef::Real(r) if r.is_finite() => Ok(format!("{r}")),
        ValueRef::Real(r) => Ok(fmt_float(r)),
        ValueRef::Text(_) | ValueRef::Blob(_) => {
            let t = text_of(v)?;
            let t = t.trim();
            if matches!(t, "NaN" | "Infinity" | "-Infinity") || parse_decimal(t, 0, true).is_ok() {
                Ok(t.to_string())
            } else {
                Err("expected a decimal number".into())
            }
        }
        ValueRef::Null => Err("unexpected NULL".into()),
    }
}

fn time_of(v: ValueRef<'_>) -> Result<i64, Reason> {
    let t = str_of(v, "a time (HH:MM:SS.ffffff)")?;
    parse_time(&t).ok_or_else(|| "expected a time (HH:MM:SS.ffffff)".into())
}

/// `div` = nanoseconds per unit (1000 for µs).
fn timestamp_of(v: ValueRef<'_>, tz: bool, div: i128) -> Result<i64, Reason> {
    let what = "a timestamp (YYYY-MM-DD HH:MM:SS.ffffff)";
    let t = str_of(v, what)?;
    let n = parse_timestamp(&t, tz).ok_or_else(|| format!("expected {what}"))?;
    i64::try_from(n.div_euclid(div)).map_err(|_| "timestamp out of range".into())
}
