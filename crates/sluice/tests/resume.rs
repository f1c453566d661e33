//! Stop, kill and resume: after any termination, running the job again ends with the target
//! equal to the source, row for row — nothing lost, nothing doubled.
//!
//! The crash tests kill the process with SIGKILL at random moments (seeded, printed on
//! failure), resume until the job finishes, then compare every row.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::Env;

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small deterministic generator (xorshift), so a failing seed can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
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

/// Rows of the source CSV files: `id,v,note` with ids unique across files.
fn write_csv_source(env: &Env, files: usize, rows: usize) -> Vec<(i64, i64, String)> {
    let mut all = Vec::new();
    for f in 0..files {
        let mut s = String::from("id,v,note\n");
        for i in 0..rows {
            let id = (f * 1_000_000 + i) as i64;
            let note = format!("n{}-\u{1F9CA}", id % 97);
            s.push_str(&format!("{id},{},{note}\n", id * 3));
            all.push((id, id * 3, note));
        }
        env.write(&format!("in/part{f:03}.csv"), s);
    }
    all.sort();
    all
}

fn sqlite_rows(db: &Path, table: &str) -> Vec<(i64, i64, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare(&format!(
            "SELECT id, v, note FROM \"{table}\" ORDER BY id, v"
        ))
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Runs the job and kills it (SIGKILL) after a random delay, until it has been killed `kills`
/// times or finishes on its own; then runs it to the end. Returns how many kills landed.
fn kill_and_resume(env: &Env, job: &str, kills: usize, max_delay_ms: u64, rng: &mut Rng) -> usize {
    let mut killed = 0;
    while killed < kills {
        let mut child = env
            .cmd(&["run", job])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.below(max_delay_ms)));
        if let Some(status) = child.try_wait().unwrap() {
            // Finished on its own: running it again would start a new run (and, in append
            // mode, add every row again), so the test ends here.
            assert!(status.success(), "a run failed before it was killed");
            return killed;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        killed += 1;
        let o = env.run(&["status", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["jobs"][0]["runs"][0]["state"] == "FINISHED" {
            // Killed after the run had recorded its end: running again would be a new run.
            return killed;
        }
    }
    let o = env.run(&["run", job]);
    assert_eq!(code(&o), 0, "final run failed: {}", stderr(&o));
    killed
}

#[test]
fn kill_9_at_random_points_csv_to_sqlite_append_no_key() {
    let s = seed();
    let mut rng = Rng(s);
    let env = Env::new();
    // 1.6M rows, so 20 kills land before the copy finishes on a fast, idle machine too.
    let expected = write_csv_source(&env, 400, 4_000);
    env.write(
        "job.toml",
        "[job]\nname = \"crash\"\nparallelism = 2\n[source]\ntype = \"csv\"\npath = \"in\"\ntable = \"t\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"append\"\n",
    );
    let killed = kill_and_resume(&env, "job.toml", 20, 100, &mut rng);
    assert!(
        killed >= 20,
        "seed {s}: only {killed} kills landed; the job finished too fast"
    );
    let got = sqlite_rows(&env.path("out.db"), "t");
    assert_eq!(
        got.len(),
        expected.len(),
        "seed {s}: {killed} kills; row count differs"
    );
    assert!(
        got == expected,
        "seed {s}: rows differ after {killed} kills"
    );
}

#[test]
fn kill_9_at_random_points_sqlite_to_parquet() {
    let s = seed();
    let mut rng = Rng(s);
    let env = Env::new();
    let db = env.path("src.db");
    let mut expected = Vec::new();
    {
        let mut c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, note TEXT)")
            .unwrap();
        let tx = c.transaction().unwrap();
        // Enough rows that 20 kills land before a copy can finish, even on an idle machine.
        for id in 0..800_000i64 {
            let note = format!("row {id} \u{e9}");
            tx.execute(
                "INSERT INTO t VALUES (?1, ?2, ?3)",
                rusqlite::params![id, id * 7, note],
            )
            .unwrap();
            expected.push((id, id * 7, note));
        }
        tx.commit().unwrap();
    }
    env.write(
        "job.toml",
        "[job]\nname = \"crash-pq\"\nparallelism = 2\n[source]\ntype = \"sqlite\"\nurl = \"sqlite://src.db\"\nchunk_rows = 5000\n[sink]\ntype = \"parquet\"\npath = \"out\"\n",
    );
    let killed = kill_and_resume(&env, "job.toml", 20, 100, &mut rng);
    assert!(
        killed >= 20,
        "seed {s}: only {killed} kills landed; the job finished too fast"
    );
    // Read every final Parquet part; temporary files are hidden and must not count.
    let mut got = Vec::new();
    let dir = env.path("out/t");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let f = std::fs::File::open(&p).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            let vs = b
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            let notes = b
                .column(2)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                got.push((ids.value(i), vs.value(i), notes.value(i).to_string()));
            }
        }
    }
    got.sort();
    assert_eq!(
        got.len(),
        expected.len(),
        "seed {s}: {killed} kills; row count differs"
    );
    assert!(
        got == expected,
        "seed {s}: rows differ after {killed} kills"
    );
}

#[test]
fn sigterm_then_resume_finishes_exactly() {
    let env = Env::new();
    let expected = write_csv_source(&env, 150, 20_000);
    env.write(
        "job.toml",
        "[job]\nname = \"term\"\nparallelism = 2\n[source]\ntype = \"csv\"\npath = \"in\"\ntable = \"t\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"append\"\n",
    );
    let child = env
        .cmd(&["run", "job.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let o = env.run(&["status", "term", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"][0]["runs"][0]["state"], "STOPPED");
    let o = env.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("Resuming"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("splits committed by an earlier run are skipped"),
        "{}",
        stderr(&o)
    );
    let got = sqlite_rows(&env.path("out.db"), "t");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected);
    // A finished append job is not appended again by accident (issue 9, case 7) …
    let o = env.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already finished its copy")
            && stderr(&o).contains("a second time")
            && stderr(&o).contains("--from-scratch"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sqlite_rows(&env.path("out.db"), "t").len(), expected.len());
    // … only when asked: --from-scratch copies everything again.
    let o = env.run(&["run", "job.toml", "--from-scratch"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        sqlite_rows(&env.path("out.db"), "t").len(),
        2 * expected.len()
    );
}

#[test]
fn sluice_stop_from_another_terminal_is_acknowledged_at_once() {
    let env = Env::new();
    write_csv_source(&env, 150, 20_000);
    env.write(
        "job.toml",
        "[job]\nname = \"remote\"\nparallelism = 2\n[source]\ntype = \"csv\"\npath = \"in\"\ntable = \"t\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\n",
    );
    let child = env
        .cmd(&["run", "job.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the job serves its control socket.
    let started = Instant::now();
    loop {
        let o = env.run(&["pause", "remote"]);
        if code(&o) == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "job never became controllable: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second run of the same job is refused while it runs.
    let o = env.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("already running"), "{}", stderr(&o));
    let o = env.run(&["resume", "remote"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = env.run(&["stop", "remote", "--timeout", "10s"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let ms: u64 = out
        .split("acknowledged in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no acknowledgement time in {out:?}"));
    assert!(ms < 100, "stop acknowledged after {ms} ms");
    assert!(out.contains("ended after"), "{out}");
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let o = env.run(&["stop", "remote"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
}

/// Rows in `table` of the SQLite database `db` (0 while it does not exist yet). With
/// `write = "append"` these are exactly the rows of the splits committed so far.
fn sqlite_count(db: &Path, table: &str) -> usize {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    c.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as usize)
    .unwrap_or(0)
}

#[test]
fn kill_9_in_a_big_csv_resumes_from_its_committed_byte_ranges() {
    let env = Env::new();
    // One file of about 16 MB, read as byte ranges of 1 MB; every tenth note holds quoted
    // line breaks, so a range boundary found by looking for newlines alone would cut rows.
    let rows = 600_000i64;
    let mut text = String::from("id,v,note\n");
    let mut expected = Vec::new();
    for id in 0..rows {
        let note = if id % 10 == 0 {
            format!("line\nbreak, \"{id}\"\r\n")
        } else {
            format!("n{}-\u{1F9CA}", id % 97)
        };
        text.push_str(&format!(
            "{id},{},\"{}\"\n",
            id * 3,
            note.replace('"', "\"\"")
        ));
        expected.push((id, id * 3, note));
    }
    env.write("in/big.csv", text);
    env.write(
        "job.toml",
        "[job]\nname = \"bigfile\"\nparallelism = 2\n[source]\ntype = \"csv\"\npath = \"in/big.csv\"\ntable = \"t\"\nsplit_bytes = 1000000\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"append\"\n",
    );
    let db = env.path("out.db");
    let mut child = env
        .cmd(&["run", "job.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once about half of the file is committed, as a Ctrl-C late in a long copy.
    let started = Instant::now();
    while sqlite_count(&db, "t") < rows as usize / 2 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the run ended ({status}) before it was killed: {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "nothing committed after 300 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let committed = sqlite_count(&db, "t");
    assert!(
        committed < rows as usize,
        "the run finished before the kill; make the file larger"
    );
    // The killed run never recorded its end: status tells it was interrupted, not running.
    let o = env.run(&["status", "bigfile", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"][0]["runs"][0]["state"], "INTERRUPTED", "{v}");

    let o = env.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("splits committed by an earlier run are skipped"),
        "{}",
        stderr(&o)
    );
    // The resumed run read only the ranges that were not committed: nothing starts over.
    let s = env.run(&["status", "bigfile", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let read = v["jobs"][0]["last_run_tables"][0]["rows_read"].as_u64();
    assert_eq!(
        read,
        Some(rows as u64 - committed as u64),
        "{committed} rows were committed before the kill; the resume read {read:?}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let got = sqlite_rows(&db, "t");
    assert_eq!(got.len(), expected.len(), "row count differs");
    assert!(got == expected, "rows differ");
}
