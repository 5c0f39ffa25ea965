//! Skip-scanner: finds where one MessagePack value ends, checking it is well formed.

/// Bounds that a scan enforces before trusting any length a client declared.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest value accepted, in bytes; a header declaring more is rejected at once.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and maps accepted.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 32 << 20,
            max_depth: 64,
        }
    }
}

/// Outcome of scanning a buffer that may hold only part of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole value occupies the first `n` bytes.
    Complete(usize),
    /// The value is not complete; do not scan again before `at_least` bytes are buffered.
    Incomplete {
        /// Lower bound on the bytes needed.
        at_least: usize,
    },
}

/// Why bytes are not acceptable MessagePack.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    /// Placeholder.
    #[error("invalid MessagePack at byte {offset}: {what}")]
    Invalid {
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// Scans one value at the start of `buf`.
pub fn scan_value(_buf: &[u8], _limits: &Limits) -> Result<Scan, ScanError> {
    Err(ScanError::Invalid {
        offset: 0,
        what: "stub",
    })
}
