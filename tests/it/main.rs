//! Integration tests: a real `tidepool` process, real sockets, real TLS, real files.
//! One test binary so the 2-core CI links once.

mod bad_input;
mod cli;
mod clients;
mod durability;
mod faults;
mod fuzz;
mod handshake;
mod hostile;
mod http_input;
mod limits;
mod load;
mod mqtt;
mod postgres;
mod reload;
mod routing;
mod store;
mod td;
#[path = "../../src/tls/test_ca.rs"]
mod test_ca;
mod tls;
mod util;
mod vectors;
