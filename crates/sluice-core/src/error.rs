//! One error type for the whole data path.
//!
//! Every error has a [`ErrorKind`] (what class of thing went wrong: it decides whether the
//! engine retries and which exit status the CLI returns), a message that names the thing
//! involved (table, column, file, line), and optionally a hint that tells the operator what to
//! change. Context is added on the way up with [`Error::context`], so a message reads like
//! `table main.orders, split 3: column "price": cannot cast "abc" to decimal(10,2)`.

use std::fmt;

/// What class of failure an [`Error`] is. Drives retry decisions and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The job file or a command-line argument is wrong, including an input path or database
    /// file it names that does not exist. Exit status 2; never retried.
    Config,
    /// A server cannot be reached or the connection broke. Transient: may be retried.
    Connection,
    /// Credentials or privileges are wrong. Not retried.
    Auth,
    /// A record cannot be read, converted or written (bad CSV row, failed cast, constraint).
    Data,
    /// The target's shape does not fit the source (incompatible existing table, unsupported type).
    Schema,
    /// A local file or disk problem: unreadable file, read-only directory, full disk.
    Io,
    /// The job was asked to stop; not a failure. (A statement cancelled on the server
    /// although no stop was requested is reported as a failure by the engine.)
    Stopped,
    /// A server-side limit ended a statement: `statement_timeout`, `lock_timeout`,
    /// `max_statement_time`. Not retried: the same statement would meet the same limit.
    Timeout,
    /// A bug in Sluice.
    Internal,
}

impl ErrorKind {
    /// Whether an operation failing with this kind may succeed if tried again.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Connection)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Config => "config",
            ErrorKind::Connection => "connection",
            ErrorKind::Auth => "auth",
            ErrorKind::Data => "data",
            ErrorKind::Schema => "schema",
            ErrorKind::Io => "io",
            ErrorKind::Stopped => "stopped",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        };
        f.write_str(s)
    }
}

/// The error type of every Sluice library crate.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    /// The job-file option the error is about, relative to its section (`rate`,
    /// `columns."orders.note"`), so it can be located at file:line:col.
    key: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message naming what went wrong.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            key: None,
            source: None,
        }
    }
    /// [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// [`ErrorKind::Data`].
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }
    /// [`ErrorKind::Schema`].
    pub fn schema(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Schema, message)
    }
    /// [`ErrorKind::Io`].
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// [`ErrorKind::Stopped`]: the job was asked to stop.
    pub fn stopped() -> Self {
        Self::new(ErrorKind::Stopped, "stopped on request")
    }

    /// An I/O error about `path`, classified: not found, permission denied and a full disk
    /// each get their own hint.
    pub fn from_io(err: std::io::Error, what: impl fmt::Display) -> Self {
        use std::io::ErrorKind as K;
        let hint = match err.kind() {
            K::NotFound => Some("check the path; globs and directories are accepted too"),
            K::PermissionDenied => {
                Some("check the file permissions, or choose a directory Sluice may write to")
            }
            K::ReadOnlyFilesystem => Some("the file system is read-only; choose another path"),
            K::StorageFull | K::QuotaExceeded => {
                Some("the disk is full; free space or choose another path, then run again")
            }
            _ => None,
        };
        let mut e = Error::new(ErrorKind::Io, format!("{what}: {err}"));
        e.hint = hint.map(str::to_owned);
        e.source = Some(Box::new(err));
        e
    }

    /// Adds a hint that tells the operator what to do.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Names the job-file option the error is about, relative to its section (`"rate"`), so
    /// the job file's loader can point at its line and column.
    pub fn at(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Makes the option's name a path from the job file's top: `"tables"` of a source's
    /// error becomes `"source.tables"`. An error naming no option, or already a full path
    /// (`"sink.table_map"`), is unchanged.
    pub fn within(mut self, section: &str) -> Self {
        self.key = self.key.map(|k| key_within(section, &k));
        self
    }
    /// The option the error is about (see [`at`](Self::at)).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    /// Keeps the underlying error for `source()` chains.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    /// Prefixes the message with where it happened: `"table x: " + message`.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without the hint.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// What the operator should do, if known.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// `key` as a path from the job file's top: `("source", "tables")` → `"source.tables"`; a key
/// that already is one is returned as it is.
pub fn key_within(section: &str, key: &str) -> String {
    if ["job.", "source.", "sink.", "transform[", "errors."]
        .iter()
        .any(|s| key.starts_with(s))
    {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// Joins errors collected while validating (each on its own line) into one, keeping the first
/// one's kind and hint. `Ok` when there are none.
pub fn join_errors(errors: Vec<Error>) -> Result<()> {
    let mut it = errors.into_iter();
    let Some(first) = it.next() else {
        return Ok(());
    };
    let rest: Vec<String> = it.map(|e| e.to_string()).collect();
    if rest.is_empty() {
        return Err(first);
    }
    let mut e = Error::new(first.kind, format!("{first}\n{}", rest.join("\n")));
    e.hint = first.hint;
    e.key = first.key;
    Err(e)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        use arrow::error::ArrowError as A;
        let kind = match &e {
            A::CastError(_) | A::ParseError(_) | A::CsvError(_) | A::JsonError(_) => {
                ErrorKind::Data
            }
            A::SchemaError(_) | A::InvalidArgumentError(_) => ErrorKind::Schema,
            A::IoError(_, _) | A::ExternalError(_) => ErrorKind::Io,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_prefixes_and_hint_kept() {
        let e = Error::data("cannot cast \"x\" to int32")
            .with_hint("use a cast transform")
            .context("column a")
            .context("table t");
        assert_eq!(
            e.to_string(),
            "table t: column a: cannot cast \"x\" to int32"
        );
        assert_eq!(e.hint(), Some("use a cast transform"));
        assert_eq!(e.kind(), ErrorKind::Data);
    }

    #[test]
    fn io_errors_are_classified() {
        let e = Error::from_io(std::io::Error::from(std::io::ErrorKind::NotFound), "in.csv");
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.hint().unwrap().contains("path"));
    }
}
