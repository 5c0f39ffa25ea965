//! The driver's hand-off queue: messages read from the broker that the batcher has not
//! taken yet, bounded by count and payload bytes. It lets the driver keep polling the
//! event loop (so pings and acks go out) while the pipeline is blocked, without holding
//! more than a bounded amount of memory; when it is full the driver stops reading.

use rumqttc::Publish;
use std::collections::VecDeque;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// A message on its way to the batcher, stamped with the connection generation it
/// arrived on (its ack is valid only on that connection).
#[derive(Debug)]
pub(super) struct Received {
    pub(super) publish: Publish,
    pub(super) generation: u64,
}

/// The batcher is gone: what was waiting is dropped, unacked, and comes again on the
/// next connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Gone;

/// Messages received but not yet handed to the batcher, in order of receipt.
///
/// The bounds are soft by one message: a message is read whenever the backlog is under
/// both bounds, so a single message bigger than `max_bytes` still gets through alone.
#[derive(Debug)]
pub(super) struct Backlog {
    queue: VecDeque<Received>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl Backlog {
    /// An empty backlog holding at most `max_messages` messages and about `max_bytes`
    /// payload bytes.
    pub(super) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Backlog {
            queue: VecDeque::new(),
            bytes: 0,
            max_messages,
            max_bytes,
        }
    }

    /// Whether the driver may read another message from the broker.
    pub(super) fn has_room(&self) -> bool {
        self.queue.len() < self.max_messages && self.bytes < self.max_bytes
    }

    /// Whether a hand-off is pending.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Messages waiting.
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Payload bytes waiting.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues a message behind the others.
    pub(super) fn push(&mut self, r: Received) {
        self.bytes = self.bytes.saturating_add(r.publish.payload.len());
        self.queue.push_back(r);
    }

    /// Hands messages, oldest first, to `tx` while its channel has room; the rest wait.
    /// When the batcher is gone the backlog is emptied and [`Gone`] returned.
    pub(super) fn flush(&mut self, tx: &mpsc::Sender<Received>) -> Result<(), Gone> {
        while let Some(r) = self.queue.pop_front() {
            let len = r.publish.payload.len();
            match tx.try_send(r) {
                Ok(()) => self.bytes = self.bytes.saturating_sub(len),
                Err(TrySendError::Full(r)) => {
                    self.queue.push_front(r);
                    return Ok(());
                }
                Err(TrySendError::Closed(_)) => {
                    self.clear();
                    return Err(Gone);
                }
            }
        }
        Ok(())
    }

    /// Drops everything waiting (not acked: the broker sends it again).
    pub(super) fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::QoS;

    fn msg(seq: u16, payload: usize) -> Received {
        let mut publish = Publish::new("t", QoS::AtLeastOnce, vec![b'x'; payload]);
        publish.pkid = seq;
        Received {
            publish,
            generation: 0,
        }
    }

    #[test]
    fn the_count_bound_stops_reading() {
        let mut b = Backlog::new(3, 1 << 20);
        for i in 0..3 {
            assert!(b.has_room(), "room before message {i}");
            b.push(msg(i, 10));
        }
        assert!(!b.has_room());
        assert_eq!((b.len(), b.bytes()), (3, 30));
    }

    #[test]
    fn the_byte_bound_stops_reading_and_one_big_message_still_fits() {
        let mut b = Backlog::new(100, 100);
        b.push(msg(1, 60));
        assert!(b.has_room());
        b.push(msg(2, 60));
        assert!(!b.has_room(), "120 bytes waiting, bound 100");

        let mut big = Backlog::new(100, 100);
        assert!(big.has_room());
        big.push(msg(1, 1000));
        assert!(!big.has_room());
        assert_eq!(big.bytes(), 1000);
    }

    #[test]
    fn flush_hands_off_in_order_while_the_channel_has_room() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut b = Backlog::new(10, 1000);
        for i in 1..=5 {
            b.push(msg(i, 100));
        }
        b.flush(&tx).expect("batcher there");
        assert_eq!((b.len(), b.bytes()), (3, 300));
        assert!(b.has_room());
        let mut seen = Vec::new();
        while let Ok(r) = rx.try_recv() {
            seen.push(r.publish.pkid);
        }
        b.flush(&tx).expect("batcher there");
        while let Ok(r) = rx.try_recv() {
            seen.push(r.publish.pkid);
        }
        b.flush(&tx).expect("batcher there");
        while let Ok(r) = rx.try_recv() {
            seen.push(r.publish.pkid);
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn flush_to_a_gone_batcher_empties_the_backlog() {
        let (tx, rx) = mpsc::channel(2);
        drop(rx);
        let mut b = Backlog::new(10, 1000);
        b.push(msg(1, 10));
        b.push(msg(2, 10));
        assert_eq!(b.flush(&tx), Err(Gone));
        assert!(b.is_empty() && b.has_room());
        assert_eq!(b.bytes(), 0);
    }
}
