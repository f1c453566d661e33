//! Maps `tokio_postgres` errors to [`sluice_core::Error`] kinds, with hints.
//!
//! Server errors are classified by SQLSTATE class: `28` (authentication) and `42501`
//! (privilege) are [`ErrorKind::Auth`], `3D000` (no such database) is [`ErrorKind::Config`],
//! `23` (constraint) and `22` (bad value) are [`ErrorKind::Data`], `08`, `57P0x` and `53`
//! (connection, shutdown, resources) are [`ErrorKind::Connection`] (transient), `57014`
//! (cancelled) is [`ErrorKind::Stopped`]. Client-side failures (I/O, closed connection) are
//! [`ErrorKind::Connection`].

use sluice_core::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

/// Converts a driver error into a Sluice error, prefixed with `what` (e.g. `"reading table
/// public.orders"`).
pub(crate) fn pg_error(e: tokio_postgres::Error, what: impl std::fmt::Display) -> Error {
    let (kind, message, hint) = classify(&e);
    Error::new(kind, format!("{what}: {message}"))
        .with_hint(hint)
        .with_source(e)
}

fn classify(e: &tokio_postgres::Error) -> (ErrorKind, String, String) {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let mut msg = format!("PostgreSQL error {}: {}", code.code(), db.message());
        if let Some(d) = db.detail() {
            msg.push_str(&format!(" ({d})"));
        }
        let c = code.code();
        let (kind, hint) = if c.starts_with("28") {
            (
                ErrorKind::Auth,
                "check the user name and password in the url, and pg_hba.conf on the server"
                    .to_string(),
            )
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            (
                ErrorKind::Auth,
                "grant the privilege to the user in the url, e.g. GRANT SELECT ON ALL TABLES IN \
                 SCHEMA public TO <user> (source) or GRANT INSERT, CREATE … (sink)"
                    .to_string(),
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            (
                ErrorKind::Config,
                "the database in the url does not exist: fix the url or create it (CREATE \
                 DATABASE …)"
                    .to_string(),
            )
        } else if c.starts_with("23") {
            let what = db
                .constraint()
                .map(|k| format!("constraint {k:?}"))
                .unwrap_or_else(|| "a constraint".to_string());
            msg.push_str(&format!(" [violates {what}]"));
            (
                ErrorKind::Data,
                format!(
                    "the target's {what} rejected a row: use write = \"upsert\" for duplicate \
                     keys, or fix the data / relax the constraint"
                ),
            )
        } else if c.starts_with("22") {
            (
                ErrorKind::Data,
                "a value does not fit the target column; add a [[transform]] type = \"cast\" \
                 or change the column type"
                    .to_string(),
            )
        } else if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") {
            (
                ErrorKind::Connection,
                "the server closed the connection or is short of resources; the job can be \
                 run again and resumes from its checkpoint"
                    .to_string(),
            )
        } else if *code == SqlState::QUERY_CANCELED && db.message().contains("statement timeout") {
            (
                ErrorKind::Timeout,
                "the server's statement_timeout ended the statement: raise it for Sluice's user \
                 (ALTER ROLE … SET statement_timeout = 0), or make splits smaller (chunk_rows)"
                    .to_string(),
            )
        } else if *code == SqlState::LOCK_NOT_AVAILABLE {
            (
                ErrorKind::Timeout,
                "another session held a lock longer than the server's lock_timeout; find it in \
                 pg_locks / pg_stat_activity, or raise lock_timeout for Sluice's user"
                    .to_string(),
            )
        } else if *code == SqlState::QUERY_CANCELED {
            (
                ErrorKind::Stopped,
                "the query was cancelled (by a stop, or by an administrator: \
                 pg_cancel_backend)"
                    .to_string(),
            )
        } else if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN {
            (
                ErrorKind::Schema,
                "check the table and column names".to_string(),
            )
        } else if *code == SqlState::SYNTAX_ERROR {
            (
                ErrorKind::Config,
                "check the SQL given in the job file".to_string(),
            )
        } else {
            (
                ErrorKind::Data,
                "see the PostgreSQL message above".to_string(),
            )
        };
        return (kind, msg, hint);
    }
    let text = error_chain(e);
    (
        ErrorKind::Connection,
        text,
        "check host and port in the url and that the PostgreSQL server runs and accepts TCP \
         connections (for tests: bash scripts/test-services.sh)"
            .to_string(),
    )
}

/// The error and its sources, joined, since the driver's own Display is terse.
fn error_chain(e: &tokio_postgres::Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
