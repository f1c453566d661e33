//! Issue 9, "verify must not be fooled": a keyless target holding extra copies of rows,
//! correct cross-engine copies of arrays, `char(n)` and intervals, and types verify cannot
//! compare as text (MariaDB geometry).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

use super::support::{MyDb, PgDb, mysql, psql};
use super::{expect_status, job, verify};

/// `(key, kind, columns, copies)` of every reported row; copies as `source/target`.
type Found = BTreeSet<(i64, String, String, String)>;

fn found_all(doc: &serde_json::Value) -> Found {
    doc["tables"][0]["diffs"]
        .as_array()
        .expect("diffs")
        .iter()
        .map(|d| {
            let cols: Vec<&str> = d["columns"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
                .unwrap_or_default();
            let copies = match &d["copies"] {
                serde_json::Value::Null => String::new(),
                c => format!("{}/{}", c["source"], c["target"]),
            };
            (
                d["key"].as_i64().expect("key"),
                d["kind"].as_str().expect("kind").to_string(),
                cols.join(","),
                copies,
            )
        })
        .collect()
}

/// Runs `verify --format json` listing every difference, checks the exit status.
fn verify_json(job: &Path, status: i32) -> serde_json::Value {
    let o = verify(job, &["--format", "json", "--max-diffs", "100000"]);
    expect_status(&o, status);
    serde_json::from_slice(&o.stdout).expect("JSON report")
}

fn row(k: i64, kind: &str, cols: &str, copies: &str) -> (i64, String, String, String) {
    (k, kind.into(), cols.into(), copies.into())
}

/// Runs `sluice run` on `job` (from its directory) and expects it to finish.
pub(super) fn run(job: &Path) {
    let o = Command::cargo_bin("sluice")
        .expect("binary")
        .current_dir(job.parent().expect("dir"))
        .args(["run", "--no-progress"])
        .arg(job)
        .output()
        .expect("run sluice");
    expect_status(&o, 0);
}

// ---- 18: a keyless target holding extra copies of rows ----

/// A PostgreSQL target without a primary key holds a second, identical copy of two rows and
/// a third of one: the counts and checksums differ, and the rows compared by key must say
/// so (they used to collapse into one row per key: "identical", exit 0). `--repair` leaves
/// one copy of each.
#[test]
fn keyless_postgres_target_with_duplicated_rows_differs_and_is_repaired() {
    let (src, dst) = (PgDb::new(), PgDb::new());
    psql(
        &src.0,
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int);
         INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 3000) g",
    );
    psql(
        &dst.0,
        "CREATE TABLE t (id int, v text, n int);
         INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 3000) g;
         INSERT INTO t SELECT * FROM t WHERE id IN (10, 30, 2999);
         INSERT INTO t SELECT * FROM t WHERE id = 30 LIMIT 1",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let doc = verify_json(&job, 4);
    assert_eq!(
        found_all(&doc),
        [
            row(10, "extra", "", "1/2"),
            row(30, "extra", "", "1/3"),
            row(2999, "extra", "", "1/2"),
        ]
        .into(),
        "{doc}"
    );
    assert_eq!(doc["tables"][0]["extra"], 4, "{doc}");
    assert_eq!(doc["tables"][0]["target_rows"], 3004, "{doc}");
    let text = String::from_utf8_lossy(&verify(&job, &[]).stdout).into_owned();
    assert!(
        text.contains(
            "public.t: id = 30: extra (3 rows with this key in the target, 1 in the source)"
        ),
        "{text}"
    );

    // One copy of a duplicated key differs from the source: still one difference per key.
    psql(
        &dst.0,
        "UPDATE t SET n = -1 WHERE ctid = (SELECT min(ctid) FROM t WHERE id = 10)",
    );
    let doc = verify_json(&job, 4);
    assert!(
        found_all(&doc).contains(&row(10, "extra", "", "1/2")),
        "{doc}"
    );

    let o = verify(&job, &["--repair", "--dry-run"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("DELETE FROM \"public\".\"t\" WHERE \"id\" IN (10, 30, 2999)"),
        "{text}"
    );
    expect_status(&verify(&job, &["--repair"]), 0);
    assert_eq!(
        psql(&dst.0, "SELECT count(*), count(DISTINCT id), sum(n) FROM t").trim(),
        "3000|3000|4501500"
    );
}

/// "A CSV loaded twice": a CSV copied by `sluice run` into SQLite and MariaDB tables (which
/// have no key: a CSV declares none), then every row once more, as a second load leaves
/// them. Verify reports every key as extra, with its copies, and `--repair` removes the
/// second copies. A key the CSV itself holds twice is compared as two rows.
#[test]
fn csv_loaded_twice_into_keyless_targets_differs_and_is_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("items.csv");
    let mut text = String::from("id,name,qty\n");
    for i in 1..=1500 {
        text.push_str(&format!("{i},name {i},{}\n", i % 7));
    }
    // The CSV itself holds key 77 twice.
    text.push_str("77,name 77,0\n");
    std::fs::write(&csv, text).expect("write csv");
    let source = format!("type = \"csv\"\npath = \"{}\"", csv.display());
    let all_extra = |doc: &serde_json::Value| {
        let got = found_all(doc);
        let want: Found = (1..=1500)
            .map(|k| {
                let copies = if k == 77 { "2/4" } else { "1/2" };
                row(k, "extra", "", copies)
            })
            .collect();
        assert_eq!(got, want, "{doc}");
        assert_eq!(doc["tables"][0]["extra"], 1501, "{doc}");
    };

    let db = dir.path().join("copy.db");
    let job_sqlite = {
        let d = dir.path().join("sqlite");
        std::fs::create_dir_all(&d).expect("dir");
        job(
            &d,
            &source,
            &format!("type = \"sqlite\"\nurl = \"sqlite://{}\"", db.display()),
        )
    };
    run(&job_sqlite);
    expect_status(&verify(&job_sqlite, &[]), 0);
    rusqlite::Connection::open(&db)
        .expect("open")
        .execute_batch("INSERT INTO items SELECT * FROM items")
        .expect("second load");
    all_extra(&verify_json(&job_sqlite, 4));
    expect_status(&verify(&job_sqlite, &["--repair"]), 0);
    let n: i64 = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1501);

    let my = MyDb::new();
    let job_my = {
        let d = dir.path().join("mysql");
        std::fs::create_dir_all(&d).expect("dir");
        job(
            &d,
            &source,
            &format!("type = \"mysql\"\nurl = \"{}\"", my.url()),
        )
    };
    run(&job_my);
    expect_status(&verify(&job_my, &[]), 0);
    mysql(&my.0, "INSERT INTO items SELECT * FROM items");
    all_extra(&verify_json(&job_my, 4));
    expect_status(&verify(&job_my, &["--repair"]), 0);
    assert_eq!(
        mysql(&my.0, "SELECT count(*), count(DISTINCT id) FROM items").trim(),
        "1501\t1500"
    );
}

// ---- 19: correct cross-engine copies of arrays, char(n), JSON and intervals ----

/// `(key, kind, columns)` of every reported row of table `i`.
fn diffs_of(doc: &serde_json::Value, i: usize) -> BTreeSet<(i64, String, String)> {
    doc["tables"][i]["diffs"]
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

fn want(rows: &[(i64, &str, &str)]) -> BTreeSet<(i64, String, String)> {
    rows.iter()
        .map(|(k, kind, c)| (*k, kind.to_string(), c.to_string()))
        .collect()
}

/// PostgreSQL `arr`: blank-padded `char(n)`, `json` as written (compact), and arrays of
/// every element kind, with NULL elements, empty arrays and text that looks like syntax.
fn pg_arrays(db: &PgDb, rows: i64) {
    psql(
        &db.0,
        &format!(
            r#"CREATE TABLE arr (id int PRIMARY KEY, code char(6), u uuid, j json, jb jsonb,
             tags text[], nums int[], fl float8[], re real[], amounts numeric(12,3)[], anum numeric[],
             flags bool[], at timestamptz[], days date[], tms time[], bins bytea[], ids uuid[],
             docs jsonb[], codes char(3)[]);
             INSERT INTO arr SELECT g, 'c' || (g % 97), md5(g::text)::uuid,
               ('{{"a":' || g || ',"b":[1,2.50]}}')::json, ('{{"a": ' || g || '}}')::jsonb,
               ARRAY['a' || g, NULL, 'x|y', 'q"u,o{{t}}e', 'é', '', 'NULL'], ARRAY[g, NULL, -g],
               ARRAY[g / 7.0, 1e20, 0.1, -0.0], ARRAY[g / 3.0::real],
               ARRAY[1.5, g * 1.125, NULL]::numeric(12,3)[], ARRAY[1.50, g]::numeric[],
               ARRAY[true, false, NULL],
               ARRAY[timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'],
               ARRAY[date '2024-01-01' + g, NULL], ARRAY[time '10:00:00.5'],
               ARRAY['\x00ff'::bytea, ''::bytea], ARRAY[md5(g::text)::uuid],
               ARRAY['{{"k": 1.50}}'::jsonb, 'null'::jsonb, NULL], ARRAY['ab'::char(3)]
             FROM generate_series(1, {rows}) g;
             INSERT INTO arr (id) VALUES ({rows} + 1000);
             INSERT INTO arr (id, code, tags, nums) VALUES ({rows} + 1001, '', '{{}}', '{{}}')"#
        ),
    );
}

/// A correct PostgreSQL → MariaDB copy by `sluice run` of `char(n)` (into `longtext`, padding
/// kept), `json` and arrays (into JSON arrays) verifies identical: it used to report every
/// row changed. Real differences in those columns are still found (trailing spaces of a
/// `char(n)` value are not one), and `--repair` writes arrays MariaDB accepts.
#[test]
fn postgres_arrays_char_and_json_to_mariadb_verify_identical() {
    let (src, dst) = (PgDb::new(), MyDb::new());
    pg_arrays(&src, 3000);
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.arr\"]",
            src.url()
        ),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntable_map = {{ \"public.arr\" = \"arr\" }}",
            dst.url()
        ),
    );
    run(&job);
    let doc = verify_json(&job, 0);
    assert_eq!(doc["tables"][0]["target_rows"], 3002, "{doc}");

    mysql(
        &dst.0,
        r#"UPDATE arr SET tags = JSON_ARRAY('zz') WHERE id = 7;
           UPDATE arr SET code = 'c8x' WHERE id = 8;
           UPDATE arr SET code = CONCAT(code, '   ') WHERE id = 9;
           UPDATE arr SET ids = '["00000000000000000000000000000000"]' WHERE id = 10;
           UPDATE arr SET j = '{"a": 11, "b": [1, 2.50]}' WHERE id = 11;
           UPDATE arr SET fl = '[2,1e20,0.1,0]' WHERE id = 12;
           UPDATE arr SET codes = '["ab"]', amounts = '[1.50,15.750,null]' WHERE id = 14;
           DELETE FROM arr WHERE id = 13"#,
    );
    let doc = verify_json(&job, 4);
    assert_eq!(
        diffs_of(&doc, 0),
        want(&[
            (7, "changed", "tags"),
            (8, "changed", "code"),
            (10, "changed", "ids"),
            (11, "changed", "j"),
            (12, "changed", "fl"),
            (13, "missing", ""),
        ]),
        "{doc}"
    );
    expect_status(&verify(&job, &["--repair"]), 0);
}

/// PostgreSQL copied by `sluice run` into SQLite (arrays, `char(n)`, intervals and times)
/// and Parquet (the same but intervals, which the Parquet writer cannot hold) verifies
/// identical; differences in array and interval columns are found, and repaired in SQLite
/// (which used to refuse intervals and arrays).
#[test]
fn postgres_arrays_char_and_intervals_to_sqlite_and_parquet_verify_identical() {
    let src = PgDb::new();
    pg_arrays(&src, 2000);
    psql(
        &src.0,
        "CREATE TABLE spans (id int PRIMARY KEY, d interval, t time);
         INSERT INTO spans SELECT g, make_interval(0, g % 13 - 6, 0, g % 40 - 20, g % 25 - 12, \
           g % 60, (g % 1000) / 7.0), time '00:00' + g * interval '1.5 s' \
         FROM generate_series(1, 1500) g;
         INSERT INTO spans VALUES (2000, NULL, NULL), (2001, '0', '00:00'), \
           (2002, '-1 day -02:00:00.000001', '23:59:59.999999'), (2003, '838:59:59', '24:00')",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("copy.db");
    let source = |tables: &str| {
        format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [{tables}]",
            src.url()
        )
    };
    let sqlite = {
        let d = dir.path().join("sqlite");
        std::fs::create_dir_all(&d).expect("dir");
        job(
            &d,
            &source("\"public.arr\", \"public.spans\""),
            &format!(
                "type = \"sqlite\"\nurl = \"sqlite://{}\"\n\
                 table_map = {{ \"public.arr\" = \"arr\", \"public.spans\" = \"spans\" }}",
                db.display()
            ),
        )
    };
    run(&sqlite);
    verify_json(&sqlite, 0);
    let parquet = {
        let d = dir.path().join("parquet");
        std::fs::create_dir_all(&d).expect("dir");
        job(
            &d,
            &source("\"public.arr\""),
            &format!(
                "type = \"parquet\"\npath = \"{}\"",
                d.join("lake").display()
            ),
        )
    };
    run(&parquet);
    verify_json(&parquet, 0);

    rusqlite::Connection::open(&db)
        .expect("open")
        .execute_batch(
            r#"UPDATE arr SET tags = '["zz"]' WHERE id = 7;
               UPDATE arr SET at = '[]' WHERE id = 8;
               UPDATE spans SET d = 'P1D' WHERE id = 5;
               UPDATE spans SET d = NULL WHERE id = 2002;
               UPDATE spans SET t = '00:00:00.000001' WHERE id = 2001"#,
        )
        .expect("change the copy");
    let doc = verify_json(&sqlite, 4);
    assert_eq!(
        diffs_of(&doc, 0),
        want(&[(7, "changed", "tags"), (8, "changed", "at")]),
        "{doc}"
    );
    assert_eq!(
        diffs_of(&doc, 1),
        want(&[
            (5, "changed", "d"),
            (2001, "changed", "t"),
            (2002, "changed", "d")
        ]),
        "{doc}"
    );
    expect_status(&verify(&sqlite, &["--repair"]), 0);

    psql(&src.0, "UPDATE arr SET nums = '{9}' WHERE id = 9");
    let doc = verify_json(&parquet, 4);
    assert_eq!(diffs_of(&doc, 0), want(&[(9, "changed", "nums")]), "{doc}");
}

// ---- 19 and 20: MariaDB TIME, JSON, BIT and GEOMETRY ----

/// A MariaDB table with `time` (read as an interval), `json` as written, `bit(n)` (read as
/// a number), `geometry` and `point` (read as their stored bytes) and `char(n)`. Copied by
/// `sluice run` into MariaDB, PostgreSQL and SQLite it verifies identical: verify used to
/// fail on the geometry column (`cast_as_char`), and to report the times, JSON and bits
/// of the PostgreSQL and SQLite copies changed. A changed geometry is found and repaired.
#[test]
fn mariadb_time_json_bit_and_geometry_verify_identical_everywhere() {
    let src = MyDb::new();
    mysql(
        &src.0,
        r#"SET SESSION max_recursive_iterations = 1000000;
           CREATE TABLE m (id int PRIMARY KEY, t time(6), js json, b bit(5), g geometry,
             p point, c char(5));
           INSERT INTO m WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s
             WHERE n < 2000) SELECT n, IF(n % 5 = 0, '-01:30:00.5', SEC_TO_TIME((n % 800) * 3601.25)),
             CONCAT('{"a":', n, ',"b":[1,2.50]}'), n % 32,
             ST_GeomFromText(CONCAT('LINESTRING(0 0, ', n, ' 2)')), POINT(n, 3),
             CONCAT('c', n % 100) FROM s;
           INSERT INTO m (id, t) VALUES (3000, NULL), (3001, '00:00:00')"#,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let source = format!(
        "type = \"mysql\"\nurl = \"{}\"\ntables = [\"m\"]",
        src.url()
    );
    let (my, pg) = (MyDb::new(), PgDb::new());
    let db = dir.path().join("copy.db");
    let mut jobs = Vec::new();
    for (name, sink) in [
        (
            "mariadb",
            format!("type = \"mysql\"\nurl = \"{}\"", my.url()),
        ),
        (
            "postgres",
            format!(
                "type = \"postgres\"\nurl = \"{}\"\ntable_map = {{ \"m\" = \"public.m\" }}",
                pg.url()
            ),
        ),
        (
            "sqlite",
            format!("type = \"sqlite\"\nurl = \"sqlite://{}\"", db.display()),
        ),
    ] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        let job = job(&d, &source, &sink);
        run(&job);
        let doc = verify_json(&job, 0);
        assert_eq!(doc["tables"][0]["target_rows"], 2002, "{name}: {doc}");
        jobs.push(job);
    }

    mysql(
        &my.0,
        "UPDATE m SET g = ST_GeomFromText('POINT(0 0)') WHERE id = 7;
         UPDATE m SET p = NULL WHERE id = 8",
    );
    let doc = verify_json(&jobs[0], 4);
    assert_eq!(
        diffs_of(&doc, 0),
        want(&[(7, "changed", "g"), (8, "changed", "p")]),
        "{doc}"
    );
    expect_status(&verify(&jobs[0], &["--repair"]), 0);
    assert_eq!(
        mysql(
            &my.0,
            "SELECT ST_AsText(g), ST_AsText(p) FROM m WHERE id IN (7, 8)"
        )
        .trim(),
        "LINESTRING(0 0,7 2)\tPOINT(7 3)\nLINESTRING(0 0,8 2)\tPOINT(8 3)"
    );

    psql(
        &pg.0,
        "UPDATE m SET t = t + interval '1 microsecond' WHERE id = 10;
         UPDATE m SET b = 31 WHERE id = 11",
    );
    let doc = verify_json(&jobs[1], 4);
    assert_eq!(
        diffs_of(&doc, 0),
        want(&[(10, "changed", "t"), (11, "changed", "b")]),
        "{doc}"
    );
    expect_status(&verify(&jobs[1], &["--repair"]), 0);
}

/// A table wider than PostgreSQL's 100 function arguments (40 nullable text columns, three
/// arguments each in the row text) verifies against SQLite: it used to fail with "cannot
/// pass more than 100 arguments to a function".
#[test]
fn wide_postgres_table_verifies_against_sqlite() {
    let src = PgDb::new();
    let cols: Vec<String> = (1..=40).map(|i| format!("c{i} text")).collect();
    let vals: Vec<String> = (1..=40).map(|i| format!("'v{i}-' || g")).collect();
    psql(
        &src.0,
        &format!(
            "CREATE TABLE wide (id int PRIMARY KEY, {});
             INSERT INTO wide SELECT g, {} FROM generate_series(1, 2000) g",
            cols.join(", "),
            vals.join(", ")
        ),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("copy.db");
    let job = job(
        dir.path(),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.wide\"]",
            src.url()
        ),
        &format!(
            "type = \"sqlite\"\nurl = \"sqlite://{}\"\ntable_map = {{ \"public.wide\" = \"wide\" }}",
            db.display()
        ),
    );
    run(&job);
    verify_json(&job, 0);
    psql(&src.0, "UPDATE wide SET c40 = NULL WHERE id = 1500");
    let doc = verify_json(&job, 4);
    assert_eq!(
        diffs_of(&doc, 0),
        want(&[(1500, "changed", "c40")]),
        "{doc}"
    );
}

// ---- 20: `[job] verify = true` for every pair `sluice verify` accepts ----

/// `[job] verify = true` on jobs into SQLite and Parquet (from a CSV): the run verifies
/// after the copy and finishes (it used to be refused as a config error, exit 2, although
/// `sluice verify` compares such sides).
#[test]
fn job_verify_true_accepts_sqlite_and_file_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("items.csv");
    let mut text = String::from("id,name\n");
    for i in 1..=500 {
        text.push_str(&format!("{i},name {i}\n"));
    }
    std::fs::write(&csv, text).expect("write csv");
    for (name, sink) in [
        (
            "sqlite",
            format!(
                "type = \"sqlite\"\nurl = \"sqlite://{}\"",
                dir.path().join("copy.db").display()
            ),
        ),
        (
            "parquet",
            format!(
                "type = \"parquet\"\npath = \"{}\"",
                dir.path().join("lake").display()
            ),
        ),
    ] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        let job = d.join("job.toml");
        std::fs::write(
            &job,
            format!(
                "[job]\nname = \"verify-after-{name}\"\nverify = true\n\n[source]\n\
                 type = \"csv\"\npath = \"{}\"\n\n[sink]\n{sink}\n",
                csv.display()
            ),
        )
        .expect("write job");
        let o = Command::cargo_bin("sluice")
            .expect("binary")
            .current_dir(&d)
            .args(["run", "--no-progress"])
            .arg(&job)
            .output()
            .expect("run sluice");
        expect_status(&o, 0);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("verify:") && out.contains("identical"),
            "{name}: {out}"
        );
    }
}
