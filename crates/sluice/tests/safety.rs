//! The batch guarantee attacked from outside (issue 9): sources that change between a kill
//! and the resume, a COMMIT whose answer is lost, a job file edited between runs, a target
//! emptied or a state directory lost, two processes on one job, locks held, servers that
//! never answer. Each test is named after the case it covers and failed before its fix.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

mod support;

use support::{
    CommitCutter, Cut, MY_COMMIT, MyDb, PG_COMMIT, PgDb, mysql, psql, silent_server, wait_for,
};

/// A job directory: `job.toml`, inputs, outputs and the default state directory.
struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn write(&self, p: &str, text: impl AsRef<[u8]>) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    fn job(&self, name: &str, job_extra: &str, source: &str, sink: &str) {
        self.write(
            "job.toml",
            format!(
                "[job]\nname = \"{name}\"\n{job_extra}\n\n[source]\n{source}\n\n[sink]\n{sink}\n"
            ),
        );
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("sluice").unwrap();
        c.current_dir(self.tmp.path())
            .env_remove("SLUICE_STATE")
            .env_remove("SLUICE_LOG")
            .args(args);
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    /// Starts the binary in the background; its output goes to files (a pipe nobody reads
    /// would fill and block it), which [`wait_within`] collects.
    fn spawn(&self, args: &[&str]) -> Spawned {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (o, e) = (
            self.path(&format!(".out{n}")),
            self.path(&format!(".err{n}")),
        );
        let child = self
            .cmd(args)
            .stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap())
            .spawn()
            .unwrap();
        Spawned {
            child,
            out: o,
            err: e,
        }
    }
}

/// A background run and where its output goes.
struct Spawned {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Spawned {
    fn id(&self) -> u32 {
        self.child.id()
    }
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Waits for the end and collects what it wrote.
    fn output(mut self) -> Output {
        let status = self.child.wait().unwrap();
        Output {
            status,
            stdout: std::fs::read(&self.out).unwrap_or_default(),
            stderr: std::fs::read(&self.err).unwrap_or_default(),
        }
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn signal(child: &Spawned, sig: &str) {
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

/// Waits for `child` at most `secs` seconds; kills it and fails if it is still running.
fn wait_within(mut child: Spawned, secs: u64, what: &str) -> Output {
    let until = Instant::now() + Duration::from_secs(secs);
    while child.running() {
        if Instant::now() > until {
            child.kill();
            let o = child.output();
            panic!("{what}: still running after {secs} s\n{}", err(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.output()
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

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `ids` of table `t` in PostgreSQL database `db`, sorted (duplicates kept).
fn pg_ids(db: &str, table: &str) -> Vec<i64> {
    let mut v: Vec<i64> = psql(db, &format!("SELECT id FROM {table}"))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    v.sort();
    v
}

fn sqlite_ids(db: &PathBuf, table: &str) -> Vec<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare(&format!("SELECT id FROM \"{table}\" ORDER BY id"))
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn sqlite_count(db: &PathBuf, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// Case 1: split identity. The plan (every split with its bounds) is persisted when a copy
// starts, and a resume reads exactly those splits, however the source changed.

/// A PostgreSQL source grows, shrinks and is re-analyzed between kills (so a plan made anew
/// would have other ranges): no row present from start to end is lost or doubled.
#[test]
fn case1_a_source_that_grows_and_shrinks_between_kills_loses_and_doubles_nothing() {
    let s = seed();
    let mut rng = Rng(s);
    let src = PgDb::new();
    let dst = PgDb::new();
    const N: i64 = 200_000;
    psql(
        &src.0,
        &format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, note text);
             INSERT INTO t SELECT g, g * 3, 'n' || (g % 97) FROM generate_series(1, {N}) g;
             ANALYZE t;"
        ),
    );
    // A keyless target: a doubled row stays visible.
    psql(&dst.0, "CREATE TABLE t (id bigint, v bigint, note text)");
    let d = Dir::new();
    d.job(
        "grow",
        "parallelism = 2",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 4000",
            src.url()
        ),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ncreate_tables = false",
            dst.url()
        ),
    );
    let (mut deleted, mut inserted, mut updated) = (Vec::new(), Vec::new(), Vec::new());
    let mut next_id = N + 1;
    let mut kills = 0;
    for round in 0..6 {
        if !kill_after_a_commit(&d, &dst, "grow") {
            break;
        }
        kills += 1;
        // The source changes: grows past the end, loses rows at both ends and in the middle,
        // has values updated, and is analyzed (its row estimate moves).
        let lo = 1 + rng.below(N as u64 - 1000) as i64;
        deleted.extend(lo..lo + 300);
        inserted.extend(next_id..next_id + 3000);
        updated.extend((1..=N).filter(|i| i % 997 == round));
        psql(
            &src.0,
            &format!(
                "DELETE FROM t WHERE id BETWEEN {lo} AND {};
                 INSERT INTO t SELECT g, g * 3, 'new' FROM generate_series({next_id}, {}) g;
                 UPDATE t SET v = -v WHERE id % 997 = {round};
                 ANALYZE t;",
                lo + 299,
                next_id + 2999
            ),
        );
        next_id += 3000;
    }
    assert!(kills >= 3, "seed {s}: only {kills} kills landed");
    if !job_finished(&dst, "grow") {
        let o = d.run(&["run", "job.toml"]);
        assert_eq!(code(&o), 0, "seed {s}: {}", err(&o));
    }
    let got = pg_ids(&dst.0, "t");
    let mut seen = std::collections::BTreeMap::new();
    for id in &got {
        *seen.entry(*id).or_insert(0) += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "seed {s}: rows doubled: {doubled:?}");
    let deleted: std::collections::HashSet<i64> = deleted.into_iter().collect();
    let lost: Vec<i64> = (1..=N)
        .filter(|i| !deleted.contains(i) && !seen.contains_key(i))
        .take(5)
        .collect();
    assert!(lost.is_empty(), "seed {s}: rows lost: {lost:?}");
    let _ = (inserted, updated);
}

/// A file added to a CSV input directory between two runs shifts a re-made list of files: the
/// resume reads the files planned when the copy started, each once.
#[test]
fn case1_a_file_added_to_the_input_directory_does_not_shift_the_plan() {
    let d = Dir::new();
    for f in 1..=8 {
        let mut text = String::from("id,v\n");
        for i in 0..500 {
            let id = f * 1000 + i;
            // File 6 holds a bad value: the first run fails there, files 1 to 5 committed.
            if f == 6 && i == 250 {
                text.push_str("oops,1\n");
            } else {
                text.push_str(&format!("{id},{}\n", id * 2));
            }
        }
        d.write(&format!("in/p{f:03}.csv"), text);
    }
    d.job(
        "files",
        "parallelism = 1",
        "type = \"csv\"\npath = \"in\"\ntable = \"t\"\nschema = { id = \"int64\", v = \"int64\" }",
        "type = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"append\"",
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert_eq!(
        sqlite_count(&d.path("out.db"), "SELECT count(*) FROM t"),
        2500
    );
    // The bad value is fixed, and a file that sorts first appears.
    let fixed = std::fs::read_to_string(d.path("in/p006.csv"))
        .unwrap()
        .replace("oops,1", "6250,12500");
    d.write("in/p006.csv", fixed);
    d.write("in/p000.csv", "id,v\n1,2\n2,4\n");
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let want: Vec<i64> = (1..=8)
        .flat_map(|f| (0..500).map(move |i| f * 1000 + i))
        .collect();
    assert_eq!(
        sqlite_ids(&d.path("out.db"), "t"),
        want,
        "each planned file exactly once; the new file waits for the next copy"
    );
}

// ------------------------------------------------------------------------------------------
// Case 2: a COMMIT whose answer is lost is not redone: the sink is asked whether the split's
// checkpoint landed.

fn pg_source_rows(n: i64) -> PgDb {
    let src = PgDb::new();
    psql(
        &src.0,
        &format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL);
             INSERT INTO t SELECT g, g * 3 FROM generate_series(1, {n}) g; ANALYZE t;"
        ),
    );
    src
}

fn commit_cut_into_postgres(how: Cut) -> (Output, Vec<i64>, usize) {
    let src = pg_source_rows(20_000);
    let dst = PgDb::new();
    psql(&dst.0, "CREATE TABLE t (id bigint, v bigint)");
    let cutter = CommitCutter::start("127.0.0.1:5432", PG_COMMIT, 3, how);
    let d = Dir::new();
    d.job(
        "cut",
        "parallelism = 2",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 2000",
            src.url()
        ),
        &format!(
            "type = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:{}/{}\"\ncreate_tables = false",
            cutter.port, dst.0
        ),
    );
    let o = d.run(&["run", "job.toml"]);
    (o, pg_ids(&dst.0, "t"), cutter.cuts())
}

#[test]
fn case2_a_commit_whose_answer_is_lost_is_not_written_again() {
    let (o, ids, cuts) = commit_cut_into_postgres(Cut::ReplyLost);
    assert_eq!(cuts, 1, "the proxy cut a COMMIT");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        err(&o).contains("its checkpoint is in the target"),
        "{}",
        err(&o)
    );
    assert_eq!(
        ids,
        (1..=20_000).collect::<Vec<_>>(),
        "each row exactly once"
    );
}

#[test]
fn case2_a_commit_that_never_reached_the_server_is_redone() {
    let (o, ids, cuts) = commit_cut_into_postgres(Cut::CommitLost);
    assert_eq!(cuts, 1, "the proxy cut a COMMIT");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        err(&o).contains("redoing the split"),
        "the split was rolled back and redone: {}",
        err(&o)
    );
    assert_eq!(
        ids,
        (1..=20_000).collect::<Vec<_>>(),
        "each row exactly once"
    );
}

#[test]
fn case2_a_lost_commit_answer_from_mariadb_is_not_written_again() {
    let src = pg_source_rows(20_000);
    let dst = MyDb::new();
    mysql(&dst.0, "CREATE TABLE t (id bigint, v bigint)");
    let cutter = CommitCutter::start("127.0.0.1:3306", MY_COMMIT, 3, Cut::ReplyLost);
    let d = Dir::new();
    d.job(
        "cut",
        "parallelism = 2",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 2000",
            src.url()
        ),
        &format!(
            "type = \"mysql\"\nurl = \"mysql://root@127.0.0.1:{}/{}\"\ncreate_tables = false\n\
             table_map = {{ \"public.t\" = \"t\" }}",
            cutter.port, dst.0
        ),
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(cutter.cuts(), 1, "the proxy cut a COMMIT");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        err(&o).contains("its checkpoint is in the target"),
        "{}",
        err(&o)
    );
    let got = mysql(
        &dst.0,
        "SELECT count(*), count(DISTINCT id), sum(id) FROM t",
    );
    assert_eq!(got.trim(), "20000\t20000\t200010000");
}

// ------------------------------------------------------------------------------------------
// Cases 3, 4, 5, 7 and 27 with a CSV source whose sixth file holds a bad value: the first run
// fails there (exit 1) after files 1 to 5 committed, deterministically.

fn interrupted_csv_job(d: &Dir, sink: &str) {
    for f in 1..=8 {
        let mut text = String::from("id,v\n");
        for i in 0..500 {
            let id = f * 1000 + i;
            if f == 6 && i == 100 {
                text.push_str("oops,1\n");
            } else {
                text.push_str(&format!("{id},{}\n", id * 2));
            }
        }
        d.write(&format!("in/p{f:03}.csv"), text);
    }
    d.job(
        "csv",
        "parallelism = 1",
        "type = \"csv\"\npath = \"in\"\ntable = \"t\"\nschema = { id = \"int64\", v = \"int64\" }",
        sink,
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", err(&o));
}

fn fix_bad_value(d: &Dir) {
    let fixed = std::fs::read_to_string(d.path("in/p006.csv"))
        .unwrap()
        .replace("oops,1", "6100,12200");
    d.write("in/p006.csv", fixed);
}

fn all_ids() -> Vec<i64> {
    (1..=8)
        .flat_map(|f| (0..500).map(move |i| f * 1000 + i))
        .collect()
}

const SQLITE_APPEND: &str = "type = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"append\"";

#[test]
fn case3_a_resume_whose_job_changed_is_refused_naming_the_change() {
    let d = Dir::new();
    interrupted_csv_job(&d, SQLITE_APPEND);
    fix_bad_value(&d);
    let original = std::fs::read_to_string(d.path("job.toml")).unwrap();
    let edits = [
        (
            original.replace(
                "[sink]",
                "[[transform]]\ntype = \"filter\"\nwhere = \"v > 0\"\n\n[sink]",
            ),
            "[[transform]] #1",
        ),
        (
            original.replace("write = \"append\"", "write = \"overwrite\""),
            "[sink] write: \"append\" → \"overwrite\"",
        ),
        (
            original.replace(
                "write = \"append\"",
                "write = \"append\"\ntable_map = { t = \"u\" }",
            ),
            "[sink] table_map.t added",
        ),
        (
            original.replace("int64\", v = \"int64\"", "int64\", v = \"decimal(10,2)\""),
            "[source] schema.v",
        ),
    ];
    for (text, expected) in edits {
        d.write("job.toml", &text);
        let o = d.run(&["run", "job.toml"]);
        assert_eq!(code(&o), 2, "{}", err(&o));
        assert!(
            err(&o).contains("changed since its unfinished copy started")
                && err(&o).contains(expected),
            "expected {expected:?} in: {}",
            err(&o)
        );
        assert!(err(&o).contains("--from-scratch"), "{}", err(&o));
    }
    // Options that only tune speed may change.
    d.write(
        "job.toml",
        original.replace("[source]\n", "[source]\nbatch_size = 100\n"),
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(sqlite_ids(&d.path("out.db"), "t"), all_ids());
}

#[test]
fn case4_a_target_emptied_between_runs_is_filled_again() {
    let d = Dir::new();
    interrupted_csv_job(&d, SQLITE_APPEND);
    fix_bad_value(&d);
    let c = rusqlite::Connection::open(d.path("out.db")).unwrap();
    c.execute_batch("DELETE FROM t").unwrap();
    drop(c);
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        err(&o).contains("is empty although this copy committed rows"),
        "{}",
        err(&o)
    );
    assert_eq!(sqlite_ids(&d.path("out.db"), "t"), all_ids());
}

#[test]
fn case4_a_postgres_target_dropped_and_recreated_is_filled_again() {
    let dst = PgDb::new();
    let d = Dir::new();
    interrupted_csv_job(
        &d,
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\nwrite = \"append\"",
            dst.url()
        ),
    );
    assert_eq!(pg_ids(&dst.0, "public.t").len(), 2500);
    fix_bad_value(&d);
    psql(&dst.0, "DROP TABLE t");
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(pg_ids(&dst.0, "public.t"), all_ids());
}

#[test]
fn case5_a_lost_state_directory_resumes_what_the_target_holds() {
    let d = Dir::new();
    interrupted_csv_job(&d, SQLITE_APPEND);
    fix_bad_value(&d);
    // Another state directory (or the first one deleted): the target knows the copy.
    let o = d.run(&["--state", "elsewhere", "run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(err(&o).contains("no record of it"), "{}", err(&o));
    assert!(err(&o).contains("skipped=5"), "{}", err(&o));
    assert_eq!(sqlite_ids(&d.path("out.db"), "t"), all_ids());
}

#[test]
fn case5_one_job_from_two_state_directories_runs_once_at_a_time() {
    let src = pg_source_rows(30_000);
    let dst = PgDb::new();
    psql(&dst.0, "CREATE TABLE t (id bigint, v bigint)");
    // The first run holds its locks while its COPY waits for this one.
    let held = HeldLock::take(&dst.0, "t");
    let d = Dir::new();
    d.job(
        "twice",
        "parallelism = 1",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 10000",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let first = d.spawn(&["--state", "a", "run", "job.toml"]);
    wait_for(30, "the first run to take its locks", || {
        psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice lock: twice'",
        )
        .trim()
            == "1"
    });
    let o = d.run(&["--state", "b", "run", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("is locked in PostgreSQL"), "{}", err(&o));
    assert!(
        err(&o).contains("sluice lock: twice"),
        "names the holder: {}",
        err(&o)
    );
    drop(held);
    let o = wait_within(first, 120, "the first run");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(pg_ids(&dst.0, "public.t"), (1..=30_000).collect::<Vec<_>>());
}

#[test]
fn case7_a_finished_append_copy_is_not_appended_again_silently() {
    let d = Dir::new();
    d.write("in/t.csv", "id,v\n1,2\n2,4\n");
    d.job("once", "", "type = \"csv\"\npath = \"in\"", SQLITE_APPEND);
    assert_eq!(code(&d.run(&["run", "job.toml"])), 0);
    // From another state directory too: the target remembers the finished copy.
    for args in [
        &["run", "job.toml"][..],
        &["--state", "other", "run", "job.toml"][..],
    ] {
        let o = d.run(args);
        assert_eq!(code(&o), 2, "{}", err(&o));
        assert!(err(&o).contains("a second time"), "{}", err(&o));
    }
    assert_eq!(sqlite_count(&d.path("out.db"), "SELECT count(*) FROM t"), 2);
    assert_eq!(code(&d.run(&["run", "job.toml", "--from-scratch"])), 0);
    assert_eq!(sqlite_count(&d.path("out.db"), "SELECT count(*) FROM t"), 4);
}

#[test]
fn case27_a_resumed_run_counts_its_own_rows_and_the_earlier_ones_apart() {
    let d = Dir::new();
    interrupted_csv_job(&d, SQLITE_APPEND);
    fix_bad_value(&d);
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(
        out(&o).contains("Finished: 1500 rows written (and 2500 by earlier runs of this copy)"),
        "{}",
        out(&o)
    );
    let o = d.run(&["status", "csv", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let run = &v["jobs"][0]["runs"][0];
    assert_eq!(
        (run["rows_written"].as_u64(), run["rows_earlier"].as_u64()),
        (Some(1500), Some(2500))
    );
    let splits = v["jobs"][0]["splits"].as_array().unwrap();
    assert_eq!(
        splits
            .iter()
            .map(|s| s["rows"].as_u64().unwrap())
            .sum::<u64>(),
        4000
    );
}

#[test]
fn case27_a_running_job_shows_its_rows_and_pause_in_status() {
    let src = pg_source_rows(1_500_000);
    let dst = PgDb::new();
    let d = Dir::new();
    d.job(
        "live",
        "parallelism = 1",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 5000",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let child = d.spawn(&["run", "job.toml"]);
    let status = || {
        let o = d.run(&["status", "live", "--format", "json"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap_or_default()["jobs"][0]
            ["runs"][0]
            .clone()
    };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = status();
        assert!(
            r["ended_at"].is_null(),
            "the job ended before status showed it running: {r}"
        );
        if r["state"] == "RUNNING" && r["rows_written"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        if Instant::now() > until {
            let mut child = child;
            child.kill();
            let o = child.output();
            panic!("status never showed rows: {r}\n{}", err(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Persist, then publish: once `sluice pause` answered, the store says PAUSED.
    let o = d.run(&["pause", "live"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(status()["state"], "PAUSED");
    assert_eq!(code(&d.run(&["resume", "live"])), 0);
    assert_eq!(status()["state"], "RUNNING");
    assert_eq!(code(&d.run(&["stop", "live"])), 0);
    let o = wait_within(child, 30, "the stopped run");
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert_eq!(status()["state"], "STOPPED");
}

// ------------------------------------------------------------------------------------------
// Case 6: staging tables of long names, and two overwrite jobs on one table.

#[test]
fn case6_tables_sharing_a_long_prefix_get_their_own_stage() {
    let src = PgDb::new();
    let dst = PgDb::new();
    let a = format!("{}_a", "x".repeat(55));
    let b = format!("{}_b", "x".repeat(55));
    psql(
        &src.0,
        &format!(
            "CREATE TABLE {a} (id int PRIMARY KEY, v text); CREATE TABLE {b} (id int PRIMARY KEY, v text);
             INSERT INTO {a} SELECT g, 'a' FROM generate_series(1, 1000) g;
             INSERT INTO {b} SELECT g, 'b' FROM generate_series(1, 700) g;"
        ),
    );
    let d = Dir::new();
    d.job(
        "long",
        "parallelism = 2",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.*\"]",
            src.url()
        ),
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\nwrite = \"overwrite\"",
            dst.url()
        ),
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(
        psql(&dst.0, &format!("SELECT count(*), min(v), max(v) FROM {a}")).trim(),
        "1000|a|a"
    );
    assert_eq!(
        psql(&dst.0, &format!("SELECT count(*), min(v), max(v) FROM {b}")).trim(),
        "700|b|b"
    );
}

#[test]
fn case6_two_jobs_writing_one_target_table_run_one_at_a_time() {
    let src = pg_source_rows(30_000);
    let dst = PgDb::new();
    psql(&dst.0, "CREATE TABLE t (id bigint, v bigint)");
    // The first job holds its locks while it waits for this one.
    let held = HeldLock::take(&dst.0, "t");
    let one = Dir::new();
    let two = Dir::new();
    for (d, name) in [(&one, "one"), (&two, "two")] {
        d.job(
            name,
            "parallelism = 1",
            &format!(
                "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 10000",
                src.url()
            ),
            &format!(
                "type = \"postgres\"\nurl = \"{}\"\nwrite = \"overwrite\"",
                dst.url()
            ),
        );
    }
    let first = one.spawn(&["run", "job.toml"]);
    wait_for(30, "the first job to take its locks", || {
        psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice lock: one'",
        )
        .trim()
            == "1"
    });
    let o = two.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("sluice table public.t"), "{}", err(&o));
    drop(held);
    let o = wait_within(first, 120, "the first job");
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(code(&two.run(&["run", "job.toml"])), 0);
    assert_eq!(pg_ids(&dst.0, "public.t"), (1..=30_000).collect::<Vec<_>>());
}

// ------------------------------------------------------------------------------------------
// Cases 15, 16, 17: a stop ends within its deadline, whatever holds the run; a server that
// never answers is an error, not a hang; a server-side timeout is reported as what it is.

/// Holds `LOCK TABLE … ACCESS EXCLUSIVE` on `table` in `db` until dropped.
struct HeldLock(std::process::Child, String);
impl HeldLock {
    fn take(db: &str, table: &str) -> HeldLock {
        let name = support::unique("held_lock");
        let child = Command::new("psql")
            .env("PGAPPNAME", &name)
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
            ])
            .arg(format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);"
            ))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(10, "the lock", || {
            psql(
                db,
                &format!(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE a.application_name = '{name}' AND l.mode = 'AccessExclusiveLock' \
                     AND l.granted AND l.locktype = 'relation'"
                ),
            )
            .trim()
                != "0"
        });
        HeldLock(child, name)
    }
}
impl Drop for HeldLock {
    fn drop(&mut self) {
        // The backend sleeps on with the lock after its client is gone: end it.
        let _ = psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = '{}'",
                self.1
            ),
        );
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn locked_copy(lock_source: bool) -> (Dir, PgDb, PgDb) {
    let src = pg_source_rows(20_000);
    let dst = PgDb::new();
    psql(&dst.0, "CREATE TABLE t (id bigint, v bigint)");
    let d = Dir::new();
    d.job(
        "locked",
        "",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let _ = lock_source;
    (d, src, dst)
}

#[test]
fn case15_a_stop_ends_a_run_blocked_by_a_locked_target() {
    let (d, _src, dst) = locked_copy(false);
    let _lock = HeldLock::take(&dst.0, "t");
    let child = d.spawn(&["run", "job.toml"]);
    wait_for(30, "the copy to wait for the lock", || {
        psql(
            &dst.0,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY%'",
        )
        .trim()
            != "0"
    });
    let asked = Instant::now();
    let o = d.run(&["stop", "locked"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = wait_within(child, 15, "the stopped run");
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    // The server-side COPY did not stay behind waiting for the lock.
    wait_for(10, "the blocked COPY to end on the server", || {
        psql(
            &dst.0,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%' AND application_name LIKE 'sluice%'",
        )
        .trim()
            == "0"
    });
}

#[test]
fn case15_a_second_signal_ends_a_run_blocked_by_a_locked_source_at_once() {
    let (d, src, _dst) = locked_copy(true);
    let _lock = HeldLock::take(&src.0, "t");
    let child = d.spawn(&["run", "job.toml"]);
    wait_for(30, "the planning to wait for the lock", || {
        psql(
            &src.0,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .trim()
            != "0"
    });
    signal(&child, "-TERM");
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "-TERM");
    let o = wait_within(child, 8, "the aborted run");
    assert_eq!(code(&o), 3, "{}", err(&o));
}

#[test]
fn case16_a_server_that_never_answers_is_an_error_not_a_hang() {
    let port = silent_server();
    let d = Dir::new();
    d.job(
        "silent",
        "",
        &format!("type = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:{port}/x\""),
        "type = \"sqlite\"\nurl = \"sqlite://out.db\"",
    );
    let started = Instant::now();
    let o = wait_within(
        d.spawn(&["run", "job.toml"]),
        30,
        "a run against a silent server",
    );
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(
        err(&o).contains("did not complete the startup within 10 s"),
        "{}",
        err(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // Verify connects as the connectors do: a silent target is an error too, not a hang.
    std::fs::write(d.path("t.csv"), "id\n1\n").unwrap();
    d.job(
        "silent",
        "",
        "type = \"csv\"\npath = \"t.csv\"",
        &format!("type = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:{port}/x\""),
    );
    let started = Instant::now();
    let o = wait_within(
        d.spawn(&["verify", "job.toml"]),
        30,
        "verify against a silent server",
    );
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(
        err(&o).contains("did not complete the startup within 10 s"),
        "{}",
        err(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // A job timeout, a stop and a hang-up end it sooner, as a stop (exit 3).
    d.job(
        "silent",
        "timeout = \"1s\"",
        &format!("type = \"mysql\"\nurl = \"mysql://root@127.0.0.1:{port}/x\"\ntables = [\"t\"]"),
        "type = \"sqlite\"\nurl = \"sqlite://out.db\"",
    );
    let o = wait_within(d.spawn(&["run", "job.toml"]), 6, "a run with a 1 s timeout");
    assert_eq!(code(&o), 3, "{}", err(&o));
    d.job(
        "silent",
        "",
        &format!("type = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:{port}/x\""),
        "type = \"sqlite\"\nurl = \"sqlite://out.db\"",
    );
    let child = d.spawn(&["run", "job.toml"]);
    std::thread::sleep(Duration::from_millis(800));
    signal(&child, "-HUP");
    let o = wait_within(child, 6, "a hung-up run");
    assert_eq!(code(&o), 3, "SIGHUP stops like SIGTERM: {}", err(&o));
}

#[test]
fn case17_a_target_statement_timeout_is_reported_as_such() {
    let src = pg_source_rows(50);
    let dst = PgDb::new();
    psql(
        &dst.0,
        &format!(
            "CREATE TABLE t (id bigint, v bigint);
             CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$;
             CREATE TRIGGER slow BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION slow();
             ALTER DATABASE {} SET statement_timeout = '500ms';",
            dst.0
        ),
    );
    let d = Dir::new();
    d.job(
        "timeout",
        "",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(err(&o).contains("statement timeout"), "{}", err(&o));
    assert!(
        err(&o).contains("statement_timeout"),
        "the hint names the setting: {}",
        err(&o)
    );
    assert!(!err(&o).contains("unfinished tables"), "{}", err(&o));
}

#[test]
fn case17_a_source_statement_timeout_fails_the_run_instead_of_cutting_the_split_short() {
    let src = pg_source_rows(2_000);
    psql(
        &src.0,
        &format!(
            "CREATE VIEW slow AS SELECT id, v, pg_sleep(0.001) IS NULL AS z FROM t;
             ALTER DATABASE {} SET statement_timeout = '300ms';",
            src.0
        ),
    );
    let d = Dir::new();
    d.job(
        "timeout",
        "",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.slow\"]",
            src.url()
        ),
        "type = \"sqlite\"\nurl = \"sqlite://out.db\"\ntable_map = { 'public.*' = '*' }",
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(err(&o).contains("statement timeout"), "{}", err(&o));
    let rows = sqlite_count(
        &d.path("out.db"),
        "SELECT count(*) FROM sqlite_schema WHERE name = 'slow'",
    );
    if rows == 1 {
        assert_eq!(
            sqlite_count(&d.path("out.db"), "SELECT count(*) FROM slow"),
            0,
            "no part of the split was committed"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Case 26: an incremental read continues where the last copy ended.

#[test]
fn case26_an_incremental_read_continues_after_the_last_copy() {
    let src = PgDb::new();
    psql(
        &src.0,
        "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL);
         INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;",
    );
    let d = Dir::new();
    d.job(
        "inc",
        "",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nread = \"incremental\"\ncursor_column = \"v\"",
            src.url()
        ),
        &format!("{SQLITE_APPEND}\ntable_map = {{ 'public.*' = '*' }}"),
    );
    assert_eq!(code(&d.run(&["run", "job.toml"])), 0);
    psql(
        &src.0,
        "INSERT INTO t SELECT g, g FROM generate_series(101, 150) g",
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert!(out(&o).contains("50 rows written"), "{}", out(&o));
    assert_eq!(
        sqlite_ids(&d.path("out.db"), "t"),
        (1..=150).collect::<Vec<_>>()
    );
    // Nothing new: nothing written, and still no refusal (an incremental re-run appends only
    // what is new).
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    assert_eq!(sqlite_ids(&d.path("out.db"), "t").len(), 150);
}

/// Runs `job.toml` in `d` and kills it (SIGKILL) once it committed a split of its own to the
/// PostgreSQL target `dst` (its `_sluice_checkpoints`). Returns false if it finished first.
fn kill_after_a_commit(d: &Dir, dst: &PgDb, job: &str) -> bool {
    let count = || {
        let ready = psql(
            &dst.0,
            "SELECT to_regclass('_sluice_jobs') IS NOT NULL \
               AND to_regclass('_sluice_checkpoints') IS NOT NULL",
        );
        if ready.trim() != "t" {
            return 0;
        }
        psql(
            &dst.0,
            &format!(
                "SELECT count(*) FROM _sluice_checkpoints c JOIN _sluice_jobs j \
                 ON j.job = c.job AND j.generation = c.generation WHERE c.job = '{job}'"
            ),
        )
        .trim()
        .parse::<usize>()
        .unwrap_or(0)
    };
    let before = count();
    let mut child = d.spawn(&["run", "job.toml"]);
    let start = Instant::now();
    while child.running() && count() <= before && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !child.running() {
        return false;
    }
    child.kill();
    // The run may have finished between the last look and the kill.
    !job_finished(dst, job)
}

/// Whether the target records the job's current copy as finished.
fn job_finished(dst: &PgDb, job: &str) -> bool {
    let ready = psql(&dst.0, "SELECT to_regclass('_sluice_jobs') IS NOT NULL");
    ready.trim() == "t"
        && psql(
            &dst.0,
            &format!(
                "SELECT coalesce(bool_or(finished), false) FROM _sluice_jobs WHERE job = '{job}'"
            ),
        )
        .trim()
            == "t"
}

/// What users expect of a resumed copy of a source that is being written: `verify =
/// "repair"` leaves the target equal to the source as it is at the end, whatever changed
/// between the kills and the resume.
#[test]
fn case1_verify_repair_makes_a_resumed_copy_equal_to_the_source_at_its_end() {
    let src = pg_source_rows(60_000);
    let dst = PgDb::new();
    let d = Dir::new();
    d.job(
        "converge",
        "parallelism = 1\nverify = \"repair\"",
        &format!(
            "type = \"postgres\"\nurl = \"{}\"\ntables = [\"public.t\"]\nchunk_rows = 3000",
            src.url()
        ),
        &format!("type = \"postgres\"\nurl = \"{}\"", dst.url()),
    );
    assert!(
        kill_after_a_commit(&d, &dst, "converge"),
        "the run finished before it was killed"
    );
    // Rows change in ranges already copied and in ranges not yet copied.
    psql(
        &src.0,
        "DELETE FROM t WHERE id % 50 = 0;
         UPDATE t SET v = -v WHERE id % 77 = 0;
         INSERT INTO t SELECT g, g FROM generate_series(60001, 61000) g;",
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}\n{}", out(&o), err(&o));
    assert!(out(&o).contains("verify after the repair"), "{}", out(&o));
    let rows = |db: &str| psql(db, "SELECT id, v FROM t ORDER BY id");
    assert!(
        rows(&src.0) == rows(&dst.0),
        "the target equals the source at the end"
    );
}

/// Case 25 with the persisted plan: a big file read in byte ranges that changes between an
/// interrupted run and its resume no longer matches its planned ranges: the resume refuses
/// it instead of reading records cut in the middle.
#[test]
fn case25_a_file_changed_between_runs_is_refused_by_its_planned_ranges() {
    let d = Dir::new();
    let mut text = String::from("id,v\n");
    for id in 0..200_000 {
        // A bad value late in the file: the run fails there, earlier ranges committed.
        if id == 180_000 {
            text.push_str("oops,1\n");
        } else {
            text.push_str(&format!("{id},{}\n", id * 2));
        }
    }
    d.write("in/big.csv", &text);
    d.job(
        "ranges",
        "parallelism = 1",
        "type = \"csv\"\npath = \"in/big.csv\"\ntable = \"t\"\nsplit_bytes = 200000\n\
         schema = { id = \"int64\", v = \"int64\" }",
        SQLITE_APPEND,
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", err(&o));
    let committed = sqlite_count(&d.path("out.db"), "SELECT count(*) FROM t");
    assert!(committed > 100_000, "earlier ranges committed: {committed}");
    // The file is rewritten: rows shift, the planned byte ranges no longer fall on records.
    d.write(
        "in/big.csv",
        text.replace("oops,1", "180000,360000")
            .replace("\n1,", "\n1000001,"),
    );
    let o = d.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(
        err(&o).contains("changed since the job was planned"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("--from-scratch"), "{}", err(&o));
    assert_eq!(
        sqlite_count(&d.path("out.db"), "SELECT count(*) FROM t"),
        committed,
        "nothing more was written"
    );
}

/// Case 5 with a SQLite target: the lock files beside the database keep a second process (from
/// another state directory) off a running job.
#[test]
fn case5_a_sqlite_target_is_written_by_one_run_of_a_job_at_a_time() {
    let d = Dir::new();
    let mut text = String::from("id,v\n");
    for id in 0..3_000_000 {
        text.push_str(&format!("{id},{}\n", id * 2));
    }
    d.write("in/t.csv", text);
    d.job(
        "sqlitelock",
        "parallelism = 1",
        "type = \"csv\"\npath = \"in\"\nschema = { id = \"int64\", v = \"int64\" }",
        SQLITE_APPEND,
    );
    let first = d.spawn(&["--state", "a", "run", "job.toml"]);
    wait_for(60, "the first run to create its table", || {
        d.path("out.db").exists()
            && sqlite_count(
                &d.path("out.db"),
                "SELECT count(*) FROM sqlite_schema WHERE name = 't'",
            ) == 1
    });
    let o = d.run(&["--state", "b", "run", "job.toml"]);
    let first = wait_within(first, 300, "the first run");
    assert_eq!(code(&first), 0, "{}", err(&first));
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(
        err(&o).contains("is locked by another process"),
        "{}",
        err(&o)
    );
    assert_eq!(
        sqlite_count(&d.path("out.db"), "SELECT count(*) FROM t"),
        3_000_000
    );
}

/// A shared PostgreSQL state store (`--state postgres://…`): runs, status and stops work
/// through it, nothing is kept in a local state directory, and one job runs once at a time
/// against it, whichever directory or machine starts it.
#[test]
fn a_shared_postgres_state_store_holds_runs_and_the_job_lock() {
    let state_db = PgDb::new();
    let src = PgDb::new();
    let state = format!("{}?schema=ops", state_db.url());
    // A slow source (half a second per row) keeps the first run going.
    let slow = |d: &Dir| {
        d.job(
            "shared",
            "parallelism = 1",
            &format!(
                "type = \"postgres\"\nurl = \"{}\"\n\
                 query = \"SELECT g AS id, pg_sleep(0.5) IS NULL AS z FROM generate_series(1, 60) g\"",
                src.url()
            ),
            "type = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"overwrite\"",
        )
    };
    let d = Dir::new();
    slow(&d);
    let first = d.spawn(&["--state", &state, "run", "job.toml"]);
    wait_for(60, "the run in the shared store", || {
        psql(
            &state_db.0,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'ops' AND tablename = 'runs'",
        )
        .trim()
            == "1"
            && psql(
                &state_db.0,
                "SELECT count(*) FROM ops.runs WHERE job = 'shared' AND state = 'RUNNING'",
            )
            .trim()
                == "1"
    });
    // Another directory, another target, the same store: the job is running.
    let other = Dir::new();
    slow(&other);
    let o = other.run(&["--state", &state, "run", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(
        err(&o).contains("already running against the state store"),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("NOTICE"), "{}", err(&o));
    // `sluice stop` finds the run through the store's control directory.
    let o = d.run(&["--state", &state, "stop", "shared"]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    let o = wait_within(first, 60, "the stopped run");
    assert_eq!(code(&o), 3, "{}", err(&o));
    let o = d.run(&["--state", &state, "status", "shared", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let states: Vec<&str> = v["jobs"][0]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["STOPPED"],
        "a refused run leaves no run record: {v}"
    );
    assert!(
        !d.path(".sluice").exists() && !other.path(".sluice").exists(),
        "nothing kept in a local state directory"
    );
    // The audit log says who started the run and how it ended (stopped, and why); the run
    // records the machine it ran on.
    let log = psql(
        &state_db.0,
        "SELECT string_agg(action || ' ' || actor || ' ' || detail, E'\n' ORDER BY id)
         FROM ops.audit WHERE job = 'shared'",
    );
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 2, "{log}");
    assert!(lines[0].starts_with("run.start cli:"), "{log}");
    let end = lines[lines.len() - 1];
    assert!(
        end.starts_with("run.end cli:")
            && end.contains("STOPPED (stop requested by")
            && end.contains("rows written"),
        "{log}"
    );
    let host = psql(
        &state_db.0,
        "SELECT host FROM ops.runs WHERE job = 'shared'",
    );
    assert!(!host.trim().is_empty(), "the run records its machine");
}
