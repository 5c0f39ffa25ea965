//! libFuzzer entry points for tidepool's decoders: one `cargo fuzz` target per target
//! of the stable fuzz engine (`tests/it/fuzz/`, included here, not copied), each
//! running the engine's own checks on libFuzzer's inputs.
//!
//! What an input must pass is [`engine::check_one`]'s definition (module docs of
//! `tests/it/fuzz/mod.rs`): no panic, allocation within [`engine::alloc_bound`], and for
//! frames the decoder accepts, agreement with rmpv and framing independent of read
//! sizes. A failure panics with the engine's description, which libFuzzer reports as a
//! crash and saves under `fuzz/artifacts/<target>/`. Hangs are libFuzzer's `-timeout`.

#[path = "../../tests/it/fuzz/mod.rs"]
pub mod engine;

pub use engine::Target;

use std::hash::{Hash, Hasher};

/// Runs one libFuzzer input through every check of `target`, panicking with the
/// engine's description of the failure, so libFuzzer saves the input as a crash.
///
/// The read sizes the `stream` target splits its input into come from a hash of the
/// input, so a saved crash reproduces exactly.
pub fn check(target: Target, data: &[u8]) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    let mut rng = engine::Rng::new(h.finish());
    let mut stats = engine::Stats::default();
    let (result, _) = engine::check_one(target, data, &engine::fuzz_limits(), &mut rng, &mut stats);
    if let Err(what) = result {
        panic!("{} input failed: {what}", target.name());
    }
}
