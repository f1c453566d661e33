//! `cast`: changes column types, and the conversion function that `filter` and `add` reuse
//! to convert literals and results.
//!
//! Conversions follow Arrow's cast kernel (`safe` mode), except for the logical types Arrow
//! cannot tell apart from text or binary: uuid (text ↔ 16 bytes), json (text validated,
//! kept byte for byte), enum (text validated against the labels) and decimals stored as text
//! (validated as numbers). A value that cannot be converted is an error naming it; nulls
//! stay null and nullability is preserved.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::fmt::Write as _;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, RecordBatch, StringArray, StringBuilder,
    make_array,
};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::DataType;
use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Deserialize;
use sluice_core::schema::TablePattern;
use sluice_core::{BoundTransform, Error, LogicalType, Result, TableSchema, Transform};

use super::{applies, check_width, column_index, identity, make_batch};

/// Changes column types, e.g. text to `decimal(12,2)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CastConfig {
    /// Column → logical type (see `docs/types.md`), e.g.
    /// `{ amount = "decimal(12,2)", created = "timestamptz", id = "text" }`.
    pub columns: BTreeMap<String, LogicalType>,
    /// Only tables matching one of these patterns, e.g. `["orders"]`; default all.
    #[serde(default)]
    pub tables: Option<Vec<TablePattern>>,
}

impl CastConfig {
    pub(super) fn build(&self) -> Result<Arc<dyn Transform>> {
        if self.columns.is_empty() {
            return Err(Error::config("cast transform: `columns` is empty")
                .with_hint("write columns = { amount = \"decimal(12,2)\" }"));
        }
        Ok(Arc::new(self.clone()))
    }
}

impl Transform for CastConfig {
    fn name(&self) -> &str {
        "cast"
    }

    fn bind(&self, input: &TableSchema) -> Result<Box<dyn BoundTransform>> {
        if !applies(&self.tables, &input.id) {
            return Ok(identity(input));
        }
        let mut fields: Vec<Field> = input
            .arrow
            .fields()
            .iter()
            .map(|f| Field::clone(f))
            .collect();
        let mut casts = Vec::with_capacity(self.columns.len());
        for (name, to) in &self.columns {
            let i = column_index(input, "cast", name)?;
            let from = LogicalType::of_field(&fields[i])
                .map_err(|e| e.context(format!("cast transform: table {}", input.id)))?;
            if !can_convert(fields[i].data_type(), &from, to) {
                return Err(Error::config(format!(
                    "cast transform: table {}, column {name:?}: cannot cast {from} to {to}",
                    input.id
                ))
                .with_hint("cast to text first, or choose another type"));
            }
            if from != *to {
                casts.push(ColumnCast {
                    index: i,
                    name: name.clone(),
                    from,
                    to: to.clone(),
                });
            }
            let nullable = fields[i].is_nullable();
            fields[i] = to.field(name, nullable);
        }
        let arrow = Arc::new(Schema::new_with_metadata(
            fields,
            input.arrow.metadata().clone(),
        ));
        let output = TableSchema {
            id: input.id.clone(),
            arrow,
            primary_key: input.primary_key.clone(),
        };
        Ok(Box::new(BoundCast {
            input: input.clone(),
            output,
            casts,
        }))
    }
}

struct ColumnCast {
    index: usize,
    name: String,
    from: LogicalType,
    to: LogicalType,
}

struct BoundCast {
    input: TableSchema,
    output: TableSchema,
    casts: Vec<ColumnCast>,
}

impl BoundTransform for BoundCast {
    fn output(&self) -> &TableSchema {
        &self.output
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        check_width(&batch, &self.input, "cast")?;
        let mut columns = batch.columns().to_vec();
        for c in &self.casts {
            columns[c.index] = convert(&columns[c.index], &c.from, &c.to).map_err(|f| {
                f.into_error(&c.to).context(format!(
                    "cast transform: table {}, column {:?}",
                    self.input.id, c.name
                ))
            })?;
        }
        make_batch(&self.output.arrow, columns, batch.num_rows())
            .map_err(|e| e.context(format!("cast transform: table {}", self.input.id)))
    }
}

/// A value that could not be converted.
#[derive(Debug)]
pub(super) struct CastFailure {
    /// The value as written in messages: quoted for text, plain otherwise.
    pub value: String,
    /// Why, when more can be said than "cannot cast".
    pub reason: Option<String>,
}

impl CastFailure {
    pub(super) fn into_error(self, to: &LogicalType) -> Error {
        let why = self.reason.map(|r| format!(" ({r})")).unwrap_or_default();
        Error::data(format!("cannot cast {} to {to}{why}", self.value))
            .with_hint("fix the value at the source, or cast the column to text")
    }
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Whether values of `dt` (logical `from`) may be converted to `to` at all.
pub(super) fn can_convert(dt: &DataType, from: &LogicalType, to: &LogicalType) -> bool {
    if from == to {
        return true;
    }
    match (from, to) {
        (_, LogicalType::Uuid) => {
            is_text(dt)
                || matches!(
                    dt,
                    DataType::FixedSizeBinary(16) | DataType::Binary | DataType::LargeBinary
                )
        }
        (LogicalType::Uuid, t) => matches!(t, LogicalType::Text | LogicalType::Binary),
        (_, LogicalType::Json | LogicalType::Enum(_)) => can_cast_types(dt, &DataType::Utf8),
        _ => can_cast_types(dt, &to.arrow_type()),
    }
}

/// Converts `array` (logical type `from`) to logical type `to`, failing on the first value
/// that does not convert.
pub(super) fn convert(
    array: &ArrayRef,
    from: &LogicalType,
    to: &LogicalType,
) -> std::result::Result<ArrayRef, CastFailure> {
    if from == to && array.data_type() == &to.arrow_type() {
        return Ok(array.clone());
    }
    match to {
        LogicalType::Uuid => to_uuid(array),
        LogicalType::Json => {
            let text = to_text(array, from)?;
            validate_text(&text, |s| {
                serde_json::from_str::<serde::de::IgnoredAny>(s)
                    .err()
                    .map(|e| format!("invalid JSON: {e}"))
            })?;
            Ok(text)
        }
        LogicalType::Enum(labels) => {
            let text = to_text(array, from)?;
            validate_text(&text, |s| {
                (!labels.iter().any(|l| l == s)).then(|| "not one of the labels".to_string())
            })?;
            Ok(text)
        }
        LogicalType::Decimal { .. } if to.arrow_type() == DataType::Utf8 => {
            let text = to_text(array, from)?;
            if is_text(array.data_type()) {
                validate_text(&text, |s| {
                    (!is_decimal_text(s)).then(|| "not a number".into())
                })?;
            }
            Ok(text)
        }
        LogicalType::Text if *from == LogicalType::Uuid => uuid_to_text(array),
        LogicalType::Binary if array.data_type() == &DataType::FixedSizeBinary(16) => {
            arrow_cast(array, &DataType::Binary)
        }
        _ => arrow_cast(array, &to.arrow_type()),
    }
}

/// Arrow's cast in safe mode; a value that turned into null is the failure.
fn arrow_cast(array: &ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, CastFailure> {
    let out = cast_lenient(array.as_ref(), to, true).map_err(|e| CastFailure {
        value: format!("values of type {}", array.data_type()),
        reason: Some(e.to_string()),
    })?;
    if out.logical_null_count() != array.logical_null_count() {
        let first = (0..array.len()).find(|&i| array.is_valid(i) && out.is_null(i));
        if let Some(i) = first {
            return Err(CastFailure {
                value: render(array, i),
                reason: None,
            });
        }
    }
    Ok(out)
}

/// Arrow's cast, with time zones handled without Arrow's time-zone database (which this
/// build lacks, so Arrow cannot even parse `UTC`). Stored timestamps are UTC instants
/// whatever their label, so a label is dropped or added without changing values: text with
/// an explicit offset is converted to UTC, text without one is read as UTC, and a
/// `timestamptz` becomes text as `…Z`.
pub(super) fn cast_lenient(
    array: &dyn Array,
    to: &DataType,
    safe: bool,
) -> std::result::Result<ArrayRef, ArrowError> {
    let opts = CastOptions {
        safe,
        ..Default::default()
    };
    let from_tz = matches!(array.data_type(), DataType::Timestamp(_, Some(_)));
    match to {
        DataType::Timestamp(u, Some(_)) => {
            let naive = strip_tz(array)?;
            let out = cast_with_options(&naive, &DataType::Timestamp(*u, None), &opts)?;
            relabel(out.as_ref(), to.clone())
        }
        DataType::Timestamp(_, None) if from_tz => cast_with_options(&strip_tz(array)?, to, &opts),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if from_tz => {
            let naive = cast_with_options(&strip_tz(array)?, &DataType::Utf8, &opts)?;
            let naive = naive.as_string::<i32>();
            let mut b =
                StringBuilder::with_capacity(naive.len(), naive.value_data().len() + naive.len());
            for v in naive {
                match v {
                    Some(v) => {
                        // Writing to a String cannot fail.
                        let _ = write!(b, "{v}Z");
                        b.append_value("");
                    }
                    None => b.append_null(),
                }
            }
            let text: ArrayRef = Arc::new(b.finish());
            cast_with_options(&text, to, &opts)
        }
        _ => cast_with_options(array, to, &opts),
    }
}

/// The same values under another (layout-compatible) type.
fn relabel(a: &dyn Array, dt: DataType) -> std::result::Result<ArrayRef, ArrowError> {
    Ok(make_array(
        a.to_data().into_builder().data_type(dt).build()?,
    ))
}

fn strip_tz(a: &dyn Array) -> std::result::Result<ArrayRef, ArrowError> {
    match a.data_type() {
        DataType::Timestamp(u, Some(_)) => relabel(a, DataType::Timestamp(*u, None)),
        _ => Ok(make_array(a.to_data())),
    }
}

/// Value `i` of `array` for a message: text quoted, anything else as displayed; long values
/// shortened.
pub(super) fn render(array: &dyn Array, i: usize) -> String {
    let shown = ArrayFormatter::try_new(array, &FormatOptions::default())
        .map(|f| f.value(i).to_string())
        .unwrap_or_else(|_| "?".to_string());
    let short: String = shown.chars().take(60).collect();
    let short = if short.len() < shown.len() {
        format!("{short}…")
    } else {
        short
    };
    if is_text(array.data_type()) {
        format!("{short:?}")
    } else {
        short
    }
}

/// The array as Utf8 text (uuids formatted, everything else by Arrow's cast).
fn to_text(array: &ArrayRef, from: &LogicalType) -> std::result::Result<ArrayRef, CastFailure> {
    match array.data_type() {
        DataType::Utf8 => Ok(array.clone()),
        _ if *from == LogicalType::Uuid => uuid_to_text(array),
        _ => arrow_cast(array, &DataType::Utf8),
    }
}

/// Runs `check` on every non-null value of a Utf8 array; `Some(reason)` is a failure.
fn validate_text(
    text: &ArrayRef,
    check: impl Fn(&str) -> Option<String>,
) -> std::result::Result<(), CastFailure> {
    let Some(strings) = text.as_string_opt::<i32>() else {
        return Err(CastFailure {
            value: "a non-text value".into(),
            reason: None,
        });
    };
    for i in 0..strings.len() {
        if strings.is_valid(i)
            && let Some(reason) = check(strings.value(i))
        {
            return Err(CastFailure {
                value: render(strings, i),
                reason: Some(reason),
            });
        }
    }
    Ok(())
}

/// `-12.50`, `1e6`, `NaN`: what an unconstrained decimal stored as text may hold.
fn is_decimal_text(s: &str) -> bool {
    let s = s.trim();
    if s.eq_ignore_ascii_case("nan") {
        return true;
    }
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac) && exp_ok
}

/// Parses `0b0c5b9a-…` (canonical) or 32 hex digits.
pub(super) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    let hex: [u8; 32] = match b.len() {
        32 => b.try_into().ok()?,
        36 => {
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return None;
            }
            let mut h = [0u8; 32];
            let mut j = 0;
            for (i, &c) in b.iter().enumerate() {
                if ![8, 13, 18, 23].contains(&i) {
                    h[j] = c;
                    j += 1;
                }
            }
            h
        }
        _ => return None,
    };
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nibble(hex[2 * i])? << 4 | nibble(hex[2 * i + 1])?;
    }
    Some(out)
}

fn to_uuid(array: &ArrayRef) -> std::result::Result<ArrayRef, CastFailure> {
    let dt = array.data_type().clone();
    if dt == DataType::FixedSizeBinary(16) {
        return Ok(array.clone());
    }
    let mut b = FixedSizeBinaryBuilder::with_capacity(array.len(), 16);
    let append = |b: &mut FixedSizeBinaryBuilder, v: Option<[u8; 16]>, i: usize| match v {
        Some(u) => b.append_value(u).map_err(|e| CastFailure {
            value: render(array.as_ref(), i),
            reason: Some(e.to_string()),
        }),
        None => Err(CastFailure {
            value: render(array.as_ref(), i),
            reason: None,
        }),
    };
    if is_text(&dt) {
        let text = arrow_cast(array, &DataType::Utf8)?;
        let s = text.as_string::<i32>();
        for i in 0..s.len() {
            if s.is_null(i) {
                b.append_null();
            } else {
                append(&mut b, parse_uuid(s.value(i).trim()), i)?;
            }
        }
    } else {
        let bin = arrow_cast(array, &DataType::Binary)?;
        let s = bin.as_binary::<i32>();
        for i in 0..s.len() {
            if s.is_null(i) {
                b.append_null();
            } else {
                append(&mut b, s.value(i).try_into().ok(), i)?;
            }
        }
    }
    Ok(Arc::new(b.finish()))
}

fn uuid_to_text(array: &ArrayRef) -> std::result::Result<ArrayRef, CastFailure> {
    let Some(fsb) = array
        .as_fixed_size_binary_opt()
        .filter(|a| a.value_length() == 16)
    else {
        return Err(CastFailure {
            value: format!("values of type {}", array.data_type()),
            reason: None,
        });
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = StringBuilder::with_capacity(fsb.len(), fsb.len() * 36);
    let mut buf = [0u8; 36];
    for i in 0..fsb.len() {
        if fsb.is_null(i) {
            b.append_null();
            continue;
        }
        let mut j = 0;
        for (k, byte) in fsb.value(i).iter().enumerate() {
            if matches!(k, 4 | 6 | 8 | 10) {
                buf[j] = b'-';
                j += 1;
            }
            buf[j] = HEX[(byte >> 4) as usize];
            buf[j + 1] = HEX[(byte & 15) as usize];
            j += 2;
        }
        // Only ASCII hex digits and hyphens were written.
        b.append_value(std::str::from_utf8(&buf).unwrap_or_default());
    }
    Ok(Arc::new(b.finish()))
}

/// A one-element text array, for converting literals.
pub(super) fn text_scalar(s: &str) -> ArrayRef {
    Arc::new(StringArray::from(vec![s]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int64Array};
    use arrow::datatypes::{TimestampMicrosecondType, TimestampNanosecondType};

    fn t(s: &str) -> LogicalType {
        s.parse().unwrap()
    }

    fn text(v: Vec<Option<&str>>) -> ArrayRef {
        Arc::new(StringArray::from(v))
    }

    #[test]
    fn text_to_decimal_reports_first_bad_value() {
        let a = text(vec![Some("1.50"), None, Some("abc"), Some("x")]);
        let e = convert(&a, &LogicalType::Text, &t("decimal(12,2)")).unwrap_err();
        assert_eq!(e.value, "\"abc\"");
        let ok = convert(
            &text(vec![Some("1.5"), None]),
            &LogicalType::Text,
            &t("decimal(12,2)"),
        )
        .unwrap();
        let d = ok.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(d.value(0), 150);
        assert!(d.is_null(1));
    }

    #[test]
    fn overflowing_integers_fail() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 300]));
        let e = convert(&a, &LogicalType::Int64, &LogicalType::Int8).unwrap_err();
        assert_eq!(e.value, "300");
    }

    #[test]
    fn uuid_round_trip() {
        let a = text(vec![
            Some("0B0C5B9A-1F3E-4C6D-9E8F-0A1B2C3D4E5F"),
            None,
            Some("0b0c5b9a1f3e4c6d9e8f0a1b2c3d4e5f"),
        ]);
        let u = convert(&a, &LogicalType::Text, &LogicalType::Uuid).unwrap();
        assert_eq!(u.data_type(), &DataType::FixedSizeBinary(16));
        let back = convert(&u, &LogicalType::Uuid, &LogicalType::Text).unwrap();
        let s = back.as_string::<i32>();
        assert_eq!(s.value(0), "0b0c5b9a-1f3e-4c6d-9e8f-0a1b2c3d4e5f");
        assert!(s.is_null(1));
        assert_eq!(s.value(2), s.value(0));
        let e = convert(
            &text(vec![Some("nope")]),
            &LogicalType::Text,
            &LogicalType::Uuid,
        );
        assert_eq!(e.unwrap_err().value, "\"nope\"");
        assert!(parse_uuid("0b0c5b9a-1f3e-4c6d-9e8f0a1b2c3d4e5f-").is_none());
    }

    #[test]
    fn json_and_enum_validate_and_keep_text() {
        let a = text(vec![Some("{ \"a\": 1 }"), None]);
        let j = convert(&a, &LogicalType::Text, &LogicalType::Json).unwrap();
        assert_eq!(j.as_string::<i32>().value(0), "{ \"a\": 1 }");
        let e = convert(
            &text(vec![Some("{")]),
            &LogicalType::Text,
            &LogicalType::Json,
        );
        assert!(e.unwrap_err().reason.unwrap().contains("invalid JSON"));
        let en = t("enum('paid','shipped')");
        assert!(convert(&text(vec![Some("paid")]), &LogicalType::Text, &en).is_ok());
        let e = convert(&text(vec![Some("lost")]), &LogicalType::Text, &en).unwrap_err();
        assert_eq!(e.value, "\"lost\"");
    }

    #[test]
    fn timestamps_without_a_tz_database() {
        let a = text(vec![
            Some("2024-01-01T00:00:00Z"),
            Some("2024-01-01 02:00:00+02:00"),
            None,
        ]);
        let ts = convert(&a, &LogicalType::Text, &t("timestamptz")).unwrap();
        assert_eq!(ts.data_type(), &t("timestamptz").arrow_type());
        let v = ts.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(v.value(0), 1_704_067_200_000_000);
        assert_eq!(v.value(1), v.value(0));
        let naive = convert(&ts, &t("timestamptz"), &t("timestamp(9)")).unwrap();
        assert_eq!(
            naive.as_primitive::<TimestampNanosecondType>().value(0),
            1_704_067_200_000_000_000
        );
        let back = convert(&naive, &t("timestamp(9)"), &t("timestamptz")).unwrap();
        assert_eq!(
            back.as_primitive::<TimestampMicrosecondType>().value(0),
            v.value(0)
        );
        let txt = convert(&ts, &t("timestamptz"), &LogicalType::Text).unwrap();
        assert_eq!(txt.as_string::<i32>().value(0), "2024-01-01T00:00:00Z");
        let e = convert(
            &text(vec![Some("soon")]),
            &LogicalType::Text,
            &t("timestamptz"),
        );
        assert_eq!(e.unwrap_err().value, "\"soon\"");
    }

    #[test]
    fn decimal_text() {
        for ok in ["1", "-1.5", ".5", "1e10", "NaN", "+2.", "1E-3"] {
            assert!(is_decimal_text(ok), "{ok}");
        }
        for bad in ["", ".", "1.2.3", "e5", "1e", "abc", "1-2"] {
            assert!(!is_decimal_text(bad), "{bad}");
        }
    }
}
