//! One side of a comparison: a connection to PostgreSQL or MySQL/MariaDB that answers the
//! few questions verify asks (columns, key range, chunk checksums, rows), all as text.
//!
//! Every query goes through the text protocol (`simple_query` / `query`), so values arrive
//! as the canonical text the database computed and are compared byte for byte. A third kind
//! of side, [`Db::Local`], reads SQLite databases and files through their connectors and
//! computes the same canonical text in Rust (see [`crate::local`]).

use std::collections::BTreeMap;
use std::str::FromStr;

use mysql_async::prelude::Queryable;
use sluice_connectors::postgres::ReadScope;
use sluice_core::{Error, ErrorKind, Result};
use tokio_postgres::SimpleQueryMessage;

use crate::canon::{self, ColKind, Column, Dialect, ElemType, RowHash, quote_ident, quote_literal};
use crate::local::Local;

/// A physical table: schema (PostgreSQL) or database (MySQL), name, and which of its rows
/// are compared.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// The rows of a PostgreSQL *source* table that the copy reads (an inheritance parent
    /// whose children are copied too: `FROM ONLY`, or a `tableoid` condition), as the
    /// PostgreSQL source connector computes it; [`ReadScope::Whole`] for every other table.
    pub scope: ReadScope,
}

impl Table {
    /// A table whose rows are all compared.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Table {
        Table {
            schema: schema.into(),
            name: name.into(),
            scope: ReadScope::Whole,
        }
    }

    /// `"schema"."name"` / `` `db`.`name` ``.
    pub fn sql(&self, d: Dialect) -> String {
        format!(
            "{}.{}",
            quote_ident(d, &self.schema),
            quote_ident(d, &self.name)
        )
    }

    /// The `FROM` item of every query that reads the compared rows (`ONLY "s"."t"`).
    fn from(&self, d: Dialect) -> String {
        match d {
            Dialect::Postgres => self.scope.from_item(&self.sql(d)),
            Dialect::Mysql => self.sql(d),
        }
    }

    /// ` WHERE …` joining `conds` and the scope's condition (`tableoid = ANY(…)`), or
    /// nothing when there is no condition.
    fn where_(&self, d: Dialect, mut conds: Vec<String>) -> String {
        if d == Dialect::Postgres
            && let Some(c) = self.scope.condition(None)
        {
            conds.push(c);
        }
        if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        }
    }
}

/// Tables the catalog estimates at fewer rows than this are counted exactly before the first
/// pass (it decides between one bucket pass and plain bisection).
const EXACT_COUNT_BELOW: i64 = 100_000;

/// One row's canonical column texts (`None` for NULL).
pub type Row = Vec<Option<String>>;

/// Rows by their integer key: every row holding the key, in the order read (a keyless table
/// can hold several).
pub type Rows = BTreeMap<i128, Vec<Row>>;

/// A connection to one side.
pub enum Db {
    Postgres(Box<PgSide>),
    Mysql(mysql_async::Conn, mysql_async::Opts),
    /// SQLite or files, read through the connector (no SQL).
    Local(Box<Local>),
}

fn parse_key(s: &str) -> Result<i128> {
    i128::from_str(s.trim()).map_err(|_| Error::data(format!("key value {s:?} is not an integer")))
}

/// A PostgreSQL side: the connector's connection, and what reconnecting needs.
pub struct PgSide {
    conn: sluice_connectors::postgres::Conn,
    config: tokio_postgres::Config,
    /// `server_version_num`, e.g. 150004.
    version: u32,
    /// `max_parallel_workers_per_gather` > 0: one query runs on several cores.
    parallel: bool,
}

impl Db {
    /// Connects to PostgreSQL (as the connector does: bounded, errors classified); the
    /// session runs in UTC with ISO dates.
    pub async fn postgres(url: &str) -> Result<Db> {
        let (conn, config) = sluice_connectors::postgres::connect_url(url, "verify").await?;
        Db::postgres_on(conn, config).await
    }

    async fn postgres_with(config: tokio_postgres::Config) -> Result<Db> {
        let conn = sluice_connectors::postgres::connect(&config, "verify").await?;
        Db::postgres_on(conn, config).await
    }

    async fn postgres_on(
        conn: sluice_connectors::postgres::Conn,
        config: tokio_postgres::Config,
    ) -> Result<Db> {
        let mut db = Db::Postgres(Box::new(PgSide {
            conn,
            config,
            version: 0,
            parallel: false,
        }));
        let rows = db
            .text_rows(
                "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; \
                 SET statement_timeout = 0; \
                 SELECT current_setting('server_version_num'), \
                 current_setting('max_parallel_workers_per_gather')",
            )
            .await?;
        let setting = |i: usize| -> u32 {
            rows.first()
                .and_then(|r| r.get(i).cloned().flatten())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (version, workers) = (setting(0), setting(1));
        if let Db::Postgres(pg) = &mut db {
            pg.version = version;
            pg.parallel = workers > 0;
        }
        Ok(db)
    }

    /// Whether the server spreads one query over several cores (PostgreSQL's parallel query,
    /// unless turned off); MySQL does not.
    pub fn runs_queries_in_parallel(&self) -> bool {
        matches!(self, Db::Postgres(pg) if pg.parallel)
    }

    /// Whether this side can hash rows with `hash_record_extended` (PostgreSQL 14+).
    pub fn has_native_hash(&self) -> bool {
        matches!(self, Db::Postgres(pg) if pg.version >= 140_000)
    }

    /// One more connection to the same database, for queries run side by side; `None` for a
    /// side read locally.
    pub async fn fork(&self) -> Result<Option<Db>> {
        match self {
            Db::Postgres(pg) => Ok(Some(Db::postgres_with(pg.config.clone()).await?)),
            Db::Mysql(_, opts) => Ok(Some(Db::mysql_with(opts.clone()).await?)),
            Db::Local(_) => Ok(None),
        }
    }

    /// Connects to MySQL/MariaDB (as the connector does); the session runs in UTC with
    /// utf8mb4 and backslash escapes.
    pub async fn mysql(url: &str) -> Result<(Db, Option<String>)> {
        let (conn, opts, database) = sluice_connectors::mysql::connect_url(url, "verify").await?;
        Ok((Db::mysql_on(conn, opts).await?, database))
    }

    async fn mysql_with(opts: mysql_async::Opts) -> Result<Db> {
        let conn = sluice_connectors::mysql::connect_opts(&opts, "verify").await?;
        Db::mysql_on(conn, opts).await
    }

    async fn mysql_on(conn: mysql_async::Conn, opts: mysql_async::Opts) -> Result<Db> {
        let mut db = Db::Mysql(conn, opts);
        // On top of the connector's session (strict, no NO_BACKSLASH_ESCAPES): a binary
        // collation for comparisons, and room for long GROUP_CONCATs (1 GiB, MariaDB's
        // maximum; strict mode refuses a larger value instead of clamping it).
        db.exec(
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin, time_zone = '+00:00', \
             sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', ''), \
             group_concat_max_len = 1073741824",
        )
        .await?;
        Ok(db)
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Mysql(..) => Dialect::Mysql,
            // Never used to build SQL: every method handles a local side before.
            Db::Local(_) => Dialect::Postgres,
        }
    }

    /// Whether this side is read locally (SQLite, files).
    pub fn is_local(&self) -> bool {
        matches!(self, Db::Local(_))
    }

    /// Runs `sql` and returns every row as optional texts.
    pub async fn text_rows_mut(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        match self {
            Db::Postgres(_) => self.text_rows(sql).await,
            Db::Mysql(conn, _) => {
                let rows: Vec<mysql_async::Row> = conn
                    .query(sql)
                    .await
                    .map_err(|e| Error::data(format!("MySQL: {e}")))?;
                Ok(rows
                    .into_iter()
                    .map(|r| r.unwrap().into_iter().map(my_text).collect())
                    .collect())
            }
            Db::Local(l) => Err(no_sql(l)),
        }
    }

    async fn text_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        match self {
            Db::Postgres(pg) => {
                let msgs = pg
                    .conn
                    .client
                    .simple_query(sql)
                    .await
                    .map_err(|e| pg_err(e, "PostgreSQL"))?;
                Ok(msgs
                    .into_iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(r) => {
                            Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                        }
                        _ => None,
                    })
                    .collect())
            }
            Db::Mysql(..) => Err(Error::internal(
                "text_rows needs a mutable MySQL connection",
            )),
            Db::Local(l) => Err(no_sql(l)),
        }
    }

    /// Runs a statement (or, on PostgreSQL, several separated by `;`).
    pub async fn exec(&mut self, sql: &str) -> Result<()> {
        match self {
            Db::Postgres(pg) => pg
                .conn
                .client
                .batch_execute(sql)
                .await
                .map_err(|e| pg_err(e, "PostgreSQL")),
            Db::Mysql(conn, _) => conn
                .query_drop(sql)
                .await
                .map_err(|e| Error::data(format!("MySQL: {e}"))),
            Db::Local(l) => Err(no_sql(l)),
        }
    }

    /// The table's columns in order, and the names of its primary-key columns (key columns
    /// only: PostgreSQL's `INCLUDE` columns are not part of the key).
    pub async fn columns(&mut self, t: &Table) -> Result<(Vec<Column>, Vec<String>)> {
        if let Db::Local(l) = self {
            return l.columns(t);
        }
        let d = self.dialect();
        let (s, n) = (quote_literal(d, &t.schema), quote_literal(d, &t.name));
        let sql = match d {
            Dialect::Postgres => format!(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                 coalesce(bt.typname, ty.typname)::text, coalesce(bt.typtype, ty.typtype)::text, \
                 (EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary \
                   AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts - 1])))::text, \
                 a.attnotnull::text, '', et.typname::text, et.typtype::text \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace ns ON ns.oid = c.relnamespace \
                 JOIN pg_type ty ON ty.oid = a.atttypid \
                 LEFT JOIN pg_type bt ON ty.typtype = 'd' AND bt.oid = ty.typbasetype \
                 LEFT JOIN pg_type et ON et.oid = coalesce(bt.typelem, ty.typelem) \
                   AND coalesce(bt.typcategory, ty.typcategory) = 'A' \
                 WHERE ns.nspname = {s} AND c.relname = {n} AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum"
            ),
            Dialect::Mysql => format!(
                "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, '', \
                 IF(COLUMN_KEY = 'PRI', 'true', 'false'), \
                 IF(IS_NULLABLE = 'NO', 'true', 'false'), \
                 IF(COALESCE(CHARACTER_SET_NAME, 'utf8mb4') IN ('utf8mb4', 'utf8mb3', 'utf8', \
                    'ascii'), 'true', 'false') FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = {s} AND TABLE_NAME = {n} ORDER BY ORDINAL_POSITION"
            ),
        };
        let rows = self.text_rows_mut(&sql).await?;
        let mut cols = Vec::new();
        let mut pk = Vec::new();
        for r in rows {
            let get = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            let name = get(0);
            let kind = match d {
                Dialect::Postgres => ColKind::of_postgres(&get(2), &get(3)),
                Dialect::Mysql => ColKind::of_mysql(&get(2)),
            };
            if get(4) == "true" {
                pk.push(name.clone());
            }
            let mut col = Column::new(name, kind, get(1));
            col.type_name = get(2);
            col.not_null = get(5) == "true";
            col.utf8 = d == Dialect::Postgres || get(6) == "true";
            if d == Dialect::Postgres && !get(7).is_empty() {
                col.elem = Some(ElemType {
                    kind: ColKind::of_postgres(&get(7), &get(8)),
                    type_name: get(7),
                });
            }
            cols.push(col);
        }
        Ok((cols, pk))
    }

    /// The table's row count and `(min key, max key)`. The count is the catalog's estimate
    /// when that says the table is large (an exact `count(*)` would read it all once more;
    /// the first pass counts every bucket anyway), else exact.
    pub async fn key_range(
        &mut self,
        t: &Table,
        key: &str,
        cols: &[Column],
    ) -> Result<(u64, Option<(i128, i128)>)> {
        if let Db::Local(l) = self {
            return l.key_range(t, key, cols).await;
        }
        let d = self.dialect();
        let kq = quote_ident(d, key);
        // Aggregates, not `ORDER BY key LIMIT 1`: an output column named like the key would
        // sort as text.
        let sql = match d {
            Dialect::Postgres => format!(
                "SELECT min({kq})::text, max({kq})::text, \
                 (SELECT reltuples::int8 FROM pg_class WHERE oid = {}::regclass)::text FROM {}{}",
                quote_literal(d, &t.sql(d)),
                t.from(d),
                t.where_(d, Vec::new())
            ),
            Dialect::Mysql => format!(
                "SELECT CAST(MIN({kq}) AS CHAR), CAST(MAX({kq}) AS CHAR), \
                 (SELECT CAST(TABLE_ROWS AS CHAR) FROM information_schema.TABLES \
                  WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}) FROM {}",
                quote_literal(d, &t.schema),
                quote_literal(d, &t.name),
                t.sql(d)
            ),
        };
        let rows = self.text_rows_mut(&sql).await?;
        let r = rows.first().cloned().unwrap_or_default();
        let range = match (r.first().cloned().flatten(), r.get(1).cloned().flatten()) {
            (Some(lo), Some(hi)) => Some((parse_key(&lo)?, parse_key(&hi)?)),
            _ => None,
        };
        let estimate = r
            .get(2)
            .cloned()
            .flatten()
            .and_then(|c| c.parse::<i64>().ok())
            .unwrap_or(-1);
        if estimate >= EXACT_COUNT_BELOW {
            return Ok((estimate as u64, range));
        }
        let sql = format!(
            "SELECT count(*) FROM {}{}",
            t.from(d),
            t.where_(d, Vec::new())
        );
        let count = self
            .text_rows_mut(&sql)
            .await?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        Ok((count, range))
    }

    /// `(count, checksum)` of rows with `lo <= key < hi` (or of the whole table without a key).
    pub async fn checksum(
        &mut self,
        t: &Table,
        cols: &[Column],
        how: RowHash,
        range: Option<(&str, i128, i128)>,
    ) -> Result<(u64, String)> {
        if let Db::Local(l) = self {
            return l.checksum(t, cols, range).await;
        }
        let d = self.dialect();
        let sql = format!(
            "SELECT {} FROM {}{}",
            canon::checksum_select(d, cols, how),
            t.from(d),
            t.where_(d, range_conds(d, range))
        );
        let rows = self.text_rows_mut(&sql).await?;
        let r = rows.first().cloned().unwrap_or_default();
        let count = r
            .first()
            .cloned()
            .flatten()
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        let sum = r.get(1).cloned().flatten().unwrap_or_default();
        Ok((count, sum))
    }

    /// `(count, checksum)` per bucket of `width` keys counted from `lo`, over `[lo, hi)`, in
    /// one pass (one `GROUP BY` query) over the table.
    pub async fn bucket_checksums(
        &mut self,
        t: &Table,
        cols: &[Column],
        how: RowHash,
        key: &str,
        (lo, hi, width): (i128, i128, i128),
    ) -> Result<std::collections::HashMap<i128, (u64, String)>> {
        if let Db::Local(l) = self {
            return l.bucket_checksums(t, cols, key, (lo, hi, width)).await;
        }
        let d = self.dialect();
        let k = quote_ident(d, key);
        // 64-bit integer arithmetic when `key - lo` cannot overflow it, else exact decimals.
        let fits = i64::try_from(lo).is_ok() && i64::try_from(hi - lo).is_ok();
        let bucket = match (d, fits) {
            (Dialect::Postgres, true) => format!("(({k})::int8 - ({lo})::int8) / {width}"),
            (Dialect::Postgres, false) => format!("div({k}::numeric - ({lo}), {width})"),
            (Dialect::Mysql, true) => format!("({k} - ({lo})) DIV {width}"),
            (Dialect::Mysql, false) => {
                format!("(CAST({k} AS DECIMAL(65,0)) - ({lo})) DIV {width}")
            }
        };
        // PostgreSQL estimates as many groups as keys and would sort them all (spilling to
        // disk); the buckets are few, so hashing them is right: `enable_sort = off`.
        let sql = match d {
            Dialect::Postgres => format!(
                "SET enable_sort = off; SELECT ({bucket})::text, {} FROM {}{} GROUP BY {bucket}; \
                 RESET enable_sort",
                canon::checksum_select(d, cols, how),
                t.from(d),
                t.where_(d, range_conds(d, Some((key, lo, hi))))
            ),
            Dialect::Mysql => format!(
                "SELECT {bucket}, {} FROM {}{} GROUP BY 1",
                canon::checksum_select(d, cols, how),
                t.from(d),
                t.where_(d, range_conds(d, Some((key, lo, hi))))
            ),
        };
        let rows = self.text_rows_mut(&sql).await?;
        let mut out = std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            let b = r
                .first()
                .cloned()
                .flatten()
                .and_then(|b| b.parse::<i128>().ok())
                .ok_or_else(|| Error::internal("bucket query returned no bucket number"))?;
            let count = r
                .get(1)
                .cloned()
                .flatten()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let sum = r.get(2).cloned().flatten().unwrap_or_default();
            out.insert(b, (count, sum));
        }
        Ok(out)
    }

    /// The canonical values (or, with `repair`, the values to write) of rows in a key range
    /// or with the given keys.
    pub async fn rows(
        &mut self,
        t: &Table,
        key: &str,
        cols: &[Column],
        which: Which<'_>,
        repair: bool,
    ) -> Result<Rows> {
        if let Db::Local(l) = self {
            return l.rows(t, key, cols, which, repair).await;
        }
        let d = self.dialect();
        let mut select = vec![canon::key_text(d, key)];
        for c in cols {
            select.push(if repair {
                canon::repair_expr(d, c)
            } else {
                canon::value_expr(d, c)
            });
        }
        let cond = match which {
            Which::Ranges(ranges) => {
                let k = quote_ident(d, key);
                let parts: Vec<String> = ranges
                    .iter()
                    .map(|(lo, hi)| format!("({k} >= {lo} AND {k} < {hi})"))
                    .collect();
                format!("({})", parts.join(" OR "))
            }
            Which::Keys(keys) => {
                let list: Vec<String> = keys.iter().map(i128::to_string).collect();
                format!("{} IN ({})", quote_ident(d, key), list.join(", "))
            }
        };
        let sql = format!(
            "SELECT {} FROM {}{}",
            select.join(", "),
            t.from(d),
            t.where_(d, vec![cond])
        );
        let mut out = Rows::new();
        for mut r in self.text_rows_mut(&sql).await? {
            if r.is_empty() {
                continue;
            }
            let k = r.remove(0).unwrap_or_default();
            out.entry(parse_key(&k)?).or_default().push(r);
        }
        Ok(out)
    }

    /// A local side reads the rows of all these ranges in one pass, for the `rows` calls
    /// that follow; a database side does nothing (it is queried per range).
    pub async fn prefetch(
        &mut self,
        t: &Table,
        key: &str,
        cols: &[Column],
        ranges: &[(i128, i128)],
    ) -> Result<()> {
        match self {
            Db::Local(l) => l.prefetch(t, key, cols, ranges).await,
            _ => Ok(()),
        }
    }

    /// A local side forgets prefetched rows except these keys (the differing ones).
    pub fn keep_only(&mut self, keys: &std::collections::BTreeSet<i128>) {
        if let Db::Local(l) = self {
            l.keep_only(keys);
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        match self {
            Db::Postgres(pg) => pg.conn.close().await,
            Db::Mysql(conn, _) => {
                let _ = conn.disconnect().await;
            }
            Db::Local(_) => {}
        }
    }
}

/// Which rows [`Db::rows`] reads.
#[derive(Clone, Copy)]
pub enum Which<'a> {
    /// Rows in any of these `[lo, hi)` key ranges.
    Ranges(&'a [(i128, i128)]),
    Keys(&'a [i128]),
}

/// The conditions of a `lo <= key < hi` range (none without a range).
fn range_conds(d: Dialect, range: Option<(&str, i128, i128)>) -> Vec<String> {
    match range {
        Some((key, lo, hi)) => {
            let k = quote_ident(d, key);
            vec![format!("{k} >= {lo}"), format!("{k} < {hi}")]
        }
        None => Vec::new(),
    }
}

fn no_sql(l: &Local) -> Error {
    Error::internal(format!("a {} side takes no SQL", l.kind()))
}

fn pg_err(e: tokio_postgres::Error, what: &str) -> Error {
    let msg = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    let kind = if e.is_closed() || e.as_db_error().is_none() {
        ErrorKind::Connection
    } else {
        ErrorKind::Data
    };
    Error::new(kind, format!("{what}: {msg}"))
}

fn my_text(v: mysql_async::Value) -> Option<String> {
    use mysql_async::Value as V;
    match v {
        V::NULL => None,
        V::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        V::Int(i) => Some(i.to_string()),
        V::UInt(u) => Some(u.to_string()),
        V::Float(f) => Some(f.to_string()),
        V::Double(f) => Some(f.to_string()),
        other => Some(other.as_sql(true)),
    }
}
