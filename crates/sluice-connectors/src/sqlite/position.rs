//! What a SQLite split reads and where it stands: the typed forms of `Split::detail` and
//! `Position::value`, pinned by golden tests (manifests and checkpoints hold them).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::{Error, Result};

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

impl SqliteSplit {
    /// The split's detail, as persisted.
    pub fn to_detail(&self) -> Value {
        serde_json::to_value(self).expect("a SqliteSplit serializes")
    }
    /// Reads a split's detail.
    pub fn of(id: &str, detail: &Value) -> Result<SqliteSplit> {
        serde_json::from_value(detail.clone()).map_err(|e| {
            Error::config(format!(
                "split {id} has a detail this version cannot read ({detail}): {e}"
            ))
            .with_hint("run the job with --from-scratch")
        })
    }
}

impl SqlitePosition {
    /// The position, as persisted.
    pub fn to_value(self) -> Value {
        serde_json::to_value(self).expect("a SqlitePosition serializes")
    }
    /// Reads a saved position.
    pub fn of(split: &str, value: &Value) -> Result<SqlitePosition> {
        serde_json::from_value(value.clone()).map_err(|e| {
            Error::config(format!(
                "split {split}: the saved position {value} does not fit its split: {e}"
            ))
            .with_hint("run the job with --from-scratch")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_forms() {
        let s = |v: Value| serde_json::to_string(&v).unwrap();
        assert_eq!(
            s(SqliteSplit::KeyOrder {
                order: "primary key".into()
            }
            .to_detail()),
            r#"{"order":"primary key"}"#
        );
        assert_eq!(
            s(SqliteSplit::Rowid {
                lo: None,
                hi: Some(500)
            }
            .to_detail()),
            r#"{"hi":500,"lo":null}"#
        );
        assert_eq!(
            s(SqlitePosition::Rowid { rowid: 7 }.to_value()),
            r#"{"rowid":7}"#
        );
        assert_eq!(
            s(SqlitePosition::Offset { offset: 3 }.to_value()),
            r#"{"offset":3}"#
        );
        // Each form reads back as itself, never as the other.
        let order = SqliteSplit::of("t#0", &serde_json::json!({"order": "primary key"})).unwrap();
        assert!(matches!(order, SqliteSplit::KeyOrder { .. }));
        let range = SqliteSplit::of("t#0", &serde_json::json!({"lo": 1, "hi": null})).unwrap();
        assert_eq!(
            range,
            SqliteSplit::Rowid {
                lo: Some(1),
                hi: None
            }
        );
        assert!(SqlitePosition::of("t#0", &serde_json::json!({"rows": 1})).is_err());
    }
}
