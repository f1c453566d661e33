//! sluice-server: placeholder for the REST server issue (not implemented yet).
//!
//! DESIGN.md places it here: the REST API shaped like Kafka Connect, auth, console, metrics, and the worker loop.
