//! A generation's manifest: what its plan depends on, and the plan itself.
//!
//! Written when a generation starts — in the state store and in the target
//! (`_sluice_jobs`) — and read back on every resume, so that a resumed copy reads exactly the
//! splits planned when the copy started (with the bounds they had then), and is refused if
//! the job changed in a way that would mix two configurations in one target.
//!
//! * [`Manifest::config`] is the job file's `[source]`, `[[transform]]` and `[sink]` (and
//!   `[job] mode`) as JSON, without secrets (URL credentials removed, registered secrets
//!   masked) and without the options that only tune speed ([`TUNING_KEYS`]): changing
//!   `batch_size` between a kill and the resume is fine; changing `write`, a transform, a
//!   `table_map` or the tables read is not.
//! * [`TableManifest`] holds, per table, its target, its columns and key as the source
//!   described them, and its splits with their details (key ranges, page ranges, files).
//!
//! The persisted form is pinned by `tests::the_persisted_form_is_stable`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::{LogicalType, Split};
use sluice_engine::PlannedTable;

/// Version of the manifest's persisted form.
pub const MANIFEST_VERSION: u32 = 1;

/// Options that change how fast a job runs, not what it writes; they may change between a
/// kill and the resume. Every other option is part of the fingerprint.
pub const TUNING_KEYS: &[&str] = &[
    "batch_size",
    "chunk_rows",
    "connections",
    "infer_rows",
    "row_group_size",
    "busy_timeout_ms",
    "cache_mib",
    "method",
    "split_bytes",
    "consistent_snapshot",
    // The synthetic source's pace (rows per second): its rows do not depend on it.
    "rate",
];

/// What a generation's plan depends on, and the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub job: String,
    pub generation: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// The job's configuration as far as it decides what is written (see the module docs).
    pub config: Value,
    pub tables: Vec<TableManifest>,
}

/// One table of a generation's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableManifest {
    /// The source table (`public.orders`).
    pub source: String,
    /// The target table after `table_map`.
    pub target: String,
    /// `(column, logical type)` of the source table, in order; `?` marks a nullable column.
    pub columns: Vec<(String, String)>,
    /// The source's primary key.
    pub key: Vec<String>,
    /// The splits, with their details, as planned when the generation started (or when the
    /// table joined it).
    pub splits: Vec<Split>,
}

impl TableManifest {
    /// The manifest entry of a described table with its splits listed.
    pub fn of(t: &PlannedTable) -> TableManifest {
        let (columns, key) = shape(t);
        TableManifest {
            source: t.source.schema.id.to_string(),
            target: t.plan.target.to_string(),
            columns,
            key,
            splits: t.splits.clone(),
        }
    }

    /// How `t` (as described now) differs from this entry, if it does.
    pub fn differences(&self, t: &PlannedTable) -> Vec<String> {
        let (columns, key) = shape(t);
        let mut out = Vec::new();
        let target = t.plan.target.to_string();
        if target != self.target {
            out.push(format!(
                "table {}: the target was {}, now {target}",
                self.source, self.target
            ));
        }
        if columns != self.columns {
            out.push(format!(
                "table {}: its columns changed ({})",
                self.source,
                column_changes(&self.columns, &columns)
            ));
        }
        if key != self.key {
            out.push(format!(
                "table {}: its key was ({}), now ({})",
                self.source,
                self.key.join(", "),
                key.join(", ")
            ));
        }
        out
    }
}

fn shape(t: &PlannedTable) -> (Vec<(String, String)>, Vec<String>) {
    let columns = t
        .source
        .schema
        .arrow
        .fields()
        .iter()
        .map(|f| {
            let ty = LogicalType::of_field(f)
                .map(|l| l.to_string())
                .unwrap_or_else(|_| f.data_type().to_string());
            let ty = match sluice_core::types::native_type(f) {
                Some((engine, native)) => format!("{ty} ({engine}:{native})"),
                None => ty,
            };
            let null = if f.is_nullable() { "?" } else { "" };
            (f.name().clone(), format!("{ty}{null}"))
        })
        .collect();
    (columns, t.source.schema.primary_key.clone())
}

fn column_changes(old: &[(String, String)], new: &[(String, String)]) -> String {
    let o: BTreeMap<&str, &str> = old.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let n: BTreeMap<&str, &str> = new.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let mut parts = Vec::new();
    for (c, t) in &n {
        match o.get(c) {
            None => parts.push(format!("added {c} {t}")),
            Some(ot) if ot != t => parts.push(format!("{c}: {ot} → {t}")),
            _ => {}
        }
    }
    for c in o.keys() {
        if !n.contains_key(c) {
            parts.push(format!("dropped {c}"));
        }
    }
    if parts.is_empty() {
        parts.push("reordered".to_string());
    }
    parts.join(", ")
}

/// The part of a job document (its JSON value) a generation depends on: see the module docs.
pub fn job_config(doc: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for section in ["source", "transform", "sink"] {
        if let Some(v) = doc.get(section) {
            out.insert(section.to_string(), normalize(v));
        }
    }
    if let Some(mode) = doc.get("job").and_then(|j| j.get("mode")) {
        out.insert("mode".to_string(), mode.clone());
    }
    Value::Object(out)
}

fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !TUNING_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::String(s) => Value::String(sluice_core::config::redact(&without_credentials(s))),
        other => other.clone(),
    }
}

/// `scheme://user:password@host/…` → `scheme://host/…`: who connects does not change what is
/// written, and a rotated password must not block a resume.
fn without_credentials(s: &str) -> String {
    let Some(i) = s.find("://") else {
        return s.to_string();
    };
    let (head, tail) = s.split_at(i + 3);
    let end = tail.find(['/', '?', '#']).unwrap_or(tail.len());
    match tail[..end].rfind('@') {
        Some(at) => format!("{head}{}", &tail[at + 1..]),
        None => s.to_string(),
    }
}

/// The differences between two [`job_config`]s, one line each (`[sink] write: "overwrite" →
/// "append"`), at most `limit`.
pub fn config_differences(old: &Value, new: &Value, limit: usize) -> Vec<String> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let mut out = Vec::new();
    for (k, v) in &b {
        match a.get(k) {
            None => out.push(format!("{} added: {v}", label(k))),
            Some(o) if o != v => out.push(format!("{}: {o} → {v}", label(k))),
            _ => {}
        }
    }
    for (k, v) in &a {
        if !b.contains_key(k) {
            out.push(format!("{} removed (was {v})", label(k)));
        }
    }
    out.truncate(limit);
    out
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(items) if prefix.starts_with("transform") && !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}#{}", i + 1), v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// `sink.write` → `[sink] write`; `transform#2.where` → `[[transform]] #2 where`.
fn label(path: &str) -> String {
    let (section, rest) = path.split_once('.').unwrap_or((path, ""));
    match section.split_once('#') {
        Some((s, n)) => format!("[[{s}]] #{n} {rest}").trim_end().to_string(),
        None if section == "mode" => "[job] mode".to_string(),
        None if rest.is_empty() => format!("[{section}]"),
        None => format!("[{section}] {rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tuning_options_and_credentials_are_not_part_of_the_fingerprint() {
        let a = json!({
            "job": {"name": "j", "parallelism": 2},
            "source": {"type": "postgres", "url": "postgres://u:secret1@h:5432/db", "batch_size": 10},
            "sink": {"type": "sqlite", "url": "sqlite://x.db", "write": "append"}
        });
        let b = json!({
            "job": {"name": "j", "parallelism": 8, "timeout": "1h"},
            "source": {"type": "postgres", "url": "postgres://other:rotated@h:5432/db", "batch_size": 99},
            "sink": {"type": "sqlite", "url": "sqlite://x.db", "write": "append"}
        });
        assert_eq!(job_config(&a), job_config(&b));
        assert!(!job_config(&a).to_string().contains("secret1"));
    }

    #[test]
    fn differences_name_the_section_and_both_values() {
        let a = job_config(&json!({
            "source": {"type": "csv", "path": "in", "tables": ["a"]},
            "transform": [{"type": "filter", "where": "x > 1"}],
            "sink": {"type": "sqlite", "write": "overwrite", "table_map": {"a": "b"}}
        }));
        let b = job_config(&json!({
            "source": {"type": "csv", "path": "in", "tables": ["a", "c"]},
            "transform": [{"type": "filter", "where": "x > 1"}, {"type": "drop", "columns": ["y"]}],
            "sink": {"type": "sqlite", "write": "append", "table_map": {"a": "d"}}
        }));
        let d = config_differences(&a, &b, 20);
        assert!(
            d.contains(&"[sink] write: \"overwrite\" → \"append\"".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(&"[sink] table_map.a: \"b\" → \"d\"".to_string()),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|l| l.starts_with("[[transform]] #2 type added")),
            "{d:?}"
        );
        assert!(d.iter().any(|l| l.starts_with("[source] tables:")), "{d:?}");
        assert!(config_differences(&a, &a, 20).is_empty());
    }

    #[test]
    fn the_persisted_form_is_stable() {
        let m = Manifest {
            version: MANIFEST_VERSION,
            job: "j".into(),
            generation: "1-2".into(),
            started_at: "2026-11-29T00:00:00.000Z".into(),
            config: json!({"sink": {"write": "append"}}),
            tables: vec![TableManifest {
                source: "public.t".into(),
                target: "t".into(),
                columns: vec![("id".into(), "int64".into())],
                key: vec!["id".into()],
                splits: vec![Split {
                    id: "public.t#0".into(),
                    table: sluice_core::TableId::new(["public", "t"]),
                    index: 0,
                    estimated_rows: Some(5),
                    estimated_bytes: None,
                    detail: json!({"kind": "key", "lo": null, "hi": 100}),
                    continues: false,
                    start: None,
                }],
            }],
        };
        let golden = r#"{"version":1,"job":"j","generation":"1-2","started_at":"2026-11-29T00:00:00.000Z","config":{"sink":{"write":"append"}},"tables":[{"source":"public.t","target":"t","columns":[["id","int64"]],"key":["id"],"splits":[{"id":"public.t#0","table":"public.t","index":0,"estimated_rows":5,"estimated_bytes":null,"detail":{"hi":100,"kind":"key","lo":null}}]}]}"#;
        assert_eq!(serde_json::to_string(&m).unwrap(), golden);
        let back: Manifest = serde_json::from_str(golden).unwrap();
        assert_eq!(back, m);
    }
}
