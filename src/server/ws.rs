//! The WebSocket hub: live metrics pushed at a bounded rate.
//!
//! Each client names a view (the same parameters as `GET /api/metrics`).
//! After a commit the hub encodes each view that has clients once (at once
//! after a quiet spell, then at most once per interval) and hands it to a
//! `watch` channel: a client always gets the latest message and never a
//! queue, so a slow client skips updates instead of slowing ingest or
//! growing memory, and a stuck one is dropped.
//!
//! A view the engine cannot answer (a range, filters) is recomputed from
//! the store, off the async threads, one at a time, only when events
//! arrived (or its window slid), and no sooner after the last than ten
//! times what that one cost: stored views take at most about a tenth of a
//! core each, and at most [`MAX_STORED_VIEWS`] distinct ones are watched.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use poem::web::websocket::{Message, WebSocketStream};
use poem_openapi::types::ToJSON;
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::AppState;
use super::metrics::MetricsView;
use super::models::{EventOut, Metrics};
use crate::event::{EventType, Timestamp};
use crate::feed::{CommittedBatch, Subscriber};
use crate::store::{StoreError, StoredEvent};

/// Committed events kept (overall and per type) for new clients and updates.
const RECENT_EVENTS: usize = 50;
/// Types whose recent events are kept apart; views of further types get
/// their events from the overall list.
const RECENT_TYPES: usize = 100;
/// A client that cannot take one message in this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Even without new events, push this often so windows slide.
const IDLE_PUSH: Duration = Duration::from_secs(5);
/// Distinct views answered from the store watched at once.
pub const MAX_STORED_VIEWS: usize = 32;
/// A stored view waits this many times its last computation's cost
/// before the next.
const COST_SPACING: u32 = 10;

pub struct Hub {
    state: Arc<AppState>,
    interval: Duration,
    views: Mutex<HashMap<String, Arc<View>>>,
    recent: Mutex<Recent>,
    /// Woken on every commit.
    committed: Notify,
    /// Held while a stored view is computed: one at a time.
    computing: Mutex<()>,
}

struct View {
    view: MetricsView,
    sender: watch::Sender<Arc<str>>,
    /// For a stored view: when it was computed and what it cost.
    refresh: Mutex<Refresh>,
}

#[derive(Default)]
struct Refresh {
    busy: bool,
    /// The newest sequence number when last computed, and when.
    seen_seq: u64,
    done: Option<Instant>,
    cost: Duration,
}

/// The view cannot be watched now.
#[derive(Debug, thiserror::Error)]
#[error(
    "{MAX_STORED_VIEWS} different views with a range or filters are watched already; watch one of them, or a view without filters"
)]
pub struct TooManyViews;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
    pub fn new(state: Arc<AppState>, interval: Duration) -> Self {
        Self {
            state,
            interval,
            views: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent::default()),
            committed: Notify::new(),
            computing: Mutex::new(()),
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
            let version = self.state.engine.version();
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

    fn lock_views(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<View>>> {
        lock(&self.views)
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        lock(&self.recent)
    }

    /// Encodes each watched view, with the events after `seq`: live views
    /// now, stored views when due, off the async threads.
    fn push_updates(self: &Arc<Self>, seq: u64) {
        let views: Vec<Arc<View>> = {
            let mut views = self.lock_views();
            views.retain(|_, view| view.sender.receiver_count() > 0);
            views.values().cloned().collect()
        };
        let newest = self.lock_recent().newest_seq();
        for view in views {
            if let MetricsView::Live(_) = view.view {
                let events = self.recent_events(&view.view, seq);
                if let Ok(message) = self.message("update", &view.view, &events) {
                    view.sender.send_replace(message);
                }
                continue;
            }
            let Some(sent) = self.due(&view, newest) else {
                continue;
            };
            let hub = self.clone();
            tokio::task::spawn_blocking(move || hub.refresh(&view, sent));
        }
    }

    /// Whether a stored view should be computed again now; if so, marks it
    /// busy and returns the sequence number its clients have events up to.
    fn due(&self, view: &View, newest: u64) -> Option<u64> {
        let mut refresh = lock(&view.refresh);
        let since = refresh.done.map(|d| d.elapsed());
        let changed = (newest > refresh.seen_seq && self.shows_new(&view.view, refresh.seen_seq))
            || (matches!(&view.view, MetricsView::Stored(s) if s.slides())
                && since.is_none_or(|s| s >= IDLE_PUSH));
        let rested = since.is_none_or(|s| s >= self.interval.max(refresh.cost * COST_SPACING));
        if refresh.busy || !changed || !rested {
            return None;
        }
        refresh.busy = true;
        Some(refresh.seen_seq)
    }

    /// Computes a stored view and hands the message, with the events after
    /// `seq`, to its clients. Blocking.
    fn refresh(&self, view: &View, seq: u64) {
        // Cleared however this ends, so a failure never freezes the view.
        struct Done<'a>(&'a Mutex<Refresh>);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                lock(self.0).busy = false;
            }
        }
        let _done = Done(&view.refresh);
        let _one_at_a_time = lock(&self.computing);
        let started = Instant::now();
        // The events sent and the newest seen, read together: none twice.
        let (events, newest) = {
            let recent = self.lock_recent();
            (recent.after(seq, view.view.kind()), recent.newest_seq())
        };
        let now = Timestamp::now();
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| view.view.shows(&e.event, now))
            .collect();
        let message = self.message("update", &view.view, &events);
        let mut refresh = lock(&view.refresh);
        refresh.seen_seq = newest;
        refresh.done = Some(Instant::now());
        refresh.cost = started.elapsed();
        tracing::debug!("a stored view took {:?}", refresh.cost);
        match message {
            Ok(message) => {
                view.sender.send_replace(message);
            }
            Err(e) => tracing::warn!("could not update a WebSocket view: {e}"),
        }
    }

    /// Whether events after `seq` may change the view: one it shows, or
    /// more than the ring kept.
    fn shows_new(&self, view: &MetricsView, seq: u64) -> bool {
        let recent = self.lock_recent();
        let kept = recent.after(seq, None);
        let oldest_kept = kept.first().map_or(u64::MAX, |e| e.seq);
        let now = Timestamp::now();
        oldest_kept > seq + 1 || kept.iter().any(|e| view.shows(&e.event, now))
    }

    /// The ring's events after `seq` that the view shows, oldest first.
    fn recent_events(&self, view: &MetricsView, seq: u64) -> Vec<Arc<StoredEvent>> {
        let now = Timestamp::now();
        let mut events = self.lock_recent().after(seq, view.kind());
        events.retain(|e| view.shows(&e.event, now));
        events
    }

    /// Encodes one message for a view: its metrics and the given events
    /// (oldest first). Blocking for a stored view.
    fn message(
        &self,
        kind: &str,
        view: &MetricsView,
        events: &[Arc<StoredEvent>],
    ) -> Result<Arc<str>, StoreError> {
        let metrics: Metrics = view.answer(&self.state, Timestamp::now())?.into();
        let events: Vec<_> = events
            .iter()
            .rev()
            .map(|e| EventOut::from(StoredEvent::clone(e)).to_json())
            .collect();
        Ok(
            json!({ "kind": kind, "metrics": metrics.to_json(), "events": events })
                .to_string()
                .into(),
        )
    }

    /// Registers a client of a view; a new stored view only while fewer
    /// than [`MAX_STORED_VIEWS`] are watched.
    pub fn subscribe(
        &self,
        key: String,
        view: MetricsView,
    ) -> Result<watch::Receiver<Arc<str>>, TooManyViews> {
        let mut views = self.lock_views();
        views.retain(|_, view| view.sender.receiver_count() > 0);
        if !views.contains_key(&key) && matches!(view, MetricsView::Stored(_)) {
            let stored = views
                .values()
                .filter(|v| matches!(v.view, MetricsView::Stored(_)))
                .count();
            if stored >= MAX_STORED_VIEWS {
                return Err(TooManyViews);
            }
        }
        let view = views.entry(key).or_insert_with(|| {
            Arc::new(View {
                view,
                sender: watch::Sender::new(Arc::from("")),
                refresh: Mutex::new(Refresh {
                    seen_seq: self.lock_recent().newest_seq(),
                    done: Some(Instant::now()),
                    ..Refresh::default()
                }),
            })
        });
        Ok(view.sender.subscribe())
    }

    /// The first message of a view: its metrics and latest events.
    async fn first_message(self: &Arc<Self>, view: &MetricsView) -> Result<Arc<str>, StoreError> {
        if let MetricsView::Live(_) = view {
            let recent = self.recent_events(view, 0);
            return self.message("snapshot", view, &recent);
        }
        let (hub, view) = (self.clone(), view.clone());
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = lock(&hub.computing);
            let now = Timestamp::now();
            let mut events = view.latest_events(&hub.state, now, RECENT_EVENTS)?;
            events.reverse();
            let events: Vec<_> = events.into_iter().map(Arc::new).collect();
            hub.message("snapshot", &view, &events)
        })
        .await
        .map_err(|e| StoreError::Read(e.to_string()))?
    }

    /// Serves one client: a snapshot now, then every update it can take.
    pub async fn serve(
        self: Arc<Self>,
        socket: WebSocketStream,
        view: MetricsView,
        mut updates: watch::Receiver<Arc<str>>,
    ) {
        let clients = self.state.telemetry.ws_clients().clone();
        clients.inc();
        // Counted down however the connection ends.
        let _connected = scopeguard(move || clients.dec());
        let (mut sink, mut incoming) = socket.split();
        let first = match self.first_message(&view).await {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!("could not answer a WebSocket view: {e}");
                let _ = sink
                    .send(Message::Close(Some((
                        poem::web::websocket::CloseCode::Again,
                        "the store could not be read; retry later".into(),
                    ))))
                    .await;
                return;
            }
        };
        if sink.send(Message::Text(first.to_string())).await.is_err() {
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

/// Closes a socket at once with "try again later" (1013) and the reason.
pub async fn refuse(socket: WebSocketStream, reason: &str) {
    let (mut sink, _) = socket.split();
    let reason: String = reason.chars().take(120).collect();
    let _ = sink
        .send(Message::Close(Some((
            poem::web::websocket::CloseCode::Again,
            reason,
        ))))
        .await;
}

impl Subscriber for Hub {
    fn on_commit(&self, batch: &Arc<CommittedBatch>) {
        self.lock_recent().add(batch);
        self.committed.notify_one();
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
