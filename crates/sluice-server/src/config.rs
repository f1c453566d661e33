//! Job configs as the REST API takes and shows them.
//!
//! A job is posted either nested — the job file's tables as JSON (`{"source": {"type": …}}`) —
//! or as Kafka Connect's flat map of dotted string keys (`{"source.type": "postgres"}`), or a
//! mix. Both become one nested document, which is what the state store keeps. Responses show
//! it flat, every value a string, as Kafka Connect's schema says, with secrets masked.
//!
//! Flat values are typed by their text: `true`/`false` are booleans, integers and decimals
//! numbers, `[…]` and `{…}` JSON; anything else is a string. A string that looks like a number
//! is written JSON-quoted (`"\"0042\""`); [`flatten`] writes such strings that way, so a flat
//! config read back and posted again is the same job.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sluice_core::config::{mask_passwords, redact};

use crate::error::ApiError;

/// Kafka Connect's key for the connector class; Sluice takes it as the source's type.
pub const CONNECTOR_CLASS: &str = "connector.class";
/// Kafka Connect's key for the number of tasks; Sluice takes it as `job.parallelism`.
pub const TASKS_MAX: &str = "tasks.max";

/// What a secret reads as in a response.
pub const MASK: &str = "***";

/// The nested job document for connector `name` from a posted config (nested, flat or mixed).
/// `name` fills `job.name`; a different `job.name` (or `name` key) is refused.
pub fn from_request(name: &str, config: &Value) -> Result<Value, ApiError> {
    let Value::Object(map) = config else {
        return Err(ApiError::bad_request(
            "the config must be a JSON object: the job file's tables (\"source\": {…}) or \
             Kafka Connect's dotted keys (\"source.type\": \"csv\")",
        ));
    };
    let mut doc = Map::new();
    for (key, value) in map {
        let (path, value) = match key.as_str() {
            CONNECTOR_CLASS => ("source.type".to_string(), value.clone()),
            TASKS_MAX => ("job.parallelism".to_string(), value.clone()),
            "name" => ("job.name".to_string(), value.clone()),
            _ => (key.clone(), value.clone()),
        };
        let value = match value {
            Value::String(s) if path.contains('.') || !is_section(&path) => typed(&s),
            other => other,
        };
        insert_path(&mut doc, &path, value)
            .map_err(|why| ApiError::bad_request(format!("config key `{key}`: {why}")))?;
    }
    let job = doc
        .entry("job")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(job) = job else {
        return Err(ApiError::bad_request(
            "config key `job` must be an object: {\"name\": …, \"mode\": …}",
        ));
    };
    match job.get("name") {
        None => {
            job.insert("name".into(), Value::String(name.to_string()));
        }
        Some(Value::String(n)) if n == name => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the config names the job {other}, but the connector is `{name}`: leave \
                 `name` out of the config or make the two equal"
            )));
        }
    }
    Ok(Value::Object(doc))
}

fn is_section(key: &str) -> bool {
    matches!(key, "job" | "source" | "sink" | "transform" | "errors")
}

/// A flat value's JSON type, read from its text (see the module docs).
fn typed(text: &str) -> Value {
    let t = text.trim();
    match t {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let numeric = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        && t.chars().any(|c| c.is_ascii_digit());
    let structured = (t.starts_with('[') && t.ends_with(']'))
        || (t.starts_with('{') && t.ends_with('}'))
        || (t.starts_with('"') && t.ends_with('"') && t.len() >= 2);
    if (numeric || structured)
        && let Ok(v) = serde_json::from_str::<Value>(t)
    {
        return v;
    }
    Value::String(text.to_string())
}

/// Sets `path` (`sink.url`, `transform.0.type`) in `doc`, creating tables and arrays on the way.
fn insert_path(doc: &mut Map<String, Value>, path: &str, value: Value) -> Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err("empty segment in a dotted key".into());
    }
    let mut node = doc.entry(segs[0].to_string()).or_insert(Value::Null);
    for (i, seg) in segs.iter().enumerate().skip(1) {
        node = child(node, seg, &segs[..i].join("."))?;
    }
    match (node, value) {
        (slot @ Value::Null, v) => *slot = v,
        // `name` and `job.name`, `connector.class` and `source.type`: the same value twice.
        (existing, v) if *existing == v => {}
        (Value::Object(existing), Value::Object(more)) => {
            for (k, v) in more {
                existing.insert(k, v);
            }
        }
        _ => return Err(format!("`{path}` is given twice")),
    }
    Ok(())
}

/// The child `seg` of `node` (an index into an array when numeric), created if missing.
fn child<'a>(node: &'a mut Value, seg: &str, at: &str) -> Result<&'a mut Value, String> {
    if let Ok(i) = seg.parse::<usize>() {
        if node.is_null() {
            *node = Value::Array(Vec::new());
        }
        let Value::Array(items) = node else {
            return Err(format!("`{at}` is a value, so `{at}.{seg}` cannot be set"));
        };
        if i > 1000 {
            return Err(format!("index {i} is too large"));
        }
        while items.len() <= i {
            items.push(Value::Null);
        }
        return Ok(&mut items[i]);
    }
    if node.is_null() {
        *node = Value::Object(Map::new());
    }
    let Value::Object(map) = node else {
        return Err(format!("`{at}` is a value, so `{at}.{seg}` cannot be set"));
    };
    Ok(map.entry(seg.to_string()).or_insert(Value::Null))
}

/// The document as Kafka Connect's flat string map, secrets masked, plus `name` and
/// `connector.class` as Kafka Connect clients expect them.
pub fn flatten(doc: &Value) -> BTreeMap<String, String> {
    let mut raw = BTreeMap::new();
    flatten_raw(&masked(doc), "", &mut raw);
    let mut out: BTreeMap<String, String> =
        raw.iter().map(|(k, v)| (k.clone(), flat_text(v))).collect();
    // Shown once, as Kafka Connect's `name`.
    out.remove("job.name");
    if let Some(n) = doc.pointer("/job/name").and_then(Value::as_str) {
        out.insert("name".into(), n.to_string());
    }
    if let Some(t) = doc.pointer("/source/type").and_then(Value::as_str) {
        out.insert(CONNECTOR_CLASS.into(), t.to_string());
    }
    out
}

/// A flattened value as Kafka Connect's string: a string that would read back as another
/// type is written JSON-quoted; other values as JSON.
fn flat_text(v: &Value) -> String {
    match v {
        Value::String(s) if typed(s) == *v => s.clone(),
        other => other.to_string(),
    }
}

/// Whether a key holds a secret by its name (`password`, `sasl.password`, `api_key` …).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credentials",
        "api_key",
        "apikey",
        "private_key",
    ]
    .iter()
    .any(|s| k.ends_with(s))
}

/// `doc` with every secret masked: values of keys named like a secret, passwords in URLs and
/// values resolved from `${env:…}`/`${file:…}` anywhere (references themselves are shown).
pub fn masked(doc: &Value) -> Value {
    mask_at(doc, "")
}

fn mask_at(v: &Value, key: &str) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, item)| (k.clone(), mask_at(item, k)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| mask_at(i, key)).collect()),
        Value::String(s) if is_reference(s) => Value::String(s.clone()),
        Value::String(s) if is_secret_key(key) && !s.is_empty() => Value::String(MASK.into()),
        Value::String(s) => Value::String(redact(&mask_passwords(s))),
        other if is_secret_key(key) => {
            let _ = other;
            Value::String(MASK.into())
        }
        other => other.clone(),
    }
}

/// Whether `s` is only a `${env:…}` / `${file:…}` reference (not a secret itself).
fn is_reference(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1
}

/// `new` with every value that is the masked form of `old`'s value at the same place put
/// back to `old`'s: a config read from the API (secrets masked) and posted again keeps its
/// secrets.
pub fn unmask(new: Value, old: &Value) -> Value {
    match (new, old) {
        (Value::Object(map), Value::Object(old_map)) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match old_map.get(&k) {
                        Some(o) => unmask_value(v, o, &k),
                        None => v,
                    };
                    (k, v)
                })
                .collect(),
        ),
        (new, _) => new,
    }
}

fn unmask_value(new: Value, old: &Value, key: &str) -> Value {
    match (&new, old) {
        (Value::Object(_), Value::Object(_)) => unmask(new, old),
        (Value::Array(items), Value::Array(old_items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match old_items.get(i) {
                    Some(o) => unmask_value(item.clone(), o, key),
                    None => item.clone(),
                })
                .collect(),
        ),
        (Value::String(_), _) if new != *old && new == mask_at(old, key) => old.clone(),
        _ => new,
    }
}

/// Kafka Connect's PATCH: `patch`'s keys (flat or nested) replace the config's, a `null` removes
/// one.
pub fn merge_patch(name: &str, doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let Value::Object(p) = patch else {
        return Err(ApiError::bad_request("the patch must be a JSON object"));
    };
    let mut flat: BTreeMap<String, Value> = BTreeMap::new();
    flatten_raw(doc, "", &mut flat);
    for (k, v) in p {
        let key = match k.as_str() {
            CONNECTOR_CLASS => "source.type",
            TASKS_MAX => "job.parallelism",
            "name" => "job.name",
            other => other,
        };
        if v.is_null() {
            let prefix = format!("{key}.");
            flat.retain(|f, _| f != key && !f.starts_with(&prefix));
        } else {
            let prefix = format!("{key}.");
            flat.retain(|f, _| !f.starts_with(&prefix));
            let v = match v {
                Value::String(s) => typed(s),
                other => other.clone(),
            };
            flat.insert(key.to_string(), v);
        }
    }
    let mut out = Map::new();
    for (k, v) in flat {
        insert_path(&mut out, &k, v)
            .map_err(|why| ApiError::bad_request(format!("config key `{k}`: {why}")))?;
    }
    from_request(name, &Value::Object(out))
}

/// Flattens to typed values (not strings), arrays of values kept whole.
fn flatten_raw(v: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(map) if !path.is_empty() && map.keys().any(|k| k.contains('.')) => {
            out.insert(path.to_string(), v.clone());
        }
        Value::Object(map) => {
            for (k, item) in map {
                flatten_raw(item, &join(k), out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, item) in items.iter().enumerate() {
                flatten_raw(item, &join(&i.to_string()), out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(path.to_string(), other.clone());
        }
    }
}

/// The keys whose values differ between two documents (for the audit log: names, never
/// values).
pub fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten_raw(old, "", &mut a);
    flatten_raw(new, "", &mut b);
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flat_and_nested_configs_make_the_same_document() {
        let flat = json!({
            "connector.class": "csv",
            "source.path": "in.csv",
            "sink.type": "sqlite",
            "sink.url": "sqlite://out.db",
            "sink.busy_timeout_ms": "500",
            "job.verify": "true",
            "transform.0.type": "select",
            "transform.0.columns": "[\"id\",\"name\"]",
            "tasks.max": "2",
        });
        let nested = json!({
            "source": {"type": "csv", "path": "in.csv"},
            "sink": {"type": "sqlite", "url": "sqlite://out.db", "busy_timeout_ms": 500},
            "job": {"verify": true, "parallelism": 2},
            "transform": [{"type": "select", "columns": ["id", "name"]}],
        });
        let a = from_request("j", &flat).unwrap();
        let b = from_request("j", &nested).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["job"]["name"], "j");
    }

    #[test]
    fn a_flat_config_read_back_is_the_same_job() {
        let doc = from_request(
            "j",
            &json!({"source": {"type": "csv", "path": "42"}, "sink": {"type": "jsonl", "path": "true"}}),
        )
        .unwrap();
        let flat = flatten(&doc);
        assert_eq!(flat["source.path"], "\"42\"");
        assert_eq!(flat["sink.path"], "\"true\"");
        let posted: Map<String, Value> = flat
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        assert_eq!(from_request("j", &Value::Object(posted)).unwrap(), doc);
    }

    #[test]
    fn a_different_job_name_is_refused() {
        let e = from_request("a", &json!({"name": "b", "source.type": "csv"})).unwrap_err();
        assert!(e.message.contains("connector is `a`"), "{}", e.message);
    }

    #[test]
    fn secrets_are_masked_and_put_back_when_posted_masked() {
        let doc = json!({
            "source": {"type": "postgres", "url": "postgres://u:hunter2@db/shop", "password": "s3cret"},
            "sink": {"type": "mysql", "url": "${env:TARGET_URL}", "key": ["id"]},
        });
        let shown = flatten(&doc);
        let text = serde_json::to_string(&shown).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
        assert_eq!(shown["sink.url"], "${env:TARGET_URL}");
        assert_eq!(shown["sink.key"], "[\"id\"]");
        let reposted = masked(&doc);
        assert_eq!(unmask(reposted, &doc), doc);
        // A new value is taken as it is.
        let mut changed = masked(&doc);
        changed["source"]["password"] = json!("other");
        assert_eq!(unmask(changed, &doc)["source"]["password"], "other");
    }

    #[test]
    fn a_patch_replaces_and_removes_keys() {
        let doc = from_request(
            "j",
            &json!({"source": {"type": "csv", "path": "a.csv", "delimiter": ";"}, "sink": {"type": "jsonl", "path": "o"}}),
        )
        .unwrap();
        let out = merge_patch(
            "j",
            &doc,
            &json!({"source.path": "b.csv", "source.delimiter": null}),
        )
        .unwrap();
        assert_eq!(out["source"], json!({"type": "csv", "path": "b.csv"}));
        assert_eq!(
            changed_keys(&doc, &out),
            ["source.delimiter", "source.path"]
        );
    }
}
