//! The expression language of `filter` and `add`: parsing ([`parse`]), binding to a table
//! ([`Compiled::bind`]: names resolved, literals converted to the types they meet, type
//! errors found), and vectorised evaluation with Arrow kernels ([`Compiled::eval`]).
//!
//! Evaluation is three-valued: a comparison with NULL is NULL, `AND`/`OR` follow Kleene
//! logic. Literals are converted once, at bind time; a column is cast per batch only when it
//! meets a wider type (an `int32` compared with `3000000000`).
//!
//! Binding and evaluation recurse over the tree, whose depth the parser bounds
//! ([`parse::MAX_DEPTH`]); `AND`/`OR` chains and `IN` lists are evaluated as flat lists, so
//! their length costs no stack.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Datum, RecordBatch, UInt32Array, new_null_array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::kernels::{boolean, cmp, comparison, numeric};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use sluice_core::{Error, LogicalType, Result, TableSchema};

use super::cast::{cast_lenient, convert, text_scalar};

mod parse;

pub use parse::{ArithOp, CmpOp, Expr, ExprKind, Literal, ParseError, Span, parse};

/// What a syntax error's hint says.
pub const SYNTAX_HINT: &str = "the expression language is described in docs/transforms.md";

/// Turns a syntax error into a config error quoting the expression, with a caret under the
/// spot. The expression and the caret are lines of their own, below the first line of the
/// message, so they line up whatever prefix the first line is printed after (`error: `).
pub fn parse_error(what: &str, src: &str, e: &ParseError) -> Error {
    let pos = e.pos.min(src.len());
    let pad = " ".repeat(src[..pos].chars().count());
    let width = src[pos..(pos + e.len).min(src.len())]
        .chars()
        .count()
        .max(1);
    let kind = if e.limit.is_some() {
        "expression too deep"
    } else {
        "syntax error"
    };
    Error::config(format!(
        "{what}: {kind} at byte {}: {}\n    {src}\n    {pad}{}",
        e.pos,
        e.what(),
        "^".repeat(width)
    ))
    .with_hint(SYNTAX_HINT)
}

/// An expression bound to one table schema, ready to evaluate on its batches.
#[derive(Debug, Clone)]
pub struct Compiled {
    node: Node,
    /// Type of the result.
    pub data_type: DataType,
}

#[derive(Debug, Clone)]
enum Node {
    Column(usize),
    /// A one-element array, treated as a scalar.
    Const(ArrayRef),
    Cast(Box<Node>, DataType),
    Neg(Box<Node>, Arc<str>),
    Arith(ArithOp, Box<Node>, Box<Node>, Arc<str>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    Like(Box<Node>, Box<Node>, bool),
    /// All true (Kleene), evaluated as a flat list.
    And(Vec<Node>),
    /// One true (Kleene); also what an `IN` list becomes.
    Or(Vec<Node>),
    Not(Box<Node>),
    IsNull(Box<Node>, bool),
}

/// A bound operand: typed, or a literal still waiting to learn its type from the other side.
enum Bound {
    Typed(Typed),
    Lit(Literal, Span),
}

struct Typed {
    node: Node,
    dt: DataType,
    logical: LogicalType,
    span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Bool,
    Int,
    Float,
    Decimal,
    Text,
    Date,
    Time,
    Timestamp,
    Uuid,
    Null,
    Other,
}

fn class(dt: &DataType, logical: &LogicalType) -> Class {
    use DataType as D;
    match dt {
        D::Boolean => Class::Bool,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            Class::Int
        }
        D::Float16 | D::Float32 | D::Float64 => Class::Float,
        D::Decimal128(..) | D::Decimal256(..) => Class::Decimal,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => match logical {
            LogicalType::Decimal { .. } => Class::Other,
            _ => Class::Text,
        },
        D::Date32 | D::Date64 => Class::Date,
        D::Time32(_) | D::Time64(_) => Class::Time,
        D::Timestamp(..) => Class::Timestamp,
        D::FixedSizeBinary(16) if *logical == LogicalType::Uuid => Class::Uuid,
        D::Null => Class::Null,
        _ => Class::Other,
    }
}

fn is_numeric(c: Class) -> bool {
    matches!(c, Class::Int | Class::Float | Class::Decimal)
}

/// Integer digits and scale of an exact numeric type; None for floats.
fn digits(dt: &DataType) -> Option<(i16, i16)> {
    use DataType as D;
    Some(match dt {
        D::Int8 | D::UInt8 => (3, 0),
        D::Int16 | D::UInt16 => (5, 0),
        D::Int32 | D::UInt32 => (10, 0),
        D::Int64 => (19, 0),
        D::UInt64 => (20, 0),
        D::Decimal128(p, s) | D::Decimal256(p, s) => (*p as i16 - *s as i16, *s as i16),
        _ => return None,
    })
}

/// The narrowest type both numeric types convert to without loss (floats excepted).
fn numeric_common(a: &DataType, b: &DataType) -> DataType {
    use DataType as D;
    if a == b {
        return a.clone();
    }
    let signed = |d: &DataType| matches!(d, D::Int8 | D::Int16 | D::Int32 | D::Int64);
    let unsigned = |d: &DataType| matches!(d, D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64);
    let width = |d: &DataType| d.primitive_width().unwrap_or(8);
    if (signed(a) && signed(b)) || (unsigned(a) && unsigned(b)) {
        return if width(a) >= width(b) {
            a.clone()
        } else {
            b.clone()
        };
    }
    if (signed(a) && unsigned(b)) || (unsigned(a) && signed(b)) {
        let (s, u) = if signed(a) { (a, b) } else { (b, a) };
        if width(s) > width(u) {
            return s.clone();
        }
        return match width(u) {
            1 => D::Int16,
            2 => D::Int32,
            4 => D::Int64,
            _ => D::Decimal128(20, 0),
        };
    }
    match (digits(a), digits(b)) {
        (Some((i1, s1)), Some((i2, s2))) => {
            let s = s1.max(s2);
            let p = i1.max(i2) + s;
            if p <= 38 {
                D::Decimal128(p.max(1) as u8, s as i8)
            } else if p <= 76 {
                D::Decimal256(p as u8, s as i8)
            } else {
                D::Float64
            }
        }
        _ => D::Float64,
    }
}

/// The decimal an exact numeric operand of arithmetic is brought to.
fn arith_decimal(dt: &DataType) -> Option<DataType> {
    match dt {
        DataType::Decimal128(..) | DataType::Decimal256(..) => Some(dt.clone()),
        _ => digits(dt).map(|(i, _)| DataType::Decimal128(i as u8, 0)),
    }
}

/// The type a literal has when nothing around it gives one.
fn literal_default(lit: &Literal) -> DataType {
    match lit {
        Literal::Integer(t) if t.parse::<i64>().is_ok() => DataType::Int64,
        Literal::Integer(t) | Literal::Decimal(t) => {
            let (p, s) = literal_digits(t);
            if p <= 38 {
                DataType::Decimal128(p as u8, s as i8)
            } else {
                DataType::Float64
            }
        }
        Literal::Float(_) => DataType::Float64,
        Literal::Str(_) => DataType::Utf8,
        Literal::Bool(_) => DataType::Boolean,
        Literal::Null => DataType::Null,
    }
}

/// Precision and scale of a number literal's text.
fn literal_digits(t: &str) -> (usize, usize) {
    let t = t.trim_start_matches(['-', '+']);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let int = int.trim_start_matches('0');
    ((int.len() + frac.len()).max(1), frac.len())
}

fn safe_cast(a: &dyn Array, dt: &DataType) -> std::result::Result<ArrayRef, ArrowError> {
    cast_lenient(a, dt, true)
}

/// Binds expressions to one table.
pub struct Binder<'a> {
    pub src: &'a str,
    pub schema: &'a TableSchema,
    /// `filter transform` or `add transform`, for messages.
    pub what: &'a str,
}

impl Binder<'_> {
    fn part(&self, s: Span) -> &str {
        self.src.get(s.start..s.end).unwrap_or(self.src)
    }

    fn err(&self, s: Span, msg: impl std::fmt::Display) -> Error {
        Error::config(format!(
            "{}: table {}: in `{}`: {msg}",
            self.what,
            self.schema.id,
            self.part(s)
        ))
    }

    /// Binds `e`; the result may have any type.
    pub fn bind(&self, e: &Expr) -> Result<Compiled> {
        let t = self.typed(self.bind_expr(e)?, None)?;
        Ok(Compiled {
            node: t.node,
            data_type: t.dt,
        })
    }

    /// Binds `e`, which must be a condition.
    pub fn bind_condition(&self, e: &Expr) -> Result<Compiled> {
        let node = self.condition(e)?;
        Ok(Compiled {
            node,
            data_type: DataType::Boolean,
        })
    }

    fn condition(&self, e: &Expr) -> Result<Node> {
        let t = self.typed(
            self.bind_expr(e)?,
            Some((&DataType::Boolean, &LogicalType::Bool)),
        )?;
        match t.dt {
            DataType::Boolean => Ok(t.node),
            DataType::Null => Ok(Node::Cast(Box::new(t.node), DataType::Boolean)),
            _ => Err(self.err(
                e.span,
                format!(
                    "expected a condition (true or false), found a value of type {}",
                    t.logical
                ),
            )),
        }
    }

    fn bind_expr(&self, e: &Expr) -> Result<Bound> {
        use ExprKind as K;
        let typed = |node: Node, dt: DataType| {
            let logical = LogicalType::from_arrow(&dt).unwrap_or(LogicalType::Text);
            Ok(Bound::Typed(Typed {
                node,
                dt,
                logical,
                span: e.span,
            }))
        };
        match &e.kind {
            K::Literal(l) => Ok(Bound::Lit(l.clone(), e.span)),
            K::Column(name) => {
                let Ok(i) = self.schema.arrow.index_of(name) else {
                    let names: Vec<String> = self
                        .schema
                        .arrow
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    let mut err = self.err(e.span, format!("no column {name:?}"));
                    if let Some(h) = sluice_core::config::suggestion(name, &names, "columns") {
                        err = err.with_hint(h);
                    }
                    return Err(err);
                };
                let field = self.schema.arrow.field(i);
                let logical = LogicalType::of_field(field).map_err(|x| self.err(e.span, x))?;
                let (node, dt) = match field.data_type() {
                    DataType::Dictionary(_, v) => (
                        Node::Cast(Box::new(Node::Column(i)), (**v).clone()),
                        (**v).clone(),
                    ),
                    dt => (Node::Column(i), dt.clone()),
                };
                Ok(Bound::Typed(Typed {
                    node,
                    dt,
                    logical,
                    span: e.span,
                }))
            }
            K::Neg(x) => {
                let t = self.typed(self.bind_expr(x)?, None)?;
                if !is_numeric(class(&t.dt, &t.logical)) {
                    return Err(self.err(e.span, format!("cannot negate a {}", t.logical)));
                }
                typed(Node::Neg(Box::new(t.node), self.part(e.span).into()), t.dt)
            }
            K::Arith(op, l, r) => {
                let (l, r) = self.pair(self.bind_expr(l)?, self.bind_expr(r)?, e.span, true)?;
                let node = Node::Arith(
                    *op,
                    Box::new(l.node),
                    Box::new(r.node),
                    self.part(e.span).into(),
                );
                // The result type (decimal precision rules included) is what the kernel
                // produces; ask it, on no rows.
                let empty = RecordBatch::new_empty(self.schema.arrow.clone());
                let dt = eval(&node, &empty)
                    .map(|v| v.array.data_type().clone())
                    .map_err(|x| self.err(e.span, x))?;
                typed(node, dt)
            }
            K::Cmp(op, l, r) => {
                let (l, r) = self.pair(self.bind_expr(l)?, self.bind_expr(r)?, e.span, false)?;
                typed(
                    Node::Cmp(*op, Box::new(l.node), Box::new(r.node)),
                    DataType::Boolean,
                )
            }
            K::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let (x1, lo) =
                    self.pair(self.bind_expr(expr)?, self.bind_expr(low)?, e.span, false)?;
                let (x2, hi) =
                    self.pair(self.bind_expr(expr)?, self.bind_expr(high)?, e.span, false)?;
                let ge = Node::Cmp(CmpOp::GtEq, Box::new(x1.node), Box::new(lo.node));
                let le = Node::Cmp(CmpOp::LtEq, Box::new(x2.node), Box::new(hi.node));
                let both = Node::And(vec![ge, le]);
                typed(
                    if *negated {
                        Node::Not(Box::new(both))
                    } else {
                        both
                    },
                    DataType::Boolean,
                )
            }
            K::InList {
                expr,
                list,
                negated,
            } => {
                if list.is_empty() {
                    return Err(self.err(e.span, "empty IN list"));
                }
                let mut eqs = Vec::with_capacity(list.len());
                for item in list {
                    let (x, v) = self.pair(
                        self.bind_expr(expr)?,
                        self.bind_expr(item)?,
                        item.span,
                        false,
                    )?;
                    eqs.push(Node::Cmp(CmpOp::Eq, Box::new(x.node), Box::new(v.node)));
                }
                let any = Node::Or(eqs);
                typed(
                    if *negated {
                        Node::Not(Box::new(any))
                    } else {
                        any
                    },
                    DataType::Boolean,
                )
            }
            K::Like {
                expr,
                pattern,
                negated,
            } => {
                let x = self.typed(
                    self.bind_expr(expr)?,
                    Some((&DataType::Utf8, &LogicalType::Text)),
                )?;
                if class(&x.dt, &x.logical) != Class::Text {
                    return Err(self.err(
                        expr.span,
                        format!("LIKE needs text, found a value of type {}", x.logical),
                    ));
                }
                let p = self.typed(self.bind_expr(pattern)?, Some((&x.dt, &x.logical)))?;
                if class(&p.dt, &p.logical) != Class::Text {
                    return Err(self.err(
                        pattern.span,
                        format!("a LIKE pattern must be text, found {}", p.logical),
                    ));
                }
                let pn = if p.dt == x.dt {
                    p.node
                } else {
                    Node::Cast(Box::new(p.node), x.dt.clone())
                };
                typed(
                    Node::Like(Box::new(x.node), Box::new(pn), *negated),
                    DataType::Boolean,
                )
            }
            K::IsNull { expr, negated } => {
                let x = self.typed(self.bind_expr(expr)?, None)?;
                typed(Node::IsNull(Box::new(x.node), *negated), DataType::Boolean)
            }
            K::Not(x) => typed(Node::Not(Box::new(self.condition(x)?)), DataType::Boolean),
            K::And(xs) => typed(
                Node::And(
                    xs.iter()
                        .map(|x| self.condition(x))
                        .collect::<Result<_>>()?,
                ),
                DataType::Boolean,
            ),
            K::Or(xs) => typed(
                Node::Or(
                    xs.iter()
                        .map(|x| self.condition(x))
                        .collect::<Result<_>>()?,
                ),
                DataType::Boolean,
            ),
        }
    }

    /// Gives a literal its type: the `want`ed one, else its default.
    fn typed(&self, b: Bound, want: Option<(&DataType, &LogicalType)>) -> Result<Typed> {
        match b {
            Bound::Typed(t) => Ok(t),
            Bound::Lit(lit, span) => match want {
                Some((dt, logical)) => self.literal_as(&lit, span, dt, logical),
                None => {
                    let dt = literal_default(&lit);
                    let logical = LogicalType::from_arrow(&dt).unwrap_or(LogicalType::Text);
                    self.literal_as(&lit, span, &dt, &logical)
                }
            },
        }
    }

    /// The literal converted to exactly `dt`, or a type error.
    fn literal_as(
        &self,
        lit: &Literal,
        span: Span,
        dt: &DataType,
        logical: &LogicalType,
    ) -> Result<Typed> {
        let c = class(dt, logical);
        let mismatch = || {
            let what = match lit {
                Literal::Str(_) => "text",
                Literal::Bool(_) => "a boolean",
                _ => "a number",
            };
            self.err(
                span,
                format!("cannot use {what} where a {logical} is expected"),
            )
        };
        let array: ArrayRef = match (lit, c) {
            (Literal::Null, _) => new_null_array(dt, 1),
            (Literal::Bool(b), Class::Bool) => Arc::new(BooleanArray::from(vec![*b])),
            (Literal::Integer(t) | Literal::Decimal(t) | Literal::Float(t), c) if is_numeric(c) => {
                let a = safe_cast(&text_scalar(t), dt).map_err(|e| self.err(span, e))?;
                if a.is_null(0) {
                    return Err(self.err(span, format!("{t} does not fit in {logical}")));
                }
                a
            }
            (Literal::Str(s), Class::Text) => {
                safe_cast(&text_scalar(s), dt).map_err(|e| self.err(span, e))?
            }
            (Literal::Str(s), Class::Date | Class::Time | Class::Timestamp | Class::Uuid) => {
                convert(&text_scalar(s), &LogicalType::Text, logical)
                    .map_err(|f| self.err(span, f.into_error(logical)))?
            }
            _ => return Err(mismatch()),
        };
        Ok(Typed {
            node: Node::Const(array),
            dt: dt.clone(),
            logical: logical.clone(),
            span,
        })
    }

    /// Whether a number literal converts to `dt` exactly.
    fn literal_fits(lit: &Literal, dt: &DataType) -> bool {
        let (Literal::Integer(t) | Literal::Decimal(t)) = lit else {
            return matches!(lit, Literal::Float(_))
                && matches!(dt, DataType::Float32 | DataType::Float64);
        };
        match dt {
            DataType::Float32 | DataType::Float64 => true,
            _ => {
                let (p, s) = literal_digits(t);
                let Some((int, scale)) = digits(dt) else {
                    return false;
                };
                s as i16 <= scale
                    && (p as i16 - s as i16) <= int
                    && safe_cast(&text_scalar(t), dt).is_ok_and(|a| a.is_valid(0))
            }
        }
    }

    /// Brings two operands to one type (comparison) or to compatible numeric types
    /// (`arith`).
    fn pair(&self, l: Bound, r: Bound, span: Span, arith: bool) -> Result<(Typed, Typed)> {
        if arith {
            for b in [&l, &r] {
                let bad = match b {
                    Bound::Typed(t) => {
                        let c = class(&t.dt, &t.logical);
                        (!is_numeric(c) && c != Class::Null)
                            .then(|| (t.span, t.logical.to_string()))
                    }
                    Bound::Lit(Literal::Str(_), s) => Some((*s, "text".to_string())),
                    Bound::Lit(Literal::Bool(_), s) => Some((*s, "bool".to_string())),
                    Bound::Lit(..) => None,
                };
                if let Some((s, what)) = bad {
                    return Err(self
                        .err(
                            span,
                            format!("cannot do arithmetic on `{}` ({what})", self.part(s)),
                        )
                        .with_hint(
                            "arithmetic (+ - * / %) works on integers, decimals and floats; \
                             cast text columns to a number type first",
                        ));
                }
            }
        }
        let (l, r) = match (l, r) {
            (Bound::Lit(a, sa), Bound::Lit(b, sb)) => {
                let la = self.typed(Bound::Lit(a, sa), None)?;
                let lb = self.typed(Bound::Lit(b, sb), None)?;
                (la, lb)
            }
            (Bound::Typed(t), Bound::Lit(lit, s)) => {
                let other = self.literal_for(&t, lit, s, arith)?;
                (t, other)
            }
            (Bound::Lit(lit, s), Bound::Typed(t)) => {
                let other = self.literal_for(&t, lit, s, arith)?;
                (other, t)
            }
            (Bound::Typed(a), Bound::Typed(b)) => (a, b),
        };
        let (cl, cr) = (class(&l.dt, &l.logical), class(&r.dt, &r.logical));
        let incompatible = |what: &str| {
            self.err(
                span,
                format!(
                    "cannot {what} `{}` ({}) and `{}` ({})",
                    self.part(l.span),
                    l.logical,
                    self.part(r.span),
                    r.logical
                ),
            )
        };
        if arith && l.dt != r.dt {
            // Decimals keep their own precision and scale: the kernel applies the SQL rules
            // for the result (`decimal(12,2) * 2` is `decimal(14,2)`).
            if let (Some(a), Some(b)) = (arith_decimal(&l.dt), arith_decimal(&r.dt))
                && (cl == Class::Decimal || cr == Class::Decimal)
            {
                let wide =
                    matches!(a, DataType::Decimal256(..)) || matches!(b, DataType::Decimal256(..));
                let widen = |d: DataType| match d {
                    DataType::Decimal128(p, s) if wide => DataType::Decimal256(p, s),
                    d => d,
                };
                return Ok((self.cast_to(l, &widen(a)), self.cast_to(r, &widen(b))));
            }
        }
        let target = match (cl, cr) {
            _ if l.dt == r.dt => return Ok((l, r)),
            (Class::Null, _) => r.dt.clone(),
            (_, Class::Null) => l.dt.clone(),
            (a, b) if is_numeric(a) && is_numeric(b) => numeric_common(&l.dt, &r.dt),
            (Class::Text, Class::Text) => DataType::Utf8,
            (Class::Date, Class::Date)
            | (Class::Time, Class::Time)
            | (Class::Timestamp, Class::Timestamp | Class::Date) => l.dt.clone(),
            (Class::Date, Class::Timestamp) => r.dt.clone(),
            _ => {
                return Err(incompatible("compare").with_hint(
                    "compare values of the same kind: numbers with numbers, text with text \
                     ('…' literals), dates and timestamps with each other or with \
                     'YYYY-MM-DD…' text",
                ));
            }
        };
        Ok((self.cast_to(l, &target), self.cast_to(r, &target)))
    }

    /// Converts a literal to meet the typed operand `t`: exactly its type when the value
    /// fits, else its default type (then the pair is widened).
    fn literal_for(&self, t: &Typed, lit: Literal, span: Span, arith: bool) -> Result<Typed> {
        let c = class(&t.dt, &t.logical);
        if let (true, Class::Decimal, Literal::Integer(x) | Literal::Decimal(x)) = (arith, c, &lit)
        {
            // In arithmetic a number literal keeps its own digits (`amount * 2`).
            let (p, s) = literal_digits(x);
            if p <= 38 {
                let dt = DataType::Decimal128(p as u8, s as i8);
                let logical = LogicalType::from_arrow(&dt).unwrap_or(LogicalType::Text);
                return self.literal_as(&lit, span, &dt, &logical);
            }
        }
        let number = matches!(
            lit,
            Literal::Integer(_) | Literal::Decimal(_) | Literal::Float(_)
        );
        if number && is_numeric(c) && !Self::literal_fits(&lit, &t.dt) {
            return self.typed(Bound::Lit(lit, span), None);
        }
        self.literal_as(&lit, span, &t.dt, &t.logical)
    }

    fn cast_to(&self, t: Typed, dt: &DataType) -> Typed {
        if t.dt == *dt {
            return t;
        }
        // Constants are cast once here rather than per batch.
        let node = match &t.node {
            Node::Const(a) => match safe_cast(a, dt) {
                Ok(c) => Node::Const(c),
                Err(_) => Node::Cast(Box::new(t.node), dt.clone()),
            },
            _ => Node::Cast(Box::new(t.node), dt.clone()),
        };
        let logical = LogicalType::from_arrow(dt).unwrap_or(t.logical);
        Typed {
            node,
            dt: dt.clone(),
            logical,
            span: t.span,
        }
    }
}

/// A value during evaluation: a column-length array, or a one-element scalar.
struct Val {
    array: ArrayRef,
    scalar: bool,
}

impl Datum for Val {
    fn get(&self) -> (&dyn Array, bool) {
        (self.array.as_ref(), self.scalar)
    }
}

impl Compiled {
    /// Evaluates on `batch`: an array of `batch.num_rows()` values of [`Self::data_type`].
    /// Runtime failures (overflow, division by zero) are data errors naming the expression
    /// part.
    pub fn eval(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let v = eval(&self.node, batch)?;
        if !v.scalar {
            return Ok(v.array);
        }
        broadcast(&v.array, batch.num_rows())
    }

    /// Evaluates a condition: true where the row is kept (NULL and false are not).
    pub fn eval_mask(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let v = eval(&self.node, batch)?;
        as_bool(&v, batch.num_rows())
    }
}

/// Repeats a one-element array `n` times.
pub fn broadcast(a: &ArrayRef, n: usize) -> Result<ArrayRef> {
    if a.len() == n {
        return Ok(a.clone());
    }
    let idx = UInt32Array::from_value(0, n);
    Ok(arrow::compute::take(a.as_ref(), &idx, None)?)
}

fn as_bool(v: &Val, n: usize) -> Result<BooleanArray> {
    let b = v
        .array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| {
            Error::internal(format!("condition evaluated to {}", v.array.data_type()))
        })?;
    if !v.scalar || b.len() == n {
        return Ok(b.clone());
    }
    let values = if b.is_valid(0) && b.value(0) {
        BooleanBuffer::new_set(n)
    } else {
        BooleanBuffer::new_unset(n)
    };
    let nulls = b.is_null(0).then(|| NullBuffer::new_null(n));
    Ok(BooleanArray::new(values, nulls))
}

/// Evaluates `node`, children first. This frame is what each level of nesting costs on the
/// stack, so it only recurses and dispatches; the kernels run in the helpers below, whose
/// frames are not kept while the children are evaluated.
fn eval(node: &Node, batch: &RecordBatch) -> Result<Val> {
    match node {
        Node::Column(i) => column(batch, *i),
        Node::Const(a) => Ok(Val {
            array: a.clone(),
            scalar: true,
        }),
        Node::Cast(x, dt) => cast_val(eval(x, batch)?, dt),
        Node::Neg(x, part) => neg_val(eval(x, batch)?, part),
        Node::Arith(op, l, r, part) => {
            let l = eval(l, batch)?;
            arith_val(*op, l, eval(r, batch)?, part)
        }
        Node::Cmp(op, l, r) => {
            let l = eval(l, batch)?;
            cmp_val(*op, l, eval(r, batch)?)
        }
        Node::Like(x, p, negated) => {
            let x = eval(x, batch)?;
            like_val(x, eval(p, batch)?, *negated)
        }
        Node::And(xs) => logic(xs, batch, true),
        Node::Or(xs) => logic(xs, batch, false),
        Node::Not(x) => not_val(eval(x, batch)?),
        Node::IsNull(x, negated) => is_null_val(eval(x, batch)?, *negated),
    }
}

#[inline(never)]
fn column(batch: &RecordBatch, i: usize) -> Result<Val> {
    match batch.columns().get(i) {
        Some(c) => Ok(Val {
            array: c.clone(),
            scalar: false,
        }),
        None => Err(Error::internal(format!(
            "expression column {i} is not in the batch"
        ))),
    }
}

#[inline(never)]
fn cast_val(v: Val, dt: &DataType) -> Result<Val> {
    Ok(Val {
        array: cast_lenient(v.array.as_ref(), dt, false)?,
        scalar: v.scalar,
    })
}

#[inline(never)]
fn neg_val(v: Val, part: &str) -> Result<Val> {
    let array = numeric::neg(&v.array).map_err(|e| runtime(part, e))?;
    Ok(Val {
        array,
        scalar: v.scalar,
    })
}

#[inline(never)]
fn arith_val(op: ArithOp, l: Val, r: Val, part: &str) -> Result<Val> {
    let array = match op {
        ArithOp::Add => numeric::add(&l, &r),
        ArithOp::Sub => numeric::sub(&l, &r),
        ArithOp::Mul => numeric::mul(&l, &r),
        ArithOp::Div => numeric::div(&l, &r),
        ArithOp::Rem => numeric::rem(&l, &r),
    }
    .map_err(|e| runtime(part, e))?;
    Ok(Val {
        array,
        scalar: l.scalar && r.scalar,
    })
}

#[inline(never)]
fn cmp_val(op: CmpOp, l: Val, r: Val) -> Result<Val> {
    let out = match op {
        CmpOp::Eq => cmp::eq(&l, &r),
        CmpOp::NotEq => cmp::neq(&l, &r),
        CmpOp::Lt => cmp::lt(&l, &r),
        CmpOp::LtEq => cmp::lt_eq(&l, &r),
        CmpOp::Gt => cmp::gt(&l, &r),
        CmpOp::GtEq => cmp::gt_eq(&l, &r),
    }?;
    Ok(Val {
        array: Arc::new(out),
        scalar: l.scalar && r.scalar,
    })
}

#[inline(never)]
fn like_val(x: Val, p: Val, negated: bool) -> Result<Val> {
    let out = if negated {
        comparison::nlike(&x, &p)
    } else {
        comparison::like(&x, &p)
    }?;
    Ok(Val {
        array: Arc::new(out),
        scalar: x.scalar && p.scalar,
    })
}

#[inline(never)]
fn not_val(v: Val) -> Result<Val> {
    let b = as_bool(&v, v.array.len())?;
    Ok(Val {
        array: Arc::new(boolean::not(&b)?),
        scalar: v.scalar,
    })
}

#[inline(never)]
fn is_null_val(v: Val, negated: bool) -> Result<Val> {
    let out = if negated {
        boolean::is_not_null(&v.array)
    } else {
        boolean::is_null(&v.array)
    }?;
    Ok(Val {
        array: Arc::new(out),
        scalar: v.scalar,
    })
}

/// `AND` (`and`) or `OR` over `xs`, folded left to right one operand at a time: a long chain
/// or IN list costs no stack. Scalars stay scalar until they meet a column.
fn logic(xs: &[Node], batch: &RecordBatch, and: bool) -> Result<Val> {
    let mut acc: Option<Val> = None;
    for x in xs {
        let v = eval(x, batch)?;
        acc = Some(match acc {
            None => v,
            Some(a) => kleene(a, v, batch.num_rows(), and)?,
        });
    }
    let v = acc.ok_or_else(|| Error::internal("an empty AND/OR list"))?;
    kleene_one(v)
}

#[inline(never)]
fn kleene(a: Val, v: Val, n: usize, and: bool) -> Result<Val> {
    let scalar = a.scalar && v.scalar;
    let len = if scalar { 1 } else { n };
    let (ab, vb) = (as_bool(&a, len)?, as_bool(&v, len)?);
    let out = if and {
        boolean::and_kleene(&ab, &vb)
    } else {
        boolean::or_kleene(&ab, &vb)
    }?;
    Ok(Val {
        array: Arc::new(out),
        scalar,
    })
}

/// A lone operand of AND/OR, as a boolean array.
#[inline(never)]
fn kleene_one(v: Val) -> Result<Val> {
    let out = as_bool(&v, v.array.len())?;
    Ok(Val {
        array: Arc::new(out),
        scalar: v.scalar,
    })
}

fn runtime(part: &str, e: ArrowError) -> Error {
    let msg = match &e {
        ArrowError::DivideByZero => "division by zero".to_string(),
        ArrowError::ArithmeticOverflow(m) => format!("arithmetic overflow ({m})"),
        other => other.to_string(),
    };
    Error::data(format!("in `{part}`: {msg}")).with_hint(
        "guard the expression, e.g. with a filter transform before it, or use a wider type",
    )
}

#[cfg(test)]
mod tests;
