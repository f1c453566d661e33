//! The text forms of values SQLite stores as TEXT: dates, times, timestamps, intervals,
//! UUIDs, exact decimals, special floats. Written by `encode.rs`, read by `decode.rs`; each
//! parser accepts what its formatter writes plus the common variants people store.
//!
//! Everything here is pure and unit-tested.

use std::fmt::Write as _;

use sluice_core::types::Precision;

// ---------------------------------------------------------------------------------------------
// Dates and times. Days are counted from 1970-01-01 in the proleptic Gregorian calendar.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm; any year).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (era * 400 + yoe + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Appends `YYYY-MM-DD` (years outside 0..=9999 get a sign and at least 4 digits).
pub fn fmt_date(days: i64, out: &mut String) {
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    } else if y < 0 {
        let _ = write!(out, "-{:04}-{m:02}-{d:02}", -y);
    } else {
        let _ = write!(out, "+{y:04}-{m:02}-{d:02}");
    }
}

/// Parses `YYYY-MM-DD` (optionally signed, more than 4 year digits) into days since the
/// epoch; returns the rest of the input after the date.
fn parse_date_prefix(s: &str) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    let (neg, start) = match b.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let ylen = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(4..=9).contains(&ylen) {
        return None;
    }
    let y: i64 = s[start..start + ylen].parse().ok()?;
    let y = if neg { -y } else { y };
    let rest = &s[start + ylen..];
    let rb = rest.as_bytes();
    if rb.len() < 6 || rb[0] != b'-' || rb[3] != b'-' {
        return None;
    }
    let m = two_digits(&rb[1..3])?;
    let d = two_digits(&rb[4..6])?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some((days_from_civil(y, m, d), &rest[6..]))
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a, c] if a.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(c - b'0'))
        }
        _ => None,
    }
}

/// Parses a date `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    match parse_date_prefix(s.trim())? {
        (d, "") => Some(d),
        _ => None,
    }
}

const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;

/// Appends `HH:MM:SS.ffffff` (or 9 fraction digits for nanosecond precision).
pub fn fmt_time(nanos_of_day: i64, precision: Precision, out: &mut String) {
    let secs = nanos_of_day / NANOS_PER_SEC;
    let frac = nanos_of_day % NANOS_PER_SEC;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    match precision {
        Precision::Micros => {
            let _ = write!(out, ".{:06}", frac / 1000);
        }
        Precision::Nanos => {
            let _ = write!(out, ".{frac:09}");
        }
    }
}

/// Parses `HH:MM[:SS[.fffffffff]]` into nanoseconds since midnight; returns the rest.
fn parse_time_prefix(s: &str) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    if b.len() < 5 || b[2] != b':' {
        return None;
    }
    let h = two_digits(&b[0..2])? as i64;
    let m = two_digits(&b[3..5])? as i64;
    let mut i = 5;
    let mut sec = 0;
    let mut frac = 0i64;
    if b.get(i) == Some(&b':') {
        sec = two_digits(b.get(i + 1..i + 3)?)? as i64;
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            let mut scale = 100_000_000;
            for (k, c) in b[i..i + n].iter().enumerate() {
                // Digits beyond nanoseconds are truncated.
                if k < 9 {
                    frac += i64::from(c - b'0') * scale;
                    scale /= 10;
                }
            }
            i += n;
        }
    }
    // 24:00:00 is accepted as the end of the day.
    if h > 24 || m > 59 || sec > 60 || (h == 24 && (m, sec, frac) != (0, 0, 0)) {
        return None;
    }
    Some(((h * 3600 + m * 60 + sec) * NANOS_PER_SEC + frac, &s[i..]))
}

/// Parses a time of day into nanoseconds since midnight.
pub fn parse_time(s: &str) -> Option<i64> {
    match parse_time_prefix(s.trim())? {
        (t, "") => Some(t),
        _ => None,
    }
}

/// Appends `YYYY-MM-DD HH:MM:SS.ffffff` for `nanos` since the epoch, with `+00:00` if `tz`.
pub fn fmt_timestamp(nanos: i128, precision: Precision, tz: bool, out: &mut String) {
    let days = nanos.div_euclid(NANOS_PER_DAY as i128) as i64;
    let tod = nanos.rem_euclid(NANOS_PER_DAY as i128) as i64;
    fmt_date(days, out);
    out.push(' ');
    fmt_time(tod, precision, out);
    if tz {
        out.push_str("+00:00");
    }
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.f]]][Z|±HH[:MM]]` into nanoseconds since the epoch.
/// An offset is applied (the result is UTC) when `apply_offset`; otherwise it is ignored and
/// the wall-clock value is kept.
pub fn parse_timestamp(s: &str, apply_offset: bool) -> Option<i128> {
    let s = s.trim();
    let (days, rest) = parse_date_prefix(s)?;
    let mut nanos = days as i128 * NANOS_PER_DAY as i128;
    let rest = match rest.as_bytes().first() {
        None => return Some(nanos),
        Some(b' ' | b'T' | b't') => &rest[1..],
        Some(_) => return None,
    };
    let (tod, rest) = parse_time_prefix(rest)?;
    nanos += tod as i128;
    let rest = rest.trim_start();
    let offset_secs: i64 = match rest.as_bytes().first() {
        None => 0,
        Some(b'Z' | b'z') if rest.len() == 1 => 0,
        Some(c @ (b'+' | b'-')) => {
            let sign = if *c == b'-' { -1 } else { 1 };
            let b = &rest.as_bytes()[1..];
            let h = two_digits(b.get(0..2)?)? as i64;
            let m = match &b[2..] {
                [] => 0,
                [b':', x, y] | [x, y] => two_digits(&[*x, *y])? as i64,
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
        Some(_) => return None,
    };
    if apply_offset {
        nanos -= offset_secs as i128 * NANOS_PER_SEC as i128;
    }
    Some(nanos)
}

/// Appends an interval in ISO 8601 form as PostgreSQL's `iso_8601` style writes it:
/// `P1Y2M3DT4H5M6.5S`, each part signed on its own (`P-1Y-2M3DT-4H`); zero is `PT0S`.
pub fn fmt_interval(months: i32, days: i32, nanos: i64, out: &mut String) {
    if months == 0 && days == 0 && nanos == 0 {
        out.push_str("PT0S");
        return;
    }
    out.push('P');
    let (y, m) = (months / 12, months % 12);
    if y != 0 {
        let _ = write!(out, "{y}Y");
    }
    if m != 0 {
        let _ = write!(out, "{m}M");
    }
    if days != 0 {
        let _ = write!(out, "{days}D");
    }
    if nanos != 0 {
        out.push('T');
        let h = nanos / (3600 * NANOS_PER_SEC);
        let mi = nanos / (60 * NANOS_PER_SEC) % 60;
        let s = nanos % (60 * NANOS_PER_SEC);
        if h != 0 {
            let _ = write!(out, "{h}H");
        }
        if mi != 0 {
            let _ = write!(out, "{mi}M");
        }
        if s != 0 {
            if s < 0 {
                out.push('-');
            }
            let s = s.unsigned_abs();
            let _ = write!(out, "{}", s / NANOS_PER_SEC as u64);
            let frac = s % NANOS_PER_SEC as u64;
            if frac != 0 {
                let f = format!("{frac:09}");
                let _ = write!(out, ".{}", f.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
}

/// Parses the ISO 8601 form [`fmt_interval`] writes (also `P2W`, fractional seconds).
pub fn parse_interval(s: &str) -> Option<(i32, i32, i64)> {
    let s = s.trim();
    let body = s.strip_prefix('P').or_else(|| s.strip_prefix('p'))?;
    let (date, time) = match body.find(['T', 't']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (mut months, mut days, mut nanos) = (0i64, 0i64, 0i128);
    let mut any = false;
    for (num, unit) in iso_parts(date)? {
        let n: i64 = num.parse().ok()?;
        match unit {
            'Y' => months += n.checked_mul(12)?,
            'M' => months += n,
            'W' => days += n.checked_mul(7)?,
            'D' => days += n,
            _ => return None,
        }
        any = true;
    }
    if let Some(time) = time {
        for (num, unit) in iso_parts(time)? {
            let mult: i128 = match unit {
                'H' => 3600 * NANOS_PER_SEC as i128,
                'M' => 60 * NANOS_PER_SEC as i128,
                'S' => {
                    nanos += parse_seconds(num)?;
                    any = true;
                    continue;
                }
                _ => return None,
            };
            nanos += num.parse::<i128>().ok()? * mult;
            any = true;
        }
    }
    if !any {
        return None;
    }
    Some((
        i32::try_from(months).ok()?,
        i32::try_from(days).ok()?,
        i64::try_from(nanos).ok()?,
    ))
}

/// `"-6.5"` → nanoseconds.
fn parse_seconds(num: &str) -> Option<i128> {
    let (neg, digits) = match num.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, num),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let w: i128 = whole.parse().ok()?;
    let f: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    let v = w * NANOS_PER_SEC as i128 + f;
    Some(if neg { -v } else { v })
}

/// Splits `1Y-2M3D` into `[("1",'Y'), ("-2",'M'), ("3",'D')]`.
fn iso_parts(s: &str) -> Option<Vec<(&str, char)>> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c.is_ascii_alphabetic() {
            if i == start {
                return None;
            }
            parts.push((&s[start..i], c.to_ascii_uppercase()));
            start = i + 1;
        }
    }
    (start == s.len()).then_some(parts)
}

/// Appends the canonical lower-case form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn fmt_uuid(b: &[u8], out: &mut String) {
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
}

/// Parses a UUID with or without dashes or braces, any case.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let hex: Vec<u8> = s.bytes().filter(|c| *c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of `bytes` (binary values inside array columns).
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Bytes of a hex string.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some((hex_val(p[0])? << 4) | hex_val(p[1])?))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Decimals, as text: no float ever touches an exact value.

/// Appends the decimal text of `unscaled · 10^-scale`, e.g. `("-12345", 2)` → `-123.45`.
/// `unscaled` is an integer's `Display` form.
pub fn fmt_decimal(unscaled: &str, scale: i32, out: &mut String) {
    let (neg, digits) = match unscaled.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, unscaled),
    };
    if neg {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(digits);
        if digits != "0" {
            out.extend(std::iter::repeat_n('0', (-scale) as usize));
        }
        return;
    }
    let scale = scale as usize;
    if digits.len() > scale {
        out.push_str(&digits[..digits.len() - scale]);
        out.push('.');
        out.push_str(&digits[digits.len() - scale..]);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
}

/// Why a decimal text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Not a number.
    Syntax,
    /// More fractional digits than the scale, and rounding was not allowed.
    Scale,
}

/// The unscaled integer text (`-12345`) of decimal text `s` at `scale`. Accepts a sign,
/// digits, a point and an exponent (`1.5e3`). Extra fractional digits are rounded half away
/// from zero when `round` (values that came through a double), else refused.
pub fn parse_decimal(s: &str, scale: i32, round: bool) -> Result<String, DecimalError> {
    let s = s.trim();
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (
            &body[..i],
            body[i + 1..]
                .parse::<i32>()
                .map_err(|_| DecimalError::Syntax)?,
        ),
        None => (body, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(DecimalError::Syntax);
    }
    // value = digits · 10^(exp - frac.len()); unscaled = digits · 10^(exp - frac.len() + scale)
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let shift = exp as i64 - frac.len() as i64 + scale as i64;
    if shift >= 0 {
        if shift > 10_000 {
            return Err(DecimalError::Syntax);
        }
        digits.extend(std::iter::repeat_n(b'0', shift as usize));
    } else {
        let drop = (-shift) as usize;
        let keep = digits.len().saturating_sub(drop);
        let dropped: Vec<u8> = if drop > digits.len() {
            let mut d = vec![b'0'; drop - digits.len()];
            d.extend_from_slice(&digits);
            d
        } else {
            digits[keep..].to_vec()
        };
        digits.truncate(keep);
        if dropped.iter().any(|c| *c != b'0') {
            if !round {
                return Err(DecimalError::Scale);
            }
            if dropped[0] >= b'5' {
                increment(&mut digits);
            }
        }
    }
    let first = digits
        .iter()
        .position(|c| *c != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.is_empty() {
        return Ok("0".into());
    }
    let mut out = String::with_capacity(digits.len() + 1);
    if neg {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(digits).map_err(|_| DecimalError::Syntax)?);
    Ok(out)
}

fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

/// Number of digits of an unscaled integer text (without sign).
pub fn digit_count(unscaled: &str) -> usize {
    unscaled.trim_start_matches('-').len()
}

/// Text of a float that reads back to the same value: shortest round-trip digits, `NaN`,
/// `Infinity`, `-Infinity`.
pub fn fmt_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{v:?}")
    }
}

/// Parses what [`fmt_float`] writes, plus `inf`, `+Infinity` and the like.
pub fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_far_and_near() {
        for days in [
            -1_000_000_000i64,
            -719_528,
            -1,
            0,
            1,
            19_000,
            2_932_896,
            100_000_000,
        ] {
            let mut s = String::new();
            fmt_date(days, &mut s);
            assert_eq!(parse_date(&s), Some(days), "{s}");
        }
        let mut s = String::new();
        fmt_date(0, &mut s);
        assert_eq!(s, "1970-01-01");
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
    }

    #[test]
    fn timestamps_round_trip() {
        for n in [
            i64::MIN as i128 / 1000 * 1000,
            -1_000,
            0,
            1_700_000_000_123_456_000,
        ] {
            for tz in [false, true] {
                let mut s = String::new();
                fmt_timestamp(n, Precision::Micros, tz, &mut s);
                assert_eq!(parse_timestamp(&s, true), Some(n), "{s}");
            }
        }
        assert_eq!(
            parse_timestamp("1970-01-01T01:00:00+01:00", true),
            Some(0),
            "offsets are applied"
        );
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:01.5Z", true),
            Some(1_500_000_000)
        );
        assert_eq!(
            parse_timestamp("1970-01-02", true),
            Some(NANOS_PER_DAY as i128)
        );
        assert_eq!(parse_timestamp("yesterday", true), None);
    }

    #[test]
    fn times_and_intervals_round_trip() {
        let mut s = String::new();
        fmt_time(3_723_000_001_000, Precision::Micros, &mut s);
        assert_eq!(s, "01:02:03.000001");
        assert_eq!(parse_time(&s), Some(3_723_000_001_000));
        for (m, d, n) in [
            (0, 0, 0),
            (14, 3, 3_723_500_000_000),
            (-14, 3, -1),
            (0, -5, 999),
        ] {
            let mut s = String::new();
            fmt_interval(m, d, n, &mut s);
            assert_eq!(parse_interval(&s), Some((m, d, n)), "{s}");
        }
        assert_eq!(parse_interval("P2W"), Some((0, 14, 0)));
        assert_eq!(parse_interval("P"), None);
    }

    #[test]
    fn uuids() {
        let b: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        let mut s = String::new();
        fmt_uuid(&b, &mut s);
        assert_eq!(s, "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(parse_uuid(&s.to_uppercase()), Some(b));
        assert_eq!(parse_uuid("{00112233445566778899aabbccddeeff}"), Some(b));
        assert_eq!(parse_uuid("nope"), None);
    }

    #[test]
    fn decimals_are_exact() {
        let f = |u: &str, s| {
            let mut o = String::new();
            fmt_decimal(u, s, &mut o);
            o
        };
        assert_eq!(f("-12345", 2), "-123.45");
        assert_eq!(f("5", 3), "0.005");
        assert_eq!(f("-5", 3), "-0.005");
        assert_eq!(f("12", -2), "1200");
        assert_eq!(parse_decimal("-123.45", 2, false).unwrap(), "-12345");
        assert_eq!(parse_decimal("123.4", 2, false).unwrap(), "12340");
        assert_eq!(parse_decimal("1.5e3", 0, false).unwrap(), "1500");
        assert_eq!(parse_decimal("0.005", 2, false), Err(DecimalError::Scale));
        assert_eq!(parse_decimal("0.005", 2, true).unwrap(), "1");
        assert_eq!(parse_decimal("-0.995", 2, true).unwrap(), "-100");
        assert_eq!(
            parse_decimal("123.40000000000001", 2, true).unwrap(),
            "12340"
        );
        assert_eq!(parse_decimal("abc", 2, true), Err(DecimalError::Syntax));
        assert_eq!(parse_decimal("-0.00", 2, false).unwrap(), "0");
        let big = "123456789012345678901234567890.1234567890";
        let u = parse_decimal(big, 10, false).unwrap();
        assert_eq!(f(&u, 10), big);
    }

    #[test]
    fn floats_text() {
        for v in [
            0.1,
            -0.0,
            1e300,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(parse_float(&fmt_float(v)).unwrap().to_bits(), v.to_bits());
        }
        assert!(parse_float("NaN").unwrap().is_nan());
    }
}
