//! The explicit list of connector types. Adding a connector means adding a line here.
//!
//! `[source]` and `[sink]` sections are tagged by `type`; [`SourceConfig`] and [`SinkConfig`]
//! dispatch on it with located errors (see `sluice_core::config`). Options every sink shares
//! (`write`, `create_tables`, `table_map`) live in [`SinkCommon`] and are split off before the
//! connector's own options are read.
//!
//! ## `table_map`
//!
//! A key names a source table exactly (`"public.orders"`) or is a pattern with `*` / `?`
//! (`"public.*"`, matched like `tables` in `[source]`). A pattern's value puts the source
//! table's own name where its last part has a `*`: `{ "public.*" = "*" }` writes every table of
//! schema `public` under its bare name (what SQLite and a MySQL database without schemas
//! need), `{ "public.*" = "archive.*" }` into schema `archive`, `{ "public.*" = "old_*" }`
//! with a prefix. An exact key wins over patterns; two patterns that map one table to
//! different targets are refused. A key that matches no source table is a config error
//! ([`SinkConfig::check_table_map`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use sluice_core::config::{closest, deserialize_tagged, toml_string};
use sluice_core::schema::TablePattern;
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{Error, Result, TableId, WriteMode, tagged_enum};

use crate::{files, generate, mysql, postgres, sqlite};

tagged_enum! {
    /// A `[source]` section: the registry of source connectors, one line each.
    pub enum SourceConfig {
        "postgres" => Postgres(postgres::PostgresSourceConfig),
        "mysql" => Mysql(mysql::MysqlSourceConfig),
        "sqlite" => Sqlite(sqlite::SqliteSourceConfig),
        "csv" => Csv(files::CsvSourceConfig),
        "jsonl" => Jsonl(files::JsonlSourceConfig),
        "parquet" => Parquet(files::ParquetSourceConfig),
        "generate" => Generate(generate::GenerateSourceConfig),
    }
}

impl SourceConfig {
    /// Validates the options (no I/O) and builds the source.
    pub fn build(&self) -> Result<DynSource> {
        match self {
            SourceConfig::Postgres(c) => c.build(),
            SourceConfig::Mysql(c) => c.build(),
            SourceConfig::Sqlite(c) => c.build(),
            SourceConfig::Csv(c) => c.build(),
            SourceConfig::Jsonl(c) => c.build(),
            SourceConfig::Parquet(c) => c.build(),
            SourceConfig::Generate(c) => c.build(),
        }
    }

    /// Like [`build`](Self::build), knowing the sink and the job: a source whose target is
    /// the same engine keeps what only that engine can hold (MySQL's zero dates); a
    /// change-capture source names its slot after the job.
    pub fn build_for(&self, sink: &SinkConfig, job: &str) -> Result<DynSource> {
        match (self, &sink.kind) {
            (SourceConfig::Mysql(c), SinkKind::Mysql(_)) => c.build_for_job(job, true),
            (SourceConfig::Mysql(c), _) => c.build_for_job(job, false),
            (SourceConfig::Postgres(c), _) => c.build_for_job(job),
            _ => self.build(),
        }
    }

    /// Whether the source can run a streaming job (read until stopped, committing every
    /// `checkpoint_interval`).
    pub fn can_stream(&self) -> bool {
        matches!(self, SourceConfig::Generate(_)) || self.is_cdc()
    }

    /// A source that reads every table whole as it is now, whatever `read` says: what
    /// `sluice verify` compares a target with (also a change-capture job's).
    pub fn build_full(&self) -> Result<DynSource> {
        match self {
            SourceConfig::Postgres(c) => c.build_full(),
            SourceConfig::Mysql(c) => c.build_full(),
            _ => self.build(),
        }
    }

    /// Whether the source captures changes (`read = "cdc"`): a streaming job by nature.
    pub fn is_cdc(&self) -> bool {
        match self {
            SourceConfig::Postgres(c) => c.is_cdc(),
            SourceConfig::Mysql(c) => c.is_cdc(),
            _ => false,
        }
    }

    /// Whether the source ends by itself, as a batch job needs.
    pub fn is_bounded(&self) -> bool {
        match self {
            SourceConfig::Generate(c) => c.is_bounded(),
            SourceConfig::Postgres(c) => !c.is_cdc(),
            SourceConfig::Mysql(c) => !c.is_cdc(),
            _ => true,
        }
    }
}

tagged_enum! {
    /// The connector-specific part of a `[sink]` section: the registry of sink connectors.
    pub enum SinkKind {
        "postgres" => Postgres(postgres::PostgresSinkConfig),
        "mysql" => Mysql(mysql::MysqlSinkConfig),
        "sqlite" => Sqlite(sqlite::SqliteSinkConfig),
        "csv" => Csv(files::CsvSinkConfig),
        "jsonl" => Jsonl(files::JsonlSinkConfig),
        "parquet" => Parquet(files::ParquetSinkConfig),
    }
}

/// Options every sink takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkCommon {
    /// `append` (default for databases), `overwrite` or `upsert`. File sinks default to
    /// `overwrite` and refuse `upsert`.
    #[serde(default)]
    pub write: Option<WriteMode>,
    /// Create missing target tables from the source schema (default true).
    #[serde(default)]
    pub create_tables: Option<bool>,
    /// Target names for source tables: `{ "main.a" = "archive_a" }`, or for every table a
    /// pattern matches: `{ "public.*" = "*" }` (see the module docs).
    #[serde(default)]
    pub table_map: BTreeMap<String, String>,
}

/// One `table_map` entry, parsed.
enum MapEntry {
    /// `"public.orders" = "sales.orders"`.
    Exact(TableId, TableId),
    /// `"public.*" = "archive.*"`: the pattern, the target's fixed parts, and its last part
    /// split around the `*` the source name goes into.
    Pattern(TablePattern, Vec<String>, String, String),
}

impl MapEntry {
    /// Parses `from = to`; errors name the entry and say what is accepted.
    fn parse(from: &str, to: &str) -> Result<MapEntry> {
        let key = TablePattern::parse(from)?;
        let target = sluice_core::schema::split_sql_path(to)?;
        let entry = || {
            format!(
                "table_map entry {} = {}",
                toml_string(from),
                toml_string(to)
            )
        };
        let wild = |p: &str| p.contains(['*', '?']);
        if !key.is_glob() {
            if target.iter().any(|p| wild(p)) {
                return Err(Error::config(format!(
                    "{}: the target has a wildcard but the key names one table",
                    entry()
                ))
                .with_hint(
                    "use a pattern as the key to map many tables, e.g. { 'public.*' = '*' }, \
                     or name the target table",
                ));
            }
            return Ok(MapEntry::Exact(TableId::parse(from)?, TableId::new(target)));
        }
        let (last, fixed) = target.split_last().expect("a parsed path has a part");
        let stars = last.matches('*').count();
        if stars != 1 || last.contains('?') || fixed.iter().any(|p| wild(p)) {
            return Err(Error::config(format!(
                "{}: a pattern's target needs exactly one `*`, in its last part, where each \
                 table's own name goes",
                entry()
            ))
            .with_hint(
                "e.g. { 'public.*' = '*' } (bare names), { 'public.*' = 'archive.*' } (another \
                 schema) or { 'public.*' = 'old_*' } (a prefix)",
            ));
        }
        let (pre, post) = last.split_once('*').expect("one star");
        Ok(MapEntry::Pattern(
            key,
            fixed.to_vec(),
            pre.to_string(),
            post.to_string(),
        ))
    }

    fn matches(&self, id: &TableId) -> bool {
        match self {
            MapEntry::Exact(from, _) => from == id,
            MapEntry::Pattern(p, ..) => p.matches(id),
        }
    }

    fn target(&self, id: &TableId) -> TableId {
        match self {
            MapEntry::Exact(_, to) => to.clone(),
            MapEntry::Pattern(_, fixed, pre, post) => TableId::new(
                fixed
                    .iter()
                    .cloned()
                    .chain([format!("{pre}{}{post}", id.name())]),
            ),
        }
    }
}

const COMMON_KEYS: [&str; 3] = ["write", "create_tables", "table_map"];

/// A `[sink]` section: the shared options plus the connector's own.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub common: SinkCommon,
    pub kind: SinkKind,
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        let Value::Object(mut map) = v else {
            return Err(D::Error::custom("expected a table with a `type` key"));
        };
        let mut common = serde_json::Map::new();
        for k in COMMON_KEYS {
            if let Some(x) = map.remove(k) {
                common.insert(k.to_string(), x);
            }
        }
        let common: SinkCommon = deserialize_tagged(Value::Object(common))?;
        // Dispatch on `type`; an unknown key's "expected" list also names the common keys.
        let kind = SinkKind::deserialize(Value::Object(map)).map_err(|e| {
            let msg = e.to_string();
            let msg = if msg.contains("unknown field") && msg.contains("expected") {
                let extra: Vec<String> = COMMON_KEYS.iter().map(|k| format!("`{k}`")).collect();
                format!("{msg}, {}", extra.join(", "))
            } else {
                msg
            };
            D::Error::custom(msg)
        })?;
        Ok(SinkConfig { common, kind })
    }
}

impl SinkConfig {
    /// The effective write mode (the connector's default if not given).
    pub fn write_mode(&self) -> WriteMode {
        self.common.write.unwrap_or(match self.kind {
            SinkKind::Sqlite(_) | SinkKind::Postgres(_) | SinkKind::Mysql(_) => WriteMode::Append,
            _ => WriteMode::Overwrite,
        })
    }

    /// Whether missing tables are created.
    pub fn create_tables(&self) -> bool {
        self.common.create_tables.unwrap_or(true)
    }

    /// The `table_map` entries, parsed, with their keys as written.
    fn map_entries(&self) -> Result<Vec<(&str, MapEntry)>> {
        self.common
            .table_map
            .iter()
            .map(|(from, to)| Ok((from.as_str(), MapEntry::parse(from, to)?)))
            .collect()
    }

    /// Checks every `table_map` entry on its own (no tables needed): keys and values are
    /// table names or patterns, and a pattern's value has its one `*`.
    pub fn check_table_map_entries(&self) -> std::result::Result<(), (String, Error)> {
        for (from, to) in &self.common.table_map {
            MapEntry::parse(from, to).map_err(|e| (from.clone(), e))?;
        }
        Ok(())
    }

    /// The target name of `source` per `table_map` (else the same name): an exact key first,
    /// else the pattern that matches it (two patterns mapping it differently are refused).
    pub fn target_of(&self, source: &TableId) -> Result<TableId> {
        let entries = self.map_entries()?;
        if let Some((_, e)) = entries
            .iter()
            .find(|(_, e)| matches!(e, MapEntry::Exact(..)) && e.matches(source))
        {
            return Ok(e.target(source));
        }
        let mut found: Option<(&str, TableId)> = None;
        for (key, e) in &entries {
            if !e.matches(source) {
                continue;
            }
            let target = e.target(source);
            match &found {
                Some((k, t)) if *t != target => {
                    return Err(Error::config(format!(
                        "table {source} matches table_map keys {} and {}, which map it to {t} \
                         and {target}",
                        toml_string(k),
                        toml_string(key)
                    ))
                    .with_hint(format!(
                        "add an exact entry for it, e.g. table_map = {{ {} = {} }}, or narrow \
                         the patterns",
                        toml_string(&source.to_string()),
                        toml_string(&t.to_string())
                    )));
                }
                Some(_) => {}
                None => found = Some((key, target)),
            }
        }
        Ok(found.map_or_else(|| source.clone(), |(_, t)| t))
    }

    /// The `table_map` keys, as written, that match none of the source's `tables`.
    pub fn unmatched_table_map_keys(&self, tables: &[TableId]) -> Vec<String> {
        self.common
            .table_map
            .iter()
            .filter(|(from, to)| {
                MapEntry::parse(from, to).is_ok_and(|e| !tables.iter().any(|t| e.matches(t)))
            })
            .map(|(from, _)| from.clone())
            .collect()
    }

    /// Refuses `table_map` keys that match none of the source's `tables` (a misspelt key
    /// would otherwise be ignored and the table written under its own name): a config error
    /// naming the key, with a "did you mean" and some of the source's tables.
    pub fn check_table_map(&self, tables: &[TableId]) -> Result<()> {
        let unmatched = self.unmatched_table_map_keys(tables);
        let Some(key) = unmatched.first() else {
            return Ok(());
        };
        let names: Vec<String> = tables.iter().map(ToString::to_string).collect();
        // The same table name in another schema, else the closest spelling.
        let key_name = TableId::parse(key).ok().map(|k| k.name().to_string());
        let guess = tables
            .iter()
            .find(|t| key_name.as_deref() == Some(t.name()))
            .map(ToString::to_string)
            .or_else(|| closest(key, names.iter().map(String::as_str)).map(str::to_string));
        let mut hint = match guess {
            Some(g) => format!("did you mean {}? ", toml_string(&g)),
            None => String::new(),
        };
        const SHOWN: usize = 10;
        let mut listed: Vec<String> = names.iter().take(SHOWN).map(|n| toml_string(n)).collect();
        if names.len() > SHOWN {
            listed.push(format!("… ({} in all)", names.len()));
        }
        hint.push_str(&format!(
            "keys are source table names or patterns such as 'public.*'; the source has {}",
            listed.join(", ")
        ));
        let what = if unmatched.len() == 1 {
            format!("table_map key {} matches no source table", toml_string(key))
        } else {
            let all: Vec<String> = unmatched.iter().map(|k| toml_string(k)).collect();
            format!("table_map keys {} match no source table", all.join(", "))
        };
        Err(Error::config(format!("[sink] {what}"))
            .with_hint(hint)
            .at("sink.table_map"))
    }

    /// Validates the options (no I/O) and builds the sink.
    pub fn build(&self) -> Result<DynSink> {
        let mode = self.write_mode();
        let create = self.create_tables();
        match &self.kind {
            SinkKind::Postgres(c) => c.build(mode, create),
            SinkKind::Mysql(c) => c.build(mode, create),
            SinkKind::Sqlite(c) => c.build(mode, create),
            SinkKind::Csv(c) => c.build(mode),
            SinkKind::Jsonl(c) => c.build(mode),
            SinkKind::Parquet(c) => c.build(mode),
        }
    }

    /// Whether the sink keeps checkpoints in the target with the rows (databases), so a split
    /// can commit many times and continue after a resume.
    pub fn keeps_checkpoints(&self) -> bool {
        matches!(
            self.kind,
            SinkKind::Postgres(_) | SinkKind::Mysql(_) | SinkKind::Sqlite(_)
        )
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(map: &[(&str, &str)]) -> SinkConfig {
        let map: serde_json::Map<String, Value> = map
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        serde_json::from_value(serde_json::json!({
            "type": "sqlite", "url": "sqlite://x.db", "table_map": map
        }))
        .unwrap()
    }

    fn id(s: &str) -> TableId {
        TableId::parse(s).unwrap()
    }

    fn target(s: &SinkConfig, t: &str) -> String {
        s.target_of(&id(t)).unwrap().to_string()
    }

    #[test]
    fn schema_patterns_map_whole_schemas() {
        let s = sink(&[("public.*", "*"), ("sales.*", "archive.old_*")]);
        assert_eq!(target(&s, "public.orders"), "orders");
        assert_eq!(target(&s, r#"public."Order Items""#), r#""Order Items""#);
        assert_eq!(target(&s, "sales.orders"), "archive.old_orders");
        assert_eq!(target(&s, "other.orders"), "other.orders");
        // Patterns are matched like `tables`: `*` matches any table name of any schema.
        let s = sink(&[("*", "*")]);
        assert_eq!(target(&s, "public.a"), "a");
        assert_eq!(target(&s, "main.b"), "b");
        let s = sink(&[("public.t?", "x_*")]);
        assert_eq!(target(&s, "public.t1"), "x_t1");
        assert_eq!(target(&s, "public.t10"), "public.t10");
    }

    #[test]
    fn exact_keys_win_over_patterns() {
        let s = sink(&[("public.*", "*"), ("public.orders", "sales.orders")]);
        assert_eq!(target(&s, "public.orders"), "sales.orders");
        assert_eq!(target(&s, "public.items"), "items");
    }

    #[test]
    fn conflicting_patterns_are_refused() {
        let s = sink(&[("public.*", "*"), ("*.orders", "archive.*")]);
        let e = s.target_of(&id("public.orders")).unwrap_err();
        assert_eq!(e.kind(), sluice_core::ErrorKind::Config);
        assert!(e.message().contains("'*.orders' and 'public.*'"), "{e}");
        assert!(
            e.hint()
                .unwrap()
                .contains("{ 'public.orders' = 'archive.orders' }"),
            "{e:?}"
        );
        assert_eq!(target(&s, "public.items"), "items");
        // Two patterns agreeing on the target are fine.
        let s = sink(&[("public.*", "*"), ("public.o*", "*")]);
        assert_eq!(target(&s, "public.orders"), "orders");
    }

    #[test]
    fn pattern_values_need_one_star_in_the_last_part() {
        for (k, v) in [
            ("public.*", "archive"),
            ("public.*", "*.x"),
            ("public.*", "a**"),
            ("public.orders", "*"),
        ] {
            let s = sink(&[(k, v)]);
            let (key, e) = s.check_table_map_entries().unwrap_err();
            assert_eq!(key, k);
            assert_eq!(e.kind(), sluice_core::ErrorKind::Config, "{k} = {v}");
            assert!(e.hint().unwrap().contains("'public.*'"), "{e:?}");
            assert!(s.target_of(&id("public.orders")).is_err());
        }
        assert!(
            sink(&[("public.*", "archive.*")])
                .check_table_map_entries()
                .is_ok()
        );
    }

    #[test]
    fn keys_matching_no_table_are_found_and_refused() {
        let tables = [
            id("public.orders"),
            id("public.customers"),
            id(r#"public."Order Items""#),
        ];
        let s = sink(&[
            ("public.*", "*"),
            ("public.orders", "o"),
            ("public.ordrs", "x"),
            ("sales.*", "*"),
        ]);
        assert_eq!(
            s.unmatched_table_map_keys(&tables),
            ["public.ordrs", "sales.*"]
        );
        let e = s.check_table_map(&tables).unwrap_err();
        assert_eq!(e.kind(), sluice_core::ErrorKind::Config);
        assert_eq!(
            e.message(),
            "[sink] table_map keys 'public.ordrs', 'sales.*' match no source table"
        );
        let h = e.hint().unwrap();
        assert!(h.starts_with("did you mean 'public.orders'?"), "{h}");
        assert!(h.contains(r#"'public."Order Items"'"#), "{h}");
        // The same name in another schema is the likeliest meaning.
        let e = sink(&[("orders", "o")])
            .check_table_map(&tables)
            .unwrap_err();
        assert_eq!(
            e.message(),
            "[sink] table_map key 'orders' matches no source table"
        );
        assert!(
            e.hint()
                .unwrap()
                .starts_with("did you mean 'public.orders'?")
        );
        assert!(
            sink(&[("public.*", "*"), ("public.orders", "o")])
                .check_table_map(&tables)
                .is_ok()
        );
        // Long table lists are cut short.
        let many: Vec<TableId> = (0..50).map(|i| id(&format!("public.t{i}"))).collect();
        let e = sink(&[("nope", "x")]).check_table_map(&many).unwrap_err();
        assert!(e.hint().unwrap().ends_with("… (50 in all)"), "{e:?}");
    }
}
