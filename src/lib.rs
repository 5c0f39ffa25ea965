//! tidepool: a Fluentd-compatible log and telemetry aggregator.
//!
//! The spine: a socket is accepted by [`input::forward`], whose per-connection task
//! runs TLS and the forward handshake, cuts the byte stream into frames and validates
//! them without decoding records ([`msgpack`]). Each frame becomes an [`event::Batch`]
//! (a tag plus MessagePack entry bytes) that [`pipeline`] routes by tag to named
//! [`output`]s; the connection writes its ack only once every output has accepted
//! the batch. [`config`] turns the operator's TOML into checked values once, and
//! [`daemon`] wires it all together and owns shutdown.

pub mod api;
pub mod buffer;
pub mod client;
pub mod config;
pub mod daemon;
pub mod event;
pub mod input;
pub mod metrics;
pub mod msgpack;
pub mod output;
pub mod pipeline;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod tls;
