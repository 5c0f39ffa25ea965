//! Config text through Config::parse (`Target::Config` of tests/it/fuzz).
#![no_main]

use tidepool_fuzz::{Target, check};

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(Target::Config, data));
