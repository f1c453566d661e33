//! Shared by the service-backed test binaries: the test servers' URLs, `psql`/`mariadb`
//! helpers that fail with a hint when a server is down, and throw-away databases.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const PG: &str = "postgres://postgres@127.0.0.1:5432";
pub const MY: &str = "mysql://root@127.0.0.1:3306";

pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sluice_{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn sh(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n(are the services up? run `bash scripts/test-services.sh`)",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A quiet `psql` as user postgres to database `db` of the server on 127.0.0.1:`port`.
pub fn psql_cmd(port: &str, db: &str) -> Command {
    let mut c = Command::new("psql");
    c.args([
        "-X",
        "-q",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-U",
        "postgres",
        "-d",
        db,
    ]);
    c
}

/// Runs `sql` on the shared server (5432), failing the test on an error; rows unaligned.
pub fn psql(db: &str, sql: &str) -> String {
    sh(psql_cmd("5432", db).args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql]))
}

pub fn mysql(db: &str, sql: &str) -> String {
    let mut c = Command::new("mariadb");
    c.args([
        "-h127.0.0.1",
        "-uroot",
        "-N",
        "-B",
        "--default-character-set=utf8mb4",
    ]);
    if !db.is_empty() {
        c.arg(db);
    }
    sh(c.args(["-e", sql]))
}

/// A PostgreSQL database that is dropped when the test ends.
pub struct PgDb(pub String);
impl PgDb {
    pub fn new() -> PgDb {
        let name = unique("pg");
        psql("postgres", &format!("CREATE DATABASE {name}"));
        PgDb(name)
    }
    pub fn url(&self) -> String {
        format!("{PG}/{}", self.0)
    }
}
impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql_cmd("5432", "postgres")
            .arg("-c")
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
            .output();
    }
}

/// A MariaDB database that is dropped when the test ends.
pub struct MyDb(pub String);
impl MyDb {
    pub fn new() -> MyDb {
        let name = unique("my");
        mysql(
            "",
            &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        );
        MyDb(name)
    }
    pub fn url(&self) -> String {
        format!("{MY}/{}", self.0)
    }
}
impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-h127.0.0.1", "-uroot", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.0))
            .output();
    }
}

/// Which COMMIT a [`CommitCutter`] interrupts, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Forward the COMMIT, let the server commit, then cut the connection before its answer
    /// reaches the client: the rows landed, the client cannot know.
    ReplyLost,
    /// Cut the connection instead of forwarding the COMMIT: the server rolls back.
    CommitLost,
}

/// A TCP proxy in front of a database server that interrupts one COMMIT (the `nth`, counted
/// from 1 across all connections) the way a network failure would, and forwards everything
/// else untouched.
pub struct CommitCutter {
    pub port: u16,
    cuts: std::sync::Arc<AtomicUsize>,
}

/// The bytes of a `COMMIT` as each client library sends it: PostgreSQL's simple query
/// (`Q`, length 11, `COMMIT\0`) and MySQL's COM_QUERY (length 7, sequence 0, 0x03, `COMMIT`).
pub const PG_COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";
pub const MY_COMMIT: &[u8] = b"\x07\0\0\0\x03COMMIT";

impl CommitCutter {
    pub fn start(upstream: &'static str, pattern: &'static [u8], nth: usize, how: Cut) -> Self {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let cuts = Arc::new(AtomicUsize::new(0));
        let cuts2 = cuts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let cut = Arc::new(AtomicBool::new(false));
                let (seen, cuts) = (seen.clone(), cuts2.clone());
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (c_out, s_in) = (client, server);
                let cut_up = cut.clone();
                let (c_kill, s_kill) = (c_out.try_clone().unwrap(), s_in.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        let is_commit = chunk.windows(pattern.len()).any(|w| w == pattern);
                        if is_commit && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                            cut_up.store(true, Ordering::SeqCst);
                            cuts.fetch_add(1, Ordering::SeqCst);
                            if how == Cut::ReplyLost {
                                let _ = s_out.write_all(chunk);
                                // Time for the server to commit before the connection drops.
                                std::thread::sleep(std::time::Duration::from_millis(500));
                            }
                            let _ = c_kill.shutdown(Shutdown::Both);
                            let _ = s_kill.shutdown(Shutdown::Both);
                            break;
                        }
                        if s_out.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let cut_down = cut;
                std::thread::spawn(move || {
                    let (mut s_in, mut c_out) = (s_in, c_out);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if cut_down.load(Ordering::SeqCst) || c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Write);
                });
            }
        });
        CommitCutter { port, cuts }
    }

    /// How many COMMITs were cut (0 or 1).
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// A server that accepts TCP connections and never answers (a hung server, a firewall that
/// swallows packets after the handshake). Returns its port; connections stay open until the
/// test process ends.
pub fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    port
}

/// Waits until `cond` holds, polling every 50 ms, for at most `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < until,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A throw-away working directory for `sluice` runs (its `.sluice/` state included), removed
/// when the test ends.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }
    /// Writes `content` to `p`, creating its directories.
    pub fn write(&self, p: &str, content: impl AsRef<[u8]>) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
    /// `sluice ARGS` in the directory, without the caller's state or log settings.
    pub fn cmd(&self, args: &[&str]) -> Command {
        use assert_cmd::cargo::CommandCargoExt;
        let mut c = Command::cargo_bin("sluice").unwrap();
        c.current_dir(self.dir.path())
            .env_remove("SLUICE_STATE")
            .env_remove("SLUICE_LOG")
            .args(args);
        c
    }
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().unwrap()
    }
    /// Starts `sluice ARGS` in the background, its stderr piped for `wait_with_output`: for
    /// short runs (a pipe nobody reads fills after 64 KiB of log; `safety.rs` sends long
    /// runs' output to files).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.cmd(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

// ---- change capture: the private wal_level = logical PostgreSQL ----

pub const CDC_PORT: &str = "55432";

/// [`psql`] on the CDC instance.
pub fn cdc_psql(db: &str, sql: &str) -> String {
    sh(psql_cmd(CDC_PORT, db).args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql]))
}

/// A database on the CDC instance, dropped (with its slots) when the test ends.
pub struct CdcDb(pub String);

impl CdcDb {
    pub fn new() -> CdcDb {
        let name = unique("cdc");
        cdc_psql("postgres", &format!("CREATE DATABASE {name}"));
        CdcDb(name)
    }
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{CDC_PORT}/{}", self.0)
    }
    pub fn sql(&self, sql: &str) -> String {
        cdc_psql(&self.0, sql)
    }
}

impl Drop for CdcDb {
    fn drop(&mut self) {
        let _ = psql_cmd(CDC_PORT, "postgres")
            .arg("-c")
            .arg(format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE database = '{0}' AND active; SELECT pg_sleep(0.5); \
                 SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE database = '{0}'; DROP DATABASE IF EXISTS {0} WITH (FORCE)",
                self.0
            ))
            .output();
    }
}

/// The private MariaDB with the binary log on (`scripts/test-services.sh`), for change
/// capture.
pub const MY_CDC_PORT: &str = "53306";

/// Runs `sql` on the CDC MariaDB, failing the test on an error; rows tab-separated.
pub fn my_cdc(db: &str, sql: &str) -> String {
    let mut c = Command::new("mariadb");
    c.args([
        "-h127.0.0.1",
        "-P",
        MY_CDC_PORT,
        "-uroot",
        "-N",
        "-B",
        "--default-character-set=utf8mb4",
    ]);
    if !db.is_empty() {
        c.arg(db);
    }
    sh(c.args(["-e", sql]))
}

/// A database on the CDC MariaDB, dropped when the test ends.
pub struct MyCdcDb(pub String);

impl MyCdcDb {
    pub fn new() -> MyCdcDb {
        let name = unique("mycdc");
        my_cdc(
            "",
            &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        );
        MyCdcDb(name)
    }
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{MY_CDC_PORT}/{}", self.0)
    }
    pub fn sql(&self, sql: &str) -> String {
        my_cdc(&self.0, sql)
    }
}

impl Drop for MyCdcDb {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-h127.0.0.1", "-P", MY_CDC_PORT, "-uroot", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.0))
            .output();
    }
}

/// The rows `sql` returns from the SQLite database at `path`, each as its values joined by
/// `|` (NULL as empty), sorted and without duplicates; empty when the file or the table is
/// not there yet.
pub fn sqlite_rows(path: &std::path::Path, sql: &str) -> Vec<String> {
    let Ok(c) = rusqlite::Connection::open(path) else {
        return Vec::new();
    };
    let Ok(mut st) = c.prepare(sql) else {
        return Vec::new();
    };
    let n = st.column_count();
    st.query_map([], |r| {
        Ok((0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => String::new(),
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                v => format!("{v:?}"),
            })
            .collect::<Vec<_>>()
            .join("|"))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect()
}
