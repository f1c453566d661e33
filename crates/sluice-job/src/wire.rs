//! Turns a checked job file into the engine's [`JobSpec`].

use std::sync::Arc;

use sluice_connectors::job::{JobFile, JobMode};
use sluice_core::Result;
use sluice_engine::JobSpec;

/// Batches buffered between each reader and its writer.
const CHANNEL_CAPACITY: usize = 4;

/// Builds the source, sink and transforms of `job` (no I/O yet).
pub fn build_spec(job: &JobFile) -> Result<JobSpec> {
    let source = job.source.build_for(&job.sink, &job.job.name)?;
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

/// What `sluice validate` and the REST API's validate check, moving no data: every table is
/// described and split, the source can read them and the sink can write them (privileges,
/// types). Errors name the option they concern (`source.…`, `sink.…`) when they can.
pub async fn check(spec: &sluice_engine::JobSpec) -> Result<Vec<sluice_engine::PlannedTable>> {
    let mut planned = sluice_engine::describe_tables(spec, &sluice_engine::Progress::new()).await?;
    let sources: Vec<_> = planned.iter().map(|t| t.source.clone()).collect();
    spec.source
        .check(&sources)
        .await
        .map_err(|e| e.within("source"))?;
    for t in &mut planned {
        sluice_engine::list_splits(spec, t).await?;
    }
    let plans: Vec<_> = planned.iter().map(|t| t.plan.clone()).collect();
    spec.sink
        .check(&plans)
        .await
        .map_err(|e| e.within("sink"))?;
    Ok(planned)
}
