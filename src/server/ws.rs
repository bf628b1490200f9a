//! The WebSocket hub: live metrics pushed at a bounded rate.
//!
//! Each client names a view (the same parameters as `GET /api/metrics`).
//! After a commit the hub encodes each view that has clients once (at once
//! after a quiet spell, then at most once per interval) and hands it to a
//! `watch` channel: a client always gets the latest message and never a
//! queue, so a slow client skips updates instead of slowing ingest or
//! growing memory, and a stuck one is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use poem::web::websocket::{Message, WebSocketStream};
use poem_openapi::types::ToJSON;
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::LiveEngine;
use super::models::{EventOut, Metrics};
use crate::engine::Query;
use crate::event::EventType;
use crate::feed::{CommittedBatch, Subscriber};
use crate::store::StoredEvent;

/// Committed events kept (overall and per type) for new clients and updates.
const RECENT_EVENTS: usize = 50;
/// Types whose recent events are kept apart; views of further types get
/// their events from the overall list.
const RECENT_TYPES: usize = 100;
/// A client that cannot take one message in this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Even without new events, push this often so windows slide.
const IDLE_PUSH: Duration = Duration::from_secs(5);

pub struct Hub {
    engine: Arc<LiveEngine>,
    interval: Duration,
    views: Mutex<HashMap<String, View>>,
    recent: Mutex<Recent>,
    /// Woken on every commit.
    committed: Notify,
}

struct View {
    query: Query,
    sender: watch::Sender<Arc<str>>,
}

/// The latest committed events, overall and per type, so a view of a rare
/// type still sees its events when common ones flood in.
#[derive(Default)]
struct Recent {
    all: VecDeque<Arc<StoredEvent>>,
    by_type: HashMap<EventType, VecDeque<Arc<StoredEvent>>>,
}

impl Recent {
    fn push(ring: &mut VecDeque<Arc<StoredEvent>>, event: Arc<StoredEvent>) {
        if ring.len() == RECENT_EVENTS {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    fn add(&mut self, batch: &CommittedBatch) {
        let n = batch.events.len();
        // Newest first, counting per type how many newer ones were seen: only
        // events that will still be among the latest are copied. A batch
        // holds few types, so a short list beats hashing every event.
        let mut newer: Vec<(&EventType, usize)> = Vec::new();
        let mut keep = Vec::new();
        for (i, event) in batch.events.iter().enumerate().rev() {
            let at = match newer.iter().position(|(k, _)| *k == &event.kind) {
                Some(at) => Some(at),
                None if newer.len() < RECENT_TYPES => {
                    newer.push((&event.kind, 0));
                    Some(newer.len() - 1)
                }
                // Beyond the types kept apart: copied, the ring bounds them anyway.
                None => None,
            };
            let keep_typed = at.is_none_or(|at| newer[at].1 < RECENT_EVENTS);
            if let Some(at) = at {
                newer[at].1 += 1;
            }
            let keep_all = n - i <= RECENT_EVENTS;
            if keep_typed || keep_all {
                keep.push((i, keep_typed, keep_all));
            }
        }
        for (i, keep_typed, keep_all) in keep.into_iter().rev() {
            let event = &batch.events[i];
            // One copy, shared by both lists.
            let stored = Arc::new(StoredEvent {
                seq: batch.first_seq + i as u64,
                event: event.clone(),
            });
            if keep_typed
                && (self.by_type.len() < RECENT_TYPES || self.by_type.contains_key(&event.kind))
            {
                Self::push(
                    self.by_type.entry(event.kind.clone()).or_default(),
                    stored.clone(),
                );
            }
            if keep_all {
                Self::push(&mut self.all, stored);
            }
        }
    }

    /// Events after `seq`, oldest first, of one type or of all.
    fn after(&self, seq: u64, kind: Option<&EventType>) -> Vec<Arc<StoredEvent>> {
        let ring = kind.and_then(|k| self.by_type.get(k)).unwrap_or(&self.all);
        ring.iter()
            .filter(|e| e.seq > seq && kind.is_none_or(|k| *k == e.event.kind))
            .cloned()
            .collect()
    }

    fn newest_seq(&self) -> u64 {
        self.all.back().map_or(0, |e| e.seq)
    }
}

impl Hub {
    pub fn new(engine: Arc<LiveEngine>, interval: Duration) -> Self {
        Self {
            engine,
            interval,
            views: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent::default()),
            committed: Notify::new(),
        }
    }

    /// Pushes updates until `shutdown` resolves, then closes every client.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_version = u64::MAX;
        let mut last_push = Instant::now();
        let mut last_seq = self.lock_recent().newest_seq();
        loop {
            // Wait for a commit (or the idle push), then until the interval
            // has passed since the last push: at most one push per interval.
            tokio::select! {
                _ = self.committed.notified() => {}
                _ = tokio::time::sleep_until((last_push + IDLE_PUSH).into()) => {}
                _ = &mut shutdown => break,
            }
            tokio::select! {
                _ = tokio::time::sleep_until((last_push + self.interval).into()) => {}
                _ = &mut shutdown => break,
            }
            let version = self.engine.version();
            if version == last_version && last_push.elapsed() < IDLE_PUSH {
                continue;
            }
            let newest = self.lock_recent().newest_seq();
            self.push_updates(last_seq);
            last_seq = newest.max(last_seq);
            last_version = version;
            last_push = Instant::now();
        }
        self.lock_views().clear();
    }

    fn lock_views(&self) -> std::sync::MutexGuard<'_, HashMap<String, View>> {
        self.views.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encodes each watched view once, with the events after `seq`.
    fn push_updates(&self, seq: u64) {
        let mut views = self.lock_views();
        views.retain(|_, view| view.sender.receiver_count() > 0);
        for view in views.values() {
            let events = self.lock_recent().after(seq, view.query.kind.as_ref());
            let message = self.message("update", &view.query, &events);
            view.sender.send_replace(message);
        }
    }

    /// Encodes one message for a view: its metrics and the given events.
    fn message(&self, kind: &str, query: &Query, events: &[Arc<StoredEvent>]) -> Arc<str> {
        let metrics: Metrics = self.engine.query(query).into();
        let events: Vec<_> = events
            .iter()
            .rev()
            .filter(|e| query.kind.as_ref().is_none_or(|k| *k == e.event.kind))
            .map(|e| EventOut::from(StoredEvent::clone(e)).to_json())
            .collect();
        json!({ "kind": kind, "metrics": metrics.to_json(), "events": events })
            .to_string()
            .into()
    }

    fn subscribe(&self, key: String, query: Query) -> watch::Receiver<Arc<str>> {
        let mut views = self.lock_views();
        let view = views.entry(key).or_insert_with(|| View {
            query,
            sender: watch::Sender::new(Arc::from("")),
        });
        view.sender.subscribe()
    }

    /// Serves one client: a snapshot now, then every update it can take.
    pub async fn serve(self: Arc<Self>, socket: WebSocketStream, key: String, query: Query) {
        let (mut sink, mut incoming) = socket.split();
        let mut updates = self.subscribe(key, query.clone());
        let recent = self.lock_recent().after(0, query.kind.as_ref());
        let snapshot = self.message("snapshot", &query, &recent);
        if sink
            .send(Message::Text(snapshot.to_string()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let message = updates.borrow_and_update().clone();
                    match tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(message.to_string()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break,
                        Err(_) => {
                            tracing::info!("dropping a WebSocket client that stopped reading");
                            break;
                        }
                    }
                }
                message = incoming.next() => match message {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = sink.close().await;
    }
}

impl Subscriber for Hub {
    fn on_commit(&self, batch: &Arc<CommittedBatch>) {
        self.lock_recent().add(batch);
        self.committed.notify_one();
    }
}
