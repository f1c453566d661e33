//! Issue 9, case 11 seen from verify: a PostgreSQL source table in an inheritance tree is
//! compared with the rows the copy reads from it — its own rows when its children are copied
//! too (`FROM ONLY`), its own and those of the children not copied on their own (`tableoid`
//! condition) — in counts, checksums, row reads and repair. It used to be read with all its
//! children: the children's rows showed as missing in the parent, and `--repair` inserted
//! them there.

use std::collections::BTreeSet;
use std::path::Path;

use super::fidelity::run;
use super::support::{PgDb, psql};
use super::{expect_status, job, verify};

/// `city` holds 2,700 rows of its own (ids 1..3000 but the multiples of 10); `capital` (100
/// rows, ids 10..1000) and `village` (50 rows, ids 1010..1500) inherit from it, each with a
/// primary key of its own, their keys interleaved with the parent's.
fn tree() -> PgDb {
    let db = PgDb::new();
    psql(
        &db.0,
        "CREATE TABLE city (id int PRIMARY KEY, name text);
         CREATE TABLE capital (state text, PRIMARY KEY (id)) INHERITS (city);
         CREATE TABLE village (pop int, PRIMARY KEY (id)) INHERITS (city);
         INSERT INTO city SELECT g, 'c' || g FROM generate_series(1, 3000) g WHERE g % 10 <> 0;
         INSERT INTO capital SELECT g * 10, 'k' || g, 's' || g FROM generate_series(1, 100) g;
         INSERT INTO village SELECT g * 10, 'v' || g, g FROM generate_series(101, 150) g;
         ANALYZE;",
    );
    db
}

/// `(source table, key, kind, columns)` of every reported row.
type Found = BTreeSet<(String, i64, String, String)>;

fn row(t: &str, k: i64, kind: &str, cols: &str) -> (String, i64, String, String) {
    (format!("public.{t}"), k, kind.into(), cols.into())
}

/// Runs `verify --format json`, checks the exit status, returns the document and the
/// differences of every table.
fn verify_all(job: &Path, status: i32) -> (serde_json::Value, Found) {
    let o = verify(job, &["--format", "json", "--max-diffs", "10000"]);
    expect_status(&o, status);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    let mut found = Found::new();
    for t in doc["tables"].as_array().expect("tables") {
        for d in t["diffs"].as_array().expect("diffs") {
            let cols: Vec<&str> = d["columns"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
                .unwrap_or_default();
            found.insert((
                t["source"].as_str().expect("source").to_string(),
                d["key"].as_i64().expect("key"),
                d["kind"].as_str().expect("kind").to_string(),
                cols.join(","),
            ));
        }
    }
    (doc, found)
}

/// `source table → (source rows, target rows)` of a report.
fn counts(doc: &serde_json::Value) -> BTreeSet<(String, u64, u64)> {
    doc["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["source"].as_str().expect("source").to_string(),
                t["source_rows"].as_u64().expect("source_rows"),
                t["target_rows"].as_u64().expect("target_rows"),
            )
        })
        .collect()
}

/// `count(*)` and `count(DISTINCT id)` of each target table (`FROM ONLY`: its own rows).
fn target_rows(db: &PgDb, tables: &[&str]) -> Vec<(String, String)> {
    tables
        .iter()
        .map(|t| {
            let n = psql(
                &db.0,
                &format!("SELECT count(*) || '/' || count(DISTINCT id) FROM ONLY {t}"),
            );
            (t.to_string(), n.trim().to_string())
        })
        .collect()
}

/// Copies the tree with `tables` into a new PostgreSQL database, checks that verify finds
/// it identical with `expect` rows per table, and returns the target and the job file.
fn copy(
    src: &PgDb,
    dir: &Path,
    tables: &str,
    expect: &[(&str, u64)],
) -> (PgDb, std::path::PathBuf) {
    let dst = PgDb::new();
    let job = job(
        dir,
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = {tables}",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    run(&job);
    let (doc, found) = verify_all(&job, 0);
    assert_eq!(found, Found::new(), "{doc}");
    let want: BTreeSet<(String, u64, u64)> = expect
        .iter()
        .map(|(t, n)| (format!("public.{t}"), *n, *n))
        .collect();
    assert_eq!(counts(&doc), want, "{doc}");
    (dst, job)
}

/// `tables = ["public.*"]`: every table is compared with its own rows. Differences in the
/// parent and in each child are found in that table only, and repaired without a child's
/// row landing in the parent.
#[test]
fn glob_copy_of_an_inheritance_tree_verifies_each_table_with_its_own_rows() {
    let src = tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let (dst, job) = copy(
        &src,
        dir.path(),
        "[\"public.*\"]",
        &[("city", 2700), ("capital", 100), ("village", 50)],
    );
    psql(
        &dst.0,
        "DELETE FROM city WHERE id = 7; UPDATE city SET name = 'x' WHERE id = 8;
         DELETE FROM capital WHERE id = 20;
         INSERT INTO village (id, name, pop) VALUES (1505, 'extra', 1)",
    );
    psql(&src.0, "UPDATE village SET pop = -1 WHERE id = 1010");
    let (doc, found) = verify_all(&job, 4);
    let want: Found = [
        row("city", 7, "missing", ""),
        row("city", 8, "changed", "name"),
        row("capital", 20, "missing", ""),
        row("village", 1010, "changed", "pop"),
        row("village", 1505, "extra", ""),
    ]
    .into();
    assert_eq!(found, want, "{doc}");

    expect_status(&verify(&job, &["--repair"]), 0);
    verify_all(&job, 0);
    assert_eq!(
        target_rows(&dst, &["city", "capital", "village"]),
        [
            ("city".into(), "2700/2700".into()),
            ("capital".into(), "100/100".into()),
            ("village".into(), "50/50".into()),
        ]
    );
}

/// `tables = ["public.city"]`: the parent alone takes its children's rows, and verify
/// compares them all with the target `city`.
#[test]
fn parent_alone_verifies_with_its_childrens_rows() {
    let src = tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let (dst, job) = copy(&src, dir.path(), "[\"public.city\"]", &[("city", 2850)]);
    psql(
        &dst.0,
        "DELETE FROM city WHERE id = 20; UPDATE city SET name = 'x' WHERE id = 1010",
    );
    psql(&src.0, "UPDATE capital SET name = 'moved' WHERE id = 30");
    let (doc, found) = verify_all(&job, 4);
    let want: Found = [
        row("city", 20, "missing", ""),
        row("city", 30, "changed", "name"),
        row("city", 1010, "changed", "name"),
    ]
    .into();
    assert_eq!(found, want, "{doc}");

    expect_status(&verify(&job, &["--repair"]), 0);
    verify_all(&job, 0);
    assert_eq!(
        target_rows(&dst, &["city"]),
        [("city".into(), "2850/2850".into())]
    );
}

/// `tables = ["public.city", "public.village"]`: `city` is compared with its own rows and
/// `capital`'s (read with a `tableoid` condition), `village` with its own. A village key
/// written into the target `city` is extra there, not a match.
#[test]
fn parent_with_one_child_verifies_the_other_childs_rows_in_the_parent() {
    let src = tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let (dst, job) = copy(
        &src,
        dir.path(),
        "[\"public.city\", \"public.village\"]",
        &[("city", 2800), ("village", 50)],
    );
    psql(
        &dst.0,
        "DELETE FROM city WHERE id = 20; INSERT INTO city VALUES (1030, 'v103')",
    );
    psql(
        &src.0,
        "UPDATE capital SET name = 'moved' WHERE id = 40; UPDATE village SET pop = -1 WHERE id = 1020",
    );
    let (doc, found) = verify_all(&job, 4);
    let want: Found = [
        row("city", 20, "missing", ""),
        row("city", 40, "changed", "name"),
        row("city", 1030, "extra", ""),
        row("village", 1020, "changed", "pop"),
    ]
    .into();
    assert_eq!(found, want, "{doc}");

    expect_status(&verify(&job, &["--repair"]), 0);
    verify_all(&job, 0);
    assert_eq!(
        target_rows(&dst, &["city", "village"]),
        [
            ("city".into(), "2800/2800".into()),
            ("village".into(), "50/50".into()),
        ]
    );
    assert_eq!(
        psql(&dst.0, "SELECT count(*) FROM city WHERE id = 1030").trim(),
        "0"
    );
}

/// Small tables and keyless children (`INHERITS` does not copy a primary key): the chunk
/// checksums of a small parent and the whole-table checksum of a keyless parent read the
/// same rows as the copy. `exclude` leaves `capital` to its parent (a `tableoid` condition).
#[test]
fn small_and_keyless_tables_in_an_inheritance_tree_verify_with_the_copys_rows() {
    let src = PgDb::new();
    psql(
        &src.0,
        "CREATE TABLE city (id int PRIMARY KEY, name text);
         CREATE TABLE capital (state text, PRIMARY KEY (id)) INHERITS (city);
         CREATE TABLE village (pop int) INHERITS (city);
         CREATE TABLE log (at int, msg text);
         CREATE TABLE log_old () INHERITS (log);
         INSERT INTO city SELECT g * 2 - 1, 'c' || g FROM generate_series(1, 500) g;
         INSERT INTO capital SELECT g * 4, 'k' || g, 's' FROM generate_series(1, 20) g;
         INSERT INTO village SELECT g * 4 + 2, 'v' || g, g FROM generate_series(1, 10) g;
         INSERT INTO log SELECT g, 'm' || g FROM generate_series(1, 40) g;
         INSERT INTO log_old SELECT g, 'o' || g FROM generate_series(1, 25) g;
         ANALYZE;",
    );
    let dst = PgDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let job = job(
        dir.path(),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.*\"]\nexclude = [\"public.capital\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    run(&job);
    let (doc, found) = verify_all(&job, 0);
    assert_eq!(found, Found::new(), "{doc}");
    let want: BTreeSet<(String, u64, u64)> =
        [("city", 520), ("log", 40), ("log_old", 25), ("village", 10)]
            .iter()
            .map(|(t, n)| (format!("public.{t}"), *n, *n))
            .collect();
    assert_eq!(counts(&doc), want, "{doc}");

    psql(
        &dst.0,
        "DELETE FROM city WHERE id IN (3, 8); INSERT INTO city VALUES (6, 'v1');
         INSERT INTO village VALUES (1000, 'v', 1); DELETE FROM log WHERE at = 5",
    );
    let (doc, found) = verify_all(&job, 4);
    let want: Found = [
        row("city", 3, "missing", ""),
        row("city", 6, "extra", ""),
        row("city", 8, "missing", ""),
    ]
    .into();
    assert_eq!(found, want, "{doc}");
    let differs: BTreeSet<String> = doc["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter(|t| t["checksum_differs"] == true)
        .map(|t| t["source"].as_str().expect("source").to_string())
        .collect();
    assert_eq!(
        differs,
        ["public.log".to_string(), "public.village".to_string()].into(),
        "{doc}"
    );
}
