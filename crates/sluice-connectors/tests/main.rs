//! One test binary for all connector integration tests (keeps link time down).
mod files;
mod sqlite;
mod transforms;
mod mysql;
mod postgres;
