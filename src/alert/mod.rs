//! Alert rules: a query of the query model (a type, filters, one statistic,
//! a window) with a condition, and the state each rule is in.
//!
//! Pure: the server evaluates each rule's value every second and feeds it
//! to [`Rule::step`], which says whether the rule changed state; it stores
//! rules, states and the notifications owed, and calls the webhooks. A rule
//! exists only once validated ([`RuleSpec::validate`]), so an evaluator
//! never meets a window under 10 s, two conditions or a webhook that is not
//! http(s).

mod webhook;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::Timestamp;
use crate::query::parse::QueryText;

pub use webhook::{WebhookUrl, is_public};

/// The shortest window a rule may watch.
pub const MIN_WINDOW: Duration = Duration::from_secs(10);
/// The longest a rule name may be.
pub const MAX_NAME: usize = 64;

/// A rule as sent and stored: the text of each part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// Only events of this type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Filters in the query syntax: `device=mobile`, `amount>100`.
    #[serde(rename = "where", default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// `count`, `rate` (events per second) or `STAT:FIELD` (`p95:latency_ms`).
    pub stat: String,
    /// `10s` and up.
    pub window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Fires when the window holds no matching event at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
    /// How long the condition must hold before the rule fires (default 0s).
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    pub webhook: String,
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Matching events in the window.
    Count,
    /// Matching events per second over the window.
    Rate,
    /// One statistic of one field (`p95:latency_ms`), as the query model has it.
    Stat(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    Above(f64),
    Below(f64),
    /// No matching event in the window.
    Absent,
}

/// A valid rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub spec: RuleSpec,
    pub measure: Measure,
    pub window: Duration,
    pub condition: Condition,
    pub hold: Duration,
    pub webhook: WebhookUrl,
}

/// Why a rule was refused, naming the part at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RuleError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> RuleError {
    RuleError {
        field,
        reason: reason.into(),
    }
}

impl RuleSpec {
    /// Checks every part; `allow_private` lets the webhook be on a
    /// loopback, link-local or private address.
    pub fn validate(self, allow_private: bool) -> Result<Rule, RuleError> {
        let name = self.name.trim();
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if name.len() > MAX_NAME
            || !edge(name.chars().next())
            || !edge(name.chars().last())
            || name.contains("..")
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(refuse(
                "name",
                format!(
                    "`{}` is not a rule name: use 1-{MAX_NAME} letters, digits, `-`, `_` or `.`, \
                     starting and ending with a letter or digit",
                    self.name
                ),
            ));
        }
        let window = crate::cli::parse_duration(&self.window).map_err(|e| refuse("window", e))?;
        if window < MIN_WINDOW {
            return Err(refuse(
                "window",
                format!("`{}` is shorter than the shortest window, 10s", self.window),
            ));
        }
        let hold = match &self.hold {
            None => Duration::ZERO,
            Some(text) => crate::cli::parse_duration(text).map_err(|e| refuse("for", e))?,
        };
        let condition = match (self.above, self.below, self.absent) {
            (Some(x), None, false) if x.is_finite() => Condition::Above(x),
            (None, Some(x), false) if x.is_finite() => Condition::Below(x),
            (None, None, true) => Condition::Absent,
            (None, None, false) => {
                return Err(refuse("condition", "give one of above, below or absent"));
            }
            (Some(_), None, false) | (None, Some(_), false) => {
                return Err(refuse("condition", "the threshold must be a finite number"));
            }
            _ => {
                return Err(refuse(
                    "condition",
                    "give only one of above, below or absent",
                ));
            }
        };
        let stat = self.stat.trim();
        let measure = match stat {
            "count" => Measure::Count,
            "rate" => Measure::Rate,
            _ => Measure::Stat(stat.to_string()),
        };
        if condition == Condition::Absent && measure != Measure::Count {
            return Err(refuse(
                "stat",
                "an absent rule watches the event count: give --stat count (the default)",
            ));
        }
        let webhook = WebhookUrl::parse(&self.webhook, allow_private)
            .map_err(|reason| refuse("webhook", reason))?;
        let rule = Rule {
            spec: RuleSpec {
                name: name.to_string(),
                stat: stat.to_string(),
                ..self
            },
            measure,
            window,
            condition,
            hold,
            webhook,
        };
        // The query parts are checked by the query model's own parser.
        rule.query_text()
            .to_query(Timestamp::now())
            .map_err(|reason| refuse("query", reason))?;
        if let Measure::Stat(stat) = &rule.measure
            && stat.starts_with("top:")
        {
            return Err(refuse(
                "stat",
                "`top` gives values, not a number to compare: use count, rate, distinct, sum, mean, min, max, last or p50-p99",
            ));
        }
        Ok(rule)
    }
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The query whose answer this rule watches.
    pub fn query_text(&self) -> QueryText {
        QueryText {
            window: Some(self.spec.window.clone()),
            kind: self.spec.kind.clone(),
            filters: self.spec.filters.clone(),
            stats: match &self.measure {
                Measure::Stat(stat) => vec![stat.clone()],
                Measure::Count | Measure::Rate => Vec::new(),
            },
            defaults: Some(false),
            ..QueryText::default()
        }
    }

    /// The threshold the condition compares with.
    pub fn threshold(&self) -> Option<f64> {
        match self.condition {
            Condition::Above(x) | Condition::Below(x) => Some(x),
            Condition::Absent => None,
        }
    }

    /// Whether the condition holds for a window that matched `events`
    /// events and gave `value` (`None`: the statistic has no value, as a
    /// mean of no events).
    pub fn holds(&self, events: u64, value: Option<f64>) -> bool {
        match (self.condition, value) {
            (Condition::Absent, _) => events == 0,
            (Condition::Above(x), Some(v)) => v > x,
            (Condition::Below(x), Some(v)) => v < x,
            (_, None) => false,
        }
    }

    /// The state after an evaluation at `now` found the condition `holds`,
    /// and the change to notify, if any.
    pub fn step(&self, state: State, holds: bool, now: Timestamp) -> (State, Option<Change>) {
        match (state, holds) {
            (State::Ok, true) if self.hold.is_zero() => {
                (State::Firing { since: now }, Some(Change::Firing))
            }
            (State::Ok, true) => (State::Pending { since: now }, None),
            (State::Pending { since }, true) => {
                let held = now.millis().saturating_sub(since.millis());
                if held >= i64::try_from(self.hold.as_millis()).unwrap_or(i64::MAX) {
                    (State::Firing { since: now }, Some(Change::Firing))
                } else {
                    (state, None)
                }
            }
            (State::Pending { .. }, false) => (State::Ok, None),
            (State::Firing { .. }, false) => (State::Ok, Some(Change::Resolved)),
            (State::Firing { .. } | State::Ok, _) => (state, None),
        }
    }
}

/// Where a rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    /// The condition holds, not yet for the rule's `for`.
    Pending {
        since: Timestamp,
    },
    Firing {
        since: Timestamp,
    },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Pending { .. } => "pending",
            State::Firing { .. } => "firing",
        }
    }

    /// Since when the condition has held (pending or firing).
    pub fn since(&self) -> Option<Timestamp> {
        match self {
            State::Ok => None,
            State::Pending { since } | State::Firing { since } => Some(*since),
        }
    }

    /// The state named `name` (as stored), held since `since_ms`.
    pub fn from_parts(name: &str, since_ms: Option<i64>) -> Option<State> {
        let since = since_ms.and_then(Timestamp::from_millis);
        match (name, since) {
            ("ok", _) => Some(State::Ok),
            ("pending", Some(since)) => Some(State::Pending { since }),
            ("firing", Some(since)) => Some(State::Firing { since }),
            _ => None,
        }
    }
}

/// A change worth a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Firing,
    Resolved,
}

impl Change {
    pub fn name(&self) -> &'static str {
        match self {
            Change::Firing => "firing",
            Change::Resolved => "resolved",
        }
    }
}

/// The JSON body a webhook receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Unique per change (`NAME/N-INCARNATION`: N counts the rule's
    /// changes, the incarnation tells a rule from one added before under
    /// its name): a receiver that sees one twice (a retry after a lost
    /// answer) drops it.
    pub id: String,
    pub rule: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// The value that caused the change (`null` for a statistic without one).
    pub value: Option<f64>,
    /// `above`, `below` or `absent`.
    pub condition: String,
    pub threshold: Option<f64>,
    pub stat: String,
    pub window: String,
    /// When the change was seen (RFC 3339).
    pub time: String,
    /// The dashboard's view of the rule's events (with `--public-url`).
    pub link: Option<String>,
}

impl Notification {
    pub fn new(
        rule: &Rule,
        incarnation: &str,
        change: Change,
        number: u64,
        value: Option<f64>,
        at: Timestamp,
        public_url: Option<&str>,
    ) -> Self {
        Notification {
            id: format!("{}/{number}-{incarnation}", rule.name()),
            rule: rule.name().to_string(),
            state: change.name().to_string(),
            value,
            condition: match rule.condition {
                Condition::Above(_) => "above",
                Condition::Below(_) => "below",
                Condition::Absent => "absent",
            }
            .to_string(),
            threshold: rule.threshold(),
            stat: rule.spec.stat.clone(),
            window: rule.spec.window.clone(),
            time: at.to_rfc3339(),
            link: public_url.map(|base| dashboard_link(base, rule)),
        }
    }
}

/// The dashboard at `base`, showing the rule's window and filters.
pub fn dashboard_link(base: &str, rule: &Rule) -> String {
    let mut link = format!(
        "{}/?window={}",
        base.trim_end_matches('/'),
        encode(&rule.spec.window)
    );
    let kind = rule.spec.kind.iter().map(|k| format!("type={k}"));
    for filter in kind.chain(rule.spec.filters.iter().cloned()) {
        link.push_str("&where=");
        link.push_str(&encode(&filter));
    }
    link
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
