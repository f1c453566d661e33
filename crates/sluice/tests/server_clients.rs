//! `sluice server` driven by clients written for Kafka Connect, not by us: kafka-connect-py's
//! `kc`, schemathesis against `/openapi.json`, and a comparison of `/openapi.json` with Kafka
//! Connect's own API description (`tests/data/connect_rest-3.9.yaml`). The checks live in
//! `scripts/server_clients.py`; this test starts the server, runs the script with the Python of
//! the venv `scripts/test.sh` sets up (`SLUICE_PYTHON`), and fails with the script's output.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The script's own limit; nextest's ci profile ends a test after 300 s.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(280);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python; a missing one fails the test (a check that skips itself checks nothing).
fn python() -> PathBuf {
    let hint = "this test runs scripts/server_clients.py with the Python venv that \
                `bash scripts/test.sh` sets up (kafka-connect-py, schemathesis, pyyaml): run \
                scripts/test.sh, or after it ran once, set \
                SLUICE_PYTHON=/var/tmp/sluice-pyenv/bin/python";
    let Some(p) = std::env::var_os("SLUICE_PYTHON").filter(|p| !p.is_empty()) else {
        panic!("SLUICE_PYTHON is not set: {hint}");
    };
    let p = PathBuf::from(p);
    assert!(
        p.is_file(),
        "SLUICE_PYTHON={} does not exist: {hint}",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /health` answers 200.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process killed when the test ends, passed or failed.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kafka_connect_clients_drive_the_server() {
    let python = python();
    let root = repo_root();
    let script = root.join("scripts/server_clients.py");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/connect_rest-3.9.yaml");
    assert!(script.is_file(), "{} is missing", script.display());
    assert!(spec.is_file(), "{} is missing", spec.display());

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let out = Command::new(sluice)
        .current_dir(dir.path())
        .env_remove("SLUICE_STATE")
        .env_remove("SLUICE_LOG")
        .arg("--state")
        .arg(&state)
        .args(["token", "create", "--role", "admin", "--name", "clients"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("slu_"), "token create printed {token:?}");

    let port = free_port();
    let server_log = dir.path().join("server.log");
    let mut server = Killed(
        Command::new(sluice)
            .current_dir(dir.path())
            .env_remove("SLUICE_STATE")
            .env_remove("SLUICE_LOG")
            .arg("--state")
            .arg(&state)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("server.out")).unwrap())
            .stderr(File::create(&server_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    while !healthy(port) {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("the server exited ({status}):\n{}", tail(&server_log, 50));
        }
        assert!(
            Instant::now() < until,
            "the server did not answer /health within 30 s:\n{}",
            tail(&server_log, 50)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let started = Instant::now();
    let output = dir.path().join("clients.out");
    let out_file = File::create(&output).unwrap();
    let mut script_run = Killed(
        Command::new(&python)
            .current_dir(&root)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .arg(&script)
            .arg("--url")
            .arg(format!("http://127.0.0.1:{port}"))
            .arg("--token")
            .arg(&token)
            .arg("--workdir")
            .arg(dir.path().join("work"))
            .arg("--spec")
            .arg(&spec)
            .stdin(Stdio::null())
            .stderr(out_file.try_clone().unwrap())
            .stdout(out_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display())),
    );
    let status = loop {
        if let Some(status) = script_run.0.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    println!("{text}");
    println!("server_clients.py took {:.0?}", started.elapsed());
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "scripts/server_clients.py failed ({s}):\n{text}\n---- server log (tail) ----\n{}",
            tail(&server_log, 60)
        ),
        None => panic!(
            "scripts/server_clients.py did not end within {SCRIPT_DEADLINE:?}:\n{text}\n\
             ---- server log (tail) ----\n{}",
            tail(&server_log, 60)
        ),
    }
    drop(script_run);
    drop(server);
}
