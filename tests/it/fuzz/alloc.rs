//! Allocation accounting: a counting global allocator, per thread.

use super::*;

// ---------------------------------------------------------------------------------
// Allocation accounting

/// Counts the heap each thread holds, so one input's peak can be measured while other
/// threads (other tests, the watchdog) allocate freely. Reallocation counts only the
/// size difference, as the allocator grows big blocks in place.
pub struct Counting;

thread_local! {
    pub(crate) static LIVE: Cell<i64> = const { Cell::new(0) };
    pub(crate) static PEAK: Cell<i64> = const { Cell::new(0) };
    pub(crate) static IN_FUZZ: Cell<bool> = const { Cell::new(false) };
    pub(crate) static PART_PEAK: Cell<u64> = const { Cell::new(0) };
    pub(crate) static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn note(delta: i64) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v);
            }
        });
    });
}

// SAFETY: every call forwards to `System` unchanged; the bookkeeping only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as i64));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
pub(crate) static ALLOC: Counting = Counting;

/// Runs `f`, returning its result and the most heap this thread held above the level
/// at the start.
pub(crate) fn measure<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, peak.saturating_sub(start).max(0) as u64)
}

/// Runs one piece of the daemon's own work (not the checks around it), keeping the
/// largest peak seen in `PART_PEAK`.
pub(crate) fn measured<T>(f: impl FnOnce() -> T) -> T {
    let (out, peak) = measure(f);
    PART_PEAK.with(|p| p.set(p.get().max(peak)));
    out
}

/// The most a single input may make the process allocate: the frame itself, plus
/// the larger of what decoding may build from it (Forward and Message modes convert
/// entries, at most 4x: a 3-byte `[nil, {}]` becomes a 12-byte entry with the arrival
/// EventTime) and an inflated body (the decompressed limit), plus a constant for
/// everything of fixed size (scanner stacks, config structures, buffers).
pub fn alloc_bound(limits: &FrameLimits) -> u64 {
    (limits.max_frame_bytes + (4 * limits.max_frame_bytes).max(limits.max_decompressed_bytes))
        as u64
        + ALLOC_SLACK
}

/// The constant part of [`alloc_bound`].
pub const ALLOC_SLACK: u64 = 4 << 20;
