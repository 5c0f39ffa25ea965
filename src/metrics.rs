//! Counters for everything that enters, leaves or is refused, kept in one place so the
//! HTTP API can expose them and no loss is ever invisible.
//!
//! Plain atomics: the ingest path only ever adds, and readers take a relaxed snapshot.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one forward input (one listener).
#[derive(Debug, Default)]
pub struct InputMetrics {
    /// Connections accepted and handed to a task.
    pub connections_accepted: AtomicU64,
    /// Connections refused before a task started (allow-list, max_connections).
    pub connections_refused: AtomicU64,
    /// Connections currently open.
    pub connections_open: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// Forward handshakes (shared key) that were refused.
    pub auth_failures: AtomicU64,
    /// Frames decoded successfully.
    pub frames: AtomicU64,
    /// Bytes read from clients.
    pub bytes: AtomicU64,
    /// Events accepted and routed.
    pub events: AtomicU64,
    /// Acks written.
    pub acks: AtomicU64,
    /// Non-log signals (Fluent Bit metrics, traces) accepted but not routed.
    pub signals_discarded: AtomicU64,
    /// Connections closed because of bad input, by reason.
    rejections: Mutex<BTreeMap<&'static str, u64>>,
}

impl InputMetrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one rejected frame or connection under a short reason label.
    pub fn reject(&self, reason: &'static str) {
        if let Ok(mut map) = self.rejections.lock() {
            *map.entry(reason).or_default() += 1;
        }
    }

    /// Rejections so far, by reason label.
    pub fn rejections(&self) -> BTreeMap<&'static str, u64> {
        self.rejections
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

/// Counters of one MQTT input (one broker connection), kept while the source runs.
#[derive(Debug, Default)]
pub struct MqttMetrics {
    /// 1 while connected to the broker, else 0.
    pub connected: AtomicU64,
    /// Connections the broker accepted (CONNACK), the first one included.
    pub connects: AtomicU64,
    /// Connection attempts that failed or connections that broke; each is followed by
    /// a reconnect after a backoff.
    pub connection_errors: AtomicU64,
    /// Messages (PUBLISH packets) received.
    pub messages: AtomicU64,
    /// Payload bytes received.
    pub bytes: AtomicU64,
    /// Events routed (one per message).
    pub events: AtomicU64,
    /// QoS 1/2 messages acknowledged to the broker after they were durable.
    pub acks: AtomicU64,
    /// Acks not sent because the connection they belonged to broke first; the broker
    /// sends those messages again (counted as duplicates downstream, never lost).
    pub acks_abandoned: AtomicU64,
    /// Batches the pipeline refused (e.g. buffer full with `throw_exception`); their
    /// messages are not acked and come again after a reconnect.
    pub emit_failures: AtomicU64,
    /// Messages dropped because a single one is bigger than a routed output's whole
    /// buffer (`total_limit_size`): acked, logged, never storable.
    pub dropped_too_large: AtomicU64,
    /// Payloads kept raw with `_parse_error`, by reason (`json`, `msgpack`, `too_large`).
    bad_payloads: Mutex<BTreeMap<&'static str, u64>>,
}

impl MqttMetrics {
    /// Counts one payload kept raw, under a short reason label.
    pub fn bad_payload(&self, reason: &'static str) {
        if let Ok(mut map) = self.bad_payloads.lock() {
            *map.entry(reason).or_default() += 1;
        }
    }

    /// Payloads kept raw so far, by reason label.
    pub fn bad_payloads(&self) -> BTreeMap<&'static str, u64> {
        self.bad_payloads
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

/// Counters of the router.
#[derive(Debug, Default)]
pub struct RouterMetrics {
    /// Events whose tag no `[[match]]` matched, by tag.
    unmatched: Mutex<BTreeMap<String, u64>>,
    /// Events dropped on purpose by filters (grep, sample, throttle, rewrite_tag).
    pub filtered: AtomicU64,
}

impl RouterMetrics {
    /// Counts events filters dropped.
    pub fn filtered_out(&self, n: u64) {
        self.filtered.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts unmatched events of `tag`; returns true the first time the tag is seen,
    /// so the caller logs it once per tag rather than once per event.
    pub fn unmatched(&self, tag: &str, n: u64) -> bool {
        let Ok(mut map) = self.unmatched.lock() else {
            return false;
        };
        match map.get_mut(tag) {
            Some(c) => {
                *c += n;
                false
            }
            None => {
                map.insert(tag.to_string(), n);
                true
            }
        }
    }

    /// Unmatched events so far, by tag.
    pub fn unmatched_counts(&self) -> BTreeMap<String, u64> {
        self.unmatched.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
