//! Where alert rules, their states and the notifications still owed are
//! kept. A state change and the notification it owes are written in one
//! transaction, so after any crash either both are there or neither: a
//! restart neither repeats a notification nor forgets one.
//!
//! The embedded book is its own small SQLite database next to the events
//! (`alerts.sqlite3`): rules change rarely, and keeping them apart leaves
//! the event store's writer alone.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, params};

use crate::alert::{RuleSpec, State};

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("the alert rules cannot be read or written: {0}")]
    Storage(String),
    #[error("a rule named `{0}` exists; remove it first to replace it")]
    Exists(String),
}

/// A rule as kept, with where it stood when last written.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRule {
    pub spec: RuleSpec,
    /// Made when the rule was added: a rule removed and added again under
    /// its name is another rule, and its notification ids differ.
    pub incarnation: String,
    pub state: State,
    /// When the state last changed (ms), if ever.
    pub changed_ms: Option<i64>,
    /// Changes notified so far: the next notification's number is one more.
    pub changes: u64,
}

/// A notification not yet delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Owed {
    /// The notification's id (`RULE/N`), unique.
    pub id: String,
    pub rule: String,
    pub webhook: String,
    /// The JSON body.
    pub body: String,
    pub created_ms: i64,
    pub attempts: u32,
    /// Not to be tried before this (ms).
    pub next_ms: i64,
}

/// A rule's new state, and the notification it owes, if any: written
/// only if the rule is still as read (same incarnation, state and count of
/// changes): a book never takes a change made from a stale read.
#[derive(Debug, Clone)]
pub struct Transition {
    pub rule: String,
    pub incarnation: String,
    /// The state and count of changes read, which the rule must still have.
    pub read_state: State,
    pub read_changes: u64,
    pub state: State,
    pub at_ms: i64,
    pub changes: u64,
    pub owed: Option<Owed>,
}

#[async_trait]
pub trait AlertBook: Send + Sync {
    /// Takes or keeps the lead: on a cluster, one node at a time evaluates
    /// and delivers. Called every second.
    async fn lead(&self) {}

    /// Whether this node leads now: on a cluster, only while its last
    /// renewal of the lease is surely still valid.
    fn leads(&self) -> bool {
        true
    }

    /// Stops evaluating (at shutdown), so another node takes over at once.
    async fn step_down(&self) {}

    async fn rules(&self) -> Result<Vec<KeptRule>, BookError>;
    /// Adds a rule in state `ok`, with a new incarnation; refused if the
    /// name is taken.
    async fn add(&self, spec: &RuleSpec) -> Result<(), BookError>;
    /// Removes a rule (notifications it still owes are still delivered);
    /// whether it existed.
    async fn remove(&self, name: &str) -> Result<bool, BookError>;
    /// Writes a rule's new state and the notification it owes, together;
    /// nothing when the rule changed since it was read (answers false).
    async fn record(&self, transition: Transition) -> Result<bool, BookError>;
    /// Every notification owed, oldest first.
    async fn owed(&self) -> Result<Vec<Owed>, BookError>;
    /// Forgets a notification of `rule`: delivered, or given up on.
    async fn settle(&self, rule: &str, id: &str) -> Result<(), BookError>;
    async fn retry_later(
        &self,
        rule: &str,
        id: &str,
        attempts: u32,
        next_ms: i64,
    ) -> Result<(), BookError>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rules (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'ok',
    since_ms INTEGER,
    changed_ms INTEGER,
    changes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS owed (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    rule TEXT NOT NULL,
    webhook TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL
);
";

pub struct SqliteBook {
    conn: Arc<Mutex<Connection>>,
}

fn storage(e: impl std::fmt::Display) -> BookError {
    BookError::Storage(e.to_string())
}

impl SqliteBook {
    pub fn open(dir: &Path) -> Result<Self, BookError> {
        let path = dir.join("alerts.sqlite3");
        let conn =
            Connection::open(&path).map_err(|e| storage(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| storage(format!("{}: {e}", path.display())))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection, off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, BookError> + Send + 'static,
    ) -> Result<T, BookError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(storage)?
    }
}

#[async_trait]
impl AlertBook for SqliteBook {
    async fn rules(&self) -> Result<Vec<KeptRule>, BookError> {
        self.with(|conn| {
            let mut statement = conn
                .prepare(
                    "SELECT spec, state, since_ms, changed_ms, changes, incarnation \
                     FROM rules ORDER BY name",
                )
                .map_err(storage)?;
            let rows = statement
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .map_err(storage)?;
            let mut kept = Vec::new();
            for row in rows {
                let (spec, state, since, changed_ms, changes, incarnation) =
                    row.map_err(storage)?;
                let spec: RuleSpec = serde_json::from_str(&spec).map_err(storage)?;
                let state = State::from_parts(&state, since).unwrap_or(State::Ok);
                kept.push(KeptRule {
                    spec,
                    incarnation,
                    state,
                    changed_ms,
                    changes: changes.max(0) as u64,
                });
            }
            Ok(kept)
        })
        .await
    }

    async fn add(&self, spec: &RuleSpec) -> Result<(), BookError> {
        let (name, text) = (
            spec.name.clone(),
            serde_json::to_string(spec).map_err(storage)?,
        );
        let incarnation = new_incarnation();
        self.with(move |conn| {
            let added = conn
                .execute(
                    "INSERT INTO rules (name, spec, incarnation) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO NOTHING",
                    params![name, text, incarnation],
                )
                .map_err(storage)?;
            if added == 0 {
                return Err(BookError::Exists(name));
            }
            Ok(())
        })
        .await
    }

    async fn remove(&self, name: &str) -> Result<bool, BookError> {
        let name = name.to_string();
        self.with(move |conn| {
            conn.execute("DELETE FROM rules WHERE name = ?1", params![name])
                .map(|n| n > 0)
                .map_err(storage)
        })
        .await
    }

    async fn record(&self, t: Transition) -> Result<bool, BookError> {
        self.with(move |conn| {
            let tx = conn.transaction().map_err(storage)?;
            let updated = tx
                .execute(
                    "UPDATE rules SET state = ?2, since_ms = ?3, changed_ms = ?4, changes = ?5 \
                     WHERE name = ?1 AND incarnation = ?6 AND state = ?7 AND since_ms IS ?8 AND changes = ?9",
                    params![
                        t.rule,
                        t.state.name(),
                        t.state.since().map(|s| s.millis()),
                        t.at_ms,
                        t.changes as i64,
                        t.incarnation,
                        t.read_state.name(),
                        t.read_state.since().map(|s| s.millis()),
                        t.read_changes as i64
                    ],
                )
                .map_err(storage)?;
            if updated == 0 {
                // Removed, replaced or changed since it was read.
                return Ok(false);
            }
            if let Some(owed) = &t.owed {
                tx.execute(
                    "INSERT INTO owed (id, rule, webhook, body, created_ms, next_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                     ON CONFLICT (id) DO NOTHING",
                    params![owed.id, owed.rule, owed.webhook, owed.body, owed.created_ms],
                )
                .map_err(storage)?;
            }
            tx.commit().map_err(storage)?;
            Ok(true)
        })
        .await
    }

    async fn owed(&self) -> Result<Vec<Owed>, BookError> {
        self.with(|conn| {
            let mut statement = conn
                .prepare(
                    "SELECT id, rule, webhook, body, created_ms, attempts, next_ms FROM owed ORDER BY n",
                )
                .map_err(storage)?;
            let rows = statement
                .query_map([], |r| {
                    Ok(Owed {
                        id: r.get(0)?,
                        rule: r.get(1)?,
                        webhook: r.get(2)?,
                        body: r.get(3)?,
                        created_ms: r.get(4)?,
                        attempts: r.get::<_, i64>(5)?.clamp(0, u32::MAX as i64) as u32,
                        next_ms: r.get(6)?,
                    })
                })
                .map_err(storage)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(storage)
        })
        .await
    }

    async fn settle(&self, _rule: &str, id: &str) -> Result<(), BookError> {
        let id = id.to_string();
        self.with(move |conn| {
            conn.execute("DELETE FROM owed WHERE id = ?1", params![id])
                .map(|_| ())
                .map_err(storage)
        })
        .await
    }

    async fn retry_later(
        &self,
        _rule: &str,
        id: &str,
        attempts: u32,
        next_ms: i64,
    ) -> Result<(), BookError> {
        let id = id.to_string();
        self.with(move |conn| {
            conn.execute(
                "UPDATE owed SET attempts = ?2, next_ms = ?3 WHERE id = ?1",
                params![id, attempts as i64, next_ms],
            )
            .map(|_| ())
            .map_err(storage)
        })
        .await
    }
}

/// A new rule's incarnation: 8 hex digits, random.
pub fn new_incarnation() -> String {
    format!("{:08x}", rand::random::<u32>())
}
