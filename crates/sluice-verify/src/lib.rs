//! `sluice verify`: proves a job's source and target hold the same rows, lists the rows that
//! differ, and repairs the target.
//!
//! The comparison runs inside the databases, data-diff style: for every table pair (the
//! source's tables, mapped through the sink's `table_map`), both sides compute `count(*)` and
//! a checksum (the sum of the first 60 bits of `md5` of a canonical row text, see [`canon`])
//! over ranges of the integer primary key. Ranges that agree are done; the others are cut
//! smaller until they hold at most [`diff::LEAF_ROWS`] rows, which are then read from both
//! sides and compared by key (see [`diff`]). Differing rows are read once more before they
//! are reported, so rows written during the check show up as "changed during check".
//! Every source query reads the rows the source connector reads: a PostgreSQL inheritance
//! parent whose children are copied too is read `FROM ONLY` or with a `tableoid` condition
//! ([`sluice_connectors::postgres::ReadScope`], see [`db::Table`]).
//!
//! Supported sides: PostgreSQL and MySQL/MariaDB (checksums computed in SQL), and SQLite,
//! CSV, JSON Lines and Parquet (read locally through their connectors, same canonical form
//! computed in Rust, see [`local`]), in any combination. Tables without a single integer key
//! are compared by count and whole-table checksum only. See `docs/verify.md` for the
//! canonical row form, the key rule for files and the limits.

mod arrays;
pub mod canon;
pub mod db;
pub mod diff;
pub mod local;
pub mod repair;
mod sides;
pub mod values;

use serde::Serialize;
use sluice_connectors::registry::{SinkConfig, SourceConfig};
use sluice_core::{Error, Result, TableId};

use crate::db::Db;
use crate::diff::Pair;

/// How a row differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// In the source, not in the target (or fewer copies of the key in the target).
    Missing,
    /// In the target, not in the source (or more copies of the key in the target).
    Extra,
    /// In both, with different values.
    Changed,
    /// Its values moved between the two reads: the table is being written to.
    ChangedDuringCheck,
}

impl DiffKind {
    /// The name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Changed => "changed",
            DiffKind::ChangedDuringCheck => "changed_during_check",
        }
    }
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowDiff {
    /// The key value.
    pub key: i128,
    pub kind: DiffKind,
    /// `changed`: the columns whose values differ (source names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Set when either side holds more than one row with this key (a keyless target loaded
    /// twice, duplicates in a file): how many each side holds. `extra` then means the
    /// target holds more rows with the key than the source, `missing` fewer, `changed` as
    /// many but not the same ones. Repair replaces all the target's rows with the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copies: Option<Copies>,
}

/// How many rows with one key each side holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Copies {
    pub source: u64,
    pub target: u64,
}

impl RowDiff {
    pub fn new(key: i128, kind: DiffKind, columns: Vec<String>) -> Self {
        RowDiff {
            key,
            kind,
            columns,
            copies: None,
        }
    }

    /// The rows this difference stands for: the surplus or shortfall of copies of a
    /// duplicated key, else one.
    pub fn rows(&self) -> u64 {
        match self.copies {
            Some(c) => c.source.abs_diff(c.target).max(1),
            None => 1,
        }
    }
}

/// The result for one table pair.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub source: String,
    pub target: String,
    /// The key column used for chunking; `None`: whole-table comparison only.
    pub key: Option<String>,
    pub source_rows: u64,
    pub target_rows: u64,
    pub missing: u64,
    pub extra: u64,
    pub changed: u64,
    pub changed_during_check: u64,
    /// Without a key: whether the whole-table count or checksum differs.
    pub checksum_differs: bool,
    pub chunks_checked: u64,
    pub seconds: f64,
    /// Differing rows in key order (after [`Report::truncate`], at most that many).
    pub diffs: Vec<RowDiff>,
    /// Differing rows left out of `diffs` by [`Report::truncate`].
    pub diffs_omitted: usize,
}

impl TableReport {
    pub fn new(source: &str, target: &str, key: Option<String>) -> Self {
        TableReport {
            source: source.to_string(),
            target: target.to_string(),
            key,
            source_rows: 0,
            target_rows: 0,
            missing: 0,
            extra: 0,
            changed: 0,
            changed_during_check: 0,
            checksum_differs: false,
            chunks_checked: 0,
            seconds: 0.0,
            diffs: Vec::new(),
            diffs_omitted: 0,
        }
    }

    /// Whether source and target agree.
    pub fn identical(&self) -> bool {
        !self.checksum_differs
            && self.missing + self.extra + self.changed + self.changed_during_check == 0
    }
}

/// The result of a verify run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub identical: bool,
    pub tables: Vec<TableReport>,
}

impl Report {
    /// Keeps at most `max` differing rows per table in `diffs`.
    pub fn truncate(&mut self, max: usize) {
        for t in &mut self.tables {
            if t.diffs.len() > max {
                t.diffs_omitted += t.diffs.len() - max;
                t.diffs.truncate(max);
            }
        }
    }
}

/// Open connections to both sides and the table pairs to compare.
pub struct Session {
    src: Db,
    dst: Db,
    pairs: Vec<Pair>,
    /// The database file when the target is SQLite (repair writes it).
    sqlite_target: Option<std::path::PathBuf>,
}

impl Session {
    /// Lists the source's tables, maps them through `table_map`, opens both sides and reads
    /// both catalogs.
    pub async fn open(source: &SourceConfig, sink: &SinkConfig) -> Result<Session> {
        if !source.is_bounded() && !source.is_cdc() {
            // Reading it to compare would never end.
            return Err(Error::config(format!(
                "this `{}` source never ends, so verify cannot read it to compare",
                source.type_name()
            ))
            .with_hint("verify compares sources that end: give it an end (e.g. rows = 1000000)"));
        }
        // A change-capture source is compared as its tables are now.
        let built = source.build_full()?;
        let listed = match built.tables().await {
            Ok(t) => t,
            Err(e) => {
                let _ = built.close().await;
                return Err(e);
            }
        };
        // A table_map key that names no source table is a mistake, as in `sluice run`.
        let ids: Vec<TableId> = listed.iter().map(|t| t.schema.id.clone()).collect();
        if let Err(e) = sink.check_table_map(&ids) {
            let _ = built.close().await;
            return Err(e);
        }
        let (mut src, src_default, scopes) = sides::source_side(source, built, &listed).await?;
        let (mut dst, dst_default) = sides::sink_side(sink).await?;
        let mut pairs = Vec::new();
        for t in listed {
            let id = &t.schema.id;
            let target_id = sink.target_of(id)?;
            let mut source = sides::physical(&src, id, &src_default)?;
            source.scope = sides::scope_of(&scopes, id)?;
            let target = sides::physical(&dst, &target_id, &dst_default)?;
            sides::add_file_target(&mut dst, sink, &target_id, &t).await?;
            let (src_cols, src_pk) = src.columns(&source).await?;
            let (dst_all, dst_pk) = dst.columns(&target).await?;
            if dst_all.is_empty() {
                return Err(
                    Error::schema(format!("target table {target_id} does not exist"))
                        .with_hint("run the job first, or check table_map in [sink]"),
                );
            }
            let mut src_cols = src_cols;
            let mut dst_cols = diff::match_columns(&id.to_string(), &src_cols, &dst_all)?;
            let dialect = |db: &Db| (!db.is_local()).then(|| db.dialect());
            let hash = canon::plan(
                &mut src_cols,
                &mut dst_cols,
                (dialect(&src), dialect(&dst)),
                src.has_native_hash() && dst.has_native_hash(),
            );
            let key = sides::choose_key(
                &src_cols,
                &src_pk,
                &dst_pk,
                src.is_local() || dst.is_local(),
            );
            pairs.push(Pair {
                source_name: id.to_string(),
                target_name: target_id.to_string(),
                source,
                target,
                src_cols,
                dst_cols,
                key,
                hash,
            });
        }
        let sqlite_target = match &sink.kind {
            sluice_connectors::registry::SinkKind::Sqlite(c) => {
                Some(sluice_connectors::sqlite::parse_url(&c.url)?)
            }
            _ => None,
        };
        Ok(Session {
            src,
            dst,
            pairs,
            sqlite_target,
        })
    }

    /// Compares every table pair.
    pub async fn verify(&mut self) -> Result<Report> {
        let mut tables = Vec::new();
        for p in &self.pairs {
            tracing::info!(
                table = %p.source_name,
                key = p.key.as_deref().unwrap_or("(none: count and checksum only)"),
                hash = match p.hash {
                    canon::RowHash::Native => "PostgreSQL value hash",
                    canon::RowHash::Text => "md5 of the canonical row text",
                },
                "Verifying table."
            );
            let rep = diff::compare(&mut self.src, &mut self.dst, p)
                .await
                .map_err(|e| e.context(format!("table {}", p.source_name)))?;
            tracing::info!(
                table = %p.source_name,
                seconds = rep.seconds,
                identical = rep.identical(),
                "Table verified."
            );
            tables.push(rep);
        }
        Ok(Report {
            identical: tables.iter().all(TableReport::identical),
            tables,
        })
    }

    /// Repairs the differing rows of `report` in the target (one transaction per table), or
    /// with `dry_run` only returns the statements. Returns the statements per table.
    pub async fn repair(
        &mut self,
        report: &Report,
        dry_run: bool,
    ) -> Result<Vec<(String, Vec<String>)>> {
        if let Db::Local(l) = &mut self.dst {
            let Some(path) = &self.sqlite_target else {
                return Err(Error::config(format!(
                    "--repair cannot write to a {} target",
                    l.kind()
                ))
                .with_hint(
                    "repair writes to PostgreSQL, MySQL/MariaDB and SQLite targets; for files \
                     run the job again (write = \"overwrite\") to rewrite the target",
                ));
            };
            let mut out = Vec::new();
            for (p, t) in self.pairs.iter().zip(&report.tables) {
                if t.diffs.is_empty() {
                    continue;
                }
                let stmts = repair::sqlite(&mut self.src, l, path, p, &t.diffs, dry_run)
                    .await
                    .map_err(|e| e.context(format!("repairing table {}", p.target_name)))?;
                out.push((p.target_name.clone(), stmts));
            }
            l.forget();
            return Ok(out);
        }
        let mut out = Vec::new();
        for (p, t) in self.pairs.iter().zip(&report.tables) {
            if t.diffs.is_empty() {
                continue;
            }
            let stmts = repair::statements(&mut self.src, self.dst.dialect(), p, &t.diffs)
                .await
                .map_err(|e| e.context(format!("table {}", p.source_name)))?;
            if !dry_run {
                repair::apply(&mut self.dst, &stmts)
                    .await
                    .map_err(|e| e.context(format!("repairing table {}", p.target_name)))?;
            }
            out.push((p.target_name.clone(), stmts));
        }
        Ok(out)
    }

    /// Closes both connections.
    pub async fn close(self) {
        self.src.close().await;
        self.dst.close().await;
    }
}
