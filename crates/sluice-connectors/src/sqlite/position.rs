//! What a SQLite split reads and where it stands: the typed forms of `Split::detail` and
//! `Position::value`, pinned by golden tests (manifests and checkpoints hold them).

use serde::{Deserialize, Serialize};
use sluice_core::Persisted;

/// What one split reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqliteSplit {
    /// A table without a rowid, read whole in primary-key order (`{"order": "primary key"}`).
    KeyOrder { order: String },
    /// Rows whose rowid is in `(lo, hi]`; `None` is open.
    Rowid { lo: Option<i64>, hi: Option<i64> },
}

/// Where a split stands: the last rowid read, or the rows read in key order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqlitePosition {
    Rowid { rowid: i64 },
    Offset { offset: i64 },
}

impl Persisted for SqliteSplit {}
impl Persisted for SqlitePosition {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_forms() {
        let s = |v: serde_json::Value| serde_json::to_string(&v).unwrap();
        assert_eq!(
            s(SqliteSplit::KeyOrder {
                order: "primary key".into()
            }
            .to_json()),
            r#"{"order":"primary key"}"#
        );
        assert_eq!(
            s(SqliteSplit::Rowid {
                lo: None,
                hi: Some(500)
            }
            .to_json()),
            r#"{"hi":500,"lo":null}"#
        );
        assert_eq!(
            s(SqlitePosition::Rowid { rowid: 7 }.to_json()),
            r#"{"rowid":7}"#
        );
        assert_eq!(
            s(SqlitePosition::Offset { offset: 3 }.to_json()),
            r#"{"offset":3}"#
        );
        // Each form reads back as itself, never as the other.
        let order =
            SqliteSplit::from_value("t#0", &serde_json::json!({"order": "primary key"})).unwrap();
        assert!(matches!(order, SqliteSplit::KeyOrder { .. }));
        let range =
            SqliteSplit::from_value("t#0", &serde_json::json!({"lo": 1, "hi": null})).unwrap();
        assert_eq!(
            range,
            SqliteSplit::Rowid {
                lo: Some(1),
                hi: None
            }
        );
        assert!(SqlitePosition::from_value("t#0", &serde_json::json!({"rows": 1})).is_err());
    }
}
