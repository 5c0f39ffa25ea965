//! The MessagePack skip-scanner and the entry walker over raw bytes (`Target::Scan` of tests/it/fuzz).
#![no_main]

use tidepool_fuzz::{Target, check};

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(Target::Scan, data));
