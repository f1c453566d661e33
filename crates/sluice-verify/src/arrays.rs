//! Arrays compared element by element.
//!
//! Sluice writes a PostgreSQL array as a JSON array into MySQL/MariaDB and SQLite, and as a
//! list into Parquet, each sink with its own element forms, so no side's own text of an array
//! matches another's. The canonical value of an array is its element tokens joined by `|`
//! (see [`Elem`]); this module computes it in SQL for PostgreSQL (`unnest`) and MySQL
//! (`JSON_TABLE`), and in Rust for sides read locally (Arrow lists, or JSON text). For
//! repair, an array travels as a JSON array, which MySQL stores, the SQLite sink's encoder
//! takes as a list ([`list_from_json`]) and PostgreSQL rebuilds (`repair::literal`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use sluice_core::{Error, LogicalType, Result};

use crate::canon::{
    ColKind, Column, Dialect, Elem, ElemType, Form, my_float, my_trim_zeros, quote_ident,
    repair_expr, value_expr,
};
use crate::values::{column_values, float_text, row_text, text_array, trim_decimal, uuid_text};

/// PostgreSQL: an array column's canonical value (element tokens joined by `|`), or with
/// `json` the JSON array repair writes (integers and booleans as numbers, every other
/// element as a string of its canonical text, floats at full precision).
pub(crate) fn pg_array(c: &str, t: &ElemType, e: Elem, json: bool) -> String {
    let mut el = Column::new("__sluice_e", t.kind, "");
    el.type_name = t.type_name.clone();
    el.form.padded = e.padded;
    let x = quote_ident(Dialect::Postgres, &el.name);
    let (item, sep) = if json {
        let v = repair_expr(Dialect::Postgres, &el);
        let item = match t.kind {
            ColKind::Int | ColKind::Bool => v,
            _ => format!("to_json({v})::text"),
        };
        (
            format!("CASE WHEN {x} IS NULL THEN 'null' ELSE {item} END"),
            ',',
        )
    } else {
        let v = value_expr(Dialect::Postgres, &el);
        let tok = if e.counted() {
            let len = if e.padded { "length" } else { "octet_length" };
            format!("{len}({v}) || '|' || {v}")
        } else {
            v
        };
        (
            format!("CASE WHEN {x} IS NULL THEN 'N' ELSE {tok} END"),
            '|',
        )
    };
    let agg = format!(
        "(SELECT string_agg({item}, '{sep}' ORDER BY \"__sluice_i\") FROM unnest({c}) \
         WITH ORDINALITY AS \"__sluice_u\"({x}, \"__sluice_i\"))"
    );
    if json {
        format!("CASE WHEN {c} IS NOT NULL THEN '[' || coalesce({agg}, '') || ']' END")
    } else {
        format!("CASE WHEN {c} IS NOT NULL THEN coalesce({agg}, '') END")
    }
}

/// MySQL: the canonical value of a JSON array column (what Sluice writes for an array),
/// element by element through `JSON_TABLE`.
pub(crate) fn my_array(c: &str, e: Elem) -> String {
    let v = "`__sluice_jt`.`v`";
    let val = my_elem(v, e);
    let tok = if e.counted() {
        let len = if e.padded { "CHAR_LENGTH" } else { "LENGTH" };
        format!("CONCAT({len}({val}), '|', {val})")
    } else {
        val
    };
    // Text that is not a JSON array (JSON_TABLE would fail on it, or read an object as
    // empty) is its own value behind a `!`, which no element token starts with.
    format!(
        "IF({c} IS NULL, NULL, IF(IF(JSON_VALID({c}), JSON_TYPE({c}), '') = 'ARRAY', \
         COALESCE((SELECT GROUP_CONCAT(IF({v} IS NULL, 'N', {tok}) \
         ORDER BY `__sluice_jt`.`o` SEPARATOR '|') FROM JSON_TABLE(IF(JSON_VALID({c}), {c}, \
         '[]'), '$[*]' COLUMNS (`o` FOR ORDINALITY, \
         `v` LONGTEXT CHARACTER SET utf8mb4 PATH '$')) AS `__sluice_jt`), ''), \
         CONCAT('!', {c})))"
    )
}

/// MySQL: one JSON array element's text (`v`) in the canonical form of its kind.
fn my_elem(v: &str, e: Elem) -> String {
    match e.kind {
        ColKind::Bool => {
            format!("CASE {v} WHEN 'true' THEN '1' WHEN 'false' THEN '0' ELSE {v} END")
        }
        ColKind::Decimal => format!("IF({v} REGEXP '^-?0+([.]0*)?$', '0', {})", my_trim_zeros(v)),
        ColKind::Float8 => my_float(&format!("CAST({v} AS DOUBLE)"), 15),
        ColKind::Float4 => my_float(&format!("CAST({v} AS DOUBLE)"), 6),
        ColKind::Binary => format!("LOWER({v})"),
        ColKind::Text if e.uuid => format!(
            "IF(CHAR_LENGTH({v}) = 32, LOWER(CONCAT_WS('-', SUBSTR({v}, 1, 8), \
             SUBSTR({v}, 9, 4), SUBSTR({v}, 13, 4), SUBSTR({v}, 17, 4), SUBSTR({v}, 21))), \
             {v})"
        ),
        ColKind::Text if e.padded => format!("TRIM(TRAILING ' ' FROM {v})"),
        _ => v.to_string(),
    }
}

/// An array column: per row, the element tokens joined by `|` (see [`Elem`]), or with
/// `repair` a JSON array. Arrow lists are read element by element; text is read as a JSON
/// array (what a pre-created text column holding a copy of an array has).
pub(crate) fn array_values(
    array: &ArrayRef,
    logical: &LogicalType,
    e: Elem,
    repair: bool,
) -> Result<Vec<Option<String>>> {
    let n = array.len();
    let mut out = Vec::with_capacity(n);
    let list = |i: usize| match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().value(i)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(i)),
        DataType::FixedSizeList(..) => Some(array.as_fixed_size_list().value(i)),
        _ => None,
    };
    let is_list = matches!(
        array.data_type(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    );
    if is_list {
        let inner = match logical {
            LogicalType::Array(inner) => (**inner).clone(),
            _ => LogicalType::Text,
        };
        for i in 0..n {
            if array.is_null(i) {
                out.push(None);
                continue;
            }
            let Some(child) = list(i) else {
                out.push(None);
                continue;
            };
            let vals = column_values(&child, &inner, repair)?;
            let vals: Vec<Option<String>> = vals
                .into_iter()
                .map(|v| v.map(|v| elem_text(&v, e)))
                .collect();
            out.push(Some(if repair {
                json_array(&vals, e)
            } else {
                elem_tokens(&vals, e)
            }));
        }
        return Ok(out);
    }
    let texts: Vec<Option<String>> = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            column_values(array, &LogicalType::Text, false)?
        }
        _ => return column_values(array, logical, repair),
    };
    for t in texts {
        out.push(t.map(|t| {
            let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&t) else {
                // Not a JSON array: its own text behind a `!`, which no element token
                // starts with (as the SQL sides do).
                return format!("!{t}");
            };
            let vals: Vec<Option<String>> = items
                .iter()
                .map(|v| {
                    let text = match v {
                        serde_json::Value::Null => return None,
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                        other => other.to_string(),
                    };
                    Some(if repair {
                        text
                    } else {
                        json_elem_text(&text, e)
                    })
                })
                .collect();
            if repair {
                json_array(&vals, e)
            } else {
                elem_tokens(&vals, e)
            }
        }));
    }
    Ok(out)
}

/// An element read from an Arrow list: only the agreed normalizations apply (its value is
/// already canonical for its type).
fn elem_text(v: &str, e: Elem) -> String {
    if e.padded {
        v.trim_end_matches(' ').to_string()
    } else {
        v.to_string()
    }
}

/// An element read from JSON text, in the canonical form of its kind (as MySQL's side
/// computes it from the JSON array Sluice writes there).
fn json_elem_text(v: &str, e: Elem) -> String {
    match e.kind {
        ColKind::Bool => match v {
            "true" => "1".into(),
            "false" => "0".into(),
            other => other.into(),
        },
        ColKind::Decimal => trim_decimal(v),
        ColKind::Float8 | ColKind::Float4 => match v.parse::<f64>() {
            Ok(f) if e.kind == ColKind::Float8 => float_text(f, 15, false),
            Ok(f) => float_text(f, 6, true),
            Err(_) => v.into(),
        },
        ColKind::Binary => v.to_ascii_lowercase(),
        ColKind::Text if e.uuid && v.len() == 32 => uuid_text(
            &(0..16)
                .filter_map(|i| u8::from_str_radix(v.get(2 * i..2 * i + 2)?, 16).ok())
                .collect::<Vec<u8>>(),
        ),
        _ => elem_text(v, e),
    }
}

/// Element tokens joined by `|`: `N`, the value, or `<length>|<value>` for kinds that need
/// a length (in characters for `char(n)` elements).
fn elem_tokens(vals: &[Option<String>], e: Elem) -> String {
    let form = Form {
        counted: e.counted(),
        padded: e.padded,
        ..Form::default()
    };
    let refs: Vec<Option<&str>> = vals.iter().map(Option::as_deref).collect();
    row_text(&refs, &vec![form; refs.len()])
}

/// A JSON array of elements for repair: integers and booleans as numbers, everything else
/// as a string of its text.
fn json_array(vals: &[Option<String>], e: Elem) -> String {
    let items: Vec<serde_json::Value> = vals
        .iter()
        .map(|v| match v {
            None => serde_json::Value::Null,
            Some(v) if matches!(e.kind, ColKind::Int | ColKind::Bool) => {
                serde_json::from_str::<serde_json::Number>(v)
                    .map(serde_json::Value::Number)
                    .unwrap_or_else(|_| serde_json::Value::String(v.clone()))
            }
            Some(v) => serde_json::Value::String(v.clone()),
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// The SQLite repair of an array column: a list array of element type `inner` from JSON
/// array texts (integers, booleans, strings; binary elements as hex). A text that is not a
/// JSON array is an error made by `bad`.
pub(crate) fn list_from_json(
    texts: &[Option<&str>],
    inner: &LogicalType,
    bad: &dyn Fn(&str) -> Error,
) -> Result<ArrayRef> {
    use arrow::array::ListArray;
    use arrow::buffer::{NullBuffer, OffsetBuffer};
    let mut elems: Vec<Option<String>> = Vec::new();
    let mut lengths = Vec::with_capacity(texts.len());
    let mut valid = Vec::with_capacity(texts.len());
    for v in texts {
        let Some(v) = v else {
            lengths.push(0);
            valid.push(false);
            continue;
        };
        let Ok(serde_json::Value::Array(items)) = serde_json::from_str(v) else {
            return Err(bad(v));
        };
        lengths.push(items.len());
        valid.push(true);
        elems.extend(items.into_iter().map(|i| match i {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Bool(b) => Some(if b { "1" } else { "0" }.to_string()),
            other => Some(other.to_string()),
        }));
    }
    let refs: Vec<Option<&str>> = elems.iter().map(Option::as_deref).collect();
    let child = text_array(&refs, inner, *inner == LogicalType::Binary)?;
    let field = Arc::new(inner.field("item", true));
    let list = ListArray::try_new(
        field,
        OffsetBuffer::from_lengths(lengths),
        child,
        Some(NullBuffer::from(valid)),
    )
    .map_err(|e| Error::internal(format!("building a list: {e}")))?;
    Ok(Arc::new(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::canonical_values;

    #[test]
    fn arrays_element_by_element_from_lists_and_json() {
        use arrow::array::{Int32Builder, ListBuilder, StringBuilder};
        let int = Elem {
            kind: ColKind::Int,
            padded: false,
            uuid: false,
        };
        let form = Form {
            counted: true,
            elem: Some(int),
            ..Form::default()
        };
        let mut b = ListBuilder::new(Int32Builder::new());
        b.append_value([Some(1), None, Some(-3)]);
        b.append_null();
        b.append_value([]);
        let list: ArrayRef = Arc::new(b.finish());
        let t = LogicalType::Array(Box::new(LogicalType::Int32));
        let want = vec![Some("1|N|-3".to_string()), None, Some(String::new())];
        assert_eq!(canonical_values(&list, &t, &form, false).unwrap(), want);
        // The same values as the JSON text MySQL holds.
        let mut j = StringBuilder::new();
        j.append_value("[1,null,-3]");
        j.append_null();
        j.append_value("[]");
        let json: ArrayRef = Arc::new(j.finish());
        assert_eq!(
            canonical_values(&json, &LogicalType::Json, &form, false).unwrap(),
            want
        );
        // Repair: a JSON array that reads back as the same list.
        let repair = canonical_values(&list, &t, &form, true).unwrap();
        assert_eq!(repair[0].as_deref(), Some("[1,null,-3]"));
        let refs: Vec<Option<&str>> = repair.iter().map(Option::as_deref).collect();
        let back = text_array(&refs, &t, false).unwrap();
        assert_eq!(canonical_values(&back, &t, &form, false).unwrap(), want);
        // Text elements are counted; char(n) elements lose their padding; UUIDs get dashes.
        let text = Elem {
            kind: ColKind::Text,
            padded: true,
            uuid: true,
        };
        assert_eq!(json_elem_text("ab ", text), "ab");
        assert_eq!(
            json_elem_text("a0eebc999c0b4ef8bb6d6bb9bd380a11", text),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(elem_tokens(&[Some("é|".into()), None], text), "2|é||N");
        // Not an array: never equal to an array's text.
        let mut j = StringBuilder::new();
        j.append_value("{1,2}");
        let bad: ArrayRef = Arc::new(j.finish());
        assert_eq!(
            canonical_values(&bad, &LogicalType::Text, &form, false).unwrap(),
            vec![Some("!{1,2}".to_string())]
        );
    }
}
