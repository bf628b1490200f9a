//! The internal stream of committed events.
//!
//! A store publishes every batch here right after it is durable and before
//! the request that sent it is acknowledged; the engine and the WebSocket
//! hub subscribe. Everything downstream of storage is fed only from here, so
//! a message bus (NATS, between several `serve` nodes) can later take this
//! module's place without the engine or the hub changing.

use std::sync::{Arc, RwLock};

use crate::event::Event;

/// Events made durable together. Their sequence numbers are
/// `first_seq..first_seq + events.len()`, in commit order.
#[derive(Debug, Clone)]
pub struct CommittedBatch {
    pub first_seq: u64,
    pub events: Vec<Event>,
}

impl CommittedBatch {
    /// The sequence number of the last event in the batch.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64 - 1
    }
}

/// Something that reacts to committed events. Called in commit order, on the
/// store's writer; it must be quick and must not block on I/O. A subscriber
/// may keep the batch (it is shared, not copied) to work on it later.
pub trait Subscriber: Send + Sync {
    fn on_commit(&self, batch: &Arc<CommittedBatch>);
}

/// Fan-out of committed batches to every subscriber.
#[derive(Default)]
pub struct Feed {
    subscribers: RwLock<Vec<Arc<dyn Subscriber>>>,
}

impl Feed {
    pub fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        match self.subscribers.write() {
            Ok(mut subs) => subs.push(subscriber),
            Err(poisoned) => poisoned.into_inner().push(subscriber),
        }
    }

    pub fn publish(&self, batch: &Arc<CommittedBatch>) {
        if batch.events.is_empty() {
            return;
        }
        let subs = match self.subscribers.read() {
            Ok(subs) => subs,
            Err(poisoned) => poisoned.into_inner(),
        };
        for sub in subs.iter() {
            sub.on_commit(batch);
        }
    }
}
