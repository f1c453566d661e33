//! `rename`, `select` and `drop`: transforms that only move columns around. Applying them
//! shares the input arrays (no data is copied).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use serde::Deserialize;
use sluice_core::batch::OP_COLUMN;
use sluice_core::schema::TablePattern;
use sluice_core::{BoundTransform, Error, Result, TableSchema, Transform};

use super::{applies, check_width, column_index, identity, make_batch};

/// Renames columns. The primary key follows the new names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Old name → new name, e.g. `{ l_comment = "comment", "Order Id" = "order_id" }`.
    pub columns: BTreeMap<String, String>,
    /// Only tables matching one of these patterns, e.g. `["orders", "main.*"]`; default all.
    #[serde(default)]
    pub tables: Option<Vec<TablePattern>>,
}

/// Keeps only the listed columns, in the listed order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// Columns to keep, in output order, e.g. `["id", "amount"]`.
    pub columns: Vec<String>,
    /// Only tables matching one of these patterns, e.g. `["orders"]`; default all.
    #[serde(default)]
    pub tables: Option<Vec<TablePattern>>,
}

/// Removes columns. Removing a primary-key column leaves the table without a key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    /// Columns to remove, e.g. `["internal_note"]`.
    pub columns: Vec<String>,
    /// Only tables matching one of these patterns, e.g. `["orders"]`; default all.
    #[serde(default)]
    pub tables: Option<Vec<TablePattern>>,
}

fn no_duplicates(transform: &str, columns: &[String]) -> Result<()> {
    let mut seen = HashSet::new();
    for c in columns {
        if !seen.insert(c.as_str()) {
            return Err(Error::config(format!(
                "{transform} transform: column {c:?} is listed twice"
            )));
        }
    }
    Ok(())
}

impl RenameConfig {
    pub(super) fn build(&self) -> Result<Arc<dyn Transform>> {
        if self.columns.is_empty() {
            return Err(Error::config("rename transform: `columns` is empty")
                .with_hint("write columns = { old_name = \"new_name\" }"));
        }
        let mut targets = HashSet::new();
        for (from, to) in &self.columns {
            if to.is_empty() {
                return Err(Error::config(format!(
                    "rename transform: the new name of column {from:?} is empty"
                )));
            }
            if !targets.insert(to.as_str()) {
                return Err(Error::config(format!(
                    "rename transform: two columns are renamed to {to:?}"
                )));
            }
        }
        Ok(Arc::new(self.clone()))
    }
}

impl Transform for RenameConfig {
    fn name(&self) -> &str {
        "rename"
    }

    fn bind(&self, input: &TableSchema) -> Result<Box<dyn BoundTransform>> {
        if !applies(&self.tables, &input.id) {
            return Ok(identity(input));
        }
        for (from, to) in &self.columns {
            column_index(input, "rename", from)?;
            if from == OP_COLUMN || to == OP_COLUMN {
                return Err(op_column_kept(input, "rename"));
            }
        }
        let new_name = |n: &str| self.columns.get(n).map_or(n, String::as_str).to_string();
        let mut seen = HashSet::new();
        let mut fields = Vec::with_capacity(input.arrow.fields().len());
        for f in input.arrow.fields() {
            let name = new_name(f.name());
            if !seen.insert(name.clone()) {
                return Err(Error::config(format!(
                    "rename transform: table {}: renaming would give two columns named {name:?}",
                    input.id
                ))
                .with_hint("rename or drop the existing column first"));
            }
            fields.push(Field::clone(f).with_name(name));
        }
        let arrow = Arc::new(Schema::new_with_metadata(
            fields,
            input.arrow.metadata().clone(),
        ));
        let primary_key = input.primary_key.iter().map(|k| new_name(k)).collect();
        let output = TableSchema {
            id: input.id.clone(),
            arrow,
            primary_key,
        };
        Ok(Box::new(Reshape {
            name: "rename",
            input: input.clone(),
            output,
            indices: None,
        }))
    }
}

impl SelectConfig {
    pub(super) fn build(&self) -> Result<Arc<dyn Transform>> {
        if self.columns.is_empty() {
            return Err(Error::config("select transform: `columns` is empty")
                .with_hint("list the columns to keep, e.g. columns = [\"id\", \"amount\"]"));
        }
        no_duplicates("select", &self.columns)?;
        Ok(Arc::new(self.clone()))
    }
}

impl Transform for SelectConfig {
    fn name(&self) -> &str {
        "select"
    }

    fn bind(&self, input: &TableSchema) -> Result<Box<dyn BoundTransform>> {
        if !applies(&self.tables, &input.id) {
            return Ok(identity(input));
        }
        let mut indices: Vec<usize> = self
            .columns
            .iter()
            .map(|c| column_index(input, "select", c))
            .collect::<Result<_>>()?;
        // Change events keep their operation: a delete must not become an insert.
        if let Ok(op) = input.arrow.index_of(OP_COLUMN)
            && !indices.contains(&op)
        {
            indices.push(op);
        }
        Ok(Box::new(Reshape::project("select", input, indices)?))
    }
}

impl DropConfig {
    pub(super) fn build(&self) -> Result<Arc<dyn Transform>> {
        if self.columns.is_empty() {
            return Err(Error::config("drop transform: `columns` is empty")
                .with_hint("list the columns to remove, e.g. columns = [\"internal_note\"]"));
        }
        no_duplicates("drop", &self.columns)?;
        Ok(Arc::new(self.clone()))
    }
}

impl Transform for DropConfig {
    fn name(&self) -> &str {
        "drop"
    }

    fn bind(&self, input: &TableSchema) -> Result<Box<dyn BoundTransform>> {
        if !applies(&self.tables, &input.id) {
            return Ok(identity(input));
        }
        let mut dropped = HashSet::new();
        for c in &self.columns {
            if c == OP_COLUMN {
                return Err(op_column_kept(input, "drop"));
            }
            dropped.insert(column_index(input, "drop", c)?);
        }
        let n = input.arrow.fields().len();
        if dropped.len() == n {
            return Err(Error::config(format!(
                "drop transform: table {}: this would drop every column",
                input.id
            ))
            .with_hint("keep at least one column, or restrict the transform with `tables`"));
        }
        let indices = (0..n).filter(|i| !dropped.contains(i)).collect();
        Ok(Box::new(Reshape::project("drop", input, indices)?))
    }
}

/// The operation column of change events is the engine's, not the user's.
fn op_column_kept(input: &TableSchema, transform: &str) -> Error {
    Error::config(format!(
        "{transform} transform: table {}: {OP_COLUMN} carries each change's operation \
         (insert, update, delete) and cannot be dropped or renamed",
        input.id
    ))
    .with_hint("select, drop and rename the table's own columns; the operation passes through")
}

/// Renames and/or projects columns without touching the data.
struct Reshape {
    name: &'static str,
    input: TableSchema,
    output: TableSchema,
    /// Input column of each output column; None keeps all columns in order.
    indices: Option<Vec<usize>>,
}

impl Reshape {
    /// Keeps `indices` of `input`. The primary key survives only if all its columns do.
    fn project(name: &'static str, input: &TableSchema, indices: Vec<usize>) -> Result<Self> {
        let arrow = Arc::new(input.arrow.project(&indices)?);
        let kept = |k: &String| arrow.index_of(k).is_ok();
        let primary_key = if input.primary_key.iter().all(kept) {
            input.primary_key.clone()
        } else {
            tracing::debug!(table = %input.id, transform = name, "Primary key column removed; the table has no key.");
            Vec::new()
        };
        let output = TableSchema {
            id: input.id.clone(),
            arrow,
            primary_key,
        };
        Ok(Reshape {
            name,
            input: input.clone(),
            output,
            indices: Some(indices),
        })
    }
}

impl BoundTransform for Reshape {
    fn output(&self) -> &TableSchema {
        &self.output
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        check_width(&batch, &self.input, self.name)?;
        let columns = match &self.indices {
            Some(ix) => ix.iter().map(|&i| batch.column(i).clone()).collect(),
            None => batch.columns().to_vec(),
        };
        make_batch(&self.output.arrow, columns, batch.num_rows())
            .map_err(|e| e.context(format!("{} transform: table {}", self.name, self.input.id)))
    }
}
