//! /api/records query parameters through parse_params (`Target::Params` of tests/it/fuzz).
#![no_main]

use tidepool_fuzz::{Target, check};

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(Target::Params, data));
