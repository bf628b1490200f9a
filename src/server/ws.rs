//! The WebSocket hub: live metrics pushed at a bounded rate.
//!
//! Each client names a view (the same parameters as `GET /api/metrics`). On
//! every tick the hub encodes each view that has clients once, if anything
//! changed, and hands it to a `watch` channel: a client always gets the latest
//! message and never a queue, so a slow client skips updates instead of
//! slowing ingest or growing memory, and a stuck one is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use poem::web::websocket::{Message, WebSocketStream};
use poem_openapi::types::ToJSON;
use serde_json::json;
use tokio::sync::watch;

use super::LiveEngine;
use super::models::{EventOut, Metrics};
use crate::engine::Query;
use crate::feed::{CommittedBatch, Subscriber};
use crate::store::StoredEvent;

/// Committed events kept for new clients and the next update.
const RECENT_EVENTS: usize = 50;
/// A client that cannot take one message in this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Even without new events, push this often so windows slide.
const IDLE_PUSH: Duration = Duration::from_secs(5);

pub struct Hub {
    engine: Arc<LiveEngine>,
    interval: Duration,
    views: Mutex<HashMap<String, View>>,
    recent: Mutex<VecDeque<StoredEvent>>,
}

struct View {
    query: Query,
    sender: watch::Sender<Arc<str>>,
}

impl Hub {
    pub fn new(engine: Arc<LiveEngine>, interval: Duration) -> Self {
        Self {
            engine,
            interval,
            views: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
        }
    }

    /// Pushes updates until `shutdown` resolves, then closes every client.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        let mut last_version = u64::MAX;
        let mut last_push = Instant::now();
        let mut last_seq = self.newest_seq();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = &mut shutdown => break,
            }
            let version = self.engine.version();
            if version == last_version && last_push.elapsed() < IDLE_PUSH {
                continue;
            }
            let events = self.recent_after(last_seq);
            last_seq = events.last().map_or(last_seq, |e| e.seq);
            self.push_updates(&events);
            last_version = version;
            last_push = Instant::now();
        }
        self.lock_views().clear();
    }

    fn lock_views(&self) -> std::sync::MutexGuard<'_, HashMap<String, View>> {
        self.views.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn newest_seq(&self) -> u64 {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.back().map_or(0, |e| e.seq)
    }

    fn recent_after(&self, seq: u64) -> Vec<StoredEvent> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().filter(|e| e.seq > seq).cloned().collect()
    }

    fn push_updates(&self, events: &[StoredEvent]) {
        let mut views = self.lock_views();
        views.retain(|_, view| view.sender.receiver_count() > 0);
        for view in views.values() {
            let message = self.message("update", &view.query, events);
            view.sender.send_replace(message);
        }
    }

    /// Encodes one message for a view: its metrics and the given events.
    fn message(&self, kind: &str, query: &Query, events: &[StoredEvent]) -> Arc<str> {
        let metrics: Metrics = self.engine.query(query).into();
        let events: Vec<_> = events
            .iter()
            .rev()
            .filter(|e| query.kind.as_ref().is_none_or(|k| *k == e.event.kind))
            .map(|e| EventOut::from(e.clone()).to_json())
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
        let recent: Vec<_> = self.recent_after(0);
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
    fn on_commit(&self, batch: &CommittedBatch) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let skip = batch.events.len().saturating_sub(RECENT_EVENTS);
        for (i, event) in batch.events.iter().enumerate().skip(skip) {
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(StoredEvent {
                seq: batch.first_seq + i as u64,
                event: event.clone(),
            });
        }
    }
}
