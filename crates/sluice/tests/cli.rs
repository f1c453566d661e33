//! End-to-end tests of the `sluice` binary: real files, real SQLite databases, real signals.
//! Each test works in its own temporary directory (job files, data, state).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn write(&self, p: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("sluice").unwrap();
        c.current_dir(self.dir.path())
            .env_remove("SLUICE_STATE")
            .env_remove("SLUICE_LOG");
        c
    }
    fn sluice(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

const ORDERS: &str = "id,name,amount\n1,ant,1.50\n2,bee,2.25\n3,\"cat, the\",\n";

fn csv_to(env: &Env, sink: &str) -> PathBuf {
    env.write("in/orders.csv", ORDERS);
    env.write(
        "job.toml",
        format!(
            "[job]\nname = \"t\"\n\n[source]\ntype = \"csv\"\npath = \"in\"\n\n[sink]\n{sink}\n"
        ),
    )
}

fn sqlite_rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare(sql).unwrap();
    let n = st.column_count();
    st.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => "NULL".to_string(),
                rusqlite::types::ValueRef::Integer(x) => x.to_string(),
                rusqlite::types::ValueRef::Real(x) => x.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
            })
            .collect())
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn misspelt_key_reports_file_line_column_and_suggestion() {
    let env = Env::new();
    env.write("in/orders.csv", ORDERS);
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n\n[source]\ntype = \"csv\"\npath = \"in\"\ndelimter = \";\"\n\n[sink]\ntype = \"parquet\"\npath = \"out\"\n",
    );
    let o = env.sluice(&["validate", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("job.toml:7:1: unknown key `delimter` in [source]"),
        "{e}"
    );
    assert!(e.contains("did you mean `delimiter`?"), "{e}");
    // Nothing ran, nothing was written.
    assert!(!env.path("out").exists());
    assert!(!env.path(".sluice").exists());
}

#[test]
fn misspelt_sink_key_suggests_shared_keys_too() {
    let env = Env::new();
    csv_to(
        &env,
        "type = \"parquet\"\npath = \"out\"\nwirte = \"append\"",
    );
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("did you mean `write`?"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unknown_connector_type_lists_accepted_types() {
    let env = Env::new();
    csv_to(&env, "type = \"parquett\"\npath = \"out\"");
    let o = env.sluice(&["validate", "job.toml"]);
    assert_eq!(code(&o), 2);
    let e = stderr(&o);
    assert!(
        e.contains("job.toml:9:8: unknown value `parquett` in [sink]"),
        "{e}"
    );
    assert!(e.contains("did you mean `parquet`?"), "{e}");
    assert!(e.contains("sqlite, csv, jsonl, parquet"), "{e}");
}

#[test]
fn malformed_toml_and_missing_job_file_exit_2() {
    let env = Env::new();
    env.write("job.toml", "[job\nname = 1\n");
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("job.toml:1:"), "{}", stderr(&o));
    let o = env.sluice(&["run", "nope.toml"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("cannot read the job file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_starts_with_what_sluice_does() {
    let env = Env::new();
    for flag in ["--help", "-h"] {
        let o = env.sluice(&[flag]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.starts_with("Sluice copies data between databases and files"),
            "{flag}: {out}"
        );
        assert!(!out.contains("wiring"), "{flag}: {out}");
        assert!(out.contains("Exit status: 0 done"), "{flag}: {out}");
    }
}

#[test]
fn verify_without_job_file_checks_its_arguments() {
    let env = Env::new();
    // Neither a job file nor --source.
    let o = env.sluice(&["verify"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    // --source without --table.
    let o = env.sluice(&[
        "verify",
        "--source",
        "sqlite:///a.db",
        "--target",
        "sqlite:///b.db",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--table"), "{}", stderr(&o));
    // A URL whose database cannot be told; the password never shows.
    let o = env.sluice(&[
        "verify",
        "--source",
        "oracle://scott:tiger@db/orcl",
        "--target",
        "sqlite:///b.db",
        "--table",
        "t",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("postgres://"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("tiger"), "{}", stderr(&o));
    // Two SQLite files, compared without a job file.
    for (name, rows) in [
        ("a.db", "(1, 'x'), (2, 'y')"),
        ("b.db", "(1, 'x'), (2, 'z')"),
    ] {
        let conn = rusqlite::Connection::open(env.path(name)).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES {rows};"
        ))
        .unwrap();
    }
    let (a, b) = (env.path("a.db"), env.path("b.db"));
    let o = env.sluice(&[
        "verify",
        "--source",
        &format!("sqlite://{}", a.display()),
        "--target",
        &format!("sqlite://{}", b.display()),
        "--table",
        "t",
    ]);
    assert_eq!(code(&o), 4, "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("id = 2: changed (v)"), "{}", stdout(&o));
}

#[test]
fn csv_to_parquet_to_sqlite_round_trip_and_status() {
    let env = Env::new();
    csv_to(&env, "type = \"parquet\"\npath = \"out/pq\"");
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Finished: 3 rows written"),
        "{}",
        stdout(&o)
    );
    assert!(env.path("out/pq/orders.parquet").exists());
    env.write(
        "job2.toml",
        "[job]\nname = \"t2\"\n[source]\ntype = \"parquet\"\npath = \"out/pq\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out/db.sqlite\"\n",
    );
    let o = env.sluice(&["run", "job2.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows = sqlite_rows(
        &env.path("out/db.sqlite"),
        "SELECT id, name, amount FROM orders ORDER BY id",
    );
    assert_eq!(
        rows,
        [
            ["1", "ant", "1.5"],
            ["2", "bee", "2.25"],
            ["3", "cat, the", "NULL"]
        ]
        .map(|r| r.map(str::to_string).to_vec())
    );
    let o = env.sluice(&["status"]);
    assert_eq!(code(&o), 0);
    let s = stdout(&o);
    assert!(s.contains("t2") && s.contains("FINISHED"), "{s}");
    let o = env.sluice(&["status", "t", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"][0]["runs"][0]["state"], "FINISHED");
    assert_eq!(v["jobs"][0]["runs"][0]["rows_written"], 3);
    assert_eq!(v["jobs"][0]["last_run_tables"][0]["complete"], true);
}

#[test]
fn validate_prints_the_plan() {
    let env = Env::new();
    csv_to(&env, "type = \"sqlite\"\nurl = \"sqlite://out.db\"");
    let o = env.sluice(&["validate", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("orders → orders"), "{s}");
    assert!(s.contains("amount") && s.contains("float64"), "{s}");
    assert!(!env.path("out.db").exists(), "validate must not write");
}

#[test]
fn missing_input_file_is_a_clear_error() {
    let env = Env::new();
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n[source]\ntype = \"csv\"\npath = \"nowhere/orders.csv\"\n[sink]\ntype = \"parquet\"\npath = \"out\"\n",
    );
    // A path the job names that does not exist is bad config: exit 2, for run and validate.
    for cmd in ["run", "validate"] {
        let o = env.sluice(&[cmd, "job.toml"]);
        assert_eq!(code(&o), 2, "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("nowhere/orders.csv"), "{}", stderr(&o));
        assert!(stderr(&o).contains("help:"), "{}", stderr(&o));
    }
    // So is a glob that matches nothing, and a SQLite database file that does not exist.
    for source in [
        "type = \"csv\"\npath = \"nowhere/*.csv\"",
        "type = \"sqlite\"\nurl = \"sqlite://nowhere.db\"",
    ] {
        env.write(
            "job.toml",
            format!("[job]\nname = \"t\"\n[source]\n{source}\n[sink]\ntype = \"parquet\"\npath = \"out\"\n"),
        );
        let o = env.sluice(&["run", "job.toml"]);
        assert_eq!(code(&o), 2, "{source}: {}", stderr(&o));
        assert!(stderr(&o).contains("nowhere"), "{}", stderr(&o));
    }
    assert!(!env.path("nowhere.db").exists());
    // A SQLite target in a directory that does not exist: said so, before any lock file.
    env.write("in/orders.csv", "id,name\n1,a\n");
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n[source]\ntype = \"csv\"\npath = \"in/orders.csv\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://missing/out.db\"\n",
    );
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("directory missing does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn wrong_field_count_names_file_and_line_and_leaves_no_output() {
    let env = Env::new();
    csv_to(&env, "type = \"parquet\"\npath = \"out\"");
    env.write("in/orders.csv", "id,name\n1,a\n2,b,extra\n3,c\n");
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("orders.csv"), "{e}");
    assert!(e.contains("line 3") || e.contains(":3"), "{e}");
    assert_no_files(&env.path("out"));
}

#[test]
fn invalid_utf8_is_reported() {
    let env = Env::new();
    csv_to(&env, "type = \"parquet\"\npath = \"out\"");
    env.write(
        "in/orders.csv",
        b"id,name\n1,ok\n2,bad\xff\xfe\n".as_slice(),
    );
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).to_lowercase().contains("utf-8"),
        "{}",
        stderr(&o)
    );
    assert_no_files(&env.path("out"));
}

#[test]
fn value_that_cannot_be_cast_names_column_and_value() {
    let env = Env::new();
    env.write("in/orders.csv", "id,qty\n1,5\n2,many\n");
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n[source]\ntype = \"csv\"\npath = \"in\"\n[[transform]]\ntype = \"cast\"\ncolumns = { qty = \"int32\" }\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\n",
    );
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("qty") && e.contains("many"), "{e}");
    // The failed split was rolled back: the table holds no rows.
    let rows = sqlite_rows(&env.path("out.db"), "SELECT count(*) FROM orders");
    assert_eq!(rows, [["0"]]);
}

#[test]
fn incompatible_existing_table_is_refused_before_writing() {
    let env = Env::new();
    let db = env.path("out.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE orders(id INTEGER, name INTEGER, amount INTEGER); INSERT INTO orders VALUES (9, 9, 9);")
            .unwrap();
    }
    csv_to(&env, "type = \"sqlite\"\nurl = \"sqlite://out.db\"");
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("orders") && e.contains("name"), "{e}");
    assert_eq!(sqlite_rows(&db, "SELECT count(*) FROM orders"), [["1"]]);
}

#[test]
fn unwritable_output_directory_is_a_clear_error() {
    let env = Env::new();
    env.write("blocker", "a file, not a directory");
    csv_to(&env, "type = \"parquet\"\npath = \"blocker/out\"");
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("blocker/out"), "{}", stderr(&o));
}

#[test]
fn full_disk_fails_cleanly_without_a_complete_looking_file() {
    let env = Env::new();
    let mnt = env.path("tiny");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        ok.success(),
        "mounting a tmpfs needs root: run the suite as scripts/test.sh does"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let mut big = String::from("id,payload\n");
    for i in 0..20_000 {
        big.push_str(&format!("{i},{}\n", "x".repeat(20)));
    }
    env.write("in/orders.csv", big);
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n[source]\ntype = \"csv\"\npath = \"in\"\n[sink]\ntype = \"csv\"\npath = \"tiny/out\"\n",
    );
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = stderr(&o).to_lowercase();
    assert!(e.contains("disk is full") || e.contains("no space"), "{e}");
    assert_no_files(&mnt.join("out"));
}

#[test]
fn secrets_from_env_never_appear_in_output() {
    let env = Env::new();
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n[source]\ntype = \"csv\"\npath = \"${env:SLUICE_TEST_SECRET_DIR}/x.csv\"\n[sink]\ntype = \"parquet\"\npath = \"out\"\n",
    );
    let o = env
        .cmd()
        .args(["run", "job.toml"])
        .env("SLUICE_TEST_SECRET_DIR", "s3cr3t-d1r")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!all.contains("s3cr3t-d1r"), "{all}");
    assert!(all.contains("***"), "{all}");
}

#[test]
fn passwords_in_wrong_urls_never_appear_in_output() {
    let env = Env::new();
    env.write("in/t.csv", "id\n1\n");
    let pw = "Sup3r-Secret";
    // Every accepted way of writing a password, each in a URL that is refused or cannot
    // connect (nothing listens on port 9).
    for (ty, url) in [
        ("postgres", format!("postgress://app:{pw}@127.0.0.1:9/db")),
        ("postgres", format!("postgres:/app:{pw}@127.0.0.1:9/db")),
        ("postgres", format!("host=127.0.0.1 port=9 password={pw}")),
        ("postgres", format!("host=127.0.0.1 password='{pw} x'")),
        (
            "postgres",
            format!("postgres://app@127.0.0.1:9/db?password={pw}&sslmode=bogus"),
        ),
        (
            "postgres",
            format!("postgres://app@127.0.0.1:9/db?password={pw}"),
        ),
        ("mysql", format!("mysql:/root:{pw}@127.0.0.1:9/db")),
        (
            "mysql",
            format!("mysql://root@127.0.0.1:9/db?password={pw}&x=y"),
        ),
        ("mysql", format!("mysql://root:{pw}@127.0.0.1:9/db")),
        ("sqlite", format!("sqlite:/u:{pw}@nowhere/a.db")),
    ] {
        for side in ["source", "sink"] {
            let (src, sink) = if side == "source" {
                (
                    format!("type = \"{ty}\"\nurl = \"{url}\""),
                    "type = \"csv\"\npath = \"out\"".to_string(),
                )
            } else {
                (
                    "type = \"csv\"\npath = \"in\"".to_string(),
                    format!("type = \"{ty}\"\nurl = \"{url}\""),
                )
            };
            env.write(
                "job.toml",
                format!("[job]\nname = \"t\"\n[source]\n{src}\n[sink]\n{sink}\n"),
            );
            // `validate` does not connect to the sink, so it may pass; `run` cannot.
            for cmd in ["validate", "run"] {
                let o = env.sluice(&[cmd, "job.toml"]);
                let all = format!("{}{}", stdout(&o), stderr(&o));
                if cmd == "run" || side == "source" {
                    assert_ne!(code(&o), 0, "{cmd} {side} {url}: {all}");
                }
                assert!(!all.contains(pw), "{cmd} {side} {url}: {all}");
            }
        }
        let o = env.sluice(&["verify", "--source", &url, "--target", &url, "--table", "t"]);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_ne!(code(&o), 0, "verify {url}: {all}");
        assert!(!all.contains(pw), "verify {url}: {all}");
    }
    // What `status` shows of the failed runs.
    let o = env.sluice(&["status", "t", "--format", "json"]);
    assert!(!stdout(&o).contains(pw), "{}", stdout(&o));
}

#[test]
fn timeout_stops_with_exit_3_and_rerun_finishes() {
    let env = Env::new();
    // Enough files that the job is still running after the timeout.
    for f in 0..60 {
        let mut s = String::from("id,v\n");
        for i in 0..20_000 {
            s.push_str(&format!("{},{}\n", f * 100_000 + i, i * 7));
        }
        env.write(&format!("in/t{f:02}.csv"), s);
    }
    let job = "[job]\nname = \"t\"\nparallelism = 1\ntimeout = \"300ms\"\n[source]\ntype = \"csv\"\npath = \"in\"\ntable = \"big\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"append\"\n";
    env.write("job.toml", job);
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 3, "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("timeout"), "{}", stderr(&o));
    let o = env.sluice(&["status", "t", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"][0]["runs"][0]["state"], "STOPPED");
    // Whole splits only: the row count is a multiple of the file size.
    let n: i64 = sqlite_rows(&env.path("out.db"), "SELECT count(*) FROM big")[0][0]
        .parse()
        .unwrap();
    assert_eq!(n % 20_000, 0, "a stop must not leave part of a split");
    assert!(n < 60 * 20_000);
}

#[test]
fn sigterm_stops_gracefully_with_exit_3() {
    let env = Env::new();
    for f in 0..200 {
        let mut s = String::from("id,v\n");
        for i in 0..20_000 {
            s.push_str(&format!("{},{}\n", f * 100_000 + i, i));
        }
        env.write(&format!("in/t{f:03}.csv"), s);
    }
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\nparallelism = 2\n[source]\ntype = \"csv\"\npath = \"in\"\ntable = \"big\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\n",
    );
    let child = env
        .cmd()
        .args(["run", "job.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sent = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(5),
        "stop took {:?}",
        sent.elapsed()
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("SIGTERM"), "{}", stderr(&o));
    // Only whole splits (files of 20,000 rows) were committed (none, and no table, if the
    // stop came while the job was still planning, as on a loaded machine).
    let n: i64 = rusqlite::Connection::open(env.path("out.db"))
        .and_then(|c| c.query_row("SELECT count(*) FROM big", [], |r| r.get(0)))
        .unwrap_or(0);
    assert_eq!(n % 20_000, 0, "a stop must not leave part of a split");
    assert!(n < 200 * 20_000, "the stop came before the end");
}

use std::time::Instant;

fn assert_no_files(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let left = walk(dir);
    assert!(left.is_empty(), "unexpected files left behind: {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn the_quickstart_examples_run_as_the_readme_says() {
    let env = Env::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for f in [
        "quickstart.toml",
        "quickstart-sqlite.toml",
        "data/customers.csv",
        "data/orders.csv",
    ] {
        env.write(
            &format!("examples/{f}"),
            std::fs::read(repo.join("examples").join(f)).unwrap(),
        );
    }
    let o = env.sluice(&["run", "examples/quickstart.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The filter dropped the cancelled orders; the summary counts what was written.
    assert!(
        stdout(&o).contains("Finished: 4175 rows written"),
        "{}",
        stdout(&o)
    );
    let o = env.sluice(&["run", "examples/quickstart-sqlite.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let db = env.path("out/shop.db");
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT count(*) FROM orders WHERE status = 'cancelled'"
        ),
        [["0"]]
    );
    assert_eq!(
        sqlite_rows(&db, "SELECT count(*) FROM customers"),
        [["200"]]
    );
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT amount, unit_price FROM orders WHERE order_id = 1"
        ),
        [["4627.25", "1542.4167"]]
    );
    // Running it again replaces the tables instead of doubling them.
    let o = env.sluice(&["run", "examples/quickstart-sqlite.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        sqlite_rows(&db, "SELECT count(*) FROM customers"),
        [["200"]]
    );
}

#[test]
fn bad_records_go_to_the_dead_letter_file_up_to_max_errors() {
    let env = Env::new();
    let mut csv = String::from("id,qty\n");
    for i in 0..1000 {
        let q = if i == 17 || i == 503 {
            "many".to_string()
        } else {
            i.to_string()
        };
        csv.push_str(&format!("{i},{q}\n"));
    }
    env.write("in/orders.csv", &csv);
    let job = |max: u32| {
        format!(
            "[job]\nname = \"t{max}\"\n[source]\ntype = \"csv\"\npath = \"in\"\n[[transform]]\ntype = \"cast\"\ncolumns = {{ qty = \"int32\" }}\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out{max}.db\"\n[errors]\nmax_errors = {max}\ndead_letter = {{ type = \"jsonl\", path = \"bad{max}.jsonl\" }}\n"
        )
    };
    env.write("two.toml", job(2));
    let o = env.sluice(&["run", "two.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Bad records were set aside"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        sqlite_rows(&env.path("out2.db"), "SELECT count(*) FROM orders"),
        [["998"]]
    );
    let bad = std::fs::read_to_string(env.path("bad2.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = bad
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{bad}");
    assert_eq!(lines[0]["row"]["id"], "17");
    assert_eq!(lines[1]["row"]["id"], "503");
    assert!(
        lines[0]["error"].as_str().unwrap().contains("many"),
        "{bad}"
    );
    assert_eq!(lines[0]["table"], "orders");
    // One tolerated, two found: the job fails and the split is rolled back.
    env.write("one.toml", job(1));
    let o = env.sluice(&["run", "one.toml"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("too many bad records: 2 (max_errors = 1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        sqlite_rows(&env.path("out1.db"), "SELECT count(*) FROM orders"),
        [["0"]]
    );
}

/// A CSV → SQLite job with one `[[transform]]` of `kind` whose `key` is `expr`.
fn job_with_expression(env: &Env, kind: &str, key: &str, expr: &str) {
    env.write("in/orders.csv", ORDERS);
    let extra = if kind == "add" {
        "column = \"x\"\n"
    } else {
        ""
    };
    env.write(
        "job.toml",
        format!(
            "[job]\nname = \"t\"\n[source]\ntype = \"csv\"\npath = \"in\"\n[[transform]]\n\
             type = \"{kind}\"\n{extra}{key} = \"{expr}\"\n[sink]\ntype = \"sqlite\"\n\
             url = \"sqlite://out.db\"\n"
        ),
    );
}

#[test]
fn expression_syntax_error_points_at_the_spot_in_the_job_file() {
    let env = Env::new();
    job_with_expression(&env, "filter", "where", "amount >= AND x");
    let o = env.sluice(&["validate", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: job.toml:8:20: filter transform: `where`: syntax error: expected a value \
         (column, literal or parenthesis); quote a column named like a keyword: \"name\", found \
         keyword AND\n  \
         |\n\
         8 | where = \"amount >= AND x\"\n  \
         |                    ^^^\n  \
         = help: the expression language is described in docs/transforms.md\n"
    );
    // In `add` too, and for an error found by the lexer.
    job_with_expression(&env, "add", "expr", "amount * 'oops");
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.starts_with("error: job.toml:9:18: add transform: `expr`: syntax error"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "\n9 | expr = \"amount * 'oops\"\n  | {}^\n",
            " ".repeat(17)
        )),
        "{e}"
    );
}

#[test]
fn expressions_nested_too_deep_are_refused_with_the_limit_and_where() {
    let env = Env::new();
    let parens = format!("{}amount > 1{}", "(".repeat(3000), ")".repeat(3000));
    let nots = format!("{}amount > 1", "NOT ".repeat(3000));
    let sum = format!("amount > {}", vec!["1"; 3000].join(" + "));
    for (expr, col) in [(parens, 10 + 64), (nots, 10 + 64 * 4), (sum, 19)] {
        job_with_expression(&env, "filter", "where", &expr);
        for cmd in ["validate", "run"] {
            let o = env.sluice(&[cmd, "job.toml"]);
            let e = stderr(&o);
            assert_eq!(code(&o), 2, "{cmd}: {e}");
            assert!(
                e.starts_with(&format!(
                    "error: job.toml:8:{col}: filter transform: `where`: expression too deep: \
                     the expression is nested more than 64 levels deep here"
                )),
                "{cmd}: {}",
                &e[..e.len().min(400)]
            );
            assert!(!e.contains("overflow"), "{e}");
        }
    }
    assert!(!env.path("out.db").exists());
    // The deepest accepted expression (64 levels) runs.
    let mut deepest = "id".to_string();
    for _ in 0..62 {
        deepest = format!("({deepest} + 1)");
    }
    job_with_expression(&env, "filter", "where", &format!("{deepest} = 64"));
    let o = env.sluice(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        sqlite_rows(&env.path("out.db"), "SELECT id FROM orders"),
        [["2"]]
    );
}

#[test]
fn long_in_lists_and_or_chains_run() {
    let env = Env::new();
    // 3,000 items (the case) and 3,000 OR terms: no limit, no stack trouble.
    let items: Vec<String> = (4..3004).chain([2]).map(|i| i.to_string()).collect();
    let ors: Vec<String> = (4..3004).map(|i| format!("id = {i}")).collect();
    for expr in [
        format!("id IN ({})", items.join(", ")),
        format!("{} OR id = 2", ors.join(" OR ")),
    ] {
        job_with_expression(&env, "filter", "where", &expr);
        let o = env.sluice(&["run", "--from-scratch", "job.toml"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(
            sqlite_rows(&env.path("out.db"), "SELECT id FROM orders"),
            [["2"]]
        );
        std::fs::remove_file(env.path("out.db")).unwrap();
    }
}

#[test]
fn verify_refuses_table_map_keys_that_match_no_table() {
    let env = Env::new();
    for name in ["a.db", "b.db"] {
        let conn = rusqlite::Connection::open(env.path(name)).unwrap();
        conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
    }
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n[source]\ntype = \"sqlite\"\nurl = \"sqlite://a.db\"\n\
         [sink]\ntype = \"sqlite\"\nurl = \"sqlite://b.db\"\n\
         table_map = { 'main.ordrs' = 'orders' }\n",
    );
    let o = env.sluice(&["verify", "job.toml"]);
    assert_eq!(code(&o), 2, "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: [sink] table_map key 'main.ordrs' matches no source table\n  \
         = help: did you mean 'main.orders'? keys are source table names or patterns such as \
         'public.*'; the source has 'main.orders'\n"
    );
    // A pattern mapping every table to its bare name verifies.
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n[source]\ntype = \"sqlite\"\nurl = \"sqlite://a.db\"\n\
         [sink]\ntype = \"sqlite\"\nurl = \"sqlite://b.db\"\ntable_map = { 'main.*' = '*' }\n",
    );
    let o = env.sluice(&["verify", "job.toml"]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
}

/// Issue 9, case 28: a `table_map` key that matches no table is a misspelling, refused by
/// `run` and `validate` before anything moves (not ignored, with the table written under its
/// own name).
#[test]
fn run_and_validate_refuse_table_map_keys_that_match_no_table() {
    let env = Env::new();
    let conn = rusqlite::Connection::open(env.path("a.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO orders VALUES (1, 'x');",
    )
    .unwrap();
    env.write(
        "job.toml",
        "[job]\nname = \"t\"\n[source]\ntype = \"sqlite\"\nurl = \"sqlite://a.db\"\n\
         [sink]\ntype = \"sqlite\"\nurl = \"sqlite://b.db\"\n\
         table_map = { 'main.ordrs' = 'archive' }\n",
    );
    for cmd in ["validate", "run"] {
        let o = env.sluice(&[cmd, "job.toml"]);
        assert_eq!(code(&o), 2, "{cmd}: {}\n{}", stdout(&o), stderr(&o));
        assert!(
            stderr(&o).contains("table_map key 'main.ordrs' matches no source table")
                && stderr(&o).contains("did you mean 'main.orders'?"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    assert!(
        !env.path("b.db").exists() || {
            let c = rusqlite::Connection::open(env.path("b.db")).unwrap();
            let n: i64 = c
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE name = 'orders'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            n == 0
        }
    );
}

/// Issue 9, case 22: a closed stdout (`sluice run job.toml | head -0`, `sluice status | head
/// -1`) is not a reason to panic: the copy's outcome decides the exit status.
#[test]
fn a_closed_stdout_does_not_turn_a_finished_copy_into_a_panic() {
    let env = Env::new();
    env.write("in/t.csv", "id,v\n1,2\n2,4\n");
    env.write(
        "job.toml",
        "[job]\nname = \"closed\"\n[source]\ntype = \"csv\"\npath = \"in\"\n\
         [sink]\ntype = \"jsonl\"\npath = \"out\"\n",
    );
    for args in [
        &["run", "job.toml"][..],
        &["status"][..],
        &["status", "closed"][..],
    ] {
        let mut child = env
            .cmd()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the process writes anything.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn errors_found_while_planning_point_at_the_option_in_the_job_file() {
    let env = Env::new();
    let c = rusqlite::Connection::open(env.path("src.db")).unwrap();
    c.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    drop(c);
    let job = env.write(
        "job.toml",
        "[job]\nname = \"x\"\n[source]\ntype = \"sqlite\"\nurl = \"sqlite://src.db\"\ntables = [\"ordrs\"]\n[sink]\ntype = \"csv\"\npath = \"out\"\n",
    );
    for cmd in ["validate", "run"] {
        let o = env.sluice(&[cmd, job.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{cmd}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("job.toml:6:10: table ordrs not found"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("tables = [\"ordrs\"]") && err.contains("did you mean `orders`"),
            "{err}"
        );
    }
    // A connector option checked when the job is loaded is located too.
    let job = env.write(
        "gen.toml",
        "[job]\nname = \"g\"\n[source]\ntype = \"generate\"\nrows = 10\nbatch_size = 0\n[sink]\ntype = \"csv\"\npath = \"out\"\n",
    );
    let o = env.sluice(&["validate", job.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("gen.toml:6:14: `batch_size` must be at least 1"),
        "{}",
        stderr(&o)
    );
}
