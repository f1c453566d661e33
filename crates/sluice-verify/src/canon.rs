//! The canonical row form: one text per row that PostgreSQL and MySQL/MariaDB both compute
//! identically for the same data, so checksums can be taken inside each database.
//!
//! Every column becomes a *token*: `N` for NULL, otherwise `<characters>:<value>` (the value's
//! length in characters, a colon, the canonical value). Tokens are joined with `|` in the
//! source's column order. Because every non-NULL token carries its length, no separator or
//! escape inside a value can make two different rows produce the same text, and NULL (`N`)
//! differs from the empty string (`0:`). The per-type rules are in [`ColKind`] and
//! `docs/verify.md`. This module is pure SQL text generation, unit-tested below.

/// Which SQL dialect a side speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

/// The class of a column, from its catalog type; decides its canonical expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    /// Any integer: decimal text.
    Int,
    /// Exact decimal: no trailing zeros after the point, no point if none remain, `0` for zero.
    Decimal,
    /// Double precision: rounded to 15 significant digits, then as [`ColKind::Decimal`].
    Float8,
    /// Single precision: rounded to 6 significant digits, then as [`ColKind::Decimal`].
    Float4,
    /// PostgreSQL boolean: `1` / `0` (MySQL's `tinyint(1)` is an [`ColKind::Int`]).
    Bool,
    /// Character data, as stored (UTF-8).
    Text,
    /// Binary data: lowercase hex.
    Binary,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD HH:MM:SS.ffffff`, as stored.
    Timestamp,
    /// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC.
    TimestampTz,
    /// `HH:MM:SS.ffffff`.
    Time,
    /// PostgreSQL: jsonb's normalized text; MySQL: the server's text of the JSON value.
    Json,
    /// Anything else: the database's own text form (may differ across databases).
    Other,
}

impl ColKind {
    /// The kind of a PostgreSQL column from `pg_type.typname` and `typtype`.
    pub fn of_postgres(typname: &str, typtype: &str) -> ColKind {
        match typname {
            "int2" | "int4" | "int8" | "oid" => ColKind::Int,
            "numeric" => ColKind::Decimal,
            "float8" => ColKind::Float8,
            "float4" => ColKind::Float4,
            "bool" => ColKind::Bool,
            "text" | "varchar" | "bpchar" | "name" | "citext" | "uuid" => ColKind::Text,
            "bytea" => ColKind::Binary,
            "date" => ColKind::Date,
            "timestamp" => ColKind::Timestamp,
            "timestamptz" => ColKind::TimestampTz,
            "time" => ColKind::Time,
            "json" | "jsonb" => ColKind::Json,
            _ if typtype == "e" => ColKind::Text,
            _ => ColKind::Other,
        }
    }

    /// The kind of a MySQL/MariaDB column from `information_schema.COLUMNS.DATA_TYPE`.
    pub fn of_mysql(data_type: &str) -> ColKind {
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
                ColKind::Int
            }
            "decimal" | "numeric" => ColKind::Decimal,
            "double" | "real" => ColKind::Float8,
            "float" => ColKind::Float4,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "uuid" => ColKind::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                ColKind::Binary
            }
            "date" => ColKind::Date,
            "datetime" | "timestamp" => ColKind::Timestamp,
            "time" => ColKind::Time,
            "json" => ColKind::Json,
            _ => ColKind::Other,
        }
    }

    /// Whether values of this kind can serve as the chunking key.
    pub fn is_integer(self) -> bool {
        self == ColKind::Int
    }
}

/// A column as one side sees it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ColKind,
    /// The declared type (`format_type` / `COLUMN_TYPE`), used to cast repair values.
    pub sql_type: String,
}

/// Quotes an identifier for `dialect`.
pub fn quote_ident(d: Dialect, s: &str) -> String {
    match d {
        Dialect::Postgres => format!("\"{}\"", s.replace('"', "\"\"")),
        Dialect::Mysql => format!("`{}`", s.replace('`', "``")),
    }
}

/// Quotes a string literal for `dialect` (MySQL: backslashes escaped; the session runs
/// without `NO_BACKSLASH_ESCAPES`).
pub fn quote_literal(d: Dialect, s: &str) -> String {
    match d {
        Dialect::Postgres => format!("'{}'", s.replace('\'', "''")),
        Dialect::Mysql => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('\'');
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '\0' => out.push_str("\\0"),
                    c => out.push(c),
                }
            }
            out.push('\'');
            out
        }
    }
}

/// MySQL: strips trailing zeros (and then a trailing point) from a decimal's text.
fn my_trim_zeros(s: &str) -> String {
    format!("IF(LOCATE('.', {s}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s})), {s})")
}

/// MySQL: a float rounded to `digits` significant digits, as normalized decimal text.
fn my_float(c: &str, digits: u32) -> String {
    let rounded = format!(
        "CAST(ROUND(CAST({c} AS DECIMAL(65,30)), {} - FLOOR(LOG10(ABS({c})))) AS CHAR)",
        digits - 1
    );
    format!("IF({c} = 0, '0', {})", my_trim_zeros(&rounded))
}

/// The canonical value of one column (NULL stays NULL), as a SQL expression.
pub fn value_expr(d: Dialect, col: &Column) -> String {
    let c = quote_ident(d, &col.name);
    match d {
        Dialect::Postgres => match col.kind {
            ColKind::Int | ColKind::Text | ColKind::Other => format!("{c}::text"),
            // float8 -> numeric keeps 15 significant digits, float4 -> numeric 6.
            ColKind::Decimal | ColKind::Float8 | ColKind::Float4 => {
                format!("trim_scale({c}::numeric)::text")
            }
            ColKind::Bool => format!("({c}::int)::text"),
            ColKind::Binary => format!("encode({c}, 'hex')"),
            ColKind::Date => format!("to_char({c}, 'YYYY-MM-DD')"),
            ColKind::Timestamp => format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')"),
            ColKind::TimestampTz => {
                format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            ColKind::Time => format!("to_char({c}::interval, 'HH24:MI:SS.US')"),
            ColKind::Json => format!("{c}::jsonb::text"),
        },
        Dialect::Mysql => match col.kind {
            ColKind::Int | ColKind::Bool | ColKind::Other | ColKind::Json => {
                format!("CAST({c} AS CHAR)")
            }
            ColKind::Decimal => format!(
                "IF({c} = 0, '0', {})",
                my_trim_zeros(&format!("CAST({c} AS CHAR)"))
            ),
            ColKind::Float8 => my_float(&c, 15),
            ColKind::Float4 => my_float(&c, 6),
            ColKind::Text => format!("CONVERT({c} USING utf8mb4)"),
            ColKind::Binary => format!("LOWER(HEX({c}))"),
            ColKind::Date => format!("DATE_FORMAT({c}, '%Y-%m-%d')"),
            ColKind::Timestamp | ColKind::TimestampTz => {
                format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')")
            }
            ColKind::Time => format!("TIME_FORMAT({c}, '%H:%i:%s.%f')"),
        },
    }
}

/// The value to write back when repairing: the canonical value, except that floats keep
/// full precision (their shortest round-trip text).
pub fn repair_expr(d: Dialect, col: &Column) -> String {
    let c = quote_ident(d, &col.name);
    match (d, col.kind) {
        (Dialect::Postgres, ColKind::Float8 | ColKind::Float4) => format!("{c}::text"),
        (Dialect::Mysql, ColKind::Float8 | ColKind::Float4) => format!("CAST({c} AS CHAR)"),
        _ => value_expr(d, col),
    }
}

/// The canonical row text of `cols`: tokens `N` or `<len>:<value>` joined by `|`.
pub fn row_expr(d: Dialect, cols: &[Column]) -> String {
    let tokens: Vec<String> = cols
        .iter()
        .map(|col| {
            let v = value_expr(d, col);
            match d {
                Dialect::Postgres => format!("coalesce(length({v})::text || ':' || {v}, 'N')"),
                Dialect::Mysql => format!("COALESCE(CONCAT(CHAR_LENGTH({v}), ':', {v}), 'N')"),
            }
        })
        .collect();
    match d {
        Dialect::Postgres => tokens.join(" || '|' || "),
        Dialect::Mysql => format!("CONCAT({})", tokens.join(", '|', ")),
    }
}

/// The row's hash as an integer: the first 15 hex digits (60 bits) of md5 of the row text.
pub fn hash_expr(d: Dialect, cols: &[Column]) -> String {
    let row = row_expr(d, cols);
    match d {
        Dialect::Postgres => format!("('x' || substr(md5({row}), 1, 15))::bit(60)::bigint"),
        Dialect::Mysql => format!("CAST(CONV(SUBSTRING(MD5({row}), 1, 15), 16, 10) AS UNSIGNED)"),
    }
}

/// `count(*)` and the sum of row hashes (as decimal text; `0` when empty).
pub fn checksum_select(d: Dialect, cols: &[Column]) -> String {
    let h = hash_expr(d, cols);
    match d {
        Dialect::Postgres => format!("count(*)::text, coalesce(sum({h}), 0)::text"),
        Dialect::Mysql => format!("CAST(COUNT(*) AS CHAR), CAST(COALESCE(SUM({h}), 0) AS CHAR)"),
    }
}

/// The key as text.
pub fn key_text(d: Dialect, key: &str) -> String {
    let k = quote_ident(d, key);
    match d {
        Dialect::Postgres => format!("{k}::text"),
        Dialect::Mysql => format!("CAST({k} AS CHAR)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: ColKind) -> Column {
        Column {
            name: name.into(),
            kind,
            sql_type: String::new(),
        }
    }

    #[test]
    fn kinds_from_catalog_types() {
        assert_eq!(ColKind::of_postgres("int8", "b"), ColKind::Int);
        assert_eq!(ColKind::of_postgres("mood", "e"), ColKind::Text);
        assert_eq!(ColKind::of_postgres("interval", "b"), ColKind::Other);
        assert_eq!(ColKind::of_mysql("BIGINT"), ColKind::Int);
        assert_eq!(ColKind::of_mysql("longblob"), ColKind::Binary);
        assert_eq!(ColKind::of_mysql("datetime"), ColKind::Timestamp);
    }

    #[test]
    fn quoting_handles_awkward_names() {
        assert_eq!(
            quote_ident(Dialect::Postgres, "Order \"Items\""),
            "\"Order \"\"Items\"\"\""
        );
        assert_eq!(quote_ident(Dialect::Mysql, "a`b"), "`a``b`");
        assert_eq!(
            quote_literal(Dialect::Mysql, "it's \\ ok"),
            "'it\\'s \\\\ ok'"
        );
        assert_eq!(quote_literal(Dialect::Postgres, "it's"), "'it''s'");
    }

    #[test]
    fn row_text_separates_null_from_empty() {
        let cols = [col("a", ColKind::Text), col("b", ColKind::Int)];
        let pg = row_expr(Dialect::Postgres, &cols);
        assert!(pg.contains("'N'") && pg.contains("'|'"), "{pg}");
        let my = row_expr(Dialect::Mysql, &cols);
        assert!(
            my.starts_with("CONCAT(COALESCE(CONCAT(CHAR_LENGTH("),
            "{my}"
        );
    }

    #[test]
    fn floats_round_to_significant_digits() {
        let e = value_expr(Dialect::Mysql, &col("f", ColKind::Float8));
        assert!(e.contains("14 - FLOOR(LOG10(ABS(`f`)))"), "{e}");
        let e = value_expr(Dialect::Mysql, &col("f", ColKind::Float4));
        assert!(e.contains("5 - FLOOR"), "{e}");
    }
}
