//! PostgreSQL type ↔ logical type mapping. Pure: the catalog facts come in as [`PgType`].
//!
//! Read side ([`read_mapping`]): which logical type a column becomes, which binary decoder
//! reads it ([`Dec`]), and whether the `SELECT` casts it to `text` first (types without a
//! binary decoder: money, inet, xml, timetz, extension types …). Write side
//! ([`create_type`]): the column type `CREATE TABLE` uses for a field.

use arrow::datatypes::Field;
use sluice_core::types::{Precision, native_type};
use sluice_core::{Error, LogicalType, Result, TableId};

/// Built-in type OIDs this module knows.
pub(crate) mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const BIT: u32 = 1560;
    pub const VARBIT: u32 = 1562;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// What the catalog says about one column's type (domains resolved to their base type).
#[derive(Debug, Clone, PartialEq)]
pub struct PgType {
    /// Base type OID.
    pub oid: u32,
    /// Type modifier (-1 when none).
    pub typmod: i32,
    /// `format_type(oid, typmod)`, e.g. `character varying(44)`.
    pub format: String,
    /// `pg_type.typtype`: `b` base, `e` enum, `c` composite, `r` range, `p` pseudo, …
    pub typtype: char,
    /// Schema and name of the type (for enums).
    pub schema: String,
    pub name: String,
    /// Labels, for enums.
    pub labels: Vec<String>,
    /// The element type, for arrays.
    pub elem: Option<Box<PgType>>,
}

impl PgType {
    /// A built-in scalar type, for tests and the query reader.
    pub fn builtin(oid: u32, typmod: i32, format: &str) -> PgType {
        PgType {
            oid,
            typmod,
            format: format.to_string(),
            typtype: 'b',
            schema: "pg_catalog".into(),
            name: format.to_string(),
            labels: Vec::new(),
            elem: None,
        }
    }
}

/// A binary-COPY decoder for one column (see `copy_decode`).
#[derive(Debug, Clone, PartialEq)]
pub enum Dec {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    /// numeric(p,s) into Decimal128/256 (precision, scale); NaN/Infinity is a data error.
    Decimal(u8, i8),
    /// numeric into canonical text (unconstrained, p > 76, NaN, ±Infinity kept).
    NumericText,
    /// text, varchar, bpchar, name, enum labels, json, anything cast to `::text`.
    Text,
    /// jsonb: version byte then text.
    Jsonb,
    Bytea,
    Date,
    Time,
    Timestamp(bool),
    Interval,
    Uuid,
    /// bit / varbit as a string of '0'/'1'.
    Bits,
    /// One-dimensional array of the element decoder.
    List(Box<Dec>),
}

/// How a column is read: its logical type, its decoder, and the `SELECT` expression suffix.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadMapping {
    pub logical: LogicalType,
    pub dec: Dec,
    /// `Some("text")` / `Some("text[]")` when the column is selected as `col::text`.
    pub cast: Option<&'static str>,
    /// The native type to record (`None` when a same-engine sink should not use it).
    pub native: Option<String>,
}

/// The logical type, decoder and cast for a column of type `t`.
pub fn read_mapping(t: &PgType) -> ReadMapping {
    if let Some(elem) = &t.elem {
        let inner = scalar_mapping(elem);
        return match inner {
            Some((lt, dec)) if elem.typtype != 'e' => ReadMapping {
                logical: LogicalType::Array(Box::new(lt)),
                dec: Dec::List(Box::new(dec)),
                cast: None,
                native: Some(t.format.clone()),
            },
            _ => ReadMapping {
                logical: LogicalType::Array(Box::new(LogicalType::Text)),
                dec: Dec::List(Box::new(Dec::Text)),
                cast: Some("text[]"),
                // Arrays of enums come out as text[]: the sink would need the enum type.
                native: (elem.typtype != 'e' && t.schema == "pg_catalog").then(|| t.format.clone()),
            },
        };
    }
    if t.typtype == 'e' {
        return ReadMapping {
            logical: LogicalType::Enum(t.labels.clone()),
            dec: Dec::Text,
            cast: None,
            native: Some(format!(
                "enum:{}",
                TableId::new([t.schema.clone(), t.name.clone()])
            )),
        };
    }
    match scalar_mapping(t) {
        Some((logical, dec)) => ReadMapping {
            logical,
            dec,
            cast: None,
            native: Some(t.format.clone()),
        },
        None => ReadMapping {
            logical: LogicalType::Text,
            dec: Dec::Text,
            cast: Some("text"),
            // Built-in types (money, inet, xml …) are recreated as such; extension and user
            // types (citext, hstore, composites) become text in a new table.
            native: (t.schema == "pg_catalog").then(|| t.format.clone()),
        },
    }
}

fn scalar_mapping(t: &PgType) -> Option<(LogicalType, Dec)> {
    use LogicalType as L;
    if t.typtype == 'e' {
        return Some((L::Enum(t.labels.clone()), Dec::Text));
    }
    Some(match t.oid {
        oid::BOOL => (L::Bool, Dec::Bool),
        oid::INT2 => (L::Int16, Dec::I16),
        oid::INT4 => (L::Int32, Dec::I32),
        oid::INT8 => (L::Int64, Dec::I64),
        oid::FLOAT4 => (L::Float32, Dec::F32),
        oid::FLOAT8 => (L::Float64, Dec::F64),
        oid::NUMERIC => numeric_mapping(t.typmod),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => (L::Text, Dec::Text),
        oid::JSON => (L::Json, Dec::Text),
        oid::JSONB => (L::Json, Dec::Jsonb),
        oid::BYTEA => (L::Binary, Dec::Bytea),
        oid::DATE => (L::Date, Dec::Date),
        oid::TIME => (L::Time(Precision::Micros), Dec::Time),
        oid::TIMESTAMP => (
            L::Timestamp {
                tz: false,
                precision: Precision::Micros,
            },
            Dec::Timestamp(false),
        ),
        oid::TIMESTAMPTZ => (
            L::Timestamp {
                tz: true,
                precision: Precision::Micros,
            },
            Dec::Timestamp(true),
        ),
        oid::INTERVAL => (L::Interval, Dec::Interval),
        oid::UUID => (L::Uuid, Dec::Uuid),
        oid::BIT | oid::VARBIT => (L::Text, Dec::Bits),
        _ => return None,
    })
}

/// `numeric(p,s)` with p ≤ 76 → Decimal128/256; anything else → canonical text.
fn numeric_mapping(typmod: i32) -> (LogicalType, Dec) {
    if typmod >= 4 {
        let m = typmod - 4;
        let p = (m >> 16) & 0xffff;
        // The scale is an 11-bit signed field since PostgreSQL 15.
        let s = (((m & 0x7ff) ^ 1024) - 1024) as i16;
        if (1..=76).contains(&p) && (-128..=127).contains(&s) {
            let lt = LogicalType::Decimal {
                precision: Some(p as u16),
                scale: Some(s),
            };
            return (lt, Dec::Decimal(p as u8, s as i8));
        }
    }
    (
        LogicalType::Decimal {
            precision: None,
            scale: None,
        },
        Dec::NumericText,
    )
}

/// Quotes an identifier: `"a""b"`.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal: `'it''s'` (standard_conforming_strings is on since 9.1).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The column type `CREATE TABLE` uses for `field`: its PostgreSQL native type when it may
/// be written into DDL ([`native_ddl_type`]; an enum as `schema.type` of the target schema),
/// else mapped from the logical type. `Err(Schema)` names the column and type when
/// PostgreSQL cannot hold it.
pub fn create_type(field: &Field, target_schema: &str) -> Result<String> {
    if let Some(Ok(t)) = native_ddl_type(field, target_schema) {
        return Ok(t);
    }
    let lt = LogicalType::of_field(field)?;
    logical_to_pg(&lt).map_err(|e| e.context(format!("column {:?}", field.name())))
}

/// The PostgreSQL native type recorded for `field`, in a form safe to write into `CREATE
/// TABLE`: an enum (`enum:<schema>.<name>`, with enum labels in the logical type) as the
/// quoted name of the type in `target_schema`; anything else only when it is a plain type
/// name ([`sluice_core::types::is_type_name`]). `Some(Err(native))` when a native type is
/// recorded but refused: field metadata can come from a file, so it is never trusted as SQL.
/// `None` without a PostgreSQL native type.
pub fn native_ddl_type(
    field: &Field,
    target_schema: &str,
) -> Option<std::result::Result<String, String>> {
    let ("postgres", t) = native_type(field)? else {
        return None;
    };
    if let Some(name) = t.strip_prefix("enum:") {
        return Some(match (TableId::parse(name), LogicalType::of_field(field)) {
            (Ok(id), Ok(LogicalType::Enum(_))) => Ok(format!(
                "{}.{}",
                quote_ident(target_schema),
                quote_ident(id.name())
            )),
            _ => Err(t.to_string()),
        });
    }
    Some(if sluice_core::types::is_type_name(t) {
        Ok(t.to_string())
    } else {
        Err(t.to_string())
    })
}

/// The generation expression recorded for `field` by a PostgreSQL source, when it passes
/// [`is_one_expression`]; `Some(Err(expr))` when one is recorded but refused (the column is
/// then a plain column holding the source's values).
pub fn generated_def(field: &Field) -> Option<std::result::Result<&str, &str>> {
    let ("postgres", expr) = sluice_core::types::generated_expr(field)? else {
        return None;
    };
    Some(if is_one_expression(expr) {
        Ok(expr)
    } else {
        Err(expr)
    })
}

/// Whether `expr` is one balanced expression that cannot end the `GENERATED ALWAYS AS (…)`
/// it is written into: parentheses balanced outside quotes, `'…'` and `"…"` closed (quotes
/// doubled inside), and outside them no `;`, no comment (`--`, `/*`), no dollar quote (`$`)
/// and no `E'…'` string (whose backslash escapes this check does not follow).
pub fn is_one_expression(expr: &str) -> bool {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                if q == b'\''
                    && i > 0
                    && b[i - 1].eq_ignore_ascii_case(&b'e')
                    && (i < 2 || !ident(b[i - 2]))
                {
                    return false;
                }
                i += 1;
                loop {
                    match b.get(i) {
                        None => return false,
                        Some(&c) if c == q && b.get(i + 1) == Some(&q) => i += 2,
                        Some(&c) if c == q => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            b';' | b'$' => return false,
            b'-' if b.get(i + 1) == Some(&b'-') => return false,
            b'/' if b.get(i + 1) == Some(&b'*') => return false,
            _ => {}
        }
        i += 1;
    }
    depth == 0 && !expr.trim().is_empty()
}

/// A dollar-quote tag (`$sluice$`, `$sluice1$` …) that does not occur in `body`.
pub fn dollar_tag(body: &str) -> String {
    (0..)
        .map(|n| {
            if n == 0 {
                "$sluice$".to_string()
            } else {
                format!("$sluice{n}$")
            }
        })
        .find(|t| !body.contains(t.as_str()))
        .unwrap_or_default()
}

/// The PostgreSQL type for a logical type (no native type known).
pub fn logical_to_pg(lt: &LogicalType) -> Result<String> {
    use LogicalType as L;
    Ok(match lt {
        L::Bool => "boolean".into(),
        L::Int8 | L::Int16 | L::UInt8 => "smallint".into(),
        L::Int32 | L::UInt16 => "integer".into(),
        L::Int64 | L::UInt32 => "bigint".into(),
        L::UInt64 => "numeric(20,0)".into(),
        L::Float32 => "real".into(),
        L::Float64 => "double precision".into(),
        L::Decimal {
            precision: Some(p),
            scale,
        } => {
            let s = scale.unwrap_or(0);
            if *p > 1000 || !(-1000..=1000).contains(&s) {
                return Err(Error::schema(format!(
                    "type {lt} exceeds PostgreSQL's numeric limits"
                ))
                .with_hint("add a [[transform]] type = \"cast\" to decimal or text"));
            }
            format!("numeric({p},{s})")
        }
        L::Decimal {
            precision: None, ..
        } => "numeric".into(),
        L::Text | L::Enum(_) => "text".into(),
        L::Binary => "bytea".into(),
        L::Date => "date".into(),
        L::Time(_) => "time".into(),
        L::Timestamp { tz: false, .. } => "timestamp".into(),
        L::Timestamp { tz: true, .. } => "timestamptz".into(),
        L::Interval => "interval".into(),
        L::Uuid => "uuid".into(),
        L::Json => "json".into(),
        L::Array(inner) => {
            if matches!(**inner, L::Array(_)) {
                return Err(Error::schema(format!(
                    "type {lt}: PostgreSQL arrays of arrays are multi-dimensional and cannot hold \
                     ragged lists"
                ))
                .with_hint("add a [[transform]] type = \"cast\" to text (or json)"));
            }
            format!("{}[]", logical_to_pg(inner)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(p: i32, s: i32) -> PgType {
        PgType::builtin(oid::NUMERIC, ((p << 16) | (s & 0x7ff)) + 4, "numeric")
    }

    #[test]
    fn numerics_map_by_precision() {
        let m = read_mapping(&numeric(15, 2));
        assert_eq!(m.dec, Dec::Decimal(15, 2));
        assert_eq!(m.logical.to_string(), "decimal(15,2)");
        assert_eq!(read_mapping(&numeric(60, 10)).dec, Dec::Decimal(60, 10));
        assert_eq!(read_mapping(&numeric(100, 10)).dec, Dec::NumericText);
        assert_eq!(read_mapping(&numeric(5, -2)).dec, Dec::Decimal(5, -2));
        let un = read_mapping(&PgType::builtin(oid::NUMERIC, -1, "numeric"));
        assert_eq!(un.dec, Dec::NumericText);
        assert_eq!(un.logical.to_string(), "decimal");
    }

    #[test]
    fn unknown_types_are_cast_to_text() {
        let m = read_mapping(&PgType::builtin(869, -1, "inet"));
        assert_eq!(m.cast, Some("text"));
        assert_eq!(m.native.as_deref(), Some("inet"));
        let mut citext = PgType::builtin(99999, -1, "citext");
        citext.schema = "public".into();
        assert_eq!(read_mapping(&citext).native, None);
    }

    #[test]
    fn enums_and_arrays() {
        let mut e = PgType::builtin(90000, -1, "mood");
        e.typtype = 'e';
        e.schema = "My Schema".into();
        e.name = "mood".into();
        e.labels = vec!["sad".into(), "ok".into()];
        let m = read_mapping(&e);
        assert_eq!(m.native.as_deref(), Some("enum:\"My Schema\".mood"));
        assert_eq!(
            m.logical,
            LogicalType::Enum(vec!["sad".into(), "ok".into()])
        );
        let mut arr = PgType::builtin(1007, -1, "integer[]");
        arr.elem = Some(Box::new(PgType::builtin(oid::INT4, -1, "integer")));
        let m = read_mapping(&arr);
        assert_eq!(m.logical.to_string(), "array<int32>");
        assert_eq!(m.dec, Dec::List(Box::new(Dec::I32)));
    }

    #[test]
    fn logical_types_create_columns() {
        let f = LogicalType::UInt64.field("a", true);
        assert_eq!(create_type(&f, "public").unwrap(), "numeric(20,0)");
        let f = LogicalType::Array(Box::new(LogicalType::Text)).field("a", true);
        assert_eq!(create_type(&f, "public").unwrap(), "text[]");
        let f = sluice_core::types::with_native_type(
            LogicalType::Text.field("a", true),
            "postgres",
            "character varying(44)",
        );
        assert_eq!(create_type(&f, "public").unwrap(), "character varying(44)");
        let f = sluice_core::types::with_native_type(
            LogicalType::Enum(vec!["a".into()]).field("a", true),
            "postgres",
            "enum:public.\"My Enum\"",
        );
        assert_eq!(create_type(&f, "x").unwrap(), "\"x\".\"My Enum\"");
        // A native type that is not a type name falls back to the logical type's mapping.
        let f = sluice_core::types::with_native_type(
            LogicalType::Int32.field("a", true),
            "postgres",
            "integer); DROP TABLE victim; --",
        );
        assert_eq!(create_type(&f, "public").unwrap(), "integer");
        assert!(matches!(native_ddl_type(&f, "public"), Some(Err(_))));
        let f = sluice_core::types::with_native_type(
            LogicalType::Text.field("a", true),
            "postgres",
            "enum:public.mood",
        );
        assert_eq!(create_type(&f, "public").unwrap(), "text");
        let nested = LogicalType::Array(Box::new(LogicalType::Array(Box::new(LogicalType::Int32))));
        assert!(create_type(&nested.field("a", true), "public").is_err());
        assert_eq!(quote_ident("x\"; DROP"), "\"x\"\"; DROP\"");
    }

    #[test]
    fn generation_expressions_cannot_end_their_clause() {
        for ok in [
            "(a * 2)",
            "((price * (qty)::numeric))",
            "upper((name)::text)",
            "('it''s'::text || \"Odd \"\"col\"\"\")",
            "date'2024-01-01'",
            "'a\\'",
        ] {
            assert!(is_one_expression(ok), "{ok}");
        }
        for bad in [
            "1) STORED); DROP TABLE victim; CREATE TABLE z (y int GENERATED ALWAYS AS (1",
            "1; DROP TABLE victim",
            "1 -- )",
            "1 /* ) */",
            "$$ ) $$",
            "E'x\\' ' ; DROP TABLE v; -- '",
            "'open",
            "(1",
            "",
        ] {
            assert!(!is_one_expression(bad), "{bad}");
        }
    }

    #[test]
    fn dollar_tags_avoid_the_body() {
        assert_eq!(dollar_tag("CREATE TYPE x AS ENUM ('a')"), "$sluice$");
        assert_eq!(dollar_tag("'x$sluice$'"), "$sluice1$");
        assert_eq!(dollar_tag("'$sluice$ $sluice1$'"), "$sluice2$");
    }
}
