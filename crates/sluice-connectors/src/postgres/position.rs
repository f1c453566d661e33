//! What a PostgreSQL split reads and where it stands: the typed forms of `Split::detail` and
//! `Position::value`. Both are persisted (manifests, `_sluice_checkpoints`), so their JSON is
//! pinned by the golden tests below; converting at the boundary keeps stringly keys out of the
//! reader.

use serde::{Deserialize, Serialize};
use sluice_core::Persisted;

/// What one split reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PgSplit {
    /// The whole table (or query) in one read.
    All,
    /// Rows whose cursor is past where the previous generation's read ended.
    Incremental,
    /// Rows whose integer key is in `[lo, hi)`; `None` is open. The first range also reads
    /// rows whose key is NULL.
    Key { lo: Option<i64>, hi: Option<i64> },
    /// Heap pages `[lo, hi)`, with the planning snapshot (32-bit `xmax` and in-progress
    /// xids) that `check_resume` compares against.
    Ctid {
        lo: Option<i64>,
        hi: Option<i64>,
        xmax: i64,
        xip: Vec<i64>,
    },
}

impl Persisted for PgSplit {}

impl PgSplit {
    /// `"key"`, `"page"` … for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            PgSplit::All => "whole",
            PgSplit::Incremental => "incremental",
            PgSplit::Key { .. } => "key",
            PgSplit::Ctid { .. } => "page",
        }
    }
}

/// Where a key-range split stands: the last key read (`None`: rows with a NULL key so far)
/// and the rows read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPosition {
    pub last_key: Option<i64>,
    pub rows: u64,
}

/// Where an incremental read stands: the last cursor value and key, as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorPosition {
    pub cursor: Option<String>,
    pub key: Vec<Option<String>>,
    pub rows: u64,
}

/// Where a whole or page-range read stands: rows read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowsPosition {
    pub rows: u64,
}

impl Persisted for KeyPosition {}
impl Persisted for CursorPosition {}
impl Persisted for RowsPosition {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The persisted forms. Changing one breaks every resume and manifest written before.
    #[test]
    fn golden_forms() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (PgSplit::All.to_json(), r#"{"kind":"all"}"#),
            (PgSplit::Incremental.to_json(), r#"{"kind":"incremental"}"#),
            (
                PgSplit::Key {
                    lo: None,
                    hi: Some(100),
                }
                .to_json(),
                r#"{"hi":100,"kind":"key","lo":null}"#,
            ),
            (
                PgSplit::Ctid {
                    lo: Some(8),
                    hi: None,
                    xmax: 771,
                    xip: vec![769],
                }
                .to_json(),
                r#"{"hi":null,"kind":"ctid","lo":8,"xip":[769],"xmax":771}"#,
            ),
            (
                KeyPosition {
                    last_key: Some(42),
                    rows: 43,
                }
                .to_json(),
                r#"{"last_key":42,"rows":43}"#,
            ),
            (
                CursorPosition {
                    cursor: Some("2026-01-01 00:00:00+00".into()),
                    key: vec![Some("7".into())],
                    rows: 3,
                }
                .to_json(),
                r#"{"cursor":"2026-01-01 00:00:00+00","key":["7"],"rows":3}"#,
            ),
            (RowsPosition { rows: 9 }.to_json(), r#"{"rows":9}"#),
        ];
        for (v, want) in cases {
            assert_eq!(serde_json::to_string(&v).unwrap(), want);
        }
        // And read back from what earlier versions wrote.
        let s: PgSplit = serde_json::from_str(r#"{"kind":"key","lo":5,"hi":null}"#).unwrap();
        assert_eq!(
            s,
            PgSplit::Key {
                lo: Some(5),
                hi: None
            }
        );
        let p: KeyPosition = serde_json::from_str(r#"{"last_key":null,"rows":0}"#).unwrap();
        assert_eq!(p.last_key, None);
    }
}
