//! Inputs: where events enter tidepool.

pub mod forward;
pub mod mqtt;
