//! Inputs: where events enter tidepool.

pub mod forward;
pub mod http;
pub mod mqtt;
