//! The engine as the server shares it: fed by the [`Feed`](crate::feed::Feed),
//! read by the API, the WebSocket hub and upkeep.
//!
//! Commits are not applied one at a time as they arrive. They wait, shared
//! with the feed rather than copied, until someone reads the engine or
//! [`APPLY_AFTER_EVENTS`] have gathered, and are then applied together:
//! single-event requests commit a few events at a time, and applied
//! together their events are grouped by type and minute as a large batch's
//! are. Every read applies what waits first, so a read that follows an
//! acknowledged ingest sees its events. Gathered batches are applied by a
//! thread of their own ("rta-engine"), off the path of the commits and their
//! answers; a commit applies them itself only if [`WAITING_MAX`] events wait.
//! The thread ends when the `LiveEngine` is dropped.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::engine::{self, Engine};
use crate::event::Timestamp;
use crate::feed::{CommittedBatch, Subscriber};

/// Events waiting when the engine's thread is woken to apply them.
const APPLY_AFTER_EVENTS: usize = 4096;
/// Events waiting at most: the commit that reaches this applies them itself.
const WAITING_MAX: usize = 4 * APPLY_AFTER_EVENTS;

pub struct LiveEngine {
    engine: Mutex<Engine>,
    /// Taken only briefly, so a commit never waits for the engine.
    waiting: Mutex<Waiting>,
    /// Wakes the engine's thread; it stops once this is dropped.
    enough_waiting: SyncSender<()>,
}

/// Committed batches not yet applied, in commit order.
#[derive(Default)]
struct Waiting {
    batches: Vec<Arc<CommittedBatch>>,
    events: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveEngine {
    /// Shares `engine`, with a thread that applies gathered batches.
    pub fn start(engine: Engine) -> std::io::Result<Arc<Self>> {
        let (wake, woken) = sync_channel::<()>(1);
        let live = Arc::new(Self {
            engine: Mutex::new(engine),
            waiting: Mutex::new(Waiting::default()),
            enough_waiting: wake,
        });
        let weak: Weak<Self> = Arc::downgrade(&live);
        std::thread::Builder::new()
            .name("rta-engine".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    let Some(live) = weak.upgrade() else { return };
                    drop(live.current());
                }
            })?;
        Ok(live)
    }

    /// The engine, locked, with every batch committed so far applied.
    fn current(&self) -> MutexGuard<'_, Engine> {
        let mut engine = lock(&self.engine);
        // Taken while holding the engine, so batches are applied in order.
        let waiting = std::mem::take(&mut *lock(&self.waiting));
        if !waiting.batches.is_empty() {
            engine.apply_batches(&waiting.batches, Timestamp::now());
        }
        engine
    }

    /// Runs `f` on the engine with every committed batch applied, holding it
    /// meanwhile.
    pub fn with<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        f(&mut self.current())
    }

    pub fn query(&self, query: &engine::Query) -> engine::Metrics {
        self.with(|engine| engine.query(query, Timestamp::now()))
    }

    /// Changes whenever committed events change what the engine answers.
    pub fn version(&self) -> u64 {
        self.with(|engine| engine.version())
    }
}

impl Subscriber for LiveEngine {
    fn on_commit(&self, batch: &Arc<CommittedBatch>) {
        let (before, after) = {
            let mut waiting = lock(&self.waiting);
            let before = waiting.events;
            waiting.events += batch.events.len();
            waiting.batches.push(batch.clone());
            (before, waiting.events)
        };
        if after >= WAITING_MAX {
            drop(self.current());
        } else if before < APPLY_AFTER_EVENTS && after >= APPLY_AFTER_EVENTS {
            // Once per crossing: waking the thread on every commit after it
            // would have it apply a few events at a time.
            match self.enough_waiting.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                // No thread (it could not be woken): apply here.
                Err(TrySendError::Disconnected(())) => drop(self.current()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Query};
    use crate::event::{Event, EventType, Limits, parse_event};

    fn event(kind: &str, amount: u64) -> Event {
        let doc = serde_json::json!({"type": kind, "values": {"amount": amount, "region": format!("r{}", amount % 7)}});
        parse_event(doc, &Limits::default(), Timestamp::now()).expect("a valid event")
    }

    fn total(live: &LiveEngine) -> u64 {
        live.query(&Query::default()).total_events
    }

    /// What the engine reports about type `b`, as text to compare.
    fn metrics_of_b(answer: &engine::Metrics) -> String {
        let b = answer.types.iter().find(|t| t.name == "b");
        format!("{:?}", b.map(|t| (t.count, &t.measures, &t.dimensions)))
    }

    #[test]
    fn reads_see_every_commit_and_waiting_stays_bounded() {
        let live = LiveEngine::start(Engine::new(EngineConfig::default())).expect("a thread");
        let mut one_by_one = Engine::new(EngineConfig::default());
        for i in 0..10_000u64 {
            let kind = if i % 3 == 0 { "a" } else { "b" };
            let batch = Arc::new(CommittedBatch {
                first_seq: i + 1,
                events: vec![event(kind, i)],
            });
            live.on_commit(&batch);
            one_by_one.apply_committed(i + 1, &batch.events, Timestamp::now());
            assert!(lock(&live.waiting).events < WAITING_MAX);
            if i % 997 == 0 {
                assert_eq!(total(&live), i + 1, "a read right after commit {i}");
            }
        }
        assert_eq!(total(&live), 10_000);
        // Applied together or one at a time, the metrics are the same.
        let query = Query {
            kind: Some(EventType::parse("b", &Limits::default()).expect("a valid type")),
            ..Query::default()
        };
        assert_eq!(
            metrics_of_b(&live.query(&query)),
            metrics_of_b(&one_by_one.query(&query, Timestamp::now()))
        );
    }

    #[test]
    fn a_batch_seen_twice_counts_once() {
        let live = LiveEngine::start(Engine::new(EngineConfig::default())).expect("a thread");
        let batch = Arc::new(CommittedBatch {
            first_seq: 1,
            events: vec![event("a", 1), event("a", 2)],
        });
        live.on_commit(&batch);
        live.on_commit(&batch);
        assert_eq!(total(&live), 2);
    }
}
