//! MessagePack on the hot path: a skip-scanner that validates without building values,
//! and a walker over validated `[time, record]` entries.
//!
//! OWNER: frame helper. STUB: signatures are the contract; bodies are placeholders.

pub mod entry;
pub mod scan;

pub use entry::{Entry, entries};
pub use scan::{Limits, Scan, ScanError, scan_value};
