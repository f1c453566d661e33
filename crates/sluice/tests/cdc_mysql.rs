//! Change data capture from MariaDB's binary log (`type = "mysql"`, `read = "cdc"`) against
//! the private instance with the binary log on that `scripts/test-services.sh` starts on
//! 127.0.0.1:53306: the snapshot handed over to the stream, random concurrent writes with log
//! rotations and a cut replication connection, `kill -9` at random moments, and at the end the
//! target equal to the source row for row. (These tests run one at a time: one of them purges
//! the instance's binary logs.)

mod support;

use std::collections::BTreeSet;
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

fn log(env: &Env, n: usize) -> String {
    std::fs::read_to_string(env.path(&format!("run{n}.log"))).unwrap_or_default()
}

fn target_rows(env: &Env, table: &str, cols: &str) -> Vec<String> {
    sqlite_rows(
        &env.path("target.db"),
        &format!("SELECT {cols} FROM {table}"),
    )
}

fn source_rows(db: &MyCdcDb, table: &str, cols: &str) -> Vec<String> {
    let cols: Vec<String> = cols
        .split(", ")
        .map(|c| format!("coalesce({c}, '')"))
        .collect();
    db.sql(&format!(
        "SELECT concat_ws('|', {}) FROM {table}",
        cols.join(", ")
    ))
    .lines()
    .map(str::to_string)
    .collect::<BTreeSet<_>>()
    .into_iter()
    .collect()
}

/// Random transactions: inserts, updates, deletes, key changes, a rolled-back transaction, a
/// large one, one over both tables, a TRUNCATE and binary log rotations, until told to stop.
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
            _ if i % 40 == 0 && seed == 1 => "TRUNCATE t2".to_string(),
            _ if i % 55 == 0 && seed == 2 => "FLUSH BINARY LOGS".to_string(),
            0 | 1 => {
                next_id += 1;
                format!("INSERT INTO t VALUES ({next_id}, 'ins{i}', {i})")
            }
            2 | 3 => format!("UPDATE t SET v = 'upd{i}', n = n + 1 WHERE id = {id}"),
            4 => format!("DELETE FROM t WHERE id = {id}"),
            5 => {
                next_id += 1;
                format!("UPDATE IGNORE t SET id = {next_id} WHERE id = {id}")
            }
            6 => format!(
                "BEGIN; UPDATE t SET v = 'never' WHERE id < 100; INSERT INTO t VALUES (-{i}, 'never', 0); ROLLBACK"
            ),
            _ if i % 10 == 7 => format!(
                "UPDATE t SET n = n + 1, v = 'big{i}' WHERE id % 7 = {}",
                rnd(7)
            ),
            _ => format!(
                "BEGIN; INSERT IGNORE INTO t2 VALUES ({i}, {seed}, 'x'); \
                 UPDATE t SET v = 'both{i}' WHERE id = {id}; COMMIT"
            ),
        };
        let _ = Command::new("mariadb")
            .args(["-h127.0.0.1", "-P", MY_CDC_PORT, "-uroot", &db, "-e", &sql])
            .stderr(Stdio::null())
            .output();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ends the server's binlog dump sessions (the replication connections), as a network
/// failure would.
fn cut_replication() {
    let ids = my_cdc(
        "",
        "SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'",
    );
    for id in ids.lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("mariadb")
            .args(["-h127.0.0.1", "-P", MY_CDC_PORT, "-uroot", "-e"])
            .arg(format!("KILL {id}"))
            .output();
    }
}

fn diff(w: &[String], g: &[String]) -> String {
    let (ws, gs): (BTreeSet<_>, BTreeSet<_>) = (w.iter().collect(), g.iter().collect());
    let missing: Vec<_> = ws.difference(&gs).take(5).collect();
    let extra: Vec<_> = gs.difference(&ws).take(5).collect();
    format!(
        "{} missing (e.g. {missing:?}), {} extra (e.g. {extra:?})",
        ws.difference(&gs).count(),
        gs.difference(&ws).count()
    )
}

#[test]
fn mysql_cdc_snapshot_and_stream_survive_kill9_row_for_row() {
    let env = Env::new();
    let db = MyCdcDb::new();
    db.sql(
        "CREATE TABLE t (id bigint PRIMARY KEY, v varchar(100), n int NOT NULL); \
         INSERT INTO t SELECT seq, concat('v', seq), seq FROM seq_1_to_100000; \
         CREATE TABLE t2 (a int, b bigint, c varchar(10), PRIMARY KEY (a, b))",
    );
    env.write(
        "job.toml",
        format!(
            "[job]\nname = \"{}\"\ncheckpoint_interval = \"200ms\"\n\
             [source]\ntype = \"mysql\"\nurl = \"{}\"\nread = \"cdc\"\n\
             chunk_rows = 10000\nbatch_size = 1000\n\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\nwrite = \"upsert\"\n",
            db.0,
            db.url(),
            env.path("target.db").display()
        ),
    );
    // Writes before the first run are in the binary log after the capture's start only if
    // the capture started first: the snapshot holds them either way.
    let child = start(&env, 0);
    wait_for(60, "the snapshot to commit a chunk", || {
        !target_rows(&env, "t", "count(*)").is_empty()
            && target_rows(&env, "t", "count(*)")[0] != "0"
    });
    drop(child);
    let mut child = start(&env, 1);
    wait_for(60, "the stream to start", || {
        log(&env, 1).contains("Streaming changes")
    });
    assert!(
        !log(&env, 1).contains("split=t#0 "),
        "the resumed snapshot read its first chunk again:\n{}",
        log(&env, 1)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=2)
        .map(|s| {
            let (d, st) = (db.0.clone(), stop.clone());
            std::thread::spawn(move || writer(d, st, s))
        })
        .collect();
    let mut seed = 0x9e37_79b9_u64;
    let last = 10;
    for n in 2..=last {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 1200));
        if n == 6 {
            // The replication connection is cut under a live run: it reconnects and goes on.
            cut_replication();
            std::thread::sleep(Duration::from_millis(1500));
        }
        drop(child);
        child = start(&env, n);
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

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
    if want.0 != got.0 {
        // Everything that helps to tell why: each run's last lines, the last run's state,
        // the server's sessions.
        let mut said = String::new();
        for n in 0..=last {
            let l = log(&env, n);
            let tail: Vec<&str> = l.lines().rev().take(6).collect();
            said.push_str(&format!("--- run {n}:\n"));
            for line in tail.into_iter().rev() {
                said.push_str(&line.chars().take(300).collect::<String>());
                said.push('\n');
            }
        }
        panic!(
            "t differs from its source: {}; the last run is {:?}; sessions:\n{}\n{said}",
            diff(&want.0, &got.0),
            child.0.try_wait(),
            my_cdc("", "SHOW PROCESSLIST")
        );
    }
    assert!(
        want.1 == got.1,
        "t2 differs from its source: {}",
        diff(&want.1, &got.1)
    );
    let rotated = my_cdc("", "SHOW BINARY LOGS").lines().count();
    assert!(rotated > 1, "the writers rotated the binary log");

    // A stop is exit 3; `sluice status` shows the binlog position.
    let pid = child.0.id().to_string();
    sh(Command::new("kill").args(["-TERM", &pid]));
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{status:?}");
    let o = env.run(&["status", &db.0]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("position {\"at\":{\"file\":\"binlog."),
        "{said}"
    );

    // The binary log the job needs is purged while it is stopped: refused, with the way out.
    // (The dump sessions runs killed with -9 left are ended first: the server does not purge
    // a file a session reads.)
    wait_for(30, "the binary logs to be purged", || {
        cut_replication();
        std::thread::sleep(Duration::from_millis(300));
        my_cdc("", "FLUSH BINARY LOGS");
        let current = my_cdc("", "SHOW MASTER STATUS");
        let current = current.split('\t').next().unwrap().to_string();
        my_cdc("", &format!("PURGE BINARY LOGS TO '{current}'"));
        my_cdc("", "SHOW BINARY LOGS").lines().count() == 1
    });
    let mut run = Running(
        env.cmd(&["run", "job.toml"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.path("purged.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(60);
    while run.0.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = run.0.try_wait().unwrap();
    let err = std::fs::read_to_string(env.path("purged.log")).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(
        err.contains("is no longer on the server") && err.contains("--from-scratch"),
        "{err}"
    );
}

/// Every column but `id`.
const COLS: &[&str] = &[
    "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "b1", "d1", "d2", "d3", "d4",
    "f", "dbl", "vc", "tx", "ch", "bl", "vb", "dt", "dtm", "dt0", "ts", "tm", "tm0", "yr", "js",
    "en", "st", "bt", "bt1",
];

/// One row of the SQLite target, every value quoted (blobs as X'…').
fn target_row(env: &Env, table: &str, cols: &[&str], id: i64) -> String {
    let c = rusqlite::Connection::open(env.path("target.db")).unwrap();
    let list: Vec<String> = cols.iter().map(|c| format!("quote(\"{c}\")")).collect();
    c.query_row(
        &format!(
            "SELECT {} FROM {table} WHERE id = ?",
            list.join(" || '|' || ")
        ),
        [id],
        |r| r.get::<_, String>(0),
    )
    .unwrap_or_default()
}

fn target_count(env: &Env, sql: &str) -> i64 {
    rusqlite::Connection::open(env.path("target.db"))
        .ok()
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)).ok())
        .unwrap_or(-1)
}

#[test]
fn mysql_cdc_carries_every_type_through_the_snapshot_and_the_stream() {
    let env = Env::new();
    let db = MyCdcDb::new();
    db.sql(&format!(
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'; {}",
        include_str!("../../sluice-connectors/tests/data/mysql_all_types.sql")
    ));
    // Types whose binary log form differs most from what a SELECT returns.
    db.sql(
        "CREATE TABLE odd (id int PRIMARY KEY, l1 varchar(20) CHARACTER SET latin1, \
         bn binary(4), ts0 timestamp NULL, en enum('x','y') NULL) ENGINE=InnoDB; \
         INSERT INTO odd VALUES (1, 'caf\u{e9} \u{20ac}', x'0100', '2001-02-03 04:05:06', 'y'), \
         (2, NULL, NULL, NULL, NULL)",
    );
    env.write(
        "job.toml",
        format!(
            "[job]\nname = \"{}\"\ncheckpoint_interval = \"200ms\"\n\
             [source]\ntype = \"mysql\"\nurl = \"{}\"\nread = \"cdc\"\n\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\nwrite = \"upsert\"\n",
            db.0,
            db.url(),
            env.path("target.db").display()
        ),
    );
    let mut child = start(&env, 0);
    wait_for(60, "the stream to start", || {
        log(&env, 0).contains("Streaming changes")
    });
    // The same values again, through the stream: inserted under new keys; then one row
    // updated and one deleted.
    db.sql(
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'; \
         INSERT INTO types SELECT id + 100, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, b1, d1, \
         d2, d3, d4, f, dbl, vc, tx, ch, bl, vb, dt, dtm, dt0, ts, tm, tm0, yr, js, en, st, bt, \
         bt1 FROM types; \
         UPDATE types SET tiu = 7, en = 'd e', st = 'y,z', ts = '2030-01-02 03:04:05.5' WHERE id = 103; \
         DELETE FROM types WHERE id = 104; \
         INSERT INTO odd SELECT id + 10, l1, bn, ts0, en FROM odd; \
         UPDATE odd SET l1 = 'na\u{ef}ve', bn = x'00000001' WHERE id = 11",
    );
    wait_for(60, "the streamed rows", || {
        target_count(&env, "SELECT count(*) FROM types WHERE id > 100") == 4
            && target_count(&env, "SELECT count(*) FROM odd WHERE l1 = 'na\u{ef}ve'") == 1
    });
    // Rows the stream wrote equal the rows the snapshot wrote (whose mapping the batch tests
    // check against the source), column for column.
    for id in [1, 2, 5] {
        let (snap, streamed) = (
            target_row(&env, "types", COLS, id),
            target_row(&env, "types", COLS, id + 100),
        );
        assert!(!snap.is_empty());
        assert_eq!(
            snap,
            streamed,
            "row {id} of types; the run's log:\n{}",
            log(&env, 0)
        );
    }
    assert_eq!(
        target_row(&env, "types", &["tiu", "en", "st", "ts"], 103),
        "7|'d e'|'y,z'|'2030-01-02 03:04:05.500000+00:00'"
    );
    assert_eq!(
        target_count(&env, "SELECT count(*) FROM types WHERE id = 104"),
        0
    );
    let odd = &["l1", "bn", "ts0", "en"];
    assert_eq!(
        target_row(&env, "odd", odd, 1),
        "'caf\u{e9} \u{20ac}'|X'01000000'|'2001-02-03 04:05:06.000000+00:00'|'y'"
    );
    assert_eq!(
        target_row(&env, "odd", odd, 2),
        target_row(&env, "odd", odd, 12)
    );
    assert_eq!(
        target_row(&env, "odd", odd, 11),
        "'na\u{ef}ve'|X'00000001'|'2001-02-03 04:05:06.000000+00:00'|'y'"
    );

    // A table created now matches `tables`, but is not in the capture: the log says so.
    db.sql("CREATE TABLE late (id int PRIMARY KEY)");
    wait_for(30, "the warning about the uncaptured table", || {
        log(&env, 0).contains("table=late")
    });
    // DDL on a captured table stops the stream before it, naming the table and statement.
    db.sql("ALTER TABLE odd ADD COLUMN extra int");
    let until = Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = child.0.try_wait().unwrap();
    let said = log(&env, 0);
    assert!(status.is_some_and(|s| !s.success()), "{status:?}: {said}");
    assert!(
        said.contains("table odd changed while it was captured")
            && said.contains("ADD COLUMN extra"),
        "{said}"
    );
}

/// Every column of `types` and `odd`, quoted (binary and text as hex), NULL as `NULL`.
fn exact_rows(sql: &dyn Fn(&str) -> String) -> (String, String) {
    let types: Vec<String> = std::iter::once("id")
        .chain(COLS.iter().copied())
        .map(|c| match c {
            "vc" | "tx" | "ch" | "bl" | "vb" | "js" | "en" | "st" | "bt" | "bt1" => {
                format!("QUOTE(HEX({c}))")
            }
            c => format!("QUOTE({c})"),
        })
        .collect();
    (
        sql(&format!(
            "SELECT concat_ws('|', {}) FROM types ORDER BY id",
            types.join(", ")
        )),
        sql(
            "SELECT concat_ws('|', id, QUOTE(HEX(l1)), QUOTE(HEX(bn)), QUOTE(ts0), QUOTE(en)) \
             FROM odd ORDER BY id",
        ),
    )
}

#[test]
fn mysql_cdc_into_mariadb_keeps_every_value_and_applies_every_change() {
    let env = Env::new();
    let db = MyCdcDb::new();
    let target = MyDb::new();
    db.sql(&format!(
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'; {}",
        include_str!("../../sluice-connectors/tests/data/mysql_all_types.sql")
    ));
    db.sql(
        "CREATE TABLE odd (id int PRIMARY KEY, l1 varchar(20) CHARACTER SET latin1, \
         bn binary(4), ts0 timestamp NULL, en enum('x','y') NULL) ENGINE=InnoDB; \
         INSERT INTO odd VALUES (1, 'caf\u{e9} \u{20ac}', x'0100', '2001-02-03 04:05:06', 'y'), \
         (2, NULL, NULL, NULL, NULL)",
    );
    env.write(
        "job.toml",
        format!(
            "[job]\nname = \"{}\"\ncheckpoint_interval = \"200ms\"\n\
             [source]\ntype = \"mysql\"\nurl = \"{}\"\nread = \"cdc\"\n\
             [sink]\ntype = \"mysql\"\nurl = \"{}\"\nwrite = \"upsert\"\n",
            db.0,
            db.url(),
            target.url()
        ),
    );
    let mut child = start(&env, 0);
    wait_for(60, "the stream to start", || {
        log(&env, 0).contains("Streaming changes")
    });
    // Inserts, updates (one of a key), deletes, several events of one key in one commit, a
    // transaction over both tables, and a TRUNCATE.
    db.sql(
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'; \
         INSERT INTO types SELECT id + 100, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, b1, d1, \
         d2, d3, d4, f, dbl, vc, tx, ch, bl, vb, dt, dtm, dt0, ts, tm, tm0, yr, js, en, st, bt, \
         bt1 FROM types; \
         UPDATE types SET tiu = 7, en = 'd e', st = 'y,z', ts = '2030-01-02 03:04:05.5' WHERE id = 103; \
         UPDATE types SET id = 200 WHERE id = 105; \
         DELETE FROM types WHERE id = 104; \
         BEGIN; INSERT INTO types (id, vc) VALUES (300, 'a'); UPDATE types SET vc = 'b' WHERE id = 300; \
         DELETE FROM types WHERE id = 300; INSERT INTO types (id, vc) VALUES (300, 'c'); \
         INSERT INTO types (id, vc) VALUES (301, 'gone'); DELETE FROM types WHERE id = 301; \
         INSERT INTO odd SELECT id + 10, l1, bn, ts0, en FROM odd; COMMIT; \
         UPDATE odd SET l1 = 'na\u{ef}ve', bn = x'00000001' WHERE id = 11; \
         TRUNCATE odd; INSERT INTO odd VALUES (5, 'après', x'05', '2024-02-29 12:00:00', 'x')",
    );
    let src = |q: &str| db.sql(q);
    let dst = |q: &str| mysql(&target.0, q);
    let until = Instant::now() + Duration::from_secs(60);
    while exact_rows(&src) != exact_rows(&dst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(300));
    }
    let (want, got) = (exact_rows(&src), exact_rows(&dst));
    for (w, g) in want.0.lines().zip(got.0.lines()) {
        assert_eq!(
            w,
            g,
            "a row of types differs; the run's log:\n{}",
            log(&env, 0)
        );
    }
    assert_eq!(want, got, "the run's log:\n{}", log(&env, 0));
    assert_eq!(want.0.lines().count(), 10, "{}", want.0);
    assert_eq!(want.1.lines().count(), 1, "{}", want.1);
    let _ = child.0.kill();
    child.0.wait().unwrap();
}

/// Resumes the stopped CDC MariaDB when the test ends, however it ends.
struct Frozen(String);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

#[test]
fn mysql_cdc_notices_a_hung_server_and_goes_on_when_it_answers() {
    let env = Env::new();
    let db = MyCdcDb::new();
    db.sql("CREATE TABLE t (id int PRIMARY KEY, v varchar(10)); INSERT INTO t VALUES (1, 'a')");
    env.write(
        "job.toml",
        format!(
            "[job]\nname = \"{}\"\ncheckpoint_interval = \"200ms\"\n\
             [source]\ntype = \"mysql\"\nurl = \"{}\"\nread = \"cdc\"\n\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\nwrite = \"upsert\"\n",
            db.0,
            db.url(),
            env.path("target.db").display()
        ),
    );
    let child = start(&env, 0);
    wait_for(60, "the stream to start", || {
        log(&env, 0).contains("Streaming changes")
    });
    // The server stops answering (its process is stopped: connections stay open, silent).
    let pid = std::fs::read_to_string("/var/tmp/sluice-mariadb-cdc/mysqld.pid")
        .unwrap()
        .trim()
        .to_string();
    let frozen = Frozen(pid.clone());
    sh(Command::new("kill").args(["-STOP", &pid]));
    wait_for(60, "the silence to be noticed", || {
        log(&env, 0).contains("not even a heartbeat")
    });
    drop(frozen);
    db.sql("INSERT INTO t VALUES (2, 'b'); UPDATE t SET v = 'c' WHERE id = 1");
    wait_for(60, "the changes after the silence", || {
        target_rows(&env, "t", "id, v") == ["1|c", "2|b"]
    });
    drop(child);
}

#[test]
fn mysql_cdc_refuses_what_it_cannot_capture_and_names_the_fix() {
    let env = Env::new();
    // The shared server has no binary log.
    let plain = MyDb::new();
    mysql(&plain.0, "CREATE TABLE t (id int PRIMARY KEY)");
    let job = |url: &str, extra: &str| {
        format!(
            "[job]\nname = \"w\"\n[source]\ntype = \"mysql\"\nurl = \"{url}\"\nread = \"cdc\"\n{extra}\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\nwrite = \"upsert\"\n",
            env.path("o.db").display()
        )
    };
    env.write("job.toml", job(&plain.url(), ""));
    for cmd in ["validate", "run"] {
        let o = env.run(&[cmd, "job.toml"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("log_bin"), "{cmd}: {err}");
    }

    let db = MyCdcDb::new();
    // A table without a primary key.
    db.sql("CREATE TABLE nokey (a int)");
    env.write("job.toml", job(&db.url(), ""));
    let o = env.run(&["run", "job.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no primary key"), "{err}");
    // A type the stream cannot decode yet.
    db.sql("DROP TABLE nokey; CREATE TABLE u (id int PRIMARY KEY, x inet6)");
    let o = env.run(&["run", "job.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("inet6") && err.contains("exclude"), "{err}");
    // Statement-based logging.
    db.sql("DROP TABLE u; CREATE TABLE k (id int PRIMARY KEY)");
    env.write("job.toml", job(&db.url(), "server_id = 1\n"));
    let o = env.run(&["validate", "job.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("server_id"), "{err}");
    // CDC options without read = "cdc".
    env.write(
        "opts.toml",
        format!(
            "[job]\nname = \"o\"\n[source]\ntype = \"mysql\"\nurl = \"{}\"\nserver_id = 7\n\
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
