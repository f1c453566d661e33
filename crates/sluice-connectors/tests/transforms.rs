//! The built-in transforms, built from job-file sections and run on real batches.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use proptest::prelude::*;
use serde_json::json;
use sluice_connectors::transforms::TransformConfig;
use sluice_core::{BoundTransform, ErrorKind, LogicalType, TableId, TableSchema};

fn orders() -> (TableSchema, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
        Arc::new(StringArray::from(vec![
            Some("120.50"),
            Some("99.99"),
            None,
            Some("100"),
        ])),
        Arc::new(StringArray::from(vec![
            Some("paid"),
            Some("paid"),
            Some("shipped"),
            None,
        ])),
        Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("c"),
            Some("d"),
        ])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut t = TableSchema::new(TableId::new(["main", "orders"]), schema);
    t.primary_key = vec!["id".into()];
    (t, batch)
}

fn bind(
    section: serde_json::Value,
    table: &TableSchema,
) -> sluice_core::Result<Box<dyn BoundTransform>> {
    let config: TransformConfig = serde_json::from_value(section).unwrap();
    config.build()?.bind(table)
}

#[test]
fn rename_follows_the_primary_key() {
    let (t, batch) = orders();
    let b = bind(
        json!({"type": "rename", "columns": {"id": "order_id", "note": "comment"}}),
        &t,
    )
    .unwrap();
    assert_eq!(b.output().primary_key, ["order_id"]);
    let out = b.apply(batch).unwrap();
    let names: Vec<_> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["order_id", "amount", "status", "comment"]);
    assert_eq!(out.schema(), b.output().arrow);

    let e = bind(json!({"type": "rename", "columns": {"nte": "x"}}), &t)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(
        e.to_string(),
        "rename transform: table main.orders: no column \"nte\""
    );
    assert!(
        e.hint().unwrap().starts_with("did you mean `note`?"),
        "{e:?}"
    );
    let e = bind(json!({"type": "rename", "columns": {"note": "status"}}), &t)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("two columns named \"status\""),
        "{e}"
    );
}

#[test]
fn select_and_drop_track_the_key() {
    let (t, batch) = orders();
    let b = bind(json!({"type": "select", "columns": ["status", "id"]}), &t).unwrap();
    assert_eq!(b.output().primary_key, ["id"]);
    let out = b.apply(batch.clone()).unwrap();
    assert_eq!(out.num_columns(), 2);
    assert_eq!(out.schema().field(0).name(), "status");

    let b = bind(json!({"type": "drop", "columns": ["id"]}), &t).unwrap();
    assert!(b.output().primary_key.is_empty());
    let out = b.apply(batch).unwrap();
    assert_eq!(out.num_columns(), 3);
    assert_eq!(out.num_rows(), 4);

    let b = bind(
        json!({"type": "drop", "columns": ["nope"], "tables": ["other"]}),
        &t,
    )
    .unwrap();
    assert_eq!(
        b.output(),
        &t,
        "a transform for other tables binds to the identity"
    );
    assert!(
        bind(
            json!({"type": "drop", "columns": ["nope"], "tables": ["main.*"]}),
            &t
        )
        .is_err()
    );
}

#[test]
fn cast_converts_and_names_the_failing_value() {
    let (t, batch) = orders();
    let section = json!({"type": "cast", "columns": {"amount": "decimal(12,2)", "id": "text"}});
    let b = bind(section, &t).unwrap();
    let f = b.output().arrow.field_with_name("amount").unwrap().clone();
    assert_eq!(f.data_type(), &DataType::Decimal128(12, 2));
    assert!(f.is_nullable());
    assert!(
        !b.output()
            .arrow
            .field_with_name("id")
            .unwrap()
            .is_nullable()
    );
    let out = b.apply(batch.clone()).unwrap();
    let d = out
        .column(1)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .unwrap();
    assert_eq!(
        (d.value(0), d.value(1), d.is_null(2), d.value(3)),
        (12050, 9999, true, 10000)
    );
    assert_eq!(out.column(0).as_string::<i32>().value(3), "4");

    let b = bind(json!({"type": "cast", "columns": {"status": "int32"}}), &t).unwrap();
    let e = b.apply(batch.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data);
    assert_eq!(
        e.to_string(),
        "cast transform: table main.orders, column \"status\": cannot cast \"paid\" to int32"
    );
    assert!(e.hint().unwrap().contains("cast the column to text"));

    let b = bind(
        json!({"type": "cast", "columns": {"status": "enum('paid','shipped')"}}),
        &t,
    )
    .unwrap();
    let f = b.output().arrow.field_with_name("status").unwrap().clone();
    assert_eq!(
        LogicalType::of_field(&f).unwrap().to_string(),
        "enum('paid','shipped')"
    );
    assert_eq!(b.apply(batch).unwrap().num_rows(), 4);

    let r: Result<TransformConfig, _> =
        serde_json::from_value(json!({"type": "cast", "columns": {"amount": "intt"}}));
    assert!(r.unwrap_err().to_string().contains("unknown type"));
}

#[test]
fn filter_keeps_only_true_rows() {
    let (t, batch) = orders();
    let section = json!({"type": "cast", "columns": {"amount": "decimal(12,2)"}});
    let cast = bind(section, &t).unwrap();
    let typed = cast.apply(batch).unwrap();
    let where_ = "amount >= 100 AND status IN ('paid', 'shipped') AND note IS NOT NULL";
    let f = bind(json!({"type": "filter", "where": where_}), cast.output()).unwrap();
    let out = f.apply(typed.clone()).unwrap();
    let ids = out.column(0).as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(ids.values().to_vec(), [1]);

    // NULL status: neither `= 'paid'` nor `<> 'paid'` keeps row 4.
    let f = bind(
        json!({"type": "filter", "where": "status <> 'paid'"}),
        cast.output(),
    )
    .unwrap();
    let out = f.apply(typed.clone()).unwrap();
    assert_eq!(
        out.column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec(),
        [3]
    );
    let f = bind(
        json!({"type": "filter", "where": "status IS NULL OR amount < 100"}),
        cast.output(),
    )
    .unwrap();
    let out = f.apply(typed).unwrap();
    assert_eq!(
        out.column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec(),
        [2, 4]
    );
}

#[test]
fn filter_errors_come_early() {
    let (t, _) = orders();
    let c: TransformConfig =
        serde_json::from_value(json!({"type": "filter", "where": "amount >= AND x"})).unwrap();
    let e = c.build().err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("at byte 10: expected a value"),
        "{e}"
    );
    let e = bind(json!({"type": "filter", "where": "id > 'x'"}), &t)
        .err()
        .unwrap();
    assert!(e.to_string().contains("table main.orders: in `'x'`"), "{e}");
    let e = bind(json!({"type": "filter", "where": "stat = 'x'"}), &t)
        .err()
        .unwrap();
    assert!(e.hint().unwrap().contains("did you mean `status`"), "{e:?}");
    let r: Result<TransformConfig, _> =
        serde_json::from_value(json!({"type": "filter", "were": "x"}));
    assert!(r.is_err());
}

#[test]
fn add_constant_and_expression() {
    let (t, batch) = orders();
    let b = bind(
        json!({"type": "add", "column": "source", "value": "legacy"}),
        &t,
    )
    .unwrap();
    let out = b.apply(batch.clone()).unwrap();
    assert_eq!(out.column(4).as_string::<i32>().value(3), "legacy");
    assert!(!b.output().arrow.field(4).is_nullable());
    assert_eq!(b.output().primary_key, ["id"]);

    let section =
        json!({"type": "add", "column": "double", "expr": "id * 2 + 1", "as": "decimal(10,2)"});
    let b = bind(section, &t).unwrap();
    let out = b.apply(batch.clone()).unwrap();
    let d = out
        .column(4)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .unwrap();
    assert_eq!((d.value(0), d.value(3)), (300, 900));

    let e = bind(json!({"type": "add", "column": "note", "value": 1}), &t)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("column \"note\" already exists"),
        "{e}"
    );
    let e = bind(
        json!({"type": "add", "column": "x", "value": 1, "expr": "id"}),
        &t,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("both `value` and `expr`"), "{e}");
    let e = bind(json!({"type": "add", "column": "x"}), &t)
        .err()
        .unwrap();
    assert!(e.to_string().contains("neither"), "{e}");
    let e = bind(
        json!({"type": "add", "column": "x", "value": "abc", "as": "int32"}),
        &t,
    )
    .err();
    assert!(
        e.unwrap()
            .to_string()
            .contains("cannot cast \"abc\" to int32")
    );
}

fn int_table(values: &[Option<i64>]) -> (TableSchema, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
    let col: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
    let batch = RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
    (TableSchema::new(TableId::new(["t"]), schema), batch)
}

proptest! {
    #[test]
    fn filter_matches_a_naive_evaluation(
        values in proptest::collection::vec(proptest::option::of(-1000i64..1000), 0..60),
        k in -1100i64..1100,
    ) {
        let (t, batch) = int_table(&values);
        let f = bind(json!({"type": "filter", "where": format!("a > {k}")}), &t).unwrap();
        let out = f.apply(batch).unwrap();
        let got: Vec<i64> = out.column(0).as_primitive::<arrow::datatypes::Int64Type>().iter().flatten().collect();
        let want: Vec<i64> = values.iter().flatten().copied().filter(|&a| a > k).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn the_operation_column_of_change_events_passes_through_select_and_is_never_dropped() {
    let (t, _) = orders();
    let mut fields: Vec<Field> = t.arrow.fields().iter().map(|f| (**f).clone()).collect();
    fields.push(Field::new(
        sluice_core::batch::OP_COLUMN,
        DataType::Utf8,
        false,
    ));
    let t = TableSchema {
        arrow: Arc::new(Schema::new(fields)),
        ..t
    };
    let b = bind(json!({"type": "select", "columns": ["status", "id"]}), &t).unwrap();
    let names: Vec<&str> = b
        .output()
        .arrow
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["status", "id", "_sluice_op"]);
    for section in [
        json!({"type": "drop", "columns": ["_sluice_op"]}),
        json!({"type": "rename", "columns": {"_sluice_op": "op"}}),
        json!({"type": "rename", "columns": {"note": "_sluice_op"}}),
    ] {
        let e = bind(section.clone(), &t).err().expect("refused");
        assert_eq!(e.kind(), ErrorKind::Config, "{section}");
        assert!(
            e.to_string().contains("carries each change's operation"),
            "{e}"
        );
    }
}
