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
fn run(job: &Path) {
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
