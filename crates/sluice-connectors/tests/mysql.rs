//! MySQL/MariaDB source and sink against the real server (`SLUICE_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306`). Each test creates its own databases and drops them.
//!
//! The server is the oracle: values are compared as the server renders them
//! (`QUOTE(col)` per column, ordered by key), and column types as `information_schema`
//! prints them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use proptest::prelude::*;
use serde_json::json;
use sluice_connectors::mysql::{MysqlSinkConfig, MysqlSourceConfig};
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{BatchSender, ErrorKind, Position, Result, TableId, TablePlan, WriteMode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn base_url() -> String {
    std::env::var("SLUICE_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn url_for(db: &str) -> String {
    format!(
        "{}/{}",
        base_url().trim_end_matches('/'),
        db.replace(' ', "%20")
    )
}

async fn admin() -> Conn {
    let opts = Opts::from_url(&base_url()).expect("SLUICE_TEST_MYSQL_URL is a mysql:// url");
    let mut c = Conn::new(opts).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach MariaDB/MySQL at {} ({e}); start the test services with \
             `bash scripts/test-services.sh` or set SLUICE_TEST_MYSQL_URL",
            base_url()
        )
    });
    c.query_drop("SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO'")
        .await
        .unwrap();
    c
}

/// A uniquely named database, dropped by [`TestDb::drop_db`].
struct TestDb {
    name: String,
}

impl TestDb {
    async fn new(tag: &str) -> TestDb {
        let name = format!(
            "sluice_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = admin().await;
        c.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .unwrap();
        c.query_drop(format!("CREATE DATABASE `{}`", name.replace('`', "``")))
            .await
            .unwrap();
        c.disconnect().await.unwrap();
        TestDb { name }
    }

    fn url(&self) -> String {
        url_for(&self.name)
    }

    async fn exec(&self, sql: &str) {
        let mut c = admin().await;
        c.query_drop(format!("USE `{}`", self.name.replace('`', "``")))
            .await
            .unwrap();
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.disconnect().await.unwrap();
    }

    async fn query<T: mysql_async::prelude::FromRow + Send + 'static>(&self, sql: &str) -> Vec<T> {
        let mut c = admin().await;
        c.query_drop(format!("USE `{}`", self.name.replace('`', "``")))
            .await
            .unwrap();
        let r = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.disconnect().await.unwrap();
        r
    }

    /// Every row of `table` as the server renders it, ordered by `key`.
    async fn rows(&self, table: &str, key: &str) -> Vec<Vec<u8>> {
        let cols: Vec<String> = self
            .query(&format!(
                "SELECT COLUMN_NAME FROM information_schema.columns WHERE TABLE_SCHEMA = DATABASE() \
                 AND TABLE_NAME = '{}' ORDER BY ORDINAL_POSITION",
                table.replace('\'', "''")
            ))
            .await;
        let list: Vec<String> = cols
            .iter()
            .map(|c| format!("IFNULL(QUOTE(`{}`), 'NULL')", c.replace('`', "``")))
            .collect();
        let sql = format!(
            "SELECT CONCAT_WS('|', {}) FROM `{}` ORDER BY `{key}`",
            list.join(", "),
            table.replace('`', "``")
        );
        self.query::<Vec<u8>>(&sql).await
    }

    async fn column_types(&self, table: &str) -> Vec<(String, String)> {
        self.query(&format!(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.columns WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_NAME = '{}' ORDER BY ORDINAL_POSITION",
            table.replace('\'', "''")
        ))
        .await
    }

    async fn drop_db(self) {
        let mut c = admin().await;
        c.query_drop(format!(
            "DROP DATABASE IF EXISTS `{}`",
            self.name.replace('`', "``")
        ))
        .await
        .unwrap();
        c.disconnect().await.unwrap();
    }
}

fn source(url: &str, extra: serde_json::Value) -> DynSource {
    let mut v = json!({ "url": url });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let c: MysqlSourceConfig = serde_json::from_value(v).unwrap();
    c.build().unwrap()
}

fn sink(url: &str, extra: serde_json::Value, mode: WriteMode, create: bool) -> DynSink {
    let mut v = json!({ "url": url });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let c: MysqlSinkConfig = serde_json::from_value(v).unwrap();
    c.build(mode, create).unwrap()
}

/// Plans every table of `src`, then reads and writes all splits of a table at once (each
/// split: a reader task → channel → writer → commit), then finishes the table.
async fn copy(src: &DynSource, dst: &DynSink) -> Result<u64> {
    let tables = src.tables().await?;
    let mut plans = Vec::new();
    for t in &tables {
        let splits = src.splits(t).await?;
        let plan = TablePlan {
            target: t.schema.id.clone(),
            schema: t.schema.clone(),
            splits: splits.len(),
        };
        plans.push((plan, splits));
    }
    let all: Vec<TablePlan> = plans.iter().map(|(p, _)| p.clone()).collect();
    dst.prepare(&all).await?;
    let mut total = 0;
    for (plan, splits) in &plans {
        let runs = splits.iter().map(|split| {
            let (src, dst, plan, split) = (src.clone(), dst.clone(), plan.clone(), split.clone());
            async move {
                let (tx, mut rx) = mpsc::channel(4);
                let out = BatchSender::new(tx, CancellationToken::new());
                let s = split.clone();
                let reader = tokio::spawn(async move { src.read(s, None, out).await });
                let mut w = dst.open(&plan, &split).await?;
                let mut last = Position::new(split.id.clone(), serde_json::Value::Null);
                let mut rows = 0u64;
                while let Some(b) = rx.recv().await.map(crate::into_batch) {
                    rows += b.data.num_rows() as u64;
                    if let Err(e) = w.write(b.data).await {
                        reader.abort();
                        let _ = w.abort().await;
                        return Err(e);
                    }
                    last = b.position;
                }
                if let Err(e) = reader.await.expect("reader task") {
                    let _ = w.abort().await;
                    return Err(e);
                }
                w.commit(&last).await?;
                Ok::<u64, sluice_core::Error>(rows)
            }
        });
        for r in futures::future::join_all(runs).await {
            total += r?;
        }
        dst.finish_table(plan).await?;
    }
    src.close().await?;
    dst.close().await?;
    Ok(total)
}

/// Compares server renderings row by row, naming the first differing column.
fn assert_rows_eq(a: &[Vec<u8>], b: &[Vec<u8>]) {
    assert_eq!(a.len(), b.len(), "row counts differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let (x, y) = (String::from_utf8_lossy(x), String::from_utf8_lossy(y));
        if x != y {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split('|').collect(), y.split('|').collect());
            let c = xs
                .iter()
                .zip(&ys)
                .position(|(p, q)| p != q)
                .unwrap_or(xs.len().min(ys.len()));
            let cut = |s: &str| s.chars().take(200).collect::<String>();
            panic!(
                "row {i}, field {c}: {:?} != {:?}",
                cut(xs.get(c).unwrap_or(&"")),
                cut(ys.get(c).unwrap_or(&""))
            );
        }
    }
}

/// Every type with edge values (zero dates need a sql_mode without NO_ZERO_DATE).
const TYPES_SQL: &str = include_str!("data/mysql_all_types.sql");

#[tokio::test]
async fn mysql_type_round_trip_keeps_types_and_values() {
    let src = TestDb::new("types_src").await;
    let dst = TestDb::new("types_dst").await;
    src.exec(&format!(
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'; {TYPES_SQL}"
    ))
    .await;

    let n = copy(
        &source(&src.url(), json!({})),
        &sink(&dst.url(), json!({}), WriteMode::Append, true),
    )
    .await
    .unwrap();
    assert_eq!(n, 5);
    assert_eq!(
        dst.column_types("types").await,
        src.column_types("types").await
    );
    let a = src.rows("types", "id").await;
    let b = dst.rows("types", "id").await;
    assert_rows_eq(&a[..4], &b[..4]);
    // Row 5 holds zero dates: read as NULL by default.
    let zero: Vec<(Option<String>, Option<String>, Option<String>)> = dst
        .query(
            "SELECT CAST(dt AS CHAR), CAST(dtm AS CHAR), CAST(dt0 AS CHAR) FROM types WHERE id = 5",
        )
        .await;
    assert_eq!(zero, vec![(None, None, None)]);
    let rest_src: Vec<String> = src
        .query(
            "SELECT CONCAT_WS('|', ti, QUOTE(f), QUOTE(dbl), js, bt + 0) FROM types WHERE id = 5",
        )
        .await;
    let rest_dst: Vec<String> = dst
        .query(
            "SELECT CONCAT_WS('|', ti, QUOTE(f), QUOTE(dbl), js, bt + 0) FROM types WHERE id = 5",
        )
        .await;
    assert_eq!(rest_src, rest_dst);
    // -0 survives where the server keeps it.
    let neg: Vec<(String, String)> = src
        .query("SELECT CAST(f AS CHAR), CAST(dbl AS CHAR) FROM types WHERE id = 3")
        .await;
    let neg_dst: Vec<(String, String)> = dst
        .query("SELECT CAST(f AS CHAR), CAST(dbl AS CHAR) FROM types WHERE id = 3")
        .await;
    assert_eq!(neg, neg_dst);

    // The same copy with INSERT instead of LOAD DATA.
    let dst2 = TestDb::new("types_dst2").await;
    copy(
        &source(&src.url(), json!({})),
        &sink(
            &dst2.url(),
            json!({ "method": "insert" }),
            WriteMode::Append,
            true,
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        dst2.column_types("types").await,
        src.column_types("types").await
    );
    assert_rows_eq(&dst2.rows("types", "id").await, &b);

    // A same-engine copy (what `sluice run` does for a MySQL sink) keeps row 5's zero dates
    // too, with both methods.
    for method in ["load_data", "insert"] {
        let dst3 = TestDb::new("types_dst3").await;
        copy(
            &same_engine_source(&src.url(), json!({})),
            &sink(
                &dst3.url(),
                json!({ "method": method }),
                WriteMode::Append,
                true,
            ),
        )
        .await
        .unwrap();
        assert_eq!(
            table_shape(&dst3, "types").await,
            table_shape(&src, "types").await,
            "{method}"
        );
        assert_rows_eq(&dst3.rows("types", "id").await, &a);
        dst3.drop_db().await;
    }

    // zero_dates = "error" names table, column and row.
    let e = copy(
        &source(&src.url(), json!({ "zero_dates": "error" })),
        &sink(&dst2.url(), json!({}), WriteMode::Overwrite, true),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("types")
            && msg.contains("\"dt\"")
            && msg.contains("key 5")
            && msg.contains("zero date"),
        "{msg}"
    );
    src.drop_db().await;
    dst.drop_db().await;
    dst2.drop_db().await;
}

#[tokio::test]
async fn mysql_large_table_copies_in_parallel_splits() {
    let src = TestDb::new("big_src").await;
    let dst = TestDb::new("big_dst").await;
    let rows = 200_000u64;
    src.exec(
        "CREATE TABLE big (id bigint unsigned NOT NULL PRIMARY KEY, a int, b varchar(40), c decimal(12,3), \
         d datetime(6), e double, f blob) ENGINE=InnoDB",
    )
    .await;
    src.exec(&format!(
        "INSERT INTO big SELECT seq, CAST(seq AS SIGNED) % 1000 - 500, CONCAT('row ', seq, IF(seq % 7 = 0, '\\t😀', '')), \
         seq / 7, '2020-01-01' + INTERVAL seq SECOND + INTERVAL seq MICROSECOND, seq / 3, \
         IF(seq % 5 = 0, NULL, UNHEX(HEX(seq))) FROM seq_1_to_{rows}"
    ))
    .await;
    src.exec("ANALYZE TABLE big").await;
    let checksum = "SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS('#', id, a, b, c, d, QUOTE(e), HEX(f)))) FROM big";
    let expected: Vec<(u64, u64)> = src.query(checksum).await;

    let s = source(
        &src.url(),
        json!({ "chunk_rows": 60_000, "batch_size": 4096 }),
    );
    let tables = s.tables().await.unwrap();
    let splits = s.splits(&tables[0]).await.unwrap();
    assert!(splits.len() >= 3, "{} splits", splits.len());
    assert_eq!(splits[1].id, "big#1");

    for method in ["load_data", "insert"] {
        dst.exec("DROP TABLE IF EXISTS big").await;
        let started = Instant::now();
        let n = copy(
            &source(
                &src.url(),
                json!({ "chunk_rows": 60_000, "connections": 2 }),
            ),
            &sink(
                &dst.url(),
                json!({ "method": method }),
                WriteMode::Append,
                true,
            ),
        )
        .await
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "mysql copy of {rows} rows with method {method}: {secs:.2} s, {:.0} rows/s",
            rows as f64 / secs
        );
        assert_eq!(n, rows);
        assert_eq!(
            dst.query::<(u64, u64)>(checksum).await,
            expected,
            "{method}"
        );
    }
    let cps: Vec<(String, String)> = dst
        .query("SELECT split, position FROM _sluice_checkpoints ORDER BY split")
        .await;
    assert_eq!(cps.len(), splits.len());
    assert!(
        cps.last()
            .unwrap()
            .1
            .contains(&format!("\"last_key\":{rows}")),
        "{cps:?}"
    );
    src.drop_db().await;
    dst.drop_db().await;
}

#[tokio::test]
async fn mysql_overwrite_and_upsert() {
    let src = TestDb::new("modes_src").await;
    let dst = TestDb::new("modes_dst").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, v varchar(10), n int)")
        .await;
    src.exec("INSERT INTO t VALUES (2, 'two', 2), (3, 'three', 3), (4, 'four', 4)")
        .await;
    dst.exec("CREATE TABLE t (id int PRIMARY KEY, v varchar(10), n int)")
        .await;
    dst.exec("INSERT INTO t VALUES (1, 'old1', 1), (2, 'old2', 20)")
        .await;

    for method in ["load_data", "insert"] {
        copy(
            &source(&src.url(), json!({})),
            &sink(
                &dst.url(),
                json!({ "method": method }),
                WriteMode::Upsert,
                true,
            ),
        )
        .await
        .unwrap();
        let got: Vec<(i32, String, i32)> = dst.query("SELECT id, v, n FROM t ORDER BY id").await;
        assert_eq!(
            got,
            vec![
                (1, "old1".into(), 1),
                (2, "two".into(), 2),
                (3, "three".into(), 3),
                (4, "four".into(), 4)
            ],
            "{method}"
        );
    }

    // Overwrite: the old rows stay visible until finish_table swaps the stage in.
    let s = source(&src.url(), json!({}));
    let k = sink(&dst.url(), json!({}), WriteMode::Overwrite, true);
    let tables = s.tables().await.unwrap();
    let splits = s.splits(&tables[0]).await.unwrap();
    let plan = TablePlan {
        target: TableId::new(["t"]),
        schema: tables[0].schema.clone(),
        splits: splits.len(),
    };
    k.prepare(std::slice::from_ref(&plan)).await.unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    s.read(
        splits[0].clone(),
        None,
        BatchSender::new(tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let mut w = k.open(&plan, &splits[0]).await.unwrap();
    let mut last = None;
    while let Ok(b) = rx.try_recv().map(crate::into_batch) {
        w.write(b.data).await.unwrap();
        last = Some(b.position);
    }
    w.commit(&last.unwrap()).await.unwrap();
    assert_eq!(dst.query::<u64>("SELECT COUNT(*) FROM t").await, vec![4]);
    k.finish_table(&plan).await.unwrap();
    let got: Vec<(i32, String)> = dst.query("SELECT id, v FROM t ORDER BY id").await;
    assert_eq!(
        got,
        vec![(2, "two".into()), (3, "three".into()), (4, "four".into())]
    );
    let mut left: Vec<String> = dst
        .query("SELECT TABLE_NAME FROM information_schema.tables WHERE TABLE_SCHEMA = DATABASE()")
        .await;
    left.sort();
    assert_eq!(
        left,
        vec!["_sluice_checkpoints".to_string(), "t".to_string()]
    );
    s.close().await.unwrap();

    // Upsert without a primary key is refused.
    src.exec("CREATE TABLE nokey (a int)").await;
    let e = copy(
        &source(&src.url(), json!({ "tables": ["nokey"] })),
        &sink(&dst.url(), json!({}), WriteMode::Upsert, true),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("primary key"), "{e}");
    src.drop_db().await;
    dst.drop_db().await;
}

#[tokio::test]
async fn mysql_odd_identifiers_are_quoted() {
    let src = TestDb::new("Odd Src").await;
    let dst = TestDb::new("Odd Dst").await;
    let evil = "x\"; DROP TABLE y; --";
    src.exec(&format!(
        "CREATE TABLE `{evil}` (`select` int PRIMARY KEY, `Ünï code` varchar(5), `a.b` int, `q``t'\"` text)"
    ))
    .await;
    src.exec(&format!(
        "INSERT INTO `{evil}` VALUES (1, 'ä', 2, 'x'), (2, NULL, NULL, '`')"
    ))
    .await;
    src.exec("CREATE TABLE y (a int)").await;
    dst.exec("CREATE TABLE y (a int)").await;
    let pattern = format!("\"{}\"", evil.replace('"', "\"\""));
    copy(
        &source(&src.url(), json!({ "tables": [pattern] })),
        &sink(&dst.url(), json!({}), WriteMode::Append, true),
    )
    .await
    .unwrap();
    assert_eq!(
        dst.rows(evil, "select").await,
        src.rows(evil, "select").await
    );
    assert_eq!(dst.query::<u64>("SELECT COUNT(*) FROM y").await, vec![0]);
    assert_eq!(src.query::<u64>("SELECT COUNT(*) FROM y").await, vec![0]);
    src.drop_db().await;
    dst.drop_db().await;
}

#[tokio::test]
async fn mysql_errors_name_the_problem() {
    let db = TestDb::new("errors").await;
    db.exec("CREATE TABLE orders (id int PRIMARY KEY, v int)")
        .await;
    db.exec("INSERT INTO orders VALUES (1, 1), (2, 2)").await;

    // Unreachable server.
    let e = source("mysql://root@127.0.0.1:1/x", json!({}))
        .tables()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    assert!(e.hint().unwrap().contains("reachable"), "{e}");

    // Wrong password.
    let user = format!("sluice_pw_{}", std::process::id());
    let mut a = admin().await;
    a.query_drop(format!("DROP USER IF EXISTS '{user}'@'%'"))
        .await
        .unwrap();
    a.query_drop(format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'right'"))
        .await
        .unwrap();
    a.query_drop(format!("GRANT SELECT ON `{}`.* TO '{user}'@'%'", db.name))
        .await
        .unwrap();
    let host = base_url()
        .trim_start_matches("mysql://")
        .rsplit('@')
        .next()
        .unwrap()
        .to_string();
    let e = source(
        &format!("mysql://{user}:wrong@{host}/{}", db.name),
        json!({}),
    )
    .tables()
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.to_string().contains("wrong"), "password leaked: {e}");

    // Permission denied: the user may read but not create tables.
    let e = copy(
        &source(&db.url(), json!({})),
        &sink(
            &format!("mysql://{user}:right@{host}/{}", db.name),
            json!({}),
            WriteMode::Append,
            true,
        ),
    )
    .await;
    // orders exists in the same database, so the sink appends: INSERT is denied.
    let e = e.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.hint().unwrap().contains("GRANT"), "{e}");
    a.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();

    // Missing database.
    let e = source(&url_for("sluice_no_such_db"), json!({}))
        .tables()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("sluice_no_such_db") || e.to_string().contains("Unknown database"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");

    // Missing table, with a suggestion.
    let e = source(&db.url(), json!({ "tables": ["ordrs"] }))
        .tables()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.hint().unwrap().contains("did you mean `orders`"),
        "{e} / {:?}",
        e.hint()
    );

    // Missing target table without create_tables.
    let other = TestDb::new("errors_dst").await;
    let e = copy(
        &source(&db.url(), json!({})),
        &sink(&other.url(), json!({}), WriteMode::Append, false),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("does not exist") && e.hint().unwrap().contains("create_tables"),
        "{e}"
    );

    // Incompatible existing column.
    other
        .exec("CREATE TABLE orders (id int PRIMARY KEY, v date)")
        .await;
    let e = copy(
        &source(&db.url(), json!({})),
        &sink(&other.url(), json!({}), WriteMode::Append, true),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema, "{e}");
    assert!(
        e.to_string().contains("\"v\"") && e.to_string().contains("date"),
        "{e}"
    );

    // Duplicate key in the target.
    other.exec("DROP TABLE orders").await;
    other
        .exec("CREATE TABLE orders (id int PRIMARY KEY, v int)")
        .await;
    other.exec("INSERT INTO orders VALUES (2, 0)").await;
    for method in ["load_data", "insert"] {
        let e = copy(
            &source(&db.url(), json!({})),
            &sink(
                &other.url(),
                json!({ "method": method }),
                WriteMode::Append,
                true,
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Data, "{e}");
        assert!(
            e.to_string().contains("orders") && e.to_string().contains("split 0"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("upsert"), "{e}");
        // Rolled back: the row 1 of the failed split is not there.
        assert_eq!(
            other.query::<u64>("SELECT COUNT(*) FROM orders").await,
            vec![1]
        );
    }
    db.drop_db().await;
    other.drop_db().await;
}

#[tokio::test]
async fn mysql_connection_lost_mid_copy_is_transient() {
    let src = TestDb::new("lost_src").await;
    let dst = TestDb::new("lost_dst").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    src.exec("INSERT INTO t SELECT seq, seq FROM seq_1_to_1000")
        .await;
    let user = format!("sluice_kill_{}", std::process::id());
    let mut a = admin().await;
    a.query_drop(format!("DROP USER IF EXISTS '{user}'@'%'"))
        .await
        .unwrap();
    a.query_drop(format!("CREATE USER '{user}'@'%'"))
        .await
        .unwrap();
    a.query_drop(format!("GRANT ALL ON `{}`.* TO '{user}'@'%'", dst.name))
        .await
        .unwrap();
    let host = base_url()
        .trim_start_matches("mysql://")
        .rsplit('@')
        .next()
        .unwrap()
        .to_string();

    let s = source(&src.url(), json!({ "batch_size": 100 }));
    let k = sink(
        &format!("mysql://{user}@{host}/{}", dst.name),
        json!({}),
        WriteMode::Append,
        true,
    );
    let tables = s.tables().await.unwrap();
    let splits = s.splits(&tables[0]).await.unwrap();
    let plan = TablePlan {
        target: TableId::new(["t"]),
        schema: tables[0].schema.clone(),
        splits: 1,
    };
    k.prepare(std::slice::from_ref(&plan)).await.unwrap();
    let (tx, mut rx) = mpsc::channel(100);
    s.read(
        splits[0].clone(),
        None,
        BatchSender::new(tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let mut w = k.open(&plan, &splits[0]).await.unwrap();
    w.write(rx.recv().await.map(crate::into_batch).unwrap().data)
        .await
        .unwrap();
    let ids: Vec<u64> = a
        .exec(
            "SELECT ID FROM information_schema.processlist WHERE USER = ?",
            (&user,),
        )
        .await
        .unwrap();
    assert!(!ids.is_empty());
    for id in ids {
        a.query_drop(format!("KILL CONNECTION {id}")).await.unwrap();
    }
    let mut err = None;
    while let Some(b) = rx.recv().await.map(crate::into_batch) {
        if let Err(e) = w.write(b.data).await {
            err = Some(e);
            break;
        }
    }
    let e = match err {
        Some(e) => e,
        None => w
            .commit(&Position::new("t#0", json!(null)))
            .await
            .unwrap_err(),
    };
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    assert!(e.kind().is_transient());
    assert!(e.to_string().contains("split 0"), "{e}");
    a.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
    s.close().await.unwrap();
    src.drop_db().await;
    dst.drop_db().await;
}

#[tokio::test]
async fn mysql_stopped_read_releases_the_server() {
    let src = TestDb::new("stop_src").await;
    src.exec("CREATE TABLE t (id int PRIMARY KEY, v varchar(100))")
        .await;
    src.exec("INSERT INTO t SELECT seq, REPEAT('x', 100) FROM seq_1_to_100000")
        .await;
    let s = source(
        &src.url(),
        json!({ "batch_size": 1000, "consistent_snapshot": false }),
    );
    let tables = s.tables().await.unwrap();
    let splits = s.splits(&tables[0]).await.unwrap();
    let (tx, mut rx) = mpsc::channel(1);
    let stop = CancellationToken::new();
    let out = BatchSender::new(tx, stop.clone());
    let split = splits[0].clone();
    let s2 = s.clone();
    let reader = tokio::spawn(async move { s2.read(split, None, out).await });
    let first = rx.recv().await.map(crate::into_batch).unwrap();
    assert_eq!(first.data.num_rows(), 1000);
    assert_eq!(first.position.value, json!({ "last_key": 1000 }));
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The reading connection is killed: no query on `t` is left running.
    let mut busy = 1;
    for _ in 0..50 {
        busy = src
            .query::<u64>(&format!(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE DB = '{}' AND INFO LIKE 'SELECT%FROM%t%' AND INFO NOT LIKE '%processlist%'",
                src.name
            ))
            .await[0];
        if busy == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(busy, 0);

    // Resume after the first batch's position reads the rest.
    let (tx, mut rx) = mpsc::channel(1000);
    s.read(
        splits[0].clone(),
        Some(first.position),
        BatchSender::new(tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let mut n = 0;
    while let Ok(b) = rx.try_recv().map(crate::into_batch) {
        n += b.data.num_rows();
    }
    assert_eq!(n, 99_000);
    src.drop_db().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Random values stored by the server, copied, compared as the server renders them.
    #[test]
    fn mysql_random_values_round_trip(rows in proptest::collection::vec(
        (any::<i64>(), any::<u64>(), any::<f64>().prop_filter("finite", |f| f.is_finite()),
         "\\PC{0,20}", proptest::collection::vec(any::<u8>(), 0..20),
         (-99_999_999_999_999i64..99_999_999_999_999, 0u32..1_000_000),
         (0i64..253_402_300_799, 0u32..1_000_000)),
        1..40,
    )) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let src = TestDb::new("prop_src").await;
            let dst = TestDb::new("prop_dst").await;
            src.exec("CREATE TABLE p (id int PRIMARY KEY, a bigint, b bigint unsigned, c double, \
                      d varchar(100), e varbinary(100), f decimal(20,6), g datetime(6))").await;
            let mut c = admin().await;
            c.query_drop(format!("USE `{}`", src.name)).await.unwrap();
            for (i, (a, b, f, d, e, (di, df), (secs, us))) in rows.iter().enumerate() {
                let dec = format!("{}{}.{:06}", if *di < 0 { "-" } else { "" }, di.unsigned_abs(), df);
                let ts = chrono::DateTime::from_timestamp(*secs, us * 1000).unwrap().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
                c.exec_drop(
                    "INSERT INTO p VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (i as i64, *a, *b, *f, d.clone(), Value::Bytes(e.clone()), dec, ts),
                ).await.unwrap();
            }
            c.disconnect().await.unwrap();
            copy(&source(&src.url(), json!({})), &sink(&dst.url(), json!({}), WriteMode::Append, true)).await.unwrap();
            assert_eq!(dst.rows("p", "id").await, src.rows("p", "id").await);
            src.drop_db().await;
            dst.drop_db().await;
        });
    }
}

// ---------------------------------------------------------------------------------------
// Fidelity: values the target would round, same-engine copies, generated columns, views,
// AUTO_INCREMENT.

/// Writes `batch` as split 0 of `plan` (prepare, open, write, commit, finish).
async fn write_batch(
    dst: &DynSink,
    plan: &TablePlan,
    batch: arrow::record_batch::RecordBatch,
) -> Result<()> {
    dst.prepare(std::slice::from_ref(plan)).await?;
    let split = sluice_core::Split {
        id: format!("{}#0", plan.target),
        table: plan.target.clone(),
        index: 0,
        estimated_rows: None,
        estimated_bytes: None,
        detail: json!(null),
        continues: false,
        start: None,
    };
    let mut w = dst.open(plan, &split).await?;
    if let Err(e) = w.write(batch).await {
        let _ = w.abort().await;
        return Err(e);
    }
    w.commit(&Position::new(split.id.clone(), json!({ "rows": 1 })))
        .await?;
    dst.finish_table(plan).await
}

/// A PostgreSQL-like table: `id int` key, `n` unconstrained numeric (canonical text) and
/// `m numeric(50,35)` (Decimal256).
fn numeric_plan(
    name: &str,
    rows: &[(i32, &str, &str)],
) -> (TablePlan, arrow::record_batch::RecordBatch) {
    use arrow::array::{ArrayRef, Decimal256Array, Int32Array, StringArray};
    use arrow::datatypes::i256;
    use sluice_core::LogicalType;
    let fields = vec![
        LogicalType::Int32.field("id", false),
        LogicalType::Decimal {
            precision: None,
            scale: None,
        }
        .field("n", true),
        LogicalType::Decimal {
            precision: Some(50),
            scale: Some(35),
        }
        .field("m", true),
    ];
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    let id: ArrayRef = std::sync::Arc::new(Int32Array::from(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
    ));
    let n: ArrayRef = std::sync::Arc::new(StringArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    ));
    let m: ArrayRef = std::sync::Arc::new(
        Decimal256Array::from(
            rows.iter()
                .map(|r| i256::from_string(r.2).unwrap())
                .collect::<Vec<_>>(),
        )
        .with_precision_and_scale(50, 35)
        .unwrap(),
    );
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), vec![id, n, m]).unwrap();
    let plan = TablePlan {
        target: TableId::new([name]),
        schema: sluice_core::TableSchema {
            id: TableId::new([name]),
            arrow: schema,
            primary_key: vec!["id".into()],
        },
        splits: 1,
    };
    (plan, batch)
}

#[tokio::test]
async fn mysql_decimal_the_target_would_round_is_a_data_error_naming_the_row() {
    let dst = TestDb::new("round_dst").await;
    // m is numeric(50,35), given as unscaled integers: 10^35 is 1.
    let one = "100000000000000000000000000000000000";
    for method in ["load_data", "insert"] {
        let table = format!("n_{method}");
        let k = sink(
            &dst.url(),
            json!({ "method": method }),
            WriteMode::Append,
            true,
        );
        // Values that fit decimal(65,30) are written exactly (trailing zeros aside).
        let (plan, batch) = numeric_plan(
            &table,
            &[
                (
                    1,
                    "12345678901234567890123456789012345.123456789012345678901234567890",
                    one,
                ),
                (2, "-0.000000000000000000000000000001000", "-100000"),
            ],
        );
        write_batch(&k, &plan, batch).await.unwrap();
        let got: Vec<(i32, String, String)> = dst
            .query(&format!(
                "SELECT id, CAST(n AS CHAR), CAST(m AS CHAR) FROM {table} ORDER BY id"
            ))
            .await;
        assert_eq!(
            got,
            vec![
                (
                    1,
                    "12345678901234567890123456789012345.123456789012345678901234567890".into(),
                    "1.000000000000000000000000000000".into()
                ),
                (
                    2,
                    "-0.000000000000000000000000000001".into(),
                    "-0.000000000000000000000000000001".into()
                ),
            ],
            "{method}"
        );
        // A value MySQL would round or refuse fails its batch, naming column and key.
        for (id, n, m, column, why) in [
            (
                7,
                "1.0000000000000000000000000000001",
                one,
                "\"n\"",
                "31 decimal places",
            ),
            (8, "1", "1", "\"m\"", "35 decimal places"),
            (
                9,
                "123456789012345678901234567890123456",
                one,
                "\"n\"",
                "36 integer digits",
            ),
            (10, "NaN", one, "\"n\"", "NaN"),
        ] {
            let (plan, batch) = numeric_plan(&table, &[(6, "1", one), (id, n, m)]);
            let e = write_batch(&k, &plan, batch).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Data, "{method}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&table)
                    && msg.contains(column)
                    && msg.contains(&format!("id = {id}"))
                    && msg.contains(why),
                "{method}: {msg}"
            );
            assert!(e.hint().unwrap().contains("cast"), "{method}: {e}");
            // Rolled back: row 6 of the failed batch is not there.
            assert_eq!(
                dst.query::<u64>(&format!("SELECT COUNT(*) FROM {table}"))
                    .await,
                vec![2],
                "{method}"
            );
        }
    }

    // What the server itself truncates with only a note (trailing spaces beyond a varchar's
    // length) fails too.
    dst.exec("CREATE TABLE sp (id int PRIMARY KEY, v varchar(3))")
        .await;
    let fields = vec![
        sluice_core::LogicalType::Int32.field("id", false),
        sluice_core::LogicalType::Text.field("v", true),
    ];
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(arrow::array::Int32Array::from(vec![1, 2])),
            std::sync::Arc::new(arrow::array::StringArray::from(vec!["abc", "ab   "])),
        ],
    )
    .unwrap();
    let plan = TablePlan {
        target: TableId::new(["sp"]),
        schema: sluice_core::TableSchema {
            id: TableId::new(["sp"]),
            arrow: schema,
            primary_key: vec!["id".into()],
        },
        splits: 1,
    };
    for method in ["load_data", "insert"] {
        let k = sink(
            &dst.url(),
            json!({ "method": method }),
            WriteMode::Append,
            true,
        );
        let e = write_batch(&k, &plan, batch.clone()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Data, "{method}: {e}");
        assert!(
            e.to_string().contains("truncated") && e.to_string().contains("id = 2"),
            "{method}: {e}"
        );
        assert_eq!(dst.query::<u64>("SELECT COUNT(*) FROM sp").await, vec![0]);
    }
    dst.drop_db().await;
}

fn same_engine_source(url: &str, extra: serde_json::Value) -> DynSource {
    let mut v = json!({ "url": url });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let c: MysqlSourceConfig = serde_json::from_value(v).unwrap();
    c.build_same_engine().unwrap()
}

/// `id, a, b, c` of the generated-columns table.
type GenRow = (i32, Option<i32>, Option<i32>, Option<String>);

#[tokio::test]
async fn mysql_generated_target_columns_are_computed_not_written() {
    let src = TestDb::new("gen_src").await;
    let dst = TestDb::new("gen_dst").await;
    src.exec("CREATE TABLE g (id int PRIMARY KEY, a int, b int, c varchar(20))")
        .await;
    src.exec("INSERT INTO g VALUES (1, 10, 0, 'ignored'), (2, NULL, 5, NULL), (3, -4, 0, '')")
        .await;
    let want: Vec<GenRow> = vec![
        (1, Some(10), Some(20), Some("x10".to_string())),
        (2, None, None, None),
        (3, Some(-4), Some(-8), Some("x-4".to_string())),
    ];
    for (method, mode) in [
        ("load_data", WriteMode::Append),
        ("insert", WriteMode::Append),
        ("load_data", WriteMode::Upsert),
        ("insert", WriteMode::Upsert),
        ("load_data", WriteMode::Overwrite),
    ] {
        dst.exec("DROP TABLE IF EXISTS g").await;
        dst.exec(
            "CREATE TABLE g (id int PRIMARY KEY, a int, b int AS (a * 2) VIRTUAL, \
             c varchar(20) AS (concat('x', a)) STORED)",
        )
        .await;
        copy(
            &source(&src.url(), json!({})),
            &sink(&dst.url(), json!({ "method": method }), mode, true),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {mode:?}: {e}"));
        let got: Vec<GenRow> = dst.query("SELECT id, a, b, c FROM g ORDER BY id").await;
        assert_eq!(got, want, "{method} {mode:?}");
        // Still generated (overwrite swapped in a stage made LIKE the target).
        let extra: Vec<String> = dst
            .query("SELECT EXTRA FROM information_schema.columns WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'g' AND COLUMN_NAME IN ('b', 'c') ORDER BY COLUMN_NAME")
            .await;
        assert_eq!(extra, vec!["VIRTUAL GENERATED", "STORED GENERATED"]);
    }
    src.drop_db().await;
    dst.drop_db().await;
}

#[tokio::test]
async fn mysql_views_are_read_when_named_and_skipped_by_globs() {
    let src = TestDb::new("view_src").await;
    let dst = TestDb::new("view_dst").await;
    src.exec("CREATE TABLE base (id int PRIMARY KEY, v varchar(10), hidden int)")
        .await;
    src.exec("INSERT INTO base VALUES (1, 'a', 0), (2, 'b', 1), (3, 'c', 0)")
        .await;
    src.exec("CREATE VIEW visible AS SELECT id, UPPER(v) AS v FROM base WHERE hidden = 0")
        .await;
    // A glob lists base tables only.
    let names: Vec<String> = source(&src.url(), json!({ "tables": ["*"] }))
        .tables()
        .await
        .unwrap()
        .iter()
        .map(|t| t.schema.id.to_string())
        .collect();
    assert_eq!(names, vec!["base"]);
    // Named, the view's rows are copied into a table.
    let n = copy(
        &source(&src.url(), json!({ "tables": ["visible"] })),
        &sink(&dst.url(), json!({}), WriteMode::Append, true),
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    let got: Vec<(i32, String)> = dst.query("SELECT id, v FROM visible ORDER BY id").await;
    assert_eq!(got, vec![(1, "A".into()), (3, "C".into())]);
    let kind: Vec<String> = dst
        .query("SELECT TABLE_TYPE FROM information_schema.tables WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'visible'")
        .await;
    assert_eq!(kind, vec!["BASE TABLE"]);
    // A resumed read of the view continues after the rows already read.
    let s = source(
        &src.url(),
        json!({ "tables": ["visible"], "batch_size": 1 }),
    );
    let tables = s.tables().await.unwrap();
    let split = s.splits(&tables[0]).await.unwrap().remove(0);
    let read = |resume: Option<Position>| {
        let (s, split) = (s.clone(), split.clone());
        async move {
            let (tx, mut rx) = mpsc::channel(10);
            s.read(
                split,
                resume,
                BatchSender::new(tx, CancellationToken::new()),
            )
            .await
            .unwrap();
            let mut out = Vec::new();
            while let Ok(b) = rx.try_recv().map(crate::into_batch) {
                let ids = b
                    .data
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int32Array>()
                    .unwrap()
                    .values()
                    .to_vec();
                out.push((ids, b.position));
            }
            out
        }
    };
    let all = read(None).await;
    assert_eq!(all.len(), 2);
    let rest = read(Some(all[0].1.clone())).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0, all[1].0);
    s.close().await.unwrap();

    // With the consistent snapshot (the default) next to a table.
    let dst2 = TestDb::new("view_dst2").await;
    let n = copy(
        &source(&src.url(), json!({ "tables": ["base", "visible"] })),
        &sink(&dst2.url(), json!({}), WriteMode::Append, true),
    )
    .await
    .unwrap();
    assert_eq!(n, 5);
    src.drop_db().await;
    dst.drop_db().await;
    dst2.drop_db().await;
}

#[tokio::test]
async fn mysql_auto_increment_is_above_the_copied_keys() {
    let src = TestDb::new("ai_src").await;
    let dst = TestDb::new("ai_dst").await;
    src.exec(
        "CREATE TABLE ai (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, v varchar(10)) ENGINE=InnoDB",
    )
    .await;
    src.exec("INSERT INTO ai VALUES (1, 'a'), (5, 'b'), (100, 'c')")
        .await;
    // Pre-created targets, every mode and method.
    for engine in ["InnoDB", "MyISAM"] {
        for (method, mode) in [
            ("load_data", WriteMode::Append),
            ("insert", WriteMode::Append),
            ("load_data", WriteMode::Upsert),
            ("insert", WriteMode::Upsert),
            ("load_data", WriteMode::Overwrite),
        ] {
            dst.exec("DROP TABLE IF EXISTS ai").await;
            dst.exec(&format!(
                "CREATE TABLE ai (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, v varchar(10)) ENGINE={engine}"
            ))
            .await;
            copy(
                &source(&src.url(), json!({})),
                &sink(&dst.url(), json!({ "method": method }), mode, true),
            )
            .await
            .unwrap();
            dst.exec("INSERT INTO ai (v) VALUES ('new')").await;
            let ids: Vec<i32> = dst.query("SELECT id FROM ai ORDER BY id").await;
            assert_eq!(ids, vec![1, 5, 100, 101], "{engine} {method} {mode:?}");
            // Overwrite loads a MyISAM target's stage as InnoDB and converts it back.
            let kept: Vec<(String, String)> = dst
                .query("SELECT ENGINE, TABLE_COMMENT FROM information_schema.tables WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'ai'")
                .await;
            assert_eq!(
                kept,
                vec![(engine.to_string(), String::new())],
                "{method} {mode:?}"
            );
        }
    }
    // A target created from a MySQL source keeps AUTO_INCREMENT.
    dst.exec("DROP TABLE ai").await;
    copy(
        &same_engine_source(&src.url(), json!({})),
        &sink(&dst.url(), json!({}), WriteMode::Append, true),
    )
    .await
    .unwrap();
    dst.exec("INSERT INTO ai (v) VALUES ('new')").await;
    let ids: Vec<i32> = dst.query("SELECT id FROM ai ORDER BY id").await;
    assert_eq!(ids, vec![1, 5, 100, 101]);
    src.drop_db().await;
    dst.drop_db().await;
}

/// Everything `SHOW CREATE TABLE` says about a table but its AUTO_INCREMENT counter.
async fn table_shape(
    db: &TestDb,
    table: &str,
) -> (Vec<Vec<Option<String>>>, Vec<(String, String)>) {
    type Col = (
        String,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
    );
    let cols: Vec<Col> = db
        .query(&format!(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLLATION_NAME, EXTRA, GENERATION_EXPRESSION \
             FROM information_schema.columns WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' \
             ORDER BY ORDINAL_POSITION"
        ))
        .await;
    let cols = cols
        .into_iter()
        .map(|(a, b, c, d, e, f)| vec![Some(a), Some(b), Some(c), d, Some(e), f])
        .collect();
    let t: Vec<(String, String)> = db
        .query(&format!(
            "SELECT ENGINE, TABLE_COLLATION FROM information_schema.tables \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
        ))
        .await;
    (cols, t)
}

#[tokio::test]
async fn mysql_same_engine_copy_keeps_zero_dates_collations_engine_and_generated_columns() {
    let src = TestDb::new("same_src").await;
    src.exec(
        "CREATE TABLE z (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         name varchar(20) COLLATE latin1_swedish_ci NOT NULL, tag varchar(10), \
         d date NOT NULL, dt datetime(3) NOT NULL, ts timestamp NOT NULL DEFAULT '2000-01-01 00:00:00', \
         dn date, twice int AS (id * 2) VIRTUAL, label varchar(40) AS (concat(name, '/', d)) STORED \
         ) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
    )
    .await;
    src.exec(
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'; \
         INSERT INTO z (id, name, tag, d, dt, ts, dn) VALUES \
         (1, 'été', 'A', '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '2024-00-10'), \
         (2, 'Zoë', 'b', '2024-05-00', '2024-00-00 10:11:12.345', '2024-01-01 00:00:00', NULL), \
         (3, 'plain', NULL, '1999-12-31', '1999-12-31 23:59:59.999', '1999-12-31 23:59:59', '0000-00-00')",
    )
    .await;
    for (method, mode) in [
        ("load_data", WriteMode::Append),
        ("insert", WriteMode::Append),
        ("load_data", WriteMode::Overwrite),
        ("load_data", WriteMode::Upsert),
    ] {
        let dst = TestDb::new("same_dst").await;
        copy(
            &same_engine_source(&src.url(), json!({})),
            &sink(&dst.url(), json!({ "method": method }), mode, true),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {mode:?}: {e}"));
        assert_eq!(
            table_shape(&dst, "z").await,
            table_shape(&src, "z").await,
            "{method} {mode:?}"
        );
        assert_rows_eq(&dst.rows("z", "id").await, &src.rows("z", "id").await);
        // Case-insensitive, like the source: 'ZOË' finds 'Zoë'.
        let found: Vec<i32> = dst.query("SELECT id FROM z WHERE name = 'ZOË'").await;
        assert_eq!(found, vec![2], "{method} {mode:?}");
        // (Column defaults are not copied: ts is given.)
        dst.exec(
            "INSERT INTO z (name, d, dt, ts) VALUES ('new', '2024-01-01', '2024-01-01', '2024-01-01')",
        )
        .await;
        let next: Vec<i32> = dst.query("SELECT MAX(id) FROM z").await;
        assert_eq!(next, vec![4], "{method} {mode:?}");
        dst.drop_db().await;
    }

    // Another engine's target gets NULL (nullable columns) or an error instead.
    let other = TestDb::new("same_err").await;
    let e = copy(
        &source(&src.url(), json!({ "zero_dates": "error" })),
        &sink(&other.url(), json!({}), WriteMode::Append, true),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("zero date"), "{e}");
    other.drop_db().await;
    let tables = source(&src.url(), json!({})).tables().await.unwrap();
    let d = tables[0].schema.arrow.field_with_name("d").unwrap();
    assert!(d.is_nullable());
    assert!(d.metadata().keys().all(|k| !k.starts_with("sluice.mysql.")));
    src.drop_db().await;
}

#[tokio::test]
async fn mysql_a_non_transactional_engine_is_applied_when_the_load_finishes() {
    let src = TestDb::new("eng_src").await;
    let dst = TestDb::new("eng_dst").await;
    src.exec("CREATE TABLE m (id int PRIMARY KEY, v varchar(10)) ENGINE=Aria")
        .await;
    src.exec("INSERT INTO m VALUES (1, 'a'), (2, 'b')").await;
    let engine = |db: &TestDb| {
        let name = db.name.clone();
        async move {
            let mut c = admin().await;
            let r: Vec<(String, String)> = c
                .exec(
                    "SELECT ENGINE, TABLE_COMMENT FROM information_schema.tables WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'm'",
                    (name,),
                )
                .await
                .unwrap();
            c.disconnect().await.unwrap();
            r
        }
    };
    // A copy stopped before the table finished: loaded as InnoDB, marked.
    let s = same_engine_source(&src.url(), json!({}));
    let k = sink(&dst.url(), json!({}), WriteMode::Append, true);
    let tables = s.tables().await.unwrap();
    let splits = s.splits(&tables[0]).await.unwrap();
    let plan = TablePlan {
        target: TableId::new(["m"]),
        schema: tables[0].schema.clone(),
        splits: splits.len(),
    };
    k.prepare(std::slice::from_ref(&plan)).await.unwrap();
    let (tx, mut rx) = mpsc::channel(10);
    s.read(
        splits[0].clone(),
        None,
        BatchSender::new(tx, CancellationToken::new()),
    )
    .await
    .unwrap();
    let mut w = k.open(&plan, &splits[0]).await.unwrap();
    let mut last = None;
    while let Ok(b) = rx.try_recv().map(crate::into_batch) {
        w.write(b.data).await.unwrap();
        last = Some(b.position);
    }
    w.commit(&last.unwrap()).await.unwrap();
    s.close().await.unwrap();
    let e = engine(&dst).await;
    assert_eq!(e[0].0, "InnoDB");
    assert!(e[0].1.contains("ENGINE=Aria"), "{e:?}");
    // The resumed copy (here: a new sink) finds the mark and converts at the end.
    copy(
        &same_engine_source(&src.url(), json!({})),
        &sink(&dst.url(), json!({}), WriteMode::Upsert, true),
    )
    .await
    .unwrap();
    assert_eq!(
        engine(&dst).await,
        vec![("Aria".to_string(), String::new())]
    );
    assert_eq!(dst.rows("m", "id").await, src.rows("m", "id").await);
    // Finishing again changes nothing.
    copy(
        &same_engine_source(&src.url(), json!({})),
        &sink(&dst.url(), json!({}), WriteMode::Upsert, true),
    )
    .await
    .unwrap();
    assert_eq!(
        engine(&dst).await,
        vec![("Aria".to_string(), String::new())]
    );
    src.drop_db().await;
    dst.drop_db().await;
}
