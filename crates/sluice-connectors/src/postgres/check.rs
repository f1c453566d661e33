//! Talking to the server: connecting (errors classified) and reading the catalog.

use std::time::Duration;

use sluice_core::{Result, TableId};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};

use super::error::pg_error;
use super::types::PgType;

/// A client and its connection task; dropping it closes the connection at once
/// ([`close`](Conn::close) says goodbye to the server first).
pub struct Conn {
    pub client: Client,
    task: Option<JoinHandle<()>>,
}

impl Conn {
    /// Ends the session politely: the client is dropped (the driver sends Terminate) and the
    /// connection task runs to its end.
    pub async fn close(mut self) {
        let task = self.task.take();
        drop(self);
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Connects, naming `what` in errors (unreachable → Connection, bad role/password → Auth,
/// missing database → Config).
pub async fn connect(cfg: &Config, what: &str) -> Result<Conn> {
    let mut cfg = cfg.clone();
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("sluice");
    }
    // The driver's connect_timeout covers the TCP connect only: a server that accepts the
    // connection and never answers the startup would hold the job forever.
    let limit = cfg
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(10));
    let connected = tokio::time::timeout(limit, cfg.connect(NoTls)).await;
    let hosts = || describe_hosts(&cfg);
    let (client, conn) = match connected {
        Ok(r) => r.map_err(|e| {
            pg_error(
                e,
                format!("{what}: connecting to PostgreSQL at {}", hosts()),
            )
        })?,
        Err(_) => {
            return Err(sluice_core::Error::new(
                sluice_core::ErrorKind::Connection,
                format!(
                    "{what}: connecting to PostgreSQL at {}: the server accepted the connection \
                     but did not complete the startup within {} s",
                    hosts(),
                    limit.as_secs()
                ),
            )
            .with_hint(
                "check that host and port point at a PostgreSQL server, and that it is not hung \
                 or overloaded (connect_timeout in the url sets the limit)",
            ));
        }
    };
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended.");
        }
    });
    // Notices ("relation already exists, skipping") are not worth a log line each.
    // PostgreSQL 14+: a backend checks every second whether its client is still there, so a
    // statement (or a lock wait) of a run that stopped or died ends on the server too.
    let _ = client
        .batch_execute(
            "SET client_min_messages = warning; SET client_connection_check_interval = 1000",
        )
        .await;
    Ok(Conn {
        client,
        task: Some(task),
    })
}

fn describe_hosts(cfg: &Config) -> String {
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let ports = cfg.get_ports();
    format!(
        "{}:{} (user {:?}, database {:?})",
        hosts.join(","),
        ports.first().copied().unwrap_or(5432),
        cfg.get_user().unwrap_or(""),
        cfg.get_dbname().unwrap_or("")
    )
}

/// A column as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct PgColumn {
    pub name: String,
    pub ty: PgType,
    pub not_null: bool,
    /// `format_type` of the declared type (a domain keeps its own name): the cast target.
    pub declared: String,
    /// The expression of a `GENERATED ALWAYS AS (…) STORED` column (`pg_get_expr`).
    pub generated: Option<String>,
    /// `GENERATED ALWAYS AS IDENTITY` (only `OVERRIDING SYSTEM VALUE` may write it).
    pub identity_always: bool,
    /// A default, identity or generation expression fills the column when a row has no value.
    pub filled: bool,
}

/// A table or view as listed in `pg_class`.
#[derive(Debug, Clone)]
pub(crate) struct PgRelation {
    pub oid: u32,
    pub id: TableId,
    pub kind: char,
    pub reltuples: f64,
}

/// User relations: tables, partitioned tables (not their partitions), views, materialized
/// and foreign tables.
pub(crate) async fn list_relations(c: &Client) -> Result<Vec<PgRelation>> {
    let rows = c
        .query(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, \
                    c.reltuples::float8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','p','v','m','f') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog','information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
             ORDER BY 2, 3",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "listing tables"))?;
    Ok(rows
        .iter()
        .map(|r| PgRelation {
            oid: r.get::<_, i64>(0) as u32,
            id: TableId::new([r.get::<_, String>(1), r.get::<_, String>(2)]),
            kind: r.get::<_, String>(3).chars().next().unwrap_or('r'),
            reltuples: r.get(4),
        })
        .collect())
}

/// Table inheritance (`INHERITS`) as `(child oid, parent oid)` pairs. Partitions are left out:
/// a partitioned table is read whole, as one table.
pub(crate) async fn inheritance(c: &Client) -> Result<Vec<(u32, u32)>> {
    let rows = c
        .query(
            "SELECT i.inhrelid::int8, i.inhparent::int8 FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid WHERE NOT c.relispartition",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "reading table inheritance"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u32, r.get::<_, i64>(1) as u32))
        .collect())
}

/// The oid and kind of `schema.name`, if it exists.
pub(crate) async fn find_relation(c: &Client, schema: &str, name: &str) -> Result<Option<u32>> {
    let row = c
        .query_opt(
            "SELECT c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r','p','v','m','f')",
            &[&schema, &name],
        )
        .await
        .map_err(|e| pg_error(e, "looking up a table"))?;
    Ok(row.map(|r| r.get::<_, i64>(0) as u32))
}

/// The columns of a relation, in order, with their types resolved.
pub(crate) async fn columns(c: &Client, rel: u32) -> Result<Vec<PgColumn>> {
    let rows = c
        .query(
            "SELECT a.attname::text, a.atttypid::int8, a.atttypmod, a.attnotnull, \
                    format_type(a.atttypid, a.atttypmod), \
                    CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END, \
                    a.attidentity::text, \
                    (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' \
                     OR t.typdefault IS NOT NULL OR t.typdefaultbin IS NOT NULL) \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 \
               AND NOT a.attisdropped ORDER BY a.attnum",
            &[&(rel as i64)],
        )
        .await
        .map_err(|e| pg_error(e, "reading columns"))?;
    let keys: Vec<(u32, i32)> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(1) as u32, r.get::<_, i32>(2)))
        .collect();
    let types = resolve_types(c, &keys).await?;
    Ok(rows
        .iter()
        .zip(types)
        .map(|(r, ty)| PgColumn {
            name: r.get(0),
            ty,
            not_null: r.get(3),
            declared: r.get(4),
            generated: r.get(5),
            identity_always: r.get::<_, String>(6) == "a",
            filled: r.get(7),
        })
        .collect())
}

/// Resolves `(type oid, typmod)` pairs: domains to their base type, arrays to their element,
/// enums with their labels.
pub(crate) async fn resolve_types(c: &Client, keys: &[(u32, i32)]) -> Result<Vec<PgType>> {
    let oids: Vec<i64> = keys.iter().map(|k| k.0 as i64).collect();
    let mods: Vec<i32> = keys.iter().map(|k| k.1).collect();
    let rows = c
        .query(
            "WITH u AS (SELECT * FROM unnest($1::int8[], $2::int4[]) WITH ORDINALITY u(o, m, i)), \
             b AS (SELECT u.i, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS bo, \
                          CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE u.m END AS bm \
                   FROM u JOIN pg_type t ON t.oid = u.o::oid) \
             SELECT b.i, bt.oid::int8, b.bm, format_type(bt.oid, b.bm), bt.typtype::text, \
                    n.nspname::text, bt.typname::text, \
                    et.oid::int8, et.typtype::text, en.nspname::text, et.typname::text, \
                    format_type(et.oid, b.bm) \
             FROM b JOIN pg_type bt ON bt.oid = b.bo \
             JOIN pg_namespace n ON n.oid = bt.typnamespace \
             LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typlen = -1 AND bt.typelem <> 0 \
             LEFT JOIN pg_namespace en ON en.oid = et.typnamespace \
             ORDER BY b.i",
            &[&oids, &mods],
        )
        .await
        .map_err(|e| pg_error(e, "reading column types"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let typmod: i32 = r.get(2);
        let mut ty = PgType {
            oid: r.get::<_, i64>(1) as u32,
            typmod,
            format: r.get(3),
            typtype: r.get::<_, String>(4).chars().next().unwrap_or('b'),
            schema: r.get(5),
            name: r.get(6),
            labels: Vec::new(),
            elem: None,
        };
        if let Some(eoid) = r.get::<_, Option<i64>>(7) {
            let mut elem = PgType {
                oid: eoid as u32,
                typmod,
                format: r.get(11),
                typtype: r.get::<_, String>(8).chars().next().unwrap_or('b'),
                schema: r.get(9),
                name: r.get(10),
                labels: Vec::new(),
                elem: None,
            };
            if elem.typtype == 'e' {
                elem.labels = enum_labels(c, elem.oid).await?;
            }
            ty.elem = Some(Box::new(elem));
        }
        if ty.typtype == 'e' {
            ty.labels = enum_labels(c, ty.oid).await?;
        }
        out.push(ty);
    }
    Ok(out)
}

async fn enum_labels(c: &Client, oid: u32) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1::int8::oid ORDER BY enumsortorder",
            &[&(oid as i64)],
        )
        .await
        .map_err(|e| pg_error(e, "reading enum labels"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Column lists of the primary key (`primary_only`) or of every unique index that can be an
/// `ON CONFLICT` arbiter. A key is its key columns only: the `INCLUDE` columns of an index
/// (`indkey` beyond `indnkeyatts`) are stored in it but are not part of its uniqueness.
/// Partial, expression, deferrable and invalid indexes are left out (none of them makes a
/// column list unique for every row at once).
pub(crate) async fn unique_keys(
    c: &Client,
    rel: u32,
    primary_only: bool,
) -> Result<Vec<Vec<String>>> {
    let rows = c
        .query(
            "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indpred IS NULL \
               AND i.indexprs IS NULL AND i.indimmediate AND i.indisvalid \
               AND k.ord <= i.indnkeyatts AND (i.indisprimary OR NOT $2) \
             GROUP BY i.indexrelid, i.indisprimary ORDER BY i.indisprimary DESC, i.indexrelid",
            &[&(rel as i64), &primary_only],
        )
        .await
        .map_err(|e| pg_error(e, "reading keys"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
