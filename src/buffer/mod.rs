//! The durable chunk buffer between the router and each output.
//!
//! OWNER: buffer helper. STUB.
