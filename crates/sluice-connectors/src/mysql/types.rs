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
    /// Fractional-second digits kept by `datetime(n)`, `timestamp(n)`, `time(n)` (0 to 6);
    /// 6 for other types.
    pub fsp: u8,
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
    labels_type("enum", labels)
}

/// `enum(…)` or `set(…)` (`kind`) with each label quoted: `'` doubled, `\` escaped.
pub fn labels_type(kind: &str, labels: &[String]) -> String {
    let quoted: Vec<String> = labels
        .iter()
        .map(|l| format!("'{}'", l.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    format!("{kind}({})", quoted.join(","))
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
    let fsp = match kind {
        Kind::DateTime | Kind::Timestamp | Kind::Time => args
            .and_then(|a| a.trim().parse::<u8>().ok())
            .unwrap_or(0)
            .min(6),
        _ => 6,
    };
    Ok(MysqlType {
        column_type: column_type.to_string(),
        logical,
        kind,
        fsp,
    })
}

const MICROS: sluice_core::types::Precision = sluice_core::types::Precision::Micros;

/// Field metadata set by the MySQL source for a MySQL sink (same-engine copies): the
/// column's collation, e.g. `latin1_swedish_ci`.
pub const COLLATION_KEY: &str = "sluice.mysql.collation";
/// Field metadata: a generated column, `"VIRTUAL <expr>"` or `"STORED <expr>"`.
pub const GENERATED_KEY: &str = "sluice.mysql.generated";
/// Field metadata: the column is `AUTO_INCREMENT` (`"true"`).
pub const AUTO_INCREMENT_KEY: &str = "sluice.mysql.auto_increment";
/// Field metadata: zero dates of this column travel as [`zero_date_days`] /
/// [`zero_datetime_micros`] values (`"kept"`), for a MySQL sink to write back.
pub const ZERO_DATES_KEY: &str = "sluice.mysql.zero_dates";
/// Schema metadata: the table's storage engine, e.g. `MyISAM`.
pub const ENGINE_KEY: &str = "sluice.mysql.engine";
/// Schema metadata: the table's default collation, e.g. `utf8mb4_general_ci`.
pub const TABLE_COLLATION_KEY: &str = "sluice.mysql.collation";

/// The generated-column definition recorded for `field` ([`GENERATED_KEY`]): `(how, expr)`
/// with `how` `VIRTUAL` or `STORED`, when the expression passes [`is_one_expression`];
/// `Some(Err(text))` when one is recorded but refused (the column is then a plain column
/// holding the source's values). Metadata can come from a file: it is never trusted as SQL.
pub fn generated_def(field: &Field) -> Option<std::result::Result<(&str, &str), &str>> {
    let g = field.metadata().get(GENERATED_KEY)?;
    Some(match g.split_once(' ') {
        Some((how, expr)) if matches!(how, "VIRTUAL" | "STORED") && is_one_expression(expr) => {
            Ok((how, expr))
        }
        _ => Err(g.as_str()),
    })
}

/// Whether `name` can be written into SQL as an engine or collation name.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `expr` (a generation expression from metadata) is one balanced expression:
/// parentheses balanced outside quotes, quotes closed, and outside quotes no `;` and no
/// comment (`#`, `/*`, `-- `), which could hide text from this check. Inside `'…'` and `"…"`
/// a backslash escapes the next character (MySQL's default); inside backticks it does not.
pub fn is_one_expression(expr: &str) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\'' | '"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            (None, ';' | '#') => return false,
            (None, '/') if chars.peek() == Some(&'*') => return false,
            (None, '-') if chars.peek() == Some(&'-') => {
                chars.next();
                if chars
                    .peek()
                    .is_none_or(|n| n.is_whitespace() || n.is_control())
                {
                    return false;
                }
            }
            _ => {}
        }
    }
    quote.is_none() && depth == 0 && !expr.trim().is_empty()
}

// Zero dates (`0000-00-00`, `2024-00-10`) travel from a MySQL source to a MySQL sink as
// values before every real date, ordered by their fields (MySQL also sorts them first); only
// fields marked with [`ZERO_DATES_KEY`] carry them.

/// Date32 days of zero dates: the base plus `y * 10000 + m * 100 + d`.
const ZERO_DATE_BASE: i32 = -2_100_000_000;
/// Timestamp microseconds of zero dates: the base plus `((y * 13 + m) * 32 + d)` days plus
/// the time of day.
const ZERO_TS_BASE: i64 = -9_000_000_000_000_000_000;
const DAY_US: i64 = 86_400_000_000;

/// The Date32 value standing for the zero date `y-m-d`.
pub fn zero_date_days(y: u16, m: u8, d: u8) -> i32 {
    ZERO_DATE_BASE + i32::from(y) * 10_000 + i32::from(m) * 100 + i32::from(d)
}

/// The microsecond timestamp standing for the zero date `y-m-d` at `time_us` into the day.
pub fn zero_datetime_micros(y: u16, m: u8, d: u8, time_us: i64) -> i64 {
    let day = (i64::from(y) * 13 + i64::from(m)) * 32 + i64::from(d);
    ZERO_TS_BASE + day * DAY_US + time_us
}

/// `YYYY-MM-DD` of a zero date encoded by [`zero_date_days`], if `days` is one.
pub fn zero_date_text(days: i32) -> Option<String> {
    if days >= -2_000_000_000 {
        return None;
    }
    let code = days - ZERO_DATE_BASE;
    Some(format!(
        "{:04}-{:02}-{:02}",
        code / 10_000,
        code / 100 % 100,
        code % 100
    ))
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` of a zero date encoded by [`zero_datetime_micros`], if `us`
/// is one.
pub fn zero_datetime_text(us: i64) -> Option<String> {
    if us >= -8_000_000_000_000_000_000 {
        return None;
    }
    let off = us - ZERO_TS_BASE;
    let (day, t) = (off / DAY_US, off % DAY_US);
    let (y, m, d) = (day / 32 / 13, day / 32 % 13, day % 32);
    let secs = t / 1_000_000;
    Some(format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        t % 1_000_000
    ))
}

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

/// The MySQL type the sink declares for `field`: its native type when it came from MySQL
/// and may be written into DDL ([`native_ddl_type`]), else the logical type's spelling.
/// `Err` says why the target cannot hold it (the caller adds table, column and the cast hint).
pub fn target_type(field: &Field, key: KeyRole) -> std::result::Result<String, String> {
    if let Some(Ok(t)) = native_ddl_type(field) {
        return Ok(t);
    }
    let logical = LogicalType::of_field(field).map_err(|e| e.to_string())?;
    logical_to_mysql(&logical, key)
}

/// The MySQL native type recorded for `field`, in a form safe to write into `CREATE TABLE`:
/// `enum(…)` and `set(…)` with their labels parsed and quoted again by [`labels_type`],
/// anything else only when it is a plain type name ([`sluice_core::types::is_type_name`]).
/// `Some(Err(native))` when a native type is recorded but is neither: field metadata can
/// come from a file, so it is never trusted as SQL. `None` without a MySQL native type.
pub fn native_ddl_type(field: &Field) -> Option<std::result::Result<String, String>> {
    let (ENGINE, t) = native_type(field)? else {
        return None;
    };
    let (name, args, attrs) = split_type(t);
    if matches!(name.as_str(), "enum" | "set") {
        let labels = args.filter(|_| attrs.is_empty()).and_then(parse_labels);
        return Some(match labels {
            Some(l) if !l.is_empty() => Ok(labels_type(&name, &l)),
            _ => Err(t.to_string()),
        });
    }
    Some(if sluice_core::types::is_type_name(t) {
        Ok(t.to_string())
    } else {
        Err(t.to_string())
    })
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
        L::Decimal { precision, scale } => {
            let (p, s) = mysql_decimal(*precision, *scale);
            format!("decimal({p},{s})")
        }
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

/// The `decimal(p,s)` the sink declares for a logical `decimal(precision, scale)`: the same
/// when MySQL has it (p ≤ 65, 0 ≤ s ≤ 30), else the closest MySQL decimal: 65 digits with
/// the scale kept up to 30 (`decimal(65,30)` for an unconstrained decimal). Values that do
/// not fit the narrower type fail their row (see [`narrowing`]).
pub fn mysql_decimal(precision: Option<u16>, scale: Option<i16>) -> (u16, u16) {
    let s = scale.unwrap_or(0);
    match precision {
        Some(p) if p <= 65 && (0..=30).contains(&s) && i32::from(s) <= i32::from(p) => {
            (p.max(1), s as u16)
        }
        // A negative scale (PostgreSQL numeric(5,-2)) holds integers of p - s digits.
        Some(p) if s < 0 => ((i32::from(p) - i32::from(s)).min(65) as u16, 0),
        Some(_) => (65, s.clamp(0, 30) as u16),
        None => (65, 30),
    }
}

/// When the MySQL type declared for `t` is narrower than `t`: which values then fail their
/// row (MySQL would round or refuse them). `None` when every value fits.
pub fn narrowing(t: &LogicalType) -> Option<String> {
    let LogicalType::Decimal { precision, scale } = t else {
        return None;
    };
    let (p, s) = mysql_decimal(*precision, *scale);
    let exact = match precision {
        Some(sp) => i32::from(*sp) == i32::from(p) && i32::from(scale.unwrap_or(0)) == i32::from(s),
        None => false,
    };
    (!exact).then(|| {
        format!(
            "narrower than {t}: a value with more than {s} decimal places or more than {} integer \
             digits (or NaN, ±Infinity) fails its row",
            p - s
        )
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
                precision: sp,
                scale: ss,
            },
        ) => {
            // A source beyond MySQL's decimals is compared as the type the sink would create
            // for it; its values are checked row by row (`narrowing`).
            let (sp, ss) = mysql_decimal(*sp, *ss);
            let ts = i32::from(ts.unwrap_or(0));
            ts >= i32::from(ss) && i32::from(*tp) - ts >= i32::from(sp) - i32::from(ss)
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
            "decimal(65,2)"
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
    fn zero_dates_round_trip_and_sort_first() {
        assert_eq!(
            zero_date_text(zero_date_days(0, 0, 0)).unwrap(),
            "0000-00-00"
        );
        assert_eq!(
            zero_date_text(zero_date_days(2024, 0, 10)).unwrap(),
            "2024-00-10"
        );
        assert_eq!(
            zero_date_text(zero_date_days(9999, 12, 0)).unwrap(),
            "9999-12-00"
        );
        assert!(zero_date_days(9999, 12, 0) < -719_528, "before 0000-01-01");
        assert!(zero_date_days(2024, 0, 10) < zero_date_days(2024, 5, 0));
        assert_eq!(zero_date_text(-719_528), None);
        let us = zero_datetime_micros(2024, 5, 0, 86_399_999_999);
        assert_eq!(
            zero_datetime_text(us).unwrap(),
            "2024-05-00 23:59:59.999999"
        );
        assert_eq!(
            zero_datetime_text(zero_datetime_micros(0, 0, 0, 0)).unwrap(),
            "0000-00-00 00:00:00.000000"
        );
        assert!(zero_datetime_micros(9999, 12, 0, 86_399_999_999) < -62_167_219_200_000_000);
        assert_eq!(zero_datetime_text(-62_167_219_200_000_000), None);
    }

    #[test]
    fn decimals_beyond_mysql_narrow_to_the_closest_type() {
        use LogicalType as L;
        let d = |p, s| L::Decimal {
            precision: p,
            scale: s,
        };
        assert_eq!(mysql_decimal(Some(12), Some(2)), (12, 2));
        assert_eq!(mysql_decimal(None, None), (65, 30));
        assert_eq!(mysql_decimal(Some(70), Some(10)), (65, 10));
        assert_eq!(mysql_decimal(Some(50), Some(35)), (65, 30));
        assert_eq!(mysql_decimal(Some(5), Some(-2)), (7, 0));
        assert_eq!(narrowing(&d(Some(12), Some(2))), None);
        let n = narrowing(&d(None, None)).unwrap();
        assert!(
            n.contains("30 decimal places") && n.contains("35 integer"),
            "{n}"
        );
        assert!(narrowing(&d(Some(50), Some(35))).is_some());
        // What the sink creates for a wide source is accepted back (a resumed copy).
        let p = |t: &str| parse(t, false).unwrap();
        assert!(compatible(
            &p("decimal(65,30)"),
            &d(None, None).field("a", true)
        ));
        assert!(compatible(
            &p("decimal(65,30)"),
            &d(Some(50), Some(35)).field("a", true)
        ));
        assert!(!compatible(
            &p("decimal(20,2)"),
            &d(None, None).field("a", true)
        ));
    }

    #[test]
    fn metadata_text_is_checked_before_it_becomes_sql() {
        assert!(is_plain_name("utf8mb4_general_ci") && is_plain_name("MyISAM"));
        assert!(!is_plain_name("x; DROP TABLE t") && !is_plain_name(""));
        assert!(is_one_expression("concat('x;)',`a`,'y')"));
        assert!(is_one_expression("`a` * 2"));
        assert!(!is_one_expression(
            "1) STORED, c int) ENGINE=InnoDB; DROP TABLE t; --"
        ));
        assert!(!is_one_expression("1; DROP TABLE t"));
        assert!(!is_one_expression("'open"));
        // A backslash does not escape a backtick: the closing one ends the identifier.
        assert!(!is_one_expression(
            "`x\\` ) VIRTUAL, evil int, q int AS (1 `"
        ));
        assert!(is_one_expression("concat('it\\'s', \"a\\\"b\", `c`)"));
        for comment in ["1 # (", "1 /* ( */", "1 -- (", "1 --"] {
            assert!(!is_one_expression(comment), "{comment}");
        }
        assert!(is_one_expression("`a` - -1"));
    }

    #[test]
    fn native_types_reach_ddl_only_as_type_names() {
        let f =
            |native: &str| with_native_type(LogicalType::Int32.field("a", true), ENGINE, native);
        assert_eq!(
            native_ddl_type(&f("int(10) unsigned")),
            Some(Ok("int(10) unsigned".into()))
        );
        assert_eq!(
            native_ddl_type(&f("enum('a','b''c','d\\\\e')")),
            Some(Ok("enum('a','b''c','d\\\\e')".into()))
        );
        assert_eq!(
            native_ddl_type(&f("set('x','y')")),
            Some(Ok("set('x','y')".into()))
        );
        for bad in [
            "int); DROP TABLE victim; --",
            "enum('ok','b'); DROP TABLE victim; -- ')",
            "enum('a') DEFAULT 'a'",
            "int DEFAULT 1",
        ] {
            assert_eq!(native_ddl_type(&f(bad)), Some(Err(bad.into())), "{bad}");
            assert_eq!(target_type(&f(bad), KeyRole::None).unwrap(), "int");
        }
        assert_eq!(native_ddl_type(&LogicalType::Int32.field("a", true)), None);
    }

    #[test]
    fn fractional_seconds_of_temporal_types() {
        assert_eq!(parse("datetime", false).unwrap().fsp, 0);
        assert_eq!(parse("datetime(3)", false).unwrap().fsp, 3);
        assert_eq!(parse("time(6)", false).unwrap().fsp, 6);
        assert_eq!(parse("timestamp", false).unwrap().fsp, 0);
        assert_eq!(parse("int", false).unwrap().fsp, 6);
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
