//! MessagePack on the hot path: a skip-scanner that validates without building values,
//! and a walker over validated `[time, record]` entries.
//!
//! Architecture invariant: nothing here allocates from a length a client declared; the
//! only growth is the scanner's stack of open containers, bounded by the depth limit.

pub mod entry;
pub mod head;
pub mod scan;
pub mod write;

pub use entry::{Entry, entries};
pub use scan::{Limits, Scan, ScanError, Scanner, scan_value};

#[cfg(test)]
mod tests;
