//! Arrow columns → MySQL values: the tab-separated text `LOAD DATA` reads, or bound
//! parameters for `INSERT`.
//!
//! `LOAD DATA … CHARACTER SET binary FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES
//! TERMINATED BY '\n'`: NULL is `\N`; a backslash, tab, newline and carriage return in a value
//! are escaped (`\\`, `\t`, `\n`, `\r`); a NUL byte is `\0`. Bytes are sent as they are, so
//! binary data and 4-byte UTF-8 arrive unchanged.

use std::borrow::Cow;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, IntervalMonthDayNanoType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use chrono::DateTime;
use mysql_async::Value;

use super::types::Kind;

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

/// A column of one batch, with the target column's kind.
pub struct Column<'a> {
    array: &'a ArrayRef,
    target: Kind,
    /// The source field's logical type is a uuid (FixedSizeBinary(16)).
    uuid: bool,
}

impl<'a> Column<'a> {
    pub fn new(array: &'a ArrayRef, target: Kind, uuid: bool) -> Self {
        Column {
            array,
            target,
            uuid,
        }
    }

    /// The cell at `row`. `Err` says why the value cannot be written.
    pub fn cell(&self, row: usize) -> Result<Cell<'a>, String> {
        let a = self.array;
        if a.is_null(row) {
            return Ok(Cell::Null);
        }
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
                if self.uuid && self.target != Kind::Binary {
                    Cell::Text(uuid_text(b).into())
                } else {
                    Cell::Bytes(b)
                }
            }
            DataType::Date32 => {
                let d = a.as_primitive::<Date32Type>().value(row);
                Cell::Text(date_text(i64::from(d) * 86_400_000_000)?.into())
            }
            DataType::Date64 => {
                let ms = a.as_primitive::<Date64Type>().value(row);
                Cell::Text(date_text(ms * 1000)?.into())
            }
            DataType::Time64(unit) => {
                let us = match unit {
                    TimeUnit::Nanosecond => {
                        a.as_primitive::<Time64NanosecondType>().value(row) / 1000
                    }
                    _ => a.as_primitive::<Time64MicrosecondType>().value(row),
                };
                Cell::Text(duration_text(us).into())
            }
            DataType::Timestamp(unit, _) => {
                let v =
                    arrow::array::as_primitive_array::<arrow::datatypes::TimestampMicrosecondType>;
                let us = match unit {
                    TimeUnit::Microsecond => v(a).value(row),
                    TimeUnit::Nanosecond => a
                        .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                        .value(row)
                        .div_euclid(1000),
                    TimeUnit::Millisecond => {
                        a.as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                            .value(row)
                            * 1000
                    }
                    TimeUnit::Second => {
                        a.as_primitive::<arrow::datatypes::TimestampSecondType>()
                            .value(row)
                            * 1_000_000
                    }
                };
                let text = timestamp_text(us)?;
                Cell::Text(
                    if self.target == Kind::Date {
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
                let us = i64::from(v.days) * 86_400_000_000 + v.nanoseconds / 1000;
                Cell::Text(duration_text(us).into())
            }
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
                Cell::Text(json_of(a, row)?.to_string().into())
            }
            other => return Err(format!("Arrow type {other} cannot be written to MySQL")),
        })
    }
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

/// A list cell as a JSON array.
fn json_of(a: &ArrayRef, row: usize) -> Result<serde_json::Value, String> {
    let inner = match a.data_type() {
        DataType::List(_) => a.as_list::<i32>().value(row),
        DataType::LargeList(_) => a.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => a.as_fixed_size_list().value(row),
        _ => return Err("not a list".into()),
    };
    let col = Column::new(&inner, Kind::Text, false);
    let mut out = Vec::with_capacity(inner.len());
    for i in 0..inner.len() {
        out.push(match col.cell(i)? {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(v) => v.into(),
            Cell::UInt(v) => v.into(),
            Cell::F32(v) => f64::from(v).into(),
            Cell::F64(v) => v.into(),
            Cell::Text(t) => {
                if matches!(
                    inner.data_type(),
                    DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
                ) {
                    serde_json::from_str(&t).map_err(|e| e.to_string())?
                } else if matches!(
                    inner.data_type(),
                    DataType::Decimal128(..) | DataType::Decimal256(..)
                ) {
                    serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t.into_owned()))
                } else {
                    serde_json::Value::String(t.into_owned())
                }
            }
            Cell::Bytes(b) => {
                serde_json::Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
            }
        });
    }
    Ok(serde_json::Value::Array(out))
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
        let c = Column::new(&a, Kind::Double, false);
        assert!(c.cell(0).is_err());
        assert_eq!(c.cell(1).unwrap(), Cell::Null);
        let u: ArrayRef = Arc::new(
            arrow::array::FixedSizeBinaryArray::try_from_iter([[0xabu8; 16]].iter()).unwrap(),
        );
        let c = Column::new(&u, Kind::Text, true);
        assert_eq!(
            c.cell(0).unwrap(),
            Cell::Text("abababab-abab-abab-abab-abababababab".into())
        );
        let l: ArrayRef = Arc::new(arrow::array::ListArray::from_iter_primitive::<
            Int32Type,
            _,
            _,
        >(vec![Some(vec![Some(1), None])]));
        let c = Column::new(&l, Kind::Text, false);
        assert_eq!(c.cell(0).unwrap(), Cell::Text("[1,null]".into()));
    }
}
