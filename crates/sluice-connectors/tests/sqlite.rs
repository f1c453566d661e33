//! SQLite source and sink against real database files in temporary directories.
//!
//! The round-trip property test writes random values of every logical type through the sink
//! and reads them back through the source; SQLite is the storage in between, so affinity
//! rewrites (NaN → NULL, -0.0 → 0, big integers → REAL, JSON numbers → REAL) would show up.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array,
    Int64Array, IntervalMonthDayNanoArray, ListArray, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::{Int32Type, IntervalMonthDayNano, Schema, i256};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::json;
use sluice_connectors::sqlite::{SqliteSinkConfig, SqliteSourceConfig};
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::types::Precision;
use sluice_core::{
    BatchSender, ErrorKind, LogicalType, Position, SourceBatch, Split, TableId, TablePlan,
    TableSchema, WriteMode,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn url(p: &Path) -> String {
    format!("sqlite://{}", p.display())
}

fn source(path: &Path, extra: serde_json::Value) -> DynSource {
    let mut v = json!({ "url": url(path) });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value::<SqliteSourceConfig>(v)
        .unwrap()
        .build()
        .unwrap()
}

fn sink(path: &Path, mode: WriteMode, create: bool) -> DynSink {
    serde_json::from_value::<SqliteSinkConfig>(json!({ "url": url(path) }))
        .unwrap()
        .build(mode, create)
        .unwrap()
}

/// Reads one split to the end (or from `resume`), returning its batches.
async fn read_split(src: &DynSource, split: Split, resume: Option<Position>) -> Vec<SourceBatch> {
    let (tx, mut rx) = mpsc::channel(4);
    let out = BatchSender::new(tx, CancellationToken::new());
    let src2 = src.clone();
    let reader = tokio::spawn(async move { src2.read(split, resume, out).await });
    let mut batches = Vec::new();
    while let Some(b) = rx.recv().await.map(crate::into_batch) {
        batches.push(b);
    }
    reader.await.unwrap().unwrap();
    batches
}

/// Every row of every table, one batch per table (concatenated), keyed by table id.
async fn read_all(src: &DynSource) -> Vec<(TableId, RecordBatch)> {
    let mut out = Vec::new();
    for t in src.tables().await.unwrap() {
        let mut batches = Vec::new();
        for split in src.splits(&t).await.unwrap() {
            batches.extend(
                read_split(src, split, None)
                    .await
                    .into_iter()
                    .map(|b| b.data),
            );
        }
        let data = arrow::compute::concat_batches(&t.schema.arrow, &batches).unwrap();
        out.push((t.schema.id.clone(), data));
    }
    out
}

fn plan(target: &str, schema: &Schema, pk: &[&str]) -> TablePlan {
    TablePlan {
        target: TableId::parse(target).unwrap(),
        schema: TableSchema {
            id: TableId::parse(target).unwrap(),
            arrow: Arc::new(schema.clone()),
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
        },
        splits: 1,
    }
}

/// Prepares, writes `batches` as one split, commits and finishes.
async fn write(
    sink: &DynSink,
    plan: &TablePlan,
    batches: Vec<RecordBatch>,
) -> sluice_core::Result<()> {
    sink.prepare(std::slice::from_ref(plan)).await?;
    let split = Split {
        id: format!("{}#0", plan.target),
        table: plan.target.clone(),
        index: 0,
        estimated_rows: None,
        estimated_bytes: None,
        detail: json!({}),
        continues: false,
        start: None,
    };
    let mut w = sink.open(plan, &split).await?;
    for b in batches {
        w.write(b).await?;
    }
    w.commit(&Position::new(split.id.clone(), json!({ "done": true })))
        .await?;
    sink.finish_table(plan).await?;
    sink.close().await
}

fn int_text_schema() -> Schema {
    Schema::new(vec![
        LogicalType::Int64.field("id", false),
        LogicalType::Text.field("name", true),
    ])
}

fn int_text_batch(rows: &[(i64, &str)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(int_text_schema()),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

fn query_pairs(db: &Path, sql: &str) -> Vec<(i64, String)> {
    let c = Connection::open(db).unwrap();
    let mut s = c.prepare(sql).unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn source_reads_in_splits_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT NOT NULL, price DECIMAL(10,2));
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO orders SELECT i, 'n' || i, i * 1.25 FROM n;
         CREATE INDEX orders_note ON orders (note); ANALYZE; CREATE TABLE _sluice_checkpoints (x);",
    )
    .unwrap();
    drop(c);
    let all = source(&db, json!({})).tables().await.unwrap();
    assert_eq!(all.len(), 1, "sqlite_stat1 and _sluice_* are never listed");
    let src = source(
        &db,
        json!({ "chunk_rows": 300, "batch_size": 64, "tables": ["orders"] }),
    );
    let tables = src.tables().await.unwrap();
    assert_eq!(tables.len(), 1);
    let t = &tables[0];
    assert_eq!(t.schema.id.to_string(), "main.orders");
    assert_eq!(t.schema.primary_key, vec!["id"]);
    assert!(!t.schema.arrow.field(0).is_nullable());
    assert!(!t.schema.arrow.field(1).is_nullable());
    let splits = src.splits(t).await.unwrap();
    assert_eq!(splits.len(), 4);
    assert_eq!(splits[0].id, "main.orders#0");
    assert_eq!(
        src.splits(t).await.unwrap(),
        splits,
        "split ids and ranges are stable"
    );

    let mut ids = Vec::new();
    for s in &splits {
        let batches = read_split(&src, s.clone(), None).await;
        assert!(batches.iter().all(|b| b.data.num_rows() <= 64));
        let last = batches.last().unwrap();
        let col = last
            .data
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(
            last.position.value,
            json!({ "rowid": col.value(col.len() - 1) })
        );
        assert_eq!(last.position.split, s.id);
        for b in batches {
            let col = b
                .data
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            ids.extend(col.values().iter().copied());
        }
    }
    assert_eq!(
        ids,
        (1..=1000).collect::<Vec<_>>(),
        "every row once, in rowid order"
    );

    // Exact decimals from REAL storage: 3 * 1.25 = 3.75.
    let b = &read_split(&src, splits[0].clone(), None).await[0].data;
    let price = b
        .column(2)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .unwrap();
    assert_eq!(price.value(2), 375);

    // Resume after rowid 150: split 0 continues at 151.
    let pos = Position::new(splits[0].id.clone(), json!({ "rowid": 150 }));
    let batches = read_split(&src, splits[0].clone(), Some(pos)).await;
    let first = batches[0]
        .data
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(first.value(0), 151);
    let n: usize = batches.iter().map(|b| b.data.num_rows()).sum();
    assert_eq!(n, 250 - 150, "split 0 holds rowids 1..=250");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_rowid_tables_read_in_key_order_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
             INSERT INTO kv VALUES ('c', 3), ('a', 1), ('b', 2);",
        )
        .unwrap();
    let src = source(&db, json!({ "batch_size": 2 }));
    let t = src.tables().await.unwrap().remove(0);
    let splits = src.splits(&t).await.unwrap();
    assert_eq!(splits.len(), 1);
    let batches = read_split(&src, splits[0].clone(), None).await;
    assert_eq!(batches[0].position.value, json!({ "offset": 2 }));
    let pos = batches[0].position.clone();
    let rest = read_split(&src, splits[0].clone(), Some(pos)).await;
    let k = rest[0]
        .data
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(k.value(0), "c");
    assert_eq!(rest[0].data.num_rows(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn mistyped_values_name_the_cell_and_can_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO t VALUES (7, 'abc');",
        )
        .unwrap();
    let src = source(&db, json!({}));
    let t = src.tables().await.unwrap().remove(0);
    let split = src.splits(&t).await.unwrap().remove(0);
    let (tx, _rx) = mpsc::channel(4);
    let e = src
        .read(split, None, BatchSender::new(tx, CancellationToken::new()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data);
    let msg = e.to_string();
    assert!(
        msg.contains("main.t") && msg.contains("\"n\"") && msg.contains("rowid 7"),
        "{msg}"
    );
    assert!(msg.contains("abc"), "{msg}");
    assert!(
        e.hint().unwrap().contains("\"t.n\" = \"text\""),
        "{:?}",
        e.hint()
    );

    let src = source(&db, json!({ "columns": { "t.n": "text" } }));
    let rows = read_all(&src).await;
    let n = rows[0]
        .1
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(n.value(0), "abc");

    let src = source(&db, json!({ "columns": { "t.nope": "text" } }));
    assert_eq!(src.tables().await.unwrap_err().kind(), ErrorKind::Config);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_database_and_tables_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nope.db");
    let e = source(&db, json!({})).tables().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!db.exists(), "reading must not create the database");

    let db = dir.path().join("some.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE orders (id INTEGER);")
        .unwrap();
    let e = source(&db, json!({ "tables": ["ordres"] }))
        .tables()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ordres"), "{e}");
    assert!(
        e.hint().unwrap().contains("did you mean `orders`"),
        "{:?}",
        e.hint()
    );
    // A glob that matches nothing is not an error.
    assert!(
        source(&db, json!({ "tables": ["x*"] }))
            .tables()
            .await
            .unwrap()
            .is_empty()
    );

    let e = serde_json::from_value::<SqliteSourceConfig>(json!({ "url": "shop.db" }))
        .unwrap()
        .build()
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.hint().unwrap().contains("sqlite://"));
}

#[tokio::test(flavor = "multi_thread")]
async fn append_overwrite_upsert() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let p = plan("items", &int_text_schema(), &["id"]);
    let q = "SELECT id, name FROM items ORDER BY id, name";

    let s = sink(&db, WriteMode::Append, true);
    write(&s, &p, vec![int_text_batch(&[(1, "a"), (2, "b")])])
        .await
        .unwrap();
    let p_nokey = plan("log", &int_text_schema(), &[]);
    write(&s, &p_nokey, vec![int_text_batch(&[(1, "a")])])
        .await
        .unwrap();
    write(&s, &p_nokey, vec![int_text_batch(&[(1, "a")])])
        .await
        .unwrap();
    assert_eq!(
        query_pairs(&db, "SELECT id, name FROM log").len(),
        2,
        "append adds"
    );

    // Upsert updates existing keys and inserts new ones.
    let s = sink(&db, WriteMode::Upsert, true);
    write(&s, &p, vec![int_text_batch(&[(2, "B"), (3, "c")])])
        .await
        .unwrap();
    assert_eq!(
        query_pairs(&db, q),
        vec![(1, "a".into()), (2, "B".into()), (3, "c".into())]
    );

    // Overwrite replaces the content; indexes survive; no staging table is left.
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE INDEX items_name ON items (name);")
        .unwrap();
    let s = sink(&db, WriteMode::Overwrite, true);
    write(&s, &p, vec![int_text_batch(&[(9, "z")])])
        .await
        .unwrap();
    assert_eq!(query_pairs(&db, q), vec![(9, "z".into())]);
    let c = Connection::open(&db).unwrap();
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(names.contains(&"items_name".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("_sluice_stage_")),
        "{names:?}"
    );

    // An aborted overwrite leaves the target as it was; the next prepare drops the stage.
    s.prepare(std::slice::from_ref(&p)).await.unwrap();
    let split = Split {
        id: "items#0".into(),
        table: p.target.clone(),
        index: 0,
        estimated_rows: None,
        estimated_bytes: None,
        detail: json!({}),
        continues: false,
        start: None,
    };
    let mut w = s.open(&p, &split).await.unwrap();
    w.write(int_text_batch(&[(5, "x")])).await.unwrap();
    w.abort().await.unwrap();
    assert_eq!(query_pairs(&db, q), vec![(9, "z".into())]);

    // Checkpoint rows are written with the data.
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM _sluice_checkpoints WHERE table_name = 'log'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn incompatible_or_missing_targets_are_schema_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE items (id INTEGER, name INTEGER); CREATE TABLE nokey (id INTEGER, name TEXT);")
        .unwrap();
    let p = plan("items", &int_text_schema(), &["id"]);
    let e = write(&sink(&db, WriteMode::Append, true), &p, vec![])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    let msg = e.to_string();
    assert!(
        msg.contains("items") && msg.contains("\"name\"") && msg.contains("text"),
        "{msg}"
    );
    assert!(msg.contains("INTEGER"), "{msg}");
    assert!(e.hint().unwrap().contains("table_map"));

    let p = plan("missing", &int_text_schema(), &[]);
    let e = write(&sink(&db, WriteMode::Append, false), &p, vec![])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    assert!(e.hint().unwrap().contains("create_tables = true"));

    let p = plan("nokey", &int_text_schema(), &[]);
    let e = write(&sink(&db, WriteMode::Upsert, true), &p, vec![])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);
    assert!(
        e.to_string().contains("nokey") && e.to_string().contains("primary key"),
        "{e}"
    );

    let p = plan("other.items", &int_text_schema(), &[]);
    let e = write(&sink(&db, WriteMode::Append, true), &p, vec![])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema);

    let e = sink(&dir.path().join("no/such/dir.db"), WriteMode::Append, true)
        .prepare(&[plan("t", &int_text_schema(), &[])])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_names_round_trip_safely() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("odd.db");
    let nasty = r#"x"; DROP TABLE y; --"#;
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE y (a);")
        .unwrap();
    let schema = Schema::new(vec![
        LogicalType::Int64.field(r#"a"b"#, false),
        LogicalType::Text.field("Order Items", true),
    ]);
    let target = TableId::new([nasty]).to_string();
    let p = plan(&target, &schema, &[r#"a"b"#]);
    let batch = RecordBatch::try_new(
        Arc::new(schema.clone()),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["p", "q"])),
        ],
    )
    .unwrap();
    for mode in [WriteMode::Append, WriteMode::Upsert, WriteMode::Overwrite] {
        write(&sink(&db, mode, true), &p, vec![batch.clone()])
            .await
            .unwrap();
    }
    let src = source(&db, json!({ "tables": [target] }));
    let rows = read_all(&src).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0.name(), nasty);
    assert_eq!(rows[0].1.num_rows(), 2);
    assert_eq!(rows[0].1.schema().field(0).name(), r#"a"b"#);
    let src = source(&db, json!({ "tables": ["y"] }));
    assert_eq!(src.tables().await.unwrap().len(), 1, "table y survived");
}

// --- Round trip of every logical type -------------------------------------------------------

fn all_types() -> Vec<(&'static str, LogicalType)> {
    use LogicalType as L;
    vec![
        ("b", L::Bool),
        ("i8", L::Int8),
        ("i16", L::Int16),
        ("i32", L::Int32),
        ("i64", L::Int64),
        ("u8", L::UInt8),
        ("u16", L::UInt16),
        ("u32", L::UInt32),
        ("u64", L::UInt64),
        ("f32", L::Float32),
        ("f64", L::Float64),
        (
            "d12",
            L::Decimal {
                precision: Some(12),
                scale: Some(2),
            },
        ),
        (
            "d38",
            L::Decimal {
                precision: Some(38),
                scale: Some(10),
            },
        ),
        (
            "d50",
            L::Decimal {
                precision: Some(50),
                scale: Some(5),
            },
        ),
        (
            "dany",
            L::Decimal {
                precision: None,
                scale: None,
            },
        ),
        ("txt", L::Text),
        ("bin", L::Binary),
        ("date", L::Date),
        ("time", L::Time(Precision::Micros)),
        (
            "ts",
            L::Timestamp {
                tz: false,
                precision: Precision::Micros,
            },
        ),
        (
            "tstz",
            L::Timestamp {
                tz: true,
                precision: Precision::Micros,
            },
        ),
        ("iv", L::Interval),
        ("uuid", L::Uuid),
        ("json", L::Json),
        (
            "enum",
            L::Enum(vec!["a".into(), "01".into(), "it's".into()]),
        ),
        ("arr", L::Array(Box::new(L::Int32))),
        ("arrtxt", L::Array(Box::new(L::Text))),
    ]
}

/// Random rows, one Arrow column per type in [`all_types`], plus a key column `id`.
#[derive(Debug, Clone)]
struct Rows {
    n: usize,
    cols: Vec<ArrayRef>,
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![1 => Just(None), 5 => s.prop_map(Some)]
}

fn f64s() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        any::<f64>().prop_filter("canonical NaN only", |f| !f.is_nan()),
    ]
}

fn texts() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        Just("😀 𝄞 \u{0} \u{1} \t\n\r".to_string()),
        Just("1.50".to_string()),
        Just("".to_string()),
    ]
}

/// Microseconds within chrono-free but sane bounds: years -9999 ..= 99999.
const MAX_US: i64 = 3_093_527_980_800_000_000;
const MIN_US: i64 = -377_705_116_800_000_000;

fn rows_strategy() -> impl Strategy<Value = Rows> {
    (1usize..12).prop_flat_map(|n| {
        macro_rules! v {
            ($s:expr) => {
                proptest::collection::vec($s, n)
            };
        }
        (
            (
                v!(opt(any::<bool>())),
                v!(opt(any::<i8>())),
                v!(opt(any::<i16>())),
                v!(opt(any::<i32>())),
                v!(opt(prop_oneof![
                    Just(i64::MIN),
                    Just(i64::MAX),
                    any::<i64>()
                ])),
                v!(opt(any::<u8>())),
                v!(opt(any::<u16>())),
                v!(opt(any::<u32>())),
                v!(opt(prop_oneof![
                    Just(u64::MAX),
                    Just(i64::MAX as u64 + 1),
                    any::<u64>()
                ])),
                v!(opt(f64s().prop_map(|f| f as f32))),
                v!(opt(f64s())),
            ),
            (
                v!(opt(-999_999_999_999i128..=999_999_999_999)),
                v!(opt(-(10i128.pow(38) - 1)..=10i128.pow(38) - 1)),
                v!(opt(any::<i128>())),
                v!(opt("-?[0-9]{1,40}(\\.[0-9]{1,20})?")),
                v!(opt(texts())),
                v!(opt(proptest::collection::vec(any::<u8>(), 0..16))),
                v!(opt(-3_000_000i32..3_000_000)),
                v!(opt(0i64..86_400_000_000)),
                v!(opt(MIN_US..MAX_US)),
                v!(opt(MIN_US..MAX_US)),
            ),
            (
                v!(opt((any::<i32>(), any::<i32>(), any::<i64>()))),
                v!(opt(any::<[u8; 16]>())),
                v!(opt(prop_oneof![
                    Just("1.50".to_string()),
                    Just("{\"a\": [1, 2.0, null]}".to_string()),
                    Just("\"x\"".to_string())
                ])),
                v!(opt(prop_oneof![Just("a"), Just("01"), Just("it's")])),
                v!(opt(proptest::collection::vec(opt(any::<i32>()), 0..4))),
                v!(opt(proptest::collection::vec(opt(texts()), 0..3))),
            ),
        )
            .prop_map(move |(a, b, c)| build_rows(n, a, b, c))
    })
}

type A = (
    Vec<Option<bool>>,
    Vec<Option<i8>>,
    Vec<Option<i16>>,
    Vec<Option<i32>>,
    Vec<Option<i64>>,
    Vec<Option<u8>>,
    Vec<Option<u16>>,
    Vec<Option<u32>>,
    Vec<Option<u64>>,
    Vec<Option<f32>>,
    Vec<Option<f64>>,
);
type B = (
    Vec<Option<i128>>,
    Vec<Option<i128>>,
    Vec<Option<i128>>,
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<Vec<u8>>>,
    Vec<Option<i32>>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
    Vec<Option<i64>>,
);
type C = (
    Vec<Option<(i32, i32, i64)>>,
    Vec<Option<[u8; 16]>>,
    Vec<Option<String>>,
    Vec<Option<&'static str>>,
    Vec<Option<Vec<Option<i32>>>>,
    Vec<Option<Vec<Option<String>>>>,
);

fn build_rows(n: usize, a: A, b: B, c: C) -> Rows {
    let types = all_types();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(BooleanArray::from(a.0)),
        Arc::new(Int8Array::from(a.1)),
        Arc::new(Int16Array::from(a.2)),
        Arc::new(Int32Array::from(a.3)),
        Arc::new(Int64Array::from(a.4)),
        Arc::new(UInt8Array::from(a.5)),
        Arc::new(UInt16Array::from(a.6)),
        Arc::new(UInt32Array::from(a.7)),
        Arc::new(UInt64Array::from(a.8)),
        Arc::new(Float32Array::from(a.9)),
        Arc::new(Float64Array::from(a.10)),
        Arc::new(
            Decimal128Array::from(b.0)
                .with_precision_and_scale(12, 2)
                .unwrap(),
        ),
        Arc::new(
            Decimal128Array::from(b.1)
                .with_precision_and_scale(38, 10)
                .unwrap(),
        ),
        Arc::new(
            Decimal256Array::from(
                b.2.into_iter()
                    .map(|x| x.map(i256::from_i128))
                    .collect::<Vec<_>>(),
            )
            .with_precision_and_scale(50, 5)
            .unwrap(),
        ),
        // Canonical decimal text: what the source produces for exact text.
        Arc::new(StringArray::from(b.3)),
        Arc::new(StringArray::from(b.4)),
        Arc::new(BinaryArray::from_iter(b.5)),
        Arc::new(Date32Array::from(b.6)),
        Arc::new(Time64MicrosecondArray::from(b.7)),
        Arc::new(TimestampMicrosecondArray::from(b.8)),
        Arc::new(TimestampMicrosecondArray::from(b.9).with_timezone("UTC")),
        Arc::new(IntervalMonthDayNanoArray::from(
            c.0.into_iter()
                .map(|x| x.map(|(m, d, ns)| IntervalMonthDayNano::new(m, d, ns)))
                .collect::<Vec<_>>(),
        )),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(c.1.into_iter(), 16).unwrap(),
        ),
        Arc::new(StringArray::from(c.2)),
        Arc::new(StringArray::from(c.3)),
        Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(c.4)),
        Arc::new(text_list(c.5)),
    ];
    assert_eq!(cols.len(), types.len());
    cols.insert(0, Arc::new(Int64Array::from_iter_values(0..n as i64)));
    Rows { n, cols }
}

fn text_list(v: Vec<Option<Vec<Option<String>>>>) -> ListArray {
    let mut b = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
    for row in v {
        match row {
            None => b.append_null(),
            Some(items) => {
                for it in items {
                    b.values().append_option(it);
                }
                b.append(true);
            }
        }
    }
    b.finish()
}

fn round_trip_schema() -> Schema {
    let mut fields = vec![LogicalType::Int64.field("id", false)];
    fields.extend(all_types().iter().map(|(n, t)| t.field(n, true)));
    Schema::new(fields)
}

async fn round_trip(dir: &Path, case: usize, rows: Rows) {
    let db = dir.join(format!("rt{case}.db"));
    let schema = round_trip_schema();
    let batch = RecordBatch::try_new(Arc::new(schema.clone()), rows.cols.clone()).unwrap();
    let p = plan("rt", &schema, &["id"]);
    write(&sink(&db, WriteMode::Append, true), &p, vec![batch])
        .await
        .unwrap();
    let src = source(&db, json!({}));
    let back = read_all(&src).await;
    assert_eq!(back.len(), 1);
    let got = &back[0].1;
    assert_eq!(got.num_rows(), rows.n);
    for (i, f) in schema.fields().iter().enumerate() {
        assert_eq!(
            LogicalType::of_field(got.schema().field(i)).unwrap(),
            LogicalType::of_field(f).unwrap(),
            "type of {}",
            f.name()
        );
        let (want, have) = (rows.cols[i].to_data(), got.column(i).to_data());
        assert!(
            want == have,
            "column {}:\nwrote {:?}\nread  {:?}",
            f.name(),
            rows.cols[i],
            got.column(i)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_edge_values() {
    let dir = tempfile::tempdir().unwrap();
    let rows = build_rows(
        3,
        (
            vec![Some(true), Some(false), None],
            vec![Some(i8::MIN), Some(i8::MAX), None],
            vec![Some(i16::MIN), Some(i16::MAX), None],
            vec![Some(i32::MIN), Some(i32::MAX), None],
            vec![Some(i64::MIN), Some(i64::MAX), None],
            vec![Some(0), Some(u8::MAX), None],
            vec![Some(0), Some(u16::MAX), None],
            vec![Some(0), Some(u32::MAX), None],
            vec![Some(u64::MAX), Some(i64::MAX as u64 + 1), None],
            vec![Some(f32::NAN), Some(-0.0), Some(f32::NEG_INFINITY)],
            vec![Some(f64::NAN), Some(-0.0), Some(f64::INFINITY)],
        ),
        (
            vec![Some(-12340), Some(999_999_999_999), None],
            vec![Some(10i128.pow(38) - 1), Some(-1), None],
            vec![Some(i128::MAX), Some(i128::MIN), None],
            vec![
                Some("-0.000000000000000000001".into()),
                Some("123456789012345678901234567890".into()),
                None,
            ],
            vec![Some("😀\u{0}\u{7}".into()), Some("".into()), None],
            vec![Some(vec![0, 0, 1, 0]), Some(vec![]), None],
            vec![Some(-3_000_000), Some(2_900_000), None],
            vec![Some(0), Some(86_399_999_999), None],
            vec![Some(MIN_US + 1), Some(MAX_US - 1), Some(-1)],
            vec![
                Some(-62_135_596_800_000_001),
                Some(253_402_300_799_999_999),
                None,
            ],
        ),
        (
            vec![Some((-14, 3, -1)), Some((0, 0, 0)), None],
            vec![Some([0; 16]), Some([255; 16]), None],
            vec![Some("1.50".into()), Some("-0".into()), None],
            vec![Some("01"), Some("it's"), None],
            vec![Some(vec![Some(1), None]), Some(vec![]), None],
            vec![Some(vec![Some("1.50".into()), None]), Some(vec![]), None],
        ),
    );
    round_trip(dir.path(), 0, rows).await;
    // The special values really went through SQLite's storage classes.
    let c = Connection::open(dir.path().join("rt0.db")).unwrap();
    let classes: Vec<(String, String, String, String)> = c
        .prepare("SELECT typeof(f64), typeof(u64), typeof(d12), typeof(json) FROM rt ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        classes[0],
        ("text".into(), "blob".into(), "real".into(), "text".into())
    );
    assert_eq!(classes[1].0, "blob", "-0.0 as its IEEE bytes");
    assert_eq!(classes[2].0, "real");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_values_of_every_type_round_trip(rows in rows_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        rt.block_on(round_trip(dir.path(), 0, rows));
    }
}
