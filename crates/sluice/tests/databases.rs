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

use support::{MyDb, PgDb, mysql, psql, sh};

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
// A database restart in the middle of a copy: the writer's connection breaks, the split is
// rolled back and redone after a back-off, and the copy ends exact.

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
    dst.ctl(&["restart", "-m", "fast", "-w"]);
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
