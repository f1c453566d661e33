//! Job-file plumbing shared by every component: parsing with locations, `${env:…}` and
//! `${file:…}` interpolation, secret redaction, and errors that say where and what.
//!
//! ## How a job file is read
//!
//! 1. The TOML text is parsed into a tree that remembers the span of every key and value.
//! 2. The tree is converted into a `serde_json::Value` (the same shape the REST API accepts),
//!    resolving `${env:NAME}` and `${file:PATH}` in strings on the way. Resolved values are
//!    registered as secrets, and so is any password found in a connection string (see
//!    [`crate::redact`]); [`redact`] removes them from anything printed.
//! 3. The value is deserialized into the caller's type with `serde_path_to_error`. A failure
//!    is mapped back to the span of the offending key through its path, and unknown keys or
//!    variants get a "did you mean" computed from the accepted names that serde lists.
//!
//! Sections whose shape depends on `type` (`[source]`, `[sink]`, `[[transform]]`) are
//! deserialized with [`deserialize_tagged`], which keeps the inner path so errors there point
//! at the right line too (serde's own internally tagged enums lose it).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::Error;

/// Marks a nested path inside a serde error message (see [`deserialize_tagged`]).
const PATH_MARK: char = '\u{1}';

pub use crate::redact::{mask_passwords, redact, register_connection_secrets, register_secret};

/// Where something is in a config file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    /// Byte range in the file.
    pub span: std::ops::Range<usize>,
}

/// A config problem, located in its file when possible.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file name as given by the user.
    pub file: String,
    /// Where in the file, if known.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// What is accepted / "did you mean".
    pub hint: Option<String>,
    /// The offending line, for display.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{}:{}:{}: {}", self.file, l.line, l.column, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        Ok(())
    }
}

impl ConfigError {
    /// A multi-line rendering: location and message, the offending line with a caret, hint.
    pub fn render(&self) -> String {
        let mut s = redact(&self.to_string());
        if let (Some(l), Some(line)) = (&self.location, &self.snippet) {
            let num = l.line.to_string();
            let pad = " ".repeat(num.len());
            let width = l
                .span
                .len()
                .clamp(1, line.len().saturating_sub(l.column - 1).max(1));
            s.push_str(&format!(
                "\n{pad} |\n{num} | {}\n{pad} | {}{}",
                redact(line),
                " ".repeat(l.column - 1),
                "^".repeat(width)
            ));
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("\n  = help: {}", redact(h)));
        }
        s
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        let mut err = Error::config(e.to_string());
        if let Some(h) = e.hint {
            err = err.with_hint(h);
        }
        err
    }
}

/// How `${env:NAME}` is resolved (the process environment, or a map in tests).
type EnvLookup = fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A parsed config document: the value tree plus the spans of every path.
#[derive(Debug, Clone)]
pub struct ConfigDoc {
    file: String,
    text: String,
    env: EnvLookup,
    /// Value tree after interpolation.
    pub value: Value,
    /// `path` ("source.tables[0]") → (key span, value span).
    spans: HashMap<String, (std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl ConfigDoc {
    /// Parses TOML `text` read from `file`, resolving `${env:…}` and `${file:…}`.
    pub fn parse_toml(file: &str, text: &str) -> Result<ConfigDoc, ConfigError> {
        Self::parse_toml_with_env(file, text, process_env)
    }

    /// [`parse_toml`](Self::parse_toml) with `${env:NAME}` resolved by `env`.
    pub fn parse_toml_with_env(
        file: &str,
        text: &str,
        env: EnvLookup,
    ) -> Result<ConfigDoc, ConfigError> {
        let mut doc = ConfigDoc {
            file: file.to_string(),
            text: text.to_string(),
            env,
            value: Value::Null,
            spans: HashMap::new(),
        };
        let table = match toml::de::DeTable::parse(text) {
            Ok(t) => t,
            Err(e) => {
                let span = e.span();
                let msg = e.message().trim().to_string();
                return Err(doc.error_at_span(span, format!("invalid TOML: {msg}"), None));
            }
        };
        let mut root = serde_json::Map::new();
        for (k, v) in table.get_ref().iter() {
            let key = k.get_ref().to_string();
            doc.spans.insert(key.clone(), (k.span(), v.span()));
            let val = doc.convert(&key, v)?;
            root.insert(key, val);
        }
        doc.value = Value::Object(root);
        Ok(doc)
    }

    /// A document from JSON (REST API); errors carry paths but no line numbers.
    pub fn from_json(name: &str, value: Value) -> ConfigDoc {
        ConfigDoc {
            file: name.to_string(),
            text: String::new(),
            env: process_env,
            value,
            spans: HashMap::new(),
        }
    }

    /// A document from JSON with `${env:NAME}` and `${file:PATH}` resolved in every string, as
    /// a TOML file's are (the REST API stores the references, and resolves them at each load).
    pub fn from_json_resolved(name: &str, value: Value) -> Result<ConfigDoc, ConfigError> {
        let mut doc = ConfigDoc::from_json(name, Value::Null);
        doc.value = doc.resolve_json("", value)?;
        Ok(doc)
    }

    fn resolve_json(&self, path: &str, v: Value) -> Result<Value, ConfigError> {
        Ok(match v {
            Value::String(s) => {
                Value::String(self.interpolate(path, &s, 0..0).map_err(|mut e| {
                    if !path.is_empty() {
                        e.message = format!("`{path}`: {}", e.message);
                    }
                    e
                })?)
            }
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| self.resolve_json(&format!("{path}[{i}]"), item))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, item)| {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        Ok((k, self.resolve_json(&p, item)?))
                    })
                    .collect::<Result<_, ConfigError>>()?,
            ),
            other => other,
        })
    }

    fn convert(
        &mut self,
        path: &str,
        v: &toml::Spanned<toml::de::DeValue<'_>>,
    ) -> Result<Value, ConfigError> {
        use toml::de::DeValue as D;
        Ok(match v.get_ref() {
            D::String(s) => Value::String(self.interpolate(path, s, v.span())?),
            D::Integer(i) => {
                let n = i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| {
                    self.error_at_span(Some(v.span()), "integer out of range".into(), None)
                })?;
                Value::from(n)
            }
            D::Float(f) => {
                let x: f64 = f.as_str().parse().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(x)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
            D::Boolean(b) => Value::Bool(*b),
            D::Datetime(d) => Value::String(d.to_string()),
            D::Array(a) => {
                let mut out = Vec::new();
                for (i, item) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.spans.insert(p.clone(), (item.span(), item.span()));
                    out.push(self.convert(&p, item)?);
                }
                Value::Array(out)
            }
            D::Table(t) => {
                let mut out = serde_json::Map::new();
                for (k, item) in t.iter() {
                    let key = k.get_ref().to_string();
                    let p = format!("{path}.{key}");
                    self.spans.insert(p.clone(), (k.span(), item.span()));
                    let val = self.convert(&p, item)?;
                    out.insert(key, val);
                }
                Value::Object(out)
            }
        })
    }

    /// Resolves `${env:NAME}` and `${file:PATH}` inside `s`.
    fn interpolate(
        &self,
        _path: &str,
        s: &str,
        span: std::ops::Range<usize>,
    ) -> Result<String, ConfigError> {
        if !s.contains("${") {
            register_connection_secrets(s);
            return Ok(s.to_string());
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(self.error_at_span(
                    Some(span),
                    "unterminated `${` in string".into(),
                    Some("write ${env:NAME} or ${file:PATH}".into()),
                ));
            };
            let expr = &after[..end];
            let resolved = if let Some(name) = expr.strip_prefix("env:") {
                (self.env)(name).ok_or_else(|| {
                    self.error_at_span(
                        Some(span.clone()),
                        format!("environment variable {name} is not set"),
                        Some(format!(
                            "export {name}=… before running, or remove ${{env:{name}}}"
                        )),
                    )
                })?
            } else if let Some(p) = expr.strip_prefix("file:") {
                let content = std::fs::read_to_string(p).map_err(|e| {
                    self.error_at_span(
                        Some(span.clone()),
                        format!("cannot read secret file {p}: {e}"),
                        Some("check the path given in ${file:PATH}".into()),
                    )
                })?;
                content.trim_end_matches(['\n', '\r']).to_string()
            } else {
                return Err(self.error_at_span(
                    Some(span),
                    format!("unknown interpolation `${{{expr}}}`"),
                    Some("accepted: ${env:NAME} and ${file:PATH}".into()),
                ));
            };
            register_secret(&resolved);
            out.push_str(&resolved);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        register_connection_secrets(&out);
        Ok(out)
    }

    /// The file name given at parse time.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The location of `path` ("source.tables[0]"): its key if `key` is true, else its value.
    pub fn locate(&self, path: &str, key: bool) -> Option<Location> {
        let (k, v) = self.spans.get(path)?;
        Some(self.location_of(if key { k.clone() } else { v.clone() }))
    }

    fn location_of(&self, span: std::ops::Range<usize>) -> Location {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        Location {
            line,
            column: col,
            span,
        }
    }

    fn error_at_span(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: String,
        hint: Option<String>,
    ) -> ConfigError {
        // A JSON document (the REST API) has no text to locate in.
        let location = span
            .filter(|_| !self.text.is_empty())
            .map(|s| self.location_of(s));
        let snippet = location
            .as_ref()
            .and_then(|l| self.text.lines().nth(l.line - 1))
            .map(str::to_string);
        ConfigError {
            file: self.file.clone(),
            location,
            message,
            hint,
            snippet,
        }
    }

    /// An error about the value (or key) at `path`, for validation done after parsing.
    pub fn error_at(
        &self,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        let span = self.spans.get(path).map(|(_, v)| v.clone());
        let mut message = message.into();
        // A JSON document has no lines to point at: the message names the key instead.
        if self.text.is_empty() && !path.is_empty() {
            message = format!("`{path}`: {message}");
        }
        self.error_at_span(span, message, hint)
    }

    /// An error about bytes `range` of the string value at `path` (a spot inside an
    /// expression, say): located at exactly those bytes when the string is written without
    /// escapes or interpolation, else at the whole value.
    pub fn error_in_string(
        &self,
        path: &str,
        range: std::ops::Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        let span = self.spans.get(path).map(|(_, v)| v.clone());
        let exact = span.as_ref().and_then(|v| {
            let raw = self.text.get(v.clone())?;
            let value = self.value_at(path)?.as_str()?;
            ["\"\"\"", "'''", "\"", "'"].iter().find_map(|q| {
                let inner = raw.strip_prefix(q)?.strip_suffix(q)?;
                // A multi-line string drops a newline right after its opening delimiter.
                let skip = if q.len() == 3 {
                    inner.len() - inner.trim_start_matches(['\r', '\n']).len()
                } else {
                    0
                };
                (&inner[skip.min(inner.len())..] == value).then(|| {
                    let start = v.start + q.len() + skip + range.start.min(value.len());
                    start..start + range.len()
                })
            })
        });
        self.error_at_span(exact.or(span), message.into(), hint)
    }

    /// The value at `path` ("transform[0].where").
    /// Whether the document has a value at `path` (`source.rate`).
    pub fn has(&self, path: &str) -> bool {
        self.value_at(path).is_some()
    }

    fn value_at(&self, path: &str) -> Option<&Value> {
        let mut v = &self.value;
        for seg in split_path(path) {
            v = match seg {
                Seg::Key(k) => v.get(k)?,
                Seg::Index(i) => v.get(i)?,
            };
        }
        Some(v)
    }

    /// Deserializes the whole document into `T`, with located errors.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(self.value.clone()).map_err(|e| {
            let outer = e.path().to_string();
            self.explain(&outer, &e.inner().to_string())
        })
    }

    /// Turns a serde message at `outer` into a located, helpful error.
    fn explain(&self, outer: &str, raw: &str) -> ConfigError {
        // Unwrap nested paths recorded by `deserialize_tagged`.
        let mut path = if outer == "." {
            String::new()
        } else {
            outer.to_string()
        };
        let mut msg = raw.to_string();
        while let Some(rest) = msg.strip_prefix(PATH_MARK) {
            let Some(end) = rest.find(PATH_MARK) else {
                break;
            };
            let inner = &rest[..end];
            if !inner.is_empty() && inner != "." {
                path = join_path(&path, inner);
            }
            msg = rest[end + 1..].to_string();
        }
        let section = section_name(&path);
        let section = match parse_unknown(&msg, "unknown field") {
            Some((w, _)) if path == w || path.ends_with(&format!(".{w}")) => {
                section_name(&path[..path.len() - w.len()])
            }
            _ => section,
        };
        // Unknown key: point at the key and suggest the closest accepted one.
        if let Some((word, accepted)) = parse_unknown(&msg, "unknown field") {
            let key_path = self.find_key(&path, &word);
            let span = key_path
                .as_ref()
                .and_then(|p| self.spans.get(p))
                .map(|(k, _)| k.clone());
            let hint = suggestion(&word, &accepted, "keys");
            return self.error_at_span(span, format!("unknown key `{word}` in {section}"), hint);
        }
        if let Some((word, accepted)) = parse_unknown(&msg, "unknown variant") {
            // The offending value is the `type` key, or the path itself.
            let tpath = join_path(&path, "type");
            let span = self
                .spans
                .get(&tpath)
                .filter(|_| !self.spans.contains_key(&path) || self.value_is_object(&path))
                .or_else(|| self.spans.get(&path))
                .map(|(_, v)| v.clone());
            let hint = suggestion(&word, &accepted, "values");
            return self.error_at_span(span, format!("unknown value `{word}` in {section}"), hint);
        }
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            let span = self.spans.get(&path).map(|(k, _)| k.clone());
            let what = if path.is_empty() {
                "the job file".to_string()
            } else {
                section.clone()
            };
            return self.error_at_span(
                span,
                format!("missing key `{field}` in {what}"),
                Some(format!("add `{field} = …` to {what}")),
            );
        }
        let span = self.spans.get(&path).map(|(_, v)| v.clone());
        let (msg, hint) = match msg.split_once("; ") {
            Some((m, h)) if h.starts_with("accepted") || h.starts_with("write") => {
                (m.to_string(), Some(h.to_string()))
            }
            _ => (msg, None),
        };
        let what = if path.is_empty() {
            String::new()
        } else {
            format!("`{path}`: ")
        };
        self.error_at_span(span, format!("{what}{msg}"), hint)
    }

    fn value_is_object(&self, path: &str) -> bool {
        self.value_at(path).is_some_and(Value::is_object)
    }

    /// The full path of key `word` at or below `path` (the nearest one).
    fn find_key(&self, path: &str, word: &str) -> Option<String> {
        // serde_path_to_error sometimes includes the unknown key itself in the path.
        if (path == word || path.ends_with(&format!(".{word}"))) && self.spans.contains_key(path) {
            return Some(path.to_string());
        }
        let direct = join_path(path, word);
        if self.spans.contains_key(&direct) {
            return Some(direct);
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}.")
        };
        let suffix = format!(".{word}");
        self.spans
            .keys()
            .filter(|k| k.starts_with(&prefix) && (k.ends_with(&suffix) || *k == word))
            .min_by_key(|k| k.len())
            .cloned()
    }
}

fn join_path(a: &str, b: &str) -> String {
    match (a.is_empty(), b.starts_with('[')) {
        (true, _) => b.to_string(),
        (false, true) => format!("{a}{b}"),
        (false, false) => format!("{a}.{b}"),
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut idx) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(r) = idx.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            if let Ok(i) = r[..end].parse() {
                out.push(Seg::Index(i));
            }
            idx = r.get(end + 1..).unwrap_or("");
        }
    }
    out
}

/// `[source]`, `[[transform]] #2`, or `the job file` for a path.
fn section_name(path: &str) -> String {
    let segs = split_path(path);
    match segs.as_slice() {
        [] => "the job file".to_string(),
        [Seg::Key(k), Seg::Index(i), ..] => format!("[[{k}]] #{}", i + 1),
        [Seg::Key(k), ..] => format!("[{k}]"),
        _ => format!("`{path}`"),
    }
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or
/// "there are no fields").
fn parse_unknown(msg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix(prefix)?.trim_start().strip_prefix('`')?;
    let end = rest.find('`')?;
    let word = rest[..end].to_string();
    let tail = &rest[end + 1..];
    let accepted = tail
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((word, accepted))
}

/// "did you mean `x`? accepted keys: a, b, c".
pub fn suggestion(word: &str, accepted: &[String], what: &str) -> Option<String> {
    if accepted.is_empty() {
        return Some(format!("this section takes no {what}"));
    }
    let best = accepted
        .iter()
        .map(|a| {
            (
                strsim::damerau_levenshtein(&word.to_lowercase(), &a.to_lowercase()),
                a,
            )
        })
        .min_by_key(|(d, _)| *d)
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .map(|(_, a)| a.clone());
    let list = accepted.join(", ");
    Some(match best {
        Some(b) => format!("did you mean `{b}`? accepted {what}: {list}"),
        None => format!("accepted {what}: {list}"),
    })
}

/// The candidate closest to `word` (case-insensitive edit distance), if close enough to be a
/// likely misspelling.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&w, &c.to_lowercase()), c))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, c)| *d <= 2.max(c.chars().count() / 3))
        .map(|(_, c)| c)
}

/// `s` as a TOML string: a literal string (`'public."Order Items"'`) when it can be one, else a
/// basic string with escapes. For hints that show a line to paste into a job file.
pub fn toml_string(s: &str) -> String {
    if !s.contains(['\'', '\n', '\r']) && !s.chars().any(char::is_control) {
        return format!("'{s}'");
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Splits `type` off an object, for hand-written tagged-enum deserializers.
///
/// Returns the tag and the rest. Use with [`deserialize_tagged`] on the rest.
pub fn split_tag<E: serde::de::Error>(
    value: Value,
    accepted: &[&'static str],
) -> Result<(String, Value), E> {
    let Value::Object(mut map) = value else {
        return Err(E::custom("expected a table with a `type` key"));
    };
    match map.remove("type") {
        Some(Value::String(t)) => Ok((t, Value::Object(map))),
        Some(_) => Err(E::custom("`type` must be a string")),
        None => Err(E::custom(format!(
            "missing key `type`; accepted types: {}",
            accepted.join(", ")
        ))),
    }
}

/// Deserializes one variant's body from `rest`, keeping the path of any error inside it so
/// [`ConfigDoc::deserialize`] can point at the right line.
pub fn deserialize_tagged<T: DeserializeOwned, E: serde::de::Error>(rest: Value) -> Result<T, E> {
    serde_path_to_error::deserialize(rest)
        .map_err(|e| E::custom(format!("{PATH_MARK}{}{PATH_MARK}{}", e.path(), e.inner())))
}

/// Implements `Deserialize` for an enum of `Variant(Config)` tuple variants, tagged by `type`,
/// with located errors, and `type_name()`. `tagged_enum!(SourceConfig { "csv" => Csv, "sqlite"
/// => Sqlite })` for an enum declared elsewhere; given the variants' types, it declares the
/// enum too, so a connector is one line of a registry table:
///
/// ```ignore
/// tagged_enum! {
///     /// A `[source]` section.
///     pub enum SourceConfig {
///         "csv" => Csv(files::CsvSourceConfig),
///         "sqlite" => Sqlite(sqlite::SqliteSourceConfig),
///     }
/// }
/// ```
#[macro_export]
macro_rules! tagged_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($tag:literal => $variant:ident($ty:ty)),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis enum $name {
            $(
                #[doc = concat!("`type = \"", $tag, "\"`")]
                $variant($ty),
            )+
        }
        $crate::tagged_enum!($name { $($tag => $variant),+ });
    };
    ($name:ident { $($tag:literal => $variant:ident),+ $(,)? }) => {
        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const ACCEPTED: &[&str] = &[$($tag),+];
                let v = <::serde_json::Value as ::serde::Deserialize>::deserialize(d)?;
                let (tag, rest) = $crate::config::split_tag::<D::Error>(v, ACCEPTED)?;
                match tag.as_str() {
                    $($tag => Ok($name::$variant($crate::config::deserialize_tagged(rest)?)),)+
                    other => Err(<D::Error as ::serde::de::Error>::unknown_variant(other, ACCEPTED)),
                }
            }
        }
        #[allow(dead_code)]
        impl $name {
            /// The `type` names this enum accepts.
            pub const TYPES: &'static [&'static str] = &[$($tag),+];

            /// The `type` name of this section.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => $tag,)+
                }
            }
        }
    };
}

/// A duration written as `10s`, `2h`, `1h 30m`, `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write durations like \"30s\", \"10m\", \"2h\""
                ))
            })
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Csv {
        #[allow(dead_code)]
        path: String,
        #[serde(default)]
        #[allow(dead_code)]
        delimiter: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sqlite {
        #[allow(dead_code)]
        url: String,
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Src {
        Csv(Csv),
        Sqlite(Sqlite),
    }
    tagged_enum!(Src { "csv" => Csv, "sqlite" => Sqlite });

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Job {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        #[serde(default)]
        parallelism: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[allow(dead_code)]
        job: Job,
        #[allow(dead_code)]
        source: Src,
    }

    fn err(text: &str) -> ConfigError {
        ConfigDoc::parse_toml("job.toml", text)
            .and_then(|d| d.deserialize::<File>())
            .unwrap_err()
    }

    #[test]
    fn misspelt_key_in_tagged_section_is_located_with_suggestion() {
        let e = err(
            "[job]\nname = \"x\"\n\n[source]\ntype = \"csv\"\npath = \"a.csv\"\ndelimter = \";\"\n",
        );
        let l = e.location.clone().unwrap();
        assert_eq!((l.line, l.column), (7, 1), "{e:?}");
        assert_eq!(e.message, "unknown key `delimter` in [source]");
        assert!(
            e.hint
                .as_ref()
                .unwrap()
                .starts_with("did you mean `delimiter`?"),
            "{e:?}"
        );
        assert!(e.render().contains("^^^^^^^^"));
    }

    #[test]
    fn misspelt_top_level_key_and_type() {
        let e =
            err("[job]\nname = \"x\"\nparalelism = 2\n[source]\ntype = \"csv\"\npath = \"a\"\n");
        assert_eq!(e.location.unwrap().line, 3);
        assert!(e.hint.unwrap().contains("did you mean `parallelism`"));
        let e = err("[job]\nname = \"x\"\n[source]\ntype = \"sqlit\"\nurl = \"a\"\n");
        assert_eq!(e.location.as_ref().unwrap().line, 4, "{e:?}");
        assert!(e.hint.unwrap().contains("did you mean `sqlite`"));
    }

    #[test]
    fn wrong_value_type_inside_tagged_section_is_located() {
        let e = err("[job]\nname = \"x\"\n[source]\ntype = \"csv\"\npath = 5\n");
        assert_eq!(e.location.as_ref().unwrap().line, 5, "{e:?}");
        assert!(e.message.contains("source.path"), "{e:?}");
    }

    #[test]
    fn missing_key_and_syntax_error() {
        let e = err("[job]\n[source]\ntype = \"csv\"\npath = \"a\"\n");
        assert!(e.message.contains("missing key `name`"), "{e:?}");
        let e = err("[job\nname = 1\n");
        assert_eq!(e.location.unwrap().line, 1);
        assert!(e.message.starts_with("invalid TOML"));
    }

    #[test]
    fn errors_inside_a_string_point_at_the_spot() {
        let text = "name = \"x\"\n\nwhere = \"a >= AND b\"\nw2 = 'c = d'\nw3 = \"\"\"\nx AND\"\"\"\nw4 = \"\\u0061 = AND\"\n";
        let d = ConfigDoc::parse_toml("j.toml", text).unwrap();
        let at = |path: &str, r: std::ops::Range<usize>| {
            let e = d.error_in_string(path, r, "bad", None);
            let l = e.location.clone().unwrap();
            (l.line, l.column, l.span.len())
        };
        assert_eq!(at("where", 5..8), (3, 15, 3));
        assert_eq!(at("w2", 4..5), (4, 11, 1));
        assert_eq!(at("w3", 2..5), (6, 3, 3));
        // An escape: the bytes cannot be mapped, the whole value is pointed at.
        assert_eq!(at("w4", 5..8), (7, 6, 14));
        let e = d.error_in_string("where", 5..8, "bad", None);
        assert!(
            e.render()
                .ends_with("3 | where = \"a >= AND b\"\n  |               ^^^"),
            "{}",
            e.render()
        );
    }

    #[test]
    fn toml_strings_parse_back() {
        for s in [
            "public.orders",
            "public.\"Order Items\"",
            "it's",
            "a\"b'c\\d\ne\u{1}",
            "",
        ] {
            let text = format!("k = {}\n", toml_string(s));
            let d =
                ConfigDoc::parse_toml("t.toml", &text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(d.value["k"], s, "{text}");
        }
        assert_eq!(toml_string("public.\"A\""), "'public.\"A\"'");
    }

    #[test]
    fn closest_finds_misspellings_only() {
        let names = ["public.orders", "public.customers"];
        assert_eq!(closest("public.ordrs", names), Some("public.orders"));
        assert_eq!(closest("orders", names), None);
        assert_eq!(closest("zzz", names), None);
    }

    fn test_env(name: &str) -> Option<String> {
        (name == "SLUICE_TEST_SECRET_PW").then(|| "hunter22".to_string())
    }

    #[test]
    fn env_interpolation_registers_secret() {
        let d = ConfigDoc::parse_toml_with_env(
            "j.toml",
            "[job]\nname = \"${env:SLUICE_TEST_SECRET_PW}\"\n[source]\ntype=\"sqlite\"\nurl=\"x\"\n",
            test_env,
        )
        .unwrap();
        assert_eq!(d.value["job"]["name"], "hunter22");
        assert_eq!(redact("pw is hunter22!"), "pw is ***!");
        let e = ConfigDoc::parse_toml_with_env(
            "j.toml",
            "[job]\nname = \"${env:SLUICE_TEST_UNSET_VAR}\"\n",
            test_env,
        )
        .unwrap_err();
        assert!(e.message.contains("SLUICE_TEST_UNSET_VAR is not set"));
        assert_eq!(e.location.unwrap().line, 2);
    }
}
