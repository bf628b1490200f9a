//! A cluster's alert book, in the NATS key-value bucket `rta_alerts`:
//! `rule.NAME` holds a rule with its state, `owed.NAME.N` the N-th
//! notification a rule owes. One node evaluates and delivers at a time
//! (the `alerts` lease).
//!
//! A state change writes the notification first, then the rule's state by
//! compare-and-set. A node that stops between the two leaves a
//! notification whose key the next evaluator writes again (the same rule,
//! the same change number): it is delivered once.

use std::sync::{Arc, Mutex};

use async_nats::jetstream::kv;
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::Bus;
use crate::alert::{RuleSpec, State};
use crate::store::alerts::{AlertBook, BookError, KeptRule, Owed, Transition};

const LEASE: &str = "alerts";

pub struct NatsBook {
    bus: Arc<Bus>,
    /// The lease's revision while this node holds it.
    lease: Mutex<Option<u64>>,
}

#[derive(Serialize, Deserialize)]
struct StoredRule {
    spec: RuleSpec,
    state: String,
    since_ms: Option<i64>,
    changed_ms: Option<i64>,
    changes: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredOwed {
    id: String,
    rule: String,
    webhook: String,
    body: String,
    created_ms: i64,
    attempts: u32,
    next_ms: i64,
}

fn storage(e: impl std::fmt::Display) -> BookError {
    BookError::Storage(e.to_string())
}

fn rule_key(name: &str) -> String {
    format!("rule.{name}")
}

/// `NAME/N` -> `owed.NAME.N`.
fn owed_key(id: &str) -> String {
    format!("owed.{}", id.replacen('/', ".", 1))
}

impl Bus {
    pub fn alert_book(self: &Arc<Self>) -> NatsBook {
        NatsBook {
            bus: self.clone(),
            lease: Mutex::new(None),
        }
    }
}

impl NatsBook {
    fn store(&self) -> &kv::Store {
        &self.bus.alerts
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<(String, kv::Entry)>, BookError> {
        let mut keys = self.store().keys().await.map_err(storage)?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(storage)?;
            if key.starts_with(prefix) {
                names.push(key);
            }
        }
        let mut entries = Vec::new();
        for key in names {
            if let Some(entry) = self.store().entry(&key).await.map_err(storage)?
                && entry.operation == kv::Operation::Put
            {
                entries.push((key, entry));
            }
        }
        Ok(entries)
    }

    async fn put_owed(&self, owed: &Owed) -> Result<(), BookError> {
        let stored = StoredOwed {
            id: owed.id.clone(),
            rule: owed.rule.clone(),
            webhook: owed.webhook.clone(),
            body: owed.body.clone(),
            created_ms: owed.created_ms,
            attempts: owed.attempts,
            next_ms: owed.next_ms,
        };
        let bytes = serde_json::to_vec(&stored).map_err(storage)?;
        self.store()
            .put(owed_key(&owed.id), bytes.into())
            .await
            .map_err(storage)?;
        Ok(())
    }
}

#[async_trait]
impl AlertBook for NatsBook {
    async fn lead(&self) -> bool {
        let held = *self.lease.lock().unwrap_or_else(|p| p.into_inner());
        let taken = self.bus.take_lease(LEASE, held).await.ok().flatten();
        if taken.is_some() && held.is_none() {
            tracing::info!("this node evaluates the alert rules now");
        }
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = taken;
        taken.is_some()
    }

    async fn step_down(&self) {
        let held = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(revision) = held {
            self.bus.release_lease(LEASE, revision).await;
        }
    }

    async fn rules(&self) -> Result<Vec<KeptRule>, BookError> {
        let mut rules = Vec::new();
        for (_, entry) in self.entries("rule.").await? {
            let Ok(stored) = serde_json::from_slice::<StoredRule>(&entry.value) else {
                continue;
            };
            rules.push(KeptRule {
                state: State::from_parts(&stored.state, stored.since_ms).unwrap_or(State::Ok),
                spec: stored.spec,
                changed_ms: stored.changed_ms,
                changes: stored.changes,
            });
        }
        rules.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(rules)
    }

    async fn add(&self, spec: &RuleSpec) -> Result<(), BookError> {
        let stored = StoredRule {
            spec: spec.clone(),
            state: State::Ok.name().into(),
            since_ms: None,
            changed_ms: None,
            changes: 0,
        };
        let bytes = serde_json::to_vec(&stored).map_err(storage)?;
        match self
            .store()
            .create(rule_key(&spec.name), bytes.into())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(BookError::Exists(spec.name.clone()))
            }
            Err(e) => Err(storage(e)),
        }
    }

    async fn remove(&self, name: &str) -> Result<bool, BookError> {
        let key = rule_key(name);
        let exists = matches!(
            self.store().entry(&key).await.map_err(storage)?,
            Some(entry) if entry.operation == kv::Operation::Put
        );
        if exists {
            self.store().purge(&key).await.map_err(storage)?;
        }
        Ok(exists)
    }

    async fn record(&self, t: Transition) -> Result<(), BookError> {
        if let Some(owed) = &t.owed {
            self.put_owed(owed).await?;
        }
        let key = rule_key(&t.rule);
        let Some(entry) = self.store().entry(&key).await.map_err(storage)? else {
            return Ok(()); // removed meanwhile
        };
        let Ok(mut stored) = serde_json::from_slice::<StoredRule>(&entry.value) else {
            return Ok(());
        };
        stored.state = t.state.name().into();
        stored.since_ms = t.state.since().map(|s| s.millis());
        stored.changed_ms = Some(t.at_ms);
        stored.changes = t.changes;
        let bytes = serde_json::to_vec(&stored).map_err(storage)?;
        self.store()
            .update(&key, bytes.into(), entry.revision)
            .await
            .map_err(storage)?;
        Ok(())
    }

    async fn owed(&self) -> Result<Vec<Owed>, BookError> {
        let mut owed: Vec<Owed> = self
            .entries("owed.")
            .await?
            .into_iter()
            .filter_map(|(_, entry)| serde_json::from_slice::<StoredOwed>(&entry.value).ok())
            .map(|o| Owed {
                id: o.id,
                rule: o.rule,
                webhook: o.webhook,
                body: o.body,
                created_ms: o.created_ms,
                attempts: o.attempts,
                next_ms: o.next_ms,
            })
            .collect();
        owed.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(owed)
    }

    async fn settle(&self, id: &str) -> Result<(), BookError> {
        self.store().purge(owed_key(id)).await.map_err(storage)?;
        Ok(())
    }

    async fn retry_later(&self, id: &str, attempts: u32, next_ms: i64) -> Result<(), BookError> {
        let key = owed_key(id);
        let Some(entry) = self.store().entry(&key).await.map_err(storage)? else {
            return Ok(());
        };
        let Ok(mut stored) = serde_json::from_slice::<StoredOwed>(&entry.value) else {
            return Ok(());
        };
        stored.attempts = attempts;
        stored.next_ms = next_ms;
        let bytes = serde_json::to_vec(&stored).map_err(storage)?;
        self.store()
            .put(&key, bytes.into())
            .await
            .map_err(storage)?;
        Ok(())
    }
}
