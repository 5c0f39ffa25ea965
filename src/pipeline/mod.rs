//! Routing by tag: Fluentd's tag patterns and the immutable router snapshot.

pub mod explain;
pub mod filter;
pub mod pattern;
pub mod router;

pub use router::{Delivery, EmitError, OutputHandle, Outputs, Routed, Router};
