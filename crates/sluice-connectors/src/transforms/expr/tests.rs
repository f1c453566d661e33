use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sluice_core::{ErrorKind, TableId, TableSchema};

use super::parse::MAX_DEPTH;
use super::*;

fn table() -> (TableSchema, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("amount", DataType::Decimal128(12, 2), true),
        Field::new("s", DataType::Utf8, true),
        Field::new("f", DataType::Float64, true),
        Field::new("d", DataType::Date32, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("ok", DataType::Boolean, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![Some(1), Some(5), None, Some(10)])),
        Arc::new(
            Decimal128Array::from(vec![Some(10050), Some(9999), Some(0), None])
                .with_precision_and_scale(12, 2)
                .unwrap(),
        ),
        Arc::new(StringArray::from(vec![
            Some("paid"),
            Some("shipped"),
            Some("it's"),
            None,
        ])),
        Arc::new(Float64Array::from(vec![
            Some(0.5),
            None,
            Some(-1.0),
            Some(2.5),
        ])),
        // 2024-01-01 = 19723
        Arc::new(Date32Array::from(vec![
            Some(19723),
            Some(19724),
            None,
            Some(19000),
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![
                Some(1_704_067_200_000_000),
                None,
                Some(0),
                Some(1_704_067_200_000_001),
            ])
            .with_timezone("UTC"),
        ),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
        ])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    (TableSchema::new(TableId::new(["t"]), schema), batch)
}

fn bind(src: &str) -> Result<Compiled> {
    let (schema, _) = table();
    let e = parse(src).map_err(|e| parse_error("test", src, &e))?;
    Binder {
        src,
        schema: &schema,
        what: "filter transform",
    }
    .bind_condition(&e)
}

/// Evaluates a condition; `Some(true)` where true, `None` where NULL.
fn eval3(src: &str) -> Vec<Option<bool>> {
    let (_, batch) = table();
    let c = bind(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let v = eval(&c.node, &batch).unwrap();
    let b = as_bool(&v, batch.num_rows()).unwrap();
    b.iter().collect()
}

/// Which rows a filter keeps.
fn keep(src: &str) -> Vec<usize> {
    let (_, batch) = table();
    let m = bind(src).unwrap().eval_mask(&batch).unwrap();
    (0..m.len())
        .filter(|&i| m.is_valid(i) && m.value(i))
        .collect()
}

#[test]
fn comparisons_with_nulls_are_null() {
    assert_eq!(eval3("a > 2"), [Some(false), Some(true), None, Some(true)]);
    assert_eq!(eval3("a = NULL"), [None, None, None, None]);
    assert_eq!(
        eval3("a IS NULL"),
        [Some(false), Some(false), Some(true), Some(false)]
    );
    assert_eq!(
        eval3("NOT a > 2"),
        [Some(true), Some(false), None, Some(false)]
    );
}

#[test]
fn kleene_logic() {
    // NULL AND FALSE = FALSE, NULL OR TRUE = TRUE.
    assert_eq!(eval3("a > 2 AND FALSE"), [Some(false); 4]);
    assert_eq!(eval3("a > 2 OR TRUE"), [Some(true); 4]);
    assert_eq!(eval3("a > 2 OR NULL"), [None, Some(true), None, Some(true)]);
    assert_eq!(eval3("ok"), [Some(true), Some(false), None, Some(true)]);
    assert_eq!(keep("ok AND a < 10"), [0]);
    assert_eq!(keep("TRUE"), [0, 1, 2, 3]);
    assert_eq!(keep("NULL"), Vec::<usize>::new());
}

#[test]
fn in_between_like() {
    assert_eq!(keep("s IN ('paid', 'shipped')"), [0, 1]);
    // NOT IN with a NULL in the list is never true (SQL semantics).
    assert_eq!(keep("s NOT IN ('paid', NULL)"), Vec::<usize>::new());
    assert_eq!(keep("s NOT IN ('paid')"), [1, 2]);
    assert_eq!(keep("a BETWEEN 1 AND 5"), [0, 1]);
    assert_eq!(keep("a NOT BETWEEN 2 AND 9"), [0, 3]);
    assert_eq!(keep("s LIKE 'p%'"), [0]);
    assert_eq!(keep("s NOT LIKE '%a%'"), [1, 2]);
    assert_eq!(keep("s = 'it''s'"), [2]);
}

#[test]
fn literals_take_the_column_type() {
    assert_eq!(keep("amount >= 100"), [0]);
    assert_eq!(keep("amount > 99.985"), [0, 1]);
    assert_eq!(keep("amount = 99.99"), [1]);
    assert_eq!(keep("a < 3000000000"), [0, 1, 3]);
    assert_eq!(keep("f > 1"), [3]);
    assert_eq!(keep("d >= '2024-01-01'"), [0, 1]);
    assert_eq!(keep("ts > '2024-01-01T00:00:00Z'"), [3]);
    assert_eq!(keep("ts >= '2024-01-01 00:00:00'"), [0, 3]);
    assert_eq!(keep("ts > d"), [3]);
}

#[test]
fn arithmetic() {
    assert_eq!(keep("a * 2 + 1 = 11"), [1]);
    assert_eq!(keep("a % 2 = 0"), [3]);
    assert_eq!(keep("a / 3 = 1"), [1]); // integer division
    assert_eq!(keep("amount * 2 > 150"), [0, 1]);
    assert_eq!(keep("amount - a > 90"), [0, 1]);
    assert_eq!(keep("-a < -4"), [1, 3]);
    assert_eq!(keep("f * a > 1"), [3]);
    assert_eq!(keep("1 + 1 = 2"), [0, 1, 2, 3]);
}

#[test]
fn runtime_errors_name_the_expression() {
    let (_, batch) = table();
    let e = bind("a / (a - 1) > 0")
        .unwrap()
        .eval_mask(&batch)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data);
    assert!(
        e.to_string().contains("`a / (a - 1)`: division by zero"),
        "{e}"
    );
}

fn bind_err(src: &str) -> String {
    bind(src).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn type_errors_name_the_part() {
    let e = bind_err("amount > 1 AND s > 5");
    assert!(e.contains("table t: in `5`"), "{e}");
    assert!(
        e.contains("cannot use a number where a text is expected"),
        "{e}"
    );
    let e = bind_err("a = 'x'");
    assert!(
        e.contains("cannot use text where a int32 is expected"),
        "{e}"
    );
    let e = bind_err("a = s");
    assert!(
        e.contains("cannot compare `a` (int32) and `s` (text)"),
        "{e}"
    );
    let e = bind_err("s + 1 > 0");
    assert!(e.contains("cannot do arithmetic on `s` (text)"), "{e}");
    let e = bind_err("a + 1");
    assert!(e.contains("expected a condition"), "{e}");
    let e = bind_err("a LIKE 'x'");
    assert!(e.contains("LIKE needs text"), "{e}");
    let e = bind_err("d > 'yesterday'");
    assert!(e.contains("cannot cast \"yesterday\" to date"), "{e}");
    let e = bind(" amout > 1").map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("no column \"amout\""), "{e}");
    assert!(e.hint().unwrap().contains("did you mean `amount`"), "{e:?}");
    let e = bind_err("NOT a");
    assert!(e.contains("in `a`: expected a condition"), "{e}");
}

#[test]
fn parse_errors_point_at_the_position() {
    let e = bind("a >= AND b").map(|_| ()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    // The expression and the caret are lines of their own, so they line up however the
    // first line is prefixed when printed.
    let lines: Vec<&str> = e.message().lines().collect();
    assert!(
        lines[0].starts_with("test: syntax error at byte 5: expected a value"),
        "{e}"
    );
    assert_eq!(lines[1..], ["    a >= AND b", "         ^^^"], "{e}");
    assert_eq!(e.hint(), Some(SYNTAX_HINT));
    let e = bind("a = 'x").map(|_| ()).unwrap_err();
    assert_eq!(e.message().lines().nth(2), Some("        ^"), "{e}");
}

/// An expression exactly [`MAX_DEPTH`] levels deep: `(((a + 1) + 1) …) > 0`.
fn deepest(levels: usize) -> String {
    let mut inner = "a".to_string();
    for _ in 0..levels - 2 {
        inner = format!("({inner} + 1)");
    }
    format!("{inner} > 0")
}

/// Runs `f` on a thread with a stack of `bytes`, like the runtime's threads but smaller.
fn on_stack<T: Send + 'static>(bytes: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(bytes)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deepest_accepted_expression_binds_and_evaluates_on_a_small_stack() {
    assert!(parse(&deepest(MAX_DEPTH)).is_ok());
    let e = bind(&deepest(MAX_DEPTH + 1)).map(|_| ()).unwrap_err();
    assert!(e.message().contains("expression too deep"), "{e}");
    assert!(e.message().contains("more than 64 levels"), "{e}");
    let nots = format!("{}a > 0", "NOT ".repeat(MAX_DEPTH - 2));
    for src in [deepest(MAX_DEPTH), nots] {
        // Job files are parsed and bound on the main thread (8 MiB of stack): half of it
        // must do, in a debug build.
        let c = on_stack(4 << 20, move || bind(&src).unwrap());
        // Batches are evaluated on the runtime's worker threads (2 MiB): a quarter must do.
        on_stack(512 << 10, move || {
            let (_, batch) = table();
            let m = c.eval_mask(&batch).unwrap();
            assert_eq!(m.len(), 4);
            drop(c.clone());
        });
    }
}

#[test]
fn long_in_lists_and_or_chains_run_on_a_small_stack() {
    let items: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    let in_list = format!("a IN ({})", items.join(", "));
    let not_in = format!("a NOT IN ({})", items[2..].join(", "));
    let ors: Vec<String> = (0..3_000).map(|i| format!("a = {}", i * 5)).collect();
    let ors = ors.join(" OR ");
    on_stack(512 << 10, move || {
        assert_eq!(keep(&in_list), [0, 1, 3]);
        assert_eq!(keep(&not_in), [0]);
        assert_eq!(keep(&ors), [1, 3]);
    });
}

#[test]
fn numeric_common_types() {
    use DataType as D;
    assert_eq!(numeric_common(&D::Int32, &D::Int64), D::Int64);
    assert_eq!(numeric_common(&D::UInt32, &D::Int32), D::Int64);
    assert_eq!(numeric_common(&D::UInt64, &D::Int8), D::Decimal128(20, 0));
    assert_eq!(
        numeric_common(&D::Decimal128(12, 2), &D::Int64),
        D::Decimal128(21, 2)
    );
    assert_eq!(
        numeric_common(&D::Decimal128(12, 2), &D::Decimal128(6, 3)),
        D::Decimal128(13, 3)
    );
    assert_eq!(numeric_common(&D::Float32, &D::Int64), D::Float64);
    assert_eq!(literal_digits("-0012.340"), (5, 3));
}

#[test]
fn expression_values_broadcast_constants() {
    let (schema, batch) = table();
    let src = "amount * 2";
    let c = Binder {
        src,
        schema: &schema,
        what: "add transform",
    }
    .bind(&parse(src).unwrap())
    .unwrap();
    assert_eq!(c.data_type, DataType::Decimal128(14, 2));
    let v = c.eval(&batch).unwrap();
    let d = v.as_any().downcast_ref::<Decimal128Array>().unwrap();
    assert_eq!(d.value(0), 20100);
    let src = "amount * 1.5 + a";
    let c = Binder {
        src,
        schema: &schema,
        what: "add transform",
    }
    .bind(&parse(src).unwrap())
    .unwrap();
    let v = c.eval(&batch).unwrap();
    let d = v.as_any().downcast_ref::<Decimal128Array>().unwrap();
    assert_eq!((d.value(0), d.scale()), (151750, 3));
    assert!(d.is_null(3));
    let src = "'x'";
    let c = Binder {
        src,
        schema: &schema,
        what: "add transform",
    }
    .bind(&parse(src).unwrap())
    .unwrap();
    assert_eq!(c.eval(&batch).unwrap().len(), 4);
    let src = "a + 1";
    let c = Binder {
        src,
        schema: &schema,
        what: "add transform",
    }
    .bind(&parse(src).unwrap())
    .unwrap();
    let v = c.eval(&batch).unwrap();
    assert_eq!(
        v.as_any().downcast_ref::<Int32Array>().unwrap().value(3),
        11
    );
    let _ = Int64Array::from(vec![1]);
}
