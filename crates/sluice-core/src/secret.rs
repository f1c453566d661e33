//! Values that must never be shown: a connection URL that may hold a password, a token.
//!
//! Their `Debug`, `Display` and `Serialize` hide the secret part, so a config printed in a
//! log line, returned by the REST API or written into a manifest cannot leak it; the value
//! itself is reached only through `expose()`, at the one place that connects. (The shape-based
//! masking and the registered `${env:…}` values in [`crate::redact`] remain for what drivers
//! write in their own messages.)

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::redact::mask_passwords;

/// A connection URL (`postgres://user:password@host/db`). Shown with its password masked
/// (`postgres://user:***@host/db`), so it still says where it points.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }
    /// The URL with its password: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The URL with any password masked.
    pub fn masked(&self) -> String {
        mask_passwords(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretUrl").field(&self.masked()).finish()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        SecretUrl::new(s)
    }
}

/// An opaque secret (a password, a token): shown as `***` everywhere.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value: only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_never_shows_its_password() {
        let u: SecretUrl =
            serde_json::from_str(r#""postgres://app:s3cr%40t@db:5432/shop""#).unwrap();
        assert_eq!(u.expose(), "postgres://app:s3cr%40t@db:5432/shop");
        for shown in [
            format!("{u}"),
            format!("{u:?}"),
            format!("{u:#?}"),
            serde_json::to_string(&u).unwrap(),
        ] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("db:5432/shop"), "{shown}");
        }
        // Not only URLs: a libpq string's password is masked too.
        let u = SecretUrl::new("host=db password='a b c'");
        assert!(!format!("{u}").contains("a b c"));
    }

    #[test]
    fn a_secret_is_only_stars() {
        let s = Secret::new("tok-123456");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "tok-123456");
    }
}
