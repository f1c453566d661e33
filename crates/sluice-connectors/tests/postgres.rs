//! PostgreSQL source and sink against the real server (`SLUICE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each test creates its own databases and
//! drops them at the end. The round-trip tests use the server as the oracle: the source
//! table's `t::text` rendering must equal the copy's, row for row, and `format_type` of every
//! column must be the same on both sides.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use proptest::prelude::*;
use serde_json::json;
use sluice_connectors::postgres::{PostgresSinkConfig, PostgresSourceConfig};
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{BatchSender, ErrorKind, Position, Split, TablePlan, WriteMode};
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

fn base_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

async fn connect(url: &str) -> Client {
    let (c, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to PostgreSQL at {url}: {e}; start the test services with \
             `bash scripts/test-services.sh` (or set SLUICE_TEST_POSTGRES_URL)"
            )
        });
    tokio::spawn(conn);
    c
}

/// A database created for one test, dropped when the value is dropped.
struct TestDb {
    name: String,
    url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    async fn new() -> TestDb {
        let name = format!(
            "sluice_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = connect(&base_url()).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = base_url();
        let root = base.rsplit_once('/').map(|(a, _)| a).unwrap_or(&base);
        TestDb {
            url: format!("{root}/{name}"),
            name,
        }
    }

    async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&base_url(), NoTls).await {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn source(url: &str, extra: serde_json::Value) -> DynSource {
    let mut v = json!({ "url": url });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value::<PostgresSourceConfig>(v)
        .unwrap()
        .build()
        .unwrap()
}

fn sink(url: &str, mode: WriteMode, create: bool) -> DynSink {
    serde_json::from_value::<PostgresSinkConfig>(json!({ "url": url }))
        .unwrap()
        .build(mode, create)
        .unwrap()
}

/// Reads one split into the writer of the sink, then commits (like the engine does).
async fn copy_split(
    src: DynSource,
    dst: DynSink,
    plan: TablePlan,
    split: Split,
) -> sluice_core::Result<u64> {
    let (tx, mut rx) = mpsc::channel::<sluice_core::SourceEvent>(4);
    let out = BatchSender::new(tx, CancellationToken::new());
    let s2 = split.clone();
    let reader = tokio::spawn(async move { src.read(s2, None, out).await });
    let mut w = dst.open(&plan, &split).await?;
    let mut rows = 0;
    let mut last = Position::new(split.id.clone(), serde_json::Value::Null);
    while let Some(b) = rx.recv().await.map(crate::into_batch) {
        rows += b.data.num_rows() as u64;
        last = b.position;
        if let Err(e) = w.write(b.data).await {
            let _ = w.abort().await;
            return Err(e);
        }
    }
    if let Err(e) = reader.await.unwrap() {
        let _ = w.abort().await;
        return Err(e);
    }
    w.commit(&last).await?;
    Ok(rows)
}

/// Copies every table of `src` into `dst`, `parallel` splits at a time. Returns the splits
/// per table.
async fn copy_all(
    src: &DynSource,
    dst: &DynSink,
    parallel: usize,
) -> sluice_core::Result<Vec<usize>> {
    let tables = src.tables().await?;
    let mut plans = Vec::new();
    for t in &tables {
        let splits = src.splits(t).await?;
        plans.push((
            TablePlan {
                target: t.schema.id.clone(),
                schema: t.schema.clone(),
                splits: splits.len(),
            },
            splits,
        ));
    }
    let tp: Vec<TablePlan> = plans.iter().map(|p| p.0.clone()).collect();
    dst.prepare(&tp).await?;
    let mut counts = Vec::new();
    for (plan, splits) in plans {
        counts.push(splits.len());
        let results: Vec<_> = futures::stream::iter(splits)
            .map(|s| copy_split(src.clone(), dst.clone(), plan.clone(), s))
            .buffer_unordered(parallel)
            .collect()
            .await;
        for r in results {
            r?;
        }
        dst.finish_table(&plan).await?;
    }
    dst.close().await?;
    src.close().await?;
    Ok(counts)
}

async fn rows_text(c: &Client, table: &str, order: &str) -> Vec<String> {
    c.query(
        &format!("SELECT t::text FROM {table} t ORDER BY {order}"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn col_types(c: &Client, table: &str) -> Vec<(String, String)> {
    c.query(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Every type the connector maps, with edge values (shared with the change-capture test).
const ALL_TYPES: &str = include_str!("data/pg_all_types.sql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_pg_to_pg() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    let ca = a.client().await;
    ca.batch_execute(ALL_TYPES).await.unwrap();
    copy_all(
        &source(&a.url, json!({"tables": ["t"]})),
        &sink(&b.url, WriteMode::Append, true),
        2,
    )
    .await
    .unwrap();
    let cb = b.client().await;
    assert_eq!(
        col_types(&ca, "public.t").await,
        col_types(&cb, "public.t").await
    );
    let (ra, rb) = (
        rows_text(&ca, "t", "id").await,
        rows_text(&cb, "t", "id").await,
    );
    assert_eq!(ra.len(), 4);
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x, y);
    }
    // The enum was created with the same labels, and the key came along.
    let labels = "SELECT enum_range(NULL::mood)::text";
    let la: String = ca.query_one(labels, &[]).await.unwrap().get(0);
    let lb: String = cb.query_one(labels, &[]).await.unwrap().get(0);
    assert_eq!(la, lb);
    let pk = cb
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'public.t'::regclass AND indisprimary",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(pk.get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tables_copy_in_parallel_splits() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    let ca = a.client().await;
    ca.batch_execute(
        "CREATE TABLE big (id bigint PRIMARY KEY, v text, n numeric(12,2), ts timestamptz);
         INSERT INTO big SELECT g, md5(g::text), g / 7.0, '2020-01-01'::timestamptz + g * interval '1 second'
           FROM generate_series(1, 120000) g;
         CREATE TABLE heap (a int, b text);
         INSERT INTO heap SELECT g % 1000, repeat('x', g % 50) FROM generate_series(1, 110000) g;
         ANALYZE;",
    )
    .await
    .unwrap();
    let counts = copy_all(
        &source(
            &a.url,
            json!({"tables": ["public.*"], "chunk_rows": 20000, "batch_size": 4096}),
        ),
        &sink(&b.url, WriteMode::Append, true),
        2,
    )
    .await
    .unwrap();
    assert!(
        counts.iter().all(|n| *n >= 4),
        "expected several splits per table: {counts:?}"
    );
    let cb = b.client().await;
    for (t, order) in [("big", "id"), ("heap", "t.a, t.b")] {
        let q =
            format!("SELECT count(*), md5(string_agg(t::text, '' ORDER BY {order})) FROM {t} t");
        let x = ca.query_one(&q, &[]).await.unwrap();
        let y = cb.query_one(&q, &[]).await.unwrap();
        assert_eq!(x.get::<_, i64>(0), y.get::<_, i64>(0), "{t}");
        assert_eq!(x.get::<_, String>(1), y.get::<_, String>(1), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_replaces_and_upsert_merges() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    let (ca, cb) = (a.client().await, b.client().await);
    ca.batch_execute(
        "CREATE TABLE o (id serial PRIMARY KEY, v text NOT NULL UNIQUE);
         INSERT INTO o (v) VALUES ('a'), ('b'), ('c');",
    )
    .await
    .unwrap();
    cb.batch_execute(
        "CREATE TABLE o (id serial PRIMARY KEY, v text NOT NULL UNIQUE);
         INSERT INTO o (v) SELECT 'old' || g FROM generate_series(1, 10) g;",
    )
    .await
    .unwrap();
    copy_all(
        &source(&a.url, json!({})),
        &sink(&b.url, WriteMode::Overwrite, true),
        2,
    )
    .await
    .unwrap();
    assert_eq!(rows_text(&cb, "o", "id").await, ["(1,a)", "(2,b)", "(3,c)"]);
    // Index names and the serial sequence survive the swap.
    let idx: Vec<String> = cb
        .query("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'o'::regclass ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(idx, ["o_pkey", "o_v_key"]);
    cb.batch_execute("INSERT INTO o (id, v) VALUES (DEFAULT, 'seq')")
        .await
        .unwrap();
    // Upsert: changed rows update, new rows insert, others stay.
    ca.batch_execute("UPDATE o SET v = 'B' WHERE id = 2; INSERT INTO o (id, v) VALUES (20, 'new')")
        .await
        .unwrap();
    copy_all(
        &source(&a.url, json!({})),
        &sink(&b.url, WriteMode::Upsert, true),
        2,
    )
    .await
    .unwrap();
    let rows = rows_text(&cb, "o", "id").await;
    assert!(
        rows.contains(&"(2,B)".to_string()) && rows.contains(&"(20,new)".to_string()),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r.ends_with(",seq)")), "{rows:?}");
    assert_eq!(rows.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_identifiers_are_quoted() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    let ca = a.client().await;
    ca.batch_execute(
        r#"CREATE SCHEMA "My ""Schema"".x";
           CREATE TABLE y (k int);
           CREATE TABLE "My ""Schema"".x"."x""; DROP TABLE y; --" (
             "select" int PRIMARY KEY, "Col With Spaces" text, "données" text, "a""b" int);
           INSERT INTO "My ""Schema"".x"."x""; DROP TABLE y; --" VALUES (1, 'x', 'é', 2), (2, NULL, NULL, NULL);"#,
    )
    .await
    .unwrap();
    let cb = b.client().await;
    cb.batch_execute("CREATE TABLE y (k int)").await.unwrap();
    let tables = json!({"tables": [r#""My ""Schema"".x"."x""; DROP TABLE y; --""#]});
    copy_all(
        &source(&a.url, tables),
        &sink(&b.url, WriteMode::Append, true),
        2,
    )
    .await
    .unwrap();
    let t = r#""My ""Schema"".x"."x""; DROP TABLE y; --""#;
    assert_eq!(rows_text(&cb, t, "1").await, rows_text(&ca, t, "1").await);
    cb.query("SELECT * FROM y", &[]).await.unwrap();
    ca.query("SELECT * FROM y", &[]).await.unwrap();
    // Overwrite of the same odd name works too.
    let tables = json!({"tables": [r#""My ""Schema"".x".*"#]});
    copy_all(
        &source(&a.url, tables),
        &sink(&b.url, WriteMode::Overwrite, true),
        1,
    )
    .await
    .unwrap();
    assert_eq!(rows_text(&cb, t, "1").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_incremental_reads() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    let ca = a.client().await;
    ca.batch_execute(
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamp NOT NULL, v text);
         INSERT INTO ev SELECT g, '2024-01-01'::timestamp + (g / 3) * interval '1 day', 'v' || g
           FROM generate_series(1, 30) g;",
    )
    .await
    .unwrap();
    let src = source(
        &a.url,
        json!({"read": "incremental", "cursor_column": "at", "start_after": "2024-01-05", "batch_size": 4}),
    );
    let t = src.tables().await.unwrap();
    let splits = src.splits(&t[0]).await.unwrap();
    assert_eq!(splits.len(), 1);
    let (tx, mut rx) = mpsc::channel(100);
    src.read(
        splits[0].clone(),
        None,
        BatchSender::new(tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let mut n = 0;
    let mut positions = Vec::new();
    while let Ok(b) = rx.try_recv().map(crate::into_batch) {
        n += b.data.num_rows();
        positions.push(b.position);
    }
    // Day g / 3; rows with at > 2024-01-05 are ids 15..=30.
    assert_eq!(n, 16);
    // Resuming after a (cursor, key) position reads only later rows.
    let (tx, mut rx) = mpsc::channel(100);
    src.read(
        splits[0].clone(),
        Some(positions[0].clone()),
        BatchSender::new(tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let mut m = 0;
    while let Ok(b) = rx.try_recv().map(crate::into_batch) {
        m += b.data.num_rows();
    }
    assert_eq!(m, 16 - 4);
    src.close().await.unwrap();

    let q = source(
        &a.url,
        json!({"query": "SELECT id, v, id * 1.5 AS x FROM ev WHERE id <= 10"}),
    );
    copy_all(&q, &sink(&b.url, WriteMode::Append, true), 1)
        .await
        .unwrap();
    let cb = b.client().await;
    assert_eq!(rows_text(&cb, "query", "id").await.len(), 10);
    assert_eq!(col_types(&cb, "public.query").await[2].1, "numeric");
}

async fn kind_of(r: sluice_core::Result<Vec<usize>>) -> (ErrorKind, String) {
    let e = r.expect_err("expected an error");
    (e.kind(), format!("{e} (hint: {})", e.hint().unwrap_or("")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified_with_hints() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    let ca = a.client().await;
    ca.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let dst = |m| sink(&b.url, m, true);

    // Unreachable port.
    let (k, m) = kind_of(
        copy_all(
            &source("postgres://postgres@127.0.0.1:1/x", json!({})),
            &dst(WriteMode::Append),
            1,
        )
        .await,
    )
    .await;
    assert_eq!(k, ErrorKind::Connection, "{m}");
    assert!(
        m.contains("127.0.0.1:1") && m.contains("host and port"),
        "{m}"
    );
    // Missing database.
    let root = a.url.rsplit_once('/').unwrap().0;
    let (k, m) = kind_of(
        copy_all(
            &source(&format!("{root}/sluice_no_such_db"), json!({})),
            &dst(WriteMode::Append),
            1,
        )
        .await,
    )
    .await;
    assert_eq!(k, ErrorKind::Config, "{m}");
    assert!(m.contains("does not exist"), "{m}");
    // Missing role.
    let bad_role = a.url.replacen("postgres@", "sluice_no_such_role@", 1);
    let (k, m) =
        kind_of(copy_all(&source(&bad_role, json!({})), &dst(WriteMode::Append), 1).await).await;
    assert_eq!(k, ErrorKind::Auth, "{m}");
    // Misspelt table: did you mean.
    let (k, m) = kind_of(
        copy_all(
            &source(&a.url, json!({"tables": ["ordrs"]})),
            &dst(WriteMode::Append),
            1,
        )
        .await,
    )
    .await;
    assert_eq!(k, ErrorKind::Config, "{m}");
    assert!(m.contains("did you mean `orders`"), "{m}");
    // Missing target and create_tables = false.
    let (k, m) = kind_of(
        copy_all(
            &source(&a.url, json!({})),
            &sink(&b.url, WriteMode::Append, false),
            1,
        )
        .await,
    )
    .await;
    assert_eq!(k, ErrorKind::Schema, "{m}");
    assert!(m.contains("create_tables"), "{m}");
    // Incompatible existing target column.
    let cb = b.client().await;
    cb.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, v integer)")
        .await
        .unwrap();
    let (k, m) =
        kind_of(copy_all(&source(&a.url, json!({})), &dst(WriteMode::Append), 1).await).await;
    assert_eq!(k, ErrorKind::Schema, "{m}");
    assert!(
        m.contains("\"v\"") && m.contains("integer") && m.contains("text"),
        "{m}"
    );
    // Constraint violation names the constraint.
    cb.batch_execute("DROP TABLE orders; CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders VALUES (2, 'x')")
        .await
        .unwrap();
    let (k, m) =
        kind_of(copy_all(&source(&a.url, json!({})), &dst(WriteMode::Append), 1).await).await;
    assert_eq!(k, ErrorKind::Data, "{m}");
    assert!(m.contains("orders_pkey"), "{m}");
    // Nothing of the failed split is visible.
    assert_eq!(rows_text(&cb, "orders", "id").await, ["(2,x)"]);
    // Permission denied on read.
    let role = format!("{}_ro", a.name);
    ca.batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    let ro = a.url.replacen("postgres@", &format!("{role}@"), 1);
    let (k, m) = kind_of(copy_all(&source(&ro, json!({})), &dst(WriteMode::Append), 1).await).await;
    assert_eq!(k, ErrorKind::Auth, "{m}");
    assert!(m.contains("GRANT"), "{m}");
    ca.batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap_or(());
    // Upsert without a primary key.
    ca.batch_execute("CREATE TABLE nokey (a int)")
        .await
        .unwrap();
    let (k, m) = kind_of(
        copy_all(
            &source(&a.url, json!({"tables": ["nokey"]})),
            &dst(WriteMode::Upsert),
            1,
        )
        .await,
    )
    .await;
    assert_eq!(k, ErrorKind::Config, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost_mid_copy_is_transient() {
    let b = TestDb::new().await;
    let cb = b.client().await;
    cb.batch_execute("CREATE TABLE w (id int)").await.unwrap();
    let a = TestDb::new().await;
    a.client()
        .await
        .batch_execute("CREATE TABLE w (id int); INSERT INTO w SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    let src = source(&a.url, json!({}));
    let t = src.tables().await.unwrap();
    let splits = src.splits(&t[0]).await.unwrap();
    let plan = TablePlan {
        target: t[0].schema.id.clone(),
        schema: t[0].schema.clone(),
        splits: 1,
    };
    let dst = sink(&b.url, WriteMode::Append, true);
    dst.prepare(std::slice::from_ref(&plan)).await.unwrap();
    let (tx, mut rx) = mpsc::channel(100);
    src.read(
        splits[0].clone(),
        None,
        BatchSender::new(tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let mut w = dst.open(&plan, &splits[0]).await.unwrap();
    let batch = rx.recv().await.map(crate::into_batch).unwrap();
    w.write(batch.data.clone()).await.unwrap();
    let admin = connect(&base_url()).await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'sluice'",
            &[&b.name],
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut err = None;
    for _ in 0..3 {
        if let Err(e) = w.write(batch.data.clone()).await {
            err = Some(e);
            break;
        }
    }
    let e = match err {
        Some(e) => e,
        None => w
            .commit(&batch.position)
            .await
            .expect_err("commit after the backend died"),
    };
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    assert_eq!(rows_text(&cb, "w", "1").await.len(), 0);
    src.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// Random values written into PostgreSQL, read by the source, written by the sink: the
    /// server's text rendering of both tables must agree.
    #[test]
    fn random_values_round_trip(rows in proptest::collection::vec(
        (any::<i64>(), any::<f64>(), "\\PC{0,12}", -1_000_000_000i64..1_000_000_000, 0u32..6, proptest::collection::vec(any::<Option<i32>>(), 0..4)),
        0..20,
    )) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let (a, b) = (TestDb::new().await, TestDb::new().await);
            let ca = a.client().await;
            ca.batch_execute("CREATE TABLE p (k serial PRIMARY KEY, i int8, f float8, s text, n numeric, ai int4[])").await.unwrap();
            for (i, f, s, n, scale, ai) in &rows {
                let num = format!("{}e-{}", n, scale);
                ca.execute(
                    "INSERT INTO p (i, f, s, n, ai) VALUES ($1, $2, $3, $4::text::numeric, $5)",
                    &[i, f, s, &num, ai],
                ).await.unwrap();
            }
            copy_all(&source(&a.url, json!({})), &sink(&b.url, WriteMode::Append, true), 2).await.unwrap();
            let cb = b.client().await;
            assert_eq!(rows_text(&ca, "p", "k").await, rows_text(&cb, "p", "k").await);
        });
    }
}

/// Key columns of the primary key of `table`, in order (INCLUDE columns left out).
async fn pk_columns(c: &Client, table: &str) -> Vec<String> {
    c.query(
        "SELECT a.attname::text FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1::text::regclass AND i.indisprimary AND k.ord <= i.indnkeyatts \
         ORDER BY k.ord",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Issue 9, case 10: a primary key with `INCLUDE` columns (Pagila's `actor`) is a key on its
/// key columns only: splits, created keys and upserts use those, never the included ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_key_include_columns_are_not_key_columns() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    let (ca, cb) = (a.client().await, b.client().await);
    ca.batch_execute(
        "CREATE TABLE actor (actor_id int NOT NULL, first_name text NOT NULL, \
           last_name text NOT NULL, last_update timestamptz NOT NULL DEFAULT now(), \
           CONSTRAINT actor_pkey PRIMARY KEY (actor_id) INCLUDE (first_name, last_name));
         CREATE UNIQUE INDEX actor_name ON actor (last_name) INCLUDE (first_name);
         INSERT INTO actor (actor_id, first_name, last_name)
           SELECT g, 'first' || g, 'last' || g FROM generate_series(1, 200) g;
         ANALYZE actor;",
    )
    .await
    .unwrap();
    let src = source(&a.url, json!({"tables": ["actor"], "chunk_rows": 50}));
    let t = src.tables().await.unwrap();
    assert_eq!(t[0].schema.primary_key, ["actor_id"]);
    let splits = src.splits(&t[0]).await.unwrap();
    assert_eq!(splits[0].detail["kind"], "key", "{:?}", splits[0].detail);
    src.close().await.unwrap();
    copy_all(&src, &sink(&b.url, WriteMode::Upsert, true), 2)
        .await
        .unwrap();
    assert_eq!(pk_columns(&cb, "public.actor").await, ["actor_id"]);
    // A changed name is an update of the same key, not a new row.
    ca.batch_execute("UPDATE actor SET first_name = 'renamed' WHERE actor_id <= 10")
        .await
        .unwrap();
    copy_all(
        &source(&a.url, json!({"tables": ["actor"], "chunk_rows": 50})),
        &sink(&b.url, WriteMode::Upsert, true),
        2,
    )
    .await
    .unwrap();
    let q = "SELECT actor_id, first_name, last_name FROM actor ORDER BY 1, 2";
    let rows = |rs: Vec<tokio_postgres::Row>| -> Vec<(i32, String, String)> {
        rs.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
    };
    let want = rows(ca.query(q, &[]).await.unwrap());
    let got = rows(cb.query(q, &[]).await.unwrap());
    assert_eq!(got.len(), 200);
    assert_eq!(got, want);
    // An existing target whose only unique index on the key has INCLUDE columns takes upserts.
    let c = TestDb::new().await;
    let cc = c.client().await;
    cc.batch_execute(
        "CREATE TABLE actor (actor_id int NOT NULL, first_name text NOT NULL, \
           last_name text NOT NULL, last_update timestamptz NOT NULL, \
           UNIQUE (actor_id) INCLUDE (last_update))",
    )
    .await
    .unwrap();
    copy_all(
        &source(&a.url, json!({"tables": ["actor"]})),
        &sink(&c.url, WriteMode::Upsert, false),
        1,
    )
    .await
    .unwrap();
    assert_eq!(rows(cc.query(q, &[]).await.unwrap()), want);
}

/// `(table, count(*))` of the given tables of `c`, each counted with `ONLY`.
async fn own_counts(c: &Client, tables: &[&str]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in tables {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM ONLY {t}"), &[])
            .await
            .unwrap()
            .get(0);
        out.push((t.to_string(), n));
    }
    out
}

/// Issue 9, case 11: inheritance children are copied once. Each row goes to the target of
/// the nearest selected table it belongs to: a selected child takes its own rows, and a
/// parent takes its own rows plus those of children that are not selected. Partitioned
/// tables stay one table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inheritance_children_are_copied_once() {
    let a = TestDb::new().await;
    let ca = a.client().await;
    ca.batch_execute(
        "CREATE TABLE city (id int PRIMARY KEY, name text);
         CREATE TABLE capital (state text) INHERITS (city);
         CREATE TABLE village (pop int) INHERITS (city);
         INSERT INTO city SELECT g, 'c' || g FROM generate_series(1, 10) g;
         INSERT INTO capital SELECT g, 'k' || g, 's' FROM generate_series(101, 103) g;
         INSERT INTO village SELECT g, 'v' || g, g FROM generate_series(201, 205) g;
         CREATE TABLE m (k int, v text) PARTITION BY RANGE (k);
         CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (100);
         CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (100) TO (200);
         INSERT INTO m SELECT g, 'x' FROM generate_series(0, 199) g;
         ANALYZE;",
    )
    .await
    .unwrap();
    let case = |tables: serde_json::Value, chunk: u64| {
        let url = a.url.clone();
        async move {
            let b = TestDb::new().await;
            copy_all(
                &source(&url, json!({"tables": tables, "chunk_rows": chunk})),
                &sink(&b.url, WriteMode::Append, true),
                2,
            )
            .await
            .unwrap();
            b
        }
    };
    let count_all = |db: TestDb, names: &'static [&'static str]| async move {
        let c = db.client().await;
        let mut have = Vec::new();
        for n in names {
            let exists: bool = c
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[n])
                .await
                .unwrap()
                .get(0);
            if exists {
                have.push(*n);
            }
        }
        own_counts(&c, &have).await
    };
    let s = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    };
    // A glob selects all three: each its own rows (several splits each: key and ctid).
    for chunk in [4, 500_000] {
        let b = case(json!(["public.*"]), chunk).await;
        assert_eq!(
            count_all(b, &["city", "capital", "village", "m", "m1"]).await,
            s(&[("city", 10), ("capital", 3), ("village", 5), ("m", 200)]),
            "chunk_rows {chunk}"
        );
    }
    // The parent alone: it takes its children's rows (as `SELECT * FROM city` shows them).
    let b = case(json!(["city"]), 4).await;
    assert_eq!(
        count_all(b, &["city", "capital", "village"]).await,
        s(&[("city", 18)])
    );
    // Parent and one child: the other child's rows go with the parent.
    let b = case(json!(["city", "village"]), 4).await;
    assert_eq!(
        count_all(b, &["city", "capital", "village"]).await,
        s(&[("city", 13), ("village", 5)])
    );
    // Children excluded by `exclude` count as not selected.
    let b = TestDb::new().await;
    copy_all(
        &source(
            &a.url,
            json!({"tables": ["public.*"], "exclude": ["capital", "m"]}),
        ),
        &sink(&b.url, WriteMode::Append, true),
        2,
    )
    .await
    .unwrap();
    assert_eq!(
        count_all(b, &["city", "capital", "village", "m"]).await,
        s(&[("city", 13), ("village", 5)])
    );
}

/// `PostgresSourceConfig::read_scopes` (what `sluice verify` reads) names the tables
/// `tables()` lists, each with the scope its reads use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_scopes_are_the_sources_own() {
    use sluice_connectors::postgres::ReadScope;
    let a = TestDb::new().await;
    let ca = a.client().await;
    ca.batch_execute(
        "CREATE TABLE city (id int PRIMARY KEY, name text);
         CREATE TABLE capital (state text) INHERITS (city);
         CREATE TABLE village (pop int) INHERITS (city);
         CREATE TABLE plain (id int);",
    )
    .await
    .unwrap();
    let oid = |t: &'static str| {
        let ca = &ca;
        async move {
            ca.query_one("SELECT $1::text::regclass::oid::int8", &[&t])
                .await
                .unwrap()
                .get::<_, i64>(0) as u32
        }
    };
    let (city, capital) = (oid("city").await, oid("capital").await);
    let scopes = |extra: serde_json::Value| {
        let mut v = json!({ "url": a.url });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let cfg = serde_json::from_value::<PostgresSourceConfig>(v).unwrap();
        async move {
            let listed: Vec<String> = cfg
                .build()
                .unwrap()
                .tables()
                .await
                .unwrap()
                .iter()
                .map(|t| t.schema.id.to_string())
                .collect();
            let scopes: Vec<(String, ReadScope)> = cfg
                .read_scopes()
                .await
                .unwrap()
                .into_iter()
                .map(|(id, s)| (id.to_string(), s))
                .collect();
            let named: Vec<String> = scopes.iter().map(|(t, _)| t.clone()).collect();
            assert_eq!(named, listed);
            scopes
        }
    };
    let s = |v: &[(&str, ReadScope)]| -> Vec<(String, ReadScope)> {
        v.iter()
            .map(|(t, s)| (format!("public.{t}"), s.clone()))
            .collect()
    };
    assert_eq!(
        scopes(json!({"tables": ["public.*"]})).await,
        s(&[
            ("capital", ReadScope::Whole),
            ("city", ReadScope::Only),
            ("plain", ReadScope::Whole),
            ("village", ReadScope::Whole),
        ])
    );
    assert_eq!(
        scopes(json!({"tables": ["city"]})).await,
        s(&[("city", ReadScope::Whole)])
    );
    assert_eq!(
        scopes(json!({"tables": ["city", "village"]})).await,
        s(&[
            ("city", ReadScope::Tables(vec![city, capital])),
            ("village", ReadScope::Whole),
        ])
    );
    // The SQL the scopes read with.
    assert_eq!(
        ReadScope::Only.from_item("\"public\".\"city\""),
        "ONLY \"public\".\"city\""
    );
    assert_eq!(
        ReadScope::Tables(vec![7, 9]).condition(Some("t")),
        Some("t.tableoid = ANY('{7,9}'::oid[])".to_string())
    );
    assert_eq!(ReadScope::Whole.condition(None), None);
    // A query reads no table.
    let q = serde_json::from_value::<PostgresSourceConfig>(
        json!({"url": a.url, "query": "SELECT 1 AS x"}),
    )
    .unwrap();
    assert_eq!(q.read_scopes().await.unwrap(), Vec::new());
}

/// `(column, attgenerated, generation expression, attidentity)` of the columns of `table`.
async fn generated_columns(
    c: &Client,
    table: &str,
) -> Vec<(String, String, Option<String>, String)> {
    c.query(
        "SELECT a.attname::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid), \
                a.attidentity::text \
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// Issue 9, case 13: generated columns. A target column the target computes is not written
/// (COPY and INSERT would fail on it); a PostgreSQL → PostgreSQL created target gets the same
/// `GENERATED ALWAYS AS (…) STORED` column; identity columns `GENERATED ALWAYS` take upserts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_columns_are_computed_by_the_target() {
    let a = TestDb::new().await;
    let ca = a.client().await;
    ca.batch_execute(
        "CREATE TABLE g (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED, \
           s text);
         INSERT INTO g (id, a, s) SELECT x, x, 's' || x FROM generate_series(1, 50) x;",
    )
    .await
    .unwrap();
    // Created target: the column is generated there too, with the same expression.
    let b = TestDb::new().await;
    let cb = b.client().await;
    let src = source(&a.url, json!({"tables": ["g"]}));
    let t = src.tables().await.unwrap();
    let plan = TablePlan {
        target: t[0].schema.id.clone(),
        schema: t[0].schema.clone(),
        splits: 1,
    };
    let types = sink(&b.url, WriteMode::Append, true)
        .target_types(&plan)
        .unwrap()
        .unwrap();
    assert_eq!(
        types[2].1, "integer GENERATED ALWAYS AS ((a * 2)) STORED",
        "{types:?}"
    );
    src.close().await.unwrap();
    copy_all(
        &source(&a.url, json!({"tables": ["g"]})),
        &sink(&b.url, WriteMode::Append, true),
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        generated_columns(&cb, "public.g").await,
        generated_columns(&ca, "public.g").await
    );
    assert_eq!(
        rows_text(&cb, "g", "id").await,
        rows_text(&ca, "g", "id").await
    );
    // Existing targets: one computing the column differently, with an identity column that
    // is GENERATED ALWAYS; append then upsert.
    let c = TestDb::new().await;
    let cc = c.client().await;
    cc.batch_execute(
        "CREATE TABLE g (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, a int, \
           b int GENERATED ALWAYS AS (a * 3) STORED, s text, \
           n int GENERATED ALWAYS AS (length(s)) STORED)",
    )
    .await
    .unwrap();
    for mode in [WriteMode::Append, WriteMode::Upsert, WriteMode::Overwrite] {
        if mode == WriteMode::Upsert {
            ca.batch_execute("UPDATE g SET a = -a WHERE id <= 5")
                .await
                .unwrap();
        }
        copy_all(
            &source(&a.url, json!({"tables": ["g"]})),
            &sink(&c.url, mode, false),
            2,
        )
        .await
        .unwrap_or_else(|e| panic!("{mode:?}: {e} ({:?})", e.hint()));
        let got: Vec<(i32, i32, i32, i32)> = cc
            .query("SELECT id, a, b, n FROM g ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(got.len(), 50, "{mode:?}");
        for (id, a, b, n) in got {
            let want_a = if id <= 5 && mode != WriteMode::Append {
                -id
            } else {
                id
            };
            assert_eq!(
                (a, b, n),
                (want_a, want_a * 3, format!("s{id}").len() as i32),
                "{mode:?}"
            );
        }
    }
}

/// A target column the source does not have, `NOT NULL` without a default, would reject
/// every row: `prepare` says so before any data moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_column_no_row_could_fill_is_refused_in_prepare() {
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    a.client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    b.client()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, must text NOT NULL)")
        .await
        .unwrap();
    let src = source(&a.url, json!({"tables": ["t"]}));
    let t = src.tables().await.unwrap();
    let plan = TablePlan {
        target: t[0].schema.id.clone(),
        schema: t[0].schema.clone(),
        splits: 1,
    };
    let e = sink(&b.url, WriteMode::Append, false)
        .prepare(&[plan])
        .await
        .expect_err("prepare must refuse");
    src.close().await.unwrap();
    assert_eq!(e.kind(), ErrorKind::Schema, "{e}");
    assert!(e.to_string().contains("\"must\""), "{e}");
    assert!(e.hint().unwrap_or("").contains("DEFAULT"), "{:?}", e.hint());
}

/// Issue 9, case 14: after a load into a pre-created target, the sequences its serial and
/// identity columns own are at least at the largest value loaded, so an `INSERT` without an
/// id does not collide; in every write mode, idempotently, never moving a sequence back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_sequences_are_advanced_past_the_loaded_ids() {
    let a = TestDb::new().await;
    let ca = a.client().await;
    ca.batch_execute(
        "CREATE TABLE s (id int PRIMARY KEY, v text);
         INSERT INTO s SELECT g, 'v' || g FROM generate_series(1, 120) g;
         CREATE TABLE i (id bigint PRIMARY KEY, v text);
         INSERT INTO i SELECT g * 10, 'v' || g FROM generate_series(1, 30) g;
         ANALYZE;",
    )
    .await
    .unwrap();
    for mode in [WriteMode::Append, WriteMode::Upsert, WriteMode::Overwrite] {
        let b = TestDb::new().await;
        let cb = b.client().await;
        cb.batch_execute(
            "CREATE TABLE s (id serial PRIMARY KEY, v text);
             CREATE TABLE i (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text);",
        )
        .await
        .unwrap();
        copy_all(
            &source(&a.url, json!({"tables": ["s", "i"], "chunk_rows": 40})),
            &sink(&b.url, mode, false),
            2,
        )
        .await
        .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        for (t, want) in [("s", 121), ("i", 301)] {
            let id: i64 = cb
                .query_one(
                    &format!("INSERT INTO {t} (v) VALUES ('new') RETURNING id::int8"),
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("{mode:?}, table {t}: {e}"))
                .get(0);
            assert_eq!(id, want, "{mode:?}, table {t}");
        }
        // Idempotent, and a sequence already further is left alone.
        cb.batch_execute("SELECT setval(pg_get_serial_sequence('s', 'id'), 5000)")
            .await
            .unwrap();
        let src = source(&a.url, json!({"tables": ["s"]}));
        let t = src.tables().await.unwrap();
        src.close().await.unwrap();
        let plan = TablePlan {
            target: t[0].schema.id.clone(),
            schema: t[0].schema.clone(),
            splits: 1,
        };
        let again = sink(&b.url, mode, false);
        again.prepare(std::slice::from_ref(&plan)).await.unwrap();
        again.finish_table(&plan).await.unwrap();
        let id: i64 = cb
            .query_one("INSERT INTO s (v) VALUES ('later') RETURNING id::int8", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(id, 5001, "{mode:?}");
    }
}
