//! sluice-scheduler: placeholder for the DAG scheduler issue (not implemented yet).
//!
//! DESIGN.md places it here: DAGs of tasks with dependencies, triggers, retries, timeouts and process isolation.
