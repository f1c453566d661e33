//! Keeping secrets out of everything Sluice prints: errors, logs, status, validate output.
//!
//! Two mechanisms, both applied by [`redact`]:
//!
//! * **Passwords by shape.** Whatever the text, a password written in any form Sluice or its
//!   drivers accept is masked: the `user:password@` of a URL whatever its scheme, also a
//!   mistyped one (`postgress://u:p@h`, `postgres:/u:p@h`, `u:p@h` with no scheme at all), and
//!   the value of a `password=` style key — libpq `host=h password=p` (also quoted,
//!   `password='a b'`), URL query parameters (`?password=p`, `&sslpassword=p`), `PGPASSWORD=p`,
//!   JSON `"password": "p"`. Any key whose name ends in `password` or `passwd`, and `pwd` and
//!   `pass`, counts.
//! * **Registered secrets.** Values that came from `${env:…}` / `${file:…}`, and the passwords
//!   found by shape in a job file's strings ([`register_connection_secrets`]), are remembered
//!   and replaced wherever they appear later, even where no shape gives them away (a driver
//!   message quoting the bare password).
//!
//! Masking errs on the side of hiding: a user name or host may occasionally be hidden along
//! with a password, never the other way round.

use std::ops::Range;
use std::sync::{LazyLock, RwLock};

/// Shortest secret that is registered; shorter ones would blank out ordinary text. (Passwords
/// found by shape are masked whatever their length.)
const MIN_SECRET_LEN: usize = 4;

const MASK: &str = "***";

static SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Registers `secret` so [`redact`] hides it from now on.
pub fn register_secret(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !s.iter().any(|x| x == secret) {
        s.push(secret.to_string());
        // Longest first, so a secret containing another is replaced whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// Registers every password `value` holds as a connection string (a URL with any scheme, a
/// libpq `key=value` string, `?password=` parameters), and its percent-decoded form, so
/// [`redact`] hides it even where it later appears on its own.
pub fn register_connection_secrets(value: &str) {
    for r in password_spans(value, true) {
        let secret = &value[r];
        register_secret(secret);
        if secret.contains('%')
            && let Some(decoded) = percent_decode(secret)
        {
            register_secret(&decoded);
        }
    }
}

/// `text` with every password (by shape, see the module docs) and every registered secret
/// replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = mask_passwords(text);
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

/// `text` with every password found by shape replaced by `***` (registered secrets are left
/// to [`redact`]).
pub fn mask_passwords(text: &str) -> String {
    let spans = password_spans(text, false);
    if spans.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in spans {
        out.push_str(&text[at..r.start]);
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Byte ranges of the passwords in `text`, sorted and disjoint. With `connection_only`, URL
/// userinfo counts only when `text` is one word that starts like a URL (`scheme:`) or contains
/// `://` (used when registering secrets from job-file strings, which may be expressions).
fn password_spans(text: &str, connection_only: bool) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    if text.contains('@') {
        let words = words(text);
        if !connection_only || words.len() == 1 {
            for w in words {
                userinfo_spans(text, w, connection_only, &mut spans);
            }
        }
    }
    keyword_spans(text, &mut spans);
    spans.retain(|r| !r.is_empty());
    spans.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for r in spans {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// Ranges of `text` between whitespace and quote characters.
fn words(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let boundary = c.is_whitespace() || matches!(c, '"' | '\'' | '`');
        match (boundary, start) {
            (true, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..text.len());
    }
    out
}

/// Length of a leading `scheme:` (letters, digits, `+ . -`, starting with a letter).
fn scheme_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    if !chars.next()?.1.is_ascii_alphabetic() {
        return None;
    }
    for (i, c) in chars {
        if c == ':' {
            return Some(i + 1);
        }
        if !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')) {
            return None;
        }
    }
    None
}

/// The password of every `user:password@host` inside the word `w` of `text`.
fn userinfo_spans(text: &str, w: Range<usize>, connection_only: bool, out: &mut Vec<Range<usize>>) {
    let mut pos = w.start;
    while pos < w.end {
        let rest = &text[pos..w.end];
        if !rest.contains('@') {
            return;
        }
        // Where the authority starts: after `://`, after `scheme:/…`, else at the word start
        // (a missing or mistyped scheme: `u:p@h`, `postgres:u:p@h`).
        let body_start = match rest.find("://") {
            Some(i) => i + 3,
            None => match scheme_len(rest) {
                Some(n) if rest[n..].starts_with('/') => {
                    n + rest[n..].len() - rest[n..].trim_start_matches('/').len()
                }
                Some(_) => 0,
                None if connection_only => return,
                None => 0,
            },
        };
        let body = &rest[body_start..];
        let Some(first_at) = body.find('@') else {
            return;
        };
        // The userinfo ends at the last `@` before the query (a password may hold an
        // unencoded `@` or `/`) or before the next URL in the same word.
        let end = body[first_at..]
            .find(['?', '#'])
            .map_or(body.len(), |e| first_at + e);
        let end = body[first_at..end]
            .find("://")
            .map_or(end, |e| first_at + e);
        let last_at = body[..end].rfind('@').unwrap_or(first_at);
        let userinfo = &body[..last_at];
        if let Some(colon) = userinfo.find(':') {
            let base = pos + body_start;
            out.push(base + colon + 1..base + last_at);
        }
        if end == body.len() {
            return;
        }
        pos += body_start + end;
    }
}

/// Whether `key` names a password (`password`, `sslpassword`, `PGPASSWORD`, `pwd`, …).
fn is_password_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("password") || k.ends_with("passwd") || k == "pwd" || k == "pass"
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

/// The value of every `password=value` (libpq, query strings) and `"password": "value"` (JSON).
fn keyword_spans(text: &str, out: &mut Vec<Range<usize>>) {
    let lower = text.to_ascii_lowercase();
    if !(lower.contains("pass") || lower.contains("pwd")) {
        return;
    }
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c != b'=' && c != b':' {
            continue;
        }
        // The key before the separator: `key =`, or `"key":` in JSON.
        let mut end = i;
        while end > 0 && b[end - 1] == b' ' {
            end -= 1;
        }
        let json = c == b':';
        if json {
            if end == 0 || b[end - 1] != b'"' {
                continue;
            }
            end -= 1;
        }
        let mut start = end;
        while start > 0 && is_key_char(b[start - 1]) {
            start -= 1;
        }
        if start == end || !is_password_key(&text[start..end]) {
            continue;
        }
        if json && (start == 0 || b[start - 1] != b'"') {
            continue;
        }
        let mut v = i + 1;
        while v < b.len() && b[v] == b' ' {
            v += 1;
        }
        if let Some(r) = value_span(b, v, json) {
            out.push(r);
        }
    }
}

/// The value starting at byte `v`: quoted (`'…'` libpq, `"…"` JSON, backslash escapes), or a
/// bare word ending at whitespace, `&`, a quote or an escaped quote.
fn value_span(b: &[u8], v: usize, json: bool) -> Option<Range<usize>> {
    let quote = match b.get(v) {
        Some(&q @ (b'\'' | b'"')) => Some(q),
        Some(_) if json => return None,
        Some(_) => None,
        None => return None,
    };
    if let Some(q) = quote {
        let mut j = v + 1;
        while j < b.len() && b[j] != q {
            j += if b[j] == b'\\' { 2 } else { 1 };
        }
        return Some(v + 1..j.min(b.len()));
    }
    let mut j = v;
    while j < b.len() {
        let c = b[j];
        let escaped_quote = c == b'\\' && matches!(b.get(j + 1), Some(b'"' | b'\''));
        if c.is_ascii_whitespace() || matches!(c, b'&' | b'"' | b'\'') || escaped_quote {
            break;
        }
        j += 1;
    }
    // Stay on a character boundary (a multi-byte character is never a stop byte, so `j` is one).
    Some(v..j)
}

/// `%XX` escapes decoded, if the result is UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(x) = u8::from_str_radix(h, 16)
        {
            out.push(x);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> String {
        mask_passwords(s)
    }

    #[test]
    fn url_userinfo_in_every_scheme_and_misspelling() {
        for (text, want) in [
            (
                "connect postgres://app:s3cr3t@db:5432/x failed",
                "connect postgres://app:***@db:5432/x failed",
            ),
            (
                "mysql://root:pw@127.0.0.1:3306/shop",
                "mysql://root:***@127.0.0.1:3306/shop",
            ),
            ("sqlite://u:pw@x/a.db", "sqlite://u:***@x/a.db"),
            ("postgress://u:pw@h/db", "postgress://u:***@h/db"),
            (
                "url \"postgres:/app:pw@h/db\" is",
                "url \"postgres:/app:***@h/db\" is",
            ),
            ("postgres:app:pw@h/db", "postgres:***@h/db"),
            ("postgres//app:pw@h/db", "postgres//app:***@h/db"),
            ("app:pw@h/db", "app:***@h/db"),
            // An unencoded `@` or `/` in the password is hidden with the rest.
            ("postgres://u:p@ss/w@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            // JSON and Debug quoting.
            (
                r#"{"error":"url \"postgres:/u:pw@h\" is not"}"#,
                r#"{"error":"url \"postgres:/u:***@h\" is not"}"#,
            ),
            ("a://u:p1@h,b://v:p2@g", "a://u:***@h,b://v:***@g"),
        ] {
            assert_eq!(m(text), want, "{text}");
        }
    }

    #[test]
    fn text_without_passwords_is_unchanged() {
        for text in [
            "sqlite://data/a.db",
            "postgres://app@db:5432/x",
            "mail bob@example.com at 12:30",
            "job=m run=2 generation=17-2 rows=5",
            "where amount >= 100",
            "passes=3 compass: north",
        ] {
            assert_eq!(m(text), text);
        }
    }

    #[test]
    fn password_keys_in_libpq_query_and_json_forms() {
        for (text, want) in [
            (
                "url \"host=h password=pw user=u\" is not",
                "url \"host=h password=*** user=u\" is not",
            ),
            (
                "host=h password = 'a b\\' c' port=1",
                "host=h password = '***' port=1",
            ),
            (
                "postgres://u@h/db?password=pw&sslmode=bogus",
                "postgres://u@h/db?password=***&sslmode=bogus",
            ),
            (
                "mysql://u@h/db?sslpassword=pw&x=1",
                "mysql://u@h/db?sslpassword=***&x=1",
            ),
            ("PGPASSWORD=pw psql", "PGPASSWORD=*** psql"),
            ("Server=h;Pwd=p;w x", "Server=h;Pwd=*** x"),
            (
                r#"{"password": "p\"w", "user":"u"}"#,
                r#"{"password": "***", "user":"u"}"#,
            ),
            (
                r#"{"error":"bad url \"host=h password=pw\""}"#,
                r#"{"error":"bad url \"host=h password=***\""}"#,
            ),
        ] {
            assert_eq!(m(text), want, "{text}");
        }
    }

    #[test]
    fn connection_strings_register_their_passwords() {
        register_connection_secrets("postgres:/app:Reg1stered-1@h/db");
        register_connection_secrets("host=h password=Reg1stered-2");
        register_connection_secrets("mysql://u@h/db?password=Reg1stered%2D3");
        // A filter expression is not a connection string.
        register_connection_secrets("note = 'x:Not-a-secret@y'");
        assert_eq!(
            redact("a Reg1stered-1 b Reg1stered-2 c Reg1stered-3 d Not-a-secret"),
            "a *** b *** c *** d Not-a-secret"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b%2"), Some("a@b%2".to_string()));
        assert_eq!(percent_decode("%ff"), None);
    }
}
