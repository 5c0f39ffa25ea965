//! `type = "stdout"`: `time tag: json` lines, like Fluentd's stdout output.
//!
//! OWNER: output helper. STUB.

use super::{Chunk, OutputError};

/// Writes lines to the process's stdout.
#[derive(Debug)]
pub struct StdoutOutput {
    name: String,
}

impl StdoutOutput {
    /// A stdout output named `name`.
    pub fn new(name: &str) -> Self {
        StdoutOutput {
            name: name.to_string(),
        }
    }

    /// Prints every event of the chunk.
    pub async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        let _ = (&self.name, chunk);
        Ok(())
    }
}
