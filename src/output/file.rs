//! `type = "file"`: JSON lines appended to a file per tag (or a path template).
//!
//! OWNER: output helper. STUB.

use super::{Chunk, OutputError};
use crate::config::FileOutputConfig;
use std::path::Path;

/// Appends JSON lines.
#[derive(Debug)]
pub struct FileOutput {
    name: String,
}

impl FileOutput {
    /// Builds it; relative paths are under `data_dir`.
    pub fn new(name: &str, config: &FileOutputConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let _ = (config, data_dir);
        Ok(FileOutput {
            name: name.to_string(),
        })
    }

    /// Appends every event of the chunk.
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let _ = (&self.name, chunk);
        Ok(())
    }
}
