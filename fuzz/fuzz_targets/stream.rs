//! A connection's byte stream: framing in random read sizes, decoding, the first frame as a PING (`Target::Stream` of tests/it/fuzz).
#![no_main]

use tidepool_fuzz::{Target, check};

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(Target::Stream, data));
