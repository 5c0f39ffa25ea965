//! Routing by tag: patterns and the router snapshot.

pub mod pattern;
