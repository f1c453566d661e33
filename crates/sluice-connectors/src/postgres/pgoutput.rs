//! The pgoutput logical replication messages (protocol version 1) that pgwire-replication
//! hands over undecoded: Relation, Insert, Update, Delete, Truncate (Begin, Commit and Message
//! it parses itself; Type and Origin are skipped). See PostgreSQL's "Logical Replication
//! Message Formats".

use bytes::{Buf, Bytes};

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// An unchanged TOASTed value the server did not send (UPDATE without it in the old row).
    Unchanged,
    /// The type's text output.
    Text(Bytes),
    /// The type's binary send format (`binary 'true'`).
    Binary(Bytes),
}

/// A relation (table) as the server describes it before its first change in a session, and
/// again after it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelColumn {
    /// Part of the replica identity (the key sent with updates and deletes).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// A decoded change message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Value>,
    },
    /// `old`: the key (`K`, non-key columns null) or the whole old row (`O`, REPLICA IDENTITY
    /// FULL), when the key changed or the identity is full.
    Update {
        rel: u32,
        old: Option<Vec<Value>>,
        new: Vec<Value>,
    },
    Delete {
        rel: u32,
        old: Vec<Value>,
    },
    Truncate {
        rels: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// Type, Origin, and anything else this decoder does not need.
    Other(u8),
}

fn err(what: &str) -> String {
    format!("malformed pgoutput message: {what}")
}

fn need(b: &Bytes, n: usize, what: &str) -> Result<(), String> {
    if b.remaining() < n {
        Err(err(&format!("truncated {what}")))
    } else {
        Ok(())
    }
}

fn cstr(b: &mut Bytes) -> Result<String, String> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| err("unterminated string"))?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    b.advance(end + 1);
    Ok(s)
}

fn tuple(b: &mut Bytes) -> Result<Vec<Value>, String> {
    need(b, 2, "tuple")?;
    let n = b.get_i16();
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        need(b, 1, "column")?;
        out.push(match b.get_u8() {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            kind @ (b't' | b'b') => {
                need(b, 4, "value length")?;
                let len = b.get_i32();
                if len < 0 {
                    return Err(err("negative value length"));
                }
                need(b, len as usize, "value")?;
                let v = b.split_to(len as usize);
                if kind == b't' {
                    Value::Text(v)
                } else {
                    Value::Binary(v)
                }
            }
            other => return Err(err(&format!("unknown column kind {:?}", other as char))),
        });
    }
    Ok(out)
}

/// Decodes one message (the payload of an XLogData frame).
pub fn decode(mut b: Bytes) -> Result<Message, String> {
    need(&b, 1, "message")?;
    let tag = b.get_u8();
    Ok(match tag {
        b'R' => {
            need(&b, 4, "relation")?;
            let oid = b.get_u32();
            let namespace = cstr(&mut b)?;
            let name = cstr(&mut b)?;
            need(&b, 3, "relation")?;
            let replica_identity = b.get_u8();
            let n = b.get_i16();
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                need(&b, 1, "relation column")?;
                let flags = b.get_u8();
                let name = cstr(&mut b)?;
                need(&b, 8, "relation column")?;
                columns.push(RelColumn {
                    key: flags & 1 == 1,
                    name,
                    type_oid: b.get_u32(),
                    typmod: b.get_i32(),
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            need(&b, 5, "insert")?;
            let rel = b.get_u32();
            if b.get_u8() != b'N' {
                return Err(err("insert without a new tuple"));
            }
            Message::Insert {
                rel,
                new: tuple(&mut b)?,
            }
        }
        b'U' => {
            need(&b, 5, "update")?;
            let rel = b.get_u32();
            let mut kind = b.get_u8();
            let mut old = None;
            if kind == b'K' || kind == b'O' {
                old = Some(tuple(&mut b)?);
                need(&b, 1, "update")?;
                kind = b.get_u8();
            }
            if kind != b'N' {
                return Err(err("update without a new tuple"));
            }
            Message::Update {
                rel,
                old,
                new: tuple(&mut b)?,
            }
        }
        b'D' => {
            need(&b, 5, "delete")?;
            let rel = b.get_u32();
            let kind = b.get_u8();
            if kind != b'K' && kind != b'O' {
                return Err(err("delete without an old key"));
            }
            Message::Delete {
                rel,
                old: tuple(&mut b)?,
            }
        }
        b'T' => {
            need(&b, 5, "truncate")?;
            let n = b.get_u32();
            let options = b.get_u8();
            need(&b, 4 * n as usize, "truncate")?;
            let rels = (0..n).map(|_| b.get_u32()).collect();
            Message::Truncate {
                rels,
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
            }
        }
        other => Message::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn relation_bytes() -> Bytes {
        let mut b = bytes::BytesMut::new();
        b.put_u8(b'R');
        b.put_u32(16384);
        b.put_slice(b"public\0orders\0");
        b.put_u8(b'd');
        b.put_i16(2);
        b.put_u8(1);
        b.put_slice(b"id\0");
        b.put_u32(20);
        b.put_i32(-1);
        b.put_u8(0);
        b.put_slice(b"note\0");
        b.put_u32(25);
        b.put_i32(-1);
        b.freeze()
    }

    #[test]
    fn relations_name_their_columns_and_key() {
        let Message::Relation(r) = decode(relation_bytes()).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(
            (r.oid, r.namespace.as_str(), r.name.as_str()),
            (16384, "public", "orders")
        );
        assert_eq!(r.columns.len(), 2);
        assert!(r.columns[0].key && !r.columns[1].key);
        assert_eq!(
            (r.columns[1].name.as_str(), r.columns[1].type_oid),
            ("note", 25)
        );
    }

    #[test]
    fn updates_with_an_old_key_and_unchanged_toast() {
        let mut b = bytes::BytesMut::new();
        b.put_u8(b'U');
        b.put_u32(7);
        b.put_u8(b'K');
        b.put_i16(2);
        b.put_u8(b'b');
        b.put_i32(8);
        b.put_i64(5);
        b.put_u8(b'n');
        b.put_u8(b'N');
        b.put_i16(2);
        b.put_u8(b'b');
        b.put_i32(8);
        b.put_i64(6);
        b.put_u8(b'u');
        let m = decode(b.freeze()).unwrap();
        assert_eq!(
            m,
            Message::Update {
                rel: 7,
                old: Some(vec![
                    Value::Binary(Bytes::from(5i64.to_be_bytes().to_vec())),
                    Value::Null
                ]),
                new: vec![
                    Value::Binary(Bytes::from(6i64.to_be_bytes().to_vec())),
                    Value::Unchanged
                ],
            }
        );
    }

    #[test]
    fn truncates_list_relations_and_options() {
        let mut b = bytes::BytesMut::new();
        b.put_u8(b'T');
        b.put_u32(2);
        b.put_u8(3);
        b.put_u32(1);
        b.put_u32(2);
        assert_eq!(
            decode(b.freeze()).unwrap(),
            Message::Truncate {
                rels: vec![1, 2],
                cascade: true,
                restart_identity: true
            }
        );
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let full = relation_bytes();
        for n in 1..full.len() {
            assert!(decode(full.slice(..n)).is_err(), "prefix of {n} bytes");
        }
        assert!(decode(Bytes::new()).is_err());
    }
}
