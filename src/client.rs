//! A forward-protocol client: used by `tidepool cat`, the examples and the tests.
//!
//! OWNER: client helper. STUB.
