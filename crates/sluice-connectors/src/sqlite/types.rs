//! SQLite declared types ↔ Sluice logical types, and the text forms of values.
//!
//! SQLite is dynamically typed: a column has a *declared type* (any string, or none) and an
//! *affinity* derived from it, and every value carries its own storage class (NULL, INTEGER,
//! REAL, TEXT, BLOB). Sluice reads the declared type to decide what a column means
//! ([`logical_from_decl`]) and, when it creates a table, writes declared types that read back
//! as the same logical type ([`decl_for`]). The declared types were chosen with affinity in
//! mind, because affinity silently rewrites values on insert:
//!
//! * `JSON` has NUMERIC affinity (JSON text `1.50` would become REAL 1.5), so Sluice writes
//!   `JSON_TEXT` (TEXT affinity, kept byte for byte).
//! * `DECIMAL(p,s)` has NUMERIC affinity: exact while `p ≤ 15` (every such value survives a
//!   trip through a double, and is rounded back to scale `s` on read), lossy beyond. Wider and
//!   unconstrained decimals are written as `DECIMAL_TEXT(p,s)` / `DECIMAL_TEXT` (TEXT affinity).
//! * REAL affinity stores `-0.0` as integer 0 and SQLite turns NaN into NULL, so those two
//!   floats are stored as the TEXT `'NaN'` and as an 8-byte big-endian IEEE BLOB.
//! * INTEGER affinity turns a too-large integer text into a lossy REAL, so a `uint64` above
//!   `i64::MAX` is stored as a BLOB of its ASCII decimal digits.
//!
//! Everything here is pure and unit-tested.

use sluice_core::LogicalType;
use sluice_core::types::Precision;

/// Quotes an identifier for SQL: `"` around it, `"` inside doubled.
pub fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Quotes a string literal for SQL: `'` around it, `'` inside doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The logical type of a column with SQLite declared type `decl`. Never fails: declared
/// types Sluice does not know fall back to SQLite's own affinity rules (see the module docs
/// of `sqlite` for the table).
pub fn logical_from_decl(decl: &str) -> LogicalType {
    use LogicalType as L;
    let d = decl.trim();
    let upper = d.to_ascii_uppercase();
    if (upper.starts_with("ARRAY<") || upper.starts_with("ENUM("))
        && let Ok(t) = d.parse::<LogicalType>()
    {
        return t;
    }
    let (name, args) = match upper.find('(') {
        Some(i) => (upper[..i].trim(), parse_args(&upper[i..])),
        None => (upper.as_str(), None),
    };
    // Collapse inner runs of whitespace ("DOUBLE  PRECISION").
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let nanos = |args: &Option<Vec<i64>>| match args.as_deref() {
        Some([p, ..]) if *p > 6 => Precision::Nanos,
        _ => Precision::Micros,
    };
    match name.as_str() {
        "" => L::Text,
        "BOOLEAN" | "BOOL" => L::Bool,
        "TINYINT" | "INT1" => L::Int8,
        "SMALLINT" | "INT2" | "INT16" => L::Int16,
        "MEDIUMINT" | "INT4" | "INT32" => L::Int32,
        "INTEGER" | "INT" | "BIGINT" | "INT8" | "INT64" | "UNSIGNED BIG INT" => L::Int64,
        "UINT8" => L::UInt8,
        "UINT16" => L::UInt16,
        "UINT32" => L::UInt32,
        "UINT64" => L::UInt64,
        "REAL" | "DOUBLE" | "DOUBLE PRECISION" | "FLOAT" | "FLOAT8" | "FLOAT64" => L::Float64,
        "FLOAT4" | "FLOAT32" => L::Float32,
        "DECIMAL" | "NUMERIC" | "DECIMAL_TEXT" | "NUMERIC_TEXT" => match args.as_deref() {
            Some([p]) if (1..=1000).contains(p) => L::Decimal {
                precision: Some(*p as u16),
                scale: Some(0),
            },
            Some([p, s]) if (1..=1000).contains(p) && s.unsigned_abs() <= *p as u64 => L::Decimal {
                precision: Some(*p as u16),
                scale: Some(*s as i16),
            },
            _ => L::Decimal {
                precision: None,
                scale: None,
            },
        },
        "TEXT" | "VARCHAR" | "CHAR" | "CHARACTER" | "CLOB" | "NCHAR" | "NVARCHAR"
        | "VARYING CHARACTER" | "NATIVE CHARACTER" | "STRING" => L::Text,
        "BLOB" | "BYTEA" | "BINARY" | "VARBINARY" => L::Binary,
        "DATE" => L::Date,
        "TIME" => L::Time(nanos(&args)),
        "DATETIME" | "TIMESTAMP" => L::Timestamp {
            tz: false,
            precision: nanos(&args),
        },
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => L::Timestamp {
            tz: true,
            precision: nanos(&args),
        },
        "INTERVAL" => L::Interval,
        "UUID" => L::Uuid,
        "JSON" | "JSONB" | "JSON_TEXT" => L::Json,
        // SQLite's affinity rules, in SQLite's order (https://sqlite.org/datatype3.html).
        n if n.contains("INT") => L::Int64,
        n if n.contains("CHAR") || n.contains("CLOB") || n.contains("TEXT") => L::Text,
        n if n.contains("BLOB") => L::Binary,
        n if n.contains("REAL") || n.contains("FLOA") || n.contains("DOUB") => L::Float64,
        // NUMERIC affinity with a name we do not know (MONEY, YEAR …): text reads anything.
        _ => L::Text,
    }
}

/// `(12, 2)` → `[12, 2]`; `None` when the arguments are not signed integers.
fn parse_args(s: &str) -> Option<Vec<i64>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(|a| a.trim().parse().ok()).collect()
}

/// The declared type Sluice writes in `CREATE TABLE` for `t`, already SQL (quoted where the
/// name is not a plain word). [`logical_from_decl`] of it gives `t` back.
pub fn decl_for(t: &LogicalType) -> String {
    use LogicalType as L;
    let ts = |base: &str, p: &Precision| match p {
        Precision::Micros => base.to_string(),
        Precision::Nanos => format!("{base}(9)"),
    };
    match t {
        L::Bool => "BOOLEAN".into(),
        L::Int8 => "TINYINT".into(),
        L::Int16 => "SMALLINT".into(),
        L::Int32 => "INT32".into(),
        L::Int64 => "INTEGER".into(),
        L::UInt8 => "UINT8".into(),
        L::UInt16 => "UINT16".into(),
        L::UInt32 => "UINT32".into(),
        L::UInt64 => "UINT64".into(),
        L::Float32 => "FLOAT32".into(),
        L::Float64 => "REAL".into(),
        L::Decimal {
            precision: Some(p),
            scale,
        } if *p <= 15 => {
            format!("DECIMAL({p},{})", scale.unwrap_or(0))
        }
        L::Decimal {
            precision: Some(p),
            scale,
        } => {
            format!("DECIMAL_TEXT({p},{})", scale.unwrap_or(0))
        }
        L::Decimal {
            precision: None, ..
        } => "DECIMAL_TEXT".into(),
        L::Text => "TEXT".into(),
        L::Binary => "BLOB".into(),
        L::Date => "DATE".into(),
        L::Time(p) => ts("TIME", p),
        L::Timestamp {
            tz: false,
            precision,
        } => ts("TIMESTAMP", precision),
        L::Timestamp {
            tz: true,
            precision,
        } => ts("TIMESTAMPTZ", precision),
        L::Interval => "INTERVAL".into(),
        L::Uuid => "UUID".into(),
        L::Json => "JSON_TEXT".into(),
        L::Array(_) | L::Enum(_) => quote_ident(&t.to_string()),
    }
}

/// Whether an existing column whose declared type means `target` can hold values of logical
/// type `source` without loss of meaning.
pub fn can_hold(target: &LogicalType, source: &LogicalType) -> bool {
    use LogicalType as L;
    fn int_range(t: &LogicalType) -> Option<(i128, i128)> {
        Some(match t {
            L::Bool => (0, 1),
            L::Int8 => (i8::MIN as i128, i8::MAX as i128),
            L::Int16 => (i16::MIN as i128, i16::MAX as i128),
            L::Int32 => (i32::MIN as i128, i32::MAX as i128),
            L::Int64 => (i64::MIN as i128, i64::MAX as i128),
            L::UInt8 => (0, u8::MAX as i128),
            L::UInt16 => (0, u16::MAX as i128),
            L::UInt32 => (0, u32::MAX as i128),
            L::UInt64 => (0, u64::MAX as i128),
            _ => return None,
        })
    }
    if target == source {
        return true;
    }
    match (target, source) {
        // Text columns take the text form of anything but raw bytes.
        (L::Text, s) => !matches!(s, L::Binary),
        (L::Binary, L::Uuid) => false,
        (L::Float64, s) => matches!(s, L::Float32) || int_range(s).is_some(),
        (L::Float32, s) => matches!(s, L::Int8 | L::Int16 | L::UInt8 | L::UInt16 | L::Bool),
        (
            L::Decimal {
                precision: None, ..
            },
            s,
        ) => matches!(s, L::Decimal { .. }) || int_range(s).is_some(),
        (
            L::Decimal {
                precision: Some(tp),
                scale: ts,
            },
            s,
        ) => {
            let ts = ts.unwrap_or(0) as i32;
            match s {
                L::Decimal {
                    precision: Some(sp),
                    scale: ss,
                } => {
                    let ss = ss.unwrap_or(0) as i32;
                    ss <= ts && (*sp as i32 - ss) <= (*tp as i32 - ts)
                }
                s => int_range(s).is_some_and(|(lo, hi)| {
                    let digits = hi.max(-lo).to_string().len() as i32;
                    digits <= *tp as i32 - ts
                }),
            }
        }
        (L::Time(_), L::Time(_)) => true,
        (L::Timestamp { tz: a, .. }, L::Timestamp { tz: b, .. }) => a == b,
        (L::Timestamp { tz: false, .. }, L::Date) => false,
        (L::Json, L::Text) => false,
        (L::Array(a), L::Array(b)) => can_hold(a, b),
        (t, s) => match (int_range(t), int_range(s)) {
            (Some((tl, th)), Some((sl, sh))) => tl <= sl && sh <= th,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LogicalType as L;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(
            quote_ident(r#"x"; DROP TABLE y; --"#),
            r#""x""; DROP TABLE y; --""#
        );
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn declared_types_map_as_documented() {
        let cases = [
            ("INTEGER", L::Int64),
            ("int", L::Int64),
            ("BIGINT", L::Int64),
            ("INT8", L::Int64),
            ("TINYINT", L::Int8),
            ("SMALLINT", L::Int16),
            ("MEDIUMINT", L::Int32),
            ("INT4", L::Int32),
            ("UINT64", L::UInt64),
            ("REAL", L::Float64),
            ("DOUBLE PRECISION", L::Float64),
            ("FLOAT", L::Float64),
            (
                "DECIMAL(12,2)",
                L::Decimal {
                    precision: Some(12),
                    scale: Some(2),
                },
            ),
            (
                "numeric(10)",
                L::Decimal {
                    precision: Some(10),
                    scale: Some(0),
                },
            ),
            (
                "NUMERIC",
                L::Decimal {
                    precision: None,
                    scale: None,
                },
            ),
            ("VARCHAR(255)", L::Text),
            ("CHAR", L::Text),
            ("CLOB", L::Text),
            ("", L::Text),
            ("BLOB", L::Binary),
            ("BOOLEAN", L::Bool),
            ("DATE", L::Date),
            ("TIME", L::Time(Precision::Micros)),
            (
                "DATETIME",
                L::Timestamp {
                    tz: false,
                    precision: Precision::Micros,
                },
            ),
            (
                "TIMESTAMP(9)",
                L::Timestamp {
                    tz: false,
                    precision: Precision::Nanos,
                },
            ),
            (
                "TIMESTAMPTZ",
                L::Timestamp {
                    tz: true,
                    precision: Precision::Micros,
                },
            ),
            ("INTERVAL", L::Interval),
            ("UUID", L::Uuid),
            ("JSON", L::Json),
            ("jsonb", L::Json),
            ("array<int32>", L::Array(Box::new(L::Int32))),
            ("enum('a','b')", L::Enum(vec!["a".into(), "b".into()])),
            // Affinity fallbacks.
            ("UNSIGNED INTEGER", L::Int64),
            ("NATIVE VARCHAR", L::Text),
            ("MONEY", L::Text),
        ];
        for (decl, want) in cases {
            assert_eq!(logical_from_decl(decl), want, "{decl}");
        }
    }

    #[test]
    fn written_declared_types_read_back() {
        let types = [
            L::Bool,
            L::Int8,
            L::Int16,
            L::Int32,
            L::Int64,
            L::UInt8,
            L::UInt16,
            L::UInt32,
            L::UInt64,
            L::Float32,
            L::Float64,
            L::Decimal {
                precision: Some(12),
                scale: Some(2),
            },
            L::Decimal {
                precision: Some(50),
                scale: Some(10),
            },
            L::Decimal {
                precision: None,
                scale: None,
            },
            L::Text,
            L::Binary,
            L::Date,
            L::Time(Precision::Micros),
            L::Time(Precision::Nanos),
            L::Timestamp {
                tz: false,
                precision: Precision::Micros,
            },
            L::Timestamp {
                tz: true,
                precision: Precision::Nanos,
            },
            L::Interval,
            L::Uuid,
            L::Json,
            L::Array(Box::new(L::Array(Box::new(L::Text)))),
            L::Enum(vec!["x\"y".into(), "it's".into()]),
        ];
        for t in types {
            let decl = decl_for(&t);
            // SQLite strips the identifier quotes of a quoted type name.
            let stored = match decl.strip_prefix('"').and_then(|d| d.strip_suffix('"')) {
                Some(inner) => inner.replace("\"\"", "\""),
                None => decl.clone(),
            };
            assert_eq!(logical_from_decl(&stored), t, "{decl}");
        }
    }

    #[test]
    fn compatibility() {
        let dec = |p, s| L::Decimal {
            precision: Some(p),
            scale: Some(s),
        };
        assert!(can_hold(&L::Int64, &L::Int32));
        assert!(!can_hold(&L::Int32, &L::Int64));
        assert!(!can_hold(&L::Int64, &L::Text));
        assert!(!can_hold(&L::Int64, &dec(10, 2)));
        assert!(!can_hold(&L::Int64, &L::Float64));
        assert!(can_hold(&L::Text, &L::Int64));
        assert!(can_hold(&dec(12, 2), &dec(10, 2)));
        assert!(!can_hold(&dec(12, 2), &dec(12, 4)));
        assert!(can_hold(&dec(20, 0), &L::Int64));
        assert!(!can_hold(&dec(5, 0), &L::Int64));
        assert!(can_hold(&L::Float64, &L::Int32));
        assert!(!can_hold(&L::UInt64, &L::Int8));
    }
}
