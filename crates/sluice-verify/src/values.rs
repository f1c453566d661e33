//! The canonical row form computed in Rust, from Arrow arrays: the same text PostgreSQL and
//! MySQL/MariaDB compute in SQL (see [`crate::canon`]), for sides that are read locally
//! (SQLite databases, CSV, JSON Lines and Parquet files).
//!
//! Values are rendered by their Arrow type (and Sluice's logical-type metadata): integers as
//! decimal text, booleans `1`/`0`, decimals with trailing zeros trimmed (`0` for zero),
//! doubles rounded to 15 and singles to 6 significant digits (exactly like PostgreSQL's
//! `float8::numeric` / `float4::numeric`), text as stored, binary as lowercase hex, UUIDs in
//! their 8-4-4-4-12 form, dates `YYYY-MM-DD`, timestamps `YYYY-MM-DD HH:MM:SS.ffffff` (in UTC
//! when the type carries a zone; nanoseconds truncated to microseconds), times
//! `HH:MM:SS.ffffff`, intervals in PostgreSQL's ISO 8601 style ([`interval_text`]), lists
//! element by element ([`canonical_values`]). Anything else uses Arrow's display text.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use md5::{Digest, Md5};
use sluice_core::{Error, LogicalType, Result};

use crate::arrays;
use crate::canon::{ColKind, Form};

/// The verify class of a column read locally, from its logical type.
pub fn kind_of(t: &LogicalType) -> ColKind {
    use LogicalType as L;
    match t {
        L::Int8 | L::Int16 | L::Int32 | L::Int64 | L::UInt8 | L::UInt16 | L::UInt32 | L::UInt64 => {
            ColKind::Int
        }
        L::Float32 => ColKind::Float4,
        L::Float64 => ColKind::Float8,
        L::Decimal { .. } => ColKind::Decimal,
        L::Bool => ColKind::Bool,
        L::Text | L::Enum(_) | L::Uuid => ColKind::Text,
        L::Binary => ColKind::Binary,
        L::Date => ColKind::Date,
        L::Time(_) => ColKind::Time,
        L::Timestamp { tz: false, .. } => ColKind::Timestamp,
        L::Timestamp { tz: true, .. } => ColKind::TimestampTz,
        L::Json => ColKind::Json,
        L::Interval => ColKind::Interval,
        L::Array(_) => ColKind::Other,
    }
}

/// Strips trailing zeros after a decimal point (and then the point); `0` for any zero.
pub fn trim_decimal(s: &str) -> String {
    let s = s.trim();
    let t = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    };
    if t.trim_start_matches(['-', '+']).chars().all(|c| c == '0') {
        return "0".to_string();
    }
    t.strip_prefix('+').unwrap_or(t).to_string()
}

/// A float rounded to `digits` significant digits, as plain decimal text with trailing zeros
/// trimmed: PostgreSQL's `trim_scale(x::numeric)::text`.
pub fn float_text(v: f64, digits: usize, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = if single {
        format!("{:.*e}", digits - 1, v as f32)
    } else {
        format!("{:.*e}", digits - 1, v)
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // The point goes after `exp + 1` digits.
    let pos = exp + 1;
    let len = digits.len() as i64;
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if pos <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-pos) as usize));
        out.push_str(&digits);
    } else if pos >= len {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (pos - len) as usize));
    } else {
        out.push_str(&digits[..pos as usize]);
        out.push('.');
        out.push_str(&digits[pos as usize..]);
    }
    if out.contains('.') {
        let t = out.trim_end_matches('0').trim_end_matches('.').len();
        out.truncate(t);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn uuid_text(b: &[u8]) -> String {
    let h = hex(b);
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

const TS: &str = "%Y-%m-%d %H:%M:%S%.6f";

fn micros_text(us: i64, fmt: &str) -> Option<String> {
    arrow::temporal_conversions::timestamp_us_to_datetime(us).map(|d| d.format(fmt).to_string())
}

/// `HH:MM:SS.ffffff`, by arithmetic: PostgreSQL's `24:00:00` is a valid time of day, which
/// chrono's times cannot hold.
fn time_text(us: i64) -> Option<String> {
    if !(0..=86_400_000_000).contains(&us) {
        return None;
    }
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    Some(format!(
        "{:02}:{:02}:{:02}.{frac:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// An interval in ISO 8601 as PostgreSQL's `iso_8601` style writes it: `P1Y2M3DT4H5M6.5S`,
/// years and months from `months`, each part with its own sign, zero parts left out, `PT0S`
/// for zero (the time part in hours, minutes and seconds, never folded into days).
pub fn interval_text(months: i32, days: i32, nanos: i64) -> String {
    use std::fmt::Write;
    if months == 0 && days == 0 && nanos == 0 {
        return "PT0S".into();
    }
    let mut out = String::from("P");
    let (y, m) = (months / 12, months % 12);
    for (v, unit) in [(y, 'Y'), (m, 'M'), (days, 'D')] {
        if v != 0 {
            let _ = write!(out, "{v}{unit}");
        }
    }
    if nanos != 0 {
        out.push('T');
        let (h, mi) = (
            nanos / (3600 * NANOS_PER_SEC),
            nanos / (60 * NANOS_PER_SEC) % 60,
        );
        let sec = nanos % (60 * NANOS_PER_SEC);
        for (v, unit) in [(h, 'H'), (mi, 'M')] {
            if v != 0 {
                let _ = write!(out, "{v}{unit}");
            }
        }
        if sec != 0 {
            let a = sec.unsigned_abs();
            let sign = if sec < 0 { "-" } else { "" };
            let _ = write!(out, "{sign}{}", a / NANOS_PER_SEC as u64);
            let frac = a % NANOS_PER_SEC as u64;
            if frac != 0 {
                let f = format!("{frac:09}");
                let _ = write!(out, ".{}", f.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
    out
}

/// Parses [`interval_text`]'s form back into `(months, days, nanoseconds)` (for repair).
pub fn parse_interval_text(s: &str) -> Option<(i32, i32, i64)> {
    let body = s.trim().strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let (mut months, mut days, mut nanos) = (0i64, 0i64, 0i64);
    let mut num = String::new();
    for c in date.chars() {
        match c {
            'Y' => months += num.parse::<i64>().ok()? * 12,
            'M' => months += num.parse::<i64>().ok()?,
            'W' => days += num.parse::<i64>().ok()? * 7,
            'D' => days += num.parse::<i64>().ok()?,
            _ => {
                num.push(c);
                continue;
            }
        }
        num.clear();
    }
    if !num.is_empty() {
        return None;
    }
    for c in time.unwrap_or("").chars() {
        let unit = match c {
            'H' => 3600 * NANOS_PER_SEC,
            'M' => 60 * NANOS_PER_SEC,
            'S' => NANOS_PER_SEC,
            _ => {
                num.push(c);
                continue;
            }
        };
        let (int, frac) = num.split_once('.').unwrap_or((&num, ""));
        let neg = int.starts_with('-');
        let whole: i64 = int.parse().ok()?;
        let mut part = whole.checked_mul(unit)?;
        if !frac.is_empty() {
            if frac.len() > 9 || unit != NANOS_PER_SEC {
                return None;
            }
            let f: i64 = format!("{frac:0<9}").parse().ok()?;
            part += if neg { -f } else { f };
        }
        nanos = nanos.checked_add(part)?;
        num.clear();
    }
    if !num.is_empty() {
        return None;
    }
    Some((
        i32::try_from(months).ok()?,
        i32::try_from(days).ok()?,
        nanos,
    ))
}

/// The canonical values of one column of a batch as agreed for the pair (`form`): arrays
/// element by element, `char(n)` copies without trailing spaces, times as intervals where
/// the other side holds an interval; otherwise [`column_values`]. With `repair`, floats
/// keep full precision and arrays are JSON arrays.
pub fn canonical_values(
    array: &ArrayRef,
    logical: &LogicalType,
    form: &Form,
    repair: bool,
) -> Result<Vec<Option<String>>> {
    if let Some(e) = form.elem {
        return arrays::array_values(array, logical, e, repair);
    }
    if form.interval
        && let DataType::Time32(_) | DataType::Time64(_) = array.data_type()
    {
        let us = arrow::compute::cast(array, &DataType::Time64(TimeUnit::Microsecond))
            .map_err(|e| Error::data(format!("reading times: {e}")))?;
        let us = us.as_primitive::<Time64MicrosecondType>();
        return Ok(us
            .iter()
            .map(|v| v.map(|v| interval_text(0, 0, v.saturating_mul(1000))))
            .collect());
    }
    let mut out = column_values(array, logical, repair)?;
    if form.padded {
        for v in out.iter_mut().flatten() {
            let t = v.trim_end_matches(' ').len();
            v.truncate(t);
        }
    }
    Ok(out)
}

/// The canonical values of one column of a batch (`None` for NULL), with `full_floats`
/// floats keep their shortest round-trip text instead (for repair statements).
pub fn column_values(
    array: &ArrayRef,
    logical: &LogicalType,
    full_floats: bool,
) -> Result<Vec<Option<String>>> {
    let n = array.len();
    let mut out: Vec<Option<String>> = Vec::with_capacity(n);
    macro_rules! each {
        ($arr:expr, |$v:ident| $e:expr) => {{
            let a = $arr;
            for i in 0..n {
                out.push(if a.is_null(i) {
                    None
                } else {
                    let $v = a.value(i);
                    $e
                });
            }
        }};
    }
    match array.data_type() {
        DataType::Boolean => each!(array.as_boolean(), |v| Some(
            if v { "1" } else { "0" }.to_string()
        )),
        DataType::Int8 => each!(array.as_primitive::<Int8Type>(), |v| Some(v.to_string())),
        DataType::Int16 => each!(array.as_primitive::<Int16Type>(), |v| Some(v.to_string())),
        DataType::Int32 => each!(array.as_primitive::<Int32Type>(), |v| Some(v.to_string())),
        DataType::Int64 => each!(array.as_primitive::<Int64Type>(), |v| Some(v.to_string())),
        DataType::UInt8 => each!(array.as_primitive::<UInt8Type>(), |v| Some(v.to_string())),
        DataType::UInt16 => each!(array.as_primitive::<UInt16Type>(), |v| Some(v.to_string())),
        DataType::UInt32 => each!(array.as_primitive::<UInt32Type>(), |v| Some(v.to_string())),
        DataType::UInt64 => each!(array.as_primitive::<UInt64Type>(), |v| Some(v.to_string())),
        DataType::Float64 if full_floats => {
            each!(array.as_primitive::<Float64Type>(), |v| Some(v.to_string()))
        }
        DataType::Float64 => each!(array.as_primitive::<Float64Type>(), |v| Some(float_text(
            v, 15, false
        ))),
        DataType::Float32 if full_floats => {
            each!(array.as_primitive::<Float32Type>(), |v| Some(v.to_string()))
        }
        DataType::Float32 => each!(array.as_primitive::<Float32Type>(), |v| Some(float_text(
            f64::from(v),
            6,
            true
        ))),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let decimal = matches!(logical, LogicalType::Decimal { .. });
            let texts: Vec<Option<&str>> = match array.data_type() {
                DataType::Utf8 => array.as_string::<i32>().iter().collect(),
                DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
                _ => array.as_string_view().iter().collect(),
            };
            out.extend(texts.into_iter().map(|t| {
                t.map(|s| {
                    if decimal {
                        trim_decimal(s)
                    } else {
                        s.to_string()
                    }
                })
            }));
        }
        DataType::Binary => each!(array.as_binary::<i32>(), |v| Some(hex(v))),
        DataType::LargeBinary => each!(array.as_binary::<i64>(), |v| Some(hex(v))),
        DataType::BinaryView => each!(array.as_binary_view(), |v| Some(hex(v))),
        DataType::FixedSizeBinary(_) => {
            let uuid = matches!(logical, LogicalType::Uuid);
            each!(array.as_fixed_size_binary(), |v| Some(if uuid {
                uuid_text(v)
            } else {
                hex(v)
            }))
        }
        DataType::Date32 => each!(array.as_primitive::<Date32Type>(), |v| {
            arrow::temporal_conversions::date32_to_datetime(v)
                .map(|d| d.format("%Y-%m-%d").to_string())
        }),
        DataType::Date64 => each!(array.as_primitive::<Date64Type>(), |v| {
            arrow::temporal_conversions::date64_to_datetime(v)
                .map(|d| d.format("%Y-%m-%d").to_string())
        }),
        DataType::Timestamp(unit, _) => {
            // The stored value is UTC for zoned timestamps and wall-clock time otherwise:
            // either way it is printed as is.
            let (mul, div) = match unit {
                TimeUnit::Second => (1_000_000, 1),
                TimeUnit::Millisecond => (1_000, 1),
                TimeUnit::Microsecond => (1, 1),
                TimeUnit::Nanosecond => (1, 1_000),
            };
            let a = arrow::compute::cast(array, &DataType::Int64)
                .map_err(|e| Error::data(format!("reading timestamps: {e}")))?;
            each!(a.as_primitive::<Int64Type>(), |v| micros_text(
                v.saturating_mul(mul).div_euclid(div),
                TS
            ))
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            each!(
                array.as_primitive::<Time64MicrosecondType>(),
                |v| time_text(v)
            )
        }
        DataType::Time64(_) => each!(array.as_primitive::<Time64NanosecondType>(), |v| {
            time_text(v.div_euclid(1_000))
        }),
        DataType::Time32(TimeUnit::Second) => {
            each!(array.as_primitive::<Time32SecondType>(), |v| time_text(
                i64::from(v) * 1_000_000
            ))
        }
        DataType::Time32(_) => each!(array.as_primitive::<Time32MillisecondType>(), |v| {
            time_text(i64::from(v) * 1_000)
        }),
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            each!(array.as_primitive::<IntervalMonthDayNanoType>(), |v| Some(
                interval_text(v.months, v.days, v.nanoseconds)
            ))
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            each!(array.as_primitive::<IntervalYearMonthType>(), |v| Some(
                interval_text(v, 0, 0)
            ))
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            each!(array.as_primitive::<IntervalDayTimeType>(), |v| Some(
                interval_text(0, v.days, i64::from(v.milliseconds) * 1_000_000)
            ))
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) | DataType::Decimal64(..) => {
            let opts = FormatOptions::default();
            let f = ArrayFormatter::try_new(array.as_ref(), &opts)
                .map_err(|e| Error::data(format!("formatting decimals: {e}")))?;
            for i in 0..n {
                out.push((!array.is_null(i)).then(|| trim_decimal(&f.value(i).to_string())));
            }
        }
        _ => {
            let opts = FormatOptions::default();
            let f = ArrayFormatter::try_new(array.as_ref(), &opts)
                .map_err(|e| Error::data(format!("formatting values: {e}")))?;
            for i in 0..n {
                out.push((!array.is_null(i)).then(|| f.value(i).to_string()));
            }
        }
    }
    Ok(out)
}

/// The key values of an integer column (`None` for NULL).
pub fn key_values(array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let a = arrow::compute::cast(array, &DataType::Int64).map_err(|e| {
        Error::data(format!(
            "key values do not fit a 64-bit integer: {e} (verify of a local side needs keys \
             between -2^63 and 2^63-1)"
        ))
    })?;
    let a = a.as_primitive::<Int64Type>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect())
}

/// The inverse of [`column_values`] for repair: an Arrow array of logical type `t` from the
/// source's repair texts (`hex`: the texts are the hex of binary values). Casts with
/// Arrow's parsers (integers, floats, decimals, dates, times, timestamps — naive ones in
/// the target's time zone, i.e. UTC); an unparsable value is an error naming it.
pub fn text_array(texts: &[Option<&str>], t: &LogicalType, hex: bool) -> Result<ArrayRef> {
    use arrow::array::{BinaryArray, BooleanArray, FixedSizeBinaryBuilder, StringArray};
    const HINT: &str = "the source value does not fit the target column's type; change the \
                        column's declared type, or run the job again to rewrite the table";
    let bad = |v: &str| Error::data(format!("cannot write {v:?} as {t}")).with_hint(HINT);
    let out: ArrayRef = match t {
        LogicalType::Bool => Arc::new(
            texts
                .iter()
                .map(|v| match v.map(str::to_ascii_lowercase).as_deref() {
                    None => Ok(None),
                    Some("1" | "t" | "true") => Ok(Some(true)),
                    Some("0" | "f" | "false") => Ok(Some(false)),
                    Some(other) => Err(bad(other)),
                })
                .collect::<Result<BooleanArray>>()?,
        ),
        LogicalType::Binary => {
            let bytes = texts
                .iter()
                .map(|v| match v {
                    None => Ok(None),
                    Some(v) if hex => from_hex(v).map(Some).ok_or_else(|| bad(v)),
                    Some(v) => Ok(Some(v.as_bytes().to_vec())),
                })
                .collect::<Result<Vec<_>>>()?;
            Arc::new(BinaryArray::from_iter(bytes))
        }
        LogicalType::Uuid => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(texts.len(), 16);
            for v in texts {
                match v {
                    None => b.append_null(),
                    Some(v) => {
                        let raw = from_hex(&v.replace('-', "")).filter(|r| r.len() == 16);
                        b.append_value(raw.ok_or_else(|| bad(v))?)
                            .map_err(|e| Error::internal(e.to_string()))?;
                    }
                }
            }
            Arc::new(b.finish())
        }
        LogicalType::Interval => {
            use arrow::array::IntervalMonthDayNanoArray;
            use arrow::datatypes::IntervalMonthDayNano;
            Arc::new(
                texts
                    .iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some(v) => parse_interval_text(v)
                            .map(|(m, d, n)| Some(IntervalMonthDayNano::new(m, d, n)))
                            .ok_or_else(|| bad(v)),
                    })
                    .collect::<Result<IntervalMonthDayNanoArray>>()?,
            )
        }
        // The repair text of an array is a JSON array (see `canonical_values`).
        LogicalType::Array(inner) => arrays::list_from_json(texts, inner, &bad)?,
        _ => {
            let strings: ArrayRef = Arc::new(StringArray::from_iter(texts.iter().copied()));
            let opts = arrow::compute::CastOptions {
                safe: false,
                ..Default::default()
            };
            let cast = |to: &DataType| {
                arrow::compute::cast_with_options(&strings, to, &opts).map_err(|e| {
                    Error::data(format!("cannot write a value as {t}: {e}")).with_hint(HINT)
                })
            };
            match t.arrow_type() {
                // Canonical zoned timestamps are UTC without an offset: parse them naive,
                // then label the same instants with the zone (Arrow cannot parse "UTC" as a
                // zone name without chrono-tz).
                DataType::Timestamp(unit, Some(tz)) => {
                    let naive = cast(&DataType::Timestamp(unit, None))?.to_data();
                    let zoned = naive
                        .into_builder()
                        .data_type(DataType::Timestamp(unit, Some(tz)))
                        .build()
                        .map_err(|e| Error::internal(format!("relabelling timestamps: {e}")))?;
                    arrow::array::make_array(zoned)
                }
                to => cast(&to)?,
            }
        }
    };
    Ok(out)
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The canonical row text: tokens `N`, `<value>` or, where counted, `<length>|<value>`,
/// joined by `|` (see [`crate::canon`]).
pub fn row_text(values: &[Option<&str>], forms: &[Form]) -> String {
    let mut s = String::new();
    for (i, (v, form)) in values.iter().zip(forms).enumerate() {
        if i > 0 {
            s.push('|');
        }
        match v {
            None => s.push('N'),
            Some(v) if form.counted => {
                let len = if form.padded {
                    v.chars().count()
                } else {
                    v.len()
                };
                s.push_str(&len.to_string());
                s.push('|');
                s.push_str(v);
            }
            Some(v) => s.push_str(v),
        }
    }
    s
}

/// The row hash: the first 15 hex digits (60 bits) of md5 of the row text.
pub fn row_hash(text: &str) -> u64 {
    let d = Md5::digest(text.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b) >> 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn floats_like_postgres_numeric() {
        assert_eq!(float_text(0.1 + 0.2, 15, false), "0.3");
        assert_eq!(float_text(1234.5, 15, false), "1234.5");
        assert_eq!(float_text(-0.00025, 15, false), "-0.00025");
        assert_eq!(float_text(1e20, 15, false), "100000000000000000000");
        assert_eq!(float_text(3.0, 15, false), "3");
        assert_eq!(float_text(f64::from(0.1f32), 6, true), "0.1");
        assert_eq!(float_text(0.0, 15, false), "0");
        assert_eq!(float_text(f64::NAN, 15, false), "NaN");
    }

    #[test]
    fn decimals_are_trimmed() {
        assert_eq!(trim_decimal("12.50"), "12.5");
        assert_eq!(trim_decimal("3.00"), "3");
        assert_eq!(trim_decimal("-0.00"), "0");
        assert_eq!(trim_decimal("100"), "100");
    }

    #[test]
    fn row_text_and_hash_match_the_sql_form() {
        let bare = Form::default();
        let counted = Form {
            counted: true,
            ..Form::default()
        };
        let t = row_text(
            &[Some("7"), None, Some(""), Some("a|b")],
            &[bare, counted, counted, counted],
        );
        assert_eq!(t, "7|N|0||3|a|b");
        // Lengths count UTF-8 bytes, as octet_length / LENGTH do; characters for char(n).
        assert_eq!(row_text(&[Some("é|")], &[counted]), "3|é|");
        let chars = Form {
            padded: true,
            ..counted
        };
        assert_eq!(row_text(&[Some("é|")], &[chars]), "2|é|");
        let full = hex(&Md5::digest(t.as_bytes()));
        assert_eq!(row_hash(&t), u64::from_str_radix(&full[..15], 16).unwrap());
    }

    #[test]
    fn repair_texts_become_arrays_that_read_back_alike() {
        let cases: Vec<(LogicalType, Vec<Option<&str>>, bool)> = vec![
            (
                LogicalType::Int64,
                vec![Some("7"), None, Some("-12")],
                false,
            ),
            (LogicalType::Bool, vec![Some("1"), Some("0"), None], false),
            (LogicalType::Binary, vec![Some("01ab"), None], true),
            (LogicalType::Date, vec![Some("2024-05-01")], false),
            (
                LogicalType::Decimal {
                    precision: Some(12),
                    scale: Some(3),
                },
                vec![Some("1.125"), Some("-3"), None],
                false,
            ),
            (
                LogicalType::Timestamp {
                    tz: true,
                    precision: sluice_core::types::Precision::Micros,
                },
                vec![Some("2024-05-01 13:45:00.250000")],
                false,
            ),
            (
                LogicalType::Uuid,
                vec![Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")],
                false,
            ),
        ];
        for (t, texts, hex) in cases {
            let a = text_array(&texts, &t, hex).unwrap();
            let back = column_values(&a, &t, true).unwrap();
            let want: Vec<Option<String>> = texts
                .iter()
                .map(|v| {
                    v.map(|v| match &t {
                        LogicalType::Decimal { .. } => trim_decimal(v),
                        _ => v.to_string(),
                    })
                })
                .collect();
            assert_eq!(back, want, "{t}");
        }
        assert!(text_array(&[Some("x")], &LogicalType::Int32, false).is_err());
        assert!(text_array(&[Some("0g")], &LogicalType::Binary, true).is_err());
        let e = text_array(&[Some("1 day")], &LogicalType::Interval, false).unwrap_err();
        assert!(
            e.hint().is_some_and(|h| h.contains("run the job again")),
            "{e:?}"
        );
    }

    #[test]
    fn temporal_and_binary_values() {
        let a: ArrayRef = Arc::new(arrow::array::Date32Array::from(vec![Some(19844), None]));
        assert_eq!(
            column_values(&a, &LogicalType::Date, false).unwrap(),
            vec![Some("2024-05-01".to_string()), None]
        );
        let a: ArrayRef = Arc::new(
            arrow::array::TimestampMicrosecondArray::from(vec![1_714_571_100_250_000])
                .with_timezone("UTC"),
        );
        let t = LogicalType::Timestamp {
            tz: true,
            precision: sluice_core::types::Precision::Micros,
        };
        assert_eq!(
            column_values(&a, &t, false).unwrap(),
            vec![Some("2024-05-01 13:45:00.250000".to_string())]
        );
        let a: ArrayRef = Arc::new(arrow::array::BinaryArray::from(vec![&b"\x01\xab"[..]]));
        assert_eq!(
            column_values(&a, &LogicalType::Binary, false).unwrap(),
            vec![Some("01ab".to_string())]
        );
    }

    #[test]
    fn intervals_in_postgres_iso_8601_style() {
        let s = 1_000_000_000i64;
        let cases = [
            (
                (14, 3, 4 * 3600 * s + 5 * 60 * s + 6 * s + s / 2),
                "P1Y2M3DT4H5M6.5S",
            ),
            ((0, -1, -2 * 3600 * s), "P-1DT-2H"),
            ((0, 0, 0), "PT0S"),
            ((0, 0, -s / 2), "PT-0.5S"),
            ((0, 0, -(3600 + 30 * 60) * s - s / 2), "PT-1H-30M-0.5S"),
            ((-14, 3, -1000), "P-1Y-2M3DT-0.000001S"),
            ((0, 0, 838 * 3600 * s), "PT838H"),
        ];
        for ((m, d, n), text) in cases {
            assert_eq!(interval_text(m, d, n), text);
            assert_eq!(parse_interval_text(text), Some((m, d, n)), "{text}");
        }
        assert_eq!(parse_interval_text("P1"), None);
    }
}
