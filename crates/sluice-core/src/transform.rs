//! The [`Transform`] trait: per-row changes between source and sink.
//!
//! A transform is configured once per job and *bound* once per table
//! ([`Transform::bind`]): binding checks the columns it names exist and have usable types and
//! computes the output schema, so a typo in a column name fails before any data moves. The
//! bound form ([`BoundTransform::apply`]) then runs on every batch of that table, in order,
//! on the writer's task. It must be pure: the same batch in, the same batch out.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::schema::TableSchema;

/// A configured transform, not yet bound to a table.
pub trait Transform: Send + Sync {
    /// A short name for messages (`rename`, `cast`, …).
    fn name(&self) -> &str;

    /// Binds to one table's schema: validates and returns the per-batch function.
    /// The input's primary key is followed through renames and dropped when a key column is
    /// removed; the returned schema says so.
    fn bind(&self, input: &TableSchema) -> Result<Box<dyn BoundTransform>>;
}

/// A transform bound to one table.
pub trait BoundTransform: Send + Sync {
    /// The schema of the batches this produces (with primary key).
    fn output(&self) -> &TableSchema;

    /// Transforms one batch. Errors name the column and the offending value.
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch>;
}

/// The Arrow schema of a bound transform's output.
pub fn output_arrow(t: &dyn BoundTransform) -> SchemaRef {
    t.output().arrow.clone()
}
