//! The short, fixed fuzz run and checks of the engine itself.

use super::*;

/// Runs `f` on a thread with a big stack: rmpv's reference decode recurses.
fn big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("fuzz thread")
}

#[test]
fn a_fixed_fuzz_run_finds_no_panic_disagreement_or_overallocation() {
    let report = big_stack(|| {
        run(&FuzzConfig {
            seed: 0x7157_c0de,
            iterations: Some(15_000),
            duration: None,
            crash_dir: Some(repo().join("target/fuzz-failures")),
            hang_after: Duration::from_secs(120),
            progress_every: None,
        })
    });
    let details: Vec<String> = report
        .failures
        .iter()
        .map(|f| format!("{} ({:?}): {}", f.target.name(), f.saved, f.what))
        .collect();
    assert!(report.failures.is_empty(), "{}", details.join("\n\n"));
    assert_eq!(report.inputs, 15_000);
    // The run exercised the decoder's happy path too, with rmpv agreeing.
    assert!(report.stats.agreed >= 100, "only {:?} agreed", report.stats);
    assert!(
        report.per_target.len() == Target::ALL.len(),
        "{:?}",
        report.per_target
    );
}

#[test]
fn generated_frames_are_accepted_and_agree_with_rmpv() {
    big_stack(|| {
        let limits = fuzz_limits();
        let mut rng = Rng::new(99);
        let mut stats = Stats::default();
        for _ in 0..300 {
            let f = random_frame(&mut rng);
            let (r, _) = check_one(Target::Stream, &f, &limits, &mut rng, &mut stats);
            assert!(r.is_ok(), "{r:?}");
        }
        assert!(stats.agreed >= 150, "{stats:?}");
    });
}

#[test]
fn the_reference_decoder_applies_the_arrival_time_rule() {
    let arrival = EventTime { secs: 5, nanos: 6 };
    // ["t", 0, {"a": 1}]: time 0 is replaced by arrival.
    let frame = [0x93, 0xa1, b't', 0x00, 0x81, 0xa1, b'a', 0x01];
    let mut want = vec![0x92];
    arrival.encode(&mut want);
    want.extend_from_slice(&[0x81, 0xa1, b'a', 0x01]);
    assert_eq!(
        reference_decode(&frame, arrival, 1 << 20),
        Ok(RefFrame::Events {
            tag: b"t".to_vec(),
            count: 1,
            entries: want,
            chunk: None
        })
    );
}

#[test]
fn the_worst_amplification_stays_within_the_allocation_bound() {
    big_stack(|| {
        let limits = fuzz_limits();
        let frame = amplifying_frame(&limits);
        let mut stats = Stats::default();
        let (r, peak) = check_one(
            Target::Stream,
            &frame,
            &limits,
            &mut Rng::new(3),
            &mut stats,
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(stats.agreed, 1, "accepted and equal to the rmpv reading");
        // The converted entries are about 4 frames big, and were counted.
        assert!(peak >= 4 * frame.len() as u64, "{peak}");
        assert!(peak <= alloc_bound(&limits), "{peak}");
    });
}

#[test]
fn a_gzip_bomb_costs_at_most_the_decompressed_limit() {
    let limits = fuzz_limits();
    let bomb = gzip(&vec![0u8; 64 << 20]);
    let mut frame = vec![0x93, 0xa1, b't', 0xc6];
    frame.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bomb);
    frame.extend_from_slice(&[0x81, 0xaa]);
    frame.extend_from_slice(b"compressed");
    frame.push(0xa4);
    frame.extend_from_slice(b"gzip");
    let (r, peak) = measure(|| {
        decode_frame(
            Bytes::copy_from_slice(&frame),
            Encoding::MessagePack,
            EventTime::now(),
            &limits,
        )
    });
    assert!(r.is_err(), "the bomb is refused");
    // The inflater's own state (window, buffers) is the only extra.
    let bound = (frame.len() + limits.max_decompressed_bytes + (256 << 10)) as u64;
    assert!(peak <= bound, "{peak} > {bound}");
}

#[test]
fn the_allocation_counter_sees_a_big_allocation() {
    let (_, peak) = measure(|| vec![1u8; 3 << 20]);
    assert!(peak >= 3 << 20, "{peak}");
}
