//! Opening the two sides of a job for verify: database connections for PostgreSQL and
//! MySQL/MariaDB, connector-backed [`Local`] sides for SQLite and files (a file or SQLite
//! *sink* is read back through the matching *source* connector), the physical table names,
//! and the choice of the key.

use std::collections::{BTreeMap, HashMap};

use sluice_connectors::postgres::ReadScope;
use sluice_connectors::registry::{SinkConfig, SinkKind, SourceConfig};
use sluice_core::source::{DynSource, SourceTable};
use sluice_core::{Error, LogicalType, Result, TableId};

use crate::canon::Column;
use crate::db::{Db, Table};
use crate::local::Local;

async fn connect(url: &str, postgres: bool, default_schema: &str) -> Result<(Db, String)> {
    if postgres {
        Ok((Db::postgres(url).await?, default_schema.to_string()))
    } else {
        let (db, database) = Db::mysql(url).await?;
        Ok((db, database.unwrap_or_default()))
    }
}

/// Which rows of each source table the source connector reads. `None`: every table whole
/// (MySQL, SQLite, files, a PostgreSQL `query`). For PostgreSQL tables, the connector's own
/// [`ReadScope`]s: an inheritance parent whose children are copied too is read `FROM ONLY`
/// or with a `tableoid` condition, and verify must compare exactly those rows.
pub type Scopes = Option<HashMap<TableId, ReadScope>>;

/// The source side; `built` is the job's source, already asked for its `listed` tables.
/// Returns the connection, the default schema or database, and the tables' [`Scopes`].
pub async fn source_side(
    source: &SourceConfig,
    built: DynSource,
    listed: &[SourceTable],
) -> Result<(Db, String, Scopes)> {
    let url = match source {
        SourceConfig::Postgres(c) => Some((c.url.expose(), true)),
        SourceConfig::Mysql(c) => Some((c.url.expose(), false)),
        _ => None,
    };
    match url {
        Some((url, pg)) => {
            let _ = built.close().await;
            let scopes = match source {
                SourceConfig::Postgres(c) if c.query.is_none() => {
                    Some(c.read_scopes().await?.into_iter().collect())
                }
                _ => None,
            };
            let (db, default) = connect(url, pg, "public").await?;
            Ok((db, default, scopes))
        }
        None => {
            let mut local = Local::new(source.type_name());
            local.add_listed(built, listed.to_vec());
            Ok((Db::Local(Box::new(local)), String::new(), None))
        }
    }
}

/// The sink side. File sinks start without tables: [`add_file_target`] adds each.
pub async fn sink_side(sink: &SinkConfig) -> Result<(Db, String)> {
    match &sink.kind {
        SinkKind::Postgres(c) => {
            let schema = c.schema.clone().unwrap_or_else(|| "public".into());
            connect(c.url.expose(), true, &schema).await
        }
        SinkKind::Mysql(c) => connect(c.url.expose(), false, "").await,
        SinkKind::Sqlite(c) => {
            // The sink says how its output is read back.
            let mut local = Local::new("sqlite");
            local.add(c.read_back()?).await?;
            Ok((Db::Local(Box::new(local)), String::new()))
        }
        SinkKind::Csv(_) | SinkKind::Jsonl(_) | SinkKind::Parquet(_) => Ok((
            Db::Local(Box::new(Local::new(sink.type_name()))),
            String::new(),
        )),
    }
}

/// The physical table of `id` on a side (schema or database from `default` if the name has
/// none; local sides use the name as written), all its rows compared.
pub fn physical(db: &Db, id: &TableId, default: &str) -> Result<Table> {
    if db.is_local() {
        return Ok(Table::new(String::new(), id.to_string()));
    }
    match id.parts() {
        [n] if !default.is_empty() => Ok(Table::new(default, n.clone())),
        [s, n] => Ok(Table::new(s.clone(), n.clone())),
        _ => Err(
            Error::config(format!("table {id}: cannot tell its schema or database"))
                .with_hint("write it as schema.table (or add the database to the url)"),
        ),
    }
}

/// The rows of source table `id` that verify compares: the source connector's
/// [`ReadScope`] for it (see [`Scopes`]).
pub fn scope_of(scopes: &Scopes, id: &TableId) -> Result<ReadScope> {
    let Some(scopes) = scopes else {
        return Ok(ReadScope::Whole);
    };
    scopes.get(id).cloned().ok_or_else(|| {
        Error::schema(format!(
            "source table {id} was listed by the source but is gone from its catalog (dropped \
             or renamed while verify started)"
        ))
        .with_hint("run verify again once the source's tables stop changing")
    })
}

/// For a file sink: adds a source reading `target`'s output back (the sink says how: its
/// layout and naming live with it), with the source table's column types. Does nothing for
/// other sinks.
pub async fn add_file_target(
    db: &mut Db,
    sink: &SinkConfig,
    target: &TableId,
    source: &SourceTable,
) -> Result<()> {
    let Db::Local(local) = db else {
        return Ok(());
    };
    let types: BTreeMap<String, LogicalType> = source
        .schema
        .arrow
        .fields()
        .iter()
        .filter_map(|f| Some((f.name().clone(), LogicalType::of_field(f).ok()?)))
        .collect();
    let built = match &sink.kind {
        SinkKind::Parquet(c) => c.read_back(target)?,
        SinkKind::Csv(c) => c.read_back(target, types)?,
        SinkKind::Jsonl(c) => c.read_back(target, types)?,
        _ => return Ok(()),
    };
    local.add(built).await
}

/// The chunking key: the source's single integer primary key. When either side is read
/// locally and the source has none, the target's single-column primary key, else a column
/// named `id` (any case) — provided it is an integer column of the source.
pub fn choose_key(
    src_cols: &[Column],
    src_pk: &[String],
    dst_pk: &[String],
    any_local: bool,
) -> Option<String> {
    let int = |name: &str, exact: bool| {
        src_cols
            .iter()
            .find(|c| {
                (if exact {
                    c.name == name
                } else {
                    c.name.eq_ignore_ascii_case(name)
                }) && c.kind.is_integer()
                    && c.type_name != "bit"
            })
            .map(|c| c.name.clone())
    };
    if let [k] = src_pk {
        return int(k, true);
    }
    if !any_local || !src_pk.is_empty() {
        return None;
    }
    match dst_pk {
        [k] => int(k, false),
        _ => int("id", false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canon::ColKind;

    #[test]
    fn key_rule() {
        let col = |n: &str, kind| Column::new(n, kind, "");
        let cols = [col("ID", ColKind::Int), col("n", ColKind::Int)];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(choose_key(&cols, &s(&["n"]), &[], false), Some("n".into()));
        assert_eq!(choose_key(&cols, &[], &[], false), None);
        assert_eq!(choose_key(&cols, &[], &[], true), Some("ID".into()));
        assert_eq!(choose_key(&cols, &[], &s(&["n"]), true), Some("n".into()));
        assert_eq!(choose_key(&cols, &s(&["ID", "n"]), &[], true), None);
    }
}
