//! One test binary for all connector integration tests (keeps link time down).
mod conformance;
mod files;
mod mysql;
mod postgres;
mod sqlite;
mod transforms;

/// The rows of an event a batch source sent (they send nothing else).
pub fn into_batch(e: sluice_core::SourceEvent) -> sluice_core::SourceBatch {
    match e {
        sluice_core::SourceEvent::Batch(b) => b,
        other => panic!("a batch source sent {other:?}"),
    }
}
