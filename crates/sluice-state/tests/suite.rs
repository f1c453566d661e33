//! One test suite both state stores pass: the embedded SQLite store and the PostgreSQL store
//! (against the real server, `SLUICE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, in a database of its own).

use std::process::Command;
use std::sync::Arc;

use sluice_core::Position;
use std::time::Duration;

use sluice_state::{
    AuditEntry, JobState, RunTable, RunUpdate, SplitRecord, StateStore, TargetState, last_run,
    observed_state,
};

async fn suite(s: Arc<dyn StateStore>, reopen: impl AsyncFn() -> Arc<dyn StateStore>) {
    // Runs: begin, live updates, end; a late update does not undo the end.
    let id = s.begin_run("copy", "g1", 42).await.unwrap();
    let r = last_run(&*s, "copy").await.unwrap().unwrap();
    assert_eq!((r.id, r.state.as_str(), r.pid), (id, "RUNNING", 42));
    assert_eq!(r.generation, "g1");
    let tables = vec![RunTable {
        table: "a".into(),
        target: "a".into(),
        rows_read: 2,
        rows_written: 2,
        rows_written_earlier: 3,
        splits_done: 1,
        splits_total: 2,
        complete: false,
    }];
    let u = RunUpdate {
        state: "PAUSED".into(),
        rows_written: 2,
        rows_earlier: 3,
        bytes_read: 4,
        tables: tables.clone(),
        ..RunUpdate::default()
    };
    s.update_run(id, &u).await.unwrap();
    let r = last_run(&*s, "copy").await.unwrap().unwrap();
    assert_eq!(
        (r.state.as_str(), r.rows_written, r.rows_earlier),
        ("PAUSED", 2, 3)
    );
    assert!(r.ended_at.is_none(), "an update does not end the run");
    let mut done = tables.clone();
    done[0].rows_written = 5;
    done[0].complete = true;
    s.end_run(
        id,
        &RunUpdate {
            state: "FINISHED".into(),
            rows_written: 5,
            tables: done.clone(),
            ..u.clone()
        },
    )
    .await
    .unwrap();
    s.update_run(id, &u).await.unwrap();
    // What was committed is there after the store is opened again.
    let s = reopen().await;
    let r = last_run(&*s, "copy").await.unwrap().unwrap();
    assert_eq!((r.state.as_str(), r.rows_written), ("FINISHED", 5));
    assert!(r.ended_at.is_some());
    assert_eq!(s.run_tables(id).await.unwrap(), done);
    assert_eq!(s.jobs().await.unwrap(), ["copy"]);
    assert_eq!(s.runs("copy", 10).await.unwrap().len(), 1);

    // Generations and positions.
    assert_eq!(s.generation("j").await.unwrap(), None);
    let m1 = serde_json::json!({"plan": 1});
    s.start_generation("j", "g1", &m1).await.unwrap();
    let mut p = Position::new("t#0", serde_json::json!({"rows": 5}));
    p.done = true;
    let rec = SplitRecord {
        split: "t#0".into(),
        table: "t".into(),
        position: p.clone(),
        rows: 5,
        updated_at: String::new(),
    };
    s.save_position("j", "g1", &rec).await.unwrap();
    s.save_position("j", "g1", &rec).await.unwrap();
    let got = s.positions("j", "g1").await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].position.clone(), got[0].rows), (p, 5));
    assert!(s.positions("j", "g2").await.unwrap().is_empty());
    s.finish_generation("j").await.unwrap();
    let g = s.generation("j").await.unwrap().unwrap();
    assert_eq!((g.id.as_str(), g.finished), ("g1", true));
    assert_eq!(g.manifest, Some(m1));
    s.start_generation("j", "g2", &serde_json::json!({"plan": 2}))
        .await
        .unwrap();
    let g = s.generation("j").await.unwrap().unwrap();
    assert_eq!((g.id.as_str(), g.finished), ("g2", false));
    assert!(
        s.positions("j", "g1").await.unwrap().is_empty(),
        "a new generation forgets positions"
    );

    // The job lock: one holder at a time; released when dropped.
    let lock = s.lock_job("j").await.unwrap();
    let again = reopen().await;
    let e = again
        .lock_job("j")
        .await
        .expect_err("a second holder is refused");
    assert!(e.to_string().contains("already running"), "{e}");
    assert_eq!(e.kind(), sluice_core::ErrorKind::Config);
    assert!(again.lock_job("other").await.is_ok(), "locks are per job");
    drop(lock);
    assert!(again.lock_job("j").await.is_ok(), "released when dropped");

    // A run records its machine; a live run of this machine whose process is gone, or one
    // that stopped rewriting its record, is interrupted.
    let live = s.begin_run("beat", "g", std::process::id()).await.unwrap();
    let r = last_run(&*s, "beat").await.unwrap().unwrap();
    assert_eq!(r.host, sluice_state::host_name());
    assert_eq!(observed_state(&r), JobState::Running);
    let mut gone = r.clone();
    gone.pid = u32::MAX - 1;
    assert_eq!(observed_state(&gone), JobState::Interrupted);
    let mut elsewhere = gone.clone();
    elsewhere.host = "another-machine".into();
    assert_eq!(
        observed_state(&elsewhere),
        JobState::Running,
        "another machine's pid says nothing here; its heartbeat is fresh"
    );
    elsewhere.updated_at = Some("2020-01-01T00:00:00.000Z".into());
    assert_eq!(observed_state(&elsewhere), JobState::Interrupted);
    s.end_run(
        live,
        &RunUpdate {
            state: "STOPPED".into(),
            ..RunUpdate::default()
        },
    )
    .await
    .unwrap();
    let r = last_run(&*s, "beat").await.unwrap().unwrap();
    assert_eq!(observed_state(&r), JobState::Stopped);

    // The audit log: newest first, per job or all.
    for (job, action) in [("a", "run.start"), ("b", "stop"), ("a", "run.end")] {
        let id = s
            .record_audit(&AuditEntry::new(job, "cli:tester@here", action, "x"))
            .await
            .unwrap();
        assert!(id > 0);
    }
    let a = s.audit(Some("a"), 10).await.unwrap();
    let actions: Vec<_> = a.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["run.end", "run.start"]);
    assert!(
        a.iter()
            .all(|e| e.actor == "cli:tester@here" && !e.at.is_empty())
    );
    assert_eq!(s.audit(None, 2).await.unwrap().len(), 2);

    // Leases: one holder at a time; the same holder extends under the same token; a lapsed
    // or given-back lease goes to the next holder under a greater token, and the old token
    // can neither renew nor give it back.
    let ttl = Duration::from_secs(60);
    let l1 = s.acquire_lease("job:x", "w1", ttl).await.unwrap().unwrap();
    assert_eq!((l1.holder.as_str(), l1.token), ("w1", 1));
    assert_eq!(s.acquire_lease("job:x", "w2", ttl).await.unwrap(), None);
    let again = s.acquire_lease("job:x", "w1", ttl).await.unwrap().unwrap();
    assert_eq!(again.token, l1.token, "extending keeps the token");
    let renewed = s.renew_lease(&l1, ttl).await.unwrap().unwrap();
    assert!(renewed.expires_at_ms >= l1.expires_at_ms);
    let short = s
        .acquire_lease("job:y", "w1", Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        s.renew_lease(&short, ttl).await.unwrap(),
        None,
        "a lapsed lease cannot be renewed"
    );
    let taken = s.acquire_lease("job:y", "w2", ttl).await.unwrap().unwrap();
    assert_eq!(
        (taken.holder.as_str(), taken.token),
        ("w2", short.token + 1)
    );
    s.release_lease(&short).await.unwrap();
    assert_eq!(
        s.acquire_lease("job:y", "w3", ttl).await.unwrap(),
        None,
        "a stale holder cannot give back another's lease"
    );
    s.release_lease(&taken).await.unwrap();
    let l3 = s.acquire_lease("job:y", "w3", ttl).await.unwrap().unwrap();
    assert_eq!(
        l3.token,
        taken.token + 1,
        "a given-back lease's token stays spent"
    );
    let w2_again = s.acquire_lease("job:y", "w2", ttl).await.unwrap();
    assert_eq!(w2_again, None);
    let all = s.leases().await.unwrap();
    let names: Vec<_> = all.iter().map(|l| l.resource.as_str()).collect();
    assert_eq!(names, ["job:x", "job:y"]);

    // Workers' heartbeats.
    s.heartbeat("w1", "10.0.0.1:8083").await.unwrap();
    s.heartbeat("w2", "10.0.0.2:8083").await.unwrap();
    s.heartbeat("w1", "10.0.0.9:8083").await.unwrap();
    let w = s.workers().await.unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(
        (w[0].id.as_str(), w[0].address.as_str()),
        ("w1", "10.0.0.9:8083")
    );
    assert!(
        w.iter().all(|w| (0..60_000).contains(&w.heartbeat_age_ms)),
        "{w:?}"
    );

    hosted_jobs(&*s, &reopen).await;
    tokens(&*s, &reopen).await;
}

/// Hosted jobs: created once; config, target state and reset flag changed by name; listed by
/// name; forgotten without their runs.
async fn hosted_jobs(s: &dyn StateStore, reopen: &impl AsyncFn() -> Arc<dyn StateStore>) {
    assert!(s.connectors().await.unwrap().is_empty());
    assert_eq!(s.connector("copy").await.unwrap(), None);
    let config = serde_json::json!({
        "source": {"kind": "postgres", "url": "postgres://u:secret@db/app",
                   "tables": ["public.a", "public.b"]},
        "sink": {"kind": "parquet", "options": {"compression": "zstd", "row_group": 10000,
                 "nested": [{"a": 1}, {"b": [true, null, 2.5]}]}},
        "name": "ünïcödé \"quoted\""
    });
    assert!(
        s.create_connector("copy", &config, TargetState::Running)
            .await
            .unwrap()
    );
    let other = serde_json::json!({"source": {"kind": "mysql"}});
    assert!(
        !s.create_connector("copy", &other, TargetState::Paused)
            .await
            .unwrap(),
        "a second create of one name is refused"
    );
    let got = s.connector("copy").await.unwrap().unwrap();
    assert_eq!(got.name, "copy");
    assert_eq!(got.config, config, "the config round-trips, nested and all");
    assert_eq!(
        got.target_state,
        TargetState::Running,
        "and nothing changed"
    );
    assert!(!got.reset_pending);
    assert!(!got.created_at.is_empty());
    assert_eq!(got.created_at, got.updated_at);

    for name in ["zeta", "alpha"] {
        assert!(
            s.create_connector(name, &other, TargetState::Stopped)
                .await
                .unwrap()
        );
    }
    let names: Vec<_> = s
        .connectors()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["alpha", "copy", "zeta"]);

    // Changes by name, committed.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(s.update_connector_config("copy", &other).await.unwrap());
    assert!(
        s.set_target_state("copy", TargetState::Paused)
            .await
            .unwrap()
    );
    assert!(s.set_reset_pending("copy", true).await.unwrap());
    let again = reopen().await;
    let got = again.connector("copy").await.unwrap().unwrap();
    assert_eq!(
        (&got.config, got.target_state, got.reset_pending),
        (&other, TargetState::Paused, true)
    );
    assert!(got.updated_at > got.created_at, "{got:?}");
    assert!(s.update_connector_config("copy", &config).await.unwrap());
    let got = s.connector("copy").await.unwrap().unwrap();
    assert_eq!(
        (&got.config, got.target_state, got.reset_pending),
        (&config, TargetState::Paused, true),
        "a new config keeps the target state and the reset flag"
    );
    assert!(s.set_reset_pending("copy", false).await.unwrap());
    assert!(!s.connector("copy").await.unwrap().unwrap().reset_pending);

    // None of that name: nothing changes.
    assert!(!s.update_connector_config("nope", &config).await.unwrap());
    assert!(
        !s.set_target_state("nope", TargetState::Running)
            .await
            .unwrap()
    );
    assert!(!s.set_reset_pending("nope", true).await.unwrap());
    assert!(!s.delete_connector("nope").await.unwrap());
    assert_eq!(s.connector("nope").await.unwrap(), None);
    assert_eq!(s.connectors().await.unwrap().len(), 3);

    // Forgetting a hosted job keeps its runs.
    assert!(s.delete_connector("copy").await.unwrap());
    assert!(!s.delete_connector("copy").await.unwrap());
    assert_eq!(s.connector("copy").await.unwrap(), None);
    assert_eq!(s.runs("copy", 10).await.unwrap().len(), 1);
    let names: Vec<_> = reopen()
        .await
        .connectors()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert!(
        s.create_connector("copy", &other, TargetState::Running)
            .await
            .unwrap(),
        "a forgotten name can be created again"
    );
}

/// API tokens: stored as hashes, names and hashes unique, looked up by hash, revoked by name.
async fn tokens(s: &dyn StateStore, reopen: &impl AsyncFn() -> Arc<dyn StateStore>) {
    assert!(s.tokens().await.unwrap().is_empty());
    let ops = s.create_token("ops", "admin", "hash-ops").await.unwrap();
    let ci = s.create_token("ci", "operator", "hash-ci").await.unwrap();
    assert!(ops > 0 && ci > 0 && ops != ci);
    let t = reopen()
        .await
        .token_by_hash("hash-ci")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (t.id, t.name.as_str(), t.role.as_str()),
        (ci, "ci", "operator")
    );
    assert!(!t.created_at.is_empty());
    assert_eq!(s.token_by_hash("hash-nope").await.unwrap(), None);

    let e = s
        .create_token("ops", "viewer", "hash-other")
        .await
        .expect_err("a taken name is refused");
    assert_eq!(e.kind(), sluice_core::ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("named \"ops\""), "{e}");
    let e = s
        .create_token("new", "viewer", "hash-ops")
        .await
        .expect_err("a taken hash is refused");
    assert_eq!(e.kind(), sluice_core::ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("hash"), "{e}");
    assert!(!e.to_string().contains("hash-ops"), "{e}");
    assert_eq!(s.token_by_hash("hash-other").await.unwrap(), None);

    let names: Vec<_> = s
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.role))
        .collect();
    assert_eq!(
        names,
        [
            ("ci".to_string(), "operator".to_string()),
            ("ops".to_string(), "admin".to_string())
        ]
    );

    assert!(s.revoke_token("ops").await.unwrap());
    assert!(!s.revoke_token("ops").await.unwrap());
    assert!(!s.revoke_token("nope").await.unwrap());
    assert_eq!(s.token_by_hash("hash-ops").await.unwrap(), None);
    assert_eq!(s.tokens().await.unwrap().len(), 1);
    let ops2 = s.create_token("ops", "viewer", "hash-ops2").await.unwrap();
    assert!(
        ops2 > ci,
        "a revoked name can be given again, under a new id"
    );
}

/// Many stores racing for one lease: exactly one wins.
async fn one_lease_holder(open: impl AsyncFn() -> Arc<dyn StateStore>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = open().await;
        tasks.push(tokio::spawn(async move {
            s.acquire_lease("job:race", &format!("w{i}"), Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(
        won, 1,
        "exactly one of eight racing workers holds the lease"
    );
}

#[test]
fn job_states_have_one_name_each_and_kafka_connect_names() {
    for s in JobState::ALL {
        assert_eq!(JobState::parse(s.as_str()), Some(s));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!(s.as_str())
        );
        assert!(
            ["UNASSIGNED", "RUNNING", "PAUSED", "STOPPED", "FAILED"].contains(&s.connect_state()),
            "{s}"
        );
    }
    assert_eq!(JobState::Stopping.connect_state(), "RUNNING");
    assert_eq!(JobState::Finished.connect_state(), "STOPPED");
    assert_eq!(JobState::Interrupted.connect_state(), "UNASSIGNED");
    assert_eq!(JobState::parse("nonsense"), None);
}

#[test]
fn target_states_have_one_name_each() {
    for t in TargetState::ALL {
        assert_eq!(TargetState::parse(t.as_str()), Some(t));
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::json!(t.as_str())
        );
        assert_eq!(t.to_string(), t.as_str());
    }
    assert_eq!(TargetState::Running.as_str(), "RUNNING");
    assert_eq!(TargetState::Paused.as_str(), "PAUSED");
    assert_eq!(TargetState::Stopped.as_str(), "STOPPED");
    assert_eq!(
        serde_json::from_str::<TargetState>("\"PAUSED\"").unwrap(),
        TargetState::Paused
    );
    assert_eq!(TargetState::parse("running"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_string();
    let s = sluice_state::open(&state).await.unwrap();
    suite(s, async || sluice_state::open(&state).await.unwrap()).await;
    one_lease_holder(async || sluice_state::open(&state).await.unwrap()).await;
}

fn psql(sql: &str) {
    let o = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        o.status.success(),
        "{sql}: {} (are the services up? bash scripts/test-services.sh)",
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Db(String);
impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_passes_the_suite() {
    let db = Db(format!("sluice_state_{}", std::process::id()));
    psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.0));
    psql(&format!("CREATE DATABASE {}", db.0));
    let url = format!("postgres://postgres@127.0.0.1:5432/{}?schema=ops", db.0);
    let s = sluice_state::open(&url).await.unwrap();
    assert!(s.describe().contains("schema ops"), "{}", s.describe());
    suite(s, async || sluice_state::open(&url).await.unwrap()).await;
    one_lease_holder(async || sluice_state::open(&url).await.unwrap()).await;
    // Opening at once from several tasks migrates once.
    let url2 = format!("postgres://postgres@127.0.0.1:5432/{}?schema=fresh", db.0);
    let opened: Vec<_> = (0..6)
        .map(|_| {
            let u = url2.clone();
            tokio::spawn(async move { sluice_state::open(&u).await.map(|_| ()) })
        })
        .collect();
    for t in opened {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_postgres_store_that_cannot_be_reached_is_a_clear_error() {
    let Err(e) = sluice_state::open("postgres://postgres@127.0.0.1:9/none").await else {
        panic!("an unreachable store was opened");
    };
    assert_eq!(e.kind(), sluice_core::ErrorKind::Connection, "{e}");
    assert!(e.to_string().contains("state store"), "{e}");
}
