//! The vocabulary every other Sluice crate speaks.
//!
//! * [`types`]: the logical type system (every integer width, decimals beyond 38 digits,
//!   timestamps with and without time zone, uuid, json, arrays, enums …) and how each type is
//!   carried in Arrow.
//! * [`schema`]: table names as written in SQL ([`TableId`]) and table schemas
//!   ([`TableSchema`]: Arrow fields plus primary key).
//! * [`batch`]: what flows through a job — Arrow `RecordBatch`es tagged with the [`Position`]
//!   of the split they came from.
//! * [`source`], [`sink`], [`transform`]: the traits connectors implement; their docs are the
//!   contract the engine relies on.
//! * [`error`]: the one error type, with a [`ErrorKind`] that drives retries and exit codes
//!   and a hint that tells the operator what to do.
//! * [`config`]: job-file plumbing shared by every connector: `${env:…}` / `${file:…}`
//!   interpolation, error locations with "did you mean".
//! * [`redact`]: passwords and secrets kept out of everything printed.
//! * [`secret`]: URL and secret types whose Debug, Display and Serialize hide them.
//!
//! Data flows one way, `Source → Transform* → Sink`, and the engine (in `sluice-engine`)
//! is the only caller of these traits.

pub mod batch;
pub mod config;
pub mod error;
pub mod metrics;
pub mod naming;
pub mod redact;
pub mod schema;
pub mod secret;
pub mod sink;
pub mod source;
pub mod transform;
pub mod types;

pub use batch::{Batch, Persisted, Position, Split};
pub use error::{Error, ErrorKind, Result};
pub use schema::{TableId, TableSchema};
pub use sink::{
    Checkpoint, CheckpointEdit, GenerationRecord, JobContext, JobSlot, Sink, SinkLockGuard,
    SinkWriter, TablePlan, WriteMode,
};
pub use source::{BatchSender, Source, SourceBatch, SourceEvent, SourceTable};
pub use transform::{BoundTransform, Transform};
pub use types::LogicalType;
