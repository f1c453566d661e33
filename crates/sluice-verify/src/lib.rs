//! sluice-verify
