//! `read = "cdc"`: change data capture from the MySQL/MariaDB binary log (ROW format, read
//! over the replication protocol with mysql_async's binlog stream; ADR 0012).
//!
//! One split carries the whole job, as for PostgreSQL: the binary log is one ordered log and a
//! transaction may touch several tables, so its rows are sent as [`SourceEvent::Rows`] of
//! their tables and its commit (the `XID` event) is a [`SourceEvent::Barrier`] at the position
//! after it — the engine commits whole source transactions, with their position, in the sink's
//! transaction.
//!
//! ```text
//!  start = SHOW MASTER STATUS (file, position, GTID) ─► snapshot: each table's key-range
//!  splits, read without locks, rows as op "R", a barrier after every batch (resumable)
//!  ─► binlog from start: TABLE_MAP, WRITE/UPDATE/DELETE_ROWS … XID ─► barrier after the XID
//! ```
//!
//! The handover is exact for the reason [`crate::cdc`] gives. A resume starts the binlog at
//! the position after the last committed transaction, so nothing is skipped or sent twice;
//! unlike PostgreSQL there is nothing on the server to acknowledge (the binary log is kept by
//! the server's own retention, which the watch compares with the job's position).
//!
//! Positions (JSON): `{"start": {"file", "pos", "gtid"}, "snapshot": {…}, "streaming": true,
//! "at": {"file": "binlog.000003", "pos": 1234, "gtid": "0-1-57"}, "committed_at": …}`.
//!
//! DDL on a captured table (ALTER, DROP, RENAME) stops the job before the change with a
//! message, as PostgreSQL's relation changes do; `TRUNCATE` empties the target table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::binlog::events::{EventData, OptionalMetadataField, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Value};
use serde::{Deserialize, Serialize};
use sluice_core::batch::OP_COLUMN;
use sluice_core::source::{BatchSender, Source, SourceEvent, SourceTable};
use sluice_core::{Error, ErrorKind, Position, Result, Split, TableId};
use tracing::{info, warn};

use super::check;
use super::config::{SourcePlan, ZeroDates};
use super::decode::ColBuilder;
use super::error::map;
use super::source::{MysqlSource, TableMeta};
use super::types::{Kind, parse_labels};
use crate::cdc::{CdcDetail, SnapshotMode, SnapshotProgress, Unacked, read_snapshot};

/// The change-capture options, validated.
#[derive(Debug, Clone)]
pub(crate) struct CdcPlan {
    /// The job's name (labels its metrics).
    pub job: String,
    /// The replica id the stream registers with (unique among the server's replicas).
    pub server_id: u32,
    pub snapshot: SnapshotMode,
}

/// A replica id derived from the job's name (FNV-1a), in 1_000_000..2^31: stable across
/// runs, unlikely to meet another job's or a real replica's (those are usually small).
pub(crate) fn default_server_id(job: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in job.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    1_000_000 + h % (i32::MAX as u32 - 1_000_000)
}

/// A place in the binary log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct BinlogPos {
    file: String,
    pos: u64,
    /// The GTID of the transaction ending here (MariaDB `domain-server-seq`), or the server's
    /// GTID position for a start; for information and for moving to another server by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gtid: Option<String>,
}

impl BinlogPos {
    /// The position after an event ending at `end` of `file`, closing the transaction whose
    /// GTID is `gtid` (taken: the next transaction has its own).
    fn after(file: &str, end: u64, gtid: &mut Option<String>) -> BinlogPos {
        BinlogPos {
            file: file.to_string(),
            pos: end,
            gtid: gtid.take(),
        }
    }
}

impl std::fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// A position of the stream split (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CdcPosition {
    /// Where the binary log was when the capture started (before the snapshot).
    start: BinlogPos,
    #[serde(default)]
    snapshot: SnapshotProgress,
    /// The snapshot is over: positions now are the stream's.
    #[serde(default)]
    streaming: bool,
    /// After the last applied transaction (or the last event read while idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<BinlogPos>,
    /// When that transaction committed in the source (RFC 3339); absent for an idle position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    committed_at: Option<String>,
}

/// How a binlog value differs from what the batch reader receives for the same column, and
/// what makes it equal.
#[derive(Debug, Clone)]
enum Fix {
    None,
    /// An unsigned integer of this many bits logged without its signedness.
    Unsigned(u32),
    /// A signed `mediumint`: mysql_common 0.37 decodes negative values without their sign
    /// (-8388608 arrives as 8388608).
    Int24,
    /// `enum`: logged as the label's number (1-based; 0 is the empty error value).
    Enum(Vec<String>),
    /// `set`: logged as a bitmap of the labels.
    Set(Vec<String>),
    /// `timestamp`: logged as seconds since 1970 (with a fraction); read as UTC.
    Timestamp,
    /// `year`: 0000 is logged as 0 and decoded as 1900.
    Year,
    /// `binary(n)`: trailing zero bytes are not logged.
    PadBinary(usize),
    /// A `latin1` text column: logged in its own character set (cp1252).
    Latin1,
}

/// One captured table.
struct CdcTable {
    id: TableId,
    db: String,
    name: String,
    /// The schema sent (the table's columns, all nullable, then the operation).
    schema: SchemaRef,
    columns: Vec<String>,
    kinds: Vec<Kind>,
    fixes: Vec<Fix>,
    /// The primary key's columns (indexes into `columns`).
    key: Vec<usize>,
    /// Keep zero dates (a MySQL target).
    keep_zero: bool,
    /// Otherwise a zero date is NULL, or an error (`zero_dates = "error"`).
    zero_dates: ZeroDates,
}

/// Fails for a column type whose binlog form the capture cannot decode yet; otherwise says
/// how its values are fixed.
fn fix_for(
    id: &TableId,
    name: &str,
    t: &super::types::MysqlType,
    collation: Option<&str>,
) -> Result<Fix> {
    let ct = t.column_type.to_ascii_lowercase();
    let base = ct.split(['(', ' ']).next().unwrap_or_default().to_string();
    let unsupported = |why: &str| {
        Error::schema(format!(
            "column {name:?} of table {id} has type {}, which change capture cannot decode \
             yet ({why})",
            t.column_type
        ))
        .with_hint(
            "leave the table out with exclude = [\"…\"] (copy it in a batch job), or change the \
             column's type",
        )
    };
    Ok(match base.as_str() {
        "uuid" | "inet4" | "inet6" => {
            return Err(unsupported("MariaDB logs it in its internal binary form"));
        }
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint"
            if t.kind == Kind::UInt =>
        {
            Fix::Unsigned(match base.as_str() {
                "tinyint" => 8,
                "smallint" => 16,
                "mediumint" => 24,
                "bigint" => 64,
                _ => 32,
            })
        }
        "enum" | "set" => {
            let args = ct
                .find('(')
                .and_then(|i| t.column_type.get(i + 1..t.column_type.rfind(')')?))
                .unwrap_or_default();
            let labels =
                parse_labels(args).ok_or_else(|| unsupported("its labels could not be read"))?;
            if base == "enum" {
                Fix::Enum(labels)
            } else {
                Fix::Set(labels)
            }
        }
        "mediumint" => Fix::Int24,
        "timestamp" => Fix::Timestamp,
        "year" => Fix::Year,
        "binary" => Fix::PadBinary(
            ct.find('(')
                .and_then(|i| ct[i + 1..].split(')').next()?.trim().parse().ok())
                .unwrap_or(1),
        ),
        _ if t.kind == Kind::Text => match collation.map(|c| c.split('_').next().unwrap_or(c)) {
            None | Some("utf8mb4" | "utf8mb3" | "utf8" | "ascii" | "binary") => Fix::None,
            Some("latin1") => Fix::Latin1,
            Some(other) => {
                return Err(unsupported(&format!(
                    "its character set is {other}; utf8mb4, utf8mb3, ascii and latin1 are \
                     decoded"
                )));
            }
        },
        _ => Fix::None,
    })
}

/// cp1252 (MySQL's `latin1`) bytes 0x80–0x9F; the rest are ISO-8859-1.
const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

fn latin1_to_utf8(b: &[u8]) -> String {
    b.iter()
        .map(|&c| match c {
            0x80..=0x9f => CP1252_HIGH[(c - 0x80) as usize],
            _ => char::from(c),
        })
        .collect()
}

impl Fix {
    /// Makes `v` what the batch reader would have received.
    fn apply(&self, v: Value) -> std::result::Result<Value, String> {
        if v == Value::NULL {
            return Ok(v);
        }
        Ok(match (self, v) {
            (Fix::None, v) => v,
            (Fix::Unsigned(bits), Value::Int(i)) if i < 0 => {
                Value::UInt((i128::from(i) + (1i128 << bits)) as u64)
            }
            (Fix::Int24, Value::Int(i)) if i >= 1 << 23 => Value::Int(i - (1 << 24)),
            (Fix::Enum(labels), Value::Int(n)) => {
                if n == 0 {
                    Value::Bytes(Vec::new())
                } else {
                    let l = labels
                        .get(n as usize - 1)
                        .ok_or_else(|| format!("enum value number {n} has no label"))?;
                    Value::Bytes(l.clone().into_bytes())
                }
            }
            (Fix::Set(labels), Value::Bytes(bits)) => {
                let mut on = Vec::new();
                for (i, l) in labels.iter().enumerate() {
                    if bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) {
                        on.push(l.as_str());
                    }
                }
                Value::Bytes(on.join(",").into_bytes())
            }
            (Fix::Timestamp, Value::Bytes(b)) => {
                let s = String::from_utf8_lossy(&b).into_owned();
                let (sec, frac) = s.split_once('.').unwrap_or((&s, "0"));
                let sec: i64 = sec.parse().map_err(|_| format!("bad timestamp {s:?}"))?;
                let us: u32 = format!("{frac:0<6}")[..6]
                    .parse()
                    .map_err(|_| format!("bad timestamp {s:?}"))?;
                if sec == 0 && us == 0 {
                    Value::Date(0, 0, 0, 0, 0, 0, 0)
                } else {
                    use chrono::{Datelike, Timelike};
                    let t = chrono::DateTime::from_timestamp(sec, us * 1000)
                        .ok_or_else(|| format!("timestamp {s:?} out of range"))?;
                    Value::Date(
                        t.year() as u16,
                        t.month() as u8,
                        t.day() as u8,
                        t.hour() as u8,
                        t.minute() as u8,
                        t.second() as u8,
                        us,
                    )
                }
            }
            (Fix::Year, Value::Bytes(b)) if b == b"1900" => Value::Int(0),
            (Fix::PadBinary(n), Value::Bytes(mut b)) => {
                if b.len() < *n {
                    b.resize(*n, 0);
                }
                Value::Bytes(b)
            }
            (Fix::Latin1, Value::Bytes(b)) => Value::Bytes(latin1_to_utf8(&b).into_bytes()),
            (_, v) => v,
        })
    }
}

pub(crate) struct MysqlCdcSource {
    plan: SourcePlan,
    cdc: CdcPlan,
    describe: MysqlSource,
    tables: std::sync::Mutex<Vec<Arc<CdcTable>>>,
    /// The transactions sent and not yet committed by the sink (keys: [`order_key`]).
    unacked: Unacked<String>,
}

impl MysqlCdcSource {
    pub(crate) fn new(plan: SourcePlan, cdc: CdcPlan) -> Self {
        let unacked = Unacked::new(&cdc.job);
        MysqlCdcSource {
            describe: MysqlSource::new(plan.clone()),
            plan,
            cdc,
            tables: Default::default(),
            unacked,
        }
    }

    fn captured(&self) -> Vec<Arc<CdcTable>> {
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn position(&self, split: &Split, pos: &CdcPosition) -> Result<Position> {
        Ok(Position::new(
            split.id.clone(),
            serde_json::to_value(pos).map_err(|e| Error::internal(format!("position: {e}")))?,
        ))
    }

    /// The binary log's current end: where a capture with nothing applied yet starts.
    async fn current(&self, conn: &mut Conn) -> Result<BinlogPos> {
        let row: Option<(String, u64)> = conn
            .query_first("SHOW MASTER STATUS")
            .await
            .map_err(|e| {
                binlog_privilege(map(e, "change capture: reading the binary log's position"))
            })?
            .map(|r: mysql_async::Row| {
                let file: String = r.get(0).unwrap_or_default();
                let pos: u64 = r.get(1).unwrap_or_default();
                (file, pos)
            });
        let Some((file, pos)) = row.filter(|(f, _)| !f.is_empty()) else {
            return Err(no_binlog());
        };
        let gtid: Option<String> = conn
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .ok()
            .flatten()
            .filter(|g: &String| !g.is_empty());
        Ok(BinlogPos { file, pos, gtid })
    }

    /// The binary log files the server still has, with their sizes.
    async fn logs(&self, conn: &mut Conn) -> Result<Vec<(String, u64)>> {
        let rows: Vec<mysql_async::Row> = conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| binlog_privilege(map(e, "change capture: listing the binary logs")))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0).unwrap_or_default(), r.get(1).unwrap_or_default()))
            .collect())
    }
}

fn no_binlog() -> Error {
    Error::config("change capture needs the server's binary log, and it is off (log_bin = OFF)")
        .with_hint(
            "start the server with log_bin (e.g. log-bin = mysql-bin and server-id = 1 in its \
             config file), binlog_format = ROW and binlog_row_image = FULL, then restart it",
        )
}

fn binlog_privilege(e: Error) -> Error {
    if e.kind() == ErrorKind::Auth || e.to_string().contains("denied") {
        Error::new(ErrorKind::Auth, e.to_string()).with_hint(
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the source user (MariaDB: \
             REPLICATION SLAVE, BINLOG MONITOR), and SELECT on the tables",
        )
    } else {
        e
    }
}

/// Rows of one table waiting for their transaction's commit.
struct Pending {
    table: Arc<CdcTable>,
    builders: Vec<ColBuilder>,
    ops: Vec<&'static str>,
}

impl Pending {
    fn new(table: Arc<CdcTable>, cap: usize) -> Result<Pending> {
        let builders = table.schema.fields()[..table.columns.len()]
            .iter()
            .map(|f| ColBuilder::new(f, cap).map_err(Error::internal))
            .collect::<Result<Vec<_>>>()?;
        Ok(Pending {
            table,
            builders,
            ops: Vec::new(),
        })
    }

    async fn send(&mut self, out: &BatchSender) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let mut cols: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        cols.push(Arc::new(StringArray::from(std::mem::take(&mut self.ops))));
        let data = RecordBatch::try_new(self.table.schema.clone(), cols)?;
        out.send_event(SourceEvent::Rows {
            table: self.table.id.clone(),
            data,
            bytes: 0,
        })
        .await
    }

    /// Appends one row image (values in binlog column order, mapped by `from`).
    fn push(&mut self, op: &'static str, mut row: BinlogRow, from: &[usize]) -> Result<()> {
        let t = &self.table;
        for (i, &j) in from.iter().enumerate() {
            let column = &t.columns[i];
            let err = |m: String| Error::data(format!("table {}, column {column}: {m}", t.id));
            let v = match row.take(j) {
                Some(BinlogValue::Value(v)) => v,
                Some(BinlogValue::Jsonb(j)) => Value::try_from(BinlogValue::Jsonb(j))
                    .map_err(|e| err(format!("JSON value: {e}")))?,
                Some(BinlogValue::JsonDiff(_)) => {
                    return Err(Error::config(format!(
                        "table {}: the binary log holds a partial JSON update of column \
                         {column}, which does not carry the whole value",
                        t.id
                    ))
                    .with_hint("SET GLOBAL binlog_row_value_options = '' (full JSON images)"));
                }
                None => {
                    return Err(Error::config(format!(
                        "table {}: a change in the binary log lacks column {column} (the server \
                         logs partial row images)",
                        t.id
                    ))
                    .with_hint(
                        "SET GLOBAL binlog_row_image = FULL, then start the job from scratch",
                    ));
                }
            };
            let v = t.fixes[i].apply(v).map_err(err)?;
            let b = &mut self.builders[i];
            if !b.push(t.kinds[i], v, t.keep_zero).map_err(err)? {
                // A zero date for a target that cannot hold it, as the batch reader does.
                match t.zero_dates {
                    ZeroDates::Null => b.null(),
                    ZeroDates::Error => {
                        return Err(err("zero date".into()).with_hint(
                            "set zero_dates = \"null\" in [source] to read zero dates as NULL",
                        ));
                    }
                }
            }
        }
        self.ops.push(op);
        Ok(())
    }
}

/// A table map of the stream, mapped onto the captured table.
struct MapTo {
    table: Arc<CdcTable>,
    /// For each captured column, its index in the logged rows.
    from: Vec<usize>,
}

fn schema_changed(table: &TableId, what: &str) -> Error {
    Error::schema(format!(
        "table {table} changed while it was captured ({what}); Sluice does not yet follow \
         schema changes in a stream"
    ))
    .with_hint(
        "apply the same change to the target table, then restart the job from scratch (it \
         snapshots again); the stream stopped before the change, so nothing after it was applied",
    )
}

/// The job stops at DDL statement `query` (ending at `file`:`end`) on captured table `table`.
fn ddl_stop(table: &TableId, query: &str, file: &str, end: u64) -> Error {
    let q: String = query.chars().take(200).collect();
    schema_changed(table, &format!("{q:?} at {file}:{end}"))
}

/// Maps a table map event's columns onto the captured table: by name when the server logs
/// names (`binlog_row_metadata = FULL`), else by position.
fn map_columns(tme: &TableMapEvent<'_>, table: &Arc<CdcTable>) -> Result<MapTo> {
    let mut names: Vec<String> = Vec::new();
    for f in tme.iter_optional_meta() {
        if let Ok(OptionalMetadataField::ColumnName(n)) = f {
            for name in n.iter_names() {
                names.push(
                    name.map_err(|e| Error::internal(format!("binlog column names: {e}")))?
                        .name()
                        .into_owned(),
                );
            }
        }
    }
    let count = tme.columns_count() as usize;
    if names.is_empty() {
        if count != table.columns.len() {
            return Err(schema_changed(
                &table.id,
                &format!(
                    "the binary log has {count} columns, the capture {}",
                    table.columns.len()
                ),
            ));
        }
        return Ok(MapTo {
            table: table.clone(),
            from: (0..count).collect(),
        });
    }
    let mut from = Vec::with_capacity(table.columns.len());
    for c in &table.columns {
        match names.iter().position(|n| n == c) {
            Some(i) => from.push(i),
            None => return Err(schema_changed(&table.id, &format!("column {c:?} is gone"))),
        }
    }
    if let Some(extra) = names.iter().find(|n| !table.columns.contains(n)) {
        return Err(schema_changed(
            &table.id,
            &format!("column {extra:?} was added"),
        ));
    }
    Ok(MapTo {
        table: table.clone(),
        from,
    })
}

/// What a DDL statement does to which tables (`(database, table)`; the database is the
/// statement's default when not written).
#[derive(Debug, PartialEq)]
enum Ddl {
    Truncate(Vec<(String, String)>),
    /// ALTER, DROP or RENAME: the shape or the name changes.
    Changes(Vec<(String, String)>),
    /// CREATE TABLE (not temporary).
    Create((String, String)),
    Other,
}

/// Reads the table names a DDL statement names (backquoted or bare, qualified or not).
fn parse_ddl(query: &str, default_db: &str) -> Ddl {
    // Tokens: identifiers (backquotes removed), punctuation; comments dropped.
    let mut tokens: Vec<String> = Vec::new();
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if query[i..].starts_with("/*") {
            i = query[i..].find("*/").map_or(b.len(), |e| i + e + 2);
        } else if query[i..].starts_with("--") || c == b'#' {
            i = query[i..].find('\n').map_or(b.len(), |e| i + e + 1);
        } else if c == b'`' {
            let mut s = String::new();
            i += 1;
            while i < b.len() {
                if b[i] == b'`' {
                    if b.get(i + 1) == Some(&b'`') {
                        s.push('`');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                let ch = query[i..].chars().next().unwrap_or(' ');
                s.push(ch);
                i += ch.len_utf8();
            }
            tokens.push(format!("`{s}"));
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            tokens.push(query[start..i].to_string());
        } else {
            tokens.push((c as char).to_string());
            i += 1;
        }
    }
    let word = |t: &String| t.to_ascii_uppercase();
    let ident = |t: &str| t.strip_prefix('`').unwrap_or(t).to_string();
    // A name at tokens[k]: `db`.`t` or `t`; returns it and the index after it.
    let name_at = |k: usize| -> Option<((String, String), usize)> {
        let first = tokens.get(k)?;
        if tokens.get(k + 1).map(String::as_str) == Some(".") {
            let second = tokens.get(k + 2)?;
            Some(((ident(first), ident(second)), k + 3))
        } else {
            Some(((default_db.to_string(), ident(first)), k + 1))
        }
    };
    let upper: Vec<String> = tokens.iter().map(word).collect();
    let is = |k: usize, w: &str| upper.get(k).is_some_and(|t| t == w);
    let mut k = 0;
    match upper.first().map(String::as_str) {
        Some("TRUNCATE") => {
            k = 1;
            if is(k, "TABLE") {
                k += 1;
            }
            name_at(k).map_or(Ddl::Other, |(n, _)| Ddl::Truncate(vec![n]))
        }
        Some("ALTER") => {
            while k < upper.len() && !is(k, "TABLE") {
                k += 1;
            }
            k += 1;
            if is(k, "IF") {
                k += 2;
            }
            name_at(k).map_or(Ddl::Other, |(n, _)| Ddl::Changes(vec![n]))
        }
        Some("DROP") => {
            k = 1;
            if is(k, "TEMPORARY") {
                return Ddl::Other;
            }
            if !is(k, "TABLE") {
                return Ddl::Other;
            }
            k += 1;
            if is(k, "IF") {
                k += 2;
            }
            let mut names = Vec::new();
            while let Some((n, next)) = name_at(k) {
                names.push(n);
                if tokens.get(next).map(String::as_str) == Some(",") {
                    k = next + 1;
                } else {
                    break;
                }
            }
            Ddl::Changes(names)
        }
        Some("CREATE") => {
            k = 1;
            if is(k, "OR") {
                k += 2;
            }
            if !is(k, "TABLE") {
                return Ddl::Other;
            }
            k += 1;
            if is(k, "IF") {
                k += 3;
            }
            name_at(k).map_or(Ddl::Other, |(n, _)| Ddl::Create(n))
        }
        Some("RENAME") => {
            k = 1;
            if !is(k, "TABLE") {
                return Ddl::Other;
            }
            k += 1;
            let mut names = Vec::new();
            while let Some((n, next)) = name_at(k) {
                names.push(n);
                // a TO b
                let Some((to, after)) = is(next, "TO").then(|| name_at(next + 1)).flatten() else {
                    break;
                };
                names.push(to);
                if tokens.get(after).map(String::as_str) == Some(",") {
                    k = after + 1;
                } else {
                    break;
                }
            }
            Ddl::Changes(names)
        }
        _ => Ddl::Other,
    }
}

/// The MariaDB event types that carry data in a form this reader does not decode: compressed
/// queries and rows (`log_bin_compress`), encrypted logs.
fn undecodable(raw: u8) -> Option<&'static str> {
    match raw {
        164 => Some("an encrypted binary log (encrypt_binlog = ON)"),
        165..=171 => Some("compressed events (log_bin_compress = ON)"),
        _ => None,
    }
}

#[async_trait]
impl Source for MysqlCdcSource {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let described = self.describe.tables().await?;
        let mut out = Vec::new();
        let mut captured = Vec::new();
        for t in described {
            let id = t.schema.id.clone();
            if t.schema.primary_key.is_empty() {
                return Err(Error::config(format!(
                    "table {id} has no primary key: change capture applies updates and deletes \
                     by key"
                ))
                .with_hint("add a primary key to it, or leave it out with exclude = [\"…\"]"));
            }
            let meta: Arc<TableMeta> = self.describe.meta(&id)?;
            let mut fixes = Vec::new();
            let mut kinds = Vec::new();
            for ((name, ty), coll) in meta.columns.iter().zip(&meta.collations) {
                fixes.push(fix_for(&id, name, ty, coll.as_deref())?);
                kinds.push(ty.kind);
            }
            let mut fields: Vec<Field> = t
                .schema
                .arrow
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            let columns: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
            fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
            let with_op = Arc::new(Schema::new_with_metadata(
                fields,
                t.schema.arrow.metadata().clone(),
            ));
            let mut s = t.schema.clone();
            s.arrow = with_op.clone();
            let key = meta
                .primary_key
                .iter()
                .filter_map(|k| columns.iter().position(|c| c == k))
                .collect();
            captured.push(Arc::new(CdcTable {
                id: id.clone(),
                db: meta.db.clone(),
                name: meta.table.clone(),
                schema: with_op,
                columns,
                kinds,
                fixes,
                key,
                keep_zero: self.plan.same_engine,
                zero_dates: self.plan.zero_dates,
            }));
            out.push(SourceTable {
                schema: s,
                estimated_rows: t.estimated_rows,
                estimated_bytes: t.estimated_bytes,
            });
        }
        *self.tables.lock().unwrap_or_else(|e| e.into_inner()) = captured;
        Ok(out)
    }

    async fn check(&self, _tables: &[SourceTable]) -> Result<()> {
        let mut conn = check::connect(&self.plan.server, "change capture").await?;
        let row: Option<(Option<String>, Option<String>, Option<String>, u32)> = conn
            .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id")
            .await
            .map_err(|e| map(e, "change capture: reading the server's settings"))?;
        let (log_bin, format, image, server_id) = row.unwrap_or_default();
        if !matches!(log_bin.as_deref(), Some("1" | "ON")) {
            return Err(no_binlog());
        }
        if format.as_deref() != Some("ROW") {
            return Err(Error::config(format!(
                "change capture needs binlog_format = ROW; the server has binlog_format = {}",
                format.unwrap_or_default()
            ))
            .with_hint("SET GLOBAL binlog_format = 'ROW' (and in the server's config file)"));
        }
        if image.as_deref() != Some("FULL") {
            return Err(Error::config(format!(
                "change capture needs binlog_row_image = FULL; the server has \
                 binlog_row_image = {}",
                image.unwrap_or_default()
            ))
            .with_hint("SET GLOBAL binlog_row_image = 'FULL' (and in the server's config file)"));
        }
        if server_id == self.cdc.server_id {
            return Err(Error::config(format!(
                "the job's replica id {} is the server's own server_id",
                self.cdc.server_id
            ))
            .with_hint("choose another with server_id = N in [source]"));
        }
        self.current(&mut conn).await?;
        let _ = conn.disconnect().await;
        Ok(())
    }

    async fn splits(&self, table: &SourceTable) -> Result<Vec<Split>> {
        let captured: Vec<TableId> = self.captured().iter().map(|t| t.id.clone()).collect();
        CdcDetail::plan(
            format!("binlog:{}#cdc", self.cdc.server_id),
            &captured,
            table,
            &self.describe,
            self.cdc.snapshot != SnapshotMode::Never,
        )
        .await
    }

    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let (detail, resume) = CdcDetail::read::<CdcPosition>(&split, resume.as_ref())?;
        let mut pos = match resume {
            Some(p) => p,
            None => {
                let mut conn = check::connect(&self.plan.server, "change capture").await?;
                let start = self.current(&mut conn).await?;
                let _ = conn.disconnect().await;
                info!(binlog = %start, gtid = ?start.gtid, "Change capture starts here.");
                CdcPosition {
                    start,
                    ..Default::default()
                }
            }
        };
        // The log the stream needs must still be there, before the snapshot is read.
        self.check_retained(pos.at.as_ref().unwrap_or(&pos.start))
            .await?;
        if !pos.streaming {
            if self.cdc.snapshot == SnapshotMode::Never {
                pos.streaming = true;
            } else {
                if !self.snapshot(&split, &detail, &mut pos, &out).await? {
                    return Ok(());
                }
                if self.cdc.snapshot == SnapshotMode::InitialOnly {
                    return Ok(());
                }
            }
        }
        match self.stream(&split, pos, &out).await {
            Err(e) if e.kind() == ErrorKind::Stopped => Ok(()),
            r => r,
        }
    }

    async fn committed(&self, position: &Position) -> Result<()> {
        if let Ok(p) = serde_json::from_value::<CdcPosition>(position.value.clone())
            && p.streaming
            && let Some(at) = p.at
        {
            self.unacked.committed(&order_key(&at), at.pos as f64);
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.describe.close().await
    }
}

/// Orders positions across files: the file name's number, then the offset (zero-padded).
fn order_key(p: &BinlogPos) -> String {
    format!("{}:{:020}", p.file, p.pos)
}

/// How often the binary logs the job still needs are looked at while streaming.
const WATCH_EVERY: Duration = Duration::from_secs(10);
/// How long the stream may stay silent (heartbeats come every second) before the connection
/// counts as dead.
const SILENCE: Duration = Duration::from_secs(20);

impl MysqlCdcSource {
    /// Fails when the file holding `at` is gone from the server (purged by its retention).
    async fn check_retained(&self, at: &BinlogPos) -> Result<()> {
        let mut conn = check::connect(&self.plan.server, "change capture").await?;
        let logs = self.logs(&mut conn).await?;
        let _ = conn.disconnect().await;
        if logs.is_empty() {
            return Err(no_binlog());
        }
        if !logs.iter().any(|(f, _)| f == &at.file) {
            return Err(Error::config(format!(
                "binary log {}, where the job's capture continues ({at}), is no longer on the \
                 server (purged by binlog_expire_logs_seconds / expire_logs_days or PURGE \
                 BINARY LOGS; the oldest left is {}): the changes since the job's last \
                 checkpoint can no longer be read",
                at.file, logs[0].0
            ))
            .with_hint(
                "start the job from scratch (--from-scratch, or reset its offsets): it snapshots \
                 every table again; keep binary logs longer than the job may be stopped",
            ));
        }
        Ok(())
    }

    /// Reads the snapshot's splits not done yet; `Ok(false)` when the job stops meanwhile.
    async fn snapshot(
        &self,
        split: &Split,
        detail: &CdcDetail,
        pos: &mut CdcPosition,
        out: &BatchSender,
    ) -> Result<bool> {
        // Each split reads its own snapshot, taken after the start: no lock is needed.
        let mut plan = self.plan.clone();
        plan.consistent_snapshot = false;
        let reader = MysqlSource::new(plan);
        reader.tables().await?;
        let schemas: HashMap<TableId, SchemaRef> = self
            .captured()
            .into_iter()
            .map(|t| (t.id.clone(), t.schema.clone()))
            .collect();
        let position = |p: &SnapshotProgress| {
            let mut at = pos.clone();
            at.snapshot = p.clone();
            self.position(split, &at)
        };
        let mut progress = pos.snapshot.clone();
        let done = read_snapshot(
            &reader,
            &detail.snapshot,
            &schemas,
            &mut progress,
            out,
            &position,
        )
        .await;
        reader.close().await?;
        pos.snapshot = progress;
        if !done? {
            return Ok(false);
        }
        pos.streaming = true;
        pos.snapshot = SnapshotProgress::default();
        info!("Snapshot done; streaming changes.");
        Ok(out
            .send_event(SourceEvent::Barrier(self.position(split, pos)?))
            .await
            .is_ok())
    }

    /// Opens the binlog stream at `from`; also says whether the server checksums events.
    async fn open_stream(&self, from: &BinlogPos) -> Result<(BinlogStream, bool)> {
        let mut conn = check::connect(&self.plan.server, "change capture").await?;
        let checksum: Option<String> = conn
            .query_first("SELECT @@global.binlog_checksum")
            .await
            .map_err(|e| map(e, "change capture: reading binlog_checksum"))?;
        let crc = checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        // Native GTID events from MariaDB (a replica without this capability gets them as
        // BEGIN queries), and a heartbeat every second on an idle log.
        conn.query_drop("SET @mariadb_slave_capability = 4, @master_heartbeat_period = 1000000000")
            .await
            .map_err(|e| map(e, "change capture: replication session settings"))?;
        let request = BinlogStreamRequest::new(self.cdc.server_id)
            .with_filename(from.file.as_bytes())
            .with_pos(from.pos);
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| binlog_privilege(stream_error(e)))?;
        Ok((stream, crc))
    }

    /// Streams changes from the committed position until the job stops.
    async fn stream(&self, split: &Split, mut pos: CdcPosition, out: &BatchSender) -> Result<()> {
        let from = pos.at.clone().unwrap_or_else(|| pos.start.clone());
        let (mut stream, crc) = self.open_stream(&from).await?;
        info!(from = %from, server_id = self.cdc.server_id, "Streaming changes from the binary log.");
        self.unacked.clear();
        let by_name: HashMap<(String, String), Arc<CdcTable>> = self
            .captured()
            .into_iter()
            .map(|t| ((t.db.clone(), t.name.clone()), t))
            .collect();
        let mut maps: HashMap<u64, MapTo> = HashMap::new();
        let mut pending: HashMap<TableId, Pending> = HashMap::new();
        let mut file = from.file.clone();
        // After the last complete event outside a transaction (what a barrier may say).
        let mut seen = from.clone();
        let mut in_txn = false;
        let mut gtid: Option<String> = None;
        let mut last_idle = Instant::now();
        let mut last_watch = Instant::now();
        let mut last_event = Instant::now();
        let batch_size = self.plan.batch_size;
        let stop = out.stop_token().clone();
        loop {
            if !in_txn
                && pos.at.as_ref() != Some(&seen)
                && seen != from
                && last_idle.elapsed() >= Duration::from_secs(1)
            {
                // Idle (or only other tables' transactions): move the position on, so a
                // resume does not read them again.
                last_idle = Instant::now();
                pos.at = Some(seen.clone());
                pos.committed_at = None;
                out.send_event(SourceEvent::Barrier(self.position(split, &pos)?))
                    .await?;
            }
            if last_watch.elapsed() >= WATCH_EVERY {
                last_watch = Instant::now();
                // A hung server must not hold the stream here (the silence check is below).
                if tokio::time::timeout(Duration::from_secs(5), self.watch(&seen))
                    .await
                    .is_err()
                {
                    warn!("Cannot watch the binary log: the server did not answer within 5 s.");
                }
            }
            let ev = tokio::select! {
                _ = stop.cancelled() => break,
                r = tokio::time::timeout(Duration::from_secs(1), stream.next()) => match r {
                    // The server sends a heartbeat every second while idle: a silent one is
                    // hung or cut off (a TCP connection can stay open without a peer).
                    Err(_) if last_event.elapsed() >= SILENCE => {
                        return Err(Error::new(ErrorKind::Connection, format!(
                            "change capture: the server sent nothing, not even a heartbeat, for \
                             {} s: it is hung or the network is cut", SILENCE.as_secs()))
                            .with_hint("check the server; the job reconnects and goes on from its \
                                        last checkpoint when it answers"));
                    }
                    Err(_) => continue,
                    Ok(None) => return Err(Error::new(ErrorKind::Connection,
                        "change capture: the server ended the binary log stream")),
                    Ok(Some(Err(e))) => return Err(stream_error(e)),
                    Ok(Some(Ok(ev))) => ev,
                }
            };
            last_event = Instant::now();
            let header = ev.header();
            let raw = header.event_type_raw();
            let end = u64::from(header.log_pos());
            if let Some(what) = undecodable(raw) {
                return Err(Error::config(format!(
                    "the binary log holds {what}, which change capture cannot read"
                ))
                .with_hint("turn it off on the server, then start the job from scratch"));
            }
            if raw == 162 {
                // MariaDB GTID: seq_no u64, domain u32, flags u8 (1 = standalone: no BEGIN,
                // no XID; a DDL statement follows).
                let d = ev.data();
                if d.len() >= 13 {
                    let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
                    let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
                    gtid = Some(format!("{domain}-{}-{seq}", header.server_id()));
                    in_txn = d[12] & 1 == 0;
                }
                continue;
            }
            let data = ev
                .read_data()
                .map_err(|e| Error::internal(format!("decoding a binlog event: {e}")))?;
            let Some(data) = data else { continue };
            match data {
                EventData::RotateEvent(r) => {
                    file = rotate_name(r.name_raw(), header.event_size(), crc);
                    if seen.file != file {
                        seen = BinlogPos {
                            file: file.clone(),
                            pos: r.position(),
                            gtid: seen.gtid.clone(),
                        };
                    }
                }
                EventData::QueryEvent(q) => {
                    let query = q.query();
                    let upper = query.trim_start().to_ascii_uppercase();
                    if upper.starts_with("BEGIN") {
                        in_txn = true;
                        continue;
                    }
                    if upper.starts_with("COMMIT") {
                        // A transaction of non-transactional tables (MyISAM) ends so.
                        self.commit(
                            split,
                            &mut pos,
                            &mut pending,
                            &mut seen,
                            BinlogPos::after(&file, end, &mut gtid),
                            header.timestamp(),
                            out,
                        )
                        .await?;
                        in_txn = false;
                        continue;
                    }
                    let db = q.schema().into_owned();
                    match parse_ddl(&query, &db) {
                        Ddl::Truncate(names) => {
                            flush(&mut pending, out).await?;
                            let mut ours = false;
                            for n in &names {
                                if let Some(t) = by_name.get(n) {
                                    out.send_event(SourceEvent::Truncate(t.id.clone())).await?;
                                    ours = true;
                                }
                            }
                            let at = BinlogPos::after(&file, end, &mut gtid);
                            if ours {
                                self.commit(
                                    split,
                                    &mut pos,
                                    &mut pending,
                                    &mut seen,
                                    at,
                                    header.timestamp(),
                                    out,
                                )
                                .await?;
                            } else {
                                seen = at;
                            }
                        }
                        Ddl::Changes(names) => {
                            if let Some(t) = names.iter().find_map(|n| by_name.get(n)) {
                                // The unit in progress rolls back; the job stops before it.
                                return Err(ddl_stop(&t.id, &query, &file, end));
                            }
                            seen = BinlogPos::after(&file, end, &mut gtid);
                        }
                        Ddl::Create(n) => {
                            // CREATE OR REPLACE of a captured table replaces its shape.
                            if let Some(t) = by_name.get(&n) {
                                return Err(ddl_stop(&t.id, &query, &file, end));
                            }
                            let (chosen, id) = self.describe.selects(&n.0, &n.1);
                            if chosen && !by_name.contains_key(&n) {
                                warn!(
                                    table = %id,
                                    "A table created since this capture started matches the \
                                     job's `tables`, and the capture does not include it: its \
                                     rows and changes are NOT copied. Start the job from scratch \
                                     to include it, or capture it in a job of its own."
                                );
                            }
                            if !in_txn {
                                seen = BinlogPos::after(&file, end, &mut gtid);
                            }
                        }
                        Ddl::Other => {
                            if !in_txn {
                                seen = BinlogPos::after(&file, end, &mut gtid);
                            }
                        }
                    }
                    if !in_txn {
                        continue;
                    }
                    in_txn = false;
                }
                EventData::TableMapEvent(tme) => {
                    let key = (
                        tme.database_name().into_owned(),
                        tme.table_name().into_owned(),
                    );
                    match by_name.get(&key) {
                        Some(t) => {
                            let m = map_columns(&tme, t)?;
                            maps.insert(tme.table_id(), m);
                        }
                        None => {
                            maps.remove(&tme.table_id());
                        }
                    }
                }
                EventData::RowsEvent(re) => {
                    let Some(m) = maps.get(&re.table_id()) else {
                        continue;
                    };
                    let Some(tme) = stream.get_tme(re.table_id()) else {
                        return Err(Error::internal("a rows event without its table map"));
                    };
                    let p = match pending.entry(m.table.id.clone()) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(Pending::new(m.table.clone(), batch_size)?)
                        }
                    };
                    let is_update = matches!(
                        re,
                        RowsEventData::UpdateRowsEvent(_)
                            | RowsEventData::UpdateRowsEventV1(_)
                            | RowsEventData::PartialUpdateRowsEvent(_)
                    );
                    for r in re.rows(tme) {
                        let (before, after) = r.map_err(|e| {
                            Error::internal(format!("decoding a change of {}: {e}", m.table.id))
                        })?;
                        match (before, after) {
                            (Some(b), Some(a)) if is_update => {
                                // A changed key: the old key is deleted first.
                                if key_changed(&b, &a, &m.table, &m.from) {
                                    p.push("D", b, &m.from)?;
                                }
                                p.push("U", a, &m.from)?;
                            }
                            (None, Some(a)) => p.push("I", a, &m.from)?,
                            (Some(b), None) => p.push("D", b, &m.from)?,
                            _ => {}
                        }
                    }
                    if p.ops.len() >= batch_size {
                        p.send(out).await?;
                    }
                }
                EventData::XidEvent(_) => {
                    let at = BinlogPos::after(&file, end, &mut gtid);
                    self.commit(
                        split,
                        &mut pos,
                        &mut pending,
                        &mut seen,
                        at,
                        header.timestamp(),
                        out,
                    )
                    .await?;
                    in_txn = false;
                }
                EventData::HeartbeatEvent => {}
                _ => {}
            }
        }
        let _ = stream.close().await;
        Ok(())
    }

    /// A source transaction ended at `at`: its rows (if any of ours) are sent and a barrier
    /// carries the position after it.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        split: &Split,
        pos: &mut CdcPosition,
        pending: &mut HashMap<TableId, Pending>,
        seen: &mut BinlogPos,
        at: BinlogPos,
        timestamp: u32,
        out: &BatchSender,
    ) -> Result<()> {
        let ours = pending.values().any(|p| !p.ops.is_empty());
        *seen = at.clone();
        if !ours {
            return Ok(());
        }
        flush(pending, out).await?;
        let micros = i64::from(timestamp) * 1_000_000;
        pos.committed_at = chrono::DateTime::from_timestamp(i64::from(timestamp), 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        self.unacked.sent(order_key(&at), micros);
        pos.at = Some(at);
        out.send_event(SourceEvent::Barrier(self.position(split, pos)?))
            .await
    }

    /// Publishes how many bytes of binary log lie beyond the job's position, and warns when
    /// the file it reads is the oldest the server keeps. Never fatal.
    async fn watch(&self, at: &BinlogPos) {
        let logs = match check::connect(&self.plan.server, "watching the binary log").await {
            Ok(mut c) => {
                let l = self.logs(&mut c).await;
                let _ = c.disconnect().await;
                l
            }
            Err(e) => Err(e),
        };
        let logs = match logs {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "Cannot watch the binary log.");
                return;
            }
        };
        let mut behind = 0u64;
        let mut found = false;
        for (f, size) in &logs {
            if f == &at.file {
                found = true;
                behind += size.saturating_sub(at.pos);
            } else if found {
                behind += size;
            }
        }
        metrics::gauge!(
            sluice_core::metrics::REPLICATION_RETAINED_BYTES,
            sluice_core::metrics::labels::JOB => self.cdc.job.clone()
        )
        .set(behind as f64);
    }
}

/// The file name a rotate event names. With `binlog_checksum = CRC32` every rotate event —
/// the server's fake one when a stream starts or switches files too — ends with a 4-byte CRC
/// which mysql_common 0.37 does not always remove; the event's size says whether it is still
/// there (header 19 bytes, position 8, then the name).
fn rotate_name(raw: &[u8], event_size: u32, crc: bool) -> String {
    let unstripped = event_size as usize == 19 + 8 + raw.len();
    let name = if crc && unstripped && raw.len() > 4 {
        &raw[..raw.len() - 4]
    } else {
        raw
    };
    String::from_utf8_lossy(name).into_owned()
}

/// Whether an update changed the row's primary key (compared as logged).
fn key_changed(b: &BinlogRow, a: &BinlogRow, table: &CdcTable, from: &[usize]) -> bool {
    table
        .key
        .iter()
        .any(|&k| b.as_ref(from[k]) != a.as_ref(from[k]))
}

fn stream_error(e: mysql_async::Error) -> Error {
    let text = e.to_string();
    if text.contains("Could not find first log file") || text.contains("purged") {
        Error::config(format!(
            "change capture: the server cannot send the binary log: {text}"
        ))
        .with_hint(
            "the log the job needs was purged: start the job from scratch (it snapshots \
                 again), and keep binary logs longer than the job may be stopped",
        )
    } else {
        map(e, "change capture: reading the binary log")
    }
}

/// Sends every table's pending rows.
async fn flush(pending: &mut HashMap<TableId, Pending>, out: &BatchSender) -> Result<()> {
    for p in pending.values_mut() {
        p.send(out).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn ddl_names_the_tables_it_changes() {
        assert_eq!(
            parse_ddl("TRUNCATE TABLE `shop`.`orders`", "x"),
            Ddl::Truncate(names(&[("shop", "orders")]))
        );
        assert_eq!(
            parse_ddl("truncate t", "db"),
            Ddl::Truncate(names(&[("db", "t")]))
        );
        assert_eq!(
            parse_ddl("/* c */ ALTER ONLINE TABLE `we``ird` ADD c int", "db"),
            Ddl::Changes(names(&[("db", "we`ird")]))
        );
        assert_eq!(
            parse_ddl(
                "DROP TABLE IF EXISTS `a`,b.`c` /* generated by server */",
                "db"
            ),
            Ddl::Changes(names(&[("db", "a"), ("b", "c")]))
        );
        assert_eq!(
            parse_ddl("RENAME TABLE a TO b, x.c TO d", "db"),
            Ddl::Changes(names(&[("db", "a"), ("db", "b"), ("x", "c"), ("db", "d")]))
        );
        assert_eq!(parse_ddl("DROP TEMPORARY TABLE t", "db"), Ddl::Other);
        assert_eq!(
            parse_ddl("CREATE TABLE IF NOT EXISTS `x`.t (a int)", "db"),
            Ddl::Create(("x".into(), "t".into()))
        );
        assert_eq!(
            parse_ddl("create or replace table t (a int)", "db"),
            Ddl::Create(("db".into(), "t".into()))
        );
        assert_eq!(
            parse_ddl("CREATE TEMPORARY TABLE t (a int)", "db"),
            Ddl::Other
        );
        assert_eq!(parse_ddl("CREATE INDEX i ON t (a)", "db"), Ddl::Other);
    }

    #[test]
    fn binlog_values_become_what_the_reader_gets() {
        assert_eq!(
            Fix::Unsigned(8).apply(Value::Int(-1)).unwrap(),
            Value::UInt(255)
        );
        assert_eq!(
            Fix::Int24.apply(Value::Int(8_388_608)).unwrap(),
            Value::Int(-8_388_608)
        );
        assert_eq!(Fix::Int24.apply(Value::Int(-1)).unwrap(), Value::Int(-1));
        assert_eq!(
            Fix::Int24.apply(Value::Int(8_388_607)).unwrap(),
            Value::Int(8_388_607)
        );
        assert_eq!(
            Fix::Unsigned(64).apply(Value::Int(-1)).unwrap(),
            Value::UInt(u64::MAX)
        );
        let e = Fix::Enum(vec!["a".into(), "b".into()]);
        assert_eq!(e.apply(Value::Int(2)).unwrap(), Value::Bytes(b"b".to_vec()));
        assert_eq!(e.apply(Value::Int(0)).unwrap(), Value::Bytes(vec![]));
        let s = Fix::Set(vec!["x".into(), "y".into(), "z".into()]);
        assert_eq!(
            s.apply(Value::Bytes(vec![5])).unwrap(),
            Value::Bytes(b"x,z".to_vec())
        );
        assert_eq!(
            Fix::Timestamp
                .apply(Value::Bytes(b"1700000000.5".to_vec()))
                .unwrap(),
            Value::Date(2023, 11, 14, 22, 13, 20, 500_000)
        );
        assert_eq!(
            Fix::Timestamp.apply(Value::Bytes(b"0".to_vec())).unwrap(),
            Value::Date(0, 0, 0, 0, 0, 0, 0)
        );
        assert_eq!(
            Fix::Year.apply(Value::Bytes(b"1900".to_vec())).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            Fix::PadBinary(3).apply(Value::Bytes(vec![1])).unwrap(),
            Value::Bytes(vec![1, 0, 0])
        );
        assert_eq!(
            Fix::Latin1
                .apply(Value::Bytes(vec![0x80, b'a', 0xe9]))
                .unwrap(),
            Value::Bytes("€aé".as_bytes().to_vec())
        );
    }

    #[test]
    fn rotate_names_lose_their_checksum() {
        // The CRC's bytes may be digits: they are cut by length, not by shape.
        let raw = b"binlog.0009372\x01\xff\x10";
        assert_eq!(rotate_name(raw, 27 + 17, true), "binlog.000937");
        // Already removed by the decoder (the event is 4 bytes longer than what is left).
        assert_eq!(
            rotate_name(b"binlog.000937", 27 + 13 + 4, true),
            "binlog.000937"
        );
        // No checksums on the server.
        assert_eq!(
            rotate_name(b"binlog.000937", 27 + 13, false),
            "binlog.000937"
        );
    }

    #[test]
    fn default_server_ids_are_stable_and_large() {
        let a = default_server_id("orders-cdc");
        assert_eq!(a, default_server_id("orders-cdc"));
        assert_ne!(a, default_server_id("orders-cdc2"));
        assert!((1_000_000..i32::MAX as u32).contains(&a));
    }
}
