//! The two tables Sluice keeps in a database target, in the three SQL dialects.
//!
//! * `_sluice_checkpoints(job, split, generation, table_name, position, rows_written,
//!   committed_at)`, primary key `(job, split)`: each split's last committed position, written
//!   in the same transaction as the split's rows. Rows of another generation are stale: they
//!   are ignored, and overwritten when the split commits again.
//! * `_sluice_jobs(job, generation, finished, manifest, updated_at)`, primary key `job`: the
//!   job's current generation and its manifest (what the plan depends on, and every split with
//!   its bounds), written when a generation starts and when it finishes. It is what lets a run
//!   from another state directory — or after the state directory was lost — resume the
//!   generation the target holds instead of copying everything again.
//!
//! Each sink runs these statements with its own driver; the statements and their parameter
//! order live here, once. Parameters, in order:
//!
//! | statement | parameters | columns |
//! | --- | --- | --- |
//! | [`Dialect::upsert_checkpoint`] | job, split, generation, table_name, position, rows_written | |
//! | [`Dialect::select_checkpoints`] | job, generation | split, position, rows_written, table_name |
//! | [`Dialect::select_checkpoint`] | job, generation, split | position |
//! | [`Dialect::delete_checkpoint`] | job, generation, split | |
//! | [`Dialect::upsert_job`] | job, generation, finished, manifest | |
//! | [`Dialect::select_job`] | job | generation, finished, manifest |
//!
//! Layout history: version 1 had no `rows_written` and no `_sluice_jobs`;
//! [`Dialect::add_rows_column`] brings such a table up to date (the caller checks the column
//! is missing where the dialect has no `IF NOT EXISTS`).

use sluice_core::{Checkpoint, Error, GenerationRecord, Position, Result};

/// Name of the checkpoint table.
pub const CHECKPOINTS: &str = "_sluice_checkpoints";
/// Name of the job table.
pub const JOBS: &str = "_sluice_jobs";
/// The column added in layout version 2.
pub const ROWS_COLUMN: &str = "rows_written";

/// An SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

impl Dialect {
    /// The `n`-th (1-based) parameter placeholder.
    fn p(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql => "?".to_string(),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    fn now(self) -> &'static str {
        match self {
            Dialect::Postgres => "now()",
            Dialect::Mysql => "UTC_TIMESTAMP(6)",
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for the checkpoint table named `q` (already qualified and
    /// quoted).
    pub fn create_checkpoints(self, q: &str) -> String {
        match self {
            Dialect::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {q} (job text NOT NULL, split text NOT NULL, \
                 generation text NOT NULL, table_name text NOT NULL, position text NOT NULL, \
                 {ROWS_COLUMN} bigint NOT NULL DEFAULT 0, \
                 committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, split))"
            ),
            Dialect::Mysql => format!(
                "CREATE TABLE IF NOT EXISTS {q} (job VARCHAR(255) NOT NULL, split VARCHAR(300) \
                 NOT NULL, generation VARCHAR(64) NOT NULL, table_name VARCHAR(300) NOT NULL, \
                 position LONGTEXT NOT NULL, {ROWS_COLUMN} BIGINT NOT NULL DEFAULT 0, \
                 committed_at DATETIME(6) NOT NULL, PRIMARY KEY (job, split)) \
                 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            ),
            Dialect::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {q} (job TEXT NOT NULL, split TEXT NOT NULL, \
                 generation TEXT NOT NULL, table_name TEXT NOT NULL, position TEXT NOT NULL, \
                 {ROWS_COLUMN} INTEGER NOT NULL DEFAULT 0, committed_at TEXT NOT NULL, \
                 PRIMARY KEY (job, split))"
            ),
        }
    }

    /// Adds `rows_written` to a version-1 checkpoint table (PostgreSQL: a no-op if present;
    /// elsewhere run it only when the column is missing).
    pub fn add_rows_column(self, q: &str) -> String {
        match self {
            Dialect::Postgres => format!(
                "ALTER TABLE {q} ADD COLUMN IF NOT EXISTS {ROWS_COLUMN} bigint NOT NULL DEFAULT 0"
            ),
            Dialect::Mysql => {
                format!("ALTER TABLE {q} ADD COLUMN {ROWS_COLUMN} BIGINT NOT NULL DEFAULT 0")
            }
            Dialect::Sqlite => {
                format!("ALTER TABLE {q} ADD COLUMN {ROWS_COLUMN} INTEGER NOT NULL DEFAULT 0")
            }
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for the job table named `q`.
    pub fn create_jobs(self, q: &str) -> String {
        match self {
            Dialect::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {q} (job text PRIMARY KEY, generation text NOT NULL, \
                 finished boolean NOT NULL, manifest text NOT NULL, \
                 updated_at timestamptz NOT NULL DEFAULT now())"
            ),
            Dialect::Mysql => format!(
                "CREATE TABLE IF NOT EXISTS {q} (job VARCHAR(255) NOT NULL PRIMARY KEY, \
                 generation VARCHAR(64) NOT NULL, finished TINYINT(1) NOT NULL, \
                 manifest LONGTEXT NOT NULL, updated_at DATETIME(6) NOT NULL) \
                 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            ),
            Dialect::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {q} (job TEXT PRIMARY KEY, generation TEXT NOT NULL, \
                 finished INTEGER NOT NULL, manifest TEXT NOT NULL, updated_at TEXT NOT NULL)"
            ),
        }
    }

    /// Inserts or replaces a split's checkpoint row.
    pub fn upsert_checkpoint(self, q: &str) -> String {
        let (p, now) = (|n| self.p(n), self.now());
        let values = format!(
            "({}, {}, {}, {}, {}, {}, {now})",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6)
        );
        let cols =
            format!("(job, split, generation, table_name, position, {ROWS_COLUMN}, committed_at)");
        match self {
            Dialect::Mysql => format!(
                "INSERT INTO {q} {cols} VALUES {values} ON DUPLICATE KEY UPDATE \
                 generation = VALUES(generation), table_name = VALUES(table_name), \
                 position = VALUES(position), {ROWS_COLUMN} = VALUES({ROWS_COLUMN}), \
                 committed_at = VALUES(committed_at)"
            ),
            Dialect::Postgres | Dialect::Sqlite => format!(
                "INSERT INTO {q} {cols} VALUES {values} ON CONFLICT (job, split) DO UPDATE SET \
                 generation = excluded.generation, table_name = excluded.table_name, \
                 position = excluded.position, {ROWS_COLUMN} = excluded.{ROWS_COLUMN}, \
                 committed_at = excluded.committed_at"
            ),
        }
    }

    /// The checkpoints of one job and generation.
    pub fn select_checkpoints(self, q: &str) -> String {
        format!(
            "SELECT split, position, {ROWS_COLUMN}, table_name FROM {q} \
             WHERE job = {} AND generation = {} ORDER BY split",
            self.p(1),
            self.p(2)
        )
    }

    /// One split's checkpoint.
    pub fn select_checkpoint(self, q: &str) -> String {
        format!(
            "SELECT position FROM {q} WHERE job = {} AND generation = {} AND split = {}",
            self.p(1),
            self.p(2),
            self.p(3)
        )
    }

    /// Forgets one split's checkpoint (an operator's offset edit: the split is read again).
    pub fn delete_checkpoint(self, q: &str) -> String {
        format!(
            "DELETE FROM {q} WHERE job = {} AND generation = {} AND split = {}",
            self.p(1),
            self.p(2),
            self.p(3)
        )
    }

    /// Inserts or replaces the job's generation record.
    pub fn upsert_job(self, q: &str) -> String {
        let (p, now) = (|n| self.p(n), self.now());
        let values = format!("({}, {}, {}, {}, {now})", p(1), p(2), p(3), p(4));
        match self {
            Dialect::Mysql => format!(
                "INSERT INTO {q} (job, generation, finished, manifest, updated_at) VALUES {values} \
                 ON DUPLICATE KEY UPDATE generation = VALUES(generation), \
                 finished = VALUES(finished), manifest = VALUES(manifest), \
                 updated_at = VALUES(updated_at)"
            ),
            Dialect::Postgres | Dialect::Sqlite => format!(
                "INSERT INTO {q} (job, generation, finished, manifest, updated_at) VALUES {values} \
                 ON CONFLICT (job) DO UPDATE SET generation = excluded.generation, \
                 finished = excluded.finished, manifest = excluded.manifest, \
                 updated_at = excluded.updated_at"
            ),
        }
    }

    /// The job's generation record.
    pub fn select_job(self, q: &str) -> String {
        format!(
            "SELECT generation, finished, manifest FROM {q} WHERE job = {}",
            self.p(1)
        )
    }
}

/// A checkpoint row's position, parsed.
pub fn parse_position(text: &str) -> Result<Position> {
    serde_json::from_str(text).map_err(|e| {
        Error::internal(format!("unreadable checkpoint row {text:?}: {e}")).with_hint(
            "delete the job's rows from _sluice_checkpoints and run the job with --from-scratch",
        )
    })
}

/// A checkpoint row `(split, position, rows_written, table_name)`, parsed.
pub fn checkpoint_of(position: &str, rows: i64, table: String) -> Result<Checkpoint> {
    Ok(Checkpoint {
        position: parse_position(position)?,
        rows: rows.max(0) as u64,
        table,
    })
}

/// A job row `(generation, finished, manifest)`, parsed.
pub fn record_of(generation: String, finished: bool, manifest: &str) -> Result<GenerationRecord> {
    let manifest = serde_json::from_str(manifest).map_err(|e| {
        Error::internal(format!(
            "unreadable manifest of generation {generation} in {JOBS}: {e}"
        ))
        .with_hint("delete the job's row from _sluice_jobs and run the job with --from-scratch")
    })?;
    Ok(GenerationRecord {
        generation,
        finished,
        manifest,
    })
}

/// A position as stored.
pub fn position_text(position: &Position) -> Result<String> {
    serde_json::to_string(position)
        .map_err(|e| Error::internal(format!("position not serializable: {e}")))
}

/// A manifest as stored.
pub fn manifest_text(record: &GenerationRecord) -> Result<String> {
    serde_json::to_string(&record.manifest)
        .map_err(|e| Error::internal(format!("manifest not serializable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect() {
        let q = "t";
        assert!(
            Dialect::Postgres
                .select_checkpoint(q)
                .contains("split = $3")
        );
        assert!(Dialect::Sqlite.select_checkpoint(q).contains("split = ?3"));
        assert!(Dialect::Mysql.select_checkpoint(q).ends_with("split = ?"));
        for d in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            let up = d.upsert_checkpoint(q);
            assert_eq!(up.matches(ROWS_COLUMN).count(), 3, "{up}");
            assert!(d.create_checkpoints(q).contains(ROWS_COLUMN));
            assert!(d.upsert_job(q).contains("manifest"));
        }
    }
}
