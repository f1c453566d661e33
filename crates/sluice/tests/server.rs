//! `sluice server` over real HTTP: the Kafka Connect lifecycle, auth and secrets, a kill -9 of
//! the server in the middle of a copy, PAUSED/STOPPED kept across a restart, a hundred jobs,
//! TLS. Each state-store scenario runs against both stores (a state directory and PostgreSQL).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Env, PG, PgDb, psql, unique, wait_for};

/// A running `sluice server` with an admin, an operator and a viewer token.
struct Server {
    child: Option<Child>,
    port: u16,
    state: String,
    admin: String,
    operator: String,
    viewer: String,
    log: PathBuf,
    dir: PathBuf,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token(env: &Env, state: &str, role: &str) -> String {
    let o = env.run(&["--state", state, "token", "create", "--role", role]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Server {
    fn start(env: &Env, state: &str) -> Server {
        Self::start_with(env, state, &[])
    }

    fn start_with(env: &Env, state: &str, extra: &[&str]) -> Server {
        let mut s = Server {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            port: free_port(),
            state: state.to_string(),
            admin: token(env, state, "admin"),
            operator: token(env, state, "operator"),
            viewer: token(env, state, "viewer"),
            log: env.path(&format!("server-{}.log", unique("log"))),
            dir: env.dir.path().to_path_buf(),
        };
        s.spawn(env);
        s
    }

    fn spawn(&mut self, env: &Env) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = env
            .cmd(&[
                "--state",
                &self.state,
                "server",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args(&self.extra)
            .env("SLUICE_TEST_SECRET", "env-secret-4711")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        wait_for(30, "the server to answer /health", || {
            get_raw(port, "/health", None).is_some_and(|(c, _)| c == 200)
        });
    }

    /// kill -9, then start again on the same port and state.
    fn kill9_and_restart(&mut self, env: &Env) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        self.spawn(env);
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(self.port, method, path, token, body)
    }
    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(&self.admin), body)
    }
    fn status(&self, job: &str) -> Value {
        let (code, body) = self.admin("GET", &format!("/connectors/{job}/status"), None);
        assert_eq!(code, 200, "{body}");
        body
    }
    fn sluice_state(&self, job: &str) -> String {
        self.status(job)["sluice"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    }
    fn wait_state(&self, job: &str, state: &str, secs: u64) {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let st = self.status(job);
            if st["sluice"]["state"] == state {
                return;
            }
            if Instant::now() > until {
                let log = self.log_text();
                let tail: Vec<&str> = log.lines().filter(|l| !l.contains(" request ")).collect();
                let runs = self
                    .admin("GET", &format!("/connectors/{job}/runs"), None)
                    .1;
                let audit = self
                    .admin("GET", &format!("/audit?connector={job}"), None)
                    .1;
                panic!(
                    "timed out after {secs} s waiting for {job} to be {state}: {st}\nruns: {runs}\naudit: {audit}\nserver log:\n{}",
                    tail[tail.len().saturating_sub(30)..].join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = &self.dir;
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let res = match method {
        "GET" => {
            let mut r = a.get(&url);
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        "DELETE" => {
            let mut r = a.delete(&url);
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        m => {
            let mut r = match m {
                "POST" => a.post(&url),
                "PUT" => a.put(&url),
                "PATCH" => a.patch(&url),
                other => panic!("method {other}"),
            };
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            match body {
                Some(b) => r
                    .header("Content-Type", "application/json")
                    .send(b.to_string()),
                None => r.send_empty(),
            }
        }
    };
    let mut res = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let code = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap_or_default();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn get_raw(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut r = agent().get(&url);
    if let Some(t) = token {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    let mut res = r.call().ok()?;
    let code = res.status().as_u16();
    Some((code, res.body_mut().read_to_string().unwrap_or_default()))
}

/// A state store for a scenario: a directory, or a fresh schema in the test PostgreSQL.
struct Store {
    url: String,
    schema: Option<String>,
}

impl Store {
    fn new(kind: &str) -> Store {
        match kind {
            "sqlite" => Store {
                url: ".sluice".into(),
                schema: None,
            },
            _ => {
                let schema = unique("state");
                Store {
                    url: format!("{PG}/postgres?schema={schema}"),
                    schema: Some(schema),
                }
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(s) = &self.schema {
            let _ = std::panic::catch_unwind(|| {
                psql("postgres", &format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
            });
        }
    }
}

fn sqlite_count(db: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn endless(env: &Env, name: &str, rate: u32) -> Value {
    json!({
        "job": {"mode": "streaming", "checkpoint_interval": "200ms"},
        "source": {"type": "generate", "table": "t", "rate": rate, "batch_size": 100},
        "sink": {"type": "sqlite", "url": format!("sqlite://{}", env.path(&format!("{name}.db")).display()), "write": "upsert"},
    })
}

// ---- the Kafka Connect lifecycle ----

fn lifecycle(kind: &str) {
    let env = Env::new();
    let store = Store::new(kind);
    let s = Server::start(&env, &store.url);

    // Create: 201 with Kafka Connect's ConnectorInfo and a Location; a name clash is 409.
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": "s1", "config": endless(&env, "s1", 2000)})),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["name"], "s1");
    assert_eq!(body["type"], "source");
    assert_eq!(body["tasks"], json!([{"connector": "s1", "task": 0}]));
    assert_eq!(body["config"]["source.type"], "generate");
    assert_eq!(body["config"]["connector.class"], "generate");
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": "s1", "config": endless(&env, "s1", 2000)})),
    );
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error_code"], 409);

    // Bad configs: 400 naming the key; bad JSON, unknown fields and wrong types too.
    let mut bad = endless(&env, "x", 10);
    bad["sink"]["urll"] = json!("x");
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": "bad", "config": bad})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("urll"), "{body}");
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": "bad", "config": {}, "colour": 1})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": "bad", "config": {}, "initial_state": "SLEEPING"})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("initial_state"),
        "{body}"
    );
    let (code, body) = s.call(
        "PATCH",
        "/connectors/s1/config",
        Some(&s.admin),
        Some(Value::String("{".into())),
    );
    assert_eq!(code, 400, "{body}");

    // Unknown connector: 404 in Kafka Connect's shape.
    let (code, body) = s.admin("GET", "/connectors/nope/status", None);
    assert_eq!(
        (code, body["error_code"].clone()),
        (404, json!(404)),
        "{body}"
    );

    // Status: RUNNING, one task, Sluice's own fields beside.
    s.wait_state("s1", "RUNNING", 20);
    let st = s.status("s1");
    assert_eq!(st["connector"]["state"], "RUNNING");
    assert_eq!(
        st["connector"]["worker_id"],
        format!("127.0.0.1:{}", s.port)
    );
    assert_eq!(st["tasks"][0]["state"], "RUNNING");
    assert_eq!(st["sluice"]["target_state"], "RUNNING");

    // Pause / resume: 202, and the state follows.
    assert_eq!(s.admin("PUT", "/connectors/s1/pause", None).0, 202);
    let st = s.status("s1");
    assert_eq!(
        (
            st["connector"]["state"].clone(),
            st["sluice"]["state"].clone()
        ),
        (json!("PAUSED"), json!("PAUSED"))
    );
    assert_eq!(s.admin("PUT", "/connectors/s1/resume", None).0, 202);
    assert_eq!(s.sluice_state("s1"), "RUNNING");

    // Offsets: positions committed by the stream; edits only while STOPPED (400 otherwise).
    wait_for(20, "committed offsets", || {
        s.admin("GET", "/connectors/s1/offsets", None).1["offsets"]
            .as_array()
            .is_some_and(|o| !o.is_empty())
    });
    let (code, body) = s.admin("DELETE", "/connectors/s1/offsets", None);
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("STOPPED"),
        "{body}"
    );

    // Tasks: one, task 0.
    let (code, tasks) = s.admin("GET", "/connectors/s1/tasks", None);
    assert_eq!(code, 200);
    assert_eq!(tasks[0]["id"], json!({"connector": "s1", "task": 0}));
    assert_eq!(
        s.admin("GET", "/connectors/s1/tasks/0/status", None).1["state"],
        "RUNNING"
    );
    assert_eq!(s.admin("GET", "/connectors/s1/tasks/1/status", None).0, 404);

    // Config: flat, typed back when posted again (200 on an existing job). A change to what an
    // unfinished copy writes is refused (409) until its offsets are reset.
    let (code, flat) = s.admin("GET", "/connectors/s1/config", None);
    assert_eq!(code, 200);
    assert_eq!(flat["source.rate"], "2000");
    let (code, body) = s.admin("PUT", "/connectors/s1/config", Some(flat.clone()));
    assert_eq!(code, 200, "{body}");
    let mut changed = flat.clone();
    changed["sink.write"] = json!("append");
    let (code, body) = s.admin("PUT", "/connectors/s1/config", Some(changed));
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("offsets"),
        "{body}"
    );
    s.wait_state("s1", "RUNNING", 30);

    // Restart: 204 plain, 202 with the plan when includeTasks.
    assert_eq!(s.admin("POST", "/connectors/s1/restart", None).0, 204);
    let (code, body) = s.admin("POST", "/connectors/s1/restart?includeTasks=true", None);
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["name"], "s1");
    let (code, _) = s.admin(
        "POST",
        "/connectors/s1/restart?onlyFailed=true&includeTasks=true",
        None,
    );
    assert_eq!(code, 202);
    s.wait_state("s1", "RUNNING", 30);

    // Stop: 204; STOPPED without tasks, the stop receipt in `sluice.last_run`.
    assert_eq!(s.admin("PUT", "/connectors/s1/stop", None).0, 204);
    s.wait_state("s1", "STOPPED", 30);
    let st = s.status("s1");
    assert_eq!(st["connector"]["state"], "STOPPED");
    assert_eq!(st["tasks"], json!([]));
    let receipt = &st["sluice"]["last_run"];
    assert!(
        receipt["stop_reason"]
            .as_str()
            .unwrap()
            .contains("REST API"),
        "{receipt}"
    );
    assert!(receipt["tables"].is_array(), "{receipt}");
    // Now offsets can be reset: the next run starts from scratch.
    let (code, body) = s.admin("DELETE", "/connectors/s1/offsets", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.status("s1")["sluice"]["reset_pending"], true);
    // After the reset, a PATCH merges the change in.
    let (code, body) = s.admin(
        "PATCH",
        "/connectors/s1/config",
        Some(json!({
            "sink.write": "append",
            "sink.url": format!("sqlite://{}", env.path("s1-fresh.db").display()),
            "source.rate": "2500",
            "job.checkpoint_interval": null,
        })),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["config"]["source.rate"], "2500");
    assert!(
        body["config"].get("job.checkpoint_interval").is_none(),
        "{body}"
    );
    // With the offsets reset there is no position left to edit.
    let (code, body) = s.admin(
        "PATCH",
        "/connectors/s1/offsets?dry_run=true",
        Some(json!({"offsets": [{"partition": {"split": "t#0"}, "offset": null}]})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("were reset"),
        "{body}"
    );

    // A batch copy ends FINISHED (Kafka Connect's state reads STOPPED) and stays done.
    let out = env.path("b1-out");
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": "b1", "config": {
            "connector.class": "generate", "source.table": "t", "source.rows": "5000",
            "sink.type": "jsonl", "sink.path": out.display().to_string()}})),
    );
    assert_eq!(code, 201, "{body}");
    s.wait_state("b1", "FINISHED", 60);
    let st = s.status("b1");
    assert_eq!(st["sluice"]["last_run"]["rows_written"], 5000);
    assert_eq!(st["connector"]["state"], "STOPPED");

    // Lists, expanded.
    let (_, names) = s.admin("GET", "/connectors", None);
    assert_eq!(names, json!(["b1", "s1"]));
    let (_, all) = s.admin("GET", "/connectors?expand=status&expand=info", None);
    assert_eq!(all["b1"]["status"]["sluice"]["state"], "FINISHED");
    assert_eq!(all["s1"]["info"]["name"], "s1");
    assert_eq!(s.admin("GET", "/connectors?expand=bogus", None).0, 400);

    // Delete: 204, then 404.
    assert_eq!(s.admin("DELETE", "/connectors/b1", None).0, 204);
    assert_eq!(s.admin("GET", "/connectors/b1", None).0, 404);

    // Plugins, validate (ConfigInfos), loggers, metrics, OpenAPI, audit.
    let (_, plugins) = s.admin("GET", "/connector-plugins", None);
    assert!(
        plugins
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["class"] == "postgres" && p["type"] == "sink")
    );
    let (code, keys) = s.admin("GET", "/connector-plugins/csv/config", None);
    assert_eq!(code, 200);
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "source.path"),
        "{keys}"
    );
    let (code, v) = s.admin(
        "PUT",
        "/connector-plugins/sqlite/config/validate",
        Some(json!({"name": "v", "source.type": "sqlite", "source.url": "sqlite:///nonexistent/x.db", "sink.type": "jsonl", "sink.path": "/tmp/x"})),
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["error_count"].as_i64().unwrap() >= 1, "{v}");
    let (code, v) = s.admin(
        "PUT",
        "/connector-plugins/generate/config/validate",
        Some(json!({"name": "v", "source.type": "generate", "source.table": "t", "source.rows": "10", "sink.type": "jsonl", "sink.path": env.path("v").display().to_string()})),
    );
    assert_eq!((code, v["error_count"].clone()), (200, json!(0)), "{v}");
    let (_, loggers) = s.admin("GET", "/admin/loggers", None);
    assert!(loggers["root"]["level"].is_string(), "{loggers}");
    let (code, body) = s.admin(
        "PUT",
        "/admin/loggers/sluice_engine",
        Some(json!({"level": "DEBUG"})),
    );
    assert_eq!((code, body), (200, json!(["sluice_engine"])));
    assert_eq!(
        s.admin(
            "PUT",
            "/admin/loggers/sluice_engine",
            Some(json!({"level": "LOUD"}))
        )
        .0,
        400
    );
    let (code, text) = get_raw(s.port, "/metrics", Some(&s.admin)).unwrap();
    assert_eq!(code, 200);
    assert!(text.contains("sluice_source_rows_total"), "{text}");
    let (_, doc) = s.call("GET", "/openapi.json", None, None);
    assert!(doc["paths"]["/connectors/{connector}/offsets"]["patch"].is_object());
    let (_, audit) = s.admin("GET", "/audit?connector=s1", None);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "api.create",
        "api.pause",
        "api.resume",
        "api.stop",
        "api.config",
        "api.restart",
        "api.offsets.reset",
    ] {
        assert!(actions.contains(&a), "no {a} in {actions:?}");
    }
    assert!(
        audit["entries"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("token:")
    );

    // The CLI drives a hosted job too.
    let url = format!("http://127.0.0.1:{}", s.port);
    let o = env
        .cmd(&["resume", "s1", "--server", &url])
        .env("SLUICE_TOKEN", &s.operator)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.wait_state("s1", "RUNNING", 30);
    let o = env
        .cmd(&["status", "--server", &url])
        .env("SLUICE_TOKEN", &s.viewer)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("s1") && text.contains("RUNNING"),
        "{text}"
    );
    let o = env
        .cmd(&["stop", "s1", "--server", &url])
        .env("SLUICE_TOKEN", &s.viewer)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "a viewer cannot stop: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("role"));
    let o = env
        .cmd(&["stop", "s1", "--server", &url])
        .env("SLUICE_TOKEN", &s.operator)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.wait_state("s1", "STOPPED", 30);
}

#[test]
fn lifecycle_sqlite_store() {
    lifecycle("sqlite");
}

#[test]
fn lifecycle_postgres_store() {
    lifecycle("postgres");
}

// ---- auth and secrets ----

#[test]
fn every_mutation_needs_a_strong_enough_token_and_secrets_never_leave() {
    let env = Env::new();
    let s = Server::start(&env, ".sluice");
    let routes: &[(&str, &str, Option<Value>)] = &[
        (
            "POST",
            "/connectors",
            Some(json!({"name": "x", "config": {}})),
        ),
        ("PUT", "/connectors/x/config", Some(json!({}))),
        ("PATCH", "/connectors/x/config", Some(json!({}))),
        ("PUT", "/connectors/x/pause", None),
        ("PUT", "/connectors/x/resume", None),
        ("PUT", "/connectors/x/stop", None),
        ("POST", "/connectors/x/restart", None),
        ("POST", "/connectors/x/tasks/0/restart", None),
        ("DELETE", "/connectors/x", None),
        ("DELETE", "/connectors/x/offsets", None),
        (
            "PATCH",
            "/connectors/x/offsets",
            Some(json!({"offsets": []})),
        ),
        ("PUT", "/connectors/x/topics/reset", None),
        (
            "PUT",
            "/connector-plugins/csv/config/validate",
            Some(json!({})),
        ),
        ("PUT", "/admin/loggers/root", Some(json!({"level": "INFO"}))),
    ];
    for (m, p, b) in routes {
        let (code, body) = s.call(m, p, None, b.clone());
        assert_eq!(code, 401, "{m} {p} without a token: {body}");
        assert_eq!(body["error_code"], 401);
        let (code, _) = s.call(m, p, Some("slu_0000"), b.clone());
        assert_eq!(code, 401, "{m} {p} with an unknown token");
        let (code, body) = s.call(m, p, Some(&s.viewer), b.clone());
        assert_eq!(code, 403, "{m} {p} as a viewer: {body}");
        assert_eq!(body["error_code"], 403);
    }
    for (m, p) in [
        ("DELETE", "/connectors/x"),
        ("DELETE", "/connectors/x/offsets"),
        ("PUT", "/admin/loggers/root"),
    ] {
        let (code, _) = s.call(m, p, Some(&s.operator), Some(json!({"level": "INFO"})));
        assert_eq!(code, 403, "{m} {p} as an operator");
    }
    for p in [
        "/connectors",
        "/metrics",
        "/admin/loggers",
        "/audit",
        "/connector-plugins",
    ] {
        assert_eq!(s.call("GET", p, None, None).0, 401, "GET {p}");
        assert_eq!(
            s.call("GET", p, Some(&s.viewer), None).0,
            200,
            "GET {p} as a viewer"
        );
    }
    assert_eq!(s.call("GET", "/", None, None).0, 200);
    // HTTP Basic with the token as password (what Kafka Connect clients send).
    let basic = format!("Basic {}", b64(&format!("kc:{}", s.viewer)));
    let res = agent()
        .get(&format!("http://127.0.0.1:{}/connectors", s.port))
        .header("Authorization", &basic)
        .call()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    // Secrets: a password in a URL, a key named like one, a value from ${env:…}.
    let db = PgDb::new();
    psql(
        &db.0,
        "CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;",
    );
    let url = format!("postgres://postgres:hunter2xyz@127.0.0.1:5432/{}", db.0);
    let config = json!({
        "source": {"type": "postgres", "url": url, "tables": ["public.t"]},
        "sink": {"type": "sqlite", "url": "sqlite://${env:SLUICE_TEST_SECRET}.db", "table_map": {"public.*": "*"}},
    });
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": "sec", "config": config})),
    );
    assert_eq!(code, 201, "{body}");
    s.wait_state("sec", "FINISHED", 60);
    // Read back and posted again as shown: the stored password is kept.
    let (_, shown) = s.admin("GET", "/connectors/sec/config", None);
    assert_eq!(
        s.admin("PUT", "/connectors/sec/config", Some(shown.clone()))
            .0,
        200
    );
    s.wait_state("sec", "FINISHED", 60);
    assert_eq!(
        s.status("sec")["sluice"]["last_run"]["rows_written"],
        100,
        "the password still works"
    );
    assert!(env.path("env-secret-4711.db").exists());
    let mut seen = String::new();
    for p in [
        "/connectors/sec",
        "/connectors/sec/config",
        "/connectors/sec/status",
        "/connectors/sec/tasks",
        "/connectors/sec/tasks-config",
        "/connectors?expand=info&expand=status",
        "/audit",
        "/connectors/sec/runs",
        "/connectors/sec/offsets",
    ] {
        seen.push_str(&s.admin("GET", p, None).1.to_string());
    }
    seen.push_str(&s.log_text());
    for secret in ["hunter2xyz", "env-secret-4711"] {
        assert!(!seen.contains(secret), "{secret} leaked: {seen}");
    }
    assert!(
        shown["source.url"].as_str().unwrap().contains("***"),
        "{shown}"
    );
    assert_eq!(shown["sink.url"], "sqlite://${env:SLUICE_TEST_SECRET}.db");
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---- kill -9 and restarts ----

fn killed_mid_copy(kind: &str) {
    let env = Env::new();
    let store = Store::new(kind);
    let mut s = Server::start(&env, &store.url);
    let db = env.path("copy.db");
    const ROWS: i64 = 150_000;
    let config = json!({
        "source": {"type": "generate", "table": "t", "rows": ROWS, "rate": 30000, "chunk_rows": 10000, "batch_size": 2000},
        "sink": {"type": "sqlite", "url": format!("sqlite://{}", db.display())},
        "job": {"parallelism": 2},
    });
    assert_eq!(
        s.admin(
            "POST",
            "/connectors",
            Some(json!({"name": "copy", "config": config}))
        )
        .0,
        201
    );
    let endless_cfg = endless(&env, "p", 100);
    assert_eq!(
        s.admin(
            "POST",
            "/connectors",
            Some(json!({"name": "paused", "config": endless_cfg, "initial_state": "PAUSED"}))
        )
        .0,
        201
    );
    assert_eq!(s.admin("POST", "/connectors", Some(json!({"name": "stopped", "config": endless(&env, "q", 100), "initial_state": "STOPPED"}))).0, 201);
    assert_eq!(
        s.admin(
            "POST",
            "/connectors",
            Some(json!({"name": "paused-later", "config": endless(&env, "r", 100)}))
        )
        .0,
        201
    );
    s.wait_state("paused-later", "RUNNING", 20);
    assert_eq!(
        s.admin("PUT", "/connectors/paused-later/pause", None).0,
        202
    );

    // Kill the server once some splits are committed and the copy is not done.
    wait_for(60, "a few committed splits", || {
        s.admin("GET", "/connectors/copy/offsets", None).1["offsets"]
            .as_array()
            .is_some_and(|o| o.iter().filter(|x| x["offset"]["done"] == true).count() >= 2)
    });
    assert_eq!(s.sluice_state("copy"), "RUNNING");
    s.kill9_and_restart(&env);

    // The copy resumes from its checkpoints; paused and stopped jobs stay so.
    let st = s.status("copy");
    assert_eq!(st["sluice"]["last_run"]["state"], "INTERRUPTED", "{st}");
    s.wait_state("copy", "FINISHED", 120);
    assert_eq!(sqlite_count(&db, "SELECT count(*) FROM t"), ROWS);
    assert_eq!(sqlite_count(&db, "SELECT count(DISTINCT id) FROM t"), ROWS);
    // Row for row: `sluice verify` regenerates the source and compares every row.
    env.write(
        "verify.toml",
        format!(
            "[job]\nname = \"copy\"\n[source]\ntype = \"generate\"\ntable = \"t\"\nrows = {ROWS}\n\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n",
            db.display()
        ),
    );
    let o = env.run(&["verify", "verify.toml"]);
    assert!(
        o.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for (job, state) in [
        ("paused", "PAUSED"),
        ("paused-later", "PAUSED"),
        ("stopped", "STOPPED"),
    ] {
        let st = s.status(job);
        assert_eq!(st["connector"]["state"], state, "{job}: {st}");
        assert!(st["sluice"]["run"].is_null(), "{job} must not run: {st}");
    }
    // A finished copy is not started again by a restart of the server.
    s.kill9_and_restart(&env);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.sluice_state("copy"), "FINISHED");
    assert_eq!(sqlite_count(&db, "SELECT count(*) FROM t"), ROWS);
    // Resuming a paused job starts it from its checkpoints.
    assert_eq!(
        s.admin("PUT", "/connectors/paused-later/resume", None).0,
        202
    );
    s.wait_state("paused-later", "RUNNING", 20);
}

fn sqlite_sink(db: &std::path::Path, write: &str) -> Value {
    json!({"type": "sqlite", "url": format!("sqlite://{}", db.display()), "write": write})
}

/// Starts a batch copy of 60 000 generated rows in chunks of 10 000 into `sink`, and stops it
/// once at least `done` splits are committed. Returns the committed splits.
fn copy_then_stop(s: &Server, name: &str, sink: Value, done: usize) -> Vec<String> {
    let config = json!({
        "source": {"type": "generate", "table": "t", "rows": 60_000, "rate": 20000, "chunk_rows": 10000, "batch_size": 2000},
        "sink": sink,
        "job": {"parallelism": 2},
    });
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": name, "config": config})),
    );
    assert_eq!(code, 201, "{body}");
    let path = format!("/connectors/{name}/offsets");
    wait_for(60, "committed splits", || {
        s.admin("GET", &path, None).1["offsets"]
            .as_array()
            .is_some_and(|o| o.iter().filter(|x| x["offset"]["done"] == true).count() >= done)
    });
    assert_eq!(
        s.admin("PUT", &format!("/connectors/{name}/stop"), None).0,
        204
    );
    s.wait_state(name, "STOPPED", 30);
    let offsets = s.admin("GET", &path, None).1;
    let committed: Vec<String> = offsets["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["offset"]["done"] == true)
        .map(|o| o["partition"]["split"].as_str().unwrap().to_string())
        .collect();
    assert!(
        committed.len() < 6,
        "the copy finished before the stop: {offsets}"
    );
    committed
}

#[test]
fn offsets_edits_skip_and_redo_splits_without_doubling_a_row() {
    let env = Env::new();
    let s = Server::start(&env, ".sluice");
    let db = env.path("edit.db");
    let committed = copy_then_stop(&s, "edit", sqlite_sink(&db, "upsert"), 2);
    let redo = committed[0].clone();
    let skip = (0..6)
        .map(|i| format!("t#{i}"))
        .find(|x| !committed.contains(x))
        .unwrap();
    let edits = json!({"offsets": [
        {"partition": {"split": redo}, "offset": null},
        {"partition": {"split": skip}, "offset": {"done": true}},
    ]});
    let offsets_before = s.admin("GET", "/connectors/edit/offsets", None).1;

    // A dry run says what would happen and changes nothing.
    let (code, body) = s.admin(
        "PATCH",
        "/connectors/edit/offsets?dry_run=true",
        Some(edits.clone()),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["effects"][0]["effect"], "redo", "{body}");
    assert_eq!(body["effects"][0]["rows"], 10000, "{body}");
    assert_eq!(body["effects"][1]["effect"], "skip", "{body}");
    assert_eq!(
        s.admin("GET", "/connectors/edit/offsets", None).1,
        offsets_before
    );
    // Unknown splits and malformed edits are refused, naming what is wrong.
    let (code, body) = s.admin(
        "PATCH",
        "/connectors/edit/offsets",
        Some(json!({"offsets": [{"partition": {"split": "t#99"}, "offset": null}]})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("t#99"), "{body}");
    let (code, body) = s.admin(
        "PATCH",
        "/connectors/edit/offsets",
        Some(json!({"offsets": [{"partition": {"split": skip}, "offset": {"next": 5}}]})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"next\""),
        "{body}"
    );

    // Applied: the redone split has no position, the skipped one is done.
    let (code, body) = s.admin("PATCH", "/connectors/edit/offsets", Some(edits));
    assert_eq!(code, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("altered"),
        "{body}"
    );
    let offsets = s.admin("GET", "/connectors/edit/offsets", None).1;
    let of = |split: &str| {
        offsets["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["partition"]["split"] == split)
            .cloned()
    };
    assert!(of(&redo).is_none(), "{offsets}");
    assert_eq!(of(&skip).unwrap()["offset"]["done"], true, "{offsets}");
    let audit = s.admin("GET", "/audit?connector=edit", None).1;
    assert!(audit.to_string().contains("offsets.edit"), "{audit}");

    // The resume reads the redone split again (upsert: once each) and skips the other.
    assert_eq!(s.admin("PUT", "/connectors/edit/resume", None).0, 202);
    s.wait_state("edit", "FINISHED", 120);
    let i: i64 = skip.trim_start_matches("t#").parse().unwrap();
    let (lo, hi) = (i * 10000, (i + 1) * 10000);
    assert_eq!(sqlite_count(&db, "SELECT count(*) FROM t"), 50_000);
    assert_eq!(
        sqlite_count(&db, "SELECT count(DISTINCT id) FROM t"),
        50_000
    );
    assert_eq!(
        sqlite_count(
            &db,
            &format!("SELECT count(*) FROM t WHERE id >= {lo} AND id < {hi}")
        ),
        0
    );

    // In append mode reading a committed split again would double its rows: refused, and
    // nothing changes; skipping one that committed nothing is taken.
    let db = env.path("append.db");
    let committed = copy_then_stop(&s, "app", sqlite_sink(&db, "append"), 1);
    let before = s.admin("GET", "/connectors/app/offsets", None).1;
    let (code, body) = s.admin(
        "PATCH",
        "/connectors/app/offsets",
        Some(json!({"offsets": [{"partition": {"split": committed[0]}, "offset": null}]})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("second time"),
        "{body}"
    );
    assert_eq!(s.admin("GET", "/connectors/app/offsets", None).1, before);
    let skip = (0..6)
        .map(|i| format!("t#{i}"))
        .find(|x| !committed.contains(x))
        .unwrap();
    let (code, body) = s.admin(
        "PATCH",
        "/connectors/app/offsets",
        Some(json!({"offsets": [{"partition": {"split": skip}, "offset": {"done": true}}]})),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.admin("PUT", "/connectors/app/resume", None).0, 202);
    s.wait_state("app", "FINISHED", 120);
    assert_eq!(sqlite_count(&db, "SELECT count(*) FROM t"), 50_000);
    assert_eq!(
        sqlite_count(&db, "SELECT count(DISTINCT id) FROM t"),
        50_000
    );

    // A file sink keeps no checkpoints (the state store's are edited) and replaces a split's
    // file by name: reading a split again is taken in append mode, and writes it once.
    let out = env.path("files");
    let sink = json!({"type": "jsonl", "path": out.display().to_string(), "write": "append"});
    let committed = copy_then_stop(&s, "files", sink, 1);
    let (code, body) = s.admin(
        "PATCH",
        "/connectors/files/offsets",
        Some(json!({"offsets": [{"partition": {"split": committed[0]}, "offset": null}]})),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["effects"][0]["effect"], "redo", "{body}");
    assert_eq!(s.admin("PUT", "/connectors/files/resume", None).0, 202);
    s.wait_state("files", "FINISHED", 120);
    let mut ids = Vec::new();
    for f in walk(&out) {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            ids.push(
                serde_json::from_str::<Value>(line).unwrap()["id"]
                    .as_i64()
                    .unwrap(),
            );
        }
    }
    ids.sort();
    assert_eq!(ids, (0..60_000).collect::<Vec<i64>>());
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_server_killed_mid_copy_resumes_it_exactly_sqlite_store() {
    killed_mid_copy("sqlite");
}

#[test]
fn a_server_killed_mid_copy_resumes_it_exactly_postgres_store() {
    killed_mid_copy("postgres");
}

// ---- many jobs ----

#[test]
fn a_hundred_jobs_finish_and_the_api_stays_responsive() {
    let env = Env::new();
    let s = Server::start(&env, ".sluice");
    for i in 0..100 {
        let config = json!({
            "source": {"type": "generate", "table": "t", "rows": 2000},
            "sink": {"type": "jsonl", "path": env.path(&format!("out/{i}")).display().to_string()},
            "job": {"parallelism": 1},
        });
        let (code, body) = s.admin(
            "POST",
            "/connectors",
            Some(json!({"name": format!("j{i:03}"), "config": config})),
        );
        assert_eq!(code, 201, "{body}");
    }
    let mut slowest = Duration::ZERO;
    wait_for(180, "100 finished jobs", || {
        let t = Instant::now();
        let (code, all) = s.admin("GET", "/connectors?expand=status", None);
        slowest = slowest.max(t.elapsed());
        assert_eq!(code, 200);
        let states: Vec<&str> = all
            .as_object()
            .unwrap()
            .values()
            .map(|v| v["status"]["sluice"]["state"].as_str().unwrap())
            .collect();
        assert!(!states.contains(&"FAILED"), "{all}");
        states.len() == 100 && states.iter().all(|s| *s == "FINISHED")
    });
    assert!(
        slowest < Duration::from_secs(10),
        "a status list took {slowest:?}"
    );
    for i in [0, 57, 99] {
        let st = s.status(&format!("j{i:03}"));
        assert_eq!(st["sluice"]["last_run"]["rows_written"], 2000);
    }
}

// ---- listening ----

#[test]
fn plain_http_off_loopback_is_refused_and_tls_is_served() {
    let env = Env::new();
    let port = free_port();
    let o = env.run(&["server", "--listen", &format!("0.0.0.0:{port}")]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--tls-cert") && err.contains("--insecure"),
        "{err}"
    );

    // With a certificate it serves HTTPS (curl checks the handshake; -k: self-signed).
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(env.path("key.pem"))
        .arg("-out")
        .arg(env.path("cert.pem"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut child = env
        .cmd(&[
            "server",
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut answered = String::new();
    wait_for(20, "the HTTPS server", || {
        let o = Command::new("curl")
            .args(["-sk", &format!("https://127.0.0.1:{port}/health")])
            .output()
            .unwrap();
        answered = String::from_utf8_lossy(&o.stdout).into_owned();
        answered.contains("healthy")
    });
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/health"),
        ])
        .output()
        .unwrap();
    assert_ne!(
        String::from_utf8_lossy(&plain.stdout),
        "200",
        "plain HTTP must not be served"
    );
    let _ = child.kill();
    let _ = child.wait();
}

// ---- a jobs directory, and a clean shutdown ----

#[test]
fn jobs_from_a_directory_and_a_sigterm_that_stops_them_at_a_checkpoint() {
    let env = Env::new();
    let db = env.path("dir.db");
    env.write(
        "jobs/stream.toml",
        format!(
            "[job]\nname = \"from-dir\"\nmode = \"streaming\"\ncheckpoint_interval = \"200ms\"\n\n\
             [source]\ntype = \"generate\"\ntable = \"t\"\nrate = 500\nbatch_size = 50\n\n\
             [sink]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\nwrite = \"upsert\"\n",
            db.display()
        ),
    );
    env.write("jobs/notes.txt", "not a job");
    let mut s = Server::start_with(&env, ".sluice", &["--jobs", "jobs"]);
    s.wait_state("from-dir", "RUNNING", 20);
    wait_for(20, "rows in the target", || {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n > 0)
    });

    // SIGTERM: the stream stops at its last checkpoint; the target state stays RUNNING.
    let mut child = s.child.take().unwrap();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "server log:\n{}", s.log_text());
    let committed = sqlite_count(&db, "SELECT count(*) FROM t");

    // Started again (the file unchanged): the stream resumes after what it committed.
    s.spawn(&env);
    let st = s.status("from-dir");
    assert_eq!(st["sluice"]["target_state"], "RUNNING", "{st}");
    s.wait_state("from-dir", "RUNNING", 20);
    wait_for(20, "more rows after the restart", || {
        sqlite_count(&db, "SELECT count(*) FROM t") > committed
    });
    let (_, runs) = s.admin("GET", "/connectors/from-dir/runs", None);
    let first = runs["runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(first["state"], "STOPPED", "{runs}");
    // Ids are dense: nothing skipped, nothing doubled (upsert by id, ids from the position).
    assert_eq!(
        sqlite_count(&db, "SELECT count(*) FROM t"),
        sqlite_count(&db, "SELECT max(id) + 1 - min(id) FROM t")
    );

    // A broken job file is refused at start with its location.
    env.write(
        "bad/x.toml",
        "[job]\nname = \"x\"\n[source]\ntype = \"generate\"\ntabel = \"t\"\n",
    );
    let o = env.run(&["server", "--listen", "127.0.0.1:0", "--jobs", "bad"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("x.toml:5") && err.contains("tabel"), "{err}");
}

#[test]
fn deleting_a_change_capture_job_can_drop_its_slot() {
    let env = Env::new();
    let s = Server::start(&env, ".sluice");
    let cdc = support::CdcDb::new();
    let db = cdc.0.clone();
    let name = db.replace("sluice_", "cap_");
    cdc.sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')");
    let target = env.path("t.db");
    let config = json!({
        "job": {"checkpoint_interval": "200ms"},
        "source": {"type": "postgres", "url": cdc.url(),
                   "tables": ["public.t"], "read": "cdc"},
        "sink": {"type": "sqlite", "url": format!("sqlite://{}", target.display()), "write": "upsert",
                 "table_map": {"public.*": "*"}},
    });
    let (code, body) = s.admin(
        "POST",
        "/connectors",
        Some(json!({"name": name, "config": config})),
    );
    assert_eq!(code, 201, "{body}");
    s.wait_state(&name, "RUNNING", 30);
    cdc.sql("INSERT INTO t VALUES (2, 'b')");
    wait_for(30, "the change in the target", || {
        // (The file may exist before its table does.)
        rusqlite::Connection::open(&target)
            .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n == 2)
    });
    // The stream's figures are on /metrics once a streamed transaction committed (the insert
    // above may have landed in the snapshot instead: more changes are made until one streams).
    let names = [
        "sluice_replication_lag_seconds",
        "sluice_replication_confirmed_position",
        "sluice_replication_retained_bytes",
    ];
    let scrape = || get_raw(s.port, "/metrics", Some(&s.admin)).unwrap().1;
    let has = |metrics: &str, m: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with(m) && l.contains(&name))
    };
    let _ = (3..100).find(|k| {
        let m = scrape();
        names.iter().all(|n| has(&m, n)) || {
            cdc.sql(&format!("INSERT INTO t VALUES ({k}, 'more')"));
            std::thread::sleep(Duration::from_millis(300));
            false
        }
    });
    let metrics = scrape();
    for m in [
        "sluice_replication_lag_seconds",
        "sluice_replication_confirmed_position",
        "sluice_replication_retained_bytes",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(m) && l.contains(&name)),
            "{m} missing:\n{metrics}"
        );
    }
    let slot = format!("sluice_{name}");
    let slots = || {
        cdc.sql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
    };
    assert_eq!(slots().trim(), "1");

    // The run is stopped first (the slot is in use while it streams), then both go.
    let (code, body) = s.admin(
        "DELETE",
        &format!("/connectors/{name}?drop_slot=true"),
        None,
    );
    assert_eq!(code, 204, "{body}");
    assert_eq!(slots().trim(), "0");
    let pubs = cdc.sql(&format!(
        "SELECT count(*) FROM pg_publication WHERE pubname = '{slot}'"
    ));
    assert_eq!(pubs.trim(), "0");
    assert_eq!(s.admin("GET", &format!("/connectors/{name}"), None).0, 404);
    let audit = s.admin("GET", &format!("/audit?connector={name}"), None).1;
    assert!(audit.to_string().contains("source.release"), "{audit}");
}
