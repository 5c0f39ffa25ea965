//! The first frame of a connection answered as a PING (`Target::Handshake` of tests/it/fuzz).
#![no_main]

use tidepool_fuzz::{Target, check};

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(Target::Handshake, data));
