//! `add`: appends a column holding a constant or the value of an expression.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Deserializer};
use sluice_core::schema::TablePattern;
use sluice_core::{BoundTransform, Error, LogicalType, Result, TableSchema, Transform};

use super::cast::{can_convert, convert, text_scalar};
use super::expr::{Binder, Compiled, Expr, broadcast, parse, parse_error};
use super::{applies, check_width, identity, make_batch};

/// Appends a column: a constant (`value`) or an expression over the row (`expr`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddConfig {
    /// Name of the new column, e.g. `"source"`. It must not exist yet.
    pub column: String,
    /// A constant: a string, integer, float or boolean, e.g. `"legacy"` or `1`.
    #[serde(default)]
    pub value: Option<ConstValue>,
    /// An expression over the row (see `docs/transforms.md`), e.g. `"price * (1 - discount)"`.
    #[serde(default)]
    pub expr: Option<String>,
    /// Type of the new column, e.g. `"decimal(12,2)"`; default: the type of the value.
    #[serde(default, rename = "as")]
    pub as_type: Option<LogicalType>,
    /// Only tables matching one of these patterns, e.g. `["orders"]`; default all.
    #[serde(default)]
    pub tables: Option<Vec<TablePattern>>,
}

/// A constant from the job file.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl<'de> Deserialize<'de> for ConstValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde_json::Value as V;
        let v = V::deserialize(d)?;
        match v {
            V::String(s) => Ok(ConstValue::Text(s)),
            V::Bool(b) => Ok(ConstValue::Bool(b)),
            V::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(ConstValue::Int(i)),
                (None, Some(f)) => Ok(ConstValue::Float(f)),
                _ => Err(serde::de::Error::custom(format!(
                    "number {n} is out of range"
                ))),
            },
            other => Err(serde::de::Error::custom(format!(
                "`value` must be a string, integer, float or boolean, not {other}"
            ))),
        }
    }
}

impl ConstValue {
    fn array(&self) -> (ArrayRef, LogicalType) {
        match self {
            ConstValue::Text(s) => (text_scalar(s), LogicalType::Text),
            ConstValue::Int(i) => (Arc::new(Int64Array::from(vec![*i])), LogicalType::Int64),
            ConstValue::Float(f) => (Arc::new(Float64Array::from(vec![*f])), LogicalType::Float64),
            ConstValue::Bool(b) => (Arc::new(BooleanArray::from(vec![*b])), LogicalType::Bool),
        }
    }
}

enum What {
    /// One-element array of the column's type.
    Const(ArrayRef, LogicalType),
    Expr(Expr, String),
}

struct Add {
    config: AddConfig,
    what: What,
}

impl AddConfig {
    pub(super) fn build(&self) -> Result<Arc<dyn Transform>> {
        if self.column.is_empty() {
            return Err(Error::config("add transform: `column` is empty"));
        }
        let what = match (&self.value, &self.expr) {
            (Some(v), None) => {
                let (a, logical) = v.array();
                match &self.as_type {
                    Some(t) => {
                        let a = convert(&a, &logical, t).map_err(|f| {
                            Error::config(format!(
                                "add transform: column {:?}: `value`: {}",
                                self.column,
                                f.into_error(t)
                            ))
                        })?;
                        What::Const(a, t.clone())
                    }
                    None => What::Const(a, logical),
                }
            }
            (None, Some(src)) => {
                let e = parse(src).map_err(|e| parse_error("add transform: `expr`", src, &e))?;
                What::Expr(e, src.clone())
            }
            (v, _) => {
                let why = if v.is_some() {
                    "both `value` and `expr`"
                } else {
                    "neither `value` nor `expr`"
                };
                return Err(Error::config(format!(
                    "add transform: column {:?} has {why}",
                    self.column
                ))
                .with_hint(
                    "give exactly one: value = \"constant\" or expr = \"price * quantity\"",
                ));
            }
        };
        Ok(Arc::new(Add {
            config: self.clone(),
            what,
        }))
    }
}

impl Transform for Add {
    fn name(&self) -> &str {
        "add"
    }

    fn bind(&self, input: &TableSchema) -> Result<Box<dyn BoundTransform>> {
        if !applies(&self.config.tables, &input.id) {
            return Ok(identity(input));
        }
        let name = &self.config.column;
        if input.arrow.index_of(name).is_ok() {
            return Err(Error::config(format!(
                "add transform: table {}: column {name:?} already exists",
                input.id
            ))
            .with_hint("choose another name, or drop or rename the existing column first"));
        }
        let (field, how) = match &self.what {
            What::Const(a, logical) => (logical.field(name, false), How::Const(a.clone())),
            What::Expr(e, src) => {
                let binder = Binder {
                    src,
                    schema: input,
                    what: "add transform",
                };
                let compiled = binder.bind(e)?;
                let from = match &compiled.data_type {
                    DataType::Null => LogicalType::Text,
                    dt => LogicalType::from_arrow(dt).map_err(|x| {
                        x.context(format!(
                            "add transform: table {}, column {name:?}",
                            input.id
                        ))
                    })?,
                };
                let to = self.config.as_type.clone().unwrap_or_else(|| from.clone());
                let dt = if compiled.data_type == DataType::Null {
                    &DataType::Utf8
                } else {
                    &compiled.data_type
                };
                if !can_convert(dt, &from, &to) && compiled.data_type != DataType::Null {
                    return Err(Error::config(format!(
                        "add transform: table {}, column {name:?}: cannot cast {from} to {to}",
                        input.id
                    )));
                }
                (to.field(name, true), How::Expr { compiled, from, to })
            }
        };
        let mut fields: Vec<Field> = input
            .arrow
            .fields()
            .iter()
            .map(|f| Field::clone(f))
            .collect();
        fields.push(field);
        let arrow = Arc::new(Schema::new_with_metadata(
            fields,
            input.arrow.metadata().clone(),
        ));
        let output = TableSchema {
            id: input.id.clone(),
            arrow,
            primary_key: input.primary_key.clone(),
        };
        Ok(Box::new(BoundAdd {
            input: input.clone(),
            output,
            how,
        }))
    }
}

enum How {
    Const(ArrayRef),
    Expr {
        compiled: Compiled,
        from: LogicalType,
        to: LogicalType,
    },
}

struct BoundAdd {
    input: TableSchema,
    output: TableSchema,
    how: How,
}

impl BoundTransform for BoundAdd {
    fn output(&self) -> &TableSchema {
        &self.output
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        check_width(&batch, &self.input, "add")?;
        let n = batch.num_rows();
        let column = self
            .output
            .arrow
            .fields()
            .last()
            .map(|f| f.name().as_str())
            .unwrap_or("");
        let context = |e: Error| {
            e.context(format!(
                "add transform: table {}, column {column:?}",
                self.input.id
            ))
        };
        let values = match &self.how {
            How::Const(a) => broadcast(a, n).map_err(context)?,
            How::Expr { compiled, from, to } => {
                let v = compiled.eval(&batch).map_err(context)?;
                match v.data_type() {
                    DataType::Null => arrow::array::new_null_array(&to.arrow_type(), n),
                    _ => convert(&v, from, to).map_err(|f| context(f.into_error(to)))?,
                }
            }
        };
        let mut columns = batch.columns().to_vec();
        columns.push(values);
        make_batch(&self.output.arrow, columns, n).map_err(context)
    }
}
