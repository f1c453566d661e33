//! Built-in transforms. (Stub: being written.)

use std::sync::Arc;

use serde::Deserialize;
use sluice_core::{Error, Result, Transform};

/// Stub.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    pub columns: std::collections::BTreeMap<String, String>,
}

/// A `[[transform]]` section.
#[derive(Debug, Clone)]
pub enum TransformConfig {
    Rename(RenameConfig),
}
sluice_core::tagged_enum!(TransformConfig { "rename" => Rename });

impl TransformConfig {
    /// Validates and builds the transform.
    pub fn build(&self) -> Result<Arc<dyn Transform>> {
        Err(Error::internal("not yet"))
    }
}
