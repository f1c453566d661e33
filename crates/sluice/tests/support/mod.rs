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

pub fn psql(db: &str, sql: &str) -> String {
    sh(Command::new("psql").args([
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        db,
        "-c",
        sql,
    ]))
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
