//! Turns a checked job file into the engine's [`JobSpec`].

use std::sync::Arc;

use sluice_connectors::job::{JobFile, JobMode};
use sluice_core::Result;
use sluice_engine::JobSpec;

/// Batches buffered between each reader and its writer.
const CHANNEL_CAPACITY: usize = 4;

/// Builds the source, sink and transforms of `job` (no I/O yet).
pub fn build_spec(job: &JobFile) -> Result<JobSpec> {
    let source = job.source.build_for(&job.sink)?;
    let sink = job.sink.build()?;
    let transforms = job
        .transform
        .iter()
        .map(|t| t.build())
        .collect::<Result<Vec<_>>>()?;
    let sink_cfg = job.sink.clone();
    let parallelism = job.job.parallelism.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    Ok(JobSpec {
        name: job.job.name.clone(),
        parallelism,
        timeout: job.job.timeout.map(|t| t.0),
        source,
        sink,
        transforms,
        targets: Arc::new(move |id| sink_cfg.target_of(id)),
        check_tables: {
            let sink_cfg = job.sink.clone();
            Arc::new(move |ids| sink_cfg.check_table_map(ids))
        },
        channel_capacity: CHANNEL_CAPACITY,
        // The runner replaces these with the job's generation and its state-store log.
        context: sluice_core::JobContext {
            job: job.job.name.clone(),
            generation: String::new(),
            ..Default::default()
        },
        checkpoints: Arc::new(sluice_engine::NoCheckpoints),
        bad_records: Arc::new(sluice_engine::BadRecordPolicy::new(
            job.errors.max_errors,
            job.errors.max_error_ratio,
            job.errors.dead_letter.as_ref().map(|d| d.path.clone()),
        )),
        retry: sluice_engine::RetryPolicy::default(),
        streaming: (job.job.mode == JobMode::Streaming).then(|| {
            let d = sluice_engine::Streaming::DEFAULT;
            sluice_engine::Streaming {
                interval: job.job.checkpoint_interval.map_or(d.interval, |t| t.0),
                timeout: job.job.checkpoint_timeout.map_or(d.timeout, |t| t.0),
            }
        }),
    })
}
