//! Arrow → binary `COPY … FROM STDIN` rows.
//!
//! [`plan`] picks, once per column, how an Arrow type is written into a PostgreSQL column
//! type ([`Enc`]); `None` means there is no binary path (the sink then writes text and lets
//! PostgreSQL cast it, or refuses). [`encode_batch`] appends one tuple per row: an `i16`
//! field count, then per field an `i32` length (-1 for NULL) and the binary receive format.
//! Timestamps and dates use the same epoch shift and infinity sentinels as `copy_decode`.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, IntervalMonthDayNanoArray, ListArray,
    StringArray,
};
use arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, IntervalUnit, TimeUnit, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use bytes::{BufMut, BytesMut};
use sluice_core::{Error, Result};

use super::copy_decode::{EPOCH_OFFSET_DAYS, EPOCH_OFFSET_US};
use super::numeric;
use super::types::{PgType, oid};

/// The binary COPY header: signature, flags, header-extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary COPY trailer.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// How one column is encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Enc {
    Bool,
    /// smallint / integer / bigint (bytes: 2, 4, 8), range-checked.
    Int(u8),
    Float4,
    Float8,
    /// numeric from Decimal128/256, from integers, or from decimal text.
    Numeric,
    /// The UTF-8 bytes (text, varchar, bpchar, name, json, enum labels, text for a cast).
    Text,
    Jsonb,
    Bits,
    Bytea,
    Uuid,
    UuidText,
    Date,
    Time,
    Timestamp,
    Interval,
    /// A one-dimensional array of `elem_oid` elements.
    List(u32, Box<Enc>),
}

/// The Arrow type a column is normalized to before encoding (Large/View strings and
/// binaries, dictionaries, Float16, Time32, Date64, Decimal32/64 are cast first).
pub fn normalized(dt: &DataType) -> DataType {
    use DataType as D;
    match dt {
        D::LargeUtf8 | D::Utf8View => D::Utf8,
        D::LargeBinary | D::BinaryView => D::Binary,
        D::Dictionary(_, v) => normalized(v),
        D::Float16 => D::Float32,
        D::Time32(_) => D::Time64(TimeUnit::Microsecond),
        D::Date64 => D::Date32,
        D::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, tz) => {
            D::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        D::Decimal32(p, s) | D::Decimal64(p, s) => D::Decimal128(*p, *s),
        D::Duration(_) | D::Interval(IntervalUnit::YearMonth | IntervalUnit::DayTime) => {
            D::Interval(IntervalUnit::MonthDayNano)
        }
        D::LargeList(f) | D::FixedSizeList(f, _) => D::List(f.clone()),
        other => other.clone(),
    }
}

fn normalize(a: &ArrayRef) -> Result<ArrayRef> {
    let want = normalized(a.data_type());
    if &want == a.data_type() {
        return Ok(a.clone());
    }
    Ok(arrow::compute::cast(a, &want)?)
}

/// The binary encoding of Arrow type `dt` into a column of type `t`, if there is one.
pub fn plan(dt: &DataType, t: &PgType) -> Option<Enc> {
    use DataType as D;
    let dt = normalized(dt);
    if let Some(elem) = &t.elem {
        let D::List(f) = &dt else { return None };
        let inner = plan(f.data_type(), elem)?;
        return Some(Enc::List(elem.oid, Box::new(inner)));
    }
    if t.typtype == 'e' {
        return matches!(dt, D::Utf8).then_some(Enc::Text);
    }
    let int_bytes = |dt: &D| -> Option<u8> {
        Some(match dt {
            D::Int8 | D::Int16 | D::UInt8 => 2,
            D::Int32 | D::UInt16 => 4,
            D::Int64 | D::UInt32 => 8,
            D::UInt64 => 16,
            _ => return None,
        })
    };
    Some(match (t.oid, &dt) {
        (oid::BOOL, D::Boolean) => Enc::Bool,
        (oid::INT2, _) if int_bytes(&dt)? <= 2 => Enc::Int(2),
        (oid::INT4, _) if int_bytes(&dt)? <= 4 => Enc::Int(4),
        (oid::INT8, _) if int_bytes(&dt)? <= 8 => Enc::Int(8),
        (oid::FLOAT4, D::Float32) => Enc::Float4,
        (oid::FLOAT8, D::Float32 | D::Float64) => Enc::Float8,
        (oid::NUMERIC, D::Decimal128(..) | D::Decimal256(..) | D::Utf8) => Enc::Numeric,
        (oid::NUMERIC, _) if int_bytes(&dt).is_some() => Enc::Numeric,
        (oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON, D::Utf8) => Enc::Text,
        (oid::JSONB, D::Utf8) => Enc::Jsonb,
        (oid::BIT | oid::VARBIT, D::Utf8) => Enc::Bits,
        (oid::BYTEA, D::Binary | D::FixedSizeBinary(_)) => Enc::Bytea,
        (oid::UUID, D::FixedSizeBinary(16)) => Enc::Uuid,
        (oid::UUID, D::Utf8) => Enc::UuidText,
        (oid::DATE, D::Date32) => Enc::Date,
        (oid::TIME, D::Time64(_)) => Enc::Time,
        (oid::TIMESTAMP | oid::TIMESTAMPTZ, D::Timestamp(..)) => Enc::Timestamp,
        (oid::INTERVAL, D::Interval(IntervalUnit::MonthDayNano)) => Enc::Interval,
        _ => return None,
    })
}

type Writer<'a> = Box<dyn Fn(usize, &mut BytesMut) -> std::result::Result<(), String> + 'a>;

/// Writes `f`'s payload after a length placeholder, then patches the length.
fn sized(
    out: &mut BytesMut,
    f: impl FnOnce(&mut BytesMut) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let at = out.len();
    out.put_i32(0);
    f(out)?;
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn ts_to_pg(v: i64, unit: TimeUnit) -> std::result::Result<i64, String> {
    match unit {
        TimeUnit::Microsecond => match v {
            i64::MAX | i64::MIN => Ok(v),
            _ => Ok(v.wrapping_sub(EPOCH_OFFSET_US)),
        },
        TimeUnit::Nanosecond => {
            if v % 1000 != 0 {
                return Err(
                    "nanoseconds do not fit PostgreSQL's microsecond timestamps; add a \
                            [[transform]] type = \"cast\" to timestamp (µs)"
                        .into(),
                );
            }
            Ok((v / 1000) - EPOCH_OFFSET_US)
        }
        _ => unreachable!("normalized to µs or ns"),
    }
}

macro_rules! int_writer {
    ($a:expr, $t:ty, $bytes:expr) => {{
        let a = $a.as_primitive::<$t>();
        let bytes: u8 = $bytes;
        Box::new(move |i: usize, out: &mut BytesMut| {
            let v = a.value(i) as i128;
            match bytes {
                2 => {
                    out.put_i32(2);
                    out.put_i16(
                        i16::try_from(v).map_err(|_| format!("{v} does not fit smallint"))?,
                    );
                }
                4 => {
                    out.put_i32(4);
                    out.put_i32(i32::try_from(v).map_err(|_| format!("{v} does not fit integer"))?);
                }
                8 => {
                    out.put_i32(8);
                    out.put_i64(i64::try_from(v).map_err(|_| format!("{v} does not fit bigint"))?);
                }
                _ => sized(out, |o| numeric::from_text(&v.to_string(), o))?,
            }
            Ok(())
        }) as Writer<'_>
    }};
}

fn writer<'a>(a: &'a dyn Array, enc: &'a Enc) -> std::result::Result<Writer<'a>, String> {
    use DataType as D;
    let dt = a.data_type();
    let mismatch = || format!("internal: no {enc:?} encoder for Arrow {dt}");
    Ok(match enc {
        Enc::Bool => {
            let a: &BooleanArray = a.as_boolean();
            Box::new(move |i, out| {
                out.put_i32(1);
                out.put_u8(a.value(i) as u8);
                Ok(())
            })
        }
        Enc::Int(_) | Enc::Numeric if dt.is_integer() => {
            let n = match enc {
                Enc::Int(n) => *n,
                _ => 16,
            };
            match dt {
                D::Int8 => int_writer!(a, Int8Type, n),
                D::Int16 => int_writer!(a, Int16Type, n),
                D::Int32 => int_writer!(a, Int32Type, n),
                D::Int64 => int_writer!(a, Int64Type, n),
                D::UInt8 => int_writer!(a, UInt8Type, n),
                D::UInt16 => int_writer!(a, UInt16Type, n),
                D::UInt32 => int_writer!(a, UInt32Type, n),
                D::UInt64 => int_writer!(a, UInt64Type, n),
                _ => return Err(mismatch()),
            }
        }
        Enc::Float4 => {
            let a = a
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(mismatch)?;
            Box::new(move |i, out| {
                out.put_i32(4);
                out.put_f32(a.value(i));
                Ok(())
            })
        }
        Enc::Float8 => match dt {
            D::Float32 => {
                let a = a
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .ok_or_else(mismatch)?;
                Box::new(move |i, out| {
                    out.put_i32(8);
                    out.put_f64(a.value(i) as f64);
                    Ok(())
                })
            }
            _ => {
                let a = a
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(mismatch)?;
                Box::new(move |i, out| {
                    out.put_i32(8);
                    out.put_f64(a.value(i));
                    Ok(())
                })
            }
        },
        Enc::Numeric => match dt {
            D::Decimal128(_, s) => {
                let a = a
                    .as_any()
                    .downcast_ref::<Decimal128Array>()
                    .ok_or_else(mismatch)?;
                let s = *s;
                Box::new(move |i, out| sized(out, |o| numeric::from_i128(a.value(i), s, o)))
            }
            D::Decimal256(_, s) => {
                let a = a
                    .as_any()
                    .downcast_ref::<Decimal256Array>()
                    .ok_or_else(mismatch)?;
                let s = *s;
                Box::new(move |i, out| {
                    sized(out, |o| {
                        numeric::from_text(&numeric::scaled_text(a.value(i), s), o)
                    })
                })
            }
            _ => {
                let a: &StringArray = a.as_string();
                Box::new(move |i, out| sized(out, |o| numeric::from_text(a.value(i), o)))
            }
        },
        Enc::Text | Enc::Jsonb => {
            let a: &StringArray = a.as_string();
            let jsonb = *enc == Enc::Jsonb;
            Box::new(move |i, out| {
                let v = a.value(i).as_bytes();
                out.put_i32(v.len() as i32 + jsonb as i32);
                if jsonb {
                    out.put_u8(1);
                }
                out.put_slice(v);
                Ok(())
            })
        }
        Enc::Bits => {
            let a: &StringArray = a.as_string();
            Box::new(move |i, out| {
                let s = a.value(i).as_bytes();
                sized(out, |o| {
                    o.put_i32(s.len() as i32);
                    for chunk in s.chunks(8) {
                        let mut byte = 0u8;
                        for (k, c) in chunk.iter().enumerate() {
                            match c {
                                b'1' => byte |= 0x80 >> k,
                                b'0' => {}
                                _ => return Err(format!("{:?} is not a bit string", a.value(i))),
                            }
                        }
                        o.put_u8(byte);
                    }
                    Ok(())
                })
            })
        }
        Enc::Bytea | Enc::Uuid => match dt {
            D::FixedSizeBinary(_) => {
                let a = a
                    .as_any()
                    .downcast_ref::<FixedSizeBinaryArray>()
                    .ok_or_else(mismatch)?;
                Box::new(move |i, out| {
                    let v = a.value(i);
                    out.put_i32(v.len() as i32);
                    out.put_slice(v);
                    Ok(())
                })
            }
            _ => {
                let a = a.as_binary::<i32>();
                Box::new(move |i, out| {
                    let v = a.value(i);
                    out.put_i32(v.len() as i32);
                    out.put_slice(v);
                    Ok(())
                })
            }
        },
        Enc::UuidText => {
            let a: &StringArray = a.as_string();
            Box::new(move |i, out| {
                let s = a.value(i);
                let hex: String = s
                    .trim_matches(['{', '}'])
                    .chars()
                    .filter(|c| *c != '-')
                    .collect();
                if hex.len() != 32 {
                    return Err(format!("{s:?} is not a UUID"));
                }
                out.put_i32(16);
                for k in 0..16 {
                    let b = u8::from_str_radix(&hex[2 * k..2 * k + 2], 16)
                        .map_err(|_| format!("{s:?} is not a UUID"))?;
                    out.put_u8(b);
                }
                Ok(())
            })
        }
        Enc::Date => {
            let a = a
                .as_any()
                .downcast_ref::<Date32Array>()
                .ok_or_else(mismatch)?;
            Box::new(move |i, out| {
                let d = a.value(i);
                out.put_i32(4);
                out.put_i32(match d {
                    i32::MAX | i32::MIN => d,
                    _ => d
                        .checked_sub(EPOCH_OFFSET_DAYS)
                        .ok_or("date out of range")?,
                });
                Ok(())
            })
        }
        Enc::Time => {
            let D::Time64(unit) = dt else {
                return Err(mismatch());
            };
            let ns = *unit == TimeUnit::Nanosecond;
            let a = a.as_any();
            let vals: Box<dyn Fn(usize) -> i64 + 'a> = if ns {
                let a = a
                    .downcast_ref::<arrow::array::Time64NanosecondArray>()
                    .ok_or_else(mismatch)?;
                Box::new(move |i| a.value(i))
            } else {
                let a = a
                    .downcast_ref::<arrow::array::Time64MicrosecondArray>()
                    .ok_or_else(mismatch)?;
                Box::new(move |i| a.value(i))
            };
            Box::new(move |i, out| {
                let v = vals(i);
                let us = if ns {
                    if v % 1000 != 0 {
                        return Err(
                            "nanoseconds do not fit PostgreSQL's microsecond time; add a \
                                    [[transform]] type = \"cast\" to time"
                                .into(),
                        );
                    }
                    v / 1000
                } else {
                    v
                };
                out.put_i32(8);
                out.put_i64(us);
                Ok(())
            })
        }
        Enc::Timestamp => {
            let D::Timestamp(unit, _) = dt else {
                return Err(mismatch());
            };
            let unit = *unit;
            let a = a.as_any();
            let vals: Box<dyn Fn(usize) -> i64 + 'a> = if unit == TimeUnit::Nanosecond {
                let a = a
                    .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                    .ok_or_else(mismatch)?;
                Box::new(move |i| a.value(i))
            } else {
                let a = a
                    .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                    .ok_or_else(mismatch)?;
                Box::new(move |i| a.value(i))
            };
            Box::new(move |i, out| {
                let v = ts_to_pg(vals(i), unit)?;
                out.put_i32(8);
                out.put_i64(v);
                Ok(())
            })
        }
        Enc::Interval => {
            let a = a
                .as_any()
                .downcast_ref::<IntervalMonthDayNanoArray>()
                .ok_or_else(mismatch)?;
            Box::new(move |i, out| {
                let v = a.value(i);
                if v.nanoseconds % 1000 != 0 {
                    return Err("interval has nanoseconds; PostgreSQL keeps microseconds".into());
                }
                out.put_i32(16);
                out.put_i64(v.nanoseconds / 1000);
                out.put_i32(v.days);
                out.put_i32(v.months);
                Ok(())
            })
        }
        Enc::List(elem_oid, inner) => {
            let a = a
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(mismatch)?;
            let values = a.values();
            let child = writer(values.as_ref(), inner)?;
            let elem_oid = *elem_oid;
            Box::new(move |i, out| {
                let (lo, hi) = (
                    a.value_offsets()[i] as usize,
                    a.value_offsets()[i + 1] as usize,
                );
                let n = hi - lo;
                sized(out, |o| {
                    let has_null = (lo..hi).any(|k| values.is_null(k));
                    o.put_i32(if n == 0 { 0 } else { 1 });
                    o.put_i32(has_null as i32);
                    o.put_u32(elem_oid);
                    if n > 0 {
                        o.put_i32(n as i32);
                        o.put_i32(1);
                    }
                    for k in lo..hi {
                        if values.is_null(k) {
                            o.put_i32(-1);
                        } else {
                            child(k, o)?;
                        }
                    }
                    Ok(())
                })
            })
        }
        Enc::Int(_) => return Err(mismatch()),
    })
}

/// Where encoding failed: column index, row within the batch, why.
#[derive(Debug)]
pub struct EncodeError {
    pub column: usize,
    pub row: usize,
    pub message: String,
}

/// Appends every row of `batch` to `out`, column `i` encoded with `encs[i]`.
pub fn encode_batch(
    batch: &RecordBatch,
    encs: &[Enc],
    out: &mut BytesMut,
) -> std::result::Result<(), EncodeError> {
    let cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(normalize)
        .collect::<Result<_>>()
        .map_err(|e: Error| EncodeError {
            column: 0,
            row: 0,
            message: e.to_string(),
        })?;
    let writers: Vec<Writer<'_>> = cols
        .iter()
        .zip(encs)
        .enumerate()
        .map(|(c, (a, e))| {
            writer(a.as_ref(), e).map_err(|message| EncodeError {
                column: c,
                row: 0,
                message,
            })
        })
        .collect::<std::result::Result<_, _>>()?;
    out.reserve(batch.get_array_memory_size() + batch.num_rows() * (2 + 4 * cols.len()));
    for row in 0..batch.num_rows() {
        out.put_i16(cols.len() as i16);
        for (c, (a, w)) in cols.iter().zip(&writers).enumerate() {
            if a.is_null(row) {
                out.put_i32(-1);
            } else {
                w(row, out).map_err(|message| EncodeError {
                    column: c,
                    row,
                    message,
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::copy_decode::CopyDecoder;
    use crate::postgres::types::{Dec, read_mapping};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    /// Encodes a batch and decodes it again: the binary formats must be inverses.
    #[test]
    fn encode_decode_round_trip() {
        let int4 = PgType::builtin(oid::INT4, -1, "integer");
        let mut arr = PgType::builtin(1009, -1, "text[]");
        arr.elem = Some(Box::new(PgType::builtin(oid::TEXT, -1, "text")));
        let num = PgType::builtin(oid::NUMERIC, -1, "numeric");
        let ts = PgType::builtin(oid::TIMESTAMP, -1, "timestamp");
        let types = [int4, arr, num, ts];
        let maps: Vec<_> = types.iter().map(read_mapping).collect();
        let schema = Arc::new(Schema::new(
            maps.iter()
                .enumerate()
                .map(|(i, m)| m.logical.field(&format!("c{i}"), true))
                .collect::<Vec<Field>>(),
        ));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(arrow::array::Int32Array::from(vec![
                Some(i32::MIN),
                None,
                Some(7),
            ])),
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(1)]),
            ])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("NaN"), Some("-1.50"), None])),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![
                i64::MAX,
                i64::MIN,
                0,
            ])),
        ];
        // Replace the list column with a text list.
        let mut b = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
        b.append_value([Some("a"), None]);
        b.append_null();
        b.append_value(Vec::<Option<&str>>::new());
        let list = b.finish();
        let list = ListArray::new(
            match schema.field(1).data_type() {
                DataType::List(f) => f.clone(),
                _ => unreachable!(),
            },
            list.offsets().clone(),
            list.values().clone(),
            list.nulls().cloned(),
        );
        let cols = vec![
            cols[0].clone(),
            Arc::new(list) as ArrayRef,
            cols[2].clone(),
            cols[3].clone(),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
        let encs: Vec<Enc> = types
            .iter()
            .zip(schema.fields())
            .map(|(t, f)| plan(f.data_type(), t).unwrap())
            .collect();
        let mut out = BytesMut::from(HEADER);
        encode_batch(&batch, &encs, &mut out).unwrap();
        out.extend_from_slice(TRAILER);
        let decs: Vec<Dec> = maps.iter().map(|m| m.dec.clone()).collect();
        let mut d = CopyDecoder::new(schema, &decs, 0);
        d.feed(&out, 100).unwrap();
        assert!(d.is_finished());
        let back = d.take_batch().unwrap().unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn narrowing_ints_have_no_plan() {
        let int2 = PgType::builtin(oid::INT2, -1, "smallint");
        assert_eq!(plan(&DataType::Int8, &int2), Some(Enc::Int(2)));
        assert_eq!(plan(&DataType::Int32, &int2), None);
        let num = PgType::builtin(oid::NUMERIC, -1, "numeric");
        assert_eq!(plan(&DataType::UInt64, &num), Some(Enc::Numeric));
    }
}
