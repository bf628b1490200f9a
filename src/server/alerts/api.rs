//! `/api/alerts`: listing, adding and removing rules.

use std::sync::Arc;

use poem::Request;
use poem::http::StatusCode;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use super::{Seen, redact};
use crate::alert::{RuleSpec, State};
use crate::server::access::TokenIn;
use crate::server::models::{ApiError, rfc3339};
use crate::server::{ApiFailure, AppState};
use crate::store::alerts::{BookError, KeptRule};

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
    /// 1-64 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit.
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
    pub(super) fn new(kept: &KeptRule, seen: Option<Seen>) -> Self {
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
