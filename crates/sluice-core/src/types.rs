//! The logical type system and its Arrow representation.
//!
//! A [`LogicalType`] says what a column *means* (a `decimal(50,10)`, a `uuid`, a
//! `timestamptz`), independent of any database. Each logical type has one Arrow
//! representation ([`LogicalType::arrow_type`]). Where Arrow alone cannot tell the meaning
//! (json is Utf8, uuid is FixedSizeBinary(16), a decimal beyond 76 digits is Utf8), the field
//! carries the logical type in its metadata under [`TYPE_KEY`], so a schema that crosses the
//! engine is self-describing and a sink can create exactly the right column type.
//!
//! | logical | Arrow |
//! | --- | --- |
//! | `bool` | Boolean |
//! | `int8` … `int64`, `uint8` … `uint64` | Int8 … Int64, UInt8 … UInt64 |
//! | `float32`, `float64` (NaN, ±Infinity, -0 kept) | Float32, Float64 |
//! | `decimal(p,s)`, p ≤ 38 | Decimal128(p, s) |
//! | `decimal(p,s)`, 38 < p ≤ 76 | Decimal256(p, s) |
//! | `decimal(p,s)`, p > 76, and unconstrained `decimal` (also NaN) | Utf8, canonical text |
//! | `text`, `enum(...)`, `json` | Utf8 |
//! | `binary` | Binary |
//! | `date` | Date32 |
//! | `time` | Time64(µs) (or ns) |
//! | `timestamp` / `timestamptz` | Timestamp(µs or ns, None / "UTC") |
//! | `interval` | Interval(MonthDayNano) |
//! | `uuid` | FixedSizeBinary(16) |
//! | `array<T>` | List(T) |
//!
//! The textual form (`decimal(12,2)`, `array<int32>`, `enum('a','b')`) is what users write in
//! `schema` overrides and `cast` transforms, and what `docs/types.md` documents.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};

use crate::error::{Error, Result};

/// Field-metadata key that holds a column's logical type in its textual form.
pub const TYPE_KEY: &str = "sluice.type";

/// Field-metadata key that holds the column's type in its source system, as
/// `"<engine>:<type as the engine prints it>"`, e.g. `"postgres:character varying(44)"` or
/// `"mysql:int(10) unsigned"`. A sink of the same engine creates exactly that type, so
/// same-engine copies keep their column types; other sinks use the logical type.
pub const NATIVE_KEY: &str = "sluice.native";

/// The `(engine, type)` recorded under [`NATIVE_KEY`], if any.
pub fn native_type(field: &Field) -> Option<(&str, &str)> {
    field.metadata().get(NATIVE_KEY)?.split_once(':')
}

/// Words allowed after a type's name in [`is_type_name`]: the parts of PostgreSQL's and
/// MySQL's multi-word types (`double precision`, `character varying`, `timestamp(3) with time
/// zone`, `interval day to second`, `int(10) unsigned zerofill`).
const TYPE_WORDS: &[&str] = &[
    "precision",
    "varying",
    "with",
    "without",
    "time",
    "zone",
    "unsigned",
    "signed",
    "zerofill",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "to",
    "character",
    "char",
    "varchar",
];

/// Whether `t` is a plain column type name that may be written into `CREATE TABLE` as it is.
/// Native types travel in field metadata ([`NATIVE_KEY`]), which a file source reads back
/// from the file: a crafted file could otherwise put any SQL into the DDL. The grammar, case
/// insensitive:
///
/// ```text
/// type  := name ('.' name)? args? (word args?)* ('[' digits? ']')*
/// name  := identifier | '"' identifier-characters '"'
/// args  := '(' '-'? digits (',' '-'? digits)* ')'
/// word  := one of TYPE_WORDS (precision, varying, with, time, zone, unsigned, to, …)
/// ```
///
/// so `character varying(44)`, `timestamp(3) with time zone`, `numeric(5,-2)[]`,
/// `int(10) unsigned zerofill`, `"char"` and `public.citext` pass, while anything with quotes,
/// semicolons, comments, strings or other keywords (`int DEFAULT 1`, `int); DROP …`) does not.
/// Enum types (whose labels are strings) are re-quoted by each sink instead.
pub fn is_type_name(t: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok<'a> {
        Word(&'a str),
        Quoted,
        Num,
        Sym(u8),
    }
    let b = t.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c == b' ' {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            toks.push(Tok::Word(&t[start..i]));
        } else if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            toks.push(Tok::Num);
        } else if c == b'"' {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b' ') {
                i += 1;
            }
            if b.get(i) != Some(&b'"') || i == start + 1 {
                return false;
            }
            i += 1;
            toks.push(Tok::Quoted);
        } else if matches!(c, b'.' | b'(' | b')' | b',' | b'[' | b']') {
            i += 1;
            toks.push(Tok::Sym(c));
        } else {
            return false;
        }
    }
    let mut it = toks.into_iter().peekable();
    let name = |tok: Option<Tok<'_>>| matches!(tok, Some(Tok::Word(_) | Tok::Quoted));
    if !name(it.next()) {
        return false;
    }
    if it.next_if_eq(&Tok::Sym(b'.')).is_some() && !name(it.next()) {
        return false;
    }
    loop {
        if it.next_if_eq(&Tok::Sym(b'(')).is_some() {
            loop {
                if it.next() != Some(Tok::Num) {
                    return false;
                }
                match it.next() {
                    Some(Tok::Sym(b',')) => continue,
                    Some(Tok::Sym(b')')) => break,
                    _ => return false,
                }
            }
        }
        match it.peek() {
            Some(Tok::Word(w)) if TYPE_WORDS.iter().any(|k| k.eq_ignore_ascii_case(w)) => {
                it.next();
            }
            _ => break,
        }
    }
    while it.next_if_eq(&Tok::Sym(b'[')).is_some() {
        it.next_if_eq(&Tok::Num);
        if it.next() != Some(Tok::Sym(b']')) {
            return false;
        }
    }
    it.next().is_none()
}

/// `field` with its native type recorded under [`NATIVE_KEY`].
pub fn with_native_type(field: Field, engine: &str, native: &str) -> Field {
    let mut md = field.metadata().clone();
    md.insert(NATIVE_KEY.to_string(), format!("{engine}:{native}"));
    field.with_metadata(md)
}

/// Field-metadata key marking a column its source computes (a generated column), as
/// `"<engine>:<expression as the engine prints it>"`, e.g. `"postgres:(a * 2)"`. A sink of the
/// same engine may recreate the column as generated (the target then computes it and the
/// copied values are not written); other sinks create a plain column holding the source's
/// computed values.
pub const GENERATED_KEY: &str = "sluice.generated";

/// The `(engine, expression)` recorded under [`GENERATED_KEY`], if any.
pub fn generated_expr(field: &Field) -> Option<(&str, &str)> {
    field.metadata().get(GENERATED_KEY)?.split_once(':')
}

/// `field` marked as generated by `expr` in `engine` (see [`GENERATED_KEY`]).
pub fn with_generated(field: Field, engine: &str, expr: &str) -> Field {
    let mut md = field.metadata().clone();
    md.insert(GENERATED_KEY.to_string(), format!("{engine}:{expr}"));
    field.with_metadata(md)
}

/// Sub-second precision of times and timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Microseconds (PostgreSQL, MySQL `DATETIME(6)`): the default.
    Micros,
    /// Nanoseconds (Parquet, Arrow sources).
    Nanos,
}

/// What a column means, independent of any system. See the module docs for the Arrow form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogicalType {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    /// Exact decimal. `None` precision means unconstrained (PostgreSQL `numeric`).
    Decimal {
        precision: Option<u16>,
        scale: Option<i16>,
    },
    Text,
    Binary,
    Date,
    Time(Precision),
    /// A timestamp. `tz = true` is an instant (stored as UTC); `false` is a wall-clock value.
    Timestamp {
        tz: bool,
        precision: Precision,
    },
    Interval,
    Uuid,
    /// JSON document; the text is kept exactly as the source had it.
    Json,
    Array(Box<LogicalType>),
    /// One of a fixed set of labels.
    Enum(Vec<String>),
}

impl LogicalType {
    /// The Arrow type that carries values of this logical type.
    pub fn arrow_type(&self) -> DataType {
        use LogicalType as L;
        match self {
            L::Bool => DataType::Boolean,
            L::Int8 => DataType::Int8,
            L::Int16 => DataType::Int16,
            L::Int32 => DataType::Int32,
            L::Int64 => DataType::Int64,
            L::UInt8 => DataType::UInt8,
            L::UInt16 => DataType::UInt16,
            L::UInt32 => DataType::UInt32,
            L::UInt64 => DataType::UInt64,
            L::Float32 => DataType::Float32,
            L::Float64 => DataType::Float64,
            L::Decimal {
                precision: Some(p),
                scale,
            } if *p <= 76 => {
                let s = scale.unwrap_or(0).clamp(-128, 127) as i8;
                if *p <= 38 {
                    DataType::Decimal128(*p as u8, s)
                } else {
                    DataType::Decimal256(*p as u8, s)
                }
            }
            L::Decimal { .. } => DataType::Utf8,
            L::Text | L::Json | L::Enum(_) => DataType::Utf8,
            L::Binary => DataType::Binary,
            L::Date => DataType::Date32,
            L::Time(p) => DataType::Time64(time_unit(*p)),
            L::Timestamp { tz, precision } => {
                DataType::Timestamp(time_unit(*precision), tz.then(|| Arc::from("UTC")))
            }
            L::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            L::Uuid => DataType::FixedSizeBinary(16),
            L::Array(inner) => DataType::List(Arc::new(inner.field("item", true))),
        }
    }

    /// Whether the Arrow type alone does not identify this logical type, so the field needs
    /// [`TYPE_KEY`] metadata.
    pub fn needs_metadata(&self) -> bool {
        match self {
            LogicalType::Json | LogicalType::Uuid | LogicalType::Enum(_) => true,
            LogicalType::Decimal { precision, .. } => precision.is_none_or(|p| p > 76),
            LogicalType::Array(inner) => inner.needs_metadata(),
            _ => false,
        }
    }

    /// An Arrow field of this type, with metadata when the Arrow type is ambiguous.
    pub fn field(&self, name: &str, nullable: bool) -> Field {
        let f = Field::new(name, self.arrow_type(), nullable);
        if self.needs_metadata() {
            f.with_metadata(std::collections::HashMap::from([(
                TYPE_KEY.to_string(),
                self.to_string(),
            )]))
        } else {
            f
        }
    }

    /// The logical type of an Arrow field: its metadata if present, else derived from the
    /// Arrow type. Arrow types with no logical counterpart are an error naming the column.
    pub fn of_field(field: &Field) -> Result<LogicalType> {
        if let Some(t) = field.metadata().get(TYPE_KEY) {
            return t
                .parse()
                .map_err(|e: Error| e.context(format!("column {:?}", field.name())));
        }
        Self::from_arrow(field.data_type())
            .map_err(|e| e.context(format!("column {:?}", field.name())))
    }

    /// The logical type that an Arrow type naturally carries.
    pub fn from_arrow(dt: &DataType) -> Result<LogicalType> {
        use LogicalType as L;
        Ok(match dt {
            DataType::Boolean => L::Bool,
            DataType::Int8 => L::Int8,
            DataType::Int16 => L::Int16,
            DataType::Int32 => L::Int32,
            DataType::Int64 => L::Int64,
            DataType::UInt8 => L::UInt8,
            DataType::UInt16 => L::UInt16,
            DataType::UInt32 => L::UInt32,
            DataType::UInt64 => L::UInt64,
            DataType::Float16 | DataType::Float32 => L::Float32,
            DataType::Float64 => L::Float64,
            DataType::Decimal32(p, s)
            | DataType::Decimal64(p, s)
            | DataType::Decimal128(p, s)
            | DataType::Decimal256(p, s) => L::Decimal {
                precision: Some(*p as u16),
                scale: Some(*s as i16),
            },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => L::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => L::Binary,
            DataType::FixedSizeBinary(16) => L::Binary,
            DataType::FixedSizeBinary(_) => L::Binary,
            DataType::Date32 | DataType::Date64 => L::Date,
            DataType::Time32(_) => L::Time(Precision::Micros),
            DataType::Time64(u) => L::Time(precision_of(*u)),
            DataType::Timestamp(u, tz) => L::Timestamp {
                tz: tz.is_some(),
                precision: precision_of(*u),
            },
            DataType::Interval(_) | DataType::Duration(_) => L::Interval,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                L::Array(Box::new(Self::of_field(f)?))
            }
            DataType::Dictionary(_, v) => Self::from_arrow(v)?,
            DataType::Null => L::Text,
            other => {
                return Err(
                    Error::schema(format!("Arrow type {other} is not supported"))
                        .with_hint("cast the column to text with a cast transform"),
                );
            }
        })
    }
}

fn time_unit(p: Precision) -> TimeUnit {
    match p {
        Precision::Micros => TimeUnit::Microsecond,
        Precision::Nanos => TimeUnit::Nanosecond,
    }
}

fn precision_of(u: TimeUnit) -> Precision {
    match u {
        TimeUnit::Nanosecond => Precision::Nanos,
        _ => Precision::Micros,
    }
}

impl fmt::Display for LogicalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LogicalType as L;
        match self {
            L::Bool => f.write_str("bool"),
            L::Int8 => f.write_str("int8"),
            L::Int16 => f.write_str("int16"),
            L::Int32 => f.write_str("int32"),
            L::Int64 => f.write_str("int64"),
            L::UInt8 => f.write_str("uint8"),
            L::UInt16 => f.write_str("uint16"),
            L::UInt32 => f.write_str("uint32"),
            L::UInt64 => f.write_str("uint64"),
            L::Float32 => f.write_str("float32"),
            L::Float64 => f.write_str("float64"),
            L::Decimal {
                precision: None, ..
            } => f.write_str("decimal"),
            L::Decimal {
                precision: Some(p),
                scale,
            } => {
                write!(f, "decimal({p},{})", scale.unwrap_or(0))
            }
            L::Text => f.write_str("text"),
            L::Binary => f.write_str("binary"),
            L::Date => f.write_str("date"),
            L::Time(Precision::Micros) => f.write_str("time"),
            L::Time(Precision::Nanos) => f.write_str("time(9)"),
            L::Timestamp {
                tz: false,
                precision: Precision::Micros,
            } => f.write_str("timestamp"),
            L::Timestamp {
                tz: false,
                precision: Precision::Nanos,
            } => f.write_str("timestamp(9)"),
            L::Timestamp {
                tz: true,
                precision: Precision::Micros,
            } => f.write_str("timestamptz"),
            L::Timestamp {
                tz: true,
                precision: Precision::Nanos,
            } => f.write_str("timestamptz(9)"),
            L::Interval => f.write_str("interval"),
            L::Uuid => f.write_str("uuid"),
            L::Json => f.write_str("json"),
            L::Array(inner) => write!(f, "array<{inner}>"),
            L::Enum(labels) => {
                f.write_str("enum(")?;
                for (i, l) in labels.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "'{}'", l.replace('\'', "''"))?;
                }
                f.write_str(")")
            }
        }
    }
}

/// The type names accepted by [`LogicalType::from_str`], for error messages.
pub const ACCEPTED_TYPES: &str = "bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, \
float32, float64, decimal, decimal(P,S), text, binary, date, time, timestamp, timestamptz, \
interval, uuid, json, array<T>, enum('a','b')";

impl FromStr for LogicalType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        use LogicalType as L;
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let bad = || {
            Error::config(format!("unknown type {t:?}"))
                .with_hint(format!("accepted types: {ACCEPTED_TYPES}"))
        };
        if lower.starts_with("array<") && t.ends_with('>') {
            return Ok(L::Array(Box::new(t[6..t.len() - 1].parse()?)));
        }
        if lower.starts_with("enum(") && t.ends_with(')') {
            return parse_enum(&t[5..t.len() - 1]).ok_or_else(bad);
        }
        if let Some(args) = lower
            .strip_prefix("decimal(")
            .or_else(|| lower.strip_prefix("numeric("))
        {
            let args = args.strip_suffix(')').ok_or_else(bad)?;
            let mut it = args.split(',').map(str::trim);
            let p: u16 = it.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let sc: i16 = match it.next() {
                Some(x) => x.parse().map_err(|_| bad())?,
                None => 0,
            };
            if p == 0 || p > 1000 || it.next().is_some() || sc.unsigned_abs() > p {
                return Err(bad());
            }
            return Ok(L::Decimal {
                precision: Some(p),
                scale: Some(sc),
            });
        }
        Ok(match lower.as_str() {
            "bool" | "boolean" => L::Bool,
            "int8" | "tinyint" => L::Int8,
            "int16" | "smallint" => L::Int16,
            "int32" | "int" | "integer" => L::Int32,
            "int64" | "bigint" | "long" => L::Int64,
            "uint8" => L::UInt8,
            "uint16" => L::UInt16,
            "uint32" => L::UInt32,
            "uint64" => L::UInt64,
            "float32" | "float" | "real" => L::Float32,
            "float64" | "double" => L::Float64,
            "decimal" | "numeric" => L::Decimal {
                precision: None,
                scale: None,
            },
            "text" | "string" | "utf8" | "varchar" => L::Text,
            "binary" | "bytes" | "blob" => L::Binary,
            "date" => L::Date,
            "time" => L::Time(Precision::Micros),
            "time(9)" => L::Time(Precision::Nanos),
            "timestamp" => L::Timestamp {
                tz: false,
                precision: Precision::Micros,
            },
            "timestamp(9)" => L::Timestamp {
                tz: false,
                precision: Precision::Nanos,
            },
            "timestamptz" => L::Timestamp {
                tz: true,
                precision: Precision::Micros,
            },
            "timestamptz(9)" => L::Timestamp {
                tz: true,
                precision: Precision::Nanos,
            },
            "interval" => L::Interval,
            "uuid" => L::Uuid,
            "json" | "jsonb" => L::Json,
            _ => return Err(bad()),
        })
    }
}

/// Parses `'a','b''c'` into labels.
fn parse_enum(s: &str) -> Option<LogicalType> {
    let mut labels = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next()? != '\'' {
            return None;
        }
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                c => label.push(c),
            }
        }
        labels.push(label);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(LogicalType::Enum(labels)),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

impl serde::Serialize for LogicalType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LogicalType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e: Error| {
            let hint = e.hint().map(|h| format!("; {h}")).unwrap_or_default();
            serde::de::Error::custom(format!("{e}{hint}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_type() -> impl Strategy<Value = LogicalType> {
        use LogicalType as L;
        let leaf = prop_oneof![
            Just(L::Bool),
            Just(L::Int8),
            Just(L::Int64),
            Just(L::UInt64),
            Just(L::Float32),
            Just(L::Float64),
            (1u16..200, 0i16..20).prop_map(|(p, s)| L::Decimal {
                precision: Some(p),
                scale: Some(s.min(p as i16))
            }),
            Just(L::Decimal {
                precision: None,
                scale: None
            }),
            Just(L::Text),
            Just(L::Binary),
            Just(L::Date),
            Just(L::Time(Precision::Micros)),
            Just(L::Timestamp {
                tz: true,
                precision: Precision::Nanos
            }),
            Just(L::Timestamp {
                tz: false,
                precision: Precision::Micros
            }),
            Just(L::Interval),
            Just(L::Uuid),
            Just(L::Json),
            proptest::collection::vec("[a-z' ,]{0,5}", 1..4).prop_map(L::Enum),
        ];
        leaf.prop_recursive(2, 4, 1, |inner| inner.prop_map(|t| L::Array(Box::new(t))))
    }

    proptest! {
        #[test]
        fn text_form_round_trips(t in arb_type()) {
            let s = t.to_string();
            let back: LogicalType = s.parse().unwrap();
            prop_assert_eq!(back, t);
        }

        #[test]
        fn arrow_field_round_trips(t in arb_type()) {
            let f = t.field("c", true);
            let back = LogicalType::of_field(&f).unwrap();
            // Arrow has no distinct representation for some pairs; the metadata resolves them.
            prop_assert_eq!(back, t);
        }
    }

    #[test]
    fn wide_decimals_pick_the_right_arrow_type() {
        let d = |p| {
            LogicalType::Decimal {
                precision: Some(p),
                scale: Some(2),
            }
            .arrow_type()
        };
        assert_eq!(d(38), DataType::Decimal128(38, 2));
        assert_eq!(d(39), DataType::Decimal256(39, 2));
        assert_eq!(d(77), DataType::Utf8);
    }

    #[test]
    fn native_type_names_are_checked_before_they_reach_ddl() {
        for ok in [
            "integer",
            "character varying(44)",
            "character varying(44)[]",
            "timestamp(3) with time zone",
            "time without time zone[]",
            "double precision",
            "numeric(10,2)",
            "numeric(5,-2)",
            "interval day to second(3)",
            "bit varying(5)",
            "\"char\"",
            "public.citext",
            "int(10) unsigned zerofill",
            "decimal(65,30)",
            "tinyint(1)",
            "inet6",
            "integer[3][]",
        ] {
            assert!(is_type_name(ok), "{ok}");
        }
        for bad in [
            "",
            "int); DROP TABLE victim; --",
            "int DEFAULT 1",
            "int NOT NULL",
            "int CHECK (1)",
            "int REFERENCES victim",
            "int /* x */",
            "int -- x",
            "int # x",
            "enum('a','b')",
            "\"a\"\"b\"",
            "\"a\\\" b",
            "a.b.c",
            "int(1",
            "int(a)",
            "int()",
            "int[",
            "int\n",
            "int;",
            "numeric(1,2) precision(3) unsigned x",
            "integer$x$",
        ] {
            assert!(!is_type_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn unknown_type_lists_accepted() {
        let e = "intt".parse::<LogicalType>().unwrap_err();
        assert!(e.to_string().contains("intt"));
        assert!(e.hint().unwrap().contains("int32"));
    }
}
