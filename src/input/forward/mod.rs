//! The Fluentd forward protocol input (reference: `forward-protocol.md`).
//!
//! `frame` and `handshake` are pure functions over bytes; `listener`, `conn` and `udp`
//! own the sockets; `enrich` rewrites records only when the config asks for it.

pub mod conn;
pub mod enrich;
pub mod frame;
pub mod handshake;
pub mod hostname;
pub mod listener;
pub mod ratelimit;
pub mod udp;
