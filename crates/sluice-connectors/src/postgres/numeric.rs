//! PostgreSQL's binary `numeric`: `ndigits i16, weight i16, sign u16, dscale u16`, then
//! `ndigits` base-10000 digits, most significant first; the value is
//! `Σ digit[i] · 10000^(weight − i)`, shown with `dscale` fractional digits.

use arrow::datatypes::i256;
use bytes::{BufMut, BytesMut};

const POS: u16 = 0x0000;
const NEG: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PINF: u16 = 0xD000;
const NINF: u16 = 0xF000;

struct Raw<'a> {
    weight: i32,
    sign: u16,
    dscale: u16,
    digits: &'a [u8],
}

impl Raw<'_> {
    fn digit(&self, i: usize) -> i32 {
        i16::from_be_bytes([self.digits[2 * i], self.digits[2 * i + 1]]) as i32
    }
    fn ndigits(&self) -> usize {
        self.digits.len() / 2
    }
}

fn parse(b: &[u8]) -> Result<Raw<'_>, String> {
    if b.len() < 8 {
        return Err("truncated numeric".into());
    }
    let nd = i16::from_be_bytes([b[0], b[1]]) as usize;
    let raw = Raw {
        weight: i16::from_be_bytes([b[2], b[3]]) as i32,
        sign: u16::from_be_bytes([b[4], b[5]]),
        dscale: u16::from_be_bytes([b[6], b[7]]),
        digits: &b[8..],
    };
    if raw.digits.len() != nd * 2 {
        return Err("numeric digit count does not match its length".into());
    }
    Ok(raw)
}

/// Appends the value as PostgreSQL's `numeric_out` would print it (`NaN`, `Infinity`, …).
pub fn to_text(b: &[u8], out: &mut String) -> Result<(), String> {
    use std::fmt::Write;
    let r = parse(b)?;
    match r.sign {
        NAN => {
            out.push_str("NaN");
            return Ok(());
        }
        PINF => {
            out.push_str("Infinity");
            return Ok(());
        }
        NINF => {
            out.push_str("-Infinity");
            return Ok(());
        }
        NEG => out.push('-'),
        _ => {}
    }
    let d = |i: i32| {
        if i >= 0 && (i as usize) < r.ndigits() {
            r.digit(i as usize)
        } else {
            0
        }
    };
    if r.weight < 0 {
        out.push('0');
    } else {
        for i in 0..=r.weight {
            if i == 0 {
                let _ = write!(out, "{}", d(i));
            } else {
                let _ = write!(out, "{:04}", d(i));
            }
        }
    }
    if r.dscale > 0 {
        out.push('.');
        let mut left = r.dscale as usize;
        let mut i = r.weight + 1;
        while left > 0 {
            let s = format!("{:04}", d(i));
            let take = left.min(4);
            out.push_str(&s[..take]);
            left -= take;
            i += 1;
        }
    }
    Ok(())
}

/// The value as an integer at `scale` (for Decimal128/256). NaN, ±Infinity, digits beyond
/// `scale` and overflow are errors (the caller names the row).
pub fn to_i256(b: &[u8], scale: i8) -> Result<i256, String> {
    let r = parse(b)?;
    match r.sign {
        NAN | PINF | NINF => {
            let what = match r.sign {
                NAN => "NaN",
                PINF => "Infinity",
                _ => "-Infinity",
            };
            return Err(format!(
                "numeric value {what} has no decimal representation"
            ));
        }
        POS | NEG => {}
        s => return Err(format!("invalid numeric sign {s:#x}")),
    }
    let ten = i256::from_i128(10);
    let mut acc = i256::ZERO;
    for i in 0..r.ndigits() {
        let digit = i256::from_i128(r.digit(i) as i128);
        let exp = 4 * (r.weight - i as i32) + scale as i32;
        let term = if exp >= 0 {
            ten.checked_pow(exp as u32)
                .and_then(|p| digit.checked_mul(p))
        } else {
            let p = ten.checked_pow((-exp) as u32).unwrap_or(i256::MAX);
            if digit.checked_rem(p) != Some(i256::ZERO) && p != i256::MAX {
                return Err(
                    "numeric value has more fractional digits than the column scale".into(),
                );
            }
            Some(digit.checked_div(p).unwrap_or(i256::ZERO))
        };
        acc = term
            .and_then(|t| acc.checked_add(t))
            .ok_or("numeric value overflows")?;
    }
    Ok(if r.sign == NEG {
        acc.wrapping_neg()
    } else {
        acc
    })
}

/// Encodes decimal text (`-12.50`, `1e5`, `NaN`, `Infinity`) as binary numeric, keeping the
/// number of fractional digits as the display scale.
pub fn from_text(text: &str, out: &mut BytesMut) -> Result<(), String> {
    let t = text.trim();
    let special = match t.to_ascii_lowercase().as_str() {
        "nan" => Some(NAN),
        "infinity" | "+infinity" | "inf" => Some(PINF),
        "-infinity" | "-inf" => Some(NINF),
        _ => None,
    };
    if let Some(s) = special {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(s);
        out.put_u16(0);
        return Ok(());
    }
    let bad = || format!("{text:?} is not a number");
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (body, 0),
    };
    let (ip, fp) = match mant.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mant, ""),
    };
    if (ip.is_empty() && fp.is_empty())
        || !ip.bytes().all(|c| c.is_ascii_digit())
        || !fp.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    // Decimal digits and the position of the point among them, after the exponent.
    let mut digits: Vec<u8> = ip.bytes().chain(fp.bytes()).map(|c| c - b'0').collect();
    let mut point = ip.len() as i64 + exp as i64;
    let dscale = (fp.len() as i64 - exp as i64).clamp(0, 16383);
    if point < 0 {
        let pad = (-point) as usize;
        digits.splice(0..0, std::iter::repeat_n(0u8, pad));
        point = 0;
    }
    if (point as usize) > digits.len() {
        digits.resize(point as usize, 0);
    }
    let point = point as usize;
    // Left-pad the integer part and right-pad the fraction to whole base-10000 groups.
    let lpad = (4 - point % 4) % 4;
    let mut all = vec![0u8; lpad];
    all.extend_from_slice(&digits);
    let frac_len = all.len() - (point + lpad);
    all.resize(all.len() + (4 - frac_len % 4) % 4, 0);
    let groups: Vec<i16> = all
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |a, &d| a * 10 + d as i16))
        .collect();
    let mut weight = ((point + lpad) / 4) as i32 - 1;
    let mut start = 0;
    while start < groups.len() && groups[start] == 0 {
        start += 1;
        weight -= 1;
    }
    let mut end = groups.len();
    while end > start && groups[end - 1] == 0 {
        end -= 1;
    }
    let g = &groups[start..end];
    if g.is_empty() {
        weight = 0;
    }
    if g.len() > i16::MAX as usize || weight > i16::MAX as i32 || weight < i16::MIN as i32 {
        return Err(format!("{text:?} is out of PostgreSQL's numeric range"));
    }
    out.put_i16(g.len() as i16);
    out.put_i16(weight as i16);
    out.put_u16(if neg && !g.is_empty() { NEG } else { POS });
    out.put_u16(dscale as u16);
    for d in g {
        out.put_i16(*d);
    }
    Ok(())
}

/// Appends `v · 10^-scale` (a Decimal128 value) in binary `numeric` form without going through
/// text: the hot path of every decimal column written by the PostgreSQL sink. Values whose
/// padding to whole base-10000 groups would overflow fall back to the text path.
pub fn from_i128(v: i128, scale: i8, out: &mut BytesMut) -> Result<(), String> {
    let neg = v < 0;
    let mut u = v.unsigned_abs();
    let (frac_digits, dscale) = if scale > 0 {
        let pad = (4 - (scale as u32) % 4) % 4;
        match u.checked_mul(10u128.pow(pad)) {
            Some(x) => u = x,
            None => return from_text(&scaled_text(v, scale), out),
        }
        (scale as u32 + pad, scale as u16)
    } else {
        match u.checked_mul(10u128.pow((-(scale as i32)) as u32)) {
            Some(x) => u = x,
            None => return from_text(&scaled_text(v, scale), out),
        }
        (0, 0)
    };
    if u == 0 {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(POS);
        out.put_u16(dscale);
        return Ok(());
    }
    // Base-10000 groups, least significant first.
    let mut groups = [0i16; 10];
    let mut n = 0;
    while u > 0 {
        groups[n] = (u % 10_000) as i16;
        u /= 10_000;
        n += 1;
    }
    let frac_groups = (frac_digits / 4) as i32;
    // Trailing (least significant) zero groups are not sent.
    let mut low = 0;
    while low < n && groups[low] == 0 {
        low += 1;
    }
    let weight = n as i32 - frac_groups - 1;
    out.put_i16((n - low) as i16);
    out.put_i16(weight as i16);
    out.put_u16(if neg { NEG } else { POS });
    out.put_u16(dscale);
    for g in groups[low..n].iter().rev() {
        out.put_i16(*g);
    }
    Ok(())
}

/// Decimal text of an integer `v` at `scale` (e.g. 1234 at scale 2 → `12.34`).
pub fn scaled_text(v: impl std::fmt::Display, scale: i8) -> String {
    let s = v.to_string();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.as_str()),
    };
    let mut out = String::with_capacity(digits.len() + 3);
    if neg {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (-scale) as usize));
        return out;
    }
    let sc = scale as usize;
    if digits.len() <= sc {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', sc - digits.len()));
        out.push_str(digits);
    } else {
        let (a, b) = digits.split_at(digits.len() - sc);
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(t: &str) -> String {
        let mut b = BytesMut::new();
        from_text(t, &mut b).unwrap();
        let mut s = String::new();
        to_text(&b, &mut s).unwrap();
        s
    }

    proptest::proptest! {
        #[test]
        fn from_i128_matches_the_text_path(v in proptest::num::i128::ANY, scale in -3i8..40) {
            let v = v % 10i128.pow(38);
            let mut fast = BytesMut::new();
            from_i128(v, scale, &mut fast).unwrap();
            let mut slow = BytesMut::new();
            from_text(&scaled_text(v, scale), &mut slow).unwrap();
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn from_i128_edge_values() {
        for (v, s) in [
            (0i128, 2i8),
            (1, 0),
            (-1, 2),
            (10000, 0),
            (123456789, 4),
            (-5, 5),
            (i128::MAX / 10, 38),
            (7, -2),
        ] {
            let mut fast = BytesMut::new();
            from_i128(v, s, &mut fast).unwrap();
            let mut slow = BytesMut::new();
            from_text(&scaled_text(v, s), &mut slow).unwrap();
            assert_eq!(fast, slow, "{v} scale {s}");
        }
    }

    #[test]
    fn text_round_trips() {
        for t in [
            "0",
            "1",
            "-1",
            "12.50",
            "0.0001",
            "0.00001",
            "123456789.123456789",
            "10000",
            "-0.5",
            "NaN",
            "Infinity",
            "-Infinity",
            "99999999999999999999999999999999999999999999",
            "0.000",
            "100000000.00000001",
        ] {
            assert_eq!(round(t), t);
        }
        assert_eq!(round("1e5"), "100000");
        assert_eq!(round("1.5e-3"), "0.0015");
        assert_eq!(round("-0"), "0");
    }

    #[test]
    fn decimals_scale() {
        let mut b = BytesMut::new();
        from_text("-12.34", &mut b).unwrap();
        assert_eq!(to_i256(&b, 2).unwrap(), i256::from_i128(-1234));
        assert_eq!(to_i256(&b, 4).unwrap(), i256::from_i128(-123400));
        assert!(to_i256(&b, 1).is_err());
        let mut b = BytesMut::new();
        from_text("NaN", &mut b).unwrap();
        assert!(to_i256(&b, 1).unwrap_err().contains("NaN"));
        assert_eq!(scaled_text(-1234, 2), "-12.34");
        assert_eq!(scaled_text(5, 3), "0.005");
        assert_eq!(scaled_text(5, -2), "500");
    }
}
