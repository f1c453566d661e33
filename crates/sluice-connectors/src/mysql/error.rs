//! mysql_async errors → [`sluice_core::Error`] kinds and hints.
//!
//! The kind drives retries and exit codes: an unreachable server or a broken connection is
//! `Connection` (transient), wrong credentials and missing privileges are `Auth`, a missing
//! database or table is `Config`, a row the server refuses (duplicate key, out of range,
//! bad value) is `Data`.

use mysql_async::{DriverError, Error as MyError, IoError};
use sluice_core::{Error, ErrorKind};

/// Server error codes this module classifies.
mod code {
    pub const DBACCESS_DENIED: u16 = 1044;
    pub const ACCESS_DENIED: u16 = 1045;
    pub const BAD_DB: u16 = 1049;
    pub const NO_SUCH_TABLE: u16 = 1146;
    pub const TABLEACCESS_DENIED: u16 = 1142;
    pub const COLUMNACCESS_DENIED: u16 = 1143;
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    pub const PROCACCESS_DENIED: u16 = 1370;
    pub const DUP_ENTRY: u16 = 1062;
    pub const DUP_KEY: u16 = 1022;
    pub const BAD_NULL: u16 = 1048;
    pub const NO_REFERENCED_ROW: u16 = 1452;
    pub const ROW_IS_REFERENCED: u16 = 1451;
    pub const DATA_TOO_LONG: u16 = 1406;
    pub const OUT_OF_RANGE: u16 = 1264;
    pub const TRUNCATED_WRONG_VALUE: u16 = 1292;
    pub const TRUNCATED_WRONG_VALUE_FOR_FIELD: u16 = 1366;
    pub const WARN_DATA_TRUNCATED: u16 = 1265;
    pub const CONSTRAINT_FAILED: u16 = 4025;
    pub const CHECK_CONSTRAINT_VIOLATED: u16 = 3819;
    pub const LOCK_DEADLOCK: u16 = 1213;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const CONNECTION_KILLED: u16 = 1927;
    pub const QUERY_INTERRUPTED: u16 = 1317;
    /// MariaDB `max_statement_time` exceeded.
    pub const STATEMENT_TIMEOUT_MARIADB: u16 = 1969;
    /// MySQL `max_execution_time` exceeded.
    pub const STATEMENT_TIMEOUT_MYSQL: u16 = 3024;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    pub const NOT_ALLOWED_COMMAND: u16 = 1148;
    pub const LOAD_INFILE_CAPABILITY_DISABLED: u16 = 3948;
}

/// Maps a driver error; `what` names the operation and object, e.g. `table shop.orders, split 3`.
pub fn map(e: MyError, what: impl std::fmt::Display) -> Error {
    let (kind, hint): (ErrorKind, Option<&str>) = match &e {
        MyError::Server(s) => match s.code {
            code::ACCESS_DENIED => (
                ErrorKind::Auth,
                Some(
                    "check the user name and password in the url (mysql://user:password@host:3306/db)",
                ),
            ),
            code::DBACCESS_DENIED
            | code::TABLEACCESS_DENIED
            | code::COLUMNACCESS_DENIED
            | code::SPECIFIC_ACCESS_DENIED
            | code::PROCACCESS_DENIED => (
                ErrorKind::Auth,
                Some(
                    "grant the privilege, e.g. GRANT SELECT ON db.* TO 'user'@'%' for a source, \
                      GRANT SELECT, INSERT, UPDATE, CREATE, DROP, ALTER ON db.* for a sink",
                ),
            ),
            code::BAD_DB => (
                ErrorKind::Config,
                Some("check the database in the url, or create it (CREATE DATABASE …)"),
            ),
            code::NO_SUCH_TABLE => (
                ErrorKind::Config,
                Some(
                    "check the table name; a sink creates missing tables with create_tables = true",
                ),
            ),
            code::DUP_ENTRY | code::DUP_KEY => (
                ErrorKind::Data,
                Some(
                    "the target already has a row with this key: use write = \"upsert\" or \
                      \"overwrite\", or empty the target",
                ),
            ),
            code::BAD_NULL
            | code::NO_REFERENCED_ROW
            | code::ROW_IS_REFERENCED
            | code::CONSTRAINT_FAILED
            | code::CHECK_CONSTRAINT_VIOLATED => (
                ErrorKind::Data,
                Some("the target table's constraints refuse this row"),
            ),
            code::DATA_TOO_LONG
            | code::OUT_OF_RANGE
            | code::TRUNCATED_WRONG_VALUE
            | code::TRUNCATED_WRONG_VALUE_FOR_FIELD
            | code::WARN_DATA_TRUNCATED => (
                ErrorKind::Data,
                Some("the target column cannot hold this value: widen the column or cast it"),
            ),
            code::LOCK_DEADLOCK | code::LOCK_WAIT_TIMEOUT => (
                ErrorKind::Connection,
                Some("another session holds locks on the table; retry"),
            ),
            code::STATEMENT_TIMEOUT_MARIADB | code::STATEMENT_TIMEOUT_MYSQL => (
                ErrorKind::Timeout,
                Some(
                    "the server's max_statement_time / max_execution_time ended the statement: \
                     raise it for Sluice's user, or make splits smaller (chunk_rows)",
                ),
            ),
            code::CONNECTION_KILLED | code::QUERY_INTERRUPTED | code::SERVER_SHUTDOWN => (
                ErrorKind::Connection,
                Some("the server ended the connection; the job may be resumed"),
            ),
            code::TOO_MANY_CONNECTIONS => (
                ErrorKind::Connection,
                Some("the server's max_connections is reached; lower parallelism or raise it"),
            ),
            code::NOT_ALLOWED_COMMAND | code::LOAD_INFILE_CAPABILITY_DISABLED => (
                ErrorKind::Config,
                Some("enable LOAD DATA LOCAL on the server: SET GLOBAL local_infile = 1"),
            ),
            _ => (ErrorKind::Data, None),
        },
        MyError::Io(IoError::Io(_)) => (
            ErrorKind::Connection,
            Some("check that the server is running and reachable at the url's host and port"),
        ),
        MyError::Driver(DriverError::ConnectionClosed) => (
            ErrorKind::Connection,
            Some("the connection was lost; the job may be resumed"),
        ),
        MyError::Driver(DriverError::LocalInfile(_)) => (ErrorKind::Internal, None),
        MyError::Driver(_) => (ErrorKind::Connection, None),
        MyError::Url(_) => (
            ErrorKind::Config,
            Some("write the url as mysql://user:password@host:3306/database"),
        ),
        MyError::Other(_) => (ErrorKind::Internal, None),
    };
    let mut err = Error::new(kind, format!("{what}: {e}"));
    if let Some(h) = hint {
        err = err.with_hint(h);
    }
    err.with_source(e)
}

/// The server error code, if `e` is a server error.
pub fn server_code(e: &MyError) -> Option<u16> {
    match e {
        MyError::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Whether the error says a privilege is missing.
pub fn is_privilege(e: &MyError) -> bool {
    matches!(
        server_code(e),
        Some(code::SPECIFIC_ACCESS_DENIED | code::DBACCESS_DENIED | code::TABLEACCESS_DENIED)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::ServerError;

    fn server(code: u16) -> MyError {
        MyError::Server(ServerError {
            code,
            message: "m".into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn kinds() {
        assert_eq!(map(server(1045), "x").kind(), ErrorKind::Auth);
        assert_eq!(map(server(1142), "x").kind(), ErrorKind::Auth);
        assert!(map(server(1142), "x").hint().unwrap().contains("GRANT"));
        assert_eq!(map(server(1049), "x").kind(), ErrorKind::Config);
        assert_eq!(map(server(1062), "x").kind(), ErrorKind::Data);
        assert_eq!(map(server(1213), "x").kind(), ErrorKind::Connection);
        assert_eq!(
            map(MyError::Driver(DriverError::ConnectionClosed), "x").kind(),
            ErrorKind::Connection
        );
        assert!(
            map(server(1062), "table t")
                .to_string()
                .starts_with("table t: ")
        );
    }
}
