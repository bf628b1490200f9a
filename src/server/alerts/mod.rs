//! Alert rules at work: each evaluated every `--alert-interval` with the
//! query model, its state changes written to the book with the
//! notification they owe, and those delivered to webhooks with retries.
//!
//! The book is the truth: every tick reads the rules and their states from
//! it, so rules added or removed anywhere are seen at the next tick, and a
//! restart carries on from what was written. Delivery is at least once: a
//! notification is forgotten only after its webhook answered 2xx (or after
//! `--webhook-retry-for`), and carries an id a receiver can drop repeats by.
//! A rule's notifications go out in order; a webhook that is down delays
//! only its own rule's.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::{ApiFailure, AppState};
use crate::alert::{Change, Measure, Notification, Rule, WebhookUrl, is_public};
use crate::event::Timestamp;
use crate::query::exec::StatValue;
use crate::store::alerts::{AlertBook, BookError, KeptRule, Owed, Transition};

mod api;

pub use api::AlertsApi;

/// What the server was told about alerts.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// How often every rule is evaluated.
    pub interval: Duration,
    /// Webhooks may point at loopback, link-local and private addresses.
    pub allow_private: bool,
    /// The dashboard's address as users reach it, for links in notifications.
    pub public_url: Option<String>,
    /// How long an undelivered notification is retried before it is given up.
    pub retry_for: Duration,
}

/// One webhook call takes at most this long.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once (one per rule at most).
const DELIVERIES: usize = 16;

/// The last evaluation of a rule, kept by the node that evaluates.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    pub(super) value: Option<f64>,
    pub(super) at: Timestamp,
}

pub struct Alerts {
    pub(super) book: Arc<dyn AlertBook>,
    pub(super) config: AlertConfig,
    client: reqwest::Client,
    seen: Mutex<HashMap<String, Seen>>,
    /// Woken when a notification is owed or one was settled.
    owed: Notify,
    /// Per rule: whether a delivery is on its way, and how many ended.
    delivering: Mutex<HashMap<String, (bool, u64)>>,
    deliveries: Arc<Semaphore>,
    /// Tells the lease keeper to stop.
    stop_keeping: Notify,
}

impl Alerts {
    pub fn new(book: Arc<dyn AlertBook>, config: AlertConfig) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rta/", env!("CARGO_PKG_VERSION")));
        if !config.allow_private {
            // A proxy would resolve the name itself, past this check.
            client = client.dns_resolver(Arc::new(PublicOnly)).no_proxy();
        }
        Ok(Self {
            book,
            client: client.build()?,
            config,
            seen: Mutex::default(),
            owed: Notify::new(),
            delivering: Mutex::default(),
            deliveries: Arc::new(Semaphore::new(DELIVERIES)),
            stop_keeping: Notify::new(),
        })
    }

    /// Evaluates and delivers until `stop` resolves, while this node leads
    /// (always, alone; on a cluster, while it holds the lease).
    pub async fn run(self: Arc<Self>, state: Arc<AppState>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let keeper = tokio::spawn(self.clone().keep_lead());
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !self.book.leads() {
                        continue;
                    }
                    let evaluated = tokio::select! {
                        evaluated = self.evaluate_all(&state) => evaluated,
                        _ = &mut stop => break,
                    };
                    match evaluated {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            tracing::warn!("alert rules not evaluated: {e}");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                    self.deliver_due().await;
                }
                _ = self.owed.notified() => self.deliver_due().await,
                _ = &mut stop => break,
            }
        }
        // Deliveries on their way finish before another node may lead (it
        // would send them again); if they do not, the lease is left to
        // lapse rather than handed over at once.
        let finished = tokio::time::timeout(
            WEBHOOK_TIMEOUT + Duration::from_secs(2),
            self.deliveries.acquire_many(DELIVERIES as u32),
        )
        .await
        .is_ok();
        self.stop_keeping.notify_one();
        let _ = keeper.await;
        if finished {
            self.book.step_down().await;
        }
    }

    /// Takes or keeps the lead every second, however long evaluations take.
    async fn keep_lead(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.book.lead().await,
                _ = self.stop_keeping.notified() => return,
            };
        }
    }

    async fn evaluate_all(&self, state: &Arc<AppState>) -> Result<(), BookError> {
        for kept in self.book.rules().await? {
            let Ok(rule) = kept.spec.clone().validate(true) else {
                continue;
            };
            let now = Timestamp::now();
            let (events, value) = match evaluate(state, &rule, now).await {
                Ok(seen) => seen,
                Err(e) => {
                    tracing::debug!("rule {}: not evaluated: {e}", rule.name());
                    continue;
                }
            };
            self.lock_seen()
                .insert(rule.name().to_string(), Seen { value, at: now });
            let holds = rule.holds(events, value);
            let (next, change) = rule.step(kept.state, holds, now);
            if next == kept.state {
                continue;
            }
            let changes = kept.changes + u64::from(change.is_some());
            let owed = change
                .map(|change| self.owe(&rule, &kept.incarnation, change, changes, value, now));
            let recorded = self
                .book
                .record(Transition {
                    rule: rule.name().to_string(),
                    incarnation: kept.incarnation.clone(),
                    read_state: kept.state,
                    read_changes: kept.changes,
                    state: next,
                    at_ms: now.millis(),
                    changes,
                    owed,
                })
                .await?;
            // Not recorded: the rule changed since it was read (removed, or
            // written by another node); the next tick starts from that.
            if recorded && let Some(change) = change {
                tracing::info!(
                    "alert {} is {} (value {}, {} {})",
                    rule.name(),
                    change.name(),
                    value.map_or("none".into(), |v| v.to_string()),
                    rule.spec.stat,
                    rule.spec.window
                );
                self.owed.notify_one();
            }
        }
        Ok(())
    }

    fn owe(
        &self,
        rule: &Rule,
        incarnation: &str,
        change: Change,
        number: u64,
        value: Option<f64>,
        now: Timestamp,
    ) -> Owed {
        let note = Notification::new(
            rule,
            incarnation,
            change,
            number,
            value,
            now,
            self.config.public_url.as_deref(),
        );
        Owed {
            id: note.id.clone(),
            rule: rule.name().to_string(),
            webhook: rule.webhook.as_str().to_string(),
            body: serde_json::to_string(&note).unwrap_or_default(),
            created_ms: now.millis(),
            attempts: 0,
            next_ms: now.millis(),
        }
    }

    /// Starts delivering every notification that is due: the oldest owed
    /// of each rule, unless one of that rule's is on its way.
    async fn deliver_due(self: &Arc<Self>) {
        if !self.book.leads() {
            return;
        }
        // A delivery that ends while the book is read leaves a stale entry
        // in what was read: rules whose deliveries ended meanwhile wait for
        // the next round, which their ending asks for.
        let before = self.lock_delivering().clone();
        let owed = match self.book.owed().await {
            Ok(owed) => owed,
            Err(e) => {
                tracing::warn!("notifications not delivered: {e}");
                return;
            }
        };
        let now = Timestamp::now().millis();
        let mut rules = HashSet::new();
        for owed in owed {
            if !rules.insert(owed.rule.clone()) || owed.next_ms > now {
                continue;
            }
            let Ok(permit) = self.deliveries.clone().try_acquire_owned() else {
                return;
            };
            {
                let mut delivering = self.lock_delivering();
                let (on_its_way, ended) = delivering.entry(owed.rule.clone()).or_default();
                let ended_before = before.get(&owed.rule).map_or(0, |(_, ended)| *ended);
                if *on_its_way || *ended != ended_before {
                    continue;
                }
                *on_its_way = true;
            }
            let alerts = self.clone();
            tokio::spawn(async move {
                let rule = owed.rule.clone();
                alerts.deliver(owed).await;
                if let Some((on_its_way, ended)) = alerts.lock_delivering().get_mut(&rule) {
                    *on_its_way = false;
                    *ended += 1;
                }
                drop(permit);
                alerts.owed.notify_one();
            });
        }
    }

    async fn deliver(&self, owed: Owed) {
        // The lease may have lapsed since this delivery was chosen.
        if !self.book.leads() {
            return;
        }
        let outcome = match WebhookUrl::parse(&owed.webhook, self.config.allow_private) {
            // The URL itself is not logged: its path may hold a secret.
            Err(_) => Err(format!(
                "its webhook {} is not allowed (a private address without --allow-private-webhooks?)",
                redact(&owed.webhook)
            )),
            Ok(url) => self
                .client
                .post(url.url().clone())
                .header("content-type", "application/json")
                .header("idempotency-key", &owed.id)
                .body(owed.body.clone())
                .send()
                .await
                .map_err(describe)
                .and_then(|answer| {
                    if answer.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("it answered {}", answer.status()))
                    }
                }),
        };
        let now = Timestamp::now().millis();
        let settled = match outcome {
            Ok(()) => {
                tracing::info!("notification {} delivered", owed.id);
                self.book.settle(&owed.rule, &owed.id).await
            }
            Err(reason) => {
                let attempts = owed.attempts.saturating_add(1);
                let retry_for =
                    i64::try_from(self.config.retry_for.as_millis()).unwrap_or(i64::MAX);
                if now.saturating_sub(owed.created_ms) >= retry_for {
                    tracing::warn!(
                        "gave up on notification {} after {attempts} attempts: {reason}",
                        owed.id
                    );
                    self.book.settle(&owed.rule, &owed.id).await
                } else {
                    let backoff = 500u64.saturating_mul(1 << attempts.min(7)).min(60_000);
                    tracing::debug!(
                        "notification {} not delivered ({reason}); again in {backoff} ms",
                        owed.id
                    );
                    self.book
                        .retry_later(&owed.rule, &owed.id, attempts, now + backoff as i64)
                        .await
                }
            }
        };
        if let Err(e) = settled {
            tracing::warn!("notification {}: {e}", owed.id);
        }
    }

    pub(super) fn lock_seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_delivering(&self) -> std::sync::MutexGuard<'_, HashMap<String, (bool, u64)>> {
        self.delivering.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn describe(&self, kept: &KeptRule) -> api::AlertOut {
        let seen = self.lock_seen().get(&kept.spec.name).copied();
        api::AlertOut::new(kept, seen)
    }
}

/// The rule's value now: the matching events, and the number compared.
async fn evaluate(
    state: &Arc<AppState>,
    rule: &Rule,
    now: Timestamp,
) -> Result<(u64, Option<f64>), ApiFailure> {
    let query = rule
        .query_text()
        .to_query(now)
        .map_err(ApiFailure::BadRequest)?;
    let (answer, _) = super::query::answer(state, query, now).await?;
    let events = answer.matched;
    let value = match &rule.measure {
        Measure::Count => Some(events as f64),
        Measure::Rate => Some(events as f64 / rule.window.as_secs_f64()),
        Measure::Stat(_) => answer
            .rows
            .first()
            .and_then(|row| row.stats.first())
            .and_then(|value| match value {
                StatValue::Number(x) => *x,
                StatValue::Count(n) => Some(*n as f64),
                StatValue::Top(_) => None,
            }),
    };
    Ok((events, value))
}

/// A request error with its causes (reqwest's own says little), without
/// the URL (its path may hold a secret).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves webhook hosts to public addresses only: a name that resolves
/// inward (now, or after the rule was added) is not called.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                let message = format!(
                    "{host} resolves to no public address (start the server with --allow-private-webhooks to call private ones)"
                );
                return Err(message.into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The scheme and host of a URL, then `/…`.
pub(super) fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}/…", u.origin().ascii_serialization()),
        Err(_) => "…".into(),
    }
}
