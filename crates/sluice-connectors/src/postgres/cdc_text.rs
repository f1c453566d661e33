//! Change capture receives values in their binary send format; the batch reader selects the
//! types it has no decoder for as `::text`. For those, this turns the binary form into the text
//! PostgreSQL would print (the target parses it back into the same value). Types without a
//! converter here cannot be captured yet, which `tables()` says before anything runs.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::types::PgType;

/// Turns one binary value into text.
pub(crate) type ToText = fn(&[u8]) -> Result<String, String>;

/// The converter for a column read as `::text` in batch mode, if there is one.
pub(crate) fn converter(t: &PgType) -> Option<ToText> {
    if t.elem.is_some() {
        return None;
    }
    if t.typtype == 'e' {
        return Some(text);
    }
    if t.schema != "pg_catalog" {
        return None;
    }
    Some(match t.name.as_str() {
        "money" => money,
        "inet" | "cidr" => inet,
        "xml" | "name" | "text" | "varchar" | "bpchar" => text,
        "timetz" => timetz,
        "char" => one_char,
        "macaddr" | "macaddr8" => macaddr,
        _ => return None,
    })
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
    v.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", v.len()))
}

fn text(v: &[u8]) -> Result<String, String> {
    String::from_utf8(v.to_vec()).map_err(|e| format!("invalid UTF-8: {e}"))
}

/// `money`: cents as int8 → `-12.34` (a form `money` input takes in any locale's digits).
fn money(v: &[u8]) -> Result<String, String> {
    let c = i64::from_be_bytes(fixed(v)?);
    let sign = if c < 0 { "-" } else { "" };
    let a = c.unsigned_abs();
    Ok(format!("{sign}{}.{:02}", a / 100, a % 100))
}

/// `inet`/`cidr`: family, bits, is_cidr, length, address.
fn inet(v: &[u8]) -> Result<String, String> {
    if v.len() < 4 {
        return Err("truncated inet".into());
    }
    let (family, bits, is_cidr, n) = (v[0], v[1], v[2] != 0, v[3] as usize);
    let addr = v.get(4..4 + n).ok_or("truncated inet")?;
    let (shown, max) = match (family, n) {
        (2, 4) => (Ipv4Addr::from(fixed::<4>(addr)?).to_string(), 32),
        (3, 16) => (Ipv6Addr::from(fixed::<16>(addr)?).to_string(), 128),
        _ => return Err(format!("unknown inet family {family} with {n} bytes")),
    };
    Ok(if is_cidr || bits != max {
        format!("{shown}/{bits}")
    } else {
        shown
    })
}

/// `timetz`: µs since midnight and the zone's offset in seconds west of UTC.
fn timetz(v: &[u8]) -> Result<String, String> {
    let v: [u8; 12] = fixed(v)?;
    let us = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
    let west = i32::from_be_bytes(v[8..].try_into().expect("4 bytes"));
    let (h, m, s, frac) = (
        us / 3_600_000_000,
        us / 60_000_000 % 60,
        us / 1_000_000 % 60,
        us % 1_000_000,
    );
    let mut out = format!("{h:02}:{m:02}:{s:02}");
    if frac != 0 {
        out.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    let east = -west;
    let a = east.unsigned_abs();
    out.push(if east < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", a / 3600));
    if a % 3600 != 0 {
        out.push_str(&format!(":{:02}", a / 60 % 60));
        if a % 60 != 0 {
            out.push_str(&format!(":{:02}", a % 60));
        }
    }
    Ok(out)
}

/// `"char"`: one byte (empty for `\0`, octal for bytes above 127, as PostgreSQL prints).
fn one_char(v: &[u8]) -> Result<String, String> {
    Ok(match v {
        [] | [0] => String::new(),
        [b] if *b < 128 => (*b as char).to_string(),
        [b] => format!("\\{b:03o}"),
        _ => return Err(format!("\"char\" of {} bytes", v.len())),
    })
}

/// `macaddr` (6 bytes) and `macaddr8` (8 bytes).
fn macaddr(v: &[u8]) -> Result<String, String> {
    if v.len() != 6 && v.len() != 8 {
        return Err(format!("mac address of {} bytes", v.len()));
    }
    Ok(v.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_forms_print_as_postgresql_prints_them() {
        assert_eq!(money(&150i64.to_be_bytes()).unwrap(), "1.50");
        assert_eq!(money(&(-1i64).to_be_bytes()).unwrap(), "-0.01");
        assert_eq!(
            inet(&[2, 24, 0, 4, 192, 168, 0, 1]).unwrap(),
            "192.168.0.1/24"
        );
        assert_eq!(inet(&[2, 32, 0, 4, 10, 0, 0, 1]).unwrap(), "10.0.0.1");
        assert_eq!(inet(&[2, 32, 1, 4, 10, 0, 0, 0]).unwrap(), "10.0.0.0/32");
        let mut v6 = vec![3, 128, 0, 16];
        v6.extend(Ipv6Addr::LOCALHOST.octets());
        assert_eq!(inet(&v6).unwrap(), "::1");
        let mut t = (10 * 3_600_000_000i64).to_be_bytes().to_vec();
        t.extend((-19800i32).to_be_bytes());
        assert_eq!(timetz(&t).unwrap(), "10:00:00+05:30");
        let mut t = 1i64.to_be_bytes().to_vec();
        t.extend(43200i32.to_be_bytes());
        assert_eq!(timetz(&t).unwrap(), "00:00:00.000001-12");
        assert_eq!(one_char(b"q").unwrap(), "q");
        assert_eq!(one_char(&[0]).unwrap(), "");
        assert_eq!(one_char(&[200]).unwrap(), "\\310");
        assert_eq!(
            macaddr(&[8, 0, 0x2b, 1, 2, 3]).unwrap(),
            "08:00:2b:01:02:03"
        );
        assert!(inet(&[2, 32]).is_err());
    }
}
