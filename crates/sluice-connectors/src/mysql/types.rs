//! MySQL/MariaDB column types ↔ Sluice logical types. Pure: no I/O.
//!
//! A column is described by its `COLUMN_TYPE` from `information_schema.columns`
//! (`int(10) unsigned`, `decimal(15,2)`, `enum('a','b')`). [`parse`] turns it into a
//! [`MysqlType`]: the logical type the source produces, and the [`Kind`] that decides how
//! values are decoded and encoded. [`target_type`] goes the other way for the sink: the native
//! type when the field came from MySQL, else the logical type's MySQL spelling.

use arrow::datatypes::Field;
use sluice_core::types::{native_type, with_native_type};
use sluice_core::{Error, LogicalType};

/// The engine name used in [`sluice_core::types::NATIVE_KEY`] metadata.
pub const ENGINE: &str = "mysql";

/// How values of a column travel (decode on read, encode for `LOAD DATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Signed integers (also `year`).
    Int,
    /// Unsigned integers.
    UInt,
    /// `year`: written with four digits (`0` as text would mean 2000).
    Year,
    /// `bit(n)`: an unsigned number (`b'1010'` is 10).
    Bit,
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// `decimal(p,s)`: exact, as text.
    Decimal,
    /// Character strings, `set`, `enum`, `json`, `inet6` …: text.
    Text,
    /// Byte strings and blobs.
    Binary,
    /// `date`.
    Date,
    /// `datetime(n)`: a wall-clock timestamp.
    DateTime,
    /// `timestamp(n)`: an instant, read and written in UTC.
    Timestamp,
    /// `time(n)`: a signed duration up to ±838:59:59.
    Time,
    /// MariaDB `uuid`.
    Uuid,
}

impl Kind {
    /// Whether zero dates (`0000-00-00`, `2024-00-10`) can occur.
    pub fn is_temporal(self) -> bool {
        matches!(self, Kind::Date | Kind::DateTime | Kind::Timestamp)
    }
}

/// A parsed MySQL column type.
#[derive(Debug, Clone, PartialEq)]
pub struct MysqlType {
    /// `COLUMN_TYPE` as the server prints it, e.g. `int(10) unsigned`.
    pub column_type: String,
    /// What the source produces.
    pub logical: LogicalType,
    /// How values travel.
    pub kind: Kind,
}

/// Splits `decimal(15,2) unsigned zerofill` into `("decimal", Some("15,2"), "unsigned zerofill")`.
fn split_type(t: &str) -> (String, Option<&str>, String) {
    let t = t.trim();
    let name_end = t.find(['(', ' ']).unwrap_or(t.len());
    let name = t[..name_end].to_ascii_lowercase();
    let rest = &t[name_end..];
    if let Some(r) = rest.strip_prefix('(') {
        // The argument list ends at the last ')' (enum labels may hold parentheses).
        if let Some(close) = r.rfind(')') {
            return (
                name,
                Some(&r[..close]),
                r[close + 1..].trim().to_ascii_lowercase(),
            );
        }
    }
    (name, None, rest.trim().to_ascii_lowercase())
}

/// Parses the labels of `enum('a','b''c')` / `set(...)` (MySQL doubles quotes inside).
pub fn parse_labels(args: &str) -> Option<Vec<String>> {
    let mut labels = Vec::new();
    let mut chars = args.chars().peekable();
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
                '\\' => label.push(chars.next()?),
                '\'' => break,
                c => label.push(c),
            }
        }
        labels.push(label);
        match chars.next() {
            None => return Some(labels),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

/// The MySQL spelling of enum labels: `enum('a','b''c')`.
pub fn enum_type(labels: &[String]) -> String {
    let quoted: Vec<String> = labels
        .iter()
        .map(|l| format!("'{}'", l.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    format!("enum({})", quoted.join(","))
}

/// Maps a `COLUMN_TYPE` to its logical type. `is_json` is true for MariaDB's JSON columns
/// (a `longtext` with a `json_valid` check). An unknown type is `Err(type)`.
pub fn parse(column_type: &str, is_json: bool) -> std::result::Result<MysqlType, String> {
    use LogicalType as L;
    let (name, args, attrs) = split_type(column_type);
    let unsigned = attrs.contains("unsigned");
    let int = |s: L, u: L| {
        if unsigned {
            (u, Kind::UInt)
        } else {
            (s, Kind::Int)
        }
    };
    let (logical, kind) = match name.as_str() {
        _ if is_json => (L::Json, Kind::Text),
        "tinyint" | "bool" | "boolean" => int(L::Int8, L::UInt8),
        "smallint" => int(L::Int16, L::UInt16),
        "mediumint" | "int" | "integer" => int(L::Int32, L::UInt32),
        "bigint" => int(L::Int64, L::UInt64),
        "year" => (L::Int16, Kind::Year),
        "bit" => (L::UInt64, Kind::Bit),
        "float" => (L::Float32, Kind::Float),
        "double" | "real" => (L::Float64, Kind::Double),
        "decimal" | "numeric" | "fixed" => {
            let (p, s) = match args {
                Some(a) => {
                    let mut it = a.split(',').map(|x| x.trim().parse::<u16>());
                    let p = it.next().and_then(|r| r.ok()).unwrap_or(10);
                    let s = it.next().and_then(|r| r.ok()).unwrap_or(0);
                    (p, s)
                }
                None => (10, 0),
            };
            (
                L::Decimal {
                    precision: Some(p),
                    scale: Some(s as i16),
                },
                Kind::Decimal,
            )
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "set" | "inet4"
        | "inet6" | "national" | "nchar" | "nvarchar" => (L::Text, Kind::Text),
        "json" => (L::Json, Kind::Text),
        "enum" => {
            let labels = args
                .and_then(parse_labels)
                .ok_or_else(|| column_type.to_string())?;
            (L::Enum(labels), Kind::Text)
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => (L::Binary, Kind::Binary),
        "date" => (L::Date, Kind::Date),
        "datetime" => (
            L::Timestamp {
                tz: false,
                precision: MICROS,
            },
            Kind::DateTime,
        ),
        "timestamp" => (
            L::Timestamp {
                tz: true,
                precision: MICROS,
            },
            Kind::Timestamp,
        ),
        "time" => (L::Interval, Kind::Time),
        "uuid" => (L::Uuid, Kind::Uuid),
        _ => return Err(column_type.to_string()),
    };
    Ok(MysqlType {
        column_type: column_type.to_string(),
        logical,
        kind,
    })
}

const MICROS: sluice_core::types::Precision = sluice_core::types::Precision::Micros;

/// The Arrow field of a source column: logical type plus native type.
pub fn field(name: &str, t: &MysqlType, nullable: bool) -> Field {
    let native = if t.logical == LogicalType::Json {
        "json"
    } else {
        &t.column_type
    };
    with_native_type(t.logical.field(name, nullable), ENGINE, native)
}

/// How a key column is declared when it must be indexable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Not part of the primary key.
    None,
    /// The only primary-key column.
    Single,
    /// One of several primary-key columns.
    Composite,
}

/// The MySQL type the sink declares for `field`: its native type when it came from MySQL,
/// else the logical type's spelling. `Err` says why the target cannot hold it (the caller
/// adds table, column and the cast hint).
pub fn target_type(field: &Field, key: KeyRole) -> std::result::Result<String, String> {
    if let Some((ENGINE, t)) = native_type(field) {
        return Ok(t.to_string());
    }
    let logical = LogicalType::of_field(field).map_err(|e| e.to_string())?;
    logical_to_mysql(&logical, key)
}

/// The MySQL spelling of a logical type. See `docs/connectors/mysql.md`.
pub fn logical_to_mysql(t: &LogicalType, key: KeyRole) -> std::result::Result<String, String> {
    use LogicalType as L;
    let text_len = |k: KeyRole| match k {
        KeyRole::None => None,
        KeyRole::Single => Some(768),
        KeyRole::Composite => Some(255),
    };
    Ok(match t {
        L::Bool => "tinyint(1)".into(),
        L::Int8 => "tinyint".into(),
        L::Int16 => "smallint".into(),
        L::Int32 => "int".into(),
        L::Int64 => "bigint".into(),
        L::UInt8 => "tinyint unsigned".into(),
        L::UInt16 => "smallint unsigned".into(),
        L::UInt32 => "int unsigned".into(),
        L::UInt64 => "bigint unsigned".into(),
        L::Float32 => "float".into(),
        L::Float64 => "double".into(),
        L::Decimal {
            precision: Some(p),
            scale,
        } => {
            let s = scale.unwrap_or(0);
            if *p <= 65 && (0..=30).contains(&s) && i32::from(s) <= i32::from(*p) {
                format!("decimal({p},{s})")
            } else {
                "decimal(65,30)".into()
            }
        }
        L::Decimal {
            precision: None, ..
        } => "decimal(65,30)".into(),
        L::Text => match text_len(key) {
            Some(n) => format!("varchar({n})"),
            None => "longtext".into(),
        },
        L::Binary => match text_len(key) {
            Some(n) => format!("varbinary({})", n * 4),
            None => "longblob".into(),
        },
        L::Date => "date".into(),
        L::Time(_) => "time(6)".into(),
        L::Timestamp { .. } => "datetime(6)".into(),
        L::Interval => {
            return Err("MySQL has no interval type (TIME holds only ±838:59:59)".into());
        }
        L::Uuid => "char(36)".into(),
        L::Json => {
            if key != KeyRole::None {
                return Err("a json column cannot be part of a MySQL primary key".into());
            }
            "json".into()
        }
        L::Array(_) => {
            if key != KeyRole::None {
                return Err("an array (json) column cannot be part of a MySQL primary key".into());
            }
            "json".into()
        }
        L::Enum(labels) => enum_type(labels),
    })
}

/// The error for a type the target cannot hold, with the cast override.
pub fn unsupported(table: &str, column: &str, ty: &str, why: &str) -> Error {
    Error::schema(format!(
        "table {table}, column {column:?}: type {ty} cannot be written to MySQL: {why}"
    ))
    .with_hint(format!(
        "cast it with [[transform]] type = \"cast\", columns = {{ {column:?} = \"text\" }}"
    ))
}

/// Whether a target column of type `target` can take values of the source field.
/// Identical native types always can; otherwise logical compatibility decides.
pub fn compatible(target: &MysqlType, source: &Field) -> bool {
    use LogicalType as L;
    if let Some((ENGINE, t)) = native_type(source)
        && t.eq_ignore_ascii_case(&target.column_type)
    {
        return true;
    }
    let Ok(src) = LogicalType::of_field(source) else {
        return false;
    };
    let tgt = &target.logical;
    if *tgt == src {
        return true;
    }
    let int_range = |t: &L| -> Option<(i128, i128)> {
        Some(match t {
            L::Bool => (0, 1),
            L::Int8 => (i8::MIN.into(), i8::MAX.into()),
            L::Int16 => (i16::MIN.into(), i16::MAX.into()),
            L::Int32 => (i32::MIN.into(), i32::MAX.into()),
            L::Int64 => (i64::MIN.into(), i64::MAX.into()),
            L::UInt8 => (0, u8::MAX.into()),
            L::UInt16 => (0, u16::MAX.into()),
            L::UInt32 => (0, u32::MAX.into()),
            L::UInt64 => (0, u64::MAX.into()),
            _ => return None,
        })
    };
    match (tgt, &src) {
        (t, s) if int_range(t).is_some() && int_range(s).is_some() => {
            let (tl, th) = int_range(t).unwrap_or_default();
            let (sl, sh) = int_range(s).unwrap_or_default();
            tl <= sl && sh <= th
        }
        (L::Float64, L::Float32) => true,
        (L::Float32 | L::Float64, s) => {
            int_range(s).is_some_and(|(l, h)| l >= -(1 << 24) && h <= 1 << 24)
        }
        (
            L::Decimal {
                precision: Some(tp),
                scale: ts,
            },
            L::Decimal {
                precision: Some(sp),
                scale: ss,
            },
        ) => {
            let (ts, ss) = (ts.unwrap_or(0), ss.unwrap_or(0));
            ts >= ss && i32::from(*tp) - i32::from(ts) >= i32::from(*sp) - i32::from(ss)
        }
        (
            L::Decimal {
                precision: Some(tp),
                scale: ts,
            },
            s,
        ) if int_range(s).is_some() => i32::from(*tp) - i32::from(ts.unwrap_or(0)) >= 20,
        (L::Text, L::Text | L::Enum(_) | L::Json | L::Uuid | L::Decimal { .. }) => true,
        (L::Json, L::Array(_) | L::Text) => true,
        (L::Enum(t), L::Enum(s)) => s.iter().all(|l| t.contains(l)),
        (L::Binary, L::Binary | L::Uuid) => true,
        (L::Timestamp { .. }, L::Timestamp { .. } | L::Date) => true,
        (L::Interval, L::Time(_) | L::Interval) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::types::Precision;

    fn lt(t: &str) -> LogicalType {
        parse(t, false).unwrap().logical
    }

    #[test]
    fn integers_signed_and_unsigned() {
        assert_eq!(lt("tinyint(4)"), LogicalType::Int8);
        assert_eq!(lt("tinyint(1)"), LogicalType::Int8);
        assert_eq!(lt("tinyint(3) unsigned"), LogicalType::UInt8);
        assert_eq!(lt("mediumint(8) unsigned zerofill"), LogicalType::UInt32);
        assert_eq!(lt("bigint(20) unsigned"), LogicalType::UInt64);
        assert_eq!(lt("int(11)"), LogicalType::Int32);
        assert_eq!(lt("year(4)"), LogicalType::Int16);
        assert_eq!(parse("bit(8)", false).unwrap().kind, Kind::Bit);
    }

    #[test]
    fn decimals_strings_and_times() {
        assert_eq!(
            lt("decimal(65,30)"),
            LogicalType::Decimal {
                precision: Some(65),
                scale: Some(30)
            }
        );
        assert_eq!(lt("varchar(44)"), LogicalType::Text);
        assert_eq!(lt("set('x','y')"), LogicalType::Text);
        assert_eq!(lt("longblob"), LogicalType::Binary);
        assert_eq!(
            lt("datetime(6)"),
            LogicalType::Timestamp {
                tz: false,
                precision: Precision::Micros
            }
        );
        assert_eq!(
            lt("timestamp(3)"),
            LogicalType::Timestamp {
                tz: true,
                precision: Precision::Micros
            }
        );
        assert_eq!(lt("time(6)"), LogicalType::Interval);
        assert_eq!(parse("longtext", true).unwrap().logical, LogicalType::Json);
        assert!(parse("vector(3)", false).is_err());
    }

    #[test]
    fn enum_labels_round_trip() {
        let t = lt("enum('a','b''c','d,e','f(g)')");
        let LogicalType::Enum(labels) = &t else {
            panic!("{t:?}")
        };
        assert_eq!(labels, &["a", "b'c", "d,e", "f(g)"]);
        assert_eq!(enum_type(labels), "enum('a','b''c','d,e','f(g)')");
    }

    #[test]
    fn logical_to_mysql_names() {
        use LogicalType as L;
        let m = |t: L| logical_to_mysql(&t, KeyRole::None).unwrap();
        assert_eq!(m(L::Bool), "tinyint(1)");
        assert_eq!(m(L::UInt64), "bigint unsigned");
        assert_eq!(
            m(L::Decimal {
                precision: Some(12),
                scale: Some(2)
            }),
            "decimal(12,2)"
        );
        assert_eq!(
            m(L::Decimal {
                precision: Some(100),
                scale: Some(2)
            }),
            "decimal(65,30)"
        );
        assert_eq!(
            m(L::Decimal {
                precision: None,
                scale: None
            }),
            "decimal(65,30)"
        );
        assert_eq!(m(L::Text), "longtext");
        assert_eq!(
            logical_to_mysql(&L::Text, KeyRole::Single).unwrap(),
            "varchar(768)"
        );
        assert_eq!(
            m(L::Timestamp {
                tz: true,
                precision: Precision::Nanos
            }),
            "datetime(6)"
        );
        assert_eq!(m(L::Array(Box::new(L::Int32))), "json");
        assert!(logical_to_mysql(&L::Interval, KeyRole::None).is_err());
        assert!(logical_to_mysql(&L::Json, KeyRole::Single).is_err());
    }

    #[test]
    fn native_type_wins() {
        let t = parse("int(10) unsigned", false).unwrap();
        let f = field("a", &t, true);
        assert_eq!(target_type(&f, KeyRole::None).unwrap(), "int(10) unsigned");
        let plain = LogicalType::UInt32.field("a", true);
        assert_eq!(target_type(&plain, KeyRole::None).unwrap(), "int unsigned");
        let json = field("j", &parse("longtext", true).unwrap(), true);
        assert_eq!(target_type(&json, KeyRole::None).unwrap(), "json");
    }

    #[test]
    fn compatibility() {
        let p = |t: &str| parse(t, false).unwrap();
        assert!(compatible(
            &p("bigint(20)"),
            &LogicalType::Int32.field("a", true)
        ));
        assert!(!compatible(
            &p("int(11)"),
            &LogicalType::Int64.field("a", true)
        ));
        assert!(!compatible(
            &p("int(11)"),
            &LogicalType::UInt32.field("a", true)
        ));
        assert!(compatible(
            &p("longtext"),
            &LogicalType::Text.field("a", true)
        ));
        assert!(!compatible(
            &p("int(11)"),
            &LogicalType::Text.field("a", true)
        ));
        assert!(compatible(
            &p("decimal(12,4)"),
            &LogicalType::Decimal {
                precision: Some(10),
                scale: Some(2)
            }
            .field("a", true)
        ));
    }
}
