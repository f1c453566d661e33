//! Talking to the server: connecting with Sluice's session settings, reachability and
//! privilege checks, cancelling a running read.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use sluice_core::{Error, ErrorKind, Result};

use super::config::Server;
use super::error::map;

/// Session settings applied to every connection:
/// * `utf8mb4` so 4-byte UTF-8 survives;
/// * `time_zone = '+00:00'` so `timestamp` columns are read and written in UTC;
/// * a strict `sql_mode` (values that do not fit fail instead of being truncated), without
///   `NO_ZERO_DATE`/`NO_ZERO_IN_DATE` so existing zero dates can be read, and with
///   `NO_AUTO_VALUE_ON_ZERO` so a key of 0 is written as 0.
pub const SESSION_SQL: &str = "SET NAMES utf8mb4, time_zone = '+00:00', \
     sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

/// How long connecting (TCP and handshake) may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens a connection and applies [`SESSION_SQL`]. `what` names the purpose for messages.
pub async fn connect(server: &Server, what: &str) -> Result<Conn> {
    // A server that accepts the connection and never answers the handshake would otherwise
    // hold the job forever.
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(server.opts.clone())).await;
    let Ok(connected) = connected else {
        return Err(Error::new(
            ErrorKind::Connection,
            format!(
                "{what}: connecting to mysql at {}: the server accepted the connection but did \
                 not complete the handshake within {} s",
                server.display,
                CONNECT_TIMEOUT.as_secs()
            ),
        )
        .with_hint(
            "check that host and port point at a MySQL or MariaDB server, and that it is not \
             hung or overloaded",
        ));
    };
    let mut conn = connected.map_err(|e| {
        map(
            e,
            format!("{what}: connecting to mysql at {}", server.display),
        )
    })?;
    if let Err(e) = conn.query_drop(SESSION_SQL).await {
        let _ = conn.disconnect().await;
        return Err(map(e, format!("{what}: session settings")));
    }
    Ok(conn)
}

/// `s` as a MySQL string literal, for a session without `NO_BACKSLASH_ESCAPES` (the
/// connector's): quote, backslash and NUL escaped.
pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `name` quoted as a MySQL identifier: backticks, a backtick inside doubled.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `` `db`.`table` ``.
pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", quote(db), quote(table))
}

/// Ends connection `id` on the server from a fresh connection, so a cancelled streaming read
/// does not keep the server busy (mysql_async would otherwise drain the result set).
/// Runs in the background; failures are only logged.
pub fn kill_in_background(opts: Opts, id: u32) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        match Conn::new(opts).await {
            Ok(mut c) => {
                if let Err(e) = c.query_drop(format!("KILL CONNECTION {id}")).await {
                    tracing::debug!(error = %e, connection = id, "Killing a cancelled read failed.");
                }
                let _ = c.disconnect().await;
            }
            Err(e) => tracing::debug!(error = %e, "Could not connect to cancel a read."),
        }
    });
}

/// Checks that the server answers and the database exists (for `sluice validate`).
pub async fn check_source(server: &Server) -> Result<()> {
    let conn = connect(server, "source").await?;
    conn.disconnect()
        .await
        .map_err(|e| map(e, "source: disconnecting"))
}

/// Checks that the server answers and accepts `LOAD DATA LOCAL` when the sink needs it.
pub async fn check_sink(server: &Server, load_data: bool) -> Result<()> {
    let mut conn = connect(server, "sink").await?;
    let r: std::result::Result<Option<String>, _> =
        conn.query_first("SELECT @@GLOBAL.local_infile").await;
    let _ = conn.disconnect().await;
    let on = r.map_err(|e| map(e, "sink: reading local_infile"))?;
    if load_data && !matches!(on.as_deref(), Some("1" | "ON")) {
        return Err(Error::config(format!(
            "mysql at {} has local_infile = OFF",
            server.display
        ))
        .with_hint("SET GLOBAL local_infile = 1 on the server, or method = \"insert\" in [sink]"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("a`b"), "`a``b`");
        assert_eq!(
            qualified("d b", "x\"; DROP TABLE y; --"),
            "`d b`.`x\"; DROP TABLE y; --`"
        );
    }
}
