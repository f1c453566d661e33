//! Crash tests against the real database servers: run a copy, `kill -9` it at random
//! moments (at least 20 times), resume until it finishes, then compare target and source row
//! for row. PostgreSQL and MariaDB come from `scripts/test-services.sh`; every test uses its
//! own databases and drops them at the end. A server that is down fails the test.
//!
//! Replay a failure with `SLUICE_CRASH_SEED=<seed printed in the failure>`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

mod support;

use support::{MyDb, PgDb, mysql, psql, sh, unique};

/// Large enough that 20 kills at random moments land before a copy can finish.
const ROWS: i64 = 400_000;

/// Source rows as `id\tv\tnote` lines, sorted (what both CLIs print).
fn expected() -> Vec<String> {
    let mut v: Vec<String> = (1..=ROWS)
        .map(|g| format!("{g}\t{}\tn{}", g * 3, g % 97))
        .collect();
    v.sort();
    v
}

fn pg_source(pk: bool) -> PgDb {
    let db = PgDb::new();
    let key = if pk { " PRIMARY KEY" } else { "" };
    psql(
        &db.0,
        &format!(
            "CREATE TABLE t (id bigint{key}, v bigint NOT NULL, note text);
             INSERT INTO t SELECT g, g * 3, 'n' || (g % 97) FROM generate_series(1, {ROWS}) g;
             ANALYZE t;"
        ),
    );
    db
}

fn my_source(pk: bool) -> MyDb {
    let db = MyDb::new();
    let key = if pk { " PRIMARY KEY" } else { "" };
    mysql(
        &db.0,
        &format!(
            "CREATE TABLE t (id bigint{key}, v bigint NOT NULL, note varchar(20));
             INSERT INTO t SELECT seq, seq * 3, CONCAT('n', seq % 97) FROM seq_1_to_{ROWS};"
        ),
    );
    db
}

fn pg_rows(db: &PgDb, table: &str) -> Vec<String> {
    let mut v: Vec<String> = psql(
        &db.0,
        &format!("COPY (SELECT id, v, note FROM {table}) TO STDOUT"),
    )
    .lines()
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

fn my_rows(db: &MyDb, table: &str) -> Vec<String> {
    let mut v: Vec<String> = mysql(&db.0, &format!("SELECT id, v, note FROM {table}"))
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn seed() -> u64 {
    std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new(source: &str, sink: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("job.toml"),
            format!(
                "[job]\nname = \"crash\"\nparallelism = 2\n\n[source]\n{source}\n\n[sink]\n{sink}\n"
            ),
        )
        .unwrap();
        Job { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("sluice").unwrap();
        c.current_dir(self.dir.path())
            .env_remove("SLUICE_STATE")
            .args(args);
        c
    }
    fn run(&self) -> Output {
        self.cmd(&["run", "job.toml"]).output().unwrap()
    }

    /// Whether the last run recorded that it finished.
    fn finished(&self) -> bool {
        let o = self
            .cmd(&["status", "crash", "--format", "json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["jobs"][0]["runs"][0]["state"] == "FINISHED"
    }

    /// Kills the job `kills` times at random moments (or until it finishes on its own), then
    /// runs it to the end. Returns the kills that landed.
    fn kill_and_resume(&self, kills: usize, max_delay_ms: u64, seed: u64) -> usize {
        let mut rng = Rng(seed);
        let mut killed = 0;
        while killed < kills {
            let mut child = self
                .cmd(&["run", "job.toml"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(30 + rng.below(max_delay_ms)));
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "seed {seed}: a run failed before it was killed"
                );
                return killed;
            }
            child.kill().unwrap();
            child.wait().unwrap();
            killed += 1;
            if self.finished() {
                // Killed after the run had recorded its end: running again would be a new run.
                return killed;
            }
        }
        let o = self.run();
        assert_eq!(
            o.status.code(),
            Some(0),
            "seed {seed}: the final run failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        killed
    }
}

fn check(seed: u64, killed: usize, got: Vec<String>) {
    check_rows(seed, killed, got, expected());
}

fn check_rows(seed: u64, killed: usize, got: Vec<String>, want: Vec<String>) {
    assert!(
        killed >= 20,
        "seed {seed}: only {killed} kills landed; the job finished too fast"
    );
    assert_eq!(
        got.len(),
        want.len(),
        "seed {seed}: {killed} kills; row count differs"
    );
    let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        first_diff.is_none(),
        "seed {seed}: rows differ at {first_diff:?} after {killed} kills"
    );
}

fn pg_to_pg(pk: bool, write: &str) {
    let s = seed();
    let src = pg_source(pk);
    let dst = PgDb::new();
    if write == "upsert" {
        // Stale values the upsert must replace.
        psql(
            &dst.0,
            "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
                      INSERT INTO t SELECT g, -1, 'stale' FROM generate_series(1, 5000) g;",
        );
    }
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 5000",
            src.url()
        ),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\nwrite = \"{write}\"",
            dst.url()
        ),
    );
    let killed = job.kill_and_resume(20, 120, s);
    check(s, killed, pg_rows(&dst, "t"));
}

#[test]
fn crash_pg_to_pg_append_with_key() {
    pg_to_pg(true, "append");
}

#[test]
fn crash_pg_to_pg_append_without_key() {
    pg_to_pg(false, "append");
}

#[test]
fn crash_pg_to_pg_upsert() {
    pg_to_pg(true, "upsert");
}

fn mysql_to_pg(pk: bool, write: &str) {
    let s = seed();
    let src = my_source(pk);
    let dst = PgDb::new();
    let job = Job::new(
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntables = [\"t\"]\nchunk_rows = 5000",
            src.url()
        ),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\nwrite = \"{write}\"",
            dst.url()
        ),
    );
    let killed = job.kill_and_resume(20, 120, s);
    check(s, killed, pg_rows(&dst, "t"));
}

#[test]
fn crash_mysql_to_pg_append_with_key() {
    mysql_to_pg(true, "append");
}

#[test]
fn crash_mysql_to_pg_append_without_key() {
    mysql_to_pg(false, "append");
}

#[test]
fn crash_mysql_to_pg_upsert() {
    mysql_to_pg(true, "upsert");
}

fn pg_to_mysql(pk: bool, write: &str) {
    let s = seed();
    let src = pg_source(pk);
    let dst = MyDb::new();
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 5000",
            src.url()
        ),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\nwrite = \"{write}\"\ntable_map = {{ \"public.t\" = \"t\" }}",
            dst.url()
        ),
    );
    let killed = job.kill_and_resume(20, 120, s);
    check(s, killed, my_rows(&dst, "t"));
}

#[test]
fn crash_pg_to_mysql_append_with_key() {
    pg_to_mysql(true, "append");
}

#[test]
fn crash_pg_to_mysql_append_without_key() {
    pg_to_mysql(false, "append");
}

#[test]
fn crash_pg_to_mysql_upsert() {
    pg_to_mysql(true, "upsert");
}

fn csv_to_pg(write: &str) {
    let s = seed();
    let dst = PgDb::new();
    let job = Job::new(
        "type = \"csv\"\npath = \"in\"\ntable = \"t\"\nschema = { id = \"int64\", v = \"int64\" }",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\nwrite = \"{write}\"",
            dst.url()
        ),
    );
    std::fs::create_dir_all(job.path("in")).unwrap();
    // Five times the rows of the database sources: CSV is read fast enough that a smaller input
    // can finish before 20 kills have landed.
    let mut want = Vec::new();
    for f in 0..200 {
        let mut text = String::from("id,v,note\n");
        for g in (f * 5000 + 1)..=((f + 1) * 5000) {
            text.push_str(&format!("{g},{},n{}\n", g * 3, g % 97));
            want.push(format!("{g}\t{}\tn{}", g * 3, g % 97));
        }
        std::fs::write(job.path(&format!("in/p{f:03}.csv")), text).unwrap();
    }
    want.sort();
    let killed = job.kill_and_resume(20, 100, s);
    check_rows(s, killed, pg_rows(&dst, "t"), want);
}

#[test]
fn crash_csv_to_pg_append() {
    csv_to_pg("append");
}

#[test]
fn stop_while_a_query_hangs_completes_within_the_deadline() {
    let src = PgDb::new();
    let dst = PgDb::new();
    psql(
        &src.0,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
    );
    // The source query sleeps for a minute: a stop must cancel it rather than wait.
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\nquery = \"SELECT id, pg_sleep(60)::text AS s FROM t\"",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let child = job
        .cmd(&["run", "job.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let o = job
            .cmd(&["stop", "crash", "--timeout", "3s"])
            .output()
            .unwrap();
        if o.status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "job never became controllable"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        asked.elapsed()
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The sleeping query is gone from the server (its backend may take a moment to exit
    // after the cancel; pg_sleep(60) would stay for a minute).
    let sleeping = || {
        psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
                src.0
            ),
        )
    };
    let mut left = sleeping();
    while left.trim() != "0" && asked.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        left = sleeping();
    }
    assert_eq!(left.trim(), "0", "the hung query was not cancelled");
}

// ---------------------------------------------------------------------------------------
// Cross-engine copies: every value the target can hold arrives unchanged; a type it cannot
// hold is refused before any data moves.

fn one_shot(source: &str, sink: &str) -> Output {
    let job = Job::new(source, sink);
    let o = job.run();
    // Keep the directory alive until the run is over.
    drop(job);
    o
}

#[test]
fn pg_to_mysql_keeps_every_value_the_target_can_hold() {
    let src = PgDb::new();
    let dst = MyDb::new();
    psql(
        &src.0,
        r#"CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
           CREATE TABLE types (id int PRIMARY KEY, i2 smallint, i8 bigint, n numeric(20,5),
             f8 double precision, t text, vc varchar(44), b bytea, bo boolean, d date,
             ts timestamp(6), tz timestamptz, u uuid, j json, m mood);
           INSERT INTO types VALUES
            (1, -32768, -9223372036854775808, -123456789012345.12345, -0.5, 'héllo 🧊 "q"	tab',
             'x', '\x00ff10', true, '1970-01-01', '2024-02-29 23:59:59.123456',
             '2024-06-01 12:00:00.5+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1,  2]}', 'happy'),
            (2, 32767, 9223372036854775807, 0.00001, 1e300, '', 'y', '\x', false, '9999-12-31',
             '1000-01-01 00:00:00', '1970-01-01 00:00:00+00', NULL, 'null', 'sad'),
            (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);"#,
    );
    let o = one_shot(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.types\"]",
            src.url()
        ),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntable_map = {{ \"public.types\" = \"types\" }}",
            dst.url()
        ),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = mysql(
        &dst.0,
        "SELECT id, i2, i8, n, f8, HEX(t), vc, HEX(b), bo, d, ts, tz, u, j, m FROM types ORDER BY id",
    );
    let want = [
        "1\t-32768\t-9223372036854775808\t-123456789012345.12345\t-0.5\t68C3A96C6C6F20F09FA78A2022712209746162\tx\t00FF10\t1\t1970-01-01\t2024-02-29 23:59:59.123456\t2024-06-01 10:00:00.500000\ta0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\t{\"a\": [1,  2]}\thappy",
        "2\t32767\t9223372036854775807\t0.00001\t1e300\t\ty\t\t0\t9999-12-31\t1000-01-01 00:00:00.000000\t1970-01-01 00:00:00.000000\tNULL\tnull\tsad",
        "3\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL\tNULL",
    ];
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got, want);
}

#[test]
fn mysql_to_pg_keeps_every_value_the_target_can_hold() {
    let src = MyDb::new();
    let dst = PgDb::new();
    mysql(
        &src.0,
        r#"CREATE TABLE mt (id int PRIMARY KEY, tu tinyint unsigned, bu bigint unsigned,
             d65 decimal(65,30), dt datetime(6), tm time(6), y year, s set('a','b','c'),
             e enum('x','y'), bt bit(8), j json, bl blob, ch varchar(10));
           INSERT INTO mt VALUES
            (1, 255, 18446744073709551615,
             12345678901234567890123456789012345.123456789012345678901234567890,
             '2024-02-29 23:59:59.123456', '838:59:59.000000', 2024, 'a,c', 'y', b'10100101',
             '{"k":  "v"}', x'00ff', 'ünï 🧊'),
            (2, 0, 0, -0.000000000000000000000000000001, '1000-01-01 00:00:00', '-12:30:00.5',
             1901, '', 'x', b'0', '[]', x'', ''),
            (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);"#,
    );
    let o = one_shot(
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntables = [\"mt\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = psql(
        &dst.0,
        "COPY (SELECT id, tu, bu, d65, dt, tm, y, s, e, bt, j, encode(bl, 'hex'), ch FROM mt ORDER BY id) TO STDOUT",
    );
    let want = [
        "1\t255\t18446744073709551615\t12345678901234567890123456789012345.123456789012345678901234567890\t2024-02-29 23:59:59.123456\t838:59:59\t2024\ta,c\ty\t165\t{\"k\":  \"v\"}\t00ff\tünï 🧊",
        "2\t0\t0\t-0.000000000000000000000000000001\t1000-01-01 00:00:00\t-12:30:00.5\t1901\t\tx\t0\t[]\t\t",
        "3\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N",
    ];
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got, want);
}

#[test]
fn a_type_the_target_cannot_hold_is_refused_before_any_data_moves() {
    let src = PgDb::new();
    let dst = MyDb::new();
    psql(
        &src.0,
        "CREATE TABLE iv (id int PRIMARY KEY, span interval); INSERT INTO iv VALUES (1, '1 day');",
    );
    let o = one_shot(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.iv\"]",
            src.url()
        ),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntable_map = {{ \"public.iv\" = \"iv\" }}",
            dst.url()
        ),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("span") && err.contains("interval"), "{err}");
    assert!(err.contains("cast"), "the hint names the override: {err}");
    let tables = mysql(&dst.0, "SHOW TABLES");
    assert!(!tables.contains("iv"), "no table may be created: {tables}");
}

// ---------------------------------------------------------------------------------------
// A database crash and restart in the middle of a copy: the writer's connection breaks, the
// split is rolled back and redone after back-offs that outlast the restart, and the copy ends
// exact.

/// A private PostgreSQL server on its own port, stopped and deleted when dropped.
struct PrivatePg {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePg {
    fn start(port: u16) -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (run scripts/test-services.sh)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("no initdb under /usr/lib/postgresql/*/bin");
        let dir = PathBuf::from(format!("/var/tmp/sluice-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        sh(Command::new("chown").arg("postgres:postgres").arg(&dir));
        let data = dir.join("data");
        sh(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data));
        let pg = PrivatePg { dir, port, bin };
        pg.ctl(&["start", "-w"]);
        pg
    }
    fn ctl(&self, args: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        sh(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("log"))
            .args(args));
    }
    fn psql(&self, db: &str, sql: &str) -> String {
        sh(Command::new("psql").args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ]))
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_database_restart_in_the_middle_of_a_copy_is_survived() {
    let src = PgDb::new();
    psql(
        &src.0,
        "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
         INSERT INTO t SELECT g, g * 3, 'n' || (g % 97) FROM generate_series(1, 1000000) g; ANALYZE t;",
    );
    let dst = PrivatePg::start(5491);
    dst.psql("postgres", "CREATE DATABASE dst");
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 50000",
            src.url()
        ),
        "type = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5491/dst\"",
    );
    let child = job
        .cmd(&["run", "job.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Restart the target once rows are flowing.
    let started = Instant::now();
    loop {
        let n = dst.psql(
            "dst",
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%'",
        );
        if n.trim() != "0" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the copy never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A crash (no shutdown checkpoint), down for a few seconds, then crash recovery, during
    // which connections are refused with 57P03 "the database system is starting up": the
    // retries must outlast all of it (issue 9, case 29).
    dst.ctl(&["stop", "-m", "immediate"]);
    std::thread::sleep(Duration::from_secs(6));
    dst.ctl(&["start", "-w"]);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Transient error; redoing the split"),
        "the restart was noticed: {err}"
    );
    let count = dst.psql("dst", "SELECT count(*), sum(id), sum(v) FROM t");
    assert_eq!(count.trim(), "1000000|500000500000|1500001500000");
}

#[test]
fn job_verify_true_fails_a_run_whose_target_differs() {
    let src = PgDb::new();
    let dst = PgDb::new();
    psql(
        &src.0,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g;",
    );
    let job = |name: &str| {
        let j = Job::new(
            &format!(
                "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]",
                src.url()
            ),
            &format!(
                "type = \"postgres\"\nurl = \"{}\"\nwrite = \"upsert\"",
                dst.url()
            ),
        );
        let text = std::fs::read_to_string(j.path("job.toml")).unwrap();
        std::fs::write(
            j.path("job.toml"),
            text.replace("[job]\n", &format!("[job]\nverify = true\n# {name}\n")),
        )
        .unwrap();
        j
    };
    let j = job("clean");
    let o = j.run();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("verify:"));
    // A row the source does not have: the copy succeeds, verify does not.
    psql(&dst.0, "INSERT INTO t VALUES (999999, 'stray')");
    let j = job("dirty");
    let o = j.run();
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("verify found differences"));
    let s = j
        .cmd(&["status", "crash", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["jobs"][0]["runs"][0]["state"], "FAILED");
}

// ---------------------------------------------------------------------------------------
// Fidelity into MySQL/MariaDB: nothing rounded silently; a same-engine copy is lossless.

#[test]
fn pg_numeric_mysql_would_round_fails_naming_the_row() {
    let src = PgDb::new();
    let dst = MyDb::new();
    psql(
        &src.0,
        "CREATE TABLE nums (id int PRIMARY KEY, n numeric, m numeric(50,35));
         INSERT INTO nums VALUES (1, 1.5, 1), (2, 1.0000000000000000000000000000001, 2);",
    );
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.nums\"]",
            src.url()
        ),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntable_map = {{ \"public.nums\" = \"nums\" }}",
            dst.url()
        ),
    );
    // validate says which values would fail, for both columns.
    let v = job.cmd(&["validate", "job.toml"]).output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let narrowing: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("decimal(65,30)") && l.contains("30 decimal places"))
        .collect();
    assert!(
        narrowing.iter().any(|l| l.trim_start().starts_with('n'))
            && narrowing.iter().any(|l| l.trim_start().starts_with('m')),
        "{out}"
    );
    // The run fails on row 2, naming table, column and key; nothing is rounded.
    let o = job.run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nums")
            && err.contains("\"n\"")
            && err.contains("id = 2")
            && err.contains("31 decimal places"),
        "{err}"
    );
    assert!(err.contains("cast"), "the hint names the override: {err}");
    assert_eq!(mysql(&dst.0, "SELECT COUNT(*) FROM nums").trim(), "0");
    // Once the value fits, the table Sluice created is accepted again and the copy is exact.
    psql(
        &src.0,
        "UPDATE nums SET n = 0.000000000000000000000000000001 WHERE id = 2",
    );
    let o = job.run();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        mysql(&dst.0, "SELECT id, n, m FROM nums ORDER BY id"),
        "1\t1.500000000000000000000000000000\t1.000000000000000000000000000000\n\
         2\t0.000000000000000000000000000001\t2.000000000000000000000000000000\n"
    );
}

#[test]
fn mariadb_to_mariadb_copy_is_lossless() {
    let src = MyDb::new();
    let dst = MyDb::new();
    mysql(
        &src.0,
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';
         CREATE TABLE z (id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
           name varchar(20) COLLATE latin1_swedish_ci NOT NULL, tag varchar(10),
           d date NOT NULL, dt datetime(3) NOT NULL, dn date,
           twice int AS (id * 2) VIRTUAL, label varchar(40) AS (concat(name, '/', d)) STORED
         ) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
         INSERT INTO z (id, name, tag, d, dt, dn) VALUES
           (1, 'été', 'A', '0000-00-00', '0000-00-00 00:00:00', '2024-00-10'),
           (2, 'Zoë', 'b', '2024-05-00', '2024-00-00 10:11:12.345', NULL),
           (3, 'plain', NULL, '1999-12-31', '1999-12-31 23:59:59.999', '0000-00-00');
         CREATE VIEW upper_names AS SELECT id, UPPER(name) AS name FROM z;",
    );
    let job = Job::new(
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntables = [\"z\", \"upper_names\"]",
            src.url()
        ),
        &format!("type = \"mysql\"\nurl = \"{}\"", dst.url()),
    );
    let o = job.run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("upper_names is a view"),
        "the log says so: {err}"
    );
    let shape = |db: &MyDb, t: &str| {
        mysql(
            &db.0,
            &format!(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLLATION_NAME, EXTRA,
                   GENERATION_EXPRESSION FROM information_schema.columns
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{t}' ORDER BY ORDINAL_POSITION;
                 SELECT ENGINE, TABLE_COLLATION FROM information_schema.tables
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{t}'"
            ),
        )
    };
    assert_eq!(shape(&dst, "z"), shape(&src, "z"));
    let rows = "SELECT id, name, HEX(name), tag, CAST(d AS CHAR), CAST(dt AS CHAR), \
                CAST(dn AS CHAR), twice, label FROM z ORDER BY id";
    assert_eq!(mysql(&dst.0, rows), mysql(&src.0, rows));
    assert!(mysql(&dst.0, rows).contains("0000-00-00"));
    // Case-insensitive keys and comparisons, as in the source.
    assert_eq!(
        mysql(&dst.0, "SELECT id FROM z WHERE name = 'ZOË'").trim(),
        "2"
    );
    // The view's rows, in a table.
    assert_eq!(
        mysql(&dst.0, "SELECT id, name FROM upper_names ORDER BY id"),
        mysql(&src.0, "SELECT id, name FROM upper_names ORDER BY id")
    );
    // AUTO_INCREMENT continues after the copied keys.
    mysql(
        &dst.0,
        "INSERT INTO z (name, d, dt) VALUES ('new', '2024-01-01', '2024-01-01')",
    );
    assert_eq!(mysql(&dst.0, "SELECT MAX(id) FROM z").trim(), "4");
}

#[test]
fn generated_columns_of_an_existing_target_are_not_written() {
    let src = MyDb::new();
    mysql(
        &src.0,
        "CREATE TABLE a (id int PRIMARY KEY, v int); INSERT INTO a VALUES (1, 1);
         CREATE TABLE g (id int PRIMARY KEY, v int, doubled int);
         INSERT INTO g VALUES (1, 21, 0), (2, NULL, 7);",
    );
    // (MariaDB ignores a value LOAD DATA gives a generated column with a note; INSERT, and
    // MySQL, refuse it.)
    for method in ["load_data", "insert"] {
        let dst = MyDb::new();
        mysql(
            &dst.0,
            "CREATE TABLE g (id int PRIMARY KEY, v int, doubled int AS (v * 2) STORED)",
        );
        let job = Job::new(
            &format!(
                "type = \"mysql\"\nurl = \"{}\"\ntables = [\"a\", \"g\"]",
                src.url()
            ),
            &format!(
                "type = \"mysql\"\nurl = \"{}\"\nmethod = \"{method}\"",
                dst.url()
            ),
        );
        let o = job.run();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{method}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            mysql(&dst.0, "SELECT id, v, doubled FROM g ORDER BY id"),
            "1\t21\t42\n2\tNULL\tNULL\n",
            "{method}"
        );
        assert_eq!(mysql(&dst.0, "SELECT COUNT(*) FROM a").trim(), "1");
    }
}

// ---------------------------------------------------------------------------------------
// Fidelity of PostgreSQL sources (issue 9): keys, inheritance, generated columns, views,
// sequences.

/// Runs `job` (a job directory) and asserts exit 0, returning stdout and stderr.
fn run_ok(job: &Job) -> (String, String) {
    let o = job.run();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    (out, err)
}

/// Issue 9, case 10: Pagila's `actor` has `PRIMARY KEY (actor_id) INCLUDE (…)`-style keys;
/// the key is `actor_id` alone, for upserts and for `verify`, which locates a changed row.
#[test]
fn primary_key_with_include_columns_upserts_and_verifies_by_its_key() {
    let src = PgDb::new();
    let dst = PgDb::new();
    psql(
        &src.0,
        "CREATE TABLE actor (actor_id int NOT NULL, first_name text NOT NULL, \
           last_name text NOT NULL, CONSTRAINT actor_pkey PRIMARY KEY (actor_id) INCLUDE (last_name));
         INSERT INTO actor SELECT g, 'f' || g, 'l' || g FROM generate_series(1, 300) g;",
    );
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.actor\"]",
            src.url()
        ),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\nwrite = \"upsert\"",
            dst.url()
        ),
    );
    run_ok(&job);
    psql(
        &src.0,
        "UPDATE actor SET last_name = 'changed' WHERE actor_id = 7",
    );
    run_ok(&job);
    assert_eq!(
        psql(
            &dst.0,
            "SELECT count(*), count(DISTINCT actor_id) FROM actor"
        )
        .trim(),
        "300|300"
    );
    let o = job
        .cmd(&["verify", "job.toml", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["tables"][0]["key"], "actor_id", "{doc}");
    // A difference is located by its key.
    psql(
        &dst.0,
        "UPDATE actor SET first_name = 'x' WHERE actor_id = 42",
    );
    let o = job
        .cmd(&["verify", "job.toml", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["tables"][0]["diffs"][0]["key"], 42, "{doc}");
}

/// Issue 9, case 13: generated columns of pre-created targets are left to the target (the
/// copy used to fail on them half-way, after other tables had committed, although `validate`
/// said OK); a view named explicitly is copied into a table, and both `validate` and the run
/// say so; globs skip views.
#[test]
fn generated_target_columns_and_named_views() {
    let src = PgDb::new();
    let dst = PgDb::new();
    psql(
        &src.0,
        "CREATE TABLE a_plain (id int PRIMARY KEY, v text);
         INSERT INTO a_plain SELECT g, 'v' || g FROM generate_series(1, 100) g;
         CREATE TABLE g (id int PRIMARY KEY, price numeric(10,2), qty int,
           total numeric(12,2) GENERATED ALWAYS AS (price * qty) STORED);
         INSERT INTO g (id, price, qty) SELECT x, x / 4.0, x % 7 FROM generate_series(1, 100) x;
         CREATE VIEW big_totals AS SELECT id, total FROM g WHERE total > 100;",
    );
    psql(
        &dst.0,
        "CREATE TABLE a_plain (id int PRIMARY KEY, v text);
         CREATE TABLE g (id int PRIMARY KEY, price numeric(10,2), qty int,
           total numeric(12,2) GENERATED ALWAYS AS (price * qty) STORED);",
    );
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.*\", \"public.big_totals\"]",
            src.url()
        ),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ncreate_tables = true",
            dst.url()
        ),
    );
    let o = job.cmd(&["validate", "job.toml"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Reading a view") && err.contains("big_totals"),
        "validate names the view: {err}"
    );
    let (_, err) = run_ok(&job);
    assert!(
        err.contains("Reading a view"),
        "the run names the view: {err}"
    );
    let q = "SELECT id, price, qty, total FROM g ORDER BY id";
    assert_eq!(psql(&dst.0, q), psql(&src.0, q));
    assert_eq!(
        psql(
            &dst.0,
            "SELECT relkind FROM pg_class WHERE relname = 'big_totals'"
        )
        .trim(),
        "r"
    );
    let q = "SELECT id, total FROM big_totals ORDER BY id";
    assert_eq!(psql(&dst.0, q), psql(&src.0, q));
    // A glob alone does not take the view.
    let dst2 = PgDb::new();
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.*\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst2.url()),
    );
    let (_, err) = run_ok(&job);
    assert!(!err.contains("Reading a view"), "{err}");
    assert_eq!(
        psql(
            &dst2.0,
            "SELECT count(*) FROM pg_class WHERE relname = 'big_totals'"
        )
        .trim(),
        "0"
    );
    // PostgreSQL to PostgreSQL: the created table computes the column too.
    assert_eq!(
        psql(
            &dst2.0,
            "SELECT attgenerated FROM pg_attribute WHERE attrelid = 'g'::regclass AND attname = 'total'"
        )
        .trim(),
        "s"
    );
}

/// Issue 9, case 14: a pre-created target with a serial key takes the loaded ids, and its
/// sequence is advanced past them, so the application's next INSERT does not collide.
#[test]
fn serial_sequence_of_a_pre_created_target_is_advanced() {
    let src = MyDb::new();
    let dst = PgDb::new();
    mysql(
        &src.0,
        "CREATE TABLE orders (id int PRIMARY KEY, v varchar(10));
         INSERT INTO orders SELECT seq, CONCAT('v', seq) FROM seq_1_to_2500;",
    );
    psql(
        &dst.0,
        "CREATE TABLE orders (id serial PRIMARY KEY, v text);",
    );
    let job = Job::new(
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntables = [\"orders\"]\nchunk_rows = 1000",
            src.url()
        ),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ncreate_tables = false",
            dst.url()
        ),
    );
    run_ok(&job);
    assert_eq!(
        psql(&dst.0, "INSERT INTO orders (v) VALUES ('app') RETURNING id").trim(),
        "2501"
    );
}

/// Issue 9, case 8: a row set aside goes to the dead-letter file with every value, exactly:
/// PostgreSQL reads the file's values back into the row the source has.
#[test]
fn dead_letter_rows_keep_every_value() {
    let src = PgDb::new();
    let dst = PgDb::new();
    psql(
        &src.0,
        r#"CREATE TABLE t (id int PRIMARY KEY, code text, tz timestamptz, ts timestamp(3),
             d date, tm time, n numeric(20,5), nu numeric, f8 double precision, b bool,
             iv interval, u uuid, j jsonb, ai int[], atz timestamptz[], by bytea);
           INSERT INTO t VALUES
            (1, '1', now(), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            (2, 'oops', '2024-06-01 12:00:00.5+02', '2024-02-29 23:59:59.123', '1970-01-01',
             '24:00:00', -123456789012345.12345, '1e-20', -0.1, true,
             '1 mon -2 days 03:04:05.000006', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
             '{"a": [1, "x"]}', '{1,NULL,-3}', '{"2000-01-01 00:00:00+00",NULL}', '\x00ff10');"#,
    );
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let text = std::fs::read_to_string(job.path("job.toml")).unwrap();
    std::fs::write(
        job.path("job.toml"),
        text.replace(
            "[sink]",
            "[[transform]]\ntype = \"cast\"\ncolumns = { code = \"int32\" }\n\n[errors]\nmax_errors = 5\ndead_letter = { type = \"jsonl\", path = \"bad.jsonl\" }\n\n[sink]",
        ),
    )
    .unwrap();
    run_ok(&job);
    let bad = std::fs::read_to_string(job.path("bad.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(bad.trim()).unwrap();
    let row = &line["row"];
    assert_eq!(row["tz"], "2024-06-01T10:00:00.500+00:00", "{line}");
    assert_eq!(row["ts"], "2024-02-29T23:59:59.123", "{line}");
    assert_eq!(row["tm"], "24:00:00", "{line}");
    assert_eq!(row["n"], "-123456789012345.12345", "{line}");
    assert_eq!(row["by"], "00ff10", "{line}");
    assert_eq!(
        row["atz"],
        serde_json::json!(["2000-01-01T00:00:00+00:00", null]),
        "{line}"
    );
    assert_eq!(line["types"]["tz"], "timestamptz", "{line}");
    // Every value reads back into the source's row (bytea is hex, decoded on its own; json
    // is the document's text, which json_populate_record would keep as a JSON string).
    let mut fields = row.as_object().unwrap().clone();
    fields.remove("by");
    let json = serde_json::Value::Object(fields)
        .to_string()
        .replace('\'', "''");
    let back = psql(
        &src.0,
        &format!(
            "SELECT (r.id, r.code, r.tz, r.ts, r.d, r.tm, r.n, r.nu, r.f8, r.b, r.iv, r.u, \
             (r.j #>> '{{}}')::jsonb, r.ai, r.atz, decode('00ff10', 'hex'))::text FROM json_populate_record(NULL::t, '{json}') r"
        ),
    );
    let want = psql(&src.0, "SELECT t::text FROM t WHERE id = 2");
    assert_eq!(back, want);
}

// ---------------------------------------------------------------------------------------
// Whole-database copies into targets without PostgreSQL's schemas.

#[test]
fn whole_database_copies_take_the_table_map_the_error_suggests() {
    let src = PgDb::new();
    psql(
        &src.0,
        r#"CREATE TABLE a (id int PRIMARY KEY, v text);
           INSERT INTO a VALUES (1, 'x'), (2, 'y');
           CREATE TABLE "Order Items" (id int PRIMARY KEY, n text);
           INSERT INTO "Order Items" VALUES (7, 'q');"#,
    );
    let my = MyDb::new();
    let source = format!("type = \"postgres\"\nurl = \"{}\"", src.url());
    for sink in [
        "type = \"sqlite\"\nurl = \"sqlite://out.db\"".to_string(),
        format!("type = \"mysql\"\nurl = \"{}\"", my.url()),
    ] {
        // Every table of `public` lands in a schema the target does not have: the error
        // suggests one table_map line for all of them, as TOML to paste.
        let job = Job::new(&source, &sink);
        let o = job.run();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_ne!(o.status.code(), Some(0), "{err}");
        let start = err.find("table_map = {").expect(&err);
        let line = &err[start..=start + err[start..].find('}').unwrap()];
        assert_eq!(line, "table_map = { 'public.*' = '*' }", "{err}");
        std::fs::write(
            job.path("job.toml"),
            format!("[job]\nname = \"crash\"\n\n[source]\n{source}\n\n[sink]\n{sink}\n{line}\n"),
        )
        .unwrap();
        let o = job
            .cmd(&["run", "--from-scratch", "job.toml"])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let rows = if sink.contains("sqlite") {
            let c = rusqlite::Connection::open(job.path("out.db")).unwrap();
            let q = |sql: &str| -> Vec<String> {
                let mut st = c.prepare(sql).unwrap();
                st.query_map([], |r| {
                    Ok(format!(
                        "{}\t{}",
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            };
            [
                q("SELECT id, v FROM a ORDER BY id"),
                q("SELECT id, n FROM \"Order Items\""),
            ]
            .concat()
        } else {
            [
                mysql(&my.0, "SELECT id, v FROM a ORDER BY id"),
                mysql(&my.0, "SELECT id, n FROM `Order Items`"),
            ]
            .concat()
            .lines()
            .map(str::to_string)
            .collect()
        };
        assert_eq!(rows, ["1\tx", "2\ty", "7\tq"], "{sink}");
    }
}

// ---------------------------------------------------------------------------------------
// Fidelity of values and safety of DDL (issue 9 review): array elements, MariaDB's own
// types, native types from untrusted metadata, intervals and lists in files.

/// PostgreSQL arrays into MariaDB become JSON arrays whose elements keep their exact values:
/// decimals as exact text (never through a double), uuids in their canonical form, times of
/// day, timestamps and intervals in the text forms `sluice verify` compares.
#[test]
fn pg_array_elements_reach_mariadb_exactly() {
    let src = PgDb::new();
    let dst = MyDb::new();
    psql(
        &src.0,
        r#"CREATE TABLE arr (id int PRIMARY KEY, n numeric(30,10)[], nu numeric[], u uuid[],
             ts timestamp[], tz timestamptz[], iv interval[], b bytea[], d date[], t time[],
             f float8[], r float4[], bo bool[], j jsonb[], i8 bigint[], tx text[]);
           INSERT INTO arr VALUES
            (1, '{12345678901234567890.1234567891, -0.0000000001, NULL}',
             '{123456789012345678901234567890.123456789012345678901234567890123, NaN}',
             '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11, NULL}',
             '{"2024-02-29 23:59:59.123456", "0001-01-01 00:00:00"}',
             '{"2024-06-01 12:00:00.5+02"}',
             '{"1 day 02:03:04.5", "-1 mon", "1 year 2 mons -3 days -00:00:00.000001", "0"}',
             '{"\\x00ff", "\\x"}', '{2024-01-01}', '{12:34:56.789, 00:00:00}',
             '{1.5, 0.1, -0, 1e20}', '{0.1, 3.5e-5}', '{t, f, NULL}',
             '{"{\"a\": [1, 2.50]}"}', '{-9223372036854775808, 9223372036854775807}',
             '{"a\"b", "é,🧊", ""}'),
            (2, '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
             NULL, NULL);"#,
    );
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.arr\"]",
            src.url()
        ),
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntable_map = {{ \"public.arr\" = \"arr\" }}",
            dst.url()
        ),
    );
    run_ok(&job);
    let got = mysql(
        &dst.0,
        "SELECT n, nu, u, ts, tz, iv, b, d, t, f, r, bo, j, i8, tx FROM arr ORDER BY id",
    );
    let row1 = [
        r#"["12345678901234567890.1234567891","-0.0000000001",null]"#,
        r#"["123456789012345678901234567890.123456789012345678901234567890123","NaN"]"#,
        r#"["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",null]"#,
        r#"["2024-02-29 23:59:59.123456","0001-01-01 00:00:00.000000"]"#,
        r#"["2024-06-01 10:00:00.500000"]"#,
        r#"["P1DT2H3M4.5S","P-1M","P1Y2M-3DT-0.000001S","PT0S"]"#,
        r#"["00ff",""]"#,
        r#"["2024-01-01"]"#,
        r#"["12:34:56.789000","00:00:00.000000"]"#,
        r#"[1.5,0.1,-0.0,1e20]"#,
        r#"[0.1,3.5e-5]"#,
        r#"[true,false,null]"#,
        r#"["{\"a\": [1, 2.50]}"]"#,
        r#"[-9223372036854775808,9223372036854775807]"#,
        r#"["a\"b","é,🧊",""]"#,
    ];
    // (`mariadb -B` prints a backslash as two.)
    let want = format!(
        "{}\n[]{}\n",
        row1.join("\t").replace('\\', "\\\\"),
        "\tNULL".repeat(row1.len() - 1)
    );
    assert_eq!(got, want);
    // The copy verifies identical element by element (the text forms agree with verify's).
    let o = job.cmd(&["verify", "job.toml"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// MariaDB's own `uuid`, `inet4` and `inet6` columns copy into MariaDB with both load
/// methods (the server parses them from text; input declared binary is refused with "Incorrect
/// uuid value"), and into PostgreSQL (`uuid`, and the addresses as text).
#[test]
fn mariadb_uuid_and_inet_columns_copy_to_mariadb_and_postgres() {
    let src = MyDb::new();
    mysql(
        &src.0,
        "CREATE TABLE n (id int PRIMARY KEY, u uuid, i6 inet6 NOT NULL, i4 inet4, k uuid NOT NULL,
           UNIQUE KEY (k));
         INSERT INTO n VALUES
           (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::ff00:42:8329', '192.168.0.1',
            '00000000-0000-0000-0000-000000000000'),
           (2, '12345678-1234-1234-c234-123456789012', '::ffff:10.0.0.1', '0.0.0.0',
            'ffffffff-ffff-ffff-ffff-ffffffffffff'),
           (3, NULL, '::', NULL, UUID());",
    );
    let rows = "SELECT id, u, i6, i4, k FROM n ORDER BY id";
    let shape = "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.columns \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'n' ORDER BY ORDINAL_POSITION";
    for (method, write) in [
        ("load_data", "append"),
        ("insert", "append"),
        ("load_data", "upsert"),
        ("insert", "overwrite"),
    ] {
        let dst = MyDb::new();
        let job = Job::new(
            &format!(
                "type = \"mysql\"\nurl = \"{}\"\ntables = [\"n\"]",
                src.url()
            ),
            &format!(
                "type = \"mysql\"\nurl = \"{}\"\nmethod = \"{method}\"\nwrite = \"{write}\"",
                dst.url()
            ),
        );
        run_ok(&job);
        assert_eq!(
            mysql(&dst.0, shape),
            mysql(&src.0, shape),
            "{method} {write}"
        );
        assert_eq!(mysql(&dst.0, rows), mysql(&src.0, rows), "{method} {write}");
        let o = job.cmd(&["verify", "job.toml"]).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{method} {write}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let pg = PgDb::new();
    run_ok(&Job::new(
        &format!(
            "type = \"mysql\"\nurl = \"{}\"\ntables = [\"n\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", pg.url()),
    ));
    assert_eq!(
        psql(
            &pg.0,
            "SELECT id, u, i6, i4, pg_typeof(u), pg_typeof(i6) FROM n WHERE id < 3 ORDER BY id"
        ),
        "1|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|2001:db8::ff00:42:8329|192.168.0.1|uuid|text\n\
         2|12345678-1234-1234-c234-123456789012|::ffff:10.0.0.1|0.0.0.0|uuid|text\n"
    );
}

/// A column of a crafted Parquet file: name, values, field metadata (key, value).
type CraftedColumn<'a> = (&'a str, arrow::array::ArrayRef, Vec<(&'a str, &'a str)>);

/// Writes a Parquet file whose columns carry metadata, as a crafted or foreign file may.
fn crafted_parquet(path: &std::path::Path, columns: Vec<CraftedColumn<'_>>) {
    use arrow::datatypes::{Field, Schema};
    use std::collections::HashMap;
    use std::sync::Arc;
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a, md)| {
            let md: HashMap<String, String> = md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Field::new(*name, a.data_type().clone(), true).with_metadata(md)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a, _)| a).collect(),
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A Parquet file's field metadata is untrusted input: native types, generated-column
/// expressions and enum labels crafted to inject SQL into `CREATE TABLE` are never executed.
/// A native type that is not a type name falls back to the logical type's mapping, with a
/// warning naming table and column.
#[test]
fn crafted_parquet_metadata_cannot_inject_sql_into_ddl() {
    use arrow::array::{ArrayRef, Int32Array, StringArray};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let ints = || -> ArrayRef { Arc::new(Int32Array::from(vec![1, 2])) };
    let texts = || -> ArrayRef { Arc::new(StringArray::from(vec!["ok", "ok"])) };

    // Into PostgreSQL.
    let pg = PgDb::new();
    psql(
        &pg.0,
        "CREATE TABLE victim (x int); CREATE TABLE victim2 (x int); CREATE TABLE victim3 (x int);",
    );
    let file = dir.path().join("evil.parquet");
    crafted_parquet(
        &file,
        vec![
            (
                "id",
                ints(),
                vec![("sluice.native", "postgres:integer); DROP TABLE victim; --")],
            ),
            (
                "g",
                ints(),
                vec![
                    ("sluice.native", "postgres:integer"),
                    (
                        "sluice.generated",
                        "postgres:1) STORED); DROP TABLE victim2; CREATE TABLE z (y int \
                         GENERATED ALWAYS AS (1",
                    ),
                ],
            ),
            (
                "e",
                texts(),
                vec![
                    (
                        "sluice.type",
                        "enum('ok','x$sluice$; DROP TABLE victim3; --')",
                    ),
                    ("sluice.native", "postgres:enum:public.mood"),
                ],
            ),
        ],
    );
    let job = Job::new(
        &format!("type = \"parquet\"\npath = \"{}\"", file.display()),
        &format!("type = \"postgres\"\nurl = \"{}\"", pg.url()),
    );
    let (_, err) = run_ok(&job);
    assert_eq!(
        psql(
            &pg.0,
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class \
             WHERE relname IN ('victim', 'victim2', 'victim3', 'z')"
        )
        .trim(),
        "victim,victim2,victim3"
    );
    assert!(
        err.contains("evil") && err.contains("column=id") && err.contains("not a type name"),
        "{err}"
    );
    assert_eq!(
        psql(
            &pg.0,
            "SELECT column_name, data_type, is_generated FROM information_schema.columns \
             WHERE table_name = 'evil' ORDER BY ordinal_position"
        ),
        "id|integer|NEVER\ng|integer|NEVER\ne|USER-DEFINED|NEVER\n"
    );
    assert_eq!(
        psql(&pg.0, "SELECT id, g, e FROM evil ORDER BY id"),
        "1|1|ok\n2|2|ok\n"
    );

    // Into MariaDB.
    let my = MyDb::new();
    mysql(&my.0, "CREATE TABLE victim (x int)");
    let file = dir.path().join("evil2.parquet");
    crafted_parquet(
        &file,
        vec![
            (
                "id",
                ints(),
                vec![("sluice.native", "mysql:int); DROP TABLE victim; --")],
            ),
            (
                "s",
                texts(),
                vec![(
                    "sluice.native",
                    "mysql:enum('ok','b'); DROP TABLE victim; -- ')",
                )],
            ),
            (
                "g",
                ints(),
                vec![(
                    "sluice.mysql.generated",
                    "VIRTUAL `x\\` ) VIRTUAL, evil int, q int AS (1 `",
                )],
            ),
        ],
    );
    let job = Job::new(
        &format!("type = \"parquet\"\npath = \"{}\"", file.display()),
        &format!("type = \"mysql\"\nurl = \"{}\"", my.url()),
    );
    let (_, err) = run_ok(&job);
    assert!(
        err.contains("evil2") && err.contains("column=id") && err.contains("not a type name"),
        "{err}"
    );
    assert_eq!(
        mysql(
            &my.0,
            "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME) FROM information_schema.tables \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'victim'"
        )
        .trim(),
        "victim"
    );
    assert_eq!(
        mysql(
            &my.0,
            "SELECT COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.columns \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'evil2' ORDER BY ORDINAL_POSITION"
        ),
        "id\tint(11)\t\ns\tlongtext\t\ng\tint(11)\t\n"
    );
    assert_eq!(
        mysql(&my.0, "SELECT id, s, g FROM evil2 ORDER BY id"),
        "1\tok\t1\n2\tok\t2\n"
    );
}

/// Intervals, lists of instants and special floats into files: Parquet holds intervals
/// (as a struct of their parts, read back as intervals), JSON Lines and CSV write
/// `timestamptz[]`, uuids and bytes inside lists, and NaN/±Infinity, without losing a value.
#[test]
fn intervals_and_lists_of_instants_reach_files_exactly() {
    let src = PgDb::new();
    psql(
        &src.0,
        r#"CREATE TABLE ft (id int PRIMARY KEY, iv interval, ivs interval[], tz timestamptz,
             tzs timestamptz[], u uuid[], b bytea[], f float8, fs float8[], t text[]);
           INSERT INTO ft VALUES
            (1, '1 year 2 mons -3 days 04:05:06.789', '{"1 day", "-00:00:00.000001", NULL}',
             '2024-06-01 12:00:00.5+02', '{"2024-06-01 12:00:00.5+02", "1970-01-01 00:00:00+00"}',
             '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{"\\x00ff"}', 'NaN',
             '{NaN, Infinity, -Infinity, 1.5}', '{"a,b", "c\"d"}'),
            (2, NULL, NULL, NULL, NULL, NULL, NULL, '-Infinity', NULL, NULL);"#,
    );
    let source = format!(
        "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.ft\"]",
        src.url()
    );
    let all = "COPY (SELECT * FROM ft ORDER BY id) TO STDOUT";

    // The copy verifies identical (read back through the file source).
    let verified = |job: &Job| {
        let o = job.cmd(&["verify", "job.toml"]).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };

    // Parquet, and back into PostgreSQL: every value as it was.
    let job = Job::new(&source, "type = \"parquet\"\npath = \"out\"");
    run_ok(&job);
    verified(&job);
    let back = PgDb::new();
    run_ok(&Job::new(
        &format!(
            "type = \"parquet\"\npath = \"{}\"",
            job.path("out/ft.parquet").display()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", back.url()),
    ));
    assert_eq!(psql(&back.0, all), psql(&src.0, all));
    assert_eq!(
        psql(
            &back.0,
            "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) \
             FROM pg_attribute WHERE attrelid = 'ft'::regclass AND attnum > 0"
        )
        .trim(),
        "integer,interval,interval[],timestamp with time zone,timestamp with time zone[],\
         uuid[],bytea[],double precision,double precision[],text[]"
    );

    // JSON Lines.
    let job = Job::new(&source, "type = \"jsonl\"\npath = \"out\"");
    run_ok(&job);
    verified(&job);
    let text = std::fs::read_to_string(job.path("out/ft.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["tz"], "2024-06-01T10:00:00.500Z", "{text}");
    assert_eq!(
        lines[0]["tzs"],
        serde_json::json!(["2024-06-01T10:00:00.500Z", "1970-01-01T00:00:00Z"]),
        "{text}"
    );
    assert_eq!(
        lines[0]["u"],
        serde_json::json!(["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"])
    );
    assert_eq!(lines[0]["b"], serde_json::json!(["00ff"]));
    assert_eq!(lines[0]["f"], "NaN", "{text}");
    assert_eq!(
        lines[0]["fs"],
        serde_json::json!(["NaN", "Infinity", "-Infinity", 1.5])
    );
    assert_eq!(lines[0]["t"], serde_json::json!(["a,b", "c\"d"]));
    assert_eq!(lines[1]["f"], "-Infinity");
    assert!(lines[1]["tzs"].is_null());
    assert_eq!(lines[0]["ivs"][2], serde_json::Value::Null);
    assert!(lines[0]["ivs"][0].is_string(), "{text}");

    // CSV: lists as JSON arrays.
    let job = Job::new(&source, "type = \"csv\"\npath = \"out\"");
    run_ok(&job);
    let text = std::fs::read_to_string(job.path("out/ft.csv")).unwrap();
    let row1 = text.lines().nth(1).unwrap();
    assert!(
        row1.contains(r#""[""2024-06-01T10:00:00.500Z"",""1970-01-01T00:00:00Z""]""#)
            && row1.contains(r#""[""a,b"",""c\""d""]""#)
            && row1.contains(r#"[""a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11""]"#),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// `sluice validate` checks what the run will need: the privileges to read the source and to
// create or write the target, before anything moves.

#[test]
fn validate_names_the_missing_privilege_and_the_grant() {
    let src = PgDb::new();
    let dst = PgDb::new();
    let role = unique("role");
    psql(
        &src.0,
        &format!(
            "CREATE ROLE {role} LOGIN; CREATE TABLE public.t (id int PRIMARY KEY); \
         INSERT INTO public.t VALUES (1);"
        ),
    );
    psql(
        &dst.0,
        "CREATE TABLE public.t (id int PRIMARY KEY); REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
    );
    let as_role = |db: &PgDb| format!("postgres://{role}@127.0.0.1:5432/{}", db.0);
    let job = Job::new(
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]",
            as_role(&src)
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", as_role(&dst)),
    );
    let validate = || job.cmd(&["validate", "job.toml"]).output().unwrap();
    // The source table is not readable.
    let o = validate();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("role \"{role}\" may not SELECT from public.t")),
        "{err}"
    );
    assert!(
        err.contains(&format!("GRANT SELECT ON public.t TO \"{role}\"")),
        "{err}"
    );
    psql(&src.0, &format!("GRANT SELECT ON public.t TO {role}"));
    // The target table is not writable.
    let o = validate();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("may not INSERT into \"public\".\"t\""),
        "{err}"
    );
    psql(&dst.0, &format!("GRANT INSERT ON public.t TO {role}"));
    // The checkpoint table cannot be created.
    let o = validate();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("may not create \"public\".\"_sluice_checkpoints\""),
        "{err}"
    );
    assert!(
        err.contains(&format!("GRANT CREATE ON SCHEMA \"public\" TO \"{role}\"")),
        "{err}"
    );
    psql(&dst.0, &format!("GRANT CREATE ON SCHEMA public TO {role}"));
    let o = validate();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("target writable"));
    drop(job);
    drop(src);
    drop(dst);
    psql("postgres", &format!("DROP ROLE {role}"));
}

/// A streaming job into PostgreSQL: the rows and the position commit together every interval,
/// so after `kill -9` the resumed stream neither loses nor repeats an id.
#[test]
fn a_stream_into_postgres_resumes_exactly_after_kill_9() {
    let dst = PgDb::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.toml"),
        format!(
            "[job]\nname = \"pgstream\"\nmode = \"streaming\"\ncheckpoint_interval = \"100ms\"\n\
             [source]\ntype = \"generate\"\ntable = \"events\"\nrate = 20000\nbatch_size = 200\n\
             [sink]\ntype = \"postgres\"\nurl = \"{}\"\ntable_map = {{ \"events\" = \"public.events\" }}\n",
            dst.url()
        ),
    )
    .unwrap();
    let count = || -> (i64, i64, i64) {
        let out = psql(
            &dst.0,
            "SELECT count(*), count(DISTINCT id), coalesce(max(id), -1) FROM public.events",
        );
        let v: Vec<i64> = out.trim().split('|').map(|x| x.parse().unwrap()).collect();
        (v[0], v[1], v[2])
    };
    let mut seen = 0;
    for round in 0..4 {
        let mut child = Command::cargo_bin("sluice")
            .unwrap()
            .current_dir(dir.path())
            .env_remove("SLUICE_STATE")
            .args(["run", "job.toml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the stream ended by itself"
            );
            let has_table = psql(&dst.0, "SELECT to_regclass('public.events') IS NOT NULL");
            if has_table.trim() == "t" && count().0 > seen + 1000 {
                break;
            }
            assert!(std::time::Instant::now() < until, "no commit within 30 s");
            std::thread::sleep(Duration::from_millis(30));
        }
        std::thread::sleep(Duration::from_millis(37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let (n, distinct, max) = count();
        assert_eq!(
            (n, distinct),
            (max + 1, n),
            "round {round}: lost or doubled ids"
        );
        let pos = psql(
            &dst.0,
            "SELECT position FROM public._sluice_checkpoints WHERE job = 'pgstream'",
        );
        let v: serde_json::Value = serde_json::from_str(pos.trim()).unwrap();
        assert_eq!(v["value"]["next"].as_i64(), Some(n), "round {round}");
        seen = n;
    }
}
