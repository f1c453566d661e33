//! One test binary for all connector integration tests (keeps link time down).
mod conformance;
mod files;
mod mysql;
mod postgres;
mod sqlite;
mod transforms;
