//! Why a request failed: one type for every route, each kind with its
//! status and code, and one body, `{"error": code, "message": ...}`
//! ([`ApiError`]). Handlers of the OpenAPI areas turn it into their
//! documented response enums (`From<ApiFailure>`); the WebSocket upgrade,
//! the catch-all and the edge send it as it is ([`ApiFailure::into_response`]).

use poem::Response;
use poem::http::StatusCode;
use poem_openapi::payload::Json;

use super::models::ApiError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The request is invalid; the message says which part and why.
    #[error("{0}")]
    BadRequest(String),
    /// A token is needed and missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// Not from here (another site, a host name not allowed).
    #[error("{0}")]
    Forbidden(String),
    /// The store cannot answer now, or the server is at a limit.
    #[error("{0}")]
    Unavailable(String),
    /// Any other status, from the HTTP layer (404, 405, 413...).
    #[error("{1}")]
    Other(StatusCode, String),
}

impl ApiFailure {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiFailure::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiFailure::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiFailure::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiFailure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiFailure::Other(status, _) => *status,
        }
    }

    /// The machine-readable code: the kind, or the status's reason in
    /// snake case (`payload_too_large`).
    pub fn code(&self) -> String {
        match self {
            ApiFailure::BadRequest(_) => "bad_request".into(),
            ApiFailure::Unauthorized(_) => "unauthorized".into(),
            ApiFailure::Forbidden(_) => "forbidden".into(),
            ApiFailure::Unavailable(_) => "unavailable".into(),
            ApiFailure::Other(status, _) => status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
        }
    }

    /// The body every error has.
    pub fn body(&self) -> Json<ApiError> {
        Json(ApiError::new(&self.code(), self.to_string()))
    }

    /// The whole answer, for routes outside the OpenAPI areas.
    pub fn into_response(self) -> Response {
        Response::builder()
            .status(self.status())
            .content_type("application/json")
            .body(
                serde_json::json!({"error": self.code(), "message": self.to_string()}).to_string(),
            )
    }
}

impl From<StoreError> for ApiFailure {
    fn from(e: StoreError) -> Self {
        ApiFailure::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_statuses_reasons() {
        assert_eq!(ApiFailure::BadRequest("x".into()).code(), "bad_request");
        assert_eq!(ApiFailure::Unavailable("x".into()).code(), "unavailable");
        assert_eq!(
            ApiFailure::Other(StatusCode::PAYLOAD_TOO_LARGE, "x".into()).code(),
            "payload_too_large"
        );
    }
}
