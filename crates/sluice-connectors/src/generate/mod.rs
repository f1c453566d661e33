//! `[source] type = "generate"`: synthetic rows, for trying a pipeline, load tests and
//! streaming-mode tests without a server (as DataX's `streamreader` or SeaTunnel's
//! `FakeSource`).
//!
//! One table (`table`, default `generated`) with a primary key `id` counting from 0 and
//! columns computed from it, so the same `id` always has the same row and a target can be
//! checked with plain SQL (`count(*) = max(id) + 1` and no gaps):
//!
//! | column | type | value |
//! | --- | --- | --- |
//! | `id` | int64, primary key | 0, 1, 2 … |
//! | `name` | text | `"row-<id>"` |
//! | `amount` | float64 | `(id × 7 mod 1000) / 4` |
//! | `created_at` | timestamptz | 2026-01-01T00:00:00Z + `id` seconds |
//!
//! With `rows = N` it generates N rows (in batch mode, split into chunks of `chunk_rows`
//! read in parallel); without `rows` it generates until the job is stopped, which only a
//! streaming job (`mode = "streaming"`) may do. `rate` caps rows per second. Positions are
//! the next `id` to generate ([`GeneratePosition`]), so a resumed split goes on exactly after
//! its last commit.

mod config;
mod source;

pub use config::GenerateSourceConfig;
pub use source::{GeneratePosition, GenerateSplit};
