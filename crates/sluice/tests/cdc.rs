//! Change data capture from PostgreSQL (`read = "cdc"`) against the private instance with
//! `wal_level = logical` that `scripts/test-services.sh` starts on 127.0.0.1:55432: the
//! snapshot handed over to the stream, random concurrent writes, `kill -9` at random moments,
//! and at the end the target equal to the source row for row.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// Kills the run when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Restarts the private CDC instance (fast shutdown: sessions are cut), with the options it
/// was started with.
fn restart_cdc_server() {
    let pg_ctl = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .map(|e| e.unwrap().path().join("bin/pg_ctl"))
        .find(|p| p.exists())
        .expect("pg_ctl under /usr/lib/postgresql");
    sh(Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_ctl)
        .args([
            "-D",
            "/var/tmp/sluice-pg-cdc",
            "restart",
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
        ])
        .stdout(Stdio::null()));
}

fn job(env: &Env, db: &CdcDb, chunk_rows: u64) -> String {
    let out = env.path("target.db");
    format!(
        "[job]\nname = \"{}\"\ncheckpoint_interval = \"200ms\"\n\
         [source]\ntype = \"postgres\"\nurl = \"{}\"\ntables = [\"public.*\"]\nread = \"cdc\"\n\
         chunk_rows = {chunk_rows}\nbatch_size = 1000\n\
         [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\nwrite = \"upsert\"\n\
         table_map = {{ \"public.*\" = \"*\" }}\n",
        db.0,
        db.url(),
        out.display()
    )
}

fn start(env: &Env, n: usize) -> Running {
    let log = std::fs::File::create(env.path(&format!("run{n}.log"))).unwrap();
    Running(
        env.cmd(&["run", "job.toml"])
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn target_rows(env: &Env, table: &str, cols: &str) -> Vec<String> {
    sqlite_rows(
        &env.path("target.db"),
        &format!("SELECT {cols} FROM {table}"),
    )
}

fn source_rows(db: &CdcDb, table: &str, cols: &str) -> Vec<String> {
    db.sql(&format!(
        "SELECT concat_ws('|', {}) FROM {table} ORDER BY 1",
        cols.split(", ")
            .map(|c| format!("coalesce({c}::text, '')"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .lines()
    .map(str::to_string)
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect()
}

/// Random transactions: inserts, updates, deletes, key changes, a rolled-back transaction, a
/// large one, one over both tables and a TRUNCATE, until told to stop.
fn writer(db: String, stop: Arc<AtomicBool>, seed: u64) {
    let mut x = seed;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut next_id = 1_000_000 + seed as i64 * 100_000;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = rnd(30_000) as i64;
        let sql = match rnd(8) {
            // Now and then the small table is emptied (TRUNCATE travels through the stream).
            _ if i % 40 == 0 && seed == 1 => "TRUNCATE t2".to_string(),
            0 | 1 => {
                next_id += 1;
                format!("INSERT INTO t VALUES ({next_id}, 'ins{i}', {i})")
            }
            2 | 3 => format!("UPDATE t SET v = 'upd{i}', n = n + 1 WHERE id = {id}"),
            4 => format!("DELETE FROM t WHERE id = {id}"),
            5 => {
                next_id += 1;
                format!("UPDATE t SET id = {next_id} WHERE id = {id}")
            }
            6 => format!(
                "BEGIN; UPDATE t SET v = 'never' WHERE id < 100; INSERT INTO t VALUES (-{i}, 'never', 0); ROLLBACK"
            ),
            _ if i % 10 == 7 => format!(
                "UPDATE t SET n = n + 1, v = 'big{i}' WHERE id % 7 = {}",
                rnd(7)
            ),
            _ => format!(
                "BEGIN; INSERT INTO t2 VALUES ({i}, {seed}, 'x') ON CONFLICT DO NOTHING; \
                 UPDATE t SET v = 'both{i}' WHERE id = {id}; COMMIT"
            ),
        };
        let _ = psql_cmd(CDC_PORT, &db)
            .args(["-c", &sql])
            .stderr(Stdio::null())
            .output();
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn pg_cdc_snapshot_and_stream_survive_kill9_row_for_row() {
    let env = Env::new();
    let db = CdcDb::new();
    db.sql(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text, n int NOT NULL, at timestamptz DEFAULT now()); \
         INSERT INTO t (id, v, n) SELECT g, 'v' || g, g FROM generate_series(1, 200000) g; \
         CREATE TABLE t2 (a int, b bigint, c text, PRIMARY KEY (a, b))",
    );
    env.write("job.toml", job(&env, &db, 20_000));

    // Killed in the middle of the snapshot: the resume goes on at the chunk, not from zero.
    let child = start(&env, 0);
    wait_for(60, "the snapshot to commit a chunk", || {
        let n = target_rows(&env, "t", "count(*), 0")
            .first()
            .map(|r| r.split('|').next().unwrap().parse::<i64>().unwrap())
            .unwrap_or(0);
        n > 0
    });
    drop(child);
    let first = std::fs::read_to_string(env.path("run0.log")).unwrap();
    let mut child = start(&env, 1);
    // (Streaming: the snapshot ended in this run, or already in the killed one.)
    wait_for(60, "the snapshot to end", || {
        std::fs::read_to_string(env.path("run1.log"))
            .unwrap()
            .contains("Streaming changes")
    });
    let second = std::fs::read_to_string(env.path("run1.log")).unwrap();
    assert!(
        !second.contains("split=public.t#0 ") && !second.contains("split=public.t#0\n"),
        "the resumed snapshot read its first chunk again:\n{first}\n---\n{second}"
    );

    // Writers run while Sluice is killed with -9 at random moments and started again.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=2)
        .map(|s| {
            let (d, st) = (db.0.clone(), stop.clone());
            std::thread::spawn(move || writer(d, st, s))
        })
        .collect();
    let mut seed = 0x9e37_79b9_u64;
    for n in 2..12 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 1200));
        drop(child);
        if n == 7 {
            // The source database restarts once, under the stream (Sluice reconnects).
            restart_cdc_server();
        }
        child = start(&env, n);
    }
    std::thread::sleep(Duration::from_millis(800));
    restart_cdc_server();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    // Row for row, once the stream caught up.
    let until = Instant::now() + Duration::from_secs(90);
    let (mut want, mut got);
    loop {
        want = (
            source_rows(&db, "t", "id, v, n"),
            source_rows(&db, "t2", "a, b, c"),
        );
        got = (
            target_rows(&env, "t", "id, v, n"),
            target_rows(&env, "t2", "a, b, c"),
        );
        if want == got || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let diff = |w: &Vec<String>, g: &Vec<String>| {
        let missing: Vec<_> = w.iter().filter(|r| !g.contains(r)).take(5).collect();
        let extra: Vec<_> = g.iter().filter(|r| !w.contains(r)).take(5).collect();
        format!(
            "{} missing (e.g. {missing:?}), {} extra (e.g. {extra:?})",
            w.iter().filter(|r| !g.contains(r)).count(),
            g.iter().filter(|r| !w.contains(r)).count()
        )
    };
    let last_log = std::fs::read_to_string(env.path("run11.log")).unwrap_or_default();
    let tail: String = last_log
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        want.0.len() == got.0.len(),
        "rows of t: {} in the source, {} in the target: {}; the last run's log ends:\n{tail}",
        want.0.len(),
        got.0.len(),
        diff(&want.0, &got.0)
    );
    assert!(
        want.0 == got.0,
        "t differs from its source: {}",
        diff(&want.0, &got.0)
    );
    assert!(
        want.1 == got.1,
        "t2 differs from its source: {}",
        diff(&want.1, &got.1)
    );

    // A table created now matches `tables`, but is not in the capture: the log says so.
    db.sql("CREATE TABLE late (id int PRIMARY KEY)");
    let log = env.path("run11.log");
    wait_for(30, "the warning about the uncaptured table", || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("table=public.late")
    });

    // The slot confirmed what the sink committed; a stop is exit 3.
    let confirmed = db.sql(
        &format!("SELECT confirmed_flush_lsn > '0/0' FROM pg_replication_slots WHERE slot_name = 'sluice_{}'", db.0),
    );
    assert_eq!(confirmed.trim(), "t");
    let pid = child.0.id().to_string();
    sh(Command::new("kill").args(["-TERM", &pid]));
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{status:?}");

    // `sluice status` shows where the stream stands.
    let o = env.run(&["status", &db.0]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("position {")
            && said.contains("\"lsn\"")
            && said.contains("\"streaming\":true"),
        "{said}"
    );

    // Retiring the job releases the slot and the publication; a second time there is nothing.
    let o = env.run(&["cdc", "drop-slot", "job.toml"]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(said.contains("dropped replication slot"), "{said}");
    let left = db.sql(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'sluice_{}'",
        db.0
    ));
    assert_eq!(left.trim(), "0");
    let o = env.run(&["cdc", "drop-slot", "job.toml"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("holds no"));
}

#[test]
fn pg_cdc_refuses_what_it_cannot_capture_and_names_the_fix() {
    let env = Env::new();
    // The shared server has wal_level = replica.
    let plain = PgDb::new();
    psql(&plain.0, "CREATE TABLE t (id int PRIMARY KEY)");
    env.write(
        "job.toml",
        format!(
            "[job]\nname = \"w\"\n[source]\ntype = \"postgres\"\nurl = \"{}\"\nread = \"cdc\"\n\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\nwrite = \"upsert\"\n\
             table_map = {{ \"public.*\" = \"*\" }}\n",
            plain.url(),
            env.path("o.db").display()
        ),
    );
    let o = env.run(&["validate", "job.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("wal_level = logical"), "{err}");
    let o = env.run(&["run", "job.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("wal_level"), "{err}");

    // A table without a primary key (refused before the server's settings are looked at;
    // the shared server keeps the CDC instance free for the test that restarts it).
    let db = PgDb::new();
    psql(&db.0, "CREATE TABLE nokey (a int)");
    env.write(
        "nokey.toml",
        format!(
            "[job]\nname = \"k\"\n[source]\ntype = \"postgres\"\nurl = \"{}\"\nread = \"cdc\"\n\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\nwrite = \"upsert\"\n\
             table_map = {{ \"public.*\" = \"*\" }}\n",
            db.url(),
            env.path("k.db").display()
        ),
    );
    let o = env.run(&["run", "nokey.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no primary key"), "{err}");
    // CDC options without read = "cdc".
    env.write(
        "opts.toml",
        format!(
            "[job]\nname = \"o\"\n[source]\ntype = \"postgres\"\nurl = \"{}\"\nslot = \"x\"\n\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n",
            db.url(),
            env.path("k.db").display()
        ),
    );
    let o = env.run(&["validate", "opts.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("read = \"cdc\""), "{err}");
}

#[test]
fn pg_cdc_carries_every_type_through_the_snapshot_and_the_stream() {
    let env = Env::new();
    let db = CdcDb::new();
    db.sql(include_str!(
        "../../sluice-connectors/tests/data/pg_all_types.sql"
    ));
    let target = PgDb::new();
    env.write(
        "job.toml",
        format!(
            "[job]\nname = \"{}\"\ncheckpoint_interval = \"200ms\"\n\
             [source]\ntype = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nread = \"cdc\"\n\
             [sink]\ntype = \"postgres\"\nurl = \"{}\"\nwrite = \"upsert\"\n",
            db.0,
            db.url(),
            target.url()
        ),
    );
    let rows = |sql: &dyn Fn(&str) -> String| -> Vec<String> {
        sql("SELECT replace(t::text, E'\\n', '<nl>') FROM t ORDER BY id")
            .lines()
            .map(str::to_string)
            .collect()
    };
    let child = start(&env, 0);
    wait_for(60, "the snapshot", || {
        std::fs::read_to_string(env.path("run0.log"))
            .unwrap()
            .contains("Streaming changes")
    });
    // Through the stream: every row again under new keys, an update that keeps every other
    // value, a delete.
    db.sql(
        "CREATE TEMP TABLE x AS SELECT * FROM t; UPDATE x SET id = id + 10; \
         INSERT INTO t SELECT * FROM x; UPDATE t SET tx = coalesce(tx, '') || 'u' WHERE id = 1; \
         DELETE FROM t WHERE id = 4",
    );
    let want = rows(&|q| db.sql(q));
    assert_eq!(want.len(), 7);
    let until = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while Instant::now() < until {
        got = rows(&|q| psql(&target.0, q));
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(child);
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g);
    }
    assert_eq!(
        want.len(),
        got.len(),
        "{got:?}\n{}",
        std::fs::read_to_string(env.path("run0.log")).unwrap()
    );
}

#[test]
fn a_slot_name_taken_in_another_database_is_refused_and_its_session_left_alone() {
    let env = Env::new();
    let (a, b) = (CdcDb::new(), CdcDb::new());
    let slot = format!("{}_shared", a.0);
    for (db, file) in [(&a, "a.toml"), (&b, "b.toml")] {
        db.sql("CREATE TABLE t (id int PRIMARY KEY)");
        env.write(
            file,
            format!(
                "[job]\nname = \"{0}\"\ncheckpoint_interval = \"200ms\"\n\
                 [source]\ntype = \"postgres\"\nurl = \"{1}\"\nread = \"cdc\"\nslot = \"{slot}\"\n\
                 [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{2}\"\nwrite = \"upsert\"\n\
                 table_map = {{ \"public.*\" = \"*\" }}\n",
                db.0,
                db.url(),
                env.path(&format!("{}.db", db.0)).display()
            ),
        );
    }
    let log = std::fs::File::create(env.path("a.log")).unwrap();
    let _a = Running(
        env.cmd(&["run", "a.toml"])
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let active = || {
        a.sql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"
        ))
        .trim()
        .to_string()
    };
    wait_for(60, "job a streaming from its slot", || active() == "1");
    let o = env.run(&["run", "b.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("belongs to database"), "{err}");
    assert!(err.contains("slot = "), "the hint names the option: {err}");
    assert_eq!(active(), "1", "job a's replication session was ended");

    // Retiring job a while it streams is refused; the slot stays.
    let o = env.run(&["cdc", "drop-slot", "a.toml"]);
    assert!(!o.status.success());
    assert_eq!(active(), "1");
}

#[test]
fn a_capture_whose_slot_was_dropped_is_refused_on_resume_with_the_way_out() {
    let env = Env::new();
    let db = CdcDb::new();
    db.sql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
    env.write("job.toml", job(&env, &db, 1000));
    let mut child = start(&env, 0);
    wait_for(60, "the stream", || {
        std::fs::read_to_string(env.path("run0.log"))
            .unwrap()
            .contains("Streaming changes")
    });
    db.sql("INSERT INTO t VALUES (2)");
    wait_for(30, "the streamed row", || {
        target_rows(&env, "t", "id, 0").len() == 2
    });
    sh(Command::new("kill").args(["-TERM", &child.0.id().to_string()]));
    assert_eq!(child.0.wait().unwrap().code(), Some(3));
    // An administrator drops the slot: the changes since the checkpoint cannot be read.
    db.sql(&format!(
        "SELECT pg_drop_replication_slot('sluice_{}')",
        db.0
    ));
    let o = env.run(&["run", "job.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is gone") && err.contains("--from-scratch"),
        "{err}"
    );
}
