//! A chunk file image through recovery (as found, and with its checksums fixed) (`Target::Chunk` of tests/it/fuzz).
#![no_main]

use tidepool_fuzz::{Target, check};

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(Target::Chunk, data));
