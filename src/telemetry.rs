//! The daemon's status (monitor_agent-like JSON) and Prometheus metrics, read from the
//! counters of every input, the router and every output's buffer.
//!
//! The daemon refreshes the lists on start and on every reload; readers (the HTTP API)
//! take a consistent copy under a short read lock and never block the ingest path.

use crate::metrics::{InputMetrics, MqttMetrics, RouterMetrics};
use crate::pipeline::OutputHandle;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

/// One input as the status shows it.
#[derive(Clone, Debug)]
pub struct InputInfo {
    /// `forward 0.0.0.0:24227 (plain)`-like label.
    pub label: String,
    /// Bound address.
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Its counters.
    pub metrics: Arc<InputMetrics>,
}

/// One MQTT input as the status shows it.
#[derive(Clone, Debug)]
pub struct MqttInputInfo {
    /// `mqtt #2 127.0.0.1:1883`-like label.
    pub label: String,
    /// `host:port` of the broker.
    pub broker: String,
    /// The topic filters it subscribes to.
    pub topics: Vec<String>,
    /// The MQTT client id it connects with.
    pub client_id: String,
    /// Its counters.
    pub metrics: Arc<MqttMetrics>,
}

/// What the status and metrics endpoints read.
#[derive(Debug, Default)]
pub struct Telemetry {
    inputs: RwLock<Vec<InputInfo>>,
    mqtt: RwLock<Vec<MqttInputInfo>>,
    outputs: RwLock<Vec<Arc<OutputHandle>>>,
    router: RwLock<Option<Arc<RouterMetrics>>>,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut g) => *g = value,
        Err(p) => *p.into_inner() = value,
    }
}

impl Telemetry {
    /// Replaces what is reported (on start and after every reload).
    pub fn update(
        &self,
        inputs: Vec<InputInfo>,
        outputs: Vec<Arc<OutputHandle>>,
        router: Arc<RouterMetrics>,
    ) {
        write(&self.inputs, inputs);
        write(&self.outputs, outputs);
        write(&self.router, Some(router));
    }

    /// Replaces the MQTT inputs reported (on start and after every reload).
    pub fn update_mqtt(&self, inputs: Vec<MqttInputInfo>) {
        write(&self.mqtt, inputs);
    }

    /// Per input and output, like Fluentd's monitor_agent `/api/plugins.json`.
    pub fn status(&self) -> Value {
        let mut plugins = Vec::new();
        for i in read(&self.inputs) {
            let m = &i.metrics;
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            plugins.push(json!({
                "plugin_id": i.label,
                "plugin_category": "input",
                "type": i.label.split(' ').next().unwrap_or("forward"),
                "listen": i.addr.to_string(),
                "tls": i.tls,
                "connections_open": get(&m.connections_open),
                "connections_accepted": get(&m.connections_accepted),
                "connections_refused": get(&m.connections_refused),
                "tls_handshake_failures": get(&m.tls_handshake_failures),
                "auth_failures": get(&m.auth_failures),
                "frames": get(&m.frames),
                "bytes": get(&m.bytes),
                "emit_records": get(&m.events),
                "acks": get(&m.acks),
                "signals_discarded": get(&m.signals_discarded),
                "rejections": m.rejections(),
            }));
        }
        for i in read(&self.mqtt) {
            let m = &i.metrics;
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            plugins.push(json!({
                "plugin_id": i.label,
                "plugin_category": "input",
                "type": "mqtt",
                "broker": i.broker,
                "topics": i.topics,
                "client_id": i.client_id,
                "connected": get(&m.connected) == 1,
                "connects": get(&m.connects),
                "connection_errors": get(&m.connection_errors),
                "messages": get(&m.messages),
                "bytes": get(&m.bytes),
                "emit_records": get(&m.events),
                "acks": get(&m.acks),
                "acks_abandoned": get(&m.acks_abandoned),
                "emit_failures": get(&m.emit_failures),
                "dropped_too_large": get(&m.dropped_too_large),
                "bad_payloads": m.bad_payloads(),
            }));
        }
        for o in read(&self.outputs) {
            let s = o.buffer.metrics().snapshot();
            plugins.push(json!({
                "plugin_id": o.name,
                "plugin_category": "output",
                "type": o.output.get().kind(),
                "buffer_queue_length": s.queued_chunks,
                "buffer_total_queued_size": s.queued_bytes + s.staged_bytes,
                "buffer_stage_length": s.staged_chunks,
                "buffer_stage_byte_size": s.staged_bytes,
                "retry_count": s.retry_count,
                "emit_count": s.emit_count,
                "emit_records": s.emit_records,
                "flush_count": s.flush_count,
                "flush_records": s.flush_records,
                "dead_letter_count": s.dead_letter_count,
                "dropped_records": s.dropped_records,
                "rejected_appends": s.rejected_appends,
                "blocked_appends": s.blocked_appends,
                "write_errors": s.write_errors,
                "acked_events": s.acked_events,
            }));
        }
        let (unmatched, filtered) = match read(&self.router) {
            Some(r) => (r.unmatched_counts(), r.filtered.load(Ordering::Relaxed)),
            None => (Default::default(), 0),
        };
        json!({
            "plugins": plugins,
            "router": { "unmatched_events_by_tag": unmatched, "filtered_events": filtered },
        })
    }

    /// Prometheus text exposition of every counter, with a reason label on every
    /// rejection so no loss is invisible.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let inputs = read(&self.inputs);
        type InputGet = fn(&InputMetrics) -> u64;
        let input_counters: [(&str, &str, InputGet); 10] = [
            (
                "tidepool_input_connections_accepted_total",
                "counter",
                |m| m.connections_accepted.load(Ordering::Relaxed),
            ),
            ("tidepool_input_connections_refused_total", "counter", |m| {
                m.connections_refused.load(Ordering::Relaxed)
            }),
            ("tidepool_input_connections_open", "gauge", |m| {
                m.connections_open.load(Ordering::Relaxed)
            }),
            (
                "tidepool_input_tls_handshake_failures_total",
                "counter",
                |m| m.tls_handshake_failures.load(Ordering::Relaxed),
            ),
            ("tidepool_input_auth_failures_total", "counter", |m| {
                m.auth_failures.load(Ordering::Relaxed)
            }),
            ("tidepool_input_frames_total", "counter", |m| {
                m.frames.load(Ordering::Relaxed)
            }),
            ("tidepool_input_bytes_total", "counter", |m| {
                m.bytes.load(Ordering::Relaxed)
            }),
            ("tidepool_input_events_total", "counter", |m| {
                m.events.load(Ordering::Relaxed)
            }),
            ("tidepool_input_acks_total", "counter", |m| {
                m.acks.load(Ordering::Relaxed)
            }),
            ("tidepool_input_signals_discarded_total", "counter", |m| {
                m.signals_discarded.load(Ordering::Relaxed)
            }),
        ];
        for (name, kind, get) in input_counters {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for i in &inputs {
                let _ = writeln!(
                    out,
                    "{name}{{input=\"{}\"}} {}",
                    escape(&i.label),
                    get(&i.metrics)
                );
            }
        }
        let _ = writeln!(out, "# TYPE tidepool_input_rejections_total counter");
        for i in &inputs {
            for (reason, n) in i.metrics.rejections() {
                let _ = writeln!(
                    out,
                    "tidepool_input_rejections_total{{input=\"{}\",reason=\"{}\"}} {n}",
                    escape(&i.label),
                    escape(reason)
                );
            }
        }
        mqtt_prometheus(&read(&self.mqtt), &mut out);
        if let Some(r) = read(&self.router) {
            let _ = writeln!(out, "# TYPE tidepool_router_unmatched_events_total counter");
            for (tag, n) in r.unmatched_counts() {
                let _ = writeln!(
                    out,
                    "tidepool_router_unmatched_events_total{{tag=\"{}\"}} {n}",
                    escape(&tag)
                );
            }
            let _ = writeln!(out, "# TYPE tidepool_router_filtered_events_total counter");
            let _ = writeln!(
                out,
                "tidepool_router_filtered_events_total {}",
                r.filtered.load(Ordering::Relaxed)
            );
        }
        let outputs = read(&self.outputs);
        let snaps: Vec<_> = outputs
            .iter()
            .map(|o| (o.name.clone(), o.buffer.metrics().snapshot()))
            .collect();
        type Get = fn(&crate::buffer::MetricsSnapshot) -> u64;
        let buffer_counters: [(&str, &str, Get); 17] = [
            ("tidepool_buffer_queued_chunks", "gauge", |s| {
                s.queued_chunks
            }),
            ("tidepool_buffer_queued_bytes", "gauge", |s| s.queued_bytes),
            ("tidepool_buffer_staged_chunks", "gauge", |s| {
                s.staged_chunks
            }),
            ("tidepool_buffer_staged_bytes", "gauge", |s| s.staged_bytes),
            ("tidepool_buffer_emit_total", "counter", |s| s.emit_count),
            ("tidepool_buffer_emit_records_total", "counter", |s| {
                s.emit_records
            }),
            ("tidepool_buffer_flush_total", "counter", |s| s.flush_count),
            ("tidepool_buffer_flush_records_total", "counter", |s| {
                s.flush_records
            }),
            ("tidepool_buffer_retry_total", "counter", |s| s.retry_count),
            ("tidepool_buffer_dead_letter_total", "counter", |s| {
                s.dead_letter_count
            }),
            ("tidepool_buffer_dropped_records_total", "counter", |s| {
                s.dropped_records
            }),
            ("tidepool_buffer_rejected_appends_total", "counter", |s| {
                s.rejected_appends
            }),
            ("tidepool_buffer_blocked_appends_total", "counter", |s| {
                s.blocked_appends
            }),
            ("tidepool_buffer_write_errors_total", "counter", |s| {
                s.write_errors
            }),
            ("tidepool_buffer_commit_rounds_total", "counter", |s| {
                s.commit_rounds
            }),
            ("tidepool_buffer_fsync_total", "counter", |s| s.fsync_count),
            ("tidepool_buffer_acked_events_total", "counter", |s| {
                s.acked_events
            }),
        ];
        for (name, kind, get) in buffer_counters {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (o, s) in &snaps {
                let _ = writeln!(out, "{name}{{output=\"{}\"}} {}", escape(o), get(s));
            }
        }
        let _ = writeln!(
            out,
            "# TYPE tidepool_buffer_commit_latency_seconds histogram"
        );
        for (o, s) in &snaps {
            let o = escape(o);
            // The buffer keeps per-bucket counts; Prometheus wants them cumulative.
            let mut cumulative = 0u64;
            for (le_us, n) in &s.commit_latency_buckets {
                cumulative += n;
                let le = if *le_us == u64::MAX {
                    "+Inf".to_string()
                } else {
                    format!("{}", *le_us as f64 / 1e6)
                };
                let _ = writeln!(
                    out,
                    "tidepool_buffer_commit_latency_seconds_bucket{{output=\"{o}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "tidepool_buffer_commit_latency_seconds_sum{{output=\"{o}\"}} {}",
                s.commit_latency_sum_us as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "tidepool_buffer_commit_latency_seconds_count{{output=\"{o}\"}} {cumulative}"
            );
        }
        out
    }
}

/// The `tidepool_mqtt_*` families, one series per MQTT input (bad payloads also by reason).
fn mqtt_prometheus(inputs: &[MqttInputInfo], out: &mut String) {
    type Get = fn(&MqttMetrics) -> u64;
    let counters: [(&str, &str, Get); 10] = [
        ("tidepool_mqtt_connected", "gauge", |m| {
            m.connected.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_connects_total", "counter", |m| {
            m.connects.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_reconnects_total", "counter", |m| {
            m.connection_errors.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_messages_total", "counter", |m| {
            m.messages.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_bytes_total", "counter", |m| {
            m.bytes.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_events_total", "counter", |m| {
            m.events.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_acks_total", "counter", |m| {
            m.acks.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_acks_abandoned_total", "counter", |m| {
            m.acks_abandoned.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_emit_failures_total", "counter", |m| {
            m.emit_failures.load(Ordering::Relaxed)
        }),
        ("tidepool_mqtt_dropped_too_large_total", "counter", |m| {
            m.dropped_too_large.load(Ordering::Relaxed)
        }),
    ];
    if inputs.is_empty() {
        return;
    }
    for (name, kind, get) in counters {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for i in inputs {
            let _ = writeln!(
                out,
                "{name}{{input=\"{}\"}} {}",
                escape(&i.label),
                get(&i.metrics)
            );
        }
    }
    let _ = writeln!(out, "# TYPE tidepool_mqtt_bad_payloads_total counter");
    for i in inputs {
        for (reason, n) in i.metrics.bad_payloads() {
            let _ = writeln!(
                out,
                "tidepool_mqtt_bad_payloads_total{{input=\"{}\",reason=\"{}\"}} {n}",
                escape(&i.label),
                escape(reason)
            );
        }
    }
}

/// Escapes a Prometheus label value: tags and reasons come from clients.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_from_clients_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn input_counters_and_rejection_reasons_are_exposed() {
        let t = Telemetry::default();
        let m = Arc::new(InputMetrics::default());
        InputMetrics::add(&m.events, 7);
        m.reject("bad_frame");
        t.update(
            vec![InputInfo {
                label: "forward 127.0.0.1:1 (plain)".into(),
                addr: "127.0.0.1:1"
                    .parse()
                    .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 1))),
                tls: false,
                metrics: m,
            }],
            Vec::new(),
            Arc::new(RouterMetrics::default()),
        );
        let text = t.prometheus();
        assert!(
            text.contains("tidepool_input_events_total{input=\"forward 127.0.0.1:1 (plain)\"} 7"),
            "{text}"
        );
        assert!(text.contains("reason=\"bad_frame\"} 1"), "{text}");
        assert_eq!(t.status()["plugins"][0]["emit_records"], 7);
    }

    #[test]
    fn mqtt_counters_and_bad_payload_reasons_are_exposed() {
        let t = Telemetry::default();
        let m = Arc::new(MqttMetrics::default());
        MqttMetrics::bad_payload(&m, "json");
        m.events.fetch_add(3, Ordering::Relaxed);
        m.connection_errors.fetch_add(2, Ordering::Relaxed);
        t.update_mqtt(vec![MqttInputInfo {
            label: "mqtt #1 127.0.0.1:1883".into(),
            broker: "127.0.0.1:1883".into(),
            topics: vec!["a/#".into()],
            client_id: "tidepool-h-1".into(),
            metrics: m,
        }]);
        let text = t.prometheus();
        let input = "input=\"mqtt #1 127.0.0.1:1883\"";
        assert!(
            text.contains(&format!("tidepool_mqtt_events_total{{{input}}} 3")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tidepool_mqtt_reconnects_total{{{input}}} 2")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "tidepool_mqtt_bad_payloads_total{{{input},reason=\"json\"}} 1"
            )),
            "{text}"
        );
        let status = t.status();
        assert_eq!(status["plugins"][0]["type"], "mqtt");
        assert_eq!(status["plugins"][0]["bad_payloads"]["json"], 1);
    }
}
