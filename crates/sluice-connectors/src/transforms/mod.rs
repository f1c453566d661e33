//! Built-in transforms: `rename`, `select`, `drop`, `cast`, `filter` and `add`.
//!
//! Each `[[transform]]` section is one [`TransformConfig`]. [`TransformConfig::build`] is
//! pure validation (a filter expression with a syntax error fails here, before anything
//! runs). The built [`Transform`] is then bound once per table: binding checks that every
//! column it names exists and has a usable type, and computes the output schema, following
//! the primary key. A transform applies to every table of the job unless `tables` restricts
//! it; on other tables it binds to the identity. The user-facing reference, including the
//! expression language of `filter` and `add`, is `docs/transforms.md`.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use sluice_core::schema::TablePattern;
use sluice_core::{BoundTransform, Error, Result, TableId, TableSchema, Transform};

mod add;
mod cast;
mod columns;
mod expr;
mod filter;

pub use add::{AddConfig, ConstValue};
pub use cast::CastConfig;
pub use columns::{DropConfig, RenameConfig, SelectConfig};
pub use filter::FilterConfig;

/// A `[[transform]]` section, tagged by `type`.
#[derive(Debug, Clone)]
pub enum TransformConfig {
    /// `type = "rename"`: renames columns.
    Rename(RenameConfig),
    /// `type = "select"`: keeps only the listed columns, in that order.
    Select(SelectConfig),
    /// `type = "drop"`: removes columns.
    Drop(DropConfig),
    /// `type = "cast"`: changes column types.
    Cast(CastConfig),
    /// `type = "filter"`: keeps the rows where a condition is true.
    Filter(FilterConfig),
    /// `type = "add"`: adds a column, constant or computed.
    Add(AddConfig),
}

sluice_core::tagged_enum!(TransformConfig {
    "rename" => Rename,
    "select" => Select,
    "drop" => Drop,
    "cast" => Cast,
    "filter" => Filter,
    "add" => Add,
});

impl TransformConfig {
    /// Validates the section (no I/O, no schema) and builds the transform.
    pub fn build(&self) -> Result<Arc<dyn Transform>> {
        match self {
            TransformConfig::Rename(c) => c.build(),
            TransformConfig::Select(c) => c.build(),
            TransformConfig::Drop(c) => c.build(),
            TransformConfig::Cast(c) => c.build(),
            TransformConfig::Filter(c) => c.build(),
            TransformConfig::Add(c) => c.build(),
        }
    }
}

impl TransformConfig {
    /// The expression this section holds, as `(key, text)`: `where` of a filter, `expr` of an
    /// add.
    pub(crate) fn expression(&self) -> Option<(&'static str, &str)> {
        match self {
            TransformConfig::Filter(c) => Some(("where", &c.condition)),
            TransformConfig::Add(c) => c.expr.as_deref().map(|e| ("expr", e)),
            _ => None,
        }
    }
}

/// Checks the syntax (and the nesting limit) of an expression: `Err((bytes, message))` names
/// the offending bytes of `src`, for a job-file error that points at them.
pub(crate) fn check_expression(
    src: &str,
) -> std::result::Result<(), (std::ops::Range<usize>, String)> {
    expr::parse(src).map(|_| ()).map_err(|e| {
        let kind = if e.limit.is_some() {
            "expression too deep"
        } else {
            "syntax error"
        };
        (e.pos..e.pos + e.len.max(1), format!("{kind}: {}", e.what()))
    })
}

pub(crate) use expr::SYNTAX_HINT;

/// Whether a transform restricted to `tables` (None: all tables) applies to `id`.
fn applies(tables: &Option<Vec<TablePattern>>, id: &TableId) -> bool {
    tables
        .as_ref()
        .is_none_or(|ps| ps.iter().any(|p| p.matches(id)))
}

/// The bound form of a transform on a table it does not apply to.
struct Identity(TableSchema);

impl BoundTransform for Identity {
    fn output(&self) -> &TableSchema {
        &self.0
    }
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        Ok(batch)
    }
}

fn identity(input: &TableSchema) -> Box<dyn BoundTransform> {
    Box::new(Identity(input.clone()))
}

/// The index of `column` in `schema`, or a config error naming transform, table and column,
/// with "did you mean".
fn column_index(schema: &TableSchema, transform: &str, column: &str) -> Result<usize> {
    schema.arrow.index_of(column).map_err(|_| {
        let names: Vec<String> = schema
            .arrow
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut e = Error::config(format!(
            "{transform} transform: table {}: no column {column:?}",
            schema.id
        ));
        if let Some(h) = sluice_core::config::suggestion(column, &names, "columns") {
            e = e.with_hint(h);
        }
        e
    })
}

/// A batch of `schema` from `columns`, keeping the row count when there are no columns.
fn make_batch(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let opts = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &opts).map_err(Error::from)
}

/// Checks that a batch has the shape the transform was bound to; a mismatch is a bug
/// upstream, reported rather than panicking on a column index.
fn check_width(batch: &RecordBatch, input: &TableSchema, transform: &str) -> Result<()> {
    if batch.num_columns() == input.arrow.fields().len() {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "{transform} transform: table {}: batch has {} columns, the schema {}",
            input.id,
            batch.num_columns(),
            input.arrow.fields().len()
        )))
    }
}
