//! File connectors through their public API: configs deserialized as a job file would be,
//! real files in temporary directories, real channels.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema};
use serde_json::{Value, json};
use sluice_connectors::files::{
    CsvSinkConfig, CsvSourceConfig, JsonlSinkConfig, JsonlSourceConfig, ParquetSinkConfig,
    ParquetSourceConfig,
};
use sluice_core::sink::DynSink;
use sluice_core::source::DynSource;
use sluice_core::{
    BatchSender, ErrorKind, LogicalType, Position, Result, SourceBatch, Split, TableId, TablePlan,
    TableSchema, WriteMode,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn csv_source(v: Value) -> DynSource {
    serde_json::from_value::<CsvSourceConfig>(v)
        .unwrap()
        .build()
        .unwrap()
}
fn jsonl_source(v: Value) -> DynSource {
    serde_json::from_value::<JsonlSourceConfig>(v)
        .unwrap()
        .build()
        .unwrap()
}
fn parquet_source(v: Value) -> DynSource {
    serde_json::from_value::<ParquetSourceConfig>(v)
        .unwrap()
        .build()
        .unwrap()
}
fn csv_sink(v: Value, mode: WriteMode) -> DynSink {
    serde_json::from_value::<CsvSinkConfig>(v)
        .unwrap()
        .build(mode)
        .unwrap()
}
fn jsonl_sink(v: Value, mode: WriteMode) -> DynSink {
    serde_json::from_value::<JsonlSinkConfig>(v)
        .unwrap()
        .build(mode)
        .unwrap()
}
fn parquet_sink(v: Value, mode: WriteMode) -> DynSink {
    serde_json::from_value::<ParquetSinkConfig>(v)
        .unwrap()
        .build(mode)
        .unwrap()
}

fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// Reads one split, returning its batches (with positions).
async fn read_split(
    src: &DynSource,
    split: Split,
    resume: Option<Position>,
) -> Result<Vec<SourceBatch>> {
    let (tx, mut rx) = mpsc::channel(4);
    let out = BatchSender::new(tx, CancellationToken::new());
    let src2 = src.clone();
    let task = tokio::spawn(async move { src2.read(split, resume, out).await });
    let mut got = Vec::new();
    while let Some(b) = rx.recv().await.map(crate::into_batch) {
        got.push(b);
    }
    task.await.unwrap()?;
    Ok(got)
}

/// Reads every table: (name, schema, all rows as one batch).
async fn read_all(src: &DynSource) -> Result<Vec<(String, TableSchema, RecordBatch)>> {
    let mut out = Vec::new();
    for t in src.tables().await? {
        let mut batches = Vec::new();
        for split in src.splits(&t).await? {
            batches.extend(
                read_split(src, split, None)
                    .await?
                    .into_iter()
                    .map(|b| b.data),
            );
        }
        let all = arrow::compute::concat_batches(&t.schema.arrow, &batches).unwrap();
        out.push((t.schema.id.name().to_string(), t.schema, all));
    }
    Ok(out)
}

fn plan(name: &str, schema: &TableSchema, splits: usize) -> TablePlan {
    TablePlan {
        target: TableId::new([name]),
        schema: TableSchema::new(TableId::new([name]), schema.arrow.clone()),
        splits,
    }
}

fn split(name: &str, index: usize) -> Split {
    Split {
        id: format!("{name}#{index}"),
        table: TableId::new([name]),
        index,
        estimated_rows: None,
        estimated_bytes: None,
        detail: Value::Null,
        continues: false,
        start: None,
    }
}

/// Writes `batch` as a one-split table and finishes it.
async fn write_table(
    sink: &DynSink,
    name: &str,
    schema: &TableSchema,
    batch: &RecordBatch,
) -> Result<()> {
    let plan = plan(name, schema, 1);
    sink.prepare(std::slice::from_ref(&plan)).await?;
    let mut w = sink.open(&plan, &split(name, 0)).await?;
    w.write(batch.clone()).await?;
    w.commit(&Position::new(
        format!("{name}#0"),
        json!({"rows": batch.num_rows()}),
    ))
    .await?;
    sink.finish_table(&plan).await?;
    sink.close().await
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const TRICKY_CSV: &str = "id,price,at,name,flag\n\
1,12.30,2024-01-02T03:04:05.123456,\"plain\",true\n\
2,,2024-02-29T00:00:00,\"with, comma and \"\"quotes\"\"\",false\n\
3,-0.05,,\"emoji 😀 and 𝄞 (4-byte UTF-8)\",\n\
4,99999999.99,1999-12-31T23:59:59.999999,\"line\nbreak\",true\n\
5,0.00,2000-01-01T00:00:00,,false\n";

fn assert_same(a: &RecordBatch, b: &RecordBatch) {
    assert_eq!(a.num_rows(), b.num_rows());
    assert_eq!(a.num_columns(), b.num_columns());
    for i in 0..a.num_columns() {
        assert_eq!(
            a.column(i).data_type(),
            b.column(i).data_type(),
            "column {i}"
        );
        assert_eq!(a.column(i).as_ref(), b.column(i).as_ref(), "column {i}");
    }
}

#[tokio::test]
async fn csv_to_parquet_to_csv_round_trip_keeps_values() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("items.csv"), TRICKY_CSV).unwrap();
    let schema = json!({"price": "decimal(12,2)"});

    let src = csv_source(json!({"path": p(&input), "schema": schema}));
    let tables = read_all(&src).await.unwrap();
    assert_eq!(tables.len(), 1);
    let (name, ts, original) = &tables[0];
    assert_eq!(name, "items");
    let types: Vec<_> = ts
        .logical_types()
        .unwrap()
        .into_iter()
        .map(|(_, t, _)| t.to_string())
        .collect();
    assert_eq!(
        types,
        ["int64", "decimal(12,2)", "timestamp", "text", "bool"]
    );
    assert_eq!(original.num_rows(), 5);
    let names = original.column(3).as_string::<i32>();
    assert_eq!(names.value(1), "with, comma and \"quotes\"");
    assert_eq!(names.value(2), "emoji 😀 and 𝄞 (4-byte UTF-8)");
    assert_eq!(names.value(3), "line\nbreak");
    assert!(names.is_null(4));
    assert!(original.column(1).is_null(1));

    // CSV → Parquet.
    let pq = d.path().join("pq");
    write_table(
        &parquet_sink(
            json!({"path": p(&pq), "compression": "zstd"}),
            WriteMode::Overwrite,
        ),
        "items",
        ts,
        original,
    )
    .await
    .unwrap();
    assert_eq!(files_in(&pq), ["items.parquet"]);
    let back = read_all(&parquet_source(json!({"path": p(&pq)})))
        .await
        .unwrap();
    assert_eq!(back[0].1.arrow.fields(), ts.arrow.fields());
    assert_same(original, &back[0].2);

    // Parquet → CSV (gzip) → read again.
    let out = d.path().join("csv");
    write_table(
        &csv_sink(
            json!({"path": p(&out), "compression": "gzip"}),
            WriteMode::Overwrite,
        ),
        "items",
        &back[0].1,
        &back[0].2,
    )
    .await
    .unwrap();
    assert_eq!(files_in(&out), ["items.csv.gz"]);
    let again = read_all(&csv_source(json!({"path": p(&out), "schema": schema})))
        .await
        .unwrap();
    assert_eq!(again[0].0, "items");
    assert_same(original, &again[0].2);
}

#[tokio::test]
async fn csv_sink_writes_exact_text() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("t.csv"),
        "u,price,at,b\n67e55044-10b1-426f-9247-bb680e5fe0c8,1.50,2024-01-02T03:04:05Z,00ff\n,,,\n",
    )
    .unwrap();
    let src = csv_source(json!({
        "path": p(&d.path().join("t.csv")),
        "schema": {"u": "uuid", "price": "decimal(10,2)", "at": "timestamptz", "b": "binary"}
    }));
    let t = read_all(&src).await.unwrap();
    let (_, ts, batch) = &t[0];
    assert_eq!(batch.column(0).data_type(), &DataType::FixedSizeBinary(16));
    assert_eq!(batch.column(3).data_type(), &DataType::Binary);
    let out = d.path().join("out");
    write_table(
        &csv_sink(
            json!({"path": p(&out), "null": "\\N"}),
            WriteMode::Overwrite,
        ),
        "t",
        ts,
        batch,
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(out.join("t.csv")).unwrap();
    assert_eq!(
        text,
        "u,price,at,b\n67e55044-10b1-426f-9247-bb680e5fe0c8,1.50,2024-01-02T03:04:05+00:00,00ff\n\\N,\\N,\\N,\\N\n"
    );
}

#[tokio::test]
async fn jsonl_round_trip_with_zstd_and_json_columns() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("events.jsonl");
    std::fs::write(
        &input,
        "{\"id\":1,\"name\":\"a 😀\",\"meta\":{\"k\":[1,2],\"s\":\"x\\\"y\"},\"score\":1.5}\n\
         \n\
         {\"id\":2,\"name\":null,\"meta\":null,\"score\":2}\n\
         {\"id\":3,\"extra\":true,\"meta\":[{\"a\":null}]}\n",
    )
    .unwrap();
    let t = read_all(&jsonl_source(json!({"path": p(&input)})))
        .await
        .unwrap();
    let (name, ts, batch) = &t[0];
    assert_eq!(name, "events");
    let types: Vec<_> = ts
        .logical_types()
        .unwrap()
        .into_iter()
        .map(|(n, t, _)| format!("{n}:{t}"))
        .collect();
    assert_eq!(
        types,
        [
            "id:int64",
            "name:text",
            "meta:json",
            "score:float64",
            "extra:bool"
        ]
    );
    let meta = batch.column(2).as_string::<i32>();
    assert_eq!(meta.value(0), r#"{"k":[1,2],"s":"x\"y"}"#);
    assert!(meta.is_null(1));
    assert_eq!(meta.value(2), r#"[{"a":null}]"#);

    let out = d.path().join("out");
    write_table(
        &jsonl_sink(
            json!({"path": p(&out), "compression": "zstd"}),
            WriteMode::Overwrite,
        ),
        "events",
        ts,
        batch,
    )
    .await
    .unwrap();
    assert_eq!(files_in(&out), ["events.jsonl.zst"]);
    let raw = zstd::decode_all(std::fs::File::open(out.join("events.jsonl.zst")).unwrap()).unwrap();
    let first: Value =
        serde_json::from_str(String::from_utf8(raw).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(
        first["meta"],
        json!({"k": [1, 2], "s": "x\"y"}),
        "json columns are embedded as JSON"
    );
    let again = read_all(&jsonl_source(json!({"path": p(&out)})))
        .await
        .unwrap();
    assert_same(batch, &again[0].2);
}

#[tokio::test]
async fn schema_overrides_apply_and_unknown_columns_are_named() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("a.csv");
    std::fs::write(&f, "id,code\n1,007\n2,010\n").unwrap();
    let t = read_all(&csv_source(json!({"path": p(&f)}))).await.unwrap();
    assert_eq!(t[0].2.column(1).data_type(), &DataType::Int64);
    let t = read_all(&csv_source(
        json!({"path": p(&f), "schema": {"code": "text", "id": "int32"}}),
    ))
    .await
    .unwrap();
    assert_eq!(t[0].2.column(1).as_string::<i32>().value(0), "007");
    assert_eq!(t[0].2.column(0).data_type(), &DataType::Int32);
    let e = csv_source(json!({"path": p(&f), "schema": {"cdoe": "text"}}))
        .tables()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("\"cdoe\"") && e.to_string().contains("tables: a"),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("code"));
}

#[tokio::test]
async fn tables_are_named_from_files_dirs_globs_and_table() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    std::fs::write(root.join("lineitem.csv.gz"), gz(b"a\n1\n")).unwrap();
    std::fs::write(root.join("orders.csv"), "a\n1\n2\n").unwrap();
    std::fs::write(root.join(".hidden.csv"), "a\n1\n").unwrap();
    std::fs::write(root.join(".orders.csv.sluice-tmp"), "garbage").unwrap();
    std::fs::create_dir(root.join("parts")).unwrap();
    std::fs::write(root.join("parts/part-00001.csv"), "a\n3\n").unwrap();
    std::fs::write(root.join("parts/part-00000.csv"), "a\n1\n2\n").unwrap();

    let src = csv_source(json!({"path": p(root)}));
    let tables = src.tables().await.unwrap();
    let names: Vec<_> = tables.iter().map(|t| t.schema.id.to_string()).collect();
    assert_eq!(names, ["lineitem", "orders", "parts"]);
    let splits = src.splits(&tables[2]).await.unwrap();
    assert_eq!(splits.len(), 2);
    assert_eq!(splits[0].id, "parts#0");
    assert!(
        splits[0].detail["path"]
            .as_str()
            .unwrap()
            .ends_with("part-00000.csv")
    );
    assert_eq!(splits[0].estimated_bytes, Some(6));
    let all = read_all(&src).await.unwrap();
    assert_eq!(all[0].2.num_rows(), 1, "gzip by extension");
    assert_eq!(all[2].2.num_rows(), 3);

    let glob = csv_source(json!({"path": format!("{}/*.csv*", p(root)), "table": "all"}));
    let t = read_all(&glob).await.unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, "all");
    assert_eq!(t[0].2.num_rows(), 3);
    let t = glob.tables().await.unwrap();
    assert_eq!(glob.splits(&t[0]).await.unwrap().len(), 2);
}

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn resume_skips_exactly_the_rows_delivered() {
    let d = tempfile::tempdir().unwrap();
    let mut csv = String::from("n\n");
    let mut jsonl = String::new();
    for i in 0..1000 {
        csv.push_str(&format!("{i}\n"));
        jsonl.push_str(&format!("{{\"n\":{i}}}\n"));
    }
    std::fs::write(d.path().join("c.csv"), &csv).unwrap();
    std::fs::write(d.path().join("j.jsonl"), &jsonl).unwrap();
    let csv_src = csv_source(json!({"path": p(&d.path().join("c.csv")), "batch_size": 64}));
    let jsonl_src = jsonl_source(json!({"path": p(&d.path().join("j.jsonl")), "batch_size": 64}));
    // Parquet with several row groups.
    let t = read_all(&csv_src).await.unwrap();
    let pq = d.path().join("pq");
    write_table(
        &parquet_sink(
            json!({"path": p(&pq), "row_group_size": 100}),
            WriteMode::Overwrite,
        ),
        "c",
        &t[0].1,
        &t[0].2,
    )
    .await
    .unwrap();
    let pq_src = parquet_source(json!({"path": p(&pq.join("c.parquet")), "batch_size": 64}));

    for src in [csv_src, jsonl_src, pq_src] {
        let table = &src.tables().await.unwrap()[0];
        let sp = src.splits(table).await.unwrap().remove(0);
        let first = read_split(&src, sp.clone(), None).await.unwrap();
        assert_eq!(first[0].position.value, json!({"rows": 64}));
        assert_eq!(first.last().unwrap().position.value, json!({"rows": 1000}));
        assert!(first.iter().all(|b| b.position.split == sp.id));
        let pos = first[2].position.clone();
        let rest = read_split(&src, sp.clone(), Some(pos)).await.unwrap();
        let n: usize = rest.iter().map(|b| b.data.num_rows()).sum();
        assert_eq!(n, 1000 - 192);
        let v = rest[0]
            .data
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(v, 192, "resumes right after the position");
        assert_eq!(rest.last().unwrap().position.value, json!({"rows": 1000}));
    }
}

async fn read_err(src: DynSource) -> sluice_core::Error {
    match read_all(&src).await {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn missing_input_is_a_config_error_naming_the_path() {
    // The job names a path that does not exist: bad config (exit 2), not a disk problem.
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope.csv");
    let e = read_err(csv_source(json!({"path": p(&missing)}))).await;
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("nope.csv"), "{e}");
    assert!(e.hint().is_some());
    let e = read_err(parquet_source(
        json!({"path": format!("{}/*.parquet", p(d.path()))}),
    ))
    .await;
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("matches no files"), "{e}");
    std::fs::create_dir(d.path().join("empty")).unwrap();
    let e = read_err(csv_source(json!({"path": p(&d.path().join("empty"))}))).await;
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("no data files"), "{e}");
}

#[tokio::test]
async fn wrong_field_count_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.csv");
    std::fs::write(&f, "a,b\n1,2\n3,4\n5,6,7\n").unwrap();
    let e = read_err(csv_source(json!({"path": p(&f)}))).await;
    assert_eq!(e.kind(), ErrorKind::Data);
    let m = e.to_string();
    assert!(m.contains("bad.csv") && m.contains("line 4"), "{m}");
    assert!(
        e.hint()
            .unwrap_or_else(|| panic!("{e}"))
            .contains("delimiter")
    );
}

#[tokio::test]
async fn invalid_utf8_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("latin1.csv");
    std::fs::write(&f, b"a,b\n1,ok\n2,caf\xe9\n").unwrap();
    let e = read_err(csv_source(json!({"path": p(&f), "schema": {"b": "text"}}))).await;
    assert_eq!(e.kind(), ErrorKind::Data);
    assert!(
        e.to_string().contains("latin1.csv") && e.to_string().contains("line 3"),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("UTF-8"));
    let j = d.path().join("latin1.jsonl");
    std::fs::write(&j, b"{\"a\":\"ok\"}\n{\"a\":\"caf\xe9\"}\n").unwrap();
    let e = read_err(jsonl_source(json!({"path": p(&j)}))).await;
    assert!(
        e.to_string().contains("latin1.jsonl") && e.to_string().contains("line 2"),
        "{e}"
    );
}

#[tokio::test]
async fn unparsable_values_name_file_line_column_and_value() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("vals.csv");
    let mut text = String::from("id,price\n");
    for i in 0..100 {
        text.push_str(&format!("{i},{i}.5\n"));
    }
    text.push_str("100,abc\n");
    std::fs::write(&f, text).unwrap();
    for ty in ["decimal(10,2)", "float64", "int64"] {
        let e = read_err(csv_source(
            json!({"path": p(&f), "batch_size": 30, "schema": {"price": ty}}),
        ))
        .await;
        assert_eq!(e.kind(), ErrorKind::Data, "{ty}");
        let m = e.to_string();
        if ty == "int64" {
            assert!(m.contains("line 2,") && m.contains("\"0.5\""), "{m}");
        } else {
            assert!(
                m.contains("vals.csv: line 102, column \"price\"") && m.contains("\"abc\""),
                "{m}"
            );
        }
        assert!(
            e.hint().unwrap().contains("price = \"text\""),
            "{:?}",
            e.hint()
        );
    }
    let g = d.path().join("ids.csv");
    std::fs::write(&g, "u\n67e55044-10b1-426f-9247-bb680e5fe0c8\nnot-a-uuid\n").unwrap();
    let e = read_err(csv_source(json!({"path": p(&g), "schema": {"u": "uuid"}}))).await;
    assert!(
        e.to_string().contains("ids.csv: line 3, column \"u\"")
            && e.to_string().contains("not-a-uuid"),
        "{e}"
    );
    let j = d.path().join("v.jsonl");
    std::fs::write(&j, "{\"n\":1}\n{\"n\":2}\n{\"n\":\"x\"}\n").unwrap();
    let e = read_err(jsonl_source(
        json!({"path": p(&j), "schema": {"n": "int64"}}),
    ))
    .await;
    let m = e.to_string();
    assert!(
        m.contains("v.jsonl: line 3, column \"n\"") && m.contains("\"x\""),
        "{m}"
    );
}

#[tokio::test]
async fn corrupt_parquet_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("broken.parquet");
    std::fs::write(&f, b"this is not parquet at all").unwrap();
    let e = read_err(parquet_source(json!({"path": p(&f)}))).await;
    assert_eq!(e.kind(), ErrorKind::Data);
    assert!(
        e.to_string().contains("broken.parquet")
            && e.to_string().contains("not a readable Parquet"),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("complete"));
}

fn ints(n: i64) -> (TableSchema, RecordBatch) {
    let schema = Arc::new(Schema::new(vec![
        LogicalType::Int64.field("id", false),
        LogicalType::Text.field("s", true),
    ]));
    let ids = Int64Array::from_iter_values(0..n);
    let s = StringArray::from_iter(
        (0..n).map(|i| Some(format!("row number {i} with some padding text"))),
    );
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(s)]).unwrap();
    (TableSchema::new(TableId::new(["t"]), schema), batch)
}

#[tokio::test]
async fn nothing_is_visible_before_commit_and_abort_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let (ts, batch) = ints(100);
    for sink in [
        csv_sink(json!({"path": p(&out)}), WriteMode::Overwrite),
        jsonl_sink(json!({"path": p(&out)}), WriteMode::Overwrite),
        parquet_sink(json!({"path": p(&out)}), WriteMode::Overwrite),
    ] {
        let plan = plan("t", &ts, 1);
        sink.prepare(std::slice::from_ref(&plan)).await.unwrap();
        let mut w = sink.open(&plan, &split("t", 0)).await.unwrap();
        w.write(batch.clone()).await.unwrap();
        let names = files_in(&out);
        assert!(
            names
                .iter()
                .all(|n| n.starts_with('.') && n.ends_with(".sluice-tmp")),
            "{names:?}"
        );
        w.abort().await.unwrap();
        assert!(files_in(&out).is_empty(), "{:?}", files_in(&out));
    }
}

#[tokio::test]
async fn streaming_commits_make_new_files_and_overwrite_cleans_up() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let (ts, batch) = ints(10);
    let sink = csv_sink(json!({"path": p(&out)}), WriteMode::Overwrite);
    let pl = plan("t", &ts, 3);
    sink.prepare(std::slice::from_ref(&pl)).await.unwrap();
    // A stale part from an earlier run with more splits, and a killed run's temp file.
    std::fs::write(out.join("t/part-00007.csv"), "id,s\n").unwrap();
    std::fs::write(out.join("t/.part-00001.csv.sluice-tmp"), "x").unwrap();
    sink.prepare(std::slice::from_ref(&pl)).await.unwrap();
    assert_eq!(files_in(&out.join("t")), ["part-00007.csv"]);
    for i in 0..3 {
        let mut w = sink.open(&pl, &split("t", i)).await.unwrap();
        w.write(batch.clone()).await.unwrap();
        w.commit(&Position::new("t", json!({"rows": 10})))
            .await
            .unwrap();
        if i == 0 {
            w.write(batch.clone()).await.unwrap();
            w.commit(&Position::new("t", json!({"rows": 20})))
                .await
                .unwrap();
            w.commit(&Position::new("t", json!({"rows": 20})))
                .await
                .unwrap();
        }
    }
    sink.finish_table(&pl).await.unwrap();
    assert_eq!(
        files_in(&out.join("t")),
        [
            "part-00000-1.csv",
            "part-00000.csv",
            "part-00001.csv",
            "part-00002.csv"
        ]
    );
    let t = read_all(&csv_source(json!({"path": p(&out)})))
        .await
        .unwrap();
    assert_eq!(t[0].0, "t");
    assert_eq!(t[0].2.num_rows(), 40);

    // Append adds files next to the old ones, never replacing them.
    let app = csv_sink(json!({"path": p(&out)}), WriteMode::Append);
    let one = plan("t", &ts, 3);
    for _ in 0..2 {
        app.prepare(std::slice::from_ref(&one)).await.unwrap();
        let mut w = app.open(&one, &split("t", 0)).await.unwrap();
        w.write(batch.clone()).await.unwrap();
        w.commit(&Position::new("t", json!({"rows": 10})))
            .await
            .unwrap();
        app.finish_table(&one).await.unwrap();
    }
    assert_eq!(files_in(&out.join("t")).len(), 6);
}

#[tokio::test]
async fn empty_table_still_gets_a_file() {
    let d = tempfile::tempdir().unwrap();
    let (ts, _) = ints(0);
    let sink = parquet_sink(json!({"path": p(d.path())}), WriteMode::Overwrite);
    let pl = plan("t", &ts, 1);
    sink.prepare(std::slice::from_ref(&pl)).await.unwrap();
    let mut w = sink.open(&pl, &split("t", 0)).await.unwrap();
    w.commit(&Position::new("t#0", json!({"rows": 0})))
        .await
        .unwrap();
    let t = read_all(&parquet_source(
        json!({"path": p(&d.path().join("t.parquet"))}),
    ))
    .await
    .unwrap();
    assert_eq!(t[0].2.num_rows(), 0);
    assert_eq!(t[0].1.arrow.fields().len(), 2);
}

#[tokio::test]
async fn output_path_under_a_file_fails_in_prepare() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("somefile.txt");
    std::fs::write(&file, "x").unwrap();
    let (ts, _) = ints(1);
    let sink = csv_sink(json!({"path": p(&file.join("out"))}), WriteMode::Overwrite);
    let e = sink.prepare(&[plan("t", &ts, 1)]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("somefile.txt"), "{e}");
    assert!(e.hint().is_some());
}

#[test]
fn upsert_is_refused() {
    let c: ParquetSinkConfig = serde_json::from_value(json!({"path": "x"})).unwrap();
    let e = c.build(WriteMode::Upsert).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string()
            .contains("use write = \"overwrite\" or \"append\"")
    );
}

/// A tiny tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn full_disk_is_reported_and_leaves_no_final_file() {
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("tiny");
    let _fs =
        Tmpfs::mount(&mnt).expect("mounting a tmpfs needs root (the test machines run as root)");
    let (ts, batch) = ints(20_000);
    for sink in [
        csv_sink(json!({"path": p(&mnt)}), WriteMode::Overwrite),
        parquet_sink(
            json!({"path": p(&mnt), "compression": "none"}),
            WriteMode::Overwrite,
        ),
    ] {
        let pl = plan("t", &ts, 1);
        sink.prepare(std::slice::from_ref(&pl)).await.unwrap();
        let mut w = sink.open(&pl, &split("t", 0)).await.unwrap();
        let r = async {
            w.write(batch.clone()).await?;
            w.commit(&Position::new("t#0", json!({"rows": 1}))).await
        }
        .await;
        let e = r.expect_err("64 KiB cannot hold the data");
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(e.to_string().contains("No space left"), "{e}");
        assert!(e.hint().unwrap().contains("disk is full"));
        w.abort().await.unwrap();
        assert!(files_in(&mnt).is_empty(), "{:?}", files_in(&mnt));
    }
}

/// A CSV whose notes hold quoted newlines (LF and CR LF), doubled quotes and commas, with
/// CR LF line ends every seventh row: `(text, ids in order, notes in order)`.
fn tricky_rows(n: usize) -> (String, Vec<i64>, Vec<String>) {
    let mut text = String::from("id,note\n");
    let (mut ids, mut notes) = (Vec::new(), Vec::new());
    for i in 0..n {
        let note = match i % 5 {
            0 => format!("line {i}\nnext line, with comma"),
            1 => format!("say \"{i}\"\r\nand more"),
            2 => format!("plain {i}"),
            3 => "\n\n".to_string(),
            _ => format!("ends with newline {i}\n"),
        };
        let end = if i % 7 == 0 { "\r\n" } else { "\n" };
        text.push_str(&format!("{i},\"{}\"{end}", note.replace('"', "\"\"")));
        ids.push(i as i64);
        notes.push(note);
    }
    (text, ids, notes)
}

/// Every split of the first table, read in order: (splits, batches of each split).
async fn read_by_split(src: &DynSource) -> (Vec<Split>, Vec<Vec<SourceBatch>>) {
    let table = &src.tables().await.unwrap()[0];
    let splits = src.splits(table).await.unwrap();
    let mut out = Vec::new();
    for s in &splits {
        out.push(read_split(src, s.clone(), None).await.unwrap());
    }
    (splits, out)
}

fn column_i64(batches: &[SourceBatch], i: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.data
                .column(i)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn column_str(batches: &[SourceBatch], i: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.data.column(i).as_string::<i32>();
            (0..a.len())
                .map(|r| a.value(r).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_large_csv_is_read_in_byte_ranges_every_row_exactly_once() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("t.csv");
    let (text, ids, notes) = tricky_rows(3000);
    std::fs::write(&f, &text).unwrap();
    let size = text.len() as u64;
    let src = csv_source(json!({"path": p(&f), "split_bytes": 4000, "batch_size": 100}));
    let (splits, batches) = read_by_split(&src).await;
    assert!(splits.len() > 10, "{} splits", splits.len());
    let mut next = splits[0].detail["range"]["start"].as_u64().unwrap();
    assert_eq!(
        next,
        "id,note\n".len() as u64,
        "the header belongs to the file"
    );
    for (i, s) in splits.iter().enumerate() {
        assert_eq!(s.id, format!("t#0.{i}"));
        assert_eq!(s.index, i);
        assert_eq!(s.detail["path"], p(&f));
        assert_eq!(s.detail["size"], size);
        assert!(s.detail["mtime_ns"].as_u64().unwrap() > 0);
        let r = &s.detail["range"];
        assert_eq!(r["start"].as_u64().unwrap(), next, "ranges are contiguous");
        next = r["end"].as_u64().unwrap();
        assert_eq!(s.estimated_bytes, Some(next - r["start"].as_u64().unwrap()));
    }
    assert_eq!(next, size, "the ranges cover the file");
    // Each range starts where the previous one's rows end.
    let mut rows_before = 0u64;
    for (s, b) in splits.iter().zip(&batches) {
        assert_eq!(s.detail["range"]["first_row"], rows_before);
        let got = column_i64(b, 0);
        assert_eq!(got.first().copied(), Some(rows_before as i64));
        assert_eq!(
            b.last().unwrap().position.value,
            json!({"rows": got.len()}),
            "positions count the split's rows"
        );
        rows_before += got.len() as u64;
    }
    let all: Vec<SourceBatch> = batches.into_iter().flatten().collect();
    assert_eq!(column_i64(&all, 0), ids);
    assert_eq!(column_str(&all, 1), notes);

    // A compressed file stays one split; a small file too.
    let gzf = d.path().join("z.csv.gz");
    std::fs::write(&gzf, gz(text.as_bytes())).unwrap();
    let z = csv_source(json!({"path": p(&gzf), "split_bytes": 4000}));
    let (zs, zb) = read_by_split(&z).await;
    assert_eq!(zs.len(), 1);
    assert_eq!(zs[0].id, "z#0");
    assert!(zs[0].detail.get("range").is_none());
    assert_eq!(column_i64(&zb[0], 0), ids);
    let whole = csv_source(json!({"path": p(&f), "split_bytes": size}));
    let (ws, _) = read_by_split(&whole).await;
    assert_eq!(ws.len(), 1);
    assert_eq!(ws[0].id, "t#0");

    // Without a header, the first range starts at byte 0 and every record is a row.
    let nh = d.path().join("nh.csv");
    std::fs::write(&nh, &text["id,note\n".len()..]).unwrap();
    let src = csv_source(
        json!({"path": p(&nh), "header": false, "split_bytes": 4000, "schema": {"column_1": "int64"}}),
    );
    let (splits, batches) = read_by_split(&src).await;
    assert_eq!(splits[0].detail["range"]["start"], 0);
    let all: Vec<SourceBatch> = batches.into_iter().flatten().collect();
    assert_eq!(column_i64(&all, 0), ids);
}

#[tokio::test]
async fn the_reader_follows_the_split_detail_only() {
    // Splits planned with one setting are read by a source configured otherwise (as a resume
    // reads the persisted plan): the detail alone says what to read.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("t.csv");
    let (text, ids, _) = tricky_rows(1000);
    std::fs::write(&f, &text).unwrap();
    let planner = csv_source(json!({"path": p(&f), "split_bytes": 3000}));
    let table = &planner.tables().await.unwrap()[0];
    let splits = planner.splits(table).await.unwrap();
    assert!(splits.len() > 3);
    let reader = csv_source(json!({"path": p(&f)}));
    reader.tables().await.unwrap();
    let mut got = Vec::new();
    for s in splits.iter().rev() {
        let mut part = column_i64(&read_split(&reader, s.clone(), None).await.unwrap(), 0);
        part.append(&mut got);
        got = part;
    }
    assert_eq!(got, ids);
    // A resume inside a range skips the range's rows delivered, not the file's.
    let s = splits[2].clone();
    let first = s.detail["range"]["first_row"].as_i64().unwrap();
    let rest = read_split(&reader, s, Some(Position::new("t#0.2", json!({"rows": 5}))))
        .await
        .unwrap();
    assert_eq!(column_i64(&rest, 0)[0], first + 5);
}

#[tokio::test]
async fn a_large_jsonl_file_is_read_in_ranges_with_true_line_numbers() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("e.jsonl");
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!("{{\"id\":{i},\"s\":\"a\\nb {i}\"}}\n"));
        if i % 100 == 0 {
            text.push('\n');
        }
    }
    std::fs::write(&f, &text).unwrap();
    let src = jsonl_source(json!({"path": p(&f), "split_bytes": 3000, "batch_size": 64}));
    let (splits, batches) = read_by_split(&src).await;
    assert!(splits.len() > 10);
    assert_eq!(splits[1].id, "e#0.1");
    let all: Vec<SourceBatch> = batches.into_iter().flatten().collect();
    assert_eq!(column_i64(&all, 0), (0..2000).collect::<Vec<i64>>());
    assert_eq!(column_str(&all, 1)[7], "a\nb 7");

    // A bad line deep in the file is named by its line in the file.
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let bad_line = lines.len() - 10;
    lines[bad_line - 1] = "{\"id\": oops}\n";
    let bad = d.path().join("bad.jsonl");
    std::fs::write(&bad, lines.concat()).unwrap();
    let e = read_err(jsonl_source(json!({"path": p(&bad), "split_bytes": 3000}))).await;
    assert_eq!(e.kind(), ErrorKind::Data);
    assert!(
        e.to_string()
            .contains(&format!("bad.jsonl: line {bad_line}")),
        "{e}"
    );
}

#[tokio::test]
async fn errors_in_a_later_range_count_rows_from_the_file_start() {
    let d = tempfile::tempdir().unwrap();
    let mut text = String::from("id,price\n");
    for i in 0..3000 {
        text.push_str(&format!("{i},{i}.5\n"));
    }
    // Data row 2901 is line 2902 (the header is line 1).
    let vals = d.path().join("vals.csv");
    std::fs::write(&vals, text.replacen("2900,2900.5\n", "2900,abc\n", 1)).unwrap();
    let e = read_err(csv_source(json!({
        "path": p(&vals), "split_bytes": 2000, "batch_size": 50,
        "schema": {"price": "decimal(10,2)"}
    })))
    .await;
    assert!(
        e.to_string()
            .contains("vals.csv: line 2902, column \"price\""),
        "{e}"
    );
    let fields = d.path().join("fields.csv");
    std::fs::write(&fields, text.replacen("2900,2900.5\n", "2900,1,2\n", 1)).unwrap();
    let e = read_err(csv_source(json!({"path": p(&fields), "split_bytes": 2000}))).await;
    assert_eq!(e.kind(), ErrorKind::Data);
    assert!(e.to_string().contains("line 2902"), "{e}");
}

#[tokio::test]
async fn a_file_changed_after_planning_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("t.csv");
    let (text, _, _) = tricky_rows(500);
    std::fs::write(&f, &text).unwrap();
    let src = csv_source(json!({"path": p(&f), "split_bytes": 2000}));
    let table = &src.tables().await.unwrap()[0];
    let splits = src.splits(table).await.unwrap();
    assert!(splits.len() > 2);
    read_split(&src, splits[1].clone(), None).await.unwrap();
    // Rewritten with other content: the planned ranges would cut records apart.
    std::fs::write(&f, format!("{text}500,\"x\"\n")).unwrap();
    let e = read_split(&src, splits[1].clone(), None).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains(&format!("file {} changed since the job was planned", p(&f))),
        "{m}"
    );
    assert!(
        e.hint().unwrap().contains("--from-scratch"),
        "{:?}",
        e.hint()
    );
    // Rewritten with the same size: the modification time tells.
    std::fs::write(&f, &text).unwrap();
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let e = read_split(&src, splits[0].clone(), None).await.unwrap_err();
    assert!(e.to_string().contains("modification time"), "{e}");
}
