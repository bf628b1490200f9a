//! A cluster's alert book, in the NATS key-value bucket `rta_alerts`: one
//! key per rule (`rule.NAME`) holding the rule, its state and the
//! notifications it still owes. One node evaluates and delivers at a time
//! (the `alerts` lease).
//!
//! Every write is a compare-and-set on the rule's key, so a state change
//! and the notification it owes land together or not at all, and a node
//! that lost the lease without knowing it cannot overwrite what the new
//! leader wrote. A removed rule that still owes notifications stays as a
//! tombstone until they are delivered.

use std::sync::Arc;
use std::sync::Mutex;

use async_nats::jetstream::kv;
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::Bus;
use crate::alert::{RuleSpec, State};
use crate::store::alerts::{AlertBook, BookError, KeptRule, Owed, Transition, new_incarnation};

const LEASE: &str = "alerts";
/// Compare-and-set attempts before giving up on one write.
const ATTEMPTS: usize = 5;

pub struct NatsBook {
    bus: Arc<Bus>,
    /// The lease's revision while this node holds it, and until when its
    /// last renewal surely holds.
    lease: Mutex<Lease>,
}

#[derive(Default)]
struct Lease {
    revision: Option<u64>,
    valid_until: Option<std::time::Instant>,
}

/// How long a renewal is trusted: the lease's time to live, less a margin
/// for clocks and for what is under way when it ends.
const TRUSTED: std::time::Duration = std::time::Duration::from_millis(2500);

#[derive(Clone, Serialize, Deserialize)]
struct StoredRule {
    spec: RuleSpec,
    incarnation: String,
    state: String,
    since_ms: Option<i64>,
    changed_ms: Option<i64>,
    changes: u64,
    /// Set once removed: kept only while notifications are owed.
    #[serde(default)]
    removed: bool,
    /// Owed notifications, oldest first.
    #[serde(default)]
    owed: Vec<StoredOwed>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredOwed {
    id: String,
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

impl Bus {
    pub fn alert_book(self: &Arc<Self>) -> NatsBook {
        NatsBook {
            bus: self.clone(),
            lease: Mutex::default(),
        }
    }
}

/// What a compare-and-set write does with the rule it read.
enum Edit {
    Write(Box<StoredRule>),
    Purge,
    Leave,
}

impl NatsBook {
    fn store(&self) -> &kv::Store {
        &self.bus.alerts
    }

    fn lock_lease(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every rule entry, tombstones included.
    async fn entries(&self) -> Result<Vec<StoredRule>, BookError> {
        let mut keys = self.store().keys().await.map_err(storage)?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(storage)?;
            if key.starts_with("rule.") {
                names.push(key);
            }
        }
        // A key written while they are listed can come twice.
        names.sort();
        names.dedup();
        let mut rules = Vec::new();
        for key in names {
            if let Some((rule, _)) = self.read(&key).await? {
                rules.push(rule);
            }
        }
        Ok(rules)
    }

    async fn read(&self, key: &str) -> Result<Option<(StoredRule, u64)>, BookError> {
        let entry = self.store().entry(key).await.map_err(storage)?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| {
                serde_json::from_slice::<StoredRule>(&e.value)
                    .ok()
                    .map(|rule| (rule, e.revision))
            }))
    }

    /// Reads the rule `name`, lets `edit` decide, and writes by
    /// compare-and-set, again from a fresh read if another write came
    /// first. Answers whether something was written.
    async fn edit(
        &self,
        name: &str,
        mut edit: impl FnMut(StoredRule) -> Edit,
    ) -> Result<bool, BookError> {
        let key = rule_key(name);
        for _ in 0..ATTEMPTS {
            let Some((rule, revision)) = self.read(&key).await? else {
                return Ok(false);
            };
            let written = match edit(rule) {
                Edit::Leave => return Ok(false),
                Edit::Purge => {
                    self.store()
                        .purge_expect_revision(&key, Some(revision))
                        .await
                }
                Edit::Write(rule) => {
                    let bytes = serde_json::to_vec(&rule).map_err(storage)?;
                    self.store()
                        .update(&key, bytes.into(), revision)
                        .await
                        .map(|_| ())
                }
            };
            match written {
                Ok(()) => return Ok(true),
                // Another write came first: read again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(storage(e)),
            }
        }
        Err(BookError::Storage(format!(
            "the rule {name} kept changing under {ATTEMPTS} writes"
        )))
    }
}

#[async_trait]
impl AlertBook for NatsBook {
    async fn lead(&self) {
        let held = self.lock_lease().revision;
        let sent = std::time::Instant::now();
        match self.bus.take_lease(LEASE, held).await {
            Ok(Some(revision)) => {
                if held.is_none() {
                    tracing::info!("this node evaluates the alert rules now");
                }
                *self.lock_lease() = Lease {
                    revision: Some(revision),
                    valid_until: Some(sent + TRUSTED),
                };
            }
            // Another node holds it.
            Ok(None) => *self.lock_lease() = Lease::default(),
            // Unknown: the revision is kept for the next try, and the
            // lease trusted only as long as the last renewal says.
            Err(_) => {}
        }
    }

    fn leads(&self) -> bool {
        self.lock_lease()
            .valid_until
            .is_some_and(|until| std::time::Instant::now() < until)
    }

    async fn step_down(&self) {
        let held = std::mem::take(&mut *self.lock_lease()).revision;
        if let Some(revision) = held {
            self.bus.release_lease(LEASE, revision).await;
        }
    }

    async fn rules(&self) -> Result<Vec<KeptRule>, BookError> {
        let mut rules: Vec<KeptRule> = self
            .entries()
            .await?
            .into_iter()
            .filter(|rule| !rule.removed)
            .map(|rule| KeptRule {
                state: State::from_parts(&rule.state, rule.since_ms).unwrap_or(State::Ok),
                spec: rule.spec,
                incarnation: rule.incarnation,
                changed_ms: rule.changed_ms,
                changes: rule.changes,
            })
            .collect();
        rules.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(rules)
    }

    async fn add(&self, spec: &RuleSpec) -> Result<(), BookError> {
        let fresh = |owed: Vec<StoredOwed>| StoredRule {
            spec: spec.clone(),
            incarnation: new_incarnation(),
            state: State::Ok.name().into(),
            since_ms: None,
            changed_ms: None,
            changes: 0,
            removed: false,
            owed,
        };
        let bytes = serde_json::to_vec(&fresh(Vec::new())).map_err(storage)?;
        match self
            .store()
            .create(rule_key(&spec.name), bytes.into())
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(storage(e)),
        }
        // A tombstone still owing notifications is replaced, keeping them.
        let mut exists = false;
        let replaced = self
            .edit(&spec.name, |old| {
                if old.removed {
                    Edit::Write(Box::new(fresh(old.owed)))
                } else {
                    exists = true;
                    Edit::Leave
                }
            })
            .await?;
        if replaced {
            Ok(())
        } else if exists {
            Err(BookError::Exists(spec.name.clone()))
        } else {
            Err(storage(format!(
                "the rule {} could not be added",
                spec.name
            )))
        }
    }

    async fn remove(&self, name: &str) -> Result<bool, BookError> {
        self.edit(name, |mut rule| {
            if rule.removed {
                Edit::Leave
            } else if rule.owed.is_empty() {
                Edit::Purge
            } else {
                rule.removed = true;
                Edit::Write(Box::new(rule))
            }
        })
        .await
    }

    async fn record(&self, t: Transition) -> Result<bool, BookError> {
        // Settling and retrying rewrite the key too: the guard is on what
        // the evaluator read, not on the key's revision (`edit` still
        // writes by compare-and-set).
        let owed = t.owed.map(|o| StoredOwed {
            id: o.id,
            webhook: o.webhook,
            body: o.body,
            created_ms: o.created_ms,
            attempts: o.attempts,
            next_ms: o.next_ms,
        });
        self.edit(&t.rule, |mut rule| {
            let unchanged = rule.incarnation == t.incarnation
                && !rule.removed
                && rule.changes == t.read_changes
                && State::from_parts(&rule.state, rule.since_ms) == Some(t.read_state);
            if !unchanged {
                return Edit::Leave;
            }
            rule.state = t.state.name().into();
            rule.since_ms = t.state.since().map(|s| s.millis());
            rule.changed_ms = Some(t.at_ms);
            rule.changes = t.changes;
            if let Some(owed) = &owed {
                rule.owed.push(owed.clone());
            }
            Edit::Write(Box::new(rule))
        })
        .await
    }

    async fn owed(&self) -> Result<Vec<Owed>, BookError> {
        let mut entries = self.entries().await?;
        entries.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(entries
            .into_iter()
            .flat_map(|rule| {
                let name = rule.spec.name;
                rule.owed.into_iter().map(move |o| Owed {
                    id: o.id,
                    rule: name.clone(),
                    webhook: o.webhook,
                    body: o.body,
                    created_ms: o.created_ms,
                    attempts: o.attempts,
                    next_ms: o.next_ms,
                })
            })
            .collect())
    }

    async fn settle(&self, rule: &str, id: &str) -> Result<(), BookError> {
        self.edit(rule, |mut stored| {
            let before = stored.owed.len();
            stored.owed.retain(|o| o.id != id);
            if stored.owed.len() == before {
                Edit::Leave
            } else if stored.removed && stored.owed.is_empty() {
                Edit::Purge
            } else {
                Edit::Write(Box::new(stored))
            }
        })
        .await
        .map(|_| ())
    }

    async fn retry_later(
        &self,
        rule: &str,
        id: &str,
        attempts: u32,
        next_ms: i64,
    ) -> Result<(), BookError> {
        self.edit(rule, |mut stored| {
            match stored.owed.iter_mut().find(|o| o.id == id) {
                Some(owed) => {
                    owed.attempts = attempts;
                    owed.next_ms = next_ms;
                    Edit::Write(Box::new(stored))
                }
                None => Edit::Leave,
            }
        })
        .await
        .map(|_| ())
    }
}
