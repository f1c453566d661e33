//! Text forms of the logical types that CSV and JSON Lines cannot carry natively.
//!
//! Reading: uuid, binary, interval, enum, json (CSV) and decimals beyond 76 digits are read
//! as text by the format's own decoder and converted here, column at a time, with errors
//! naming the line. Writing: uuid becomes canonical `8-4-4-4-12` text, binary becomes
//! lowercase hex, intervals and (for CSV) lists and structs become their Arrow display text.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, FixedSizeBinaryBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use sluice_core::types::TYPE_KEY;
use sluice_core::{Error, LogicalType, Result};

/// How a column read as text becomes its logical type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TextConv {
    /// The decoder produces the final type.
    Native,
    /// `8-4-4-4-12` (or 32 hex digits, braces allowed) → FixedSizeBinary(16).
    Uuid,
    /// Hex (optionally `\x` / `0x` prefixed) → Binary.
    Hex,
    /// Text that must be a JSON document.
    Json,
    /// Text that must be one of these labels.
    Enum(Vec<String>),
    /// Text that must be a decimal number (kept as canonical text).
    BigDecimal,
    /// Arrow's cast from text (intervals).
    Cast(DataType),
    /// Decoded with a `+00:00` offset (Arrow parses offsets without a time-zone database);
    /// relabelled to this type (`UTC`).
    Relabel(DataType),
}

/// The field a text decoder should produce for `field`, and how to convert it afterwards.
/// `json_native`: the decoder itself turns JSON values into json text (JSON Lines).
pub(crate) fn read_plan(field: &Field, json_native: bool) -> Result<(Field, TextConv)> {
    let lt = LogicalType::of_field(field)?;
    let text = || Field::new(field.name(), DataType::Utf8, true);
    Ok(match lt {
        LogicalType::Uuid => (text(), TextConv::Uuid),
        LogicalType::Binary => (text(), TextConv::Hex),
        LogicalType::Json if json_native => (field.clone(), TextConv::Native),
        LogicalType::Json => (text(), TextConv::Json),
        LogicalType::Enum(labels) => (text(), TextConv::Enum(labels)),
        LogicalType::Decimal { .. } if field.data_type() == &DataType::Utf8 => {
            (text(), TextConv::BigDecimal)
        }
        LogicalType::Interval => (text(), TextConv::Cast(field.data_type().clone())),
        _ => match field.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                let offset = DataType::Timestamp(*unit, Some("+00:00".into()));
                (
                    Field::new(field.name(), offset, field.is_nullable()),
                    TextConv::Relabel(field.data_type().clone()),
                )
            }
            _ => (field.clone(), TextConv::Native),
        },
    })
}

/// Converts the text columns of a decoded batch into the final schema. `line_of(row)` gives
/// the line number of a row for messages; `what` names the file.
pub(crate) fn apply(
    decoded: RecordBatch,
    schema: &SchemaRef,
    convs: &[TextConv],
    what: &str,
    line_of: &dyn Fn(usize) -> u64,
) -> Result<RecordBatch> {
    if convs.iter().all(|c| *c == TextConv::Native) {
        return RecordBatch::try_new(schema.clone(), decoded.columns().to_vec())
            .map_err(|e| Error::internal(format!("{what}: {e}")));
    }
    let mut cols = Vec::with_capacity(convs.len());
    for (i, conv) in convs.iter().enumerate() {
        let col = decoded.column(i);
        let field = schema.field(i);
        let bad = |row: usize, value: &str, why: &str| {
            Error::data(format!(
                "{what}: line {}, column {:?}: cannot read {value:?} as {}{why}",
                line_of(row),
                field.name(),
                LogicalType::of_field(field)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            ))
            .with_hint(format!(
                "fix the data, or read the column as text with schema = {{ {} = \"text\" }}",
                field.name()
            ))
        };
        let out: ArrayRef = match conv {
            TextConv::Native => col.clone(),
            TextConv::Uuid => {
                let s = col.as_string::<i32>();
                let mut b = FixedSizeBinaryBuilder::with_capacity(s.len(), 16);
                for (row, v) in s.iter().enumerate() {
                    match v {
                        None => b.append_null(),
                        Some(v) => match parse_uuid(v) {
                            Some(bytes) => b.append_value(bytes).map_err(Error::from)?,
                            None => return Err(bad(row, v, "")),
                        },
                    }
                }
                Arc::new(b.finish())
            }
            TextConv::Hex => {
                let s = col.as_string::<i32>();
                let mut vals: Vec<Option<Vec<u8>>> = Vec::with_capacity(s.len());
                for (row, v) in s.iter().enumerate() {
                    vals.push(match v {
                        None => None,
                        Some(v) => Some(parse_hex(v).ok_or_else(|| {
                            bad(row, v, " (binary is written as hex, e.g. 00ff10)")
                        })?),
                    });
                }
                Arc::new(BinaryArray::from_iter(vals))
            }
            TextConv::Json => {
                let s = col.as_string::<i32>();
                for (row, v) in s.iter().enumerate() {
                    if let Some(v) = v
                        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(v)
                    {
                        return Err(bad(row, v, &format!(": {e}")));
                    }
                }
                col.clone()
            }
            TextConv::Enum(labels) => {
                let s = col.as_string::<i32>();
                for (row, v) in s.iter().enumerate() {
                    if let Some(v) = v
                        && !labels.iter().any(|l| l == v)
                    {
                        return Err(bad(row, v, ""));
                    }
                }
                col.clone()
            }
            TextConv::BigDecimal => {
                let s = col.as_string::<i32>();
                for (row, v) in s.iter().enumerate() {
                    if let Some(v) = v
                        && !is_decimal_text(v)
                    {
                        return Err(bad(row, v, ""));
                    }
                }
                col.clone()
            }
            TextConv::Relabel(dt) => {
                let data = col.to_data().into_builder().data_type(dt.clone()).build();
                arrow::array::make_array(data.map_err(Error::from)?)
            }
            TextConv::Cast(dt) => {
                let out = arrow::compute::cast(col, dt).map_err(Error::from)?;
                if out.null_count() > col.null_count() {
                    let s = col.as_string::<i32>();
                    let row = (0..s.len())
                        .find(|&r| s.is_valid(r) && out.is_null(r))
                        .unwrap_or(0);
                    return Err(bad(row, s.value(row), ""));
                }
                out
            }
        };
        cols.push(out);
    }
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::internal(format!("{what}: {e}")))
}

/// Parses a uuid: 32 hex digits, optionally hyphenated and in braces.
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut hi: Option<u8> = None;
    for c in s.bytes() {
        if c == b'-' {
            continue;
        }
        let d = (c as char).to_digit(16)? as u8;
        match hi.take() {
            None => hi = Some(d),
            Some(h) => {
                *out.get_mut(n)? = h << 4 | d;
                n += 1;
            }
        }
    }
    (n == 16 && hi.is_none() && (s.len() == 32 || s.len() == 36)).then_some(out)
}

/// The canonical `8-4-4-4-12` form of a uuid.
pub(crate) fn format_uuid(b: &[u8], out: &mut String) {
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s
        .strip_prefix("\\x")
        .or_else(|| s.strip_prefix("0x"))
        .unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let h = (p[0] as char).to_digit(16)?;
            let l = (p[1] as char).to_digit(16)?;
            Some((h * 16 + l) as u8)
        })
        .collect()
}

fn is_decimal_text(s: &str) -> bool {
    let t = s.trim();
    if t.eq_ignore_ascii_case("nan") {
        return true;
    }
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac) && exp_ok
}

fn to_hex(col: &dyn Array) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(col.len(), col.len() * 8);
    let mut buf = String::new();
    let mut push = |v: Option<&[u8]>| match v {
        None => b.append_null(),
        Some(bytes) => {
            buf.clear();
            for x in bytes {
                let _ = write!(buf, "{x:02x}");
            }
            b.append_value(&buf);
        }
    };
    match col.data_type() {
        DataType::Binary => col.as_binary::<i32>().iter().for_each(&mut push),
        DataType::LargeBinary => col.as_binary::<i64>().iter().for_each(&mut push),
        DataType::BinaryView => col.as_binary_view().iter().for_each(&mut push),
        DataType::FixedSizeBinary(_) => col.as_fixed_size_binary().iter().for_each(&mut push),
        _ => {}
    }
    Arc::new(b.finish())
}

fn to_uuid_text(col: &dyn Array) -> ArrayRef {
    let a = col.as_fixed_size_binary();
    let mut b = StringBuilder::with_capacity(a.len(), a.len() * 36);
    let mut buf = String::with_capacity(36);
    for v in a.iter() {
        match v {
            None => b.append_null(),
            Some(bytes) => {
                buf.clear();
                format_uuid(bytes, &mut buf);
                b.append_value(&buf);
            }
        }
    }
    Arc::new(b.finish())
}

/// Rewrites the columns a text writer cannot write directly: uuid → text, binary → hex,
/// intervals (and for CSV lists, structs and maps) → display text. Returns the batch
/// unchanged (cheaply) when there is nothing to do.
pub(crate) fn for_text_output(batch: &RecordBatch, csv: bool) -> Result<RecordBatch> {
    let schema = batch.schema();
    let kind = |f: &Field| -> u8 {
        let is_uuid = f.metadata().get(TYPE_KEY).is_some_and(|t| t == "uuid");
        match f.data_type() {
            DataType::FixedSizeBinary(16) if is_uuid => 1,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => 2,
            DataType::Interval(_) | DataType::Duration(_) => 3,
            DataType::Timestamp(_, Some(tz)) if !tz.starts_with(['+', '-']) => 4,
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
                if csv =>
            {
                3
            }
            _ => 0,
        }
    };
    if schema.fields().iter().all(|f| kind(f) == 0) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut cols = Vec::with_capacity(fields.capacity());
    for (f, col) in schema.fields().iter().zip(batch.columns()) {
        let k = kind(f);
        if k == 0 {
            fields.push(f.as_ref().clone());
            cols.push(col.clone());
            continue;
        }
        if let (4, DataType::Timestamp(unit, _)) = (k, f.data_type()) {
            // Instants are stored as UTC; Arrow formats offsets without a time-zone database.
            let dt = DataType::Timestamp(*unit, Some("+00:00".into()));
            let data = col.to_data().into_builder().data_type(dt.clone()).build()?;
            fields.push(Field::new(f.name(), dt, f.is_nullable()));
            cols.push(arrow::array::make_array(data));
            continue;
        }
        let out = match k {
            1 => to_uuid_text(col),
            2 => to_hex(col),
            _ => arrow::compute::cast(col, &DataType::Utf8).map_err(|e| {
                Error::schema(format!(
                    "column {:?}: cannot write {} as text: {e}",
                    f.name(),
                    f.data_type()
                ))
                .with_hint("convert the column with a cast transform, or write Parquet")
            })?,
        };
        fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
        cols.push(out);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::internal(format!("rewriting columns as text: {e}")))
}

/// `StringArray` helper for tests and callers that need an owned text column.
#[cfg(test)]
pub(crate) fn strings(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(arrow::array::StringArray::from(v.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_parse_and_format() {
        let u = parse_uuid("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        let mut s = String::new();
        format_uuid(&u, &mut s);
        assert_eq!(s, "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(parse_uuid("67E5504410B1426F9247BB680E5FE0C8"), Some(u));
        assert_eq!(
            parse_uuid("{67e55044-10b1-426f-9247-bb680e5fe0c8}"),
            Some(u)
        );
        assert_eq!(parse_uuid("67e55044-10b1-426f-9247-bb680e5fe0c"), None);
        assert_eq!(parse_uuid("zze55044-10b1-426f-9247-bb680e5fe0c8"), None);
    }

    #[test]
    fn hex_and_decimal_text() {
        assert_eq!(parse_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(parse_hex("\\x0A"), Some(vec![10]));
        assert_eq!(parse_hex("abc"), None);
        for ok in [
            "1",
            "-1.5",
            "+.5",
            "1e10",
            "1.2E-3",
            "NaN",
            "123456789012345678901234567890",
        ] {
            assert!(is_decimal_text(ok), "{ok}");
        }
        for bad in ["", ".", "1.2.3", "1e", "abc", "--1"] {
            assert!(!is_decimal_text(bad), "{bad}");
        }
    }

    #[test]
    fn apply_converts_and_names_the_line() {
        let schema = Arc::new(Schema::new(vec![LogicalType::Uuid.field("u", true)]));
        let (_, conv) = read_plan(schema.field(0), false).unwrap();
        let decoded = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("u", DataType::Utf8, true)])),
            vec![strings(&[
                Some("67e55044-10b1-426f-9247-bb680e5fe0c8"),
                None,
                Some("nope"),
            ])],
        )
        .unwrap();
        let e = apply(
            decoded.clone(),
            &schema,
            std::slice::from_ref(&conv),
            "f.csv",
            &|r| r as u64 + 2,
        )
        .unwrap_err();
        assert!(e.to_string().contains("f.csv: line 4, column \"u\""), "{e}");
        assert!(e.hint().unwrap().contains("text"));
        let ok = apply(decoded.slice(0, 2), &schema, &[conv], "f.csv", &|r| {
            r as u64
        })
        .unwrap();
        assert_eq!(ok.column(0).data_type(), &DataType::FixedSizeBinary(16));
        let text = for_text_output(&ok, true).unwrap();
        assert_eq!(
            text.column(0).as_string::<i32>().value(0),
            "67e55044-10b1-426f-9247-bb680e5fe0c8"
        );
    }
}
