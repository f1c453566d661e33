//! The canonical row form: one text per row that PostgreSQL and MySQL/MariaDB both compute
//! identically for the same data, so checksums can be taken inside each database.
//!
//! Every column becomes a *token*: `N` for NULL; otherwise, for kinds whose text can never hold
//! `|` or be `N` (numbers, dates and times, booleans, hex of binary) the canonical value, and
//! for the others (text, JSON, anything else) `<length>|<value>` (the value's length in UTF-8
//! bytes — in characters for `char(n)` —, a `|`, the value). Tokens are joined with `|` in
//! the source's column order.
//! Because every token that could contain a `|` carries its length, no separator or escape
//! inside a value can make two different rows produce the same text, and NULL (`N`) differs
//! from the empty string (`0|`). The per-type rules are in [`ColKind`] and `docs/verify.md`.
//!
//! The form is agreed per column for each pair of sides ([`plan`]): a decimal whose scale both
//! databases declare alike is hashed in the databases' own text (`12.50`, cheap) rather than
//! trimmed (`12.5`); two PostgreSQL sides with hash-compatible column types skip the text
//! altogether and sum PostgreSQL's own 64-bit value hash (`hash_record_extended`). This module
//! is pure SQL text generation, unit-tested below.

use crate::arrays;

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
    /// A duration of months, days and time, in ISO 8601 as PostgreSQL's `iso_8601` style
    /// writes it: `P1Y2M3DT4H5M6.5S`, each part signed on its own, zero parts left out,
    /// `PT0S` for zero.
    Interval,
    /// The JSON text as the server returns it (PostgreSQL `json` and MariaDB as stored,
    /// `jsonb` and MySQL 8 normalized by the server).
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
            "interval" => ColKind::Interval,
            "json" | "jsonb" => ColKind::Json,
            _ if typtype == "e" => ColKind::Text,
            _ => ColKind::Other,
        }
    }

    /// The kind of a MySQL/MariaDB column from `information_schema.COLUMNS.DATA_TYPE`.
    pub fn of_mysql(data_type: &str) -> ColKind {
        match data_type.to_ascii_lowercase().as_str() {
            // `bit(n)` is read as an unsigned integer (see `value_expr`).
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year"
            | "bit" => ColKind::Int,
            "decimal" | "numeric" => ColKind::Decimal,
            "double" | "real" => ColKind::Float8,
            "float" => ColKind::Float4,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "uuid" => ColKind::Text,
            // Spatial values as their stored bytes (SRID + WKB), which is what the MySQL
            // source reads and copies; `CAST(… AS CHAR)` refuses them.
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" | "geomcollection" => {
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

    /// Whether the canonical text of this kind can contain `|` or be `N`, so that its token
    /// needs a length prefix.
    pub fn needs_length(self) -> bool {
        matches!(self, ColKind::Text | ColKind::Json | ColKind::Other)
    }
}

/// How one column is written in the hashed row text, agreed for a pair of sides by [`plan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Form {
    /// The token is `<length>|<value>` (the value could contain `|` or be `N`).
    pub counted: bool,
    /// Both sides declare the same decimal scale, so the databases' own text (`12.50`) is
    /// hashed instead of the trimmed form (`12.5`).
    pub fixed_scale: bool,
    /// Either side declares the column blank-padded `char(n)`: trailing spaces are not
    /// significant, so they are stripped on both sides (PostgreSQL's `bpchar::text` and
    /// MySQL's `CHAR` already return values without them; a copy of `char(n)` into a text
    /// column keeps them), and the length in a counted token is in characters.
    pub padded: bool,
    /// Either side is an interval: a MySQL `TIME` (which Sluice reads as an interval) or a
    /// PostgreSQL `time` on the other side is written as an interval too.
    pub interval: bool,
    /// Either side is an array (a PostgreSQL array, an Arrow list): the column is compared
    /// element by element, see [`Elem`]. Not set for two PostgreSQL sides, whose array
    /// text is the same for the same values.
    pub elem: Option<Elem>,
}

/// The element type of an array column as one side's catalog declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemType {
    pub kind: ColKind,
    /// PostgreSQL's element `typname` (`int4`, `bpchar`…); `uuid` for a list of UUIDs read
    /// locally; empty otherwise.
    pub type_name: String,
}

/// How the elements of an array column are compared, agreed for a pair of sides.
///
/// The canonical value of an array is its element tokens (`N`, the canonical value, or
/// `<length>|<value>` for kinds that need it) joined by `|`; the empty array is the empty
/// text. Each side computes it from what it holds: PostgreSQL from `unnest`, MySQL from the
/// JSON array Sluice writes there (`JSON_TABLE`), a local side from an Arrow list or from
/// JSON text. Elements written to JSON as strings or numbers come back as their text, so the
/// kind decides how that text is normalized: decimals trimmed, floats rounded, booleans
/// `1`/`0`, UUIDs with dashes, `char(n)` elements without trailing spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elem {
    pub kind: ColKind,
    /// `char(n)` elements: trailing spaces stripped, lengths in characters.
    pub padded: bool,
    /// UUID elements: 32 hex digits get their dashes (MySQL's JSON holds them without).
    pub uuid: bool,
}

impl Elem {
    fn of(t: &ElemType) -> Elem {
        Elem {
            kind: t.kind,
            padded: t.type_name == "bpchar",
            uuid: t.type_name == "uuid",
        }
    }

    /// Whether an element's token carries its length.
    pub fn counted(self) -> bool {
        self.kind.needs_length()
    }
}

/// A column as one side sees it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ColKind,
    /// The declared type (`format_type` / `COLUMN_TYPE`), used to cast repair values.
    pub sql_type: String,
    /// PostgreSQL's type name (`pg_type.typname`), for deciding on the native hash.
    pub type_name: String,
    /// Declared `NOT NULL`: its token needs no NULL test.
    pub not_null: bool,
    /// Text is stored as UTF-8 (or ASCII), so it is hashed without conversion.
    pub utf8: bool,
    /// The element type, for an array column (PostgreSQL arrays, Arrow lists).
    pub elem: Option<ElemType>,
    /// How the column is hashed; set for the pair by [`plan`].
    pub form: Form,
}

impl Column {
    /// A nullable column whose token is counted when its kind needs it.
    pub fn new(name: impl Into<String>, kind: ColKind, sql_type: impl Into<String>) -> Column {
        Column {
            name: name.into(),
            kind,
            sql_type: sql_type.into(),
            type_name: String::new(),
            not_null: false,
            utf8: true,
            elem: None,
            form: Form {
                counted: kind.needs_length(),
                ..Form::default()
            },
        }
    }

    /// The declared scale of a decimal column (`numeric(15,2)`, `decimal(15,2) unsigned`).
    fn decimal_scale(&self) -> Option<u32> {
        if self.kind != ColKind::Decimal {
            return None;
        }
        let args = self.sql_type.split_once('(')?.1.split_once(')')?.0;
        args.split_once(',')?.1.trim().parse().ok()
    }
}

/// The method of hashing rows, agreed for a pair of sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowHash {
    /// md5 of the canonical row text (any pair of sides).
    Text,
    /// PostgreSQL's `hash_record_extended` over the values (two PostgreSQL 14+ sides whose
    /// column types hash alike).
    Native,
}

/// PostgreSQL types whose value hash is a function of the value alone (not of a collation,
/// an OID or a normalisation looser than the canonical text), by `typname`.
fn pg_native_family(type_name: &str, kind: ColKind) -> Option<&str> {
    Some(match type_name {
        "int2" | "int4" | "int8" => "int",
        "text" | "varchar" | "name" | "citext" => "text",
        "numeric" | "float4" | "float8" | "bool" | "bytea" | "date" | "timestamp"
        | "timestamptz" | "time" | "uuid" | "jsonb" | "bpchar" => type_name,
        _ if kind == ColKind::Text => "enum",
        _ => return None,
    })
}

/// Agrees, for one pair of sides, how each column is hashed (setting [`Column::form`] on
/// both lists) and which [`RowHash`] is used. `dialects` are the two sides' SQL dialects
/// (`None` for a side read locally); `native` says both are PostgreSQL 14 or later.
pub fn plan(
    src: &mut [Column],
    dst: &mut [Column],
    dialects: (Option<Dialect>, Option<Dialect>),
    native: bool,
) -> RowHash {
    let both_sql = dialects.0.is_some() && dialects.1.is_some();
    let both_pg = dialects == (Some(Dialect::Postgres), Some(Dialect::Postgres));
    for (s, d) in src.iter_mut().zip(dst.iter_mut()) {
        let padded = |c: &Column| matches!(c.type_name.as_str(), "bpchar" | "char");
        let elem = match (s.elem.as_ref().map(Elem::of), d.elem.as_ref().map(Elem::of)) {
            _ if both_pg => None,
            (Some(a), Some(b)) => Some(Elem {
                padded: a.padded || b.padded,
                uuid: a.uuid || b.uuid,
                ..a
            }),
            (a, b) => a.or(b),
        };
        let form = Form {
            counted: s.kind.needs_length() || d.kind.needs_length() || elem.is_some(),
            fixed_scale: both_sql
                && s.decimal_scale().is_some()
                && s.decimal_scale() == d.decimal_scale(),
            padded: elem.is_none() && (padded(s) || padded(d)),
            interval: s.kind == ColKind::Interval || d.kind == ColKind::Interval,
            elem,
        };
        s.form = form;
        d.form = form;
    }
    let same_families = src.iter().zip(dst.iter()).all(|(s, d)| {
        let f = pg_native_family(&s.type_name, s.kind);
        f.is_some() && f == pg_native_family(&d.type_name, d.kind)
    });
    if native && dialects == (Some(Dialect::Postgres), Some(Dialect::Postgres)) && same_families {
        RowHash::Native
    } else {
        RowHash::Text
    }
}

/// Quotes an identifier for `dialect` (the connectors' quoting).
pub fn quote_ident(d: Dialect, s: &str) -> String {
    match d {
        Dialect::Postgres => sluice_connectors::postgres::quote_ident(s),
        Dialect::Mysql => sluice_connectors::mysql::quote(s),
    }
}

/// Quotes a string literal for `dialect` (the connectors' quoting; MySQL's escapes
/// backslashes, the session runs without `NO_BACKSLASH_ESCAPES`).
pub fn quote_literal(d: Dialect, s: &str) -> String {
    match d {
        Dialect::Postgres => sluice_connectors::postgres::quote_literal(s),
        Dialect::Mysql => sluice_connectors::mysql::quote_literal(s),
    }
}

/// MySQL: strips trailing zeros (and then a trailing point) from a decimal's text.
pub(crate) fn my_trim_zeros(s: &str) -> String {
    format!("IF(LOCATE('.', {s}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s})), {s})")
}

/// MySQL: a float rounded to `digits` significant digits, as normalized decimal text.
pub(crate) fn my_float(c: &str, digits: u32) -> String {
    let rounded = format!(
        "CAST(ROUND(CAST({c} AS DECIMAL(65,30)), {} - FLOOR(LOG10(ABS({c})))) AS CHAR)",
        digits - 1
    );
    format!("IF({c} = 0, '0', {})", my_trim_zeros(&rounded))
}

/// The canonical value of one column (NULL stays NULL), as a SQL expression.
pub fn value_expr(d: Dialect, col: &Column) -> String {
    let c = quote_ident(d, &col.name);
    if let Some(e) = col.form.elem {
        match (d, &col.elem) {
            (Dialect::Postgres, Some(t)) => return arrays::pg_array(&c, t, e, false),
            (Dialect::Mysql, _) if matches!(col.kind, ColKind::Json | ColKind::Text) => {
                return arrays::my_array(&c, e);
            }
            _ => {}
        }
    }
    match d {
        Dialect::Postgres => match col.kind {
            // A text copy of a char(n) value keeps the padding `bpchar::text` strips.
            ColKind::Text if col.form.padded && col.type_name != "bpchar" => {
                format!("rtrim({c}::text, ' ')")
            }
            // Intervals: the session's IntervalStyle is iso_8601.
            ColKind::Int | ColKind::Text | ColKind::Other | ColKind::Json | ColKind::Interval => {
                format!("{c}::text")
            }
            // float8 -> numeric keeps 15 significant digits, float4 -> numeric 6.
            ColKind::Decimal | ColKind::Float8 | ColKind::Float4 => {
                format!("trim_scale({c}::numeric)::text")
            }
            ColKind::Bool => format!("({c}::int)::text"),
            ColKind::Binary => format!("encode({c}, 'hex')"),
            // The session runs with DateStyle ISO: `YYYY-MM-DD`.
            ColKind::Date => format!("{c}::text"),
            // to_char gives NULL for ±infinity: those keep their own text.
            ColKind::Timestamp => {
                format!("coalesce(to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US'), {c}::text)")
            }
            ColKind::TimestampTz => format!(
                "coalesce(to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
                 {c}::text)"
            ),
            ColKind::Time if col.form.interval => format!("{c}::interval::text"),
            ColKind::Time => format!("to_char({c}::interval, 'HH24:MI:SS.US')"),
        },
        Dialect::Mysql => match col.kind {
            // `CAST(bit AS CHAR)` gives the bytes; Sluice reads the number.
            ColKind::Int if col.type_name == "bit" => format!("CAST({c} + 0 AS CHAR)"),
            ColKind::Int | ColKind::Bool | ColKind::Other | ColKind::Json | ColKind::Interval => {
                format!("CAST({c} AS CHAR)")
            }
            ColKind::Decimal => format!(
                "IF({c} = 0, '0', {})",
                my_trim_zeros(&format!("CAST({c} AS CHAR)"))
            ),
            ColKind::Float8 => my_float(&c, 15),
            ColKind::Float4 => my_float(&c, 6),
            // CHAR returns its values without the padding; a text copy of one keeps it.
            ColKind::Text if col.form.padded && col.type_name != "char" => {
                format!("TRIM(TRAILING ' ' FROM CONVERT({c} USING utf8mb4))")
            }
            ColKind::Text => format!("CONVERT({c} USING utf8mb4)"),
            ColKind::Binary => format!("LOWER(HEX({c}))"),
            ColKind::Date => format!("CAST({c} AS CHAR)"),
            ColKind::Timestamp | ColKind::TimestampTz => {
                format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')")
            }
            ColKind::Time if col.form.interval => my_interval(&c),
            ColKind::Time => format!("TIME_FORMAT({c}, '%H:%i:%s.%f')"),
        },
    }
}

/// MySQL: a `TIME` (a signed duration up to 838:59:59.999999) as the canonical interval
/// text, `PT-1H-30M-0.5S`: `HOUR`…`MICROSECOND` give the parts without the sign.
fn my_interval(c: &str) -> String {
    let sign = format!("IF({c} < 0, '-', '')");
    format!(
        "CASE WHEN {c} IS NULL THEN NULL WHEN {c} = 0 THEN 'PT0S' ELSE CONCAT('PT', \
         IF(HOUR({c}) > 0, CONCAT({sign}, HOUR({c}), 'H'), ''), \
         IF(MINUTE({c}) > 0, CONCAT({sign}, MINUTE({c}), 'M'), ''), \
         IF(SECOND({c}) > 0 OR MICROSECOND({c}) > 0, CONCAT({sign}, SECOND({c}), \
           IF(MICROSECOND({c}) > 0, \
             CONCAT('.', TRIM(TRAILING '0' FROM LPAD(MICROSECOND({c}), 6, '0'))), ''), 'S'), \
           '')) END"
    )
}

/// The value to write back when repairing: the canonical value, except that floats keep
/// full precision (their shortest round-trip text) and arrays are a JSON array (see
/// [`arrays::pg_array`]; a MySQL side already holds one).
pub fn repair_expr(d: Dialect, col: &Column) -> String {
    let c = quote_ident(d, &col.name);
    if let Some(e) = col.form.elem {
        match (d, &col.elem) {
            (Dialect::Postgres, Some(t)) => return arrays::pg_array(&c, t, e, true),
            (Dialect::Mysql, _) => return format!("CAST({c} AS CHAR)"),
            _ => {}
        }
    }
    match (d, col.kind) {
        (Dialect::Postgres, ColKind::Float8 | ColKind::Float4) => format!("{c}::text"),
        (Dialect::Mysql, ColKind::Float8 | ColKind::Float4) => format!("CAST({c} AS CHAR)"),
        _ => value_expr(d, col),
    }
}

/// The value of one column inside the hashed row text: the canonical value, written the
/// cheapest way each database has of producing it. Inside `concat_ws` a column needs no
/// cast where the type's own output is the canonical text (PostgreSQL calls the output
/// function once; `::text` would go through it and a copy).
fn hashed_value(d: Dialect, col: &Column) -> String {
    let c = quote_ident(d, &col.name);
    if col.form.elem.is_some() {
        return value_expr(d, col);
    }
    match (d, col.kind) {
        (Dialect::Postgres, ColKind::Int | ColKind::Date) => c,
        (Dialect::Postgres, ColKind::Decimal) if col.form.fixed_scale => c,
        (Dialect::Postgres, ColKind::Text)
            if matches!(col.type_name.as_str(), "text" | "varchar") && !col.form.padded =>
        {
            c
        }
        // MySQL turns these into the canonical text itself inside CONCAT_WS (numbers and
        // dates as `CAST(… AS CHAR)` would, UTF-8 text as stored).
        (Dialect::Mysql, ColKind::Int) if col.type_name != "bit" => c,
        (Dialect::Mysql, ColKind::Date) => c,
        (Dialect::Mysql, ColKind::Decimal) if col.form.fixed_scale => c,
        (Dialect::Mysql, ColKind::Text)
            if col.utf8 && (!col.form.padded || col.type_name == "char") =>
        {
            c
        }
        _ => value_expr(d, col),
    }
}

/// The canonical row text of `cols`: tokens `N`, `<value>` or `<length>|<value>` (per
/// [`Column::form`]; the length in UTF-8 bytes, or in characters for `char(n)` columns)
/// joined by `|`.
///
/// Built by one `concat_ws('|', …)`, which skips NULL arguments: a column contributes its
/// value (a counted one its length first), and a nullable one also
/// `CASE WHEN col IS NULL THEN 'N' END`, so exactly one of the two is non-NULL. That is
/// cheaper than `coalesce(col::text, 'N')`, which needs the cast.
pub fn row_expr(d: Dialect, cols: &[Column]) -> String {
    // One group of arguments per column; each group has at least one non-NULL argument.
    let mut groups: Vec<Vec<String>> = Vec::new();
    for col in cols {
        let mut args = Vec::new();
        let c = quote_ident(d, &col.name);
        let v = hashed_value(d, col);
        if col.form.counted {
            args.push(match (col.form.padded, d) {
                // length() of a bpchar counts without the padding, as `::text` strips it.
                (true, Dialect::Postgres) if col.type_name == "bpchar" => format!("length({c})"),
                (true, Dialect::Postgres) => format!("length({v})"),
                (false, Dialect::Postgres) => format!("octet_length({v})"),
                (true, Dialect::Mysql) => format!("CHAR_LENGTH({v})"),
                (false, Dialect::Mysql) => format!("LENGTH({v})"),
            });
        }
        args.push(v);
        if !col.not_null {
            args.push(match d {
                Dialect::Postgres => format!("CASE WHEN {c} IS NULL THEN 'N' END"),
                Dialect::Mysql => format!("IF({c} IS NULL, 'N', NULL)"),
            });
        }
        groups.push(args);
    }
    match d {
        Dialect::Postgres => {
            // A PostgreSQL function takes at most 100 arguments: a wide table's columns are
            // joined in parts, then the parts. Each part holds whole columns, so it is never
            // NULL and the text is the same as one flat concat_ws would give.
            let flat = |g: &[Vec<String>]| {
                let args: Vec<&str> = g.iter().flatten().map(String::as_str).collect();
                format!("concat_ws('|', {})", args.join(", "))
            };
            if groups.iter().map(Vec::len).sum::<usize>() < PG_MAX_ARGS {
                return flat(&groups);
            }
            let mut parts = Vec::new();
            let mut start = 0;
            let mut n = 0;
            for (i, g) in groups.iter().enumerate() {
                if n + g.len() >= PG_MAX_ARGS {
                    parts.push(flat(&groups[start..i]));
                    start = i;
                    n = 0;
                }
                n += g.len();
            }
            parts.push(flat(&groups[start..]));
            format!("concat_ws('|', {})", parts.join(", "))
        }
        Dialect::Mysql => {
            let args: Vec<&str> = groups.iter().flatten().map(String::as_str).collect();
            format!("CONCAT_WS('|', {})", args.join(", "))
        }
    }
}

/// PostgreSQL's `FUNC_MAX_ARGS`.
const PG_MAX_ARGS: usize = 100;

/// The row's hash as an integer: the first 15 hex digits (60 bits) of md5 of the row text,
/// or PostgreSQL's 64-bit value hash of the row.
pub fn hash_expr(d: Dialect, cols: &[Column], how: RowHash) -> String {
    if how == RowHash::Native && d == Dialect::Postgres {
        let fields: Vec<String> = cols.iter().flat_map(native_fields).collect();
        // hash_record_extended combines columns linearly (31·h + next), so a sum of raw row
        // hashes would barely notice values swapped between two rows of a bucket: each row
        // hash goes through one more, non-linear hash before it is summed.
        return format!(
            "hashtextextended(hash_record_extended(ROW({}), 0)::text, 0)",
            fields.join(", ")
        );
    }
    let row = row_expr(d, cols);
    match d {
        Dialect::Postgres => format!("('x' || substr(md5({row}), 1, 15))::bit(60)::bigint"),
        Dialect::Mysql => format!("CAST(CONV(LEFT(MD5({row}), 15), 16, 10) AS UNSIGNED)"),
    }
}

/// What one column contributes to the row of the native hash, so that values the canonical
/// text tells apart never hash alike: PostgreSQL's value hashes fold 64-bit integers (and
/// timestamps and times, which are 64-bit inside) to 32 bits, and hash NULL, float zero and
/// numeric NaN/±Infinity all as 0.
fn native_fields(col: &Column) -> Vec<String> {
    let c = quote_ident(Dialect::Postgres, &col.name);
    match col.kind {
        ColKind::Text | ColKind::Json => vec![format!("{c}::text COLLATE \"C\"")],
        // Both 32-bit halves (sign-extended high, low), for every integer type alike.
        ColKind::Int => vec![
            format!("({c}::int8 >> 32)"),
            format!("({c}::int8 & 4294967295)"),
        ],
        ColKind::Timestamp | ColKind::TimestampTz | ColKind::Time => vec![format!("{c}::text")],
        // NULL, NaN, Infinity and -Infinity all hash as 0: a marker tells them apart (NULL
        // for every finite value, so it costs two comparisons).
        ColKind::Decimal => vec![
            c.clone(),
            format!(
                "CASE WHEN {c} > '-Infinity' AND {c} < 'Infinity' THEN NULL \
                 WHEN {c} IS NULL THEN 'N' ELSE {c}::text END"
            ),
        ],
        // NULL hashes like 0.0.
        ColKind::Float8 | ColKind::Float4 if !col.not_null => {
            vec![c.clone(), format!("CASE WHEN {c} IS NULL THEN 'N' END")]
        }
        _ => vec![c],
    }
}

/// `count(*)` and the sum of row hashes (as decimal text; `0` when empty).
pub fn checksum_select(d: Dialect, cols: &[Column], how: RowHash) -> String {
    let h = hash_expr(d, cols, how);
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
        Column::new(name, kind, "")
    }

    fn pg(name: &str, kind: ColKind, ty: &str, typname: &str) -> Column {
        let mut c = Column::new(name, kind, ty);
        c.type_name = typname.into();
        c
    }

    #[test]
    fn kinds_from_catalog_types() {
        assert_eq!(ColKind::of_postgres("int8", "b"), ColKind::Int);
        assert_eq!(ColKind::of_postgres("mood", "e"), ColKind::Text);
        assert_eq!(ColKind::of_postgres("interval", "b"), ColKind::Interval);
        assert_eq!(ColKind::of_postgres("_int4", "b"), ColKind::Other);
        assert_eq!(ColKind::of_mysql("BIGINT"), ColKind::Int);
        assert_eq!(ColKind::of_mysql("longblob"), ColKind::Binary);
        assert_eq!(ColKind::of_mysql("geometry"), ColKind::Binary);
        assert_eq!(ColKind::of_mysql("multipolygon"), ColKind::Binary);
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
        assert_eq!(
            my,
            "CONCAT_WS('|', LENGTH(`a`), `a`, IF(`a` IS NULL, 'N', NULL), `b`, \
             IF(`b` IS NULL, 'N', NULL))"
        );
        let mut strict = cols.clone();
        strict.iter_mut().for_each(|c| c.not_null = true);
        assert_eq!(
            row_expr(Dialect::Postgres, &strict),
            "concat_ws('|', octet_length(\"a\"::text), \"a\"::text, \"b\")"
        );
        // Text in another character set is converted to UTF-8 first.
        strict[0].utf8 = false;
        assert_eq!(
            row_expr(Dialect::Mysql, &strict),
            "CONCAT_WS('|', LENGTH(CONVERT(`a` USING utf8mb4)), CONVERT(`a` USING utf8mb4), `b`)"
        );
    }

    #[test]
    fn plan_agrees_forms_for_a_pair() {
        let mut src = vec![
            pg("id", ColKind::Int, "integer", "int4"),
            pg("price", ColKind::Decimal, "numeric(15,2)", "numeric"),
            pg("raw", ColKind::Decimal, "numeric", "numeric"),
            pg("note", ColKind::Int, "integer", "int4"),
        ];
        let mut dst = vec![
            pg("id", ColKind::Int, "bigint", "int8"),
            pg(
                "price",
                ColKind::Decimal,
                "decimal(15,2) unsigned",
                "decimal",
            ),
            pg("raw", ColKind::Decimal, "decimal(20,4)", "decimal"),
            pg("note", ColKind::Text, "text", "text"),
        ];
        let sql = (Some(Dialect::Postgres), Some(Dialect::Mysql));
        assert_eq!(plan(&mut src, &mut dst, sql, true), RowHash::Text);
        let fixed: Vec<bool> = src.iter().map(|c| c.form.fixed_scale).collect();
        assert_eq!(fixed, [false, true, false, false]);
        // A column that is text on either side is counted on both.
        assert!(src[3].form.counted && dst[3].form.counted && !src[0].form.counted);
        assert_eq!(hashed_value(Dialect::Mysql, &dst[1]), "`price`");
        // A locally read side keeps the trimmed decimal.
        assert_eq!(plan(&mut src, &mut dst, (sql.0, None), true), RowHash::Text);
        assert!(!src[1].form.fixed_scale);
    }

    #[test]
    fn native_hash_only_for_hash_compatible_postgres_pairs() {
        let cols = || {
            vec![
                pg("id", ColKind::Int, "integer", "int4"),
                pg("t", ColKind::Text, "character varying(9)", "varchar"),
                pg("m", ColKind::Text, "mood", "mood"),
            ]
        };
        let pgs = (Some(Dialect::Postgres), Some(Dialect::Postgres));
        let (mut a, mut b) = (cols(), cols());
        b[0] = pg("id", ColKind::Int, "bigint", "int8");
        b[1] = pg("t", ColKind::Text, "text", "text");
        assert_eq!(plan(&mut a, &mut b, pgs, true), RowHash::Native);
        assert_eq!(plan(&mut a, &mut b, pgs, false), RowHash::Text);
        let h = hash_expr(Dialect::Postgres, &a, RowHash::Native);
        assert_eq!(
            h,
            "hashtextextended(hash_record_extended(ROW((\"id\"::int8 >> 32), \
             (\"id\"::int8 & 4294967295), \"t\"::text COLLATE \"C\", \
             \"m\"::text COLLATE \"C\"), 0)::text, 0)"
        );
        // interval hashes '1 day' like '24 hours': never native.
        b[2] = pg("m", ColKind::Other, "interval", "interval");
        a[2] = b[2].clone();
        assert_eq!(plan(&mut a, &mut b, pgs, true), RowHash::Text);
        // bpchar and text disagree on trailing spaces.
        let (mut a, mut b) = (cols(), cols());
        a[1] = pg("t", ColKind::Text, "character(9)", "bpchar");
        assert_eq!(plan(&mut a, &mut b, pgs, true), RowHash::Text);
    }

    #[test]
    fn floats_round_to_significant_digits() {
        let e = value_expr(Dialect::Mysql, &col("f", ColKind::Float8));
        assert!(e.contains("14 - FLOOR(LOG10(ABS(`f`)))"), "{e}");
        let e = value_expr(Dialect::Mysql, &col("f", ColKind::Float4));
        assert!(e.contains("5 - FLOOR"), "{e}");
    }

    #[test]
    fn wide_rows_stay_under_postgres_argument_limit() {
        let cols: Vec<Column> = (0..60)
            .map(|i| col(&format!("c{i}"), ColKind::Text))
            .collect();
        let e = row_expr(Dialect::Postgres, &cols);
        // 60 nullable counted columns: 180 arguments, in parts of whole columns.
        assert!(
            e.starts_with("concat_ws('|', concat_ws('|', octet_length(\"c0\"::text)"),
            "{e}"
        );
        assert_eq!(e.matches("concat_ws(").count(), 3, "{e}");
        let narrow = row_expr(Dialect::Postgres, &cols[..30]);
        assert_eq!(narrow.matches("concat_ws(").count(), 1, "{narrow}");
    }

    #[test]
    fn char_copies_intervals_and_arrays_agree_per_pair() {
        let mut src = vec![
            pg("code", ColKind::Text, "character(6)", "bpchar"),
            pg("d", ColKind::Interval, "interval", "interval"),
            pg("tags", ColKind::Other, "text[]", "_text"),
        ];
        src[2].elem = Some(ElemType {
            kind: ColKind::Text,
            type_name: "text".into(),
        });
        let mut dst = vec![
            pg("code", ColKind::Text, "longtext", "longtext"),
            pg("d", ColKind::Time, "time(6)", "time"),
            pg("tags", ColKind::Json, "longtext", "longtext"),
        ];
        let pair = (Some(Dialect::Postgres), Some(Dialect::Mysql));
        plan(&mut src, &mut dst, pair, false);
        // char(n) on one side: both sides drop trailing spaces.
        assert!(src[0].form.padded && dst[0].form.padded);
        assert_eq!(value_expr(Dialect::Postgres, &src[0]), "\"code\"::text");
        assert_eq!(
            value_expr(Dialect::Mysql, &dst[0]),
            "TRIM(TRAILING ' ' FROM CONVERT(`code` USING utf8mb4))"
        );
        // A MySQL TIME against an interval is written as one.
        assert!(dst[1].form.interval);
        assert!(value_expr(Dialect::Mysql, &dst[1]).contains("'PT0S'"));
        // Arrays element by element on both sides, counted.
        assert_eq!(
            src[2].form.elem.map(|e| e.kind),
            Some(ColKind::Text),
            "{:?}",
            src[2].form
        );
        assert!(value_expr(Dialect::Postgres, &src[2]).contains("unnest(\"tags\")"));
        assert!(value_expr(Dialect::Mysql, &dst[2]).contains("JSON_TABLE("));
        assert!(repair_expr(Dialect::Postgres, &src[2]).contains("to_json("));
        // Two PostgreSQL sides compare arrays by their own text.
        let mut other = src.clone();
        plan(
            &mut src,
            &mut other,
            (Some(Dialect::Postgres), Some(Dialect::Postgres)),
            false,
        );
        assert_eq!(src[2].form.elem, None);
        assert_eq!(value_expr(Dialect::Postgres, &src[2]), "\"tags\"::text");
    }
}
