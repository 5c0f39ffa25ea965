//! The Fluentd forward protocol input (reference: `forward-protocol.md`).
//!
//! `frame` and `handshake` are pure functions over bytes; `listener`, `conn` and `udp`
//! own the sockets.

pub mod frame;
pub mod handshake;
