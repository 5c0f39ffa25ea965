//! Integration tests: a real `tidepool` process, real sockets, real TLS, real files.
//! One test binary so the 2-core CI links once.

mod bad_input;
mod cli;
mod clients;
mod durability;
mod handshake;
mod load;
mod mqtt;
mod reload;
mod routing;
mod store;
mod td;
mod tls;
mod util;
mod vectors;
