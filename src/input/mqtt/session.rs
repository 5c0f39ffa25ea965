//! One MQTT source at run time: connect, subscribe, messages → batches → router, acks
//! after durability, reconnects with backoff.
//!
//! A session is three futures joined in one task, so no lock is ever needed:
//! - the **driver** polls rumqttc's event loop (which also sends the acks queued by the
//!   acker) and hands each PUBLISH to the batcher, stamped with the connection
//!   generation it arrived on;
//! - the **batcher** takes every message already waiting (up to [`MAX_BATCH`]), turns
//!   them into one batch per tag and emits them;
//! - the **acker** waits, in order of receipt, until each batch is durable, then acks
//!   its QoS 1/2 messages (PUBACK / PUBREC), in order of receipt as MQTT requires.
//!
//! An ack is sent only on the connection its message arrived on: after a reconnect the
//! broker sends unacked messages again, and a stale packet id must never ack a
//! different message. The acker never waits on rumqttc's request queue (it keeps its
//! own backlog), so a full queue cannot deadlock the driver that drains it.
//!
//! # Keeping the connection alive while the pipeline is blocked
//!
//! rumqttc sends PINGREQ only from inside `EventLoop::poll`: in rumqttc 0.25.1
//! `EventLoop::select` (src/eventloop.rs) races network reads, the request queue and a
//! `keepalive_timeout` sleep that lives in the event loop, and only that last branch
//! writes a PINGREQ; `MqttState::outgoing_ping` (src/state.rs) fails the connection
//! with `AwaitPingResp` when the next ping is due before the last PINGRESP was read.
//! Acks queued by the acker also leave only from that select. The broker drops a
//! client it has heard nothing from for 1.5 × `keep_alive`. So the event loop must be
//! polled even while an output blocks (buffer full with `overflow_action = "block"`, a
//! sink down for minutes) and the batcher cannot take messages. The driver never waits on
//! the batcher's channel: what the channel cannot take waits in a [`Backlog`] bounded
//! by [`BACKLOG_MESSAGES`] and [`BACKLOG_BYTES`], and the driver selects between
//! polling the event loop and handing that backlog off. Only when the backlog is full
//! does it stop polling, and that stop is the backpressure: unread TCP data stalls the
//! broker as before.
//!
//! With QoS 1/2 the broker's in-flight window bounds what arrives unacked (Mosquitto's
//! `max_inflight_messages`, 20 by default; EMQX 32; the acks come only after
//! durability), so while the pipeline is blocked the channel plus the backlog never
//! fill and pings keep flowing for as long as the stall lasts. A broker with a window
//! larger than [`MAX_BATCH`] + [`BACKLOG_MESSAGES`] (e.g. `max_inflight_messages 0`,
//! unlimited), or a QoS 0 flood, can still fill both: then reading stops, pings stop,
//! and a stall longer than 1.5 × `keep_alive` costs a reconnect, after which the broker
//! sends the unacked messages again (duplicates, never a loss).
//!
//! The poll future owns the event loop and lives across loop turns: it is never dropped
//! half-way because a hand-off became possible. rumqttc mutates its state before
//! writing (`handle_outgoing_packet`, then `network.write(..).await`), so a poll
//! cancelled between the two could lose a PUBACK or a PINGREQ it already counted.

use super::backlog::{Backlog, Received};
use super::{BadPayloadLog, Source};
use crate::event::{Batch, EventTime, Signal};
use crate::pipeline::Delivery;
use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, ReusableBoxFuture};

/// Most messages in one emit; more waiting go in the next one.
pub const MAX_BATCH: usize = 1000;

/// Most payload bytes in one emit (a single bigger message still goes alone).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Most messages the driver holds beyond the batcher's channel (itself [`MAX_BATCH`]
/// deep) before it stops reading from the broker: one more batch's worth, so a
/// broker's in-flight window up to twice [`MAX_BATCH`] never stops the keep-alive.
const BACKLOG_MESSAGES: usize = MAX_BATCH;

/// Most payload bytes the driver holds beyond the batcher's channel before it stops
/// reading from the broker (a single bigger message is still read).
const BACKLOG_BYTES: usize = MAX_BATCH_BYTES;

/// Emitted batches whose acks are still owed; more stall the batcher (backpressure
/// reaches the broker as unread TCP data).
const MAX_PENDING_GROUPS: usize = 64;

/// rumqttc's request queue (acks, subscribe, disconnect).
const REQUEST_CAPACITY: usize = 8192;

/// How long a stopping session may take to send its last acks and DISCONNECT.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How a session ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// Asked to stop (reload or shutdown).
    Stopped,
    /// The pipeline refused a batch or a delivery failed: nothing after it was acked,
    /// the broker will send it again on the next connection.
    Failed(String),
}

/// A QoS 1/2 message to ack once its batch is durable.
#[derive(Clone, Copy, Debug)]
struct Ack {
    qos: QoS,
    pkid: u16,
    generation: u64,
}

impl Ack {
    /// The shape rumqttc's `try_ack` reads (QoS and packet id only).
    fn publish(&self) -> Publish {
        let mut p = Publish::new(String::new(), self.qos, Vec::new());
        p.pkid = self.pkid;
        p
    }
}

/// The deliveries of one emit round and the acks they release, in receipt order.
struct AckGroup {
    deliveries: Vec<Delivery>,
    acks: Vec<Ack>,
}

/// Capped exponential backoff.
#[derive(Debug)]
pub(super) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the one after is twice as long, up to the cap.
    pub(super) fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        now
    }

    pub(super) fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Runs sessions until `stop` fires; a failed session is followed by a fresh one
/// after a backoff, so unacked messages are delivered again.
pub(super) async fn run(src: Source, stop: CancellationToken) {
    let mut pause = Backoff::new(src.config.reconnect_delay, src.config.reconnect_max_delay);
    loop {
        match session(&src, &stop).await {
            Ended::Stopped => break,
            Ended::Failed(reason) => {
                let wait = pause.next();
                tracing::warn!(
                    "source #{} (mqtt): {reason}; the unacked messages come again from the broker, reconnecting in {wait:?}",
                    src.n
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
    src.metrics.connected.store(0, Ordering::Relaxed);
    tracing::info!("source #{} (mqtt) stopped", src.n);
}

/// One client and event loop, from connect to DISCONNECT.
async fn session(src: &Source, stop: &CancellationToken) -> Ended {
    let (client, eventloop) = AsyncClient::new(src.options.clone(), REQUEST_CAPACITY);
    let generation = AtomicU64::new(0);
    let halt = stop.child_token();
    let finished = CancellationToken::new();
    let abandon = CancellationToken::new();
    let driver_done = CancellationToken::new();
    let (msg_tx, msg_rx) = mpsc::channel::<Received>(MAX_BATCH);
    let (ack_tx, ack_rx) = mpsc::channel::<AckGroup>(MAX_PENDING_GROUPS);
    let driver = async {
        drive(
            src,
            eventloop,
            &client,
            msg_tx,
            &generation,
            &finished,
            &abandon,
        )
        .await;
        driver_done.cancel();
    };
    let batcher = batch(src, msg_rx, ack_tx, &halt);
    let acker = async {
        let r = ack(src, ack_rx, &client, &generation, &halt, &driver_done).await;
        // Last acks are queued before this DISCONNECT, so they go out first.
        let _ = client.try_disconnect();
        finished.cancel();
        r
    };
    let watchdog = async {
        tokio::select! {
            _ = async {
                finished.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => abandon.cancel(),
            _ = driver_done.cancelled() => {}
        }
    };
    let ((), batched, acked, ()) = tokio::join!(driver, batcher, acker, watchdog);
    match batched.and(acked) {
        Err(reason) => Ended::Failed(reason),
        Ok(()) if stop.is_cancelled() => Ended::Stopped,
        Ok(()) => Ended::Failed("the session ended unexpectedly".to_string()),
    }
}

/// One turn of the event loop, owning it so the turn can outlive a `select!` round
/// (see the module doc: a poll must not be dropped half-way).
async fn next_event(mut eventloop: EventLoop) -> (EventLoop, Result<Event, ConnectionError>) {
    let event = eventloop.poll().await;
    (eventloop, event)
}

/// Resolves once the batcher's channel has room (true) or the batcher is gone (false).
async fn room(tx: Option<&mpsc::Sender<Received>>) -> bool {
    match tx {
        // The permit is dropped at once: the driver is the only sender, so the room
        // stays for the `try_send` that follows.
        Some(tx) => tx.reserve().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// What woke the driver.
enum Step {
    /// The batcher's channel has room (true) or is closed (false).
    Room(bool),
    /// The event loop yielded (and the next turn is set up).
    Polled(Result<Event, ConnectionError>),
    /// The reconnect backoff is over.
    Retry,
}

/// Polls the event loop: connects, subscribes, hands messages on, reconnects with
/// backoff, until the acker is done and DISCONNECT went out (or the connection is down).
/// It keeps polling while the batcher cannot take messages, as long as its [`Backlog`]
/// has room (see the module doc).
async fn drive(
    src: &Source,
    eventloop: EventLoop,
    client: &AsyncClient,
    msgs: mpsc::Sender<Received>,
    generation: &AtomicU64,
    finished: &CancellationToken,
    abandon: &CancellationToken,
) {
    let n = src.n;
    let broker = &src.broker;
    let metrics = &src.metrics;
    let mut connected = false;
    let mut subscribed_once = false;
    let mut failures = 0u64;
    let mut last_error: Option<String> = None;
    let mut pause = Backoff::new(src.config.reconnect_delay, src.config.reconnect_max_delay);
    let mut forward = Some(msgs);
    let mut backlog = Backlog::new(BACKLOG_MESSAGES, BACKLOG_BYTES);
    let mut polling = ReusableBoxFuture::new(next_event(eventloop));
    let backoff = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(backoff);
    let mut waiting = false;
    let mut reading = true;
    loop {
        let step = tokio::select! {
            biased;
            _ = abandon.cancelled() => break,
            _ = finished.cancelled(), if !connected => break,
            open = room(forward.as_ref()), if !backlog.is_empty() => Step::Room(open),
            _ = &mut backoff, if waiting => Step::Retry,
            (el, ev) = &mut polling, if !waiting && backlog.has_room() => {
                polling.set(next_event(el));
                Step::Polled(ev)
            }
        };
        let polled = match step {
            Step::Room(open) => {
                let gone = match (&forward, open) {
                    (Some(tx), true) => backlog.flush(tx).is_err(),
                    _ => true,
                };
                if gone {
                    // The batcher stopped: what waits now is not acked and comes again
                    // on the next connection.
                    backlog.clear();
                    forward = None;
                }
                if !reading && backlog.has_room() {
                    reading = true;
                    tracing::debug!(
                        "source #{n} (mqtt): the pipeline took messages again; reading from {broker} again"
                    );
                }
                continue;
            }
            Step::Retry => {
                waiting = false;
                continue;
            }
            Step::Polled(ev) => ev,
        };
        match polled {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                connected = true;
                metrics.connected.store(1, Ordering::Relaxed);
                metrics.connects.fetch_add(1, Ordering::Relaxed);
                pause.reset();
                if failures > 0 {
                    tracing::info!(
                        "source #{n} (mqtt) connected to {broker} after {failures} failed attempt(s) (session present: {})",
                        ack.session_present
                    );
                } else {
                    tracing::debug!(
                        "source #{n} (mqtt) connected to {broker} as {} (session present: {})",
                        src.client_id,
                        ack.session_present
                    );
                }
                failures = 0;
                last_error = None;
                // The first connection always subscribes (the topics may have changed
                // since the session was made); later ones only when the broker lost
                // the session, so retained messages are not sent again needlessly.
                if !subscribed_once || !ack.session_present {
                    subscribed_once = true;
                    let filters = src
                        .config
                        .topics
                        .iter()
                        .map(|t| SubscribeFilter::new(t.clone(), qos(src.config.qos)));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::error!("source #{n} (mqtt): cannot queue SUBSCRIBE: {e}");
                    }
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => log_suback(src, &ack.return_codes),
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                metrics.messages.fetch_add(1, Ordering::Relaxed);
                metrics
                    .bytes
                    .fetch_add(publish.payload.len() as u64, Ordering::Relaxed);
                if let Some(tx) = &forward {
                    backlog.push(Received {
                        publish,
                        generation: generation.load(Ordering::Relaxed),
                    });
                    if backlog.flush(tx).is_err() {
                        // The batcher stopped: what arrives now is not acked and comes
                        // again on the next connection.
                        forward = None;
                    } else if !backlog.has_room() {
                        reading = false;
                        tracing::debug!(
                            "source #{n} (mqtt): the pipeline is blocked and {} messages ({} bytes) wait; not reading from {broker} until it takes some",
                            backlog.len(),
                            backlog.bytes()
                        );
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                // Acks queued for the old connection are void from here on.
                generation.fetch_add(1, Ordering::Relaxed);
                let was_connected = std::mem::replace(&mut connected, false);
                metrics.connected.store(0, Ordering::Relaxed);
                metrics.connection_errors.fetch_add(1, Ordering::Relaxed);
                if finished.is_cancelled() {
                    break;
                }
                failures += 1;
                let text = describe(&e);
                let wait = pause.next();
                if was_connected {
                    tracing::warn!(
                        "source #{n} (mqtt) lost its connection to {broker}: {text}; reconnecting in {wait:?}"
                    );
                } else if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(
                        "source #{n} (mqtt) cannot connect to {broker}: {text}; retrying with backoff up to {:?}",
                        src.config.reconnect_max_delay
                    );
                } else {
                    tracing::debug!("source #{n} (mqtt) still cannot connect to {broker}: {text}");
                }
                last_error = Some(text);
                // The wait is a branch of the loop's select, so the backlog is still
                // handed off meanwhile; `finished` and `abandon` end it too.
                backoff.as_mut().reset(tokio::time::Instant::now() + wait);
                waiting = true;
            }
        }
    }
    metrics.connected.store(0, Ordering::Relaxed);
}

/// An event-loop error as one line, with a hint where the operator can act.
fn describe(e: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as Code;
    match e {
        ConnectionError::ConnectionRefused(Code::BadUserNamePassword | Code::NotAuthorized) => {
            format!("{e} (check username and password, and the broker's ACL)")
        }
        ConnectionError::ConnectionRefused(Code::BadClientId) => {
            format!("{e} (the broker refuses this client_id; set client_id)")
        }
        other => other.to_string(),
    }
}

/// Logs the outcome of a SUBSCRIBE: refused filters at error, the rest once at info.
fn log_suback(src: &Source, codes: &[SubscribeReasonCode]) {
    let n = src.n;
    let mut granted = Vec::new();
    for (filter, code) in src.config.topics.iter().zip(codes) {
        match code {
            SubscribeReasonCode::Success(q) => granted.push(format!("{filter} (qos {})", *q as u8)),
            SubscribeReasonCode::Failure => tracing::error!(
                "source #{n} (mqtt): broker {} refused the subscription to \"{filter}\" (check its ACL)",
                src.broker
            ),
        }
    }
    if !granted.is_empty() {
        tracing::info!(
            "source #{n} (mqtt) subscribed to {} on {}",
            granted.join(", "),
            src.broker
        );
    }
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// One tag's events within an emit round.
struct Group {
    tag: String,
    entries: Vec<u8>,
    count: u32,
    /// Where each message's entry ends in `entries`, to emit them one by one when the
    /// whole group is more than a buffer can ever hold.
    ends: Vec<usize>,
}

/// Takes messages as they come, several at a time, and emits them; stops at `halt`
/// or when the driver is gone.
async fn batch(
    src: &Source,
    mut rx: mpsc::Receiver<Received>,
    acks: mpsc::Sender<AckGroup>,
    halt: &CancellationToken,
) -> Result<(), String> {
    let log = BadPayloadLog::default();
    let mut msgs: Vec<Received> = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            _ = halt.cancelled() => return Ok(()),
            r = rx.recv() => match r {
                Some(r) => r,
                None => return Ok(()),
            },
        };
        let mut bytes = first.publish.payload.len();
        msgs.push(first);
        while msgs.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(m) => {
                    bytes = bytes.saturating_add(m.publish.payload.len());
                    msgs.push(m);
                }
                Err(_) => break,
            }
        }
        let (groups, owed) = encode(src, &mut msgs, &log);
        let router = src.router.borrow().clone();
        let mut deliveries = Vec::with_capacity(groups.len());
        let mut events = 0u64;
        for g in groups {
            events += u64::from(g.count);
            if let Err(e) = emit_group(src, &router, g, &mut deliveries).await {
                src.metrics.emit_failures.fetch_add(1, Ordering::Relaxed);
                halt.cancel();
                return Err(format!("the pipeline refused a batch: {e}"));
            }
        }
        src.metrics.events.fetch_add(events, Ordering::Relaxed);
        if !owed.is_empty() {
            let group = AckGroup {
                deliveries,
                acks: owed,
            };
            if acks.send(group).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Emits one group. A group bigger than an output's whole buffer (`total_limit_size`)
/// could never be stored, and refusing it would make the broker send it again
/// forever: it is emitted message by message instead, and a single message bigger
/// than the buffer is dropped, logged and counted (`dropped_too_large`), as Fluentd
/// drops a record bigger than its chunk limit. Any other refusal is returned.
async fn emit_group(
    src: &Source,
    router: &crate::pipeline::Router,
    g: Group,
    deliveries: &mut Vec<Delivery>,
) -> Result<(), crate::pipeline::EmitError> {
    let entries = Bytes::from(g.entries);
    let whole = Batch {
        tag: g.tag.clone(),
        entries: entries.clone(),
        count: g.count,
        signal: Signal::Logs,
    };
    match router.emit(whole).await {
        Ok((_, delivery)) => {
            deliveries.push(delivery);
            return Ok(());
        }
        Err(e) if !is_too_large(&e) => return Err(e),
        Err(_) => {}
    }
    let mut start = 0;
    for &end in &g.ends {
        let one = Batch {
            tag: g.tag.clone(),
            entries: entries.slice(start..end),
            count: 1,
            signal: Signal::Logs,
        };
        start = end;
        match router.emit(one).await {
            Ok((_, delivery)) => deliveries.push(delivery),
            Err(e) if is_too_large(&e) => {
                src.metrics
                    .dropped_too_large
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "source #{} (mqtt): dropped a message for tag {} that no buffer can hold: {e}",
                    src.n,
                    g.tag
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_too_large(e: &crate::pipeline::EmitError) -> bool {
    matches!(e.error, crate::buffer::AppendError::TooLarge { .. })
}

/// Turns the messages (drained) into one group per tag, in order of first appearance,
/// and lists the acks they owe in order of receipt.
fn encode(src: &Source, msgs: &mut Vec<Received>, log: &BadPayloadLog) -> (Vec<Group>, Vec<Ack>) {
    let time = EventTime::now();
    let mut groups: Vec<Group> = Vec::new();
    let mut by_tag: HashMap<String, usize> = HashMap::new();
    let mut owed = Vec::new();
    for m in msgs.drain(..) {
        let p = &m.publish;
        let tag = src.tags.tag(&p.topic);
        let i = match by_tag.get(&tag) {
            Some(&i) => i,
            None => {
                groups.push(Group {
                    tag: tag.clone(),
                    entries: Vec::new(),
                    count: 0,
                    ends: Vec::new(),
                });
                by_tag.insert(tag, groups.len() - 1);
                groups.len() - 1
            }
        };
        if let Some(g) = groups.get_mut(i) {
            if let Some(bad) = src
                .payloads
                .append_entry(&p.topic, &p.payload, time, &mut g.entries)
            {
                src.metrics.bad_payload(bad.reason);
                log.warn(src.n, &p.topic, &bad.detail);
            }
            g.count += 1;
            g.ends.push(g.entries.len());
        }
        if p.qos != QoS::AtMostOnce {
            owed.push(Ack {
                qos: p.qos,
                pkid: p.pkid,
                generation: m.generation,
            });
        }
    }
    (groups, owed)
}

/// Acks each group once all its deliveries resolved, in order; after a failed delivery
/// nothing more is acked (acks must follow receipt order) and the session ends.
async fn ack(
    src: &Source,
    mut rx: mpsc::Receiver<AckGroup>,
    client: &AsyncClient,
    generation: &AtomicU64,
    halt: &CancellationToken,
    driver_done: &CancellationToken,
) -> Result<(), String> {
    let metrics = &src.metrics;
    let mut backlog: VecDeque<Ack> = VecDeque::new();
    let mut failed: Option<String> = None;
    let mut open = true;
    loop {
        if driver_done.is_cancelled() {
            // Nothing polls the connection any more: these acks will not go out.
            metrics
                .acks_abandoned
                .fetch_add(backlog.len() as u64, Ordering::Relaxed);
            backlog.clear();
        }
        // Queue what the request queue takes; keep the rest, in order.
        while let Some(a) = backlog.front().copied() {
            if a.generation != generation.load(Ordering::Relaxed) {
                metrics.acks_abandoned.fetch_add(1, Ordering::Relaxed);
                backlog.pop_front();
                continue;
            }
            if client.try_ack(&a.publish()).is_err() {
                break;
            }
            metrics.acks.fetch_add(1, Ordering::Relaxed);
            backlog.pop_front();
        }
        let retry = tokio::time::sleep(Duration::from_millis(1));
        let next = match (open, backlog.is_empty()) {
            (false, true) => break,
            (false, false) => {
                retry.await;
                continue;
            }
            (true, true) => rx.recv().await,
            // The request queue is full: keep taking groups so the batcher and the
            // driver (which drains that queue) never wait on us; retry shortly.
            (true, false) => tokio::select! {
                r = rx.recv() => r,
                _ = retry => continue,
            },
        };
        let Some(group) = next else {
            open = false;
            continue;
        };
        if failed.is_some() {
            continue;
        }
        for d in group.deliveries {
            if let Err(e) = d.wait().await {
                failed = Some(format!("a batch was not stored: {e}"));
                halt.cancel();
                break;
            }
        }
        if failed.is_none() {
            backlog.extend(group.acks);
        }
    }
    match failed {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}
