//! Arrow columns → MySQL values: the tab-separated text `LOAD DATA` reads, or bound
//! parameters for `INSERT`.
//!
//! `LOAD DATA … CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES
//! TERMINATED BY '\n'`: NULL is `\N`; a backslash, tab, newline and carriage return in a value
//! are escaped (`\\`, `\t`, `\n`, `\r`); a NUL byte is `\0`. Text is UTF-8, converted by the
//! server into each column's character set (and parsed by MariaDB's `uuid`, `inet4`, `inet6`,
//! which refuse input declared as binary); binary columns take the bytes as they are.
//!
//! Arrays are written as JSON arrays whose elements keep their exact values (see
//! `json_elem`).

use std::borrow::Cow;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, IntervalMonthDayNanoType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use chrono::DateTime;
use mysql_async::Value;
use sluice_core::LogicalType;

use super::types::{Kind, zero_date_text, zero_datetime_text};

/// One cell, ready to be written.
#[derive(Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    UInt(u64),
    F32(f32),
    F64(f64),
    Text(Cow<'a, str>),
    Bytes(&'a [u8]),
}

/// What a target column holds, and how one incoming column is written into it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColSpec {
    /// The target column's kind.
    pub kind: Kind,
    /// The source field's logical type is a uuid (FixedSizeBinary(16)).
    pub uuid: bool,
    /// The target's `decimal(p, s)`: values are checked against it, because MySQL rounds
    /// extra decimal places with only a note.
    pub decimal: Option<(u32, u32)>,
    /// Fractional-second digits the target keeps (MySQL drops the others silently).
    pub fsp: u32,
    /// The incoming field carries zero dates (see `types::ZERO_DATES_KEY`).
    pub zero_dates: bool,
}

impl ColSpec {
    /// A column of `kind` with no limits beyond the kind's own.
    pub fn of(kind: Kind) -> Self {
        ColSpec {
            kind,
            uuid: false,
            decimal: None,
            fsp: 6,
            zero_dates: false,
        }
    }
}

/// A column of one batch, with the target column's spec.
pub struct Column<'a> {
    array: &'a ArrayRef,
    spec: &'a ColSpec,
}

impl<'a> Column<'a> {
    pub fn new(array: &'a ArrayRef, spec: &'a ColSpec) -> Self {
        Column { array, spec }
    }

    /// The cell at `row`. `Err` says why the value cannot be written.
    pub fn cell(&self, row: usize) -> Result<Cell<'a>, String> {
        let cell = self.raw_cell(row)?;
        if let (Some((p, s)), Cell::Text(t)) = (self.spec.decimal, &cell) {
            check_decimal(t, p, s)?;
        }
        Ok(cell)
    }

    fn raw_cell(&self, row: usize) -> Result<Cell<'a>, String> {
        let a = self.array;
        if a.is_null(row) {
            return Ok(Cell::Null);
        }
        let target = self.spec.kind;
        Ok(match a.data_type() {
            DataType::Boolean => Cell::Int(i64::from(a.as_boolean().value(row))),
            DataType::Int8 => Cell::Int(a.as_primitive::<Int8Type>().value(row).into()),
            DataType::Int16 => Cell::Int(a.as_primitive::<Int16Type>().value(row).into()),
            DataType::Int32 => Cell::Int(a.as_primitive::<Int32Type>().value(row).into()),
            DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(row)),
            DataType::UInt8 => Cell::UInt(a.as_primitive::<UInt8Type>().value(row).into()),
            DataType::UInt16 => Cell::UInt(a.as_primitive::<UInt16Type>().value(row).into()),
            DataType::UInt32 => Cell::UInt(a.as_primitive::<UInt32Type>().value(row).into()),
            DataType::UInt64 => Cell::UInt(a.as_primitive::<UInt64Type>().value(row)),
            DataType::Float32 => {
                let v = a.as_primitive::<Float32Type>().value(row);
                finite(f64::from(v))?;
                Cell::F32(v)
            }
            DataType::Float64 => {
                let v = a.as_primitive::<Float64Type>().value(row);
                finite(v)?;
                Cell::F64(v)
            }
            DataType::Decimal128(..) => Cell::Text(
                a.as_primitive::<Decimal128Type>()
                    .value_as_string(row)
                    .into(),
            ),
            DataType::Decimal256(..) => Cell::Text(
                a.as_primitive::<Decimal256Type>()
                    .value_as_string(row)
                    .into(),
            ),
            DataType::Utf8 => Cell::Text(a.as_string::<i32>().value(row).into()),
            DataType::LargeUtf8 => Cell::Text(a.as_string::<i64>().value(row).into()),
            DataType::Utf8View => Cell::Text(a.as_string_view().value(row).into()),
            DataType::Binary => Cell::Bytes(a.as_binary::<i32>().value(row)),
            DataType::LargeBinary => Cell::Bytes(a.as_binary::<i64>().value(row)),
            DataType::BinaryView => Cell::Bytes(a.as_binary_view().value(row)),
            DataType::FixedSizeBinary(_) => {
                let b = a.as_fixed_size_binary().value(row);
                if self.spec.uuid && target != Kind::Binary {
                    Cell::Text(uuid_text(b).into())
                } else {
                    Cell::Bytes(b)
                }
            }
            DataType::Date32 => {
                let d = a.as_primitive::<Date32Type>().value(row);
                match zero_date_text(d).filter(|_| self.spec.zero_dates) {
                    Some(zero) => Cell::Text(zero.into()),
                    None => Cell::Text(date_text(i64::from(d) * 86_400_000_000)?.into()),
                }
            }
            DataType::Date64 => {
                let ms = a.as_primitive::<Date64Type>().value(row);
                Cell::Text(date_text(ms * 1000)?.into())
            }
            DataType::Time64(unit) => {
                let us = match unit {
                    TimeUnit::Nanosecond => {
                        micros(a.as_primitive::<Time64NanosecondType>().value(row))?
                    }
                    _ => a.as_primitive::<Time64MicrosecondType>().value(row),
                };
                self.fits_fsp(us, || duration_text(us))?;
                Cell::Text(duration_text(us).into())
            }
            DataType::Timestamp(unit, _) => {
                let us = match unit {
                    TimeUnit::Microsecond => {
                        a.as_primitive::<TimestampMicrosecondType>().value(row)
                    }
                    TimeUnit::Nanosecond => {
                        micros(a.as_primitive::<TimestampNanosecondType>().value(row))?
                    }
                    TimeUnit::Millisecond => {
                        a.as_primitive::<TimestampMillisecondType>().value(row) * 1000
                    }
                    TimeUnit::Second => {
                        a.as_primitive::<TimestampSecondType>().value(row) * 1_000_000
                    }
                };
                let text = match zero_datetime_text(us).filter(|_| self.spec.zero_dates) {
                    Some(zero) => zero,
                    None => timestamp_text(us)?,
                };
                if matches!(target, Kind::DateTime | Kind::Timestamp) {
                    self.fits_fsp(us, || text.clone())?;
                }
                Cell::Text(
                    if target == Kind::Date {
                        text[..10].to_string()
                    } else {
                        text
                    }
                    .into(),
                )
            }
            DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano) => {
                let v = a.as_primitive::<IntervalMonthDayNanoType>().value(row);
                if v.months != 0 {
                    return Err("an interval with months cannot be written to a MySQL TIME".into());
                }
                let us = i64::from(v.days) * 86_400_000_000 + micros(v.nanoseconds)?;
                self.fits_fsp(us, || duration_text(us))?;
                Cell::Text(duration_text(us).into())
            }
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
                Cell::Text(json_of(a, row)?.into())
            }
            other => return Err(format!("Arrow type {other} cannot be written to MySQL")),
        })
    }

    /// Fails a value with more fractional-second digits than the target keeps (MySQL would
    /// drop them without a word).
    fn fits_fsp(&self, us: i64, text: impl FnOnce() -> String) -> Result<(), String> {
        let fsp = self.spec.fsp.min(6);
        if fsp < 6 && us.rem_euclid(10i64.pow(6 - fsp)) != 0 {
            return Err(format!(
                "value {} has more fractional-second digits than the target column keeps ({fsp}), \
                 so MySQL would drop them",
                text().trim_end_matches('0')
            ));
        }
        Ok(())
    }
}

/// Checks that the decimal text `t` fits `decimal(p, s)` as it is: MySQL rounds extra
/// decimal places with only a note, and refuses extra integer digits, NaN and infinities.
pub fn check_decimal(t: &str, p: u32, s: u32) -> Result<(), String> {
    let body = t.trim();
    let unsigned = body
        .strip_prefix('-')
        .or_else(|| body.strip_prefix('+'))
        .unwrap_or(body);
    let (mantissa, exp) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (
            m,
            e.parse::<i64>()
                .map_err(|_| format!("value {t:?} is not a decimal number"))?,
        ),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        let special = ["nan", "infinity", "inf"].contains(&unsigned.to_ascii_lowercase().as_str());
        return Err(if special {
            format!("value {t} cannot be stored in a MySQL decimal (no NaN or infinity)")
        } else {
            format!("value {t:?} is not a decimal number")
        });
    }
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let Some(first) = digits.iter().position(|&b| b != b'0') else {
        return Ok(());
    };
    let last = digits.iter().rposition(|&b| b != b'0').unwrap_or(first);
    let point = int.len() as i64 + exp;
    let int_digits = (point - first as i64).max(0);
    let frac_digits = (last as i64 + 1 - point).max(0);
    let ty = format!("decimal({p},{s})");
    if frac_digits > i64::from(s) {
        return Err(format!(
            "value {t} has {frac_digits} decimal places; the target column {ty} keeps {s}, \
             so MySQL would round it"
        ));
    }
    if int_digits > i64::from(p) - i64::from(s) {
        return Err(format!(
            "value {t} has {int_digits} integer digits; the target column {ty} holds {}",
            i64::from(p) - i64::from(s)
        ));
    }
    Ok(())
}

/// Nanoseconds as microseconds, refusing a value with digits below them (MySQL keeps six
/// fractional digits at most; dropping the rest would change the value silently).
fn micros(ns: i64) -> Result<i64, String> {
    if ns.rem_euclid(1000) != 0 {
        return Err(format!(
            "value has nanoseconds ({} ns past the microsecond); MySQL keeps at most \
             microseconds",
            ns.rem_euclid(1000)
        ));
    }
    Ok(ns.div_euclid(1000))
}

fn finite(v: f64) -> Result<(), String> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(format!(
            "{v} cannot be stored in MySQL (no NaN or infinity)"
        ))
    }
}

fn uuid_text(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if h.len() != 32 {
        return h;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn date_text(us: i64) -> Result<String, String> {
    Ok(timestamp_text(us)?[..10].to_string())
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC for instants).
pub fn timestamp_text(us: i64) -> Result<String, String> {
    let dt = DateTime::from_timestamp_micros(us)
        .ok_or_else(|| format!("timestamp {us}µs is out of range"))?;
    let year = chrono::Datelike::year(&dt);
    if !(0..=9999).contains(&year) {
        return Err(format!("{dt} is outside MySQL's years 0000-9999"));
    }
    Ok(dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
}

/// `[-]H:MM:SS.ffffff` (MySQL TIME; hours may exceed 24).
pub fn duration_text(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    let (secs, frac) = (a / 1_000_000, a % 1_000_000);
    format!(
        "{sign}{}:{:02}:{:02}.{frac:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A list cell as the text of a JSON array, every element exact (see [`json_elem`]).
fn json_of(a: &ArrayRef, row: usize) -> Result<String, String> {
    let (item, inner) = match a.data_type() {
        DataType::List(f) => (f, a.as_list::<i32>().value(row)),
        DataType::LargeList(f) => (f, a.as_list::<i64>().value(row)),
        DataType::FixedSizeList(f, _) => (f, a.as_fixed_size_list().value(row)),
        _ => return Err("not a list".into()),
    };
    let uuid = LogicalType::of_field(item).is_ok_and(|t| t == LogicalType::Uuid);
    let mut out = String::from("[");
    for i in 0..inner.len() {
        if i > 0 {
            out.push(',');
        }
        json_elem(&inner, i, uuid, &mut out)?;
    }
    out.push(']');
    Ok(out)
}

/// Appends element `i` of `a` as JSON. Nothing passes through a lossy form: integers are
/// numbers, floats numbers in their shortest exact form, booleans `true`/`false`; decimals
/// are strings of their exact text (a JSON number would become a double in MySQL's JSON
/// type); uuids canonical strings; binary lowercase hex; dates `YYYY-MM-DD`, times
/// `HH:MM:SS.ffffff`, timestamps `YYYY-MM-DD HH:MM:SS.ffffff` (instants in UTC; nine
/// fraction digits when there are nanoseconds), intervals ISO 8601 (`P1Y2M3DT4H5M6.5S`), as
/// `sluice verify` compares them; nested lists are nested arrays.
fn json_elem(a: &ArrayRef, i: usize, uuid: bool, out: &mut String) -> Result<(), String> {
    use crate::sqlite::text::{fmt_date, fmt_interval, fmt_time, fmt_timestamp, fmt_uuid};
    if a.is_null(i) {
        out.push_str("null");
        return Ok(());
    }
    let string = |s: &str, out: &mut String| {
        out.push_str(&serde_json::Value::String(s.to_string()).to_string());
    };
    match a.data_type() {
        DataType::Boolean => out.push_str(if a.as_boolean().value(i) {
            "true"
        } else {
            "false"
        }),
        DataType::Int8 => num(out, a.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => num(out, a.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => num(out, a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => num(out, a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => num(out, a.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => num(out, a.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => num(out, a.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => num(out, a.as_primitive::<UInt64Type>().value(i)),
        // `{:?}` is the shortest text that reads back as the same value (`0.1`, `1e300`,
        // `-0.0`), valid JSON for every finite value.
        DataType::Float32 => {
            let v = a.as_primitive::<Float32Type>().value(i);
            finite(f64::from(v))?;
            num(out, format_args!("{v:?}"))
        }
        DataType::Float64 => {
            let v = a.as_primitive::<Float64Type>().value(i);
            finite(v)?;
            num(out, format_args!("{v:?}"))
        }
        DataType::Decimal128(..) => {
            string(&a.as_primitive::<Decimal128Type>().value_as_string(i), out)
        }
        DataType::Decimal256(..) => {
            string(&a.as_primitive::<Decimal256Type>().value_as_string(i), out)
        }
        DataType::Utf8 => string(a.as_string::<i32>().value(i), out),
        DataType::LargeUtf8 => string(a.as_string::<i64>().value(i), out),
        DataType::Utf8View => string(a.as_string_view().value(i), out),
        DataType::Binary => string(&hex(a.as_binary::<i32>().value(i)), out),
        DataType::LargeBinary => string(&hex(a.as_binary::<i64>().value(i)), out),
        DataType::BinaryView => string(&hex(a.as_binary_view().value(i)), out),
        DataType::FixedSizeBinary(16) if uuid => {
            out.push('"');
            fmt_uuid(a.as_fixed_size_binary().value(i), out);
            out.push('"');
        }
        DataType::FixedSizeBinary(_) => string(&hex(a.as_fixed_size_binary().value(i)), out),
        DataType::Date32 => {
            out.push('"');
            fmt_date(i64::from(a.as_primitive::<Date32Type>().value(i)), out);
            out.push('"');
        }
        DataType::Date64 => {
            out.push('"');
            let ms = a.as_primitive::<Date64Type>().value(i);
            fmt_date(ms.div_euclid(86_400_000), out);
            out.push('"');
        }
        DataType::Time64(unit) => {
            let ns = match unit {
                TimeUnit::Nanosecond => a.as_primitive::<Time64NanosecondType>().value(i),
                _ => a.as_primitive::<Time64MicrosecondType>().value(i) * 1000,
            };
            out.push('"');
            fmt_time(ns, precision_of(i128::from(ns)), out);
            out.push('"');
        }
        DataType::Timestamp(unit, _) => {
            let v = i128::from(match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i),
            });
            let ns = v * match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1000,
                TimeUnit::Nanosecond => 1,
            };
            out.push('"');
            fmt_timestamp(ns, precision_of(ns), false, out);
            out.push('"');
        }
        DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano) => {
            let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
            out.push('"');
            fmt_interval(v.months, v.days, v.nanoseconds, out);
            out.push('"');
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            out.push_str(&json_of(a, i)?)
        }
        other => return Err(format!("Arrow type {other} cannot be written to MySQL")),
    }
    Ok(())
}

fn num(out: &mut String, v: impl std::fmt::Display) {
    use std::fmt::Write as _;
    let _ = write!(out, "{v}");
}

/// Microseconds unless the value has a nonzero part below them.
fn precision_of(ns: i128) -> sluice_core::types::Precision {
    if ns.rem_euclid(1000) == 0 {
        sluice_core::types::Precision::Micros
    } else {
        sluice_core::types::Precision::Nanos
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Appends `cell` to a `LOAD DATA` line.
pub fn write_tsv(cell: &Cell<'_>, out: &mut Vec<u8>) {
    use std::io::Write;
    match cell {
        Cell::Null => out.extend_from_slice(b"\\N"),
        Cell::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        // Shortest text that reads back as the same value; `-0e0` keeps the sign.
        Cell::F32(v) => {
            let _ = write!(out, "{v:e}");
        }
        Cell::F64(v) => {
            let _ = write!(out, "{v:e}");
        }
        Cell::Text(t) => escape(t.as_bytes(), out),
        Cell::Bytes(b) => escape(b, out),
    }
}

fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            _ => out.push(b),
        }
    }
}

/// `cell` as a bound parameter.
pub fn to_value(cell: Cell<'_>) -> Value {
    match cell {
        Cell::Null => Value::NULL,
        Cell::Int(v) => Value::Int(v),
        Cell::UInt(v) => Value::UInt(v),
        Cell::F32(v) => Value::Float(v),
        Cell::F64(v) => Value::Double(v),
        Cell::Text(t) => Value::Bytes(t.into_owned().into_bytes()),
        Cell::Bytes(b) => Value::Bytes(b.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tsv(c: Cell<'_>) -> String {
        let mut v = Vec::new();
        write_tsv(&c, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escaping_and_numbers() {
        assert_eq!(
            tsv(Cell::Text("a\tb\nc\\d\re".into())),
            "a\\tb\\nc\\\\d\\re"
        );
        assert_eq!(tsv(Cell::Bytes(&[0, 1, b'\n'])), "\\0\u{1}\\n");
        assert_eq!(tsv(Cell::Null), "\\N");
        assert_eq!(tsv(Cell::F64(-0.0)), "-0e0");
        assert_eq!(tsv(Cell::F64(1e300)), "1e300");
        assert_eq!(tsv(Cell::F64(0.1)), "1e-1");
        assert_eq!(tsv(Cell::UInt(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn times_and_timestamps() {
        assert_eq!(
            duration_text(-(838 * 3600 + 59 * 60 + 59) * 1_000_000 - 1),
            "-838:59:59.000001"
        );
        assert_eq!(duration_text(5), "0:00:00.000005");
        assert_eq!(timestamp_text(0).unwrap(), "1970-01-01 00:00:00.000000");
        assert_eq!(
            timestamp_text(-62_135_596_800_000_000).unwrap(),
            "0001-01-01 00:00:00.000000"
        );
        assert!(timestamp_text(i64::MAX / 2).is_err());
    }

    #[test]
    fn cells_from_arrays() {
        let a: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![Some(f64::NAN), None]));
        let double = ColSpec::of(Kind::Double);
        let c = Column::new(&a, &double);
        assert!(c.cell(0).is_err());
        assert_eq!(c.cell(1).unwrap(), Cell::Null);
        let u: ArrayRef = Arc::new(
            arrow::array::FixedSizeBinaryArray::try_from_iter([[0xabu8; 16]].iter()).unwrap(),
        );
        let uuid = ColSpec {
            uuid: true,
            ..ColSpec::of(Kind::Text)
        };
        let c = Column::new(&u, &uuid);
        assert_eq!(
            c.cell(0).unwrap(),
            Cell::Text("abababab-abab-abab-abab-abababababab".into())
        );
        let l: ArrayRef = Arc::new(arrow::array::ListArray::from_iter_primitive::<
            Int32Type,
            _,
            _,
        >(vec![Some(vec![Some(1), None])]));
        let text = ColSpec::of(Kind::Text);
        let c = Column::new(&l, &text);
        assert_eq!(c.cell(0).unwrap(), Cell::Text("[1,null]".into()));
    }

    #[test]
    fn decimals_must_fit_the_target_exactly() {
        assert!(check_decimal("123.450000", 5, 2).is_ok());
        assert!(check_decimal("-0.000", 1, 0).is_ok());
        assert!(check_decimal("0012.5", 3, 1).is_ok());
        assert!(check_decimal("1.5e2", 3, 0).is_ok());
        let e = check_decimal("1.005", 5, 2).unwrap_err();
        assert!(
            e.contains("3 decimal places") && e.contains("decimal(5,2)"),
            "{e}"
        );
        let e = check_decimal("1234", 5, 2).unwrap_err();
        assert!(e.contains("4 integer digits"), "{e}");
        assert!(check_decimal("1.5e-3", 5, 2).is_err());
        assert!(check_decimal("NaN", 65, 30).unwrap_err().contains("NaN"));
        assert!(check_decimal("-Infinity", 65, 30).is_err());
        assert!(check_decimal("1.2.3", 65, 30).is_err());
    }

    #[test]
    fn fractional_seconds_and_zero_dates() {
        use arrow::array::{Date32Array, TimestampMicrosecondArray};
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            1_000_000,
            1_500_000,
            crate::mysql::types::zero_datetime_micros(2024, 0, 10, 1_000_000),
        ]));
        let dt0 = ColSpec {
            fsp: 0,
            ..ColSpec::of(Kind::DateTime)
        };
        let c = Column::new(&ts, &dt0);
        assert!(c.cell(0).is_ok());
        let e = c.cell(1).unwrap_err();
        assert!(
            e.contains("1970-01-01 00:00:01.5") && e.contains("(0)"),
            "{e}"
        );
        // Not marked: the encoded zero date is an ordinary (impossible) value.
        assert!(c.cell(2).is_err());
        let kept = ColSpec {
            zero_dates: true,
            ..dt0.clone()
        };
        let c = Column::new(&ts, &kept);
        assert_eq!(
            c.cell(2).unwrap(),
            Cell::Text("2024-00-10 00:00:01.000000".into())
        );
        let d: ArrayRef = Arc::new(Date32Array::from(vec![
            crate::mysql::types::zero_date_days(0, 0, 0),
        ]));
        let date = ColSpec {
            zero_dates: true,
            ..ColSpec::of(Kind::Date)
        };
        assert_eq!(
            Column::new(&d, &date).cell(0).unwrap(),
            Cell::Text("0000-00-00".into())
        );
    }

    #[test]
    fn array_elements_are_exact() {
        use arrow::array::{Decimal128Builder, FixedSizeBinaryBuilder, ListBuilder};
        use arrow::datatypes::Field;
        let text = ColSpec::of(Kind::Text);
        let cell = |a: ArrayRef| match Column::new(&a, &text).cell(0).unwrap() {
            Cell::Text(t) => t.into_owned(),
            other => panic!("{other:?}"),
        };
        // Decimals never pass through a double.
        let mut b =
            ListBuilder::new(Decimal128Builder::new().with_data_type(DataType::Decimal128(30, 10)))
                .with_field(Arc::new(Field::new(
                    "item",
                    DataType::Decimal128(30, 10),
                    true,
                )));
        b.values()
            .append_value(123_456_789_012_345_678_901_234_567_891);
        b.values().append_value(-1);
        b.values().append_null();
        b.append(true);
        assert_eq!(
            cell(Arc::new(b.finish())),
            r#"["12345678901234567890.1234567891","-0.0000000001",null]"#
        );
        // Uuids in their canonical form, like scalar uuids.
        let item = LogicalType::Uuid.field("item", true);
        let mut b = ListBuilder::new(FixedSizeBinaryBuilder::new(16)).with_field(Arc::new(item));
        b.values().append_value([0xabu8; 16]).unwrap();
        b.append(true);
        assert_eq!(
            cell(Arc::new(b.finish())),
            r#"["abababab-abab-abab-abab-abababababab"]"#
        );
        let l: ArrayRef = Arc::new(arrow::array::ListArray::from_iter_primitive::<
            Float32Type,
            _,
            _,
        >(vec![Some(vec![Some(0.1f32), Some(-0.0)])]));
        assert_eq!(cell(l), "[0.1,-0.0]");
    }

    #[test]
    fn nanoseconds_are_refused_not_dropped() {
        use arrow::array::TimestampNanosecondArray;
        let ts: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![1_000, 1_001]));
        let spec = ColSpec::of(Kind::DateTime);
        let c = Column::new(&ts, &spec);
        assert_eq!(
            c.cell(0).unwrap(),
            Cell::Text("1970-01-01 00:00:00.000001".into())
        );
        assert!(c.cell(1).unwrap_err().contains("nanoseconds"));
    }
}
