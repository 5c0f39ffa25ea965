//! Keeps warn logs about bad clients readable under attack: at most a burst per second
//! per listener, with a count of what was held back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines allowed per one-second window.
const BURST: u64 = 20;

/// A per-listener limiter for warn lines.
#[derive(Debug, Default)]
pub struct LogLimiter {
    window: AtomicU64,
    count: AtomicU64,
    suppressed: AtomicU64,
}

/// Whether to log, and how many lines were held back before this one.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines were dropped in earlier windows.
    Log {
        /// Lines held back since the last logged one.
        suppressed: u64,
    },
    /// Drop it (counted).
    Drop,
}

impl LogLimiter {
    /// Asks whether one more warn line may be written now.
    pub fn check(&self) -> Verdict {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.window.swap(now, Ordering::Relaxed) != now {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < BURST {
            Verdict::Log {
                suppressed: self.suppressed.swap(0, Ordering::Relaxed),
            }
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            Verdict::Drop
        }
    }

    /// Logs one warn line about a client of `listener`, unless this window's burst
    /// is spent; the next line logged says how many were held back.
    pub fn warn(&self, listener: &str, peer: std::net::SocketAddr, reason: &str) {
        match self.check() {
            Verdict::Log { suppressed: 0 } => {
                tracing::warn!(listener = %listener, %peer, "{reason}");
            }
            Verdict::Log { suppressed } => {
                tracing::warn!(listener = %listener, %peer, suppressed, "{reason} ({suppressed} similar lines suppressed)");
            }
            Verdict::Drop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_drop() {
        let l = LogLimiter::default();
        let logged = (0..100)
            .filter(|_| matches!(l.check(), Verdict::Log { .. }))
            .count();
        // All 100 calls almost surely fall in one or two one-second windows.
        assert!((20..=40).contains(&logged), "logged {logged}");
    }
}
