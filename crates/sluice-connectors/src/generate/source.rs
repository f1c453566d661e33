//! Generating rows: one table, chunk splits, positions that are the next id.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Float64Array, Int64Array, StringBuilder, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sluice_core::batch::{Position, Split};
use sluice_core::source::{BatchSender, Source, SourceBatch, SourceTable};
use sluice_core::{ErrorKind, Persisted, Result, TableId, TableSchema};

/// 2026-01-01T00:00:00Z in microseconds since the epoch: `created_at` of id 0.
const EPOCH_2026_US: i64 = 1_767_225_600_000_000;

/// A split: the ids `[from, to)`, or from `from` on without end (`to = None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateSplit {
    pub from: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// Where a split stands: the next id it generates. Persisted as `{"next": 1024}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratePosition {
    pub next: u64,
}

/// The generate source. Built by [`GenerateSourceConfig::build`](super::GenerateSourceConfig::build).
pub struct GenerateSource {
    table: TableId,
    rows: Option<u64>,
    rate: Option<f64>,
    batch_size: usize,
    chunk_rows: u64,
    schema: SchemaRef,
}

impl GenerateSource {
    pub(crate) fn new(
        table: TableId,
        rows: Option<u64>,
        rate: Option<f64>,
        batch_size: usize,
        chunk_rows: u64,
    ) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("amount", DataType::Float64, false),
            Field::new(
                "created_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                false,
            ),
        ]));
        GenerateSource {
            table,
            rows,
            rate,
            batch_size,
            chunk_rows,
            schema,
        }
    }

    /// The rows with ids `[from, to)`.
    fn batch(&self, from: u64, to: u64) -> Result<RecordBatch> {
        let ids: Vec<i64> = (from..to).map(|i| i as i64).collect();
        let mut names = StringBuilder::with_capacity(ids.len(), ids.len() * 10);
        for i in &ids {
            names.append_value(format!("row-{i}"));
        }
        let amount =
            Float64Array::from_iter_values(ids.iter().map(|i| (i * 7 % 1000) as f64 / 4.0));
        let created = TimestampMicrosecondArray::from_iter_values(
            ids.iter().map(|i| EPOCH_2026_US + i * 1_000_000),
        )
        .with_timezone("UTC");
        Ok(RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(names.finish()),
                Arc::new(amount),
                Arc::new(created),
            ],
        )?)
    }
}

impl Persisted for GenerateSplit {}
impl Persisted for GeneratePosition {}

#[async_trait]
impl Source for GenerateSource {
    async fn tables(&self) -> Result<Vec<SourceTable>> {
        let mut schema = TableSchema::new(self.table.clone(), self.schema.clone());
        schema.primary_key = vec!["id".into()];
        Ok(vec![SourceTable {
            schema,
            estimated_rows: self.rows,
            estimated_bytes: None,
        }])
    }

    async fn splits(&self, table: &SourceTable) -> Result<Vec<Split>> {
        let ranges: Vec<GenerateSplit> = match self.rows {
            None => vec![GenerateSplit { from: 0, to: None }],
            Some(0) => vec![GenerateSplit {
                from: 0,
                to: Some(0),
            }],
            Some(n) => (0..n.div_ceil(self.chunk_rows))
                .map(|i| GenerateSplit {
                    from: i * self.chunk_rows,
                    to: Some(((i + 1) * self.chunk_rows).min(n)),
                })
                .collect(),
        };
        ranges
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(Split {
                    id: format!("{}#{i}", table.schema.id),
                    table: table.schema.id.clone(),
                    index: i,
                    estimated_rows: r.to.map(|t| t - r.from),
                    estimated_bytes: None,
                    detail: r.to_json(),
                    continues: false,
                    start: None,
                })
            })
            .collect()
    }

    async fn read(&self, split: Split, resume: Option<Position>, out: BatchSender) -> Result<()> {
        let range = GenerateSplit::from_detail(&split)?;
        let mut next = match &resume {
            Some(p) => GeneratePosition::from_value(&split.id, &p.value)?.next,
            None => range.from,
        };
        let started = tokio::time::Instant::now();
        let mut sent = 0u64;
        loop {
            let end = match range.to {
                Some(to) if next >= to => return Ok(()),
                Some(to) => to.min(next + self.batch_size as u64),
                None => next + self.batch_size as u64,
            };
            if let Some(rate) = self.rate {
                // Paced: the rows sent so far are due no earlier than sent / rate.
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = out.stop_token().cancelled() => return Ok(()),
                }
            }
            let data = self.batch(next, end)?;
            let bytes = data.get_array_memory_size() as u64;
            let position =
                Position::new(split.id.clone(), GeneratePosition { next: end }.to_json());
            match out
                .send(SourceBatch {
                    data,
                    position,
                    bytes,
                })
                .await
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Stopped => return Ok(()),
                Err(e) => return Err(e),
            }
            sent += end - next;
            next = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_splits_keep_their_persisted_form() {
        // Golden: these strings are in checkpoint tables; changing them breaks resumes.
        assert_eq!(
            serde_json::to_string(&GeneratePosition { next: 1024 }).unwrap(),
            r#"{"next":1024}"#
        );
        assert_eq!(
            serde_json::to_string(&GenerateSplit {
                from: 5,
                to: Some(9)
            })
            .unwrap(),
            r#"{"from":5,"to":9}"#
        );
        assert_eq!(
            serde_json::to_string(&GenerateSplit { from: 0, to: None }).unwrap(),
            r#"{"from":0}"#
        );
        let p: GeneratePosition = serde_json::from_str(r#"{"next":7}"#).unwrap();
        assert_eq!(p.next, 7);
    }

    #[test]
    fn the_same_id_always_makes_the_same_row() {
        let s = GenerateSource::new(TableId::new(["t"]), Some(10), None, 4, 4);
        let a = s.batch(3, 6).unwrap();
        let b = s.batch(3, 6).unwrap();
        assert_eq!(a, b);
        let ids = a.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values(), &[3, 4, 5]);
    }

    #[tokio::test]
    async fn chunks_cover_every_id_once() {
        let s = GenerateSource::new(TableId::new(["t"]), Some(10), None, 4, 4);
        let t = s.tables().await.unwrap().remove(0);
        let splits = s.splits(&t).await.unwrap();
        let ranges: Vec<GenerateSplit> = splits
            .iter()
            .map(|s| serde_json::from_value(s.detail.clone()).unwrap())
            .collect();
        assert_eq!(
            ranges,
            vec![
                GenerateSplit {
                    from: 0,
                    to: Some(4)
                },
                GenerateSplit {
                    from: 4,
                    to: Some(8)
                },
                GenerateSplit {
                    from: 8,
                    to: Some(10)
                },
            ]
        );
    }
}
