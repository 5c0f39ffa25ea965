//! A CompressedPackedForward frame whose gzip body is the input (`Target::Gzip` of tests/it/fuzz).
#![no_main]

use tidepool_fuzz::{Target, check};

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(Target::Gzip, data));
