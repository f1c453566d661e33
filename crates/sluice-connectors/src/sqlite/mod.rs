//! SQLite databases as source and sink (rusqlite, bundled SQLite).
//!
//! ```toml
//! [source]
//! type = "sqlite"
//! url = "sqlite://data/shop.db"      # sqlite:///abs/path.db for an absolute path
//! tables = ["orders", "order_*"]     # default ["*"]
//! # exclude = ["tmp_*"]
//! # batch_size = 8192
//! # chunk_rows = 500000              # rows per split
//! # columns = { "orders.note" = "text" }   # read a column as another logical type
//!
//! [sink]
//! type = "sqlite"
//! url = "sqlite://out/shop.db"       # created if missing; the directory must exist
//! write = "append"                   # append | overwrite | upsert
//! create_tables = true
//! ```
//!
//! **Source.** Lists the tables of `main` (never `sqlite_*` or `_sluice_*`), maps each
//! column's declared type to a logical type ([`types`]), and reads each table as rowid ranges
//! of about `chunk_rows` rows (`rowid > lo AND rowid <= hi`, ids `main.orders#0` …), in rowid
//! order, on blocking threads, each split from its own read-only connection. Positions are
//! `{"rowid": N}`; a resumed split starts after that rowid. `WITHOUT ROWID` tables are one
//! split in primary-key order with positions `{"offset": N}`. The database file must exist;
//! it is opened read-only. SQLite does not enforce declared types, so a stored value that does
//! not fit its column's type is an error naming table, column, rowid and value; `columns`
//! overrides the type.
//!
//! **Sink.** `prepare` checks existing tables (every source column present, each declared type
//! able to hold the source type) or creates them with declared types that read back as the
//! same logical types, `NOT NULL` and `PRIMARY KEY`. Writers take turns (SQLite has one
//! writer): one transaction per writer turn, committed with its checkpoint row in
//! `_sluice_checkpoints`, `journal_mode = WAL`, `synchronous = FULL` (durable against power
//! loss). `append` inserts; `upsert` is `INSERT … ON CONFLICT (key) DO UPDATE`; `overwrite`
//! writes `_sluice_stage_<name>` and swaps it in at `finish_table` in one transaction
//! (DROP + RENAME, indexes and triggers recreated), so readers never see it empty.
//!
//! **Type mapping** (declared type → logical type; the sink writes the first name):
//!
//! | declared type | logical | stored as |
//! | --- | --- | --- |
//! | `BOOLEAN`, `BOOL` | bool | INTEGER 0/1 |
//! | `TINYINT`, `INT1` | int8 | INTEGER |
//! | `SMALLINT`, `INT2`, `INT16` | int16 | INTEGER |
//! | `INT32`, `MEDIUMINT`, `INT4` | int32 | INTEGER |
//! | `INTEGER`, `INT`, `BIGINT`, `INT8`, `INT64` | int64 | INTEGER |
//! | `UINT8` … `UINT64` | uint8 … uint64 | INTEGER; a uint64 above i64::MAX as a BLOB of its digits |
//! | `FLOAT32`, `FLOAT4` | float32 | REAL, like float64 |
//! | `REAL`, `DOUBLE`, `FLOAT`, `FLOAT8` | float64 | REAL; NaN as TEXT `'NaN'`; -0.0 as an 8-byte BLOB |
//! | `DECIMAL(p,s)`, `NUMERIC(p,s)` (p ≤ 15) | decimal(p,s) | text bound; SQLite keeps INTEGER/REAL, exact at p ≤ 15 |
//! | `DECIMAL_TEXT(p,s)`, `DECIMAL_TEXT`, `NUMERIC` | decimal(p,s), decimal | TEXT, exact |
//! | `TEXT`, `VARCHAR(n)`, `CHAR`, `CLOB`, no type | text | TEXT |
//! | `BLOB` | binary | BLOB |
//! | `DATE` | date | TEXT `YYYY-MM-DD` |
//! | `TIME`, `TIME(9)` | time | TEXT `HH:MM:SS.ffffff` |
//! | `TIMESTAMP`, `DATETIME`, `TIMESTAMP(9)` | timestamp | TEXT `YYYY-MM-DD HH:MM:SS.ffffff` |
//! | `TIMESTAMPTZ` | timestamptz | TEXT `… +00:00` (UTC) |
//! | `INTERVAL` | interval | TEXT ISO 8601 `P1Y2M3DT4H5M6.5S` |
//! | `UUID` | uuid | TEXT canonical (a 16-byte BLOB is read too) |
//! | `JSON_TEXT`, `JSON`, `JSONB` | json | TEXT, byte for byte |
//! | `"enum('a','b')"` | enum | TEXT |
//! | `"array<int32>"` | array | TEXT, a JSON array |
//! | anything else | by SQLite's affinity rules: `*INT*` int64, `*CHAR*`/`*TEXT*` text, `*BLOB*` binary, `*REAL*`/`*FLOA*`/`*DOUB*` float64, else text | |
//!
//! `docs/connectors/sqlite.md` has the full story, including why some names differ from the
//! obvious ones (SQLite's type affinity rewrites values on insert).

mod config;
mod decode;
mod encode;
pub mod position;
mod sink;
mod source;
pub(crate) mod text;
pub mod types;

pub use config::{SqliteSinkConfig, SqliteSourceConfig, parse_url};
pub use sink::{CHECKPOINT_TABLE, STAGE_PREFIX, SqliteSink, repair_rows};
pub use source::SqliteSource;
