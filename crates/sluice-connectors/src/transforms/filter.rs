//! `filter`: keeps the rows where a condition is true (not false, not NULL).

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::compute::filter_record_batch;
use serde::Deserialize;
use sluice_core::schema::TablePattern;
use sluice_core::{BoundTransform, Error, Result, TableSchema, Transform};

use super::expr::{Binder, Compiled, Expr, parse, parse_error};
use super::{applies, check_width, identity};

/// Keeps only the rows for which a condition is true.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The condition, in the expression language of `docs/transforms.md`, e.g.
    /// `"amount >= 100 AND status IN ('paid', 'shipped') AND note IS NOT NULL"`.
    #[serde(rename = "where")]
    pub condition: String,
    /// Only tables matching one of these patterns, e.g. `["orders"]`; default all.
    #[serde(default)]
    pub tables: Option<Vec<TablePattern>>,
}

impl FilterConfig {
    pub(super) fn build(&self) -> Result<Arc<dyn Transform>> {
        let expr = parse(&self.condition)
            .map_err(|e| parse_error("filter transform: `where`", &self.condition, &e))?;
        Ok(Arc::new(Filter {
            config: self.clone(),
            expr,
        }))
    }
}

struct Filter {
    config: FilterConfig,
    expr: Expr,
}

impl Transform for Filter {
    fn name(&self) -> &str {
        "filter"
    }

    fn bind(&self, input: &TableSchema) -> Result<Box<dyn BoundTransform>> {
        if !applies(&self.config.tables, &input.id) {
            return Ok(identity(input));
        }
        let binder = Binder {
            src: &self.config.condition,
            schema: input,
            what: "filter transform",
        };
        let condition = binder.bind_condition(&self.expr)?;
        Ok(Box::new(BoundFilter {
            input: input.clone(),
            condition,
        }))
    }
}

struct BoundFilter {
    input: TableSchema,
    condition: Compiled,
}

impl BoundTransform for BoundFilter {
    fn output(&self) -> &TableSchema {
        &self.input
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        check_width(&batch, &self.input, "filter")?;
        let context = |e: Error| e.context(format!("filter transform: table {}", self.input.id));
        let mask = self.condition.eval_mask(&batch).map_err(context)?;
        if mask.null_count() == 0 && mask.true_count() == batch.num_rows() {
            return Ok(batch);
        }
        filter_record_batch(&batch, &mask).map_err(|e| context(e.into()))
    }
}
