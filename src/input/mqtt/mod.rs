//! The MQTT input (`[[source]] type = "mqtt"`): subscribes to topic filters on a broker
//! and routes each message as one event tagged from its topic.
//!
//! Delivery is at least once end to end: with QoS 1/2 a message is acknowledged to the
//! broker only after its batch is durable (manual acks), and with a persistent session
//! (`clean_session = false`, a stable client id) the broker keeps what arrives while
//! tidepool is down or reconnecting. A crash between durability and the ack gives a
//! duplicate, never a loss.
//!
//! - `tag`: topic → tag, pure; `payload` and `json`: payload → entry bytes, pure.
//! - `options`: client id, session, credentials, TLS (rustls with ring).
//! - `session`: the connection loop: batches, acks, reconnects, keep-alive while the
//!   pipeline is blocked.
//! - `backlog`: the bounded hand-off queue that lets the connection loop keep polling.
//! - [`MqttSources`]: the running sources of a daemon, reconciled on reload.

mod backlog;
mod json;
mod options;
mod payload;
mod session;
mod tag;
#[cfg(test)]
mod tests;

pub use options::default_client_id;
pub use payload::{BadPayload, PARSE_ERROR_KEY, PayloadRules};
pub use tag::{TagRule, TopicTemplate};

use crate::config::MqttConfig;
use crate::input::forward::ratelimit::{LogLimiter, Verdict};
use crate::metrics::MqttMetrics;
use crate::pipeline::Router;
use crate::telemetry::MqttInputInfo;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A source checked and ready to start: its client options are built and its TLS files
/// loaded, so a start or reload fails before anything changes.
#[derive(Clone)]
pub struct Prepared {
    n: usize,
    config: MqttConfig,
    client_id: String,
    options: rumqttc::MqttOptions,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("n", &self.n)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Checks source `n` (1-based, as in `[[source]] #n`) and builds its client options.
/// Errors name the source, the broker and the file or setting at fault.
pub fn prepare(n: usize, config: &MqttConfig) -> anyhow::Result<Prepared> {
    let client_id = config
        .client_id
        .clone()
        .unwrap_or_else(|| default_client_id(n));
    let options = options::mqtt_options(config, &client_id).map_err(|e| {
        anyhow::anyhow!("source #{n} (mqtt {}:{}): {e:#}", config.host, config.port)
    })?;
    Ok(Prepared {
        n,
        config: config.clone(),
        client_id,
        options,
    })
}

/// Everything a running source reads.
struct Source {
    n: usize,
    broker: String,
    config: MqttConfig,
    client_id: String,
    options: rumqttc::MqttOptions,
    tags: TagRule,
    payloads: PayloadRules,
    router: watch::Receiver<Arc<Router>>,
    metrics: Arc<MqttMetrics>,
}

/// Rate-limited warn lines about bad payloads (a broken publisher can send thousands).
#[derive(Debug, Default)]
struct BadPayloadLog(LogLimiter);

impl BadPayloadLog {
    fn warn(&self, n: usize, topic: &str, detail: &str) {
        match self.0.check() {
            Verdict::Log { suppressed: 0 } => tracing::warn!(
                "source #{n} (mqtt): payload on \"{topic}\" kept raw with {PARSE_ERROR_KEY}: {detail}"
            ),
            Verdict::Log { suppressed } => tracing::warn!(
                "source #{n} (mqtt): payload on \"{topic}\" kept raw with {PARSE_ERROR_KEY}: {detail} ({suppressed} similar lines suppressed)"
            ),
            Verdict::Drop => {}
        }
    }
}

/// One running MQTT source: its task, and the token that stops it.
#[derive(Debug)]
pub struct MqttSource {
    n: usize,
    config: MqttConfig,
    client_id: String,
    metrics: Arc<MqttMetrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MqttSource {
    /// Starts the source's task (tracked, so shutdown waits for its last acks); it
    /// stops with `shutdown` or [`MqttSource::stop`].
    pub fn start(
        prepared: Prepared,
        router: watch::Receiver<Arc<Router>>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> MqttSource {
        let Prepared {
            n,
            config,
            client_id,
            options,
        } = prepared;
        let metrics = Arc::new(MqttMetrics::default());
        let stop = shutdown.child_token();
        let source = Source {
            n,
            broker: broker(&config),
            tags: TagRule::new(config.tag_prefix.clone(), config.tag.clone()),
            payloads: PayloadRules {
                format: config.format,
                topic_key: config.topic_key.clone(),
                max_payload_size: config.max_payload_size,
            },
            config: config.clone(),
            client_id: client_id.clone(),
            options,
            router,
            metrics: metrics.clone(),
        };
        tracing::info!(
            "source #{n} (mqtt) connecting to {} as {client_id} ({}, qos {}, {})",
            source.broker,
            if config.tls.is_some() { "tls" } else { "plain" },
            config.qos,
            if config.clean_session {
                "clean session"
            } else {
                "persistent session"
            }
        );
        let task = tracker.spawn(session::run(source, stop.clone()));
        MqttSource {
            n,
            config,
            client_id,
            metrics,
            stop,
            task,
        }
    }

    /// Stops the source: no new messages are taken, emitted ones are acked once
    /// durable, then DISCONNECT; waits at most `timeout` for that.
    pub async fn stop(self, timeout: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!(
                "source #{} (mqtt) did not stop within {timeout:?}; its unacked messages come again",
                self.n
            );
        }
    }

    /// Whether `prepared` would run exactly this source (same settings and client id).
    pub fn same_as(&self, prepared: &Prepared) -> bool {
        self.config == prepared.config && self.client_id == prepared.client_id
    }

    /// How the status and metrics endpoints show it.
    pub fn info(&self) -> MqttInputInfo {
        let broker = broker(&self.config);
        MqttInputInfo {
            label: format!("mqtt #{} {broker}", self.n),
            broker,
            topics: self.config.topics.clone(),
            client_id: self.client_id.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Its counters.
    pub fn metrics(&self) -> &Arc<MqttMetrics> {
        &self.metrics
    }
}

/// `host:port`, with brackets around an IPv6 host.
fn broker(config: &MqttConfig) -> String {
    if config.host.contains(':') {
        format!("[{}]:{}", config.host, config.port)
    } else {
        format!("{}:{}", config.host, config.port)
    }
}

/// The MQTT sources of a daemon. On reload an unchanged source keeps running (its
/// connection and session untouched); a changed or removed one is stopped before its
/// replacement starts, so two clients with one client id never fight over a session.
#[derive(Debug, Default)]
pub struct MqttSources {
    running: Vec<MqttSource>,
}

impl MqttSources {
    /// Starts one more source.
    pub fn start(
        &mut self,
        prepared: Prepared,
        router: watch::Receiver<Arc<Router>>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        self.running
            .push(MqttSource::start(prepared, router, shutdown, tracker));
    }

    /// Makes the running sources those of `wanted`: keeps the unchanged, stops the
    /// rest (each within `timeout`), then starts the new ones with `subscribe()`'s
    /// router receiver.
    pub async fn reconcile(
        &mut self,
        wanted: Vec<Prepared>,
        subscribe: impl Fn() -> watch::Receiver<Arc<Router>>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
        timeout: Duration,
    ) {
        let mut old = std::mem::take(&mut self.running);
        let mut plan: Vec<Result<MqttSource, Prepared>> = Vec::new();
        for p in wanted {
            match old.iter().position(|s| s.same_as(&p)) {
                Some(i) => plan.push(Ok(old.swap_remove(i))),
                None => plan.push(Err(p)),
            }
        }
        for gone in old {
            tracing::info!("source #{} (mqtt) removed or changed: stopping it", gone.n);
            gone.stop(timeout).await;
        }
        for entry in plan {
            let source = match entry {
                Ok(kept) => kept,
                Err(p) => MqttSource::start(p, subscribe(), shutdown, tracker),
            };
            self.running.push(source);
        }
    }

    /// The running sources, for status and metrics.
    pub fn infos(&self) -> Vec<MqttInputInfo> {
        self.running.iter().map(MqttSource::info).collect()
    }

    /// The running sources, in config order.
    pub fn sources(&self) -> &[MqttSource] {
        &self.running
    }
}
