//! Tokens and roles.
//!
//! A token is 32 random bytes, shown once as `slu_` + 64 hex digits by `sluice token create`
//! and stored only as its SHA-256 (a token is random, so a fast hash is enough: there is no
//! password to guess). A request carries it as `Authorization: Bearer TOKEN`, or as the
//! password of HTTP Basic (Kafka Connect clients speak Basic only; the user name is ignored).
//!
//! Roles grow: a **viewer** reads; an **operator** also creates jobs, edits their configs,
//! pauses, resumes, stops, restarts and validates; an **admin** also deletes jobs, edits
//! offsets and log levels.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use sha2::{Digest, Sha256};
use sluice_state::StateStore;

use crate::error::ApiError;

/// A caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling: a token's name and role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The audit log's actor.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// A new token (to show once) and its hash (to store).
pub fn new_token() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the system: {e}"))?;
    let token = format!("slu_{}", hex(&bytes));
    let hash = hash(&token);
    Ok((token, hash))
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The role a request needs, by method and path (`None`: open to anyone).
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if (method == Method::GET || method == Method::HEAD)
        && (path == "/" || path == "/health" || path == "/openapi.json")
    {
        return None;
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let role = match (method.clone(), segs.as_slice()) {
        (Method::GET | Method::HEAD, _) => Role::Viewer,
        (Method::DELETE, ["connectors", _]) => Role::Admin,
        (_, ["connectors", _, "offsets"]) => Role::Admin,
        (_, ["admin", ..]) => Role::Admin,
        _ => Role::Operator,
    };
    Some(role)
}

/// How long a looked-up token is trusted before it is looked up again (a revoked token is
/// refused at most this long after).
const CACHE_FOR: Duration = Duration::from_secs(5);

/// Checks tokens against the store, with a short cache.
pub struct Authenticator {
    cache: Mutex<HashMap<String, (Option<Caller>, Instant)>>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator {
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Authenticator {
    /// The caller `headers` prove, or 401.
    pub async fn caller(
        &self,
        store: &dyn StateStore,
        headers: &HeaderMap,
    ) -> Result<Caller, ApiError> {
        let Some(token) = presented(headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs a token: send `Authorization: Bearer TOKEN` (or HTTP Basic \
                 with the token as the password); `sluice token create --role viewer` makes one",
            ));
        };
        let h = hash(&token);
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&h)
                .filter(|(_, at)| at.elapsed() < CACHE_FOR)
                .map(|(c, _)| c.clone())
        };
        let caller = match cached {
            Some(c) => c,
            None => {
                let found = store.token_by_hash(&h).await.map_err(ApiError::from)?;
                let c = found
                    .and_then(|t| Role::parse(&t.role).map(|role| Caller { name: t.name, role }));
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(h, (c.clone(), Instant::now()));
                c
            }
        };
        caller.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the token is not known to this server (mistyped, or revoked)",
            )
        })
    }
}

/// The token a request presents: Bearer, or the password of Basic.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string()).filter(|t| !t.is_empty());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest)?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_string()).filter(|t| !t.is_empty());
    }
    None
}

/// Standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("slu_") && a.len() == 68);
        assert_eq!(hash(&a), ha);
        assert!(!ha.contains(&a[4..]));
    }

    #[test]
    fn basic_auth_carries_the_token_as_password() {
        let mut h = HeaderMap::new();
        // "kc:slu_abc" in base64.
        h.insert("authorization", "Basic a2M6c2x1X2FiYw==".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("slu_abc"));
        h.insert("authorization", "Bearer slu_xyz".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("slu_xyz"));
        h.insert("authorization", "Digest foo".parse().unwrap());
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn roles_by_route() {
        assert_eq!(required_role(&Method::GET, "/"), None);
        assert_eq!(required_role(&Method::GET, "/health"), None);
        assert_eq!(
            required_role(&Method::GET, "/connectors"),
            Some(Role::Viewer)
        );
        assert_eq!(required_role(&Method::GET, "/metrics"), Some(Role::Viewer));
        assert_eq!(
            required_role(&Method::POST, "/connectors"),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role(&Method::PUT, "/connectors/a/pause"),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role(&Method::DELETE, "/connectors/a"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::DELETE, "/connectors/a/offsets"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::PATCH, "/connectors/a/offsets"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::GET, "/connectors/a/offsets"),
            Some(Role::Viewer)
        );
        assert_eq!(
            required_role(&Method::PUT, "/admin/loggers/root"),
            Some(Role::Admin)
        );
    }
}
