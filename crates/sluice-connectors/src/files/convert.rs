//! Text forms of the logical types that CSV and JSON Lines cannot carry natively.
//!
//! Reading: uuid, binary, interval, enum, json (CSV) and decimals beyond 76 digits are read
//! as text by the format's own decoder and converted here, column at a time, with errors
//! naming the line. Writing, at any depth (list elements too): uuid becomes canonical
//! `8-4-4-4-12` text, binary lowercase hex, intervals their Arrow display text, instants
//! carry `+00:00`; for CSV a list becomes the text of a JSON array, a struct its display
//! text. JSON forms: json columns embedded, NaN and ±Infinity as strings.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, FixedSizeBinaryBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Float64Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::writer::{Encoder, EncoderFactory, EncoderOptions, NullableEncoder, make_encoder};
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
    /// A list (JSON Lines) whose elements are read as text and converted like this.
    List(Box<TextConv>),
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
        LogicalType::Array(_) if json_native => match field.data_type() {
            DataType::List(item) => match read_plan(item, json_native)? {
                (_, TextConv::Native) => (field.clone(), TextConv::Native),
                (decoded, conv) => (
                    Field::new(
                        field.name(),
                        DataType::List(Arc::new(decoded)),
                        field.is_nullable(),
                    ),
                    TextConv::List(Box::new(conv)),
                ),
            },
            _ => (field.clone(), TextConv::Native),
        },
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
        cols.push(convert(col, field, conv, &bad)?);
    }
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::internal(format!("{what}: {e}")))
}

/// The decoded column `col` converted to `target`'s type by `conv`; `bad(index, value, why)`
/// makes the error for the value at `index` of `col`.
fn convert(
    col: &ArrayRef,
    target: &Field,
    conv: &TextConv,
    bad: &dyn Fn(usize, &str, &str) -> Error,
) -> Result<ArrayRef> {
    Ok(match conv {
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
                    Some(v) => {
                        Some(parse_hex(v).ok_or_else(|| {
                            bad(row, v, " (binary is written as hex, e.g. 00ff10)")
                        })?)
                    }
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
        TextConv::List(inner) => {
            let (l, DataType::List(item)) = (col.as_list::<i32>(), target.data_type()) else {
                return Err(Error::internal(format!(
                    "column {:?}: a list read as {}",
                    target.name(),
                    col.data_type()
                )));
            };
            // Only the elements of these lists (a sliced list shares its values).
            let first = l.offsets()[0];
            let offsets: Vec<i32> = l.offsets().iter().map(|o| o - first).collect();
            let end = offsets.last().copied().unwrap_or(0) as usize;
            let values = l.values().slice(first as usize, end);
            // An element's row: the last list starting at or before it.
            let row_of = |e: usize| offsets.partition_point(|&o| o as usize <= e).max(1) - 1;
            let values = convert(&values, item, inner, &|e, v, why| bad(row_of(e), v, why))?;
            Arc::new(arrow::array::ListArray::try_new(
                item.clone(),
                arrow::buffer::OffsetBuffer::new(offsets.into()),
                values,
                l.nulls().cloned(),
            )?)
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
    })
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

/// Rewrites the columns a text writer cannot write directly, at any depth (the elements of
/// lists too): uuid → canonical text, binary → hex, intervals → display text, instants
/// relabelled `+00:00` (Arrow formats offsets without a time-zone database). For CSV, lists
/// become the text of a JSON array (elements as JSON Lines writes them) and structs and maps
/// their display text. Returns the batch unchanged (cheaply) when there is nothing to do.
pub(crate) fn for_text_output(batch: &RecordBatch, csv: bool) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut changed = false;
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut cols = Vec::with_capacity(fields.capacity());
    for (f, col) in schema.fields().iter().zip(batch.columns()) {
        match text_form(f, col, csv)? {
            Some((f, col)) => {
                changed = true;
                fields.push(Arc::new(f));
                cols.push(col);
            }
            None => {
                fields.push(f.clone());
                cols.push(col.clone());
            }
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::internal(format!("rewriting columns as text: {e}")))
}

/// Column `col` of field `f` in a form the text writers write exactly, or `None` when it
/// needs nothing (see [`for_text_output`]).
fn text_form(f: &Field, col: &ArrayRef, csv: bool) -> Result<Option<(Field, ArrayRef)>> {
    let is_uuid = f.metadata().get(TYPE_KEY).is_some_and(|t| t == "uuid");
    let text = |a: ArrayRef| Some((Field::new(f.name(), DataType::Utf8, f.is_nullable()), a));
    Ok(match f.data_type() {
        DataType::FixedSizeBinary(16) if is_uuid => text(to_uuid_text(col)),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => text(to_hex(col)),
        DataType::Interval(_) | DataType::Duration(_) => {
            text(arrow::compute::cast(col, &DataType::Utf8).map_err(|e| {
                Error::schema(format!(
                    "column {:?}: cannot write {} as text: {e}",
                    f.name(),
                    f.data_type()
                ))
                .with_hint("convert the column with a cast transform, or write Parquet")
            })?)
        }
        DataType::Timestamp(unit, Some(tz)) if !tz.starts_with(['+', '-']) => {
            let dt = DataType::Timestamp(*unit, Some("+00:00".into()));
            let data = col.to_data().into_builder().data_type(dt.clone()).build()?;
            Some((
                Field::new(f.name(), dt, f.is_nullable()),
                arrow::array::make_array(data),
            ))
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let list = list_text_form(f, col)?;
            if csv {
                let (f, col) = list.unwrap_or_else(|| (f.clone(), col.clone()));
                text(json_texts(&Arc::new(f), &col)?)
            } else {
                list
            }
        }
        DataType::Struct(_) | DataType::Map(..) if csv => {
            text(arrow::compute::cast(col, &DataType::Utf8).map_err(|e| {
                Error::schema(format!(
                    "column {:?}: cannot write {} as text: {e}",
                    f.name(),
                    f.data_type()
                ))
                .with_hint("convert the column with a cast transform, or write Parquet")
            })?)
        }
        _ => None,
    })
}

/// A list column with its elements in text form ([`text_form`] for JSON Lines), or `None`
/// when the elements need nothing.
fn list_text_form(f: &Field, col: &ArrayRef) -> Result<Option<(Field, ArrayRef)>> {
    use arrow::array::{FixedSizeListArray, LargeListArray, ListArray};
    let rebuilt = |item: &FieldRef, values: &ArrayRef| -> Result<Option<(FieldRef, ArrayRef)>> {
        // (An element that needs nothing keeps its field: a json element stays embedded JSON.)
        Ok(text_form(item, values, false)?.map(|(nf, nv)| (Arc::new(nf), nv)))
    };
    let out: Option<(DataType, ArrayRef)> = match f.data_type() {
        DataType::List(item) => {
            let l = col.as_list::<i32>();
            rebuilt(item, l.values())?.map(|(nf, nv)| {
                let a = ListArray::new(nf.clone(), l.offsets().clone(), nv, l.nulls().cloned());
                (DataType::List(nf), Arc::new(a) as ArrayRef)
            })
        }
        DataType::LargeList(item) => {
            let l = col.as_list::<i64>();
            rebuilt(item, l.values())?.map(|(nf, nv)| {
                let a =
                    LargeListArray::new(nf.clone(), l.offsets().clone(), nv, l.nulls().cloned());
                (DataType::LargeList(nf), Arc::new(a) as ArrayRef)
            })
        }
        DataType::FixedSizeList(item, n) => {
            let l = col.as_fixed_size_list();
            rebuilt(item, l.values())?.map(|(nf, nv)| {
                let a = FixedSizeListArray::new(nf.clone(), *n, nv, l.nulls().cloned());
                (DataType::FixedSizeList(nf, *n), Arc::new(a) as ArrayRef)
            })
        }
        _ => None,
    };
    Ok(out.map(|(dt, a)| (Field::new(f.name(), dt, f.is_nullable()), a)))
}

/// Each value of `col` as the text of its JSON form (NULL stays NULL), as JSON Lines writes it.
fn json_texts(f: &FieldRef, col: &ArrayRef) -> Result<ArrayRef> {
    let options = EncoderOptions::default()
        .with_explicit_nulls(true)
        .with_encoder_factory(Arc::new(JsonValues));
    let mut enc = make_encoder(f, col.as_ref(), &options)?;
    let mut b = StringBuilder::with_capacity(col.len(), col.len() * 16);
    let mut buf = Vec::new();
    for i in 0..col.len() {
        if enc.is_null(i) {
            b.append_null();
            continue;
        }
        buf.clear();
        enc.encode(i, &mut buf);
        b.append_value(String::from_utf8_lossy(&buf));
    }
    Ok(Arc::new(b.finish()))
}

/// JSON forms Arrow's writer does not give: `json` columns as embedded JSON values (not
/// strings), and NaN, Infinity and -Infinity as the strings `"NaN"`, `"Infinity"`,
/// `"-Infinity"` (Arrow writes them as `null`, which would lose them).
#[derive(Debug)]
pub(crate) struct JsonValues;

impl EncoderFactory for JsonValues {
    fn make_default_encoder<'a>(
        &self,
        field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> std::result::Result<Option<NullableEncoder<'a>>, ArrowError> {
        let nulls = array.nulls().cloned();
        Ok(Some(match array.data_type() {
            DataType::Utf8 if field.metadata().get(TYPE_KEY).is_some_and(|t| t == "json") => {
                NullableEncoder::new(Box::new(RawJson(array.as_string::<i32>())), nulls)
            }
            DataType::Float32 => NullableEncoder::new(
                Box::new(Floats(array.as_primitive::<Float32Type>().values().clone())),
                nulls,
            ),
            DataType::Float64 => NullableEncoder::new(
                Box::new(Floats(array.as_primitive::<Float64Type>().values().clone())),
                nulls,
            ),
            _ => return Ok(None),
        }))
    }
}

/// A json column's text as the JSON value it holds.
struct RawJson<'a>(&'a arrow::array::StringArray);

impl Encoder for RawJson<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let v = self.0.value(idx);
        let valid = serde_json::from_str::<serde::de::IgnoredAny>(v).is_ok();
        if valid && !v.contains(['\n', '\r']) {
            out.extend_from_slice(v.trim().as_bytes());
        } else if let Ok(value) = serde_json::from_str::<serde_json::Value>(v) {
            let _ = serde_json::to_writer(&mut *out, &value);
        } else {
            // Not JSON after all: keep the text as a JSON string.
            let _ = serde_json::to_writer(&mut *out, v);
        }
    }
}

/// Floats: finite values as numbers (the shortest text that reads back the same), the
/// others as strings.
struct Floats<T: arrow::datatypes::ArrowNativeType>(arrow::buffer::ScalarBuffer<T>);

impl<T: arrow::datatypes::ArrowNativeType + Into<f64> + std::fmt::Debug> Encoder for Floats<T> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let v = self.0[idx];
        let f: f64 = v.into();
        let _ = if f.is_nan() {
            write!(out, "\"NaN\"")
        } else if f.is_infinite() {
            write!(out, "\"{}Infinity\"", if f < 0.0 { "-" } else { "" })
        } else {
            write!(out, "{v:?}")
        };
    }
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

    #[test]
    fn special_floats_and_nested_instants_as_json() {
        use arrow::array::{Float64Array, ListBuilder, TimestampMicrosecondBuilder};
        let mut l = ListBuilder::new(TimestampMicrosecondBuilder::new().with_timezone("UTC"));
        l.values().append_value(1_500_000);
        l.append(true);
        l.append(false);
        let f: ArrayRef = Arc::new(Float64Array::from(vec![f64::NAN, f64::NEG_INFINITY]));
        let l: ArrayRef = Arc::new(l.finish());
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Float64, true),
            Field::new("l", l.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(schema, vec![f, l]).unwrap();
        let text_batch = for_text_output(&batch, false).unwrap();
        let mut out = Vec::new();
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_encoder_factory(Arc::new(JsonValues))
            .build::<_, arrow::json::writer::LineDelimited>(&mut out);
        w.write(&text_batch).unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"f\":\"NaN\",\"l\":[\"1970-01-01T00:00:01.500Z\"]}\n\
             {\"f\":\"-Infinity\",\"l\":null}\n"
        );
        // Read back as float64, the strings are the same values.
        let read_schema = Arc::new(Schema::new(vec![Field::new("f", DataType::Float64, true)]));
        let mut r = arrow::json::ReaderBuilder::new(read_schema)
            .build(std::io::Cursor::new(text))
            .unwrap();
        let back = r.next().unwrap().unwrap();
        let back = back.column(0).as_primitive::<Float64Type>();
        assert!(back.value(0).is_nan());
        assert_eq!(back.value(1), f64::NEG_INFINITY);
        // CSV: the list as the text of a JSON array.
        let csv = for_text_output(&batch, true).unwrap();
        assert_eq!(
            csv.column(1).as_string::<i32>().value(0),
            "[\"1970-01-01T00:00:01.500Z\"]"
        );
        assert!(csv.column(1).is_null(1));
    }

    #[test]
    fn list_elements_are_converted_and_a_bad_one_names_its_line() {
        use arrow::array::{ListBuilder, StringBuilder as Sb};
        let item = LogicalType::Array(Box::new(LogicalType::Uuid));
        let schema = Arc::new(Schema::new(vec![item.field("u", true)]));
        let (decoded_field, conv) = read_plan(schema.field(0), true).unwrap();
        assert!(matches!(conv, TextConv::List(_)));
        let mut b = ListBuilder::new(Sb::new());
        b.append(false);
        b.values()
            .append_value("67e55044-10b1-426f-9247-bb680e5fe0c8");
        b.values().append_null();
        b.append(true);
        b.append(true);
        b.values().append_value("nope");
        b.append(true);
        let list = b.finish();
        let decoded_schema = Arc::new(Schema::new(vec![decoded_field]));
        let DataType::List(decoded_item) = decoded_schema.field(0).data_type().clone() else {
            unreachable!()
        };
        let (_, offsets, values, nulls) = list.into_parts();
        let col: ArrayRef = Arc::new(
            arrow::array::ListArray::try_new(decoded_item, offsets, values, nulls).unwrap(),
        );
        let batch = RecordBatch::try_new(decoded_schema, vec![col]).unwrap();
        let e = apply(
            batch.clone(),
            &schema,
            std::slice::from_ref(&conv),
            "f.jsonl",
            &|r| r as u64 + 1,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("f.jsonl: line 4, column \"u\""),
            "{e}"
        );
        let ok = apply(batch.slice(0, 3), &schema, &[conv], "f.jsonl", &|r| {
            r as u64
        })
        .unwrap();
        let l = ok.column(0).as_list::<i32>();
        assert!(l.is_null(0));
        let mut s = String::new();
        format_uuid(l.value(1).as_fixed_size_binary().value(0), &mut s);
        assert_eq!(s, "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert!(l.value(1).is_null(1) && l.value(2).is_empty());
    }
}
