//! The edge: what every request meets first and every answer last, and
//! the table of routes it labels answers with.

use std::sync::Arc;

use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, Response};

use super::{ApiFailure, AppState, access, api};

/// What every request meets first and every answer last: the Host check,
/// same-origin requests stripped of their Origin (they are not CORS
/// requests), errors turned into the API's `{error, message}` body, with
/// the `Allow` header on a 405, `X-Content-Type-Options` (and `Vary:
/// Origin` when CORS is on) on every answer, and the answer counted for
/// `/metrics`.
///
/// Single events arrive here by the tens of thousands a second, so `POST
/// /api/ingest` goes straight to its handler instead of through the router
/// and poem-openapi's per-operation layers: the same handler and the same
/// answer for less work. A request the CORS layer must see (one with an
/// Origin from another site, when CORS is on) takes the router.
pub(super) struct Edge<E> {
    pub(super) routed: E,
    pub(super) ingest: api::Api,
    pub(super) direct_ingest: bool,
    pub(super) cors_enabled: bool,
    pub(super) state: Arc<AppState>,
}

impl<E: Endpoint<Output = Response>> Endpoint for Edge<E> {
    type Output = Response;

    async fn call(&self, req: poem::Request) -> poem::Result<Response> {
        let route = route_of(req.uri().path());
        let method = req.method().clone();
        let mut response = self.answer(req, route).await;
        let headers = response.headers_mut();
        headers.insert(
            poem::http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if self.cors_enabled {
            headers.insert(poem::http::header::VARY, HeaderValue::from_static("Origin"));
        }
        self.state
            .telemetry
            .count_request(route, &method, response.status());
        Ok(response)
    }
}

impl<E: Endpoint<Output = Response>> Edge<E> {
    async fn answer(&self, mut req: poem::Request, route: Option<usize>) -> Response {
        if let Err(message) = self.state.access.host_allowed(&req) {
            return ApiFailure::Forbidden(message).into_response();
        }
        if access::same_origin(&req) {
            req.headers_mut().remove(poem::http::header::ORIGIN);
        }
        let direct = self.direct_ingest
            && req.method() == Method::POST
            && route.is_some_and(|r| INGEST_ROUTES.contains(&ROUTES[r].0))
            && !(self.cors_enabled && req.headers().contains_key(poem::http::header::ORIGIN));
        if direct {
            return Box::pin(self.ingest.ingest_direct(req)).await;
        }
        let mut response = match self.routed.call(req).await {
            Ok(response) => response,
            Err(err) => failure(err),
        };
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(route) = route
        {
            response.headers_mut().insert(
                poem::http::header::ALLOW,
                HeaderValue::from_static(ROUTES[route].1),
            );
        }
        response
    }
}

/// A routing or extraction error (no such route, a wrong method, a
/// parameter that does not parse) as the API's `{error, message}` answer.
/// The router's errors reach [`Edge`] as errors, but inside the CORS layer,
/// which answers every error itself (in plain text) to add its headers, so
/// the routes are wrapped in this too: a page on another origin gets the
/// same answer as any other client.
pub(super) fn failure(err: poem::Error) -> Response {
    ApiFailure::Other(err.status(), err.to_string()).into_response()
}

/// The routes [`Edge`] may answer without the router.
pub(crate) const INGEST_ROUTES: [&str; 2] = ["/api/ingest", "/api/ingest/batch"];

/// Every route: its template and the methods it answers (the `Allow`
/// header of a 405, and the route label of rta's own metrics).
pub const ROUTES: &[(&str, &str)] = &[
    ("/", "GET, HEAD"),
    ("/healthz", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/api/status", "GET, HEAD"),
    ("/api/ingest", "POST"),
    ("/api/ingest/batch", "POST"),
    ("/api/query", "POST"),
    ("/api/metrics", "GET, HEAD"),
    ("/api/events", "GET, HEAD"),
    ("/api/alerts", "GET, HEAD, POST"),
    ("/api/alerts/:name", "DELETE"),
    ("/api/ws", "GET, HEAD"),
    ("/api/openapi.json", "GET, HEAD"),
    ("/docs", "GET, HEAD"),
    ("/assets/*path", "GET, HEAD"),
];

/// The index in [`ROUTES`] of the route that serves `path`.
pub fn route_of(path: &str) -> Option<usize> {
    let template = match path {
        _ if path.starts_with("/assets/") => "/assets/*path",
        _ if path.starts_with("/api/alerts/") => "/api/alerts/:name",
        _ => path,
    };
    ROUTES.iter().position(|(t, _)| *t == template)
}
