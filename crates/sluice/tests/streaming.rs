//! Streaming jobs end to end: a synthetic endless source (`type = "generate"`) into SQLite
//! commits every `checkpoint_interval` while it runs, survives `kill -9` at random moments,
//! and resumes exactly — no id lost, none doubled — until a graceful stop (exit 3).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

mod support;

use support::Env;

fn db(env: &Env) -> PathBuf {
    env.path("out.db")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `(count, distinct ids, min id, max id, rows whose columns do not match their id)`.
fn census(db: &Path) -> Option<(i64, i64, i64, i64, i64)> {
    let c = rusqlite::Connection::open(db).ok()?;
    c.query_row(
        "SELECT count(*), count(DISTINCT id), coalesce(min(id), 0), coalesce(max(id), -1), \
         coalesce(sum(name <> 'row-' || id OR amount <> (id * 7 % 1000) / 4.0), 0) FROM events",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .ok()
}

/// The committed position (`next` id) of the stream's split.
fn committed_next(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    let p: String = c
        .query_row(
            "SELECT position FROM _sluice_checkpoints WHERE job = 'stream'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&p).unwrap();
    v["value"]["next"].as_i64().unwrap()
}

fn exact(db: &Path, what: &str) -> i64 {
    let (count, distinct, min, max, wrong) = census(db).unwrap();
    assert_eq!(count, distinct, "{what}: an id was written twice");
    assert_eq!(min, 0, "{what}");
    assert_eq!(count, max + 1, "{what}: an id is missing");
    assert_eq!(wrong, 0, "{what}: a row does not match its id");
    assert_eq!(
        committed_next(db),
        count,
        "{what}: the checkpoint is not the rows' end"
    );
    count
}

const JOB: &str = "[job]\nname = \"stream\"\nmode = \"streaming\"\ncheckpoint_interval = \"150ms\"\nparallelism = 1\n[source]\ntype = \"generate\"\ntable = \"events\"\nrate = 20000\nbatch_size = 250\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"append\"\n";

/// Waits until the target holds more rows than `than`, while the job runs.
fn wait_for_more(env: &Env, child: &mut Child, than: i64) -> i64 {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the streaming job ended by itself"
        );
        if let Some((n, ..)) = census(&db(env))
            && n > than
        {
            return n;
        }
        assert!(Instant::now() < until, "no commit within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stream_commits_while_it_runs_and_resumes_exactly_after_kill_9() {
    let env = Env::new();
    env.write("job.toml", JOB);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut seen = 0;
    for round in 0..6u64 {
        let mut child = env.spawn(&["run", "job.toml"]);
        // Rows appear while the job runs (it never ends): commits happen at the interval,
        // and grow from one to the next.
        let first = wait_for_more(&env, &mut child, seen);
        let second = wait_for_more(&env, &mut child, first);
        assert!(second > first);
        std::thread::sleep(Duration::from_millis((seed >> round) % 300));
        child.kill().unwrap();
        child.wait().unwrap();
        seen = exact(&db(&env), &format!("after kill {round} (seed {seed})"));
    }
    // A graceful stop commits the last safe point and exits 3; the next run goes on.
    let mut child = env.spawn(&["run", "job.toml"]);
    wait_for_more(&env, &mut child, seen);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Stream stopped at its last checkpoint"),
        "{}",
        stderr(&o)
    );
    let stopped = exact(&db(&env), "after the stop");
    assert!(stopped > seen);
    let o = env.run(&["status", "stream", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"][0]["runs"][0]["state"], "STOPPED", "{v}");
}

#[test]
fn a_bounded_stream_finishes_and_a_batch_job_ignores_checkpoint_settings() {
    let env = Env::new();
    // Streaming with an end: finishes (exit 0) with every row.
    env.write(
        "job.toml",
        JOB.replace("rate = 20000", "rows = 20000\nrate = 40000"),
    );
    let o = env.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(exact(&db(&env), "bounded stream"), 20_000);

    // A batch job given streaming's settings still runs as batch and reports its true end.
    let env = Env::new();
    env.write(
        "job.toml",
        "[job]\nname = \"stream\"\ncheckpoint_interval = \"1ms\"\ncheckpoint_timeout = \"1ms\"\n[source]\ntype = \"generate\"\ntable = \"events\"\nrows = 30000\nchunk_rows = 10000\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\n",
    );
    let o = env.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (count, distinct, ..) = census(&db(&env)).unwrap();
    assert_eq!((count, distinct), (30_000, 30_000));
    let o = env.run(&["status", "stream", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"][0]["runs"][0]["state"], "FINISHED", "{v}");
}

#[test]
fn streaming_jobs_that_cannot_be_exact_are_refused_before_they_run() {
    let env = Env::new();
    env.write("in.csv", "id\n1\n");
    let cases = [
        (
            "[job]\nname = \"s\"\nmode = \"streaming\"\n[source]\ntype = \"csv\"\npath = \"in.csv\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\n",
            "source type `csv` cannot stream",
        ),
        (
            "[job]\nname = \"s\"\nmode = \"streaming\"\n[source]\ntype = \"generate\"\n[sink]\ntype = \"jsonl\"\npath = \"out\"\n",
            "write = \"overwrite\" replaces a table's content when the copy ends",
        ),
        (
            "[job]\nname = \"s\"\n[source]\ntype = \"generate\"\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\n",
            "never ends, and a batch job must",
        ),
        (
            "[job]\nname = \"s\"\n[source]\ntype = \"generate\"\nrows = 5\nrate = -1\n[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\n",
            "`rate` must be a positive number",
        ),
    ];
    for (job, message) in cases {
        env.write("job.toml", job);
        let o = env.run(&["run", "job.toml"]);
        assert_eq!(code(&o), 2, "{job}\n{}", stderr(&o));
        assert!(stderr(&o).contains(message), "{job}\n{}", stderr(&o));
        assert!(stderr(&o).contains("job.toml"), "{}", stderr(&o));
    }
    assert!(!db(&env).exists(), "nothing ran");
}

#[test]
fn validate_describes_a_stream() {
    let env = Env::new();
    env.write("job.toml", JOB);
    let o = env.run(&["validate", "job.toml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("generate → sqlite (append write), 1 table(s), streaming: a checkpoint every 150ms, each within 1m"),
        "{out}"
    );
    assert!(out.contains("target writable"), "{out}");
    // An endless source cannot be read to its end to compare: refused, not a hang.
    let o = env.run(&["verify", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("never ends, so verify cannot read it"),
        "{}",
        stderr(&o)
    );
}

/// The ids in every JSON Lines part of `out/events/` (dot files are temporary).
fn jsonl_ids(env: &Env) -> Vec<i64> {
    let mut ids = Vec::new();
    let dir = env.path("out/events");
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["name"], format!("row-{}", v["id"]), "{line}");
            ids.push(v["id"].as_i64().unwrap());
        }
    }
    ids.sort_unstable();
    ids
}

#[test]
fn a_stream_into_files_resumes_exactly_after_kill_9() {
    let env = Env::new();
    env.write(
        "job.toml",
        JOB.replace(
            "[sink]\ntype = \"sqlite\"\nurl = \"sqlite://out.db\"\nwrite = \"append\"\n",
            "[sink]\ntype = \"jsonl\"\npath = \"out\"\nwrite = \"append\"\n",
        ),
    );
    let mut seen = 0usize;
    for round in 0..5u64 {
        let mut child = env.spawn(&["run", "job.toml"]);
        let until = Instant::now() + Duration::from_secs(20);
        // Parts appear while the stream runs: each commit renames one into place.
        while jsonl_ids(&env).len() <= seen + 500 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the stream ended by itself"
            );
            assert!(Instant::now() < until, "no part within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(23 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let ids = jsonl_ids(&env);
        let n = ids.len();
        assert_eq!(
            ids,
            (0..n as i64).collect::<Vec<_>>(),
            "round {round}: lost or doubled ids"
        );
        seen = n;
    }
    // A graceful stop ends on a part boundary too.
    let mut child = env.spawn(&["run", "job.toml"]);
    while jsonl_ids(&env).len() <= seen {
        assert!(child.try_wait().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let ids = jsonl_ids(&env);
    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>());
}

/// What changes between a kill and the resume of a stream: the target truncated (its
/// checkpoints no longer describe it, so the stream starts over and fills it again, exactly);
/// the job file changed in a way that would mix two configurations (refused, exit 2).
#[test]
fn a_stream_resumed_after_its_target_or_job_file_changed_stays_exact_or_is_refused() {
    let env = Env::new();
    env.write("job.toml", JOB);
    let mut child = env.spawn(&["run", "job.toml"]);
    wait_for_more(&env, &mut child, 1000);
    child.kill().unwrap();
    child.wait().unwrap();
    exact(&db(&env), "after the kill");
    // The target is emptied behind the job's back.
    rusqlite::Connection::open(db(&env))
        .unwrap()
        .execute_batch("DELETE FROM events")
        .unwrap();
    let mut child = env.spawn(&["run", "job.toml"]);
    wait_for_more(&env, &mut child, 1000);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("truncated or re-created"),
        "{}",
        stderr(&o)
    );
    exact(&db(&env), "after the emptied target was filled again");
    // The job file now names another table: resuming would mix two copies.
    env.write(
        "job.toml",
        JOB.replace("table = \"events\"", "table = \"other\""),
    );
    let o = env.run(&["run", "job.toml"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--from-scratch"), "{}", stderr(&o));
    exact(&db(&env), "after the refused resume");
}
