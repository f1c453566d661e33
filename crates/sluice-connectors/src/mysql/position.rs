//! What a MySQL split reads and where it stands: the typed forms of `Split::detail` and
//! `Position::value`, pinned by golden tests (manifests and checkpoints hold them).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sluice_core::Persisted;

/// An integer key value: signed or unsigned 64-bit, as the column holds it. Written as a
/// JSON number of either range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInt(pub i128);

impl Serialize for KeyInt {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match i64::try_from(self.0) {
            Ok(i) => s.serialize_i64(i),
            Err(_) => s.serialize_u64(self.0 as u64),
        }
    }
}

impl<'de> Deserialize<'de> for KeyInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            I(i64),
            U(u64),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::I(i) => KeyInt(i128::from(i)),
            Raw::U(u) => KeyInt(i128::from(u)),
        })
    }
}

/// What one split reads: rows whose integer key (`key`, if the table has one) is in
/// `[lo, hi)`; an open end is left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MysqlSplit {
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lo: Option<KeyInt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<KeyInt>,
}

/// Where a split stands: the last key read, or (without an integer key) the rows read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MysqlPosition {
    Key { last_key: KeyInt },
    Rows { rows: u64 },
}

impl Persisted for MysqlSplit {}
impl Persisted for MysqlPosition {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_forms() {
        let s = |v: serde_json::Value| serde_json::to_string(&v).unwrap();
        let split = MysqlSplit {
            key: Some("id".into()),
            lo: Some(KeyInt(-5)),
            hi: Some(KeyInt(u64::MAX as i128)),
        };
        assert_eq!(
            s(split.to_json()),
            r#"{"hi":18446744073709551615,"key":"id","lo":-5}"#
        );
        assert_eq!(
            s(MysqlSplit {
                key: None,
                lo: None,
                hi: None
            }
            .to_json()),
            r#"{"key":null}"#
        );
        assert_eq!(
            s(MysqlPosition::Key {
                last_key: KeyInt(9)
            }
            .to_json()),
            r#"{"last_key":9}"#
        );
        assert_eq!(
            s(MysqlPosition::Rows { rows: 4 }.to_json()),
            r#"{"rows":4}"#
        );
        // Earlier versions wrote open ends as null.
        let old = MysqlSplit::from_value(
            "t#0",
            &serde_json::json!({"key": "id", "lo": null, "hi": 10}),
        )
        .unwrap();
        assert_eq!((old.lo, old.hi), (None, Some(KeyInt(10))));
        assert_eq!(
            MysqlPosition::from_value(
                "t#0",
                &serde_json::json!({"last_key": 18446744073709551615u64})
            )
            .unwrap(),
            MysqlPosition::Key {
                last_key: KeyInt(u64::MAX as i128)
            }
        );
    }
}
