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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::Request;
use poem::http::StatusCode;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use tokio::sync::{Notify, Semaphore};

use super::access::TokenIn;
use super::models::{ApiError, rfc3339};
use super::{ApiFailure, AppState};
use crate::alert::{Change, Measure, Notification, Rule, RuleSpec, State, WebhookUrl, is_public};
use crate::event::Timestamp;
use crate::query::exec::StatValue;
use crate::store::alerts::{AlertBook, BookError, KeptRule, Owed, Transition};

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
struct Seen {
    value: Option<f64>,
    at: Timestamp,
}

pub struct Alerts {
    book: Arc<dyn AlertBook>,
    config: AlertConfig,
    client: reqwest::Client,
    seen: Mutex<HashMap<String, Seen>>,
    /// Woken when a notification is owed or one was settled.
    owed: Notify,
    /// Rules with a delivery on its way.
    in_flight: Mutex<HashSet<String>>,
    /// Deliveries ended, per rule.
    ended: Mutex<HashMap<String, u64>>,
    deliveries: Arc<Semaphore>,
    /// Whether this node evaluates and delivers (kept by `keep_lead`).
    leading: AtomicBool,
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
            in_flight: Mutex::default(),
            ended: Mutex::default(),
            deliveries: Arc::new(Semaphore::new(DELIVERIES)),
            leading: AtomicBool::new(false),
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
                    if !self.leading.load(Ordering::Relaxed) {
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
                _ = self.owed.notified() => {
                    if self.leading.load(Ordering::Relaxed) {
                        self.deliver_due().await;
                    }
                }
                _ = &mut stop => break,
            }
        }
        // Deliveries on their way finish before another node may lead (it
        // would send them again).
        let _ = tokio::time::timeout(
            WEBHOOK_TIMEOUT + Duration::from_secs(1),
            self.deliveries.acquire_many(DELIVERIES as u32),
        )
        .await;
        keeper.abort();
        self.leading.store(false, Ordering::Relaxed);
        self.book.step_down().await;
    }

    /// Takes or keeps the lead every second, however long evaluations take.
    async fn keep_lead(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let leads = self.book.lead().await;
            self.leading.store(leads, Ordering::Relaxed);
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
                    revision: kept.revision,
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
        // A delivery that ends while the book is read leaves a stale entry
        // in what was read: rules whose deliveries ended meanwhile wait for
        // the next round, which their ending asks for.
        let ended_before = self.lock_ended().clone();
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
            if self.lock_ended().get(&owed.rule) != ended_before.get(&owed.rule) {
                continue;
            }
            if !self.lock_in_flight().insert(owed.rule.clone()) {
                continue;
            }
            let Ok(permit) = self.deliveries.clone().try_acquire_owned() else {
                self.lock_in_flight().remove(&owed.rule);
                return;
            };
            let alerts = self.clone();
            tokio::spawn(async move {
                let rule = owed.rule.clone();
                alerts.deliver(owed).await;
                *alerts.lock_ended().entry(rule.clone()).or_default() += 1;
                alerts.lock_in_flight().remove(&rule);
                drop(permit);
                alerts.owed.notify_one();
            });
        }
    }

    async fn deliver(&self, owed: Owed) {
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

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_ended(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn describe(&self, kept: &KeptRule) -> AlertOut {
        let seen = self.lock_seen().get(&kept.spec.name).copied();
        AlertOut::new(kept, seen)
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

#[derive(Tags)]
enum AlertTags {
    /// Alert rules and their webhooks
    Alerts,
}

pub struct AlertsApi {
    pub state: Arc<AppState>,
}

/// A rule: a query with a condition, and the webhook told when it fires and resolves.
#[derive(Debug, Object)]
#[oai(example, deny_unknown_fields)]
pub struct AlertIn {
    /// 1-64 letters, digits, `-`, `_` or `.`.
    pub name: String,
    /// Only events of this type.
    #[oai(rename = "type")]
    pub kind: Option<String>,
    /// Filters, all of which must hold (the query syntax: `device=mobile`, `amount>100`).
    #[oai(rename = "where")]
    pub filters: Option<Vec<String>>,
    /// `count` (the default), `rate` (events per second) or `STAT:FIELD`
    /// (`p95:latency_ms`, `mean:amount`, `distinct:user`).
    pub stat: Option<String>,
    /// The window the statistic is computed over, up to now: `10s` and up.
    pub window: String,
    /// Fires while the value is above this.
    pub above: Option<f64>,
    /// Fires while the value is below this.
    pub below: Option<f64>,
    /// Fires while the window holds no matching event.
    pub absent: Option<bool>,
    /// How long the condition must hold before the rule fires (`1m`; default `0s`).
    #[oai(rename = "for")]
    pub hold: Option<String>,
    /// The http(s) URL told of each change, with a JSON body.
    pub webhook: String,
}

impl Example for AlertIn {
    fn example() -> Self {
        AlertIn {
            name: "slow-mobile".into(),
            kind: Some("pageview".into()),
            filters: Some(vec!["device=mobile".into()]),
            stat: Some("p95:latency_ms".into()),
            window: "5m".into(),
            above: Some(500.0),
            below: None,
            absent: None,
            hold: Some("1m".into()),
            webhook: "https://hooks.example/rta".into(),
        }
    }
}

impl AlertIn {
    fn into_spec(self) -> RuleSpec {
        RuleSpec {
            name: self.name,
            kind: self.kind,
            filters: self.filters.unwrap_or_default(),
            stat: self.stat.unwrap_or_else(|| "count".into()),
            window: self.window,
            above: self.above,
            below: self.below,
            absent: self.absent.unwrap_or(false),
            hold: self.hold,
            webhook: self.webhook,
        }
    }
}

/// A rule and where it stands.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct AlertOut {
    pub name: String,
    #[oai(rename = "type")]
    #[oai(skip_serializing_if_is_none)]
    pub kind: Option<String>,
    #[oai(rename = "where")]
    pub filters: Vec<String>,
    pub stat: String,
    pub window: String,
    #[oai(skip_serializing_if_is_none)]
    pub above: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub below: Option<f64>,
    pub absent: bool,
    #[oai(rename = "for")]
    #[oai(skip_serializing_if_is_none)]
    pub hold: Option<String>,
    /// The webhook's scheme and host (its path may hold a secret).
    pub webhook: String,
    /// `ok`, `pending` (the condition holds, not yet for `for`) or `firing`.
    pub state: String,
    /// Since when the condition has held (pending or firing).
    #[oai(skip_serializing_if_is_none)]
    pub since: Option<String>,
    /// When the state last changed.
    #[oai(skip_serializing_if_is_none)]
    pub changed_at: Option<String>,
    /// The value at the last evaluation, where this node evaluates.
    #[oai(skip_serializing_if_is_none)]
    pub value: Option<f64>,
    /// When that evaluation was.
    #[oai(skip_serializing_if_is_none)]
    pub evaluated_at: Option<String>,
}

impl AlertOut {
    fn new(kept: &KeptRule, seen: Option<Seen>) -> Self {
        let spec = &kept.spec;
        AlertOut {
            name: spec.name.clone(),
            kind: spec.kind.clone(),
            filters: spec.filters.clone(),
            stat: spec.stat.clone(),
            window: spec.window.clone(),
            above: spec.above,
            below: spec.below,
            absent: spec.absent,
            hold: spec.hold.clone(),
            webhook: redact(&spec.webhook),
            state: kept.state.name().into(),
            since: kept.state.since().map(|t| t.to_rfc3339()),
            changed_at: kept.changed_ms.map(rfc3339),
            value: seen.and_then(|s| s.value),
            evaluated_at: seen.map(|s| s.at.to_rfc3339()),
        }
    }
}

/// The scheme and host of a URL, then `/…`.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}/…", u.origin().ascii_serialization()),
        Err(_) => "…".into(),
    }
}

#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<AlertOut>>),
    /// The server runs with `--read-token` and the request lacks it.
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>),
    /// The rules cannot be read now.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}

#[derive(ApiResponse)]
enum AddResponse {
    /// Added; evaluated from the next tick on.
    #[oai(status = 201)]
    Created(Json<Box<AlertOut>>),
    /// The rule is malformed; the message names the part.
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// The server runs with `--token` and the request lacks it.
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>),
    /// A rule of that name exists.
    #[oai(status = 409)]
    Conflict(Json<ApiError>),
    /// The rules cannot be written now.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}

#[derive(ApiResponse)]
enum RemoveResponse {
    /// Removed (notifications it still owes are still delivered).
    #[oai(status = 204)]
    Removed,
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>),
    /// No rule of that name.
    #[oai(status = 404)]
    NotFound(Json<ApiError>),
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}

#[OpenApi]
impl AlertsApi {
    /// List alert rules
    ///
    /// Every rule with its state: `ok`, `pending` or `firing`. Needs the
    /// read token when the server runs with `--read-token`.
    #[oai(path = "/api/alerts", method = "get", tag = "AlertTags::Alerts")]
    async fn list(&self, req: &Request) -> ListResponse {
        if let Err(denied) = self.state.access.can_read(req, TokenIn::Header) {
            return ListResponse::Unauthorized(
                ApiFailure::Unauthorized(denied.message("reading alert rules")).body(),
            );
        }
        let alerts = &self.state.alerts;
        match alerts.book.rules().await {
            Ok(rules) => ListResponse::Ok(Json(rules.iter().map(|k| alerts.describe(k)).collect())),
            Err(e) => ListResponse::Unavailable(ApiFailure::Unavailable(e.to_string()).body()),
        }
    }

    /// Add an alert rule
    ///
    /// The rule is evaluated every `--alert-interval` (1 s); on firing and
    /// on resolving, its webhook gets a POST with a JSON body (`id`, `rule`,
    /// `state`, `value`, `condition`, `threshold`, `stat`, `window`, `time`,
    /// `link`). Needs the write token when the server runs with `--token`.
    /// A webhook on a loopback, link-local or private address is refused
    /// unless the server runs with `--allow-private-webhooks`.
    #[oai(path = "/api/alerts", method = "post", tag = "AlertTags::Alerts")]
    async fn add(&self, req: &Request, body: Json<AlertIn>) -> AddResponse {
        let state = &self.state;
        if let Err(denied) = state.access.can_ingest(req) {
            return AddResponse::Unauthorized(
                ApiFailure::Unauthorized(denied.message("changing alert rules")).body(),
            );
        }
        let spec = body.0.into_spec();
        let rule = match spec.validate(state.alerts.config.allow_private) {
            Ok(rule) => rule,
            Err(e) => return AddResponse::BadRequest(ApiFailure::BadRequest(e.to_string()).body()),
        };
        match state.alerts.book.add(&rule.spec).await {
            Ok(()) => {
                tracing::info!("alert rule {} added", rule.name());
                // As the book has it now (the incarnation is not shown).
                let kept = KeptRule {
                    spec: rule.spec,
                    incarnation: String::new(),
                    state: State::Ok,
                    changed_ms: None,
                    changes: 0,
                    revision: 0,
                };
                AddResponse::Created(Json(Box::new(AlertOut::new(&kept, None))))
            }
            Err(e @ BookError::Exists(_)) => {
                AddResponse::Conflict(ApiFailure::Other(StatusCode::CONFLICT, e.to_string()).body())
            }
            Err(e) => AddResponse::Unavailable(ApiFailure::Unavailable(e.to_string()).body()),
        }
    }

    /// Remove an alert rule
    ///
    /// Needs the write token when the server runs with `--token`.
    #[oai(
        path = "/api/alerts/:name",
        method = "delete",
        tag = "AlertTags::Alerts"
    )]
    async fn remove(&self, req: &Request, name: Path<String>) -> RemoveResponse {
        let state = &self.state;
        if let Err(denied) = state.access.can_ingest(req) {
            return RemoveResponse::Unauthorized(
                ApiFailure::Unauthorized(denied.message("changing alert rules")).body(),
            );
        }
        match state.alerts.book.remove(&name.0).await {
            Ok(true) => {
                tracing::info!("alert rule {} removed", name.0);
                state.alerts.lock_seen().remove(&name.0);
                RemoveResponse::Removed
            }
            Ok(false) => RemoveResponse::NotFound(
                ApiFailure::Other(
                    StatusCode::NOT_FOUND,
                    format!("no alert rule is named `{}`", name.0),
                )
                .body(),
            ),
            Err(e) => RemoveResponse::Unavailable(ApiFailure::Unavailable(e.to_string()).body()),
        }
    }
}
