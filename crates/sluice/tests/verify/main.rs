//! `sluice verify` against the real servers: identical tables verify identical (exit 0),
//! injected differences are found exactly (exit 4, JSON lists exactly those keys, kinds and
//! columns), across PostgreSQL↔PostgreSQL, MariaDB↔MariaDB and PostgreSQL↔MariaDB, and
//! `--repair` makes the target identical. Tables are named `Order Items` on purpose.
//! PostgreSQL and MariaDB come from `scripts/test-services.sh`; a server that is down fails
//! the test.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;

#[path = "../support/mod.rs"]
mod support;

/// Issue 9, "verify must not be fooled": duplicated rows, cross-engine forms, types verify
/// cannot compare.
mod fidelity;

/// Issue 9, case 11: PostgreSQL inheritance trees compared with the rows the copy read.
mod inheritance;

use support::{MyDb, PgDb, mysql, psql};

const ROWS: i64 = 20_000;

/// The test table in PostgreSQL, with ROWS rows covering the common types.
fn pg_table(db: &PgDb) {
    psql(
        &db.0,
        &format!(
            "CREATE TABLE \"Order Items\" (id bigint PRIMARY KEY, qty int, price numeric(12,3), \
             score double precision, flag boolean, name varchar(50), note text, payload bytea, \
             day date, at timestamp(6), at_tz timestamptz, doc jsonb);
             INSERT INTO \"Order Items\" SELECT g, g % 1000, (g * 1.125)::numeric(12,3), \
             g / 7.0::float8, g % 2 = 0, 'name ' || g, \
             CASE WHEN g % 10 = 0 THEN NULL WHEN g % 10 = 1 THEN '' ELSE 'note|' || g || ' é' END, \
             decode(lpad(to_hex(g), 8, '0'), 'hex'), date '2024-01-01' + (g % 365), \
             timestamp '2024-01-01 00:00:00' + g * interval '1.25 seconds', \
             timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', \
             jsonb_build_object('k', g) FROM generate_series(1, {ROWS}) g"
        ),
    );
}

/// The same table and rows in MariaDB.
fn my_table(db: &MyDb) {
    mysql(
        &db.0,
        &format!(
            "SET time_zone = '+00:00'; SET SESSION max_recursive_iterations = 1000000;
             CREATE TABLE `Order Items` (id bigint PRIMARY KEY, qty int, price decimal(12,3), \
             score double, flag tinyint(1), name varchar(50), note text, payload blob, day date, \
             at datetime(6), at_tz timestamp(6) NULL, doc longtext);
             INSERT INTO `Order Items` WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL \
             SELECT g + 1 FROM s WHERE g < {ROWS}) SELECT g, g % 1000, g * 1.125, g / 7e0, \
             g % 2 = 0, CONCAT('name ', g), \
             CASE WHEN g % 10 = 0 THEN NULL WHEN g % 10 = 1 THEN '' \
             ELSE CONCAT('note|', g, ' é') END, UNHEX(LPAD(HEX(g), 8, '0')), \
             DATE_ADD('2024-01-01', INTERVAL g % 365 DAY), \
             TIMESTAMPADD(MICROSECOND, g * 1250000, '2024-01-01 00:00:00'), \
             TIMESTAMPADD(MINUTE, g, '2024-01-01 00:00:00'), CONCAT('{{\"k\": ', g, '}}') \
             FROM s"
        ),
    );
}

/// Differences injected into a target: 3 deleted, 2 extra, one column changed in 9 rows.
/// Returns what verify must report, as `(key, kind, columns)`.
fn inject(pg: Option<&PgDb>, my: Option<&MyDb>) -> BTreeSet<(i64, String, String)> {
    let t = if pg.is_some() {
        "\"Order Items\""
    } else {
        "`Order Items`"
    };
    let mut sql = vec![
        format!("DELETE FROM {t} WHERE id IN (5, 10000, 19999)"),
        format!("INSERT INTO {t} (id, qty, name) VALUES (20001, 1, 'x'), (25000, 2, NULL)"),
        format!("UPDATE {t} SET qty = qty + 1 WHERE id = 100"),
        format!("UPDATE {t} SET price = price + 0.001 WHERE id = 200"),
        format!("UPDATE {t} SET score = score * 1.0001 WHERE id = 300"),
        format!("UPDATE {t} SET note = NULL WHERE id = 401"),
        format!("UPDATE {t} SET name = 'Name 500' WHERE id = 500"),
        format!("UPDATE {t} SET day = NULL WHERE id = 600"),
        format!("UPDATE {t} SET at_tz = NULL WHERE id = 700"),
    ];
    if pg.is_some() {
        sql.push(format!("UPDATE {t} SET flag = NOT flag WHERE id = 800"));
        sql.push(format!(
            "UPDATE {t} SET payload = '\\x00'::bytea WHERE id = 900"
        ));
        sql.push(format!(
            "UPDATE {t} SET at = at + interval '1 microsecond' WHERE id = 1000"
        ));
    } else {
        sql.push(format!("UPDATE {t} SET flag = 1 - flag WHERE id = 800"));
        sql.push(format!("UPDATE {t} SET payload = X'00' WHERE id = 900"));
        sql.push(format!(
            "UPDATE {t} SET at = TIMESTAMPADD(MICROSECOND, 1, at) WHERE id = 1000"
        ));
    }
    let sql = sql.join(";\n");
    if let Some(db) = pg {
        psql(&db.0, &sql);
    }
    if let Some(db) = my {
        mysql(&db.0, &sql);
    }
    let mut want: BTreeSet<(i64, String, String)> = BTreeSet::new();
    for k in [5, 10000, 19999] {
        want.insert((k, "missing".into(), String::new()));
    }
    for k in [20001, 25000] {
        want.insert((k, "extra".into(), String::new()));
    }
    for (k, c) in [
        (100, "qty"),
        (200, "price"),
        (300, "score"),
        (401, "note"),
        (500, "name"),
        (600, "day"),
        (700, "at_tz"),
        (800, "flag"),
        (900, "payload"),
        (1000, "at"),
    ] {
        want.insert((k, "changed".into(), c.into()));
    }
    want
}

fn job(dir: &Path, source: &str, sink: &str) -> std::path::PathBuf {
    let p = dir.join("job.toml");
    std::fs::write(
        &p,
        format!("[job]\nname = \"verify-test\"\n\n[source]\n{source}\n\n[sink]\n{sink}\n"),
    )
    .expect("write job");
    p
}

fn verify(job: &Path, extra: &[&str]) -> Output {
    Command::cargo_bin("sluice")
        .expect("binary")
        .arg("verify")
        .arg(job)
        .args(extra)
        .output()
        .expect("run sluice")
}

/// Asserts the exit status of a run, showing its output otherwise.
fn expect_status(o: &Output, status: i32) {
    assert_eq!(
        o.status.code(),
        Some(status),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The `[source]` block reading `"Order Items"` from a PostgreSQL test database.
fn pg_items_source(db: &PgDb) -> String {
    format!(
        "type = \"postgres\"\nurl = \"{}\"\ntables = ['public.\"Order Items\"']",
        db.url()
    )
}

/// Runs `verify --format json`, checks the exit status, returns the document.
fn verify_json(job: &Path, status: i32) -> serde_json::Value {
    let o = verify(job, &["--format", "json", "--max-diffs", "1000"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(status),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

fn found(doc: &serde_json::Value) -> BTreeSet<(i64, String, String)> {
    let tables = doc["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 1, "{doc}");
    tables[0]["diffs"]
        .as_array()
        .expect("diffs")
        .iter()
        .map(|d| {
            let cols: Vec<&str> = d["columns"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
                .unwrap_or_default();
            (
                d["key"].as_i64().expect("key"),
                d["kind"].as_str().expect("kind").to_string(),
                cols.join(","),
            )
        })
        .collect()
}

fn check_counts(doc: &serde_json::Value, source: u64, target: u64) {
    let t = &doc["tables"][0];
    assert_eq!(t["source_rows"].as_u64(), Some(source), "{doc}");
    assert_eq!(t["target_rows"].as_u64(), Some(target), "{doc}");
}

#[test]
fn postgres_to_postgres_identical_differences_and_repair() {
    let (src, dst) = (PgDb::new(), PgDb::new());
    pg_table(&src);
    pg_table(&dst);
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &pg_items_source(&src),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let doc = verify_json(&job, 0);
    assert_eq!(doc["identical"], true, "{doc}");
    check_counts(&doc, ROWS as u64, ROWS as u64);

    let want = inject(Some(&dst), None);
    let doc = verify_json(&job, 4);
    assert_eq!(found(&doc), want, "{doc}");
    check_counts(&doc, ROWS as u64, ROWS as u64 - 1);

    // The text report lists the keys and the summary.
    let o = verify(&job, &[]);
    assert_eq!(o.status.code(), Some(4));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("public.\"Order Items\": id = 200: changed (price)"),
        "{text}"
    );

    // --dry-run shows the statements and changes nothing.
    let o = verify(&job, &["--repair", "--dry-run"]);
    assert_eq!(o.status.code(), Some(4));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("DELETE FROM \"public\".\"Order Items\" WHERE \"id\" IN (20001, 25000)"),
        "{text}"
    );
    assert!(
        text.contains("INSERT INTO \"public\".\"Order Items\""),
        "{text}"
    );
    assert_eq!(verify_json(&job, 4)["tables"][0]["missing"], 3);

    // --repair fixes the target and verifies again.
    let o = verify(&job, &["--repair"]);
    expect_status(&o, 0);
    let doc = verify_json(&job, 0);
    check_counts(&doc, ROWS as u64, ROWS as u64);
}

#[test]
fn mysql_to_mysql_identical_differences_and_repair() {
    let (src, dst) = (MyDb::new(), MyDb::new());
    my_table(&src);
    my_table(&dst);
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntables = ['\"Order Items\"']",
            src.url()
        ),
        &format!("type = \"mysql\"\nurl = \"{}\"", dst.url()),
    );
    let doc = verify_json(&job, 0);
    assert_eq!(doc["identical"], true, "{doc}");
    check_counts(&doc, ROWS as u64, ROWS as u64);

    let want = inject(None, Some(&dst));
    let doc = verify_json(&job, 4);
    assert_eq!(found(&doc), want, "{doc}");

    let o = verify(&job, &["--repair"]);
    expect_status(&o, 0);
    verify_json(&job, 0);
}

#[test]
fn postgres_to_mysql_same_canonical_rows() {
    let (src, dst) = (PgDb::new(), MyDb::new());
    pg_table(&src);
    my_table(&dst);
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &pg_items_source(&src),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntable_map = {{ 'public.\"Order Items\"' = '\"Order Items\"' }}",
            dst.url()
        ),
    );
    let doc = verify_json(&job, 0);
    assert_eq!(doc["identical"], true, "{doc}");
    check_counts(&doc, ROWS as u64, ROWS as u64);

    let want = inject(None, Some(&dst));
    let doc = verify_json(&job, 4);
    assert_eq!(found(&doc), want, "{doc}");

    // Repair across systems: MariaDB is written from PostgreSQL's values.
    let o = verify(&job, &["--repair"]);
    expect_status(&o, 0);
}

/// The cheaper hashed forms agree across systems: blank-padded `char(n)`, `NOT NULL`
/// columns, fixed-scale decimals and a latin1 column in MariaDB hash like PostgreSQL's
/// UTF-8 text; a change in the latin1 column is still found.
#[test]
fn postgres_to_mysql_char_latin1_and_not_null_columns() {
    let (src, dst) = (PgDb::new(), MyDb::new());
    psql(
        &src.0,
        "CREATE TABLE t (id int PRIMARY KEY, code char(6) NOT NULL, label varchar(20), \
         amount numeric(10,2) NOT NULL, day date NOT NULL);
         INSERT INTO t SELECT g, 'c' || (g % 97), CASE WHEN g % 5 = 0 THEN NULL \
         ELSE 'café ' || g END, g * 0.5, date '2020-02-29' + g FROM generate_series(1, 3000) g",
    );
    mysql(
        &dst.0,
        "SET SESSION max_recursive_iterations = 1000000;
         CREATE TABLE t (id int PRIMARY KEY, code char(6) NOT NULL, \
         label varchar(20) CHARACTER SET latin1, amount decimal(10,2) NOT NULL, \
         day date NOT NULL);
         INSERT INTO t WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s \
         WHERE g < 3000) SELECT g, CONCAT('c', g % 97), IF(g % 5 = 0, NULL, \
         CONCAT('café ', g)), g * 0.5, DATE_ADD('2020-02-29', INTERVAL g DAY) FROM s",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = ['public.t']",
            src.url()
        ),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntable_map = {{ 'public.t' = 't' }}",
            dst.url()
        ),
    );
    let doc = verify_json(&job, 0);
    assert_eq!(doc["identical"], true, "{doc}");
    // Every bucket agreed, so no row was read: the hashes matched, not just the rows.
    assert!(
        doc["tables"][0]["chunks_checked"].as_u64() > Some(1),
        "{doc}"
    );
    mysql(&dst.0, "UPDATE t SET label = 'cafe 7' WHERE id = 7");
    let doc = verify_json(&job, 4);
    let want: BTreeSet<(i64, String, String)> = [(7, "changed".into(), "label".into())].into();
    assert_eq!(found(&doc), want, "{doc}");

    // The same comparison without a job file.
    let o = Command::cargo_bin("sluice")
        .expect("binary")
        .args(["verify", "--source", &src.url(), "--target", &dst.url()])
        .args(["--table", "public.t=t", "--format", "json"])
        .output()
        .expect("run sluice");
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(found(&doc), want, "{doc}");
}

/// Verify on a source that is being written: a writer keeps changing rows 15000..15099 of
/// the source (which never reach the target). Every run finds the static differences, and
/// each of the moving rows — all changed before verify starts — as `changed` (qty) or
/// `changed_during_check`; no row that nobody touched is ever reported.
#[test]
fn source_written_during_verify_reports_only_real_or_moving_rows() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (src, dst) = (PgDb::new(), PgDb::new());
    pg_table(&src);
    pg_table(&dst);
    let want = inject(Some(&dst), None);
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &pg_items_source(&src),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let (stop, rounds) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let writer = {
        let (stop, rounds, db) = (stop.clone(), rounds.clone(), src.0.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = rounds.load(Ordering::Relaxed);
                psql(
                    &db,
                    &format!(
                        "UPDATE \"Order Items\" SET qty = qty + 1 WHERE id = {}",
                        15000 + r % 100
                    ),
                );
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while rounds.load(Ordering::Relaxed) < 100 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let moving: BTreeSet<i64> = (15000..15100).collect();
    for _ in 0..3 {
        let o = verify(&job, &["--format", "json", "--max-diffs", "1000"]);
        assert_eq!(
            o.status.code(),
            Some(4),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        let got = found(&doc);
        for w in &want {
            assert!(got.contains(w), "static difference {w:?} not found: {doc}");
        }
        let mut seen_moving = BTreeSet::new();
        for (k, kind, cols) in &got {
            if want.iter().any(|w| w.0 == *k) {
                continue;
            }
            assert!(
                moving.contains(k),
                "row {k} ({kind} {cols}) reported but nobody changed it: {doc}"
            );
            assert!(
                kind == "changed" && cols == "qty" || kind == "changed_during_check",
                "moving row {k} reported as {kind} ({cols}): {doc}"
            );
            seen_moving.insert(*k);
        }
        assert_eq!(
            seen_moving, moving,
            "every moving row differs from the target: {doc}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
}

/// Differences in every bucket (every 7th row gone from the target): all are found, read
/// many ranges per query.
#[test]
fn differences_in_every_bucket_are_all_found() {
    let (src, dst) = (PgDb::new(), MyDb::new());
    pg_table(&src);
    my_table(&dst);
    mysql(&dst.0, "DELETE FROM `Order Items` WHERE id % 7 = 0");
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &pg_items_source(&src),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntable_map = {{ 'public.\"Order Items\"' = '\"Order Items\"' }}",
            dst.url()
        ),
    );
    let o = verify(&job, &["--format", "json", "--max-diffs", "100000"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let want: BTreeSet<(i64, String, String)> = (1..=ROWS)
        .filter(|k| k % 7 == 0)
        .map(|k| (k, "missing".to_string(), String::new()))
        .collect();
    assert_eq!(found(&doc), want);
    check_counts(&doc, ROWS as u64, (ROWS - ROWS / 7) as u64);
}

/// A PostgreSQL target without parallel query is hashed in slices over two connections;
/// the differences are found all the same.
#[test]
fn postgres_without_parallel_query_is_sliced() {
    let (src, dst) = (PgDb::new(), PgDb::new());
    pg_table(&src);
    pg_table(&dst);
    psql(
        &dst.0,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET max_parallel_workers_per_gather = 0', \
         current_database()); END $$",
    );
    let want = inject(Some(&dst), None);
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &pg_items_source(&src),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let doc = verify_json(&job, 4);
    assert_eq!(found(&doc), want, "{doc}");
    check_counts(&doc, ROWS as u64, ROWS as u64 - 1);
    // One bucket query for the source, one per slice for the target.
    let o = verify(&job, &["--log-level", "debug"]);
    let log = String::from_utf8_lossy(&o.stderr);
    let queries = log.matches("SET enable_sort = off").count();
    assert!(queries > 2, "{queries} bucket queries:\n{log}");
}

/// Values PostgreSQL's own hashes treat alike are told apart: names swapped between two rows
/// of a bucket, NULL vs 0.0, numeric NaN vs Infinity vs -Infinity, bigints 2^32 apart, a
/// timestamp at infinity. The same on the canonical text path (forced by an interval
/// column), where ±infinity timestamps swapped between two columns used to drop out. Each
/// difference sits in a bucket of its own, so only its own hash can reveal it.
#[test]
fn values_postgres_hashes_alike_are_told_apart() {
    for text_path in [false, true] {
        let (src, dst) = (PgDb::new(), PgDb::new());
        let extra = if text_path { ", iv interval" } else { "" };
        for db in [&src, &dst] {
            psql(
                &db.0,
                &format!(
                    "CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL, f float8, n numeric, \
                     b bigint, ts timestamp, ts2 timestamp{extra});
                     INSERT INTO t (id, name, f, n, b, ts, ts2) SELECT g, 'name ' || g, g, g, g, \
                     timestamp '2024-01-01' + g * interval '1 second', \
                     timestamp '2024-01-01' FROM generate_series(1, 20000) g"
                ),
            );
        }
        psql(
            &src.0,
            "UPDATE t SET f = 0 WHERE id = 5000; UPDATE t SET n = 'NaN' WHERE id = 8000;
             UPDATE t SET n = 'Infinity' WHERE id = 11000; UPDATE t SET b = 1 WHERE id = 14000;
             UPDATE t SET ts = 'infinity', ts2 = '2024-01-01' WHERE id = 17000",
        );
        psql(
            &dst.0,
            "UPDATE t SET name = 'name 2001' WHERE id = 2000;
             UPDATE t SET name = 'name 2000' WHERE id = 2001;
             UPDATE t SET f = NULL WHERE id = 5000; UPDATE t SET n = 'Infinity' WHERE id = 8000;
             UPDATE t SET n = '-Infinity' WHERE id = 11000;
             UPDATE t SET b = 4294967296 WHERE id = 14000;
             UPDATE t SET ts = '2024-01-01', ts2 = 'infinity' WHERE id = 17000",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let job = job(
            dir.path(),
            &format!(
                "type = \"postgres\"\nurl = \"{}\"\ntables = ['public.t']",
                src.url()
            ),
            &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
        );
        let doc = verify_json(&job, 4);
        let want: BTreeSet<(i64, String, String)> = [
            (2000, "name"),
            (2001, "name"),
            (5000, "f"),
            (8000, "n"),
            (11000, "n"),
            (14000, "b"),
            (17000, "ts,ts2"),
        ]
        .into_iter()
        .map(|(k, c)| (k, "changed".to_string(), c.to_string()))
        .collect();
        assert_eq!(found(&doc), want, "text path: {text_path}: {doc}");
    }
}

#[test]
fn table_without_key_compares_count_and_checksum_only() {
    let (src, dst) = (PgDb::new(), PgDb::new());
    for db in [&src, &dst] {
        psql(
            &db.0,
            "CREATE TABLE log (at text, msg text);
             INSERT INTO log SELECT 'a' || g, 'm' || g FROM generate_series(1, 500) g",
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.log\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let doc = verify_json(&job, 0);
    assert_eq!(doc["tables"][0]["key"], serde_json::Value::Null, "{doc}");
    psql(&dst.0, "UPDATE log SET msg = 'x' WHERE at = 'a7'");
    let doc = verify_json(&job, 4);
    assert_eq!(doc["tables"][0]["checksum_differs"], true, "{doc}");
    let o = verify(&job, &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("no single integer key"), "{text}");
}

// ---- SQLite and files as verify sides (read locally, canonical form computed in Rust) ----

const LOCAL_ROWS: i64 = 5_000;

/// A SQLite database with `items`: LOCAL_ROWS rows of integers, doubles, text (NULL, empty,
/// `|`, non-ASCII) and dates.
fn sqlite_items(path: &Path) {
    let c = rusqlite::Connection::open(path).expect("open sqlite");
    c.execute_batch(&format!(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER, score REAL, name TEXT, \
         note TEXT, day DATE);
         WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {LOCAL_ROWS})
         INSERT INTO items SELECT g, g % 1000, g / 7.0, 'name ' || g,
           CASE WHEN g % 10 = 0 THEN NULL WHEN g % 10 = 1 THEN '' ELSE 'note|' || g || ' é' END,
           date('2024-01-01', '+' || (g % 365) || ' days') FROM s;"
    ))
    .expect("fill sqlite");
}

fn sqlite_exec(path: &Path, sql: &str) {
    rusqlite::Connection::open(path)
        .expect("open sqlite")
        .execute_batch(sql)
        .expect("sqlite statement");
}

fn sqlite_job(dir: &Path, db: &Path, sink: &str) -> std::path::PathBuf {
    job(
        dir,
        &format!(
            "type = \"sqlite\"\nurl = \"sqlite://{}\"\ntables = [\"items\"]",
            db.display()
        ),
        sink,
    )
}

#[test]
fn sqlite_to_parquet_copied_by_run_verifies_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("src.db");
    sqlite_items(&db);
    let out = dir.path().join("lake");
    let job = sqlite_job(
        dir.path(),
        &db,
        &format!("type = \"parquet\"\npath = \"{}\"", out.display()),
    );
    let o = Command::cargo_bin("sluice")
        .expect("binary")
        .current_dir(dir.path())
        .arg("run")
        .arg(&job)
        .output()
        .expect("run sluice");
    assert!(
        o.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc = verify_json(&job, 0);
    check_counts(&doc, LOCAL_ROWS as u64, LOCAL_ROWS as u64);
    assert_eq!(doc["tables"][0]["key"], "id", "{doc}");

    // The source moves on: the Parquet target now has one extra row and one changed row.
    sqlite_exec(
        &db,
        "DELETE FROM items WHERE id = 4321; UPDATE items SET note = 'x' WHERE id = 77",
    );
    let doc = verify_json(&job, 4);
    let want: BTreeSet<(i64, String, String)> = [
        (77, "changed".to_string(), "note".to_string()),
        (4321, "extra".to_string(), String::new()),
    ]
    .into_iter()
    .collect();
    assert_eq!(found(&doc), want);

    // Files cannot be repaired in place: a config error with a hint.
    let o = verify(&job, &["--repair"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--repair cannot write to a parquet target"),
        "{err}"
    );
    assert!(err.contains("  = help: "), "{err}");
}

#[test]
fn sqlite_to_sqlite_differences_found_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, dst) = (dir.path().join("src.db"), dir.path().join("dst.db"));
    sqlite_items(&src);
    std::fs::copy(&src, &dst).expect("copy db");
    // A column only the target has: verify ignores it, repair must leave it alone.
    sqlite_exec(
        &dst,
        "ALTER TABLE items ADD COLUMN extra TEXT DEFAULT 'default'; UPDATE items SET extra = 'mine'",
    );
    let job = sqlite_job(
        dir.path(),
        &src,
        &format!("type = \"sqlite\"\nurl = \"sqlite://{}\"", dst.display()),
    );
    let doc = verify_json(&job, 0);
    check_counts(&doc, LOCAL_ROWS as u64, LOCAL_ROWS as u64);

    sqlite_exec(
        &dst,
        "DELETE FROM items WHERE id IN (1, 2500, 5000);
         INSERT INTO items (id, qty, name) VALUES (5001, 1, 'x'), (9000, 2, NULL);
         UPDATE items SET qty = qty + 1 WHERE id = 100;
         UPDATE items SET score = score * 1.0001 WHERE id = 300;
         UPDATE items SET note = NULL WHERE id = 401;
         UPDATE items SET day = '2020-02-02' WHERE id = 600;",
    );
    let doc = verify_json(&job, 4);
    check_counts(&doc, LOCAL_ROWS as u64, LOCAL_ROWS as u64 - 1);
    let want: BTreeSet<(i64, String, String)> = [
        (1, "missing", ""),
        (2500, "missing", ""),
        (5000, "missing", ""),
        (5001, "extra", ""),
        (9000, "extra", ""),
        (100, "changed", "qty"),
        (300, "changed", "score"),
        (401, "changed", "note"),
        (600, "changed", "day"),
    ]
    .into_iter()
    .map(|(k, kind, c)| (k, kind.to_string(), c.to_string()))
    .collect();
    assert_eq!(found(&doc), want);

    // --repair --dry-run shows the statements and changes nothing; --repair fixes it.
    let o = verify(&job, &["--repair", "--dry-run"]);
    assert_eq!(o.status.code(), Some(4));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("DELETE FROM \"items\" WHERE \"id\" IN ("),
        "{text}"
    );
    assert!(text.contains("INSERT INTO \"items\""), "{text}");
    assert_eq!(verify_json(&job, 4)["tables"][0]["missing"], 3);
    let o = verify(&job, &["--repair"]);
    expect_status(&o, 0);
    let doc = verify_json(&job, 0);
    check_counts(&doc, LOCAL_ROWS as u64, LOCAL_ROWS as u64);
    let c = rusqlite::Connection::open(&dst).expect("open");
    let extra: Vec<(i64, String)> = c
        .prepare(
            "SELECT id, coalesce(extra, 'NULL') FROM items WHERE id IN (1, 100, 300) ORDER BY id",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    // Re-inserted row 1 gets the column default; updated rows keep their own value.
    assert_eq!(
        extra,
        [
            (1, "default".to_string()),
            (100, "mine".into()),
            (300, "mine".into())
        ]
    );
}

/// PostgreSQL copied into SQLite by `sluice run` verifies identical; differences injected
/// into the SQLite copy in columns of every type are repaired from PostgreSQL, written as the
/// SQLite sink writes them, and the copy verifies identical again.
#[test]
fn postgres_to_sqlite_repair_writes_values_as_the_sink_does() {
    let src = PgDb::new();
    pg_table(&src);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("copy.db");
    let job = job(
        dir.path(),
        &pg_items_source(&src),
        &format!(
            "type = \"sqlite\"\nurl = \"sqlite://{}\"\n\
             table_map = {{ 'public.\"Order Items\"' = '\"Order Items\"' }}",
            db.display()
        ),
    );
    let o = Command::cargo_bin("sluice")
        .expect("binary")
        .current_dir(dir.path())
        .args(["run", "--no-progress"])
        .arg(&job)
        .output()
        .expect("run sluice");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    verify_json(&job, 0);
    sqlite_exec(
        &db,
        "DELETE FROM \"Order Items\" WHERE id IN (5, 19999);
         INSERT INTO \"Order Items\" (id, qty) VALUES (30000, 1);
         UPDATE \"Order Items\" SET price = price + 1, flag = 1 - flag, payload = X'00', \
           at = '2000-01-01 00:00:00.000000', at_tz = NULL, doc = '{}' WHERE id = 100;
         UPDATE \"Order Items\" SET score = 0.5, note = 'x', day = '1999-12-31' WHERE id = 200;",
    );
    let doc = verify_json(&job, 4);
    assert_eq!(doc["tables"][0]["changed"], 2, "{doc}");
    let o = verify(&job, &["--repair"]);
    expect_status(&o, 0);
    let doc = verify_json(&job, 0);
    check_counts(&doc, ROWS as u64, ROWS as u64);
}

#[test]
fn sqlite_and_postgres_same_rows_verify_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("src.db");
    sqlite_items(&db);
    let pg = PgDb::new();
    psql(
        &pg.0,
        &format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, qty bigint, score double precision, \
             name text, note text, day date);
             INSERT INTO items SELECT g, g % 1000, g / 7.0::float8, 'name ' || g, \
             CASE WHEN g % 10 = 0 THEN NULL WHEN g % 10 = 1 THEN '' ELSE 'note|' || g || ' é' END, \
             date '2024-01-01' + (g % 365) FROM generate_series(1, {LOCAL_ROWS}) g"
        ),
    );
    let job = sqlite_job(
        dir.path(),
        &db,
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntable_map = {{ \"main.items\" = \"public.items\" }}",
            pg.url()
        ),
    );
    let doc = verify_json(&job, 0);
    check_counts(&doc, LOCAL_ROWS as u64, LOCAL_ROWS as u64);

    psql(
        &pg.0,
        "UPDATE items SET score = score + 1 WHERE id = 42; DELETE FROM items WHERE id = 43",
    );
    let doc = verify_json(&job, 4);
    let want: BTreeSet<(i64, String, String)> = [
        (42, "changed".to_string(), "score".to_string()),
        (43, "missing".to_string(), String::new()),
    ]
    .into_iter()
    .collect();
    assert_eq!(found(&doc), want);

    // A SQLite source repairs a PostgreSQL target.
    let o = verify(&job, &["--repair"]);
    expect_status(&o, 0);
}
