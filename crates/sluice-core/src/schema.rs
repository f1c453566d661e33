//! Table names as written in SQL, and table schemas.
//!
//! A [`TableId`] is a dotted path of identifiers: `orders`, `public.orders`,
//! `public."Order Items"`. A part in double quotes may hold anything; a quote inside it is
//! doubled (`"say ""hi"""`). Unquoted parts are taken verbatim (no case folding), so
//! `Orders` and `"Orders"` name the same table; quote a part that has spaces, dots or quotes.
//! [`TableId`]'s `Display` writes the SQL form back, quoting any part that is not a plain
//! lower-case identifier, so a name always survives a round trip through logs and job files.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::LogicalType;

/// A table name: one or more identifier parts (`[schema, table]`, or `[table]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    parts: Vec<String>,
}

impl TableId {
    /// A table id from raw (unquoted) parts.
    pub fn new<I, S>(parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TableId {
            parts: parts.into_iter().map(Into::into).collect(),
        }
    }

    /// The raw parts, without quotes.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// The last part: the table's own name.
    pub fn name(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or("")
    }

    /// The parts before the last one (the schema), if any.
    pub fn namespace(&self) -> Option<&str> {
        (self.parts.len() > 1).then(|| self.parts[self.parts.len() - 2].as_str())
    }

    /// Parses a name as written in SQL. See the module docs.
    pub fn parse(s: &str) -> Result<Self> {
        let parts = split_sql_path(s)?;
        Ok(TableId { parts })
    }

    /// This id with `ns` as namespace in place of the current one.
    pub fn with_namespace(&self, ns: Option<&str>) -> TableId {
        let mut parts: Vec<String> = ns.map(|n| vec![n.to_string()]).unwrap_or_default();
        parts.push(self.name().to_string());
        TableId { parts }
    }

    /// Whether a plain lower-case identifier can be written without quotes.
    fn needs_quotes(part: &str) -> bool {
        let mut chars = part.chars();
        match chars.next() {
            Some(c) if c.is_ascii_lowercase() || c == '_' => {}
            _ => return true,
        }
        !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }
}

/// Splits `a."b.c".d` into `["a", "b.c", "d"]`. Shared by table names and globs.
pub fn split_sql_path(s: &str) -> Result<Vec<String>> {
    let bad = |why: &str| {
        Error::config(format!("invalid table name {s:?}: {why}")).with_hint(
            "write names as in SQL: public.orders, or public.\"Order Items\" where a name has \
             spaces, dots or quotes (double a quote inside quotes)",
        )
    };
    let mut parts = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(bad("unterminated quote")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                }
            }
            match chars.peek() {
                None | Some('.') => {}
                Some(_) => return Err(bad("text after a closing quote")),
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' {
                    return Err(bad("a quote inside an unquoted name"));
                }
                part.push(c);
                chars.next();
            }
            if part.trim() != part || part.is_empty() {
                return Err(bad("empty name part or stray spaces"));
            }
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => unreachable!("loop above stops only at '.' or the end"),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            if Self::needs_quotes(p) {
                write!(f, "\"{}\"", p.replace('"', "\"\""))?;
            } else {
                f.write_str(p)?;
            }
        }
        Ok(())
    }
}

impl FromStr for TableId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TableId::parse(s)
    }
}

impl Serialize for TableId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TableId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TableId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A pattern over table names: `public.*`, `*`, `sales.order_?`, `"My Schema".*`.
///
/// Each part is matched separately, so `*` never crosses a dot. A pattern with fewer parts
/// than the name matches its last parts (`orders` matches `public.orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    parts: Vec<String>,
    text: String,
}

impl TablePattern {
    /// Parses a pattern written like a table name, where unquoted parts may use `*` and `?`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(TablePattern {
            parts: split_sql_path(s)?,
            text: s.to_string(),
        })
    }

    /// Whether the pattern has any wildcard.
    pub fn is_glob(&self) -> bool {
        self.parts.iter().any(|p| p.contains(['*', '?']))
    }

    /// Whether `id` matches.
    pub fn matches(&self, id: &TableId) -> bool {
        let ip = id.parts();
        if self.parts.len() > ip.len() {
            return false;
        }
        let tail = &ip[ip.len() - self.parts.len()..];
        self.parts
            .iter()
            .zip(tail)
            .all(|(p, n)| wildcard_match(p, n))
    }
}

/// Parses every pattern of a `key` option, collecting errors instead of stopping at the first.
pub fn parse_patterns(list: &[String], key: &str, errors: &mut Vec<Error>) -> Vec<TablePattern> {
    list.iter()
        .filter_map(|t| match TablePattern::parse(t) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(e.context(format!("`{key}`")));
                None
            }
        })
        .collect()
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for TablePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TablePattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TablePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// `*` any run of characters, `?` one character; everything else literal.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The shape of one table: Arrow fields (with logical types in metadata where needed) and
/// the primary key, if the source has one.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The table's name in its own system.
    pub id: TableId,
    /// Columns in order.
    pub arrow: SchemaRef,
    /// Names of the primary-key columns, in key order; empty if there is none.
    pub primary_key: Vec<String>,
}

impl TableSchema {
    /// A schema with no primary key.
    pub fn new(id: TableId, arrow: SchemaRef) -> Self {
        TableSchema {
            id,
            arrow,
            primary_key: Vec::new(),
        }
    }

    /// The logical type of every column, in order.
    pub fn logical_types(&self) -> Result<Vec<(String, LogicalType, bool)>> {
        self.arrow
            .fields()
            .iter()
            .map(|f| Ok((f.name().clone(), LogicalType::of_field(f)?, f.is_nullable())))
            .collect()
    }

    /// An empty Arrow schema, for tests and placeholders.
    pub fn empty(id: TableId) -> Self {
        Self::new(id, Arc::new(Schema::empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_quoted_names() {
        let t = TableId::parse(r#"public."Order Items""#).unwrap();
        assert_eq!(t.parts(), ["public", "Order Items"]);
        assert_eq!(t.to_string(), r#"public."Order Items""#);
        let t = TableId::parse(r#""x""; DROP TABLE y; --""#).unwrap();
        assert_eq!(t.parts(), [r#"x"; DROP TABLE y; --"#]);
        let t = TableId::parse(r#""a.b".c"#).unwrap();
        assert_eq!(t.parts(), ["a.b", "c"]);
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [r#"public."oops"#, "a..b", "", r#"a"b"#, r#""a"b"#, " a"] {
            assert!(TableId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn patterns_match_per_part() {
        let p = TablePattern::parse("public.*").unwrap();
        assert!(p.matches(&TableId::new(["public", "orders"])));
        assert!(!p.matches(&TableId::new(["sales", "orders"])));
        let p = TablePattern::parse("*").unwrap();
        assert!(p.matches(&TableId::new(["public", "a.b"])));
        let p = TablePattern::parse("order?").unwrap();
        assert!(p.matches(&TableId::new(["orders"])));
        assert!(!p.matches(&TableId::new(["orderss"])));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(parts in proptest::collection::vec(".{1,8}", 1..4)) {
            let id = TableId::new(parts);
            let back = TableId::parse(&id.to_string()).unwrap();
            prop_assert_eq!(back, id);
        }
    }
}
