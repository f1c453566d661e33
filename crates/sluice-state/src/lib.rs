//! sluice-state
