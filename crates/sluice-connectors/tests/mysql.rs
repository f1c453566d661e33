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
                while let Some(b) = rx.recv().await {
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

const TYPES_DDL: &str = "CREATE TABLE types (
    id int NOT NULL PRIMARY KEY,
    ti tinyint, tiu tinyint unsigned, si smallint, siu smallint unsigned,
    mi mediumint, miu mediumint unsigned, i int, iu int(10) unsigned,
    bi bigint, biu bigint unsigned, b1 tinyint(1),
    d1 decimal(65,30), d2 decimal(10,2), d3 decimal(38,0), d4 decimal(5,5),
    f float, dbl double,
    vc varchar(100), tx text, ch char(5), bl blob, vb varbinary(20),
    dt date, dtm datetime(6), dt0 datetime, ts timestamp(6) NULL, tm time(6), tm0 time, yr year,
    js json, en enum('a','b''c','d e'), st set('x','y','z'), bt bit(8), bt1 bit(1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

const TYPES_ROWS: &str = "INSERT INTO types VALUES
 (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0,
  '-99999999999999999999999999999999999.999999999999999999999999999999', -99999999.99,
  -99999999999999999999999999999999999999, -0.99999,
  -3.40282e38, -1.7976931348623157e308, '', '', '', '', '',
  '1000-01-01', '1000-01-01 00:00:00.000000', '1000-01-01 00:00:00', '1970-01-01 00:00:01.000000',
  '-838:59:59.000000', '-838:59:59', 1901, '[]', 'a', '', b'0', b'0'),
 (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807,
  18446744073709551615, 1,
  '99999999999999999999999999999999999.999999999999999999999999999999', 99999999.99,
  99999999999999999999999999999999999999, 0.99999,
  3.40282e38, 1.7976931348623157e308,
  CONCAT('emoji \\xF0\\x9F\\x98\\x80 😀 tab', CHAR(9), 'nl', CHAR(10), 'cr', CHAR(13), 'bs\\\\ nul', CHAR(0), 'end \\'q\\' \"dq\"'),
  REPEAT('long text ü ', 500), 'abcde', x'00FF000A09', x'00',
  '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59', '2038-01-19 03:14:07.999999',
  '838:59:59.000000', '838:59:59', 2155, '{\"a\": [1, 2.50, \"x\"],  \"b\": null, \"c\": \"😀\"}',
  'b''c', 'x,z', b'11111111', b'1'),
 (3, -1, 1, -1, 1, -1, 1, -1, 1, -1, 9223372036854775808, 2,
  '0.000000000000000000000000000001', 0.01, 1, 0.00001,
  -0e0, -0e0, 'x', 'y', 'z', 'w', 'v',
  '0001-01-01', '0001-01-01 00:00:00.000001', '2024-02-29 12:34:56', '2024-02-29 12:34:56.123456',
  '100:00:00.500000', '-00:00:01', 2000, '{\"n\":1.0000000000000001}', 'd e', 'x,y,z', b'10101010', b'0'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1.17549e-38, 2.2250738585072014e-308, 'a', 'b', 'c', 'd', 'e',
  '0000-00-00', '2024-00-10 00:00:00', '0000-00-00 00:00:00', NULL, '00:00:00', '00:00:00', 0, 'null', 'a', 'y', b'1', b'1')";

#[tokio::test]
async fn mysql_type_round_trip_keeps_types_and_values() {
    let src = TestDb::new("types_src").await;
    let dst = TestDb::new("types_dst").await;
    src.exec(TYPES_DDL).await;
    src.exec(&format!(
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'; {TYPES_ROWS}"
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
    while let Ok(b) = rx.try_recv() {
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
    w.write(rx.recv().await.unwrap().data).await.unwrap();
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
    while let Some(b) = rx.recv().await {
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
    let first = rx.recv().await.unwrap();
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
    while let Ok(b) = rx.try_recv() {
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
