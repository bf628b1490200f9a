//! The HTTP API's ingest and health routes (poem-openapi); the other areas
//! have their own files (`metrics.rs`, `query.rs`, `events.rs`).

use std::io::Read;
use std::sync::Arc;

use poem::{Body, IntoResponse, Request, RequestBody};
use poem_openapi::param::Header;
use poem_openapi::payload::{Html, Json, PlainText};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, OpenApi, Tags,
};
use thiserror::Error;
use tokio::io::AsyncReadExt;

use super::access::TokenIn;
use super::models::{ApiError, EventsIn, IngestReport, NodeStatus, SerdeJson};
use super::{ApiFailure, AppState};
use crate::event::{self, BodyError, BodyFormat, Timestamp};
use crate::store::{Appended, IdempotencyKey, StoreError};
use poem::http::StatusCode;

#[derive(Tags)]
enum ApiTags {
    /// Sending events
    Ingest,
    /// Operations
    Health,
}

pub struct Api {
    pub state: Arc<AppState>,
}

/// The longest `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 128;

/// Bodies above this size are parsed off the async threads.
const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

#[OpenApi]
impl Api {
    /// Send events
    ///
    /// Takes one event, a JSON array of events (`application/json`), or one
    /// event per line (`application/x-ndjson`); `Content-Encoding: gzip` is
    /// accepted. Every valid event is stored and the answer lists each
    /// rejected one with its index (and line, for NDJSON). The answer comes
    /// only once the events are durable. When the server runs with `--token`,
    /// send `Authorization: Bearer TOKEN`.
    ///
    /// Send an `Idempotency-Key` to make retries safe: a request whose key was
    /// stored in the last hour is not stored again; the first answer is
    /// returned, with `"replayed": true`.
    #[oai(path = "/api/ingest", method = "post", tag = "ApiTags::Ingest")]
    async fn ingest(
        &self,
        req: &Request,
        body: IngestBody,
        /// A unique name for this request (1-128 printable ASCII characters), such as a UUID.
        #[oai(name = "Idempotency-Key")]
        key: Header<Option<String>>,
    ) -> IngestResponse {
        let _ = key; // read raw in `idempotency_key`, so a non-ASCII key is refused, not ignored
        self.handle_ingest(req, body).await
    }

    /// Send a batch of events
    ///
    /// The same as `POST /api/ingest`, at the path older clients use for arrays.
    #[oai(path = "/api/ingest/batch", method = "post", tag = "ApiTags::Ingest")]
    async fn ingest_batch(
        &self,
        req: &Request,
        body: IngestBody,
        /// As for `POST /api/ingest`.
        #[oai(name = "Idempotency-Key")]
        key: Header<Option<String>>,
    ) -> IngestResponse {
        let _ = key;
        self.handle_ingest(req, body).await
    }

    /// The dashboard
    ///
    /// The live dashboard, a single page that uses the API and the WebSocket.
    #[oai(path = "/", method = "get", tag = "ApiTags::Health")]
    async fn dashboard(&self) -> DashboardResponse {
        DashboardResponse::Ok(
            Html(super::web::INDEX_HTML),
            super::web::CONTENT_SECURITY_POLICY.to_string(),
            "no-cache".to_string(),
        )
    }

    /// Health check
    ///
    /// Answers `ok` while the server is up.
    #[oai(path = "/healthz", method = "get", tag = "ApiTags::Health")]
    async fn healthz(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// This node's status
    ///
    /// Which node answered, where it keeps events, and, on a cluster, how
    /// far it has followed the bus and how far ClickHouse has been loaded.
    /// Needs the read token when the server runs with `--read-token`.
    #[oai(path = "/api/status", method = "get", tag = "ApiTags::Health")]
    async fn status(&self, req: &Request) -> StatusResponse {
        if let Err(denied) = self.state.access.can_read(req, TokenIn::Header) {
            let failure = ApiFailure::Unauthorized(denied.message("reading the status"));
            return StatusResponse::Unauthorized(failure.body());
        }
        let events = self.state.engine.with(|engine| engine.total());
        StatusResponse::Ok(Json(
            self.state.backend.status(&self.state.config, events).await,
        ))
    }
}

#[derive(ApiResponse)]
enum StatusResponse {
    #[oai(status = 200)]
    Ok(Json<NodeStatus>),
    /// The server runs with `--read-token` and the request lacks it.
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>),
}

impl Api {
    /// `POST /api/ingest` (or `/api/ingest/batch`) answered without the
    /// router: the documented operation's handler and answer, minus the
    /// layers poem-openapi puts around every operation (query parsing, the
    /// route tables, boxed futures). Keep it in step with the `#[oai]`
    /// operations above: a parameter, validator or path added there must
    /// be handled here too (`direct_ingest_is_the_documented_operation`
    /// checks the paths and parameters). `Edge` sends requests here;
    /// `tests/it/direct.rs` checks both ways answer alike.
    pub async fn ingest_direct(&self, req: Request) -> poem::Response {
        let (req, mut body) = req.split();
        let body = IngestBody::new(&req, body.take().unwrap_or_default());
        self.handle_ingest(&req, body).await.into_response()
    }

    async fn handle_ingest(&self, req: &Request, body: IngestBody) -> IngestResponse {
        // Boxed: a small future for the layers above to move around.
        match Box::pin(self.ingest_inner(req, body)).await {
            Ok(report) => IngestResponse::Ok(SerdeJson(report)),
            Err(e) => e.into(),
        }
    }

    async fn ingest_inner(
        &self,
        req: &Request,
        body: IngestBody,
    ) -> Result<IngestReport, IngestError> {
        let state = &self.state;
        let key = idempotency_key(req)?;
        state
            .access
            .can_ingest(req)
            .map_err(|d| IngestError::Unauthorized(d.message("ingest")))?;
        let format = body.format()?;
        let limit = state.config.max_body_bytes;
        if body.expects_continue && body.content_length.is_some_and(|n| n > limit as u64) {
            // Refused before the client sends the body: hyper answers
            // `100 Continue` only once the body is read.
            return Err(IngestError::TooLarge { limit });
        }
        let mut bytes = read_limited(body.body, limit, body.content_length).await?;
        if body.gzip {
            bytes = gunzip_limited(bytes, limit).await?;
        }
        let limits = state.config.limits.clone();
        let now = Timestamp::now();
        let parsed = if bytes.len() > BLOCKING_PARSE_BYTES {
            tokio::task::spawn_blocking(move || event::parse_body(&bytes, format, &limits, now))
                .await
                .map_err(|e| IngestError::Internal(e.to_string()))?
        } else {
            event::parse_body(&bytes, format, &limits, now)
        }?;
        if parsed.events.is_empty() {
            return Err(IngestError::NothingValid(IngestReport {
                accepted: 0,
                first_seq: None,
                rejected: parsed.rejected.into_iter().map(Into::into).collect(),
                replayed: None,
            }));
        }
        let key = key.map(|key| IdempotencyKey {
            key,
            // Kept with the key, so a replayed answer lists the same rejections.
            note: serde_json::to_string(&parsed.rejected).unwrap_or_default(),
        });
        let accepted = parsed.events.len() as u64;
        let started = std::time::Instant::now();
        let report = match state.store.append(parsed.events, key).await? {
            Appended::Stored { first_seq } => {
                state.telemetry.ingested(accepted, started.elapsed());
                IngestReport {
                    accepted,
                    first_seq: Some(first_seq),
                    rejected: parsed.rejected.into_iter().map(Into::into).collect(),
                    replayed: None,
                }
            }
            Appended::AlreadyStored {
                first_seq,
                accepted,
                note,
            } => IngestReport {
                accepted,
                first_seq: Some(first_seq),
                rejected: serde_json::from_str::<Vec<event::Rejection>>(&note)
                    .unwrap_or_default()
                    .into_iter()
                    .map(Into::into)
                    .collect(),
                replayed: Some(true),
            },
        };
        Ok(report)
    }
}

/// The request's `Idempotency-Key`, read from the raw header so that a key
/// of other bytes is refused rather than taken as no key.
fn idempotency_key(req: &Request) -> Result<Option<String>, IngestError> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = raw.as_bytes();
    if (1..=MAX_KEY_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic) {
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    } else {
        Err(IngestError::BadBody(
            "Idempotency-Key must be 1 to 128 printable ASCII characters without spaces, such as a UUID"
                .into(),
        ))
    }
}

/// Reads at most `limit` bytes. A larger body is read on and discarded (up
/// to a bound) before the 413, because a client still sending when the
/// connection closes would never see the answer.
async fn read_limited(
    body: Body,
    limit: usize,
    announced: Option<u64>,
) -> Result<bytes::Bytes, IngestError> {
    if announced.is_some_and(|n| n <= limit as u64) {
        // HTTP/1.1 delivers exactly the announced length (a longer body is
        // the next request's bytes), so the body is taken as it came.
        return body
            .into_bytes()
            .await
            .map_err(|e| IngestError::BadBody(format!("could not read the body: {e}")));
    }
    let failed = |e: std::io::Error| IngestError::BadBody(format!("could not read the body: {e}"));
    let mut reader = body.into_async_read();
    if announced.is_none() {
        // Chunked: nothing bounds it but this read.
        let mut bytes = Vec::new();
        (&mut reader)
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(failed)?;
        if bytes.len() <= limit {
            return Ok(bytes.into());
        }
    }
    let drain_bound = (limit as u64).saturating_mul(4).max(64 << 20);
    let _ = tokio::io::copy(&mut reader.take(drain_bound), &mut tokio::io::sink()).await;
    Err(IngestError::TooLarge { limit })
}

/// Decompresses without ever holding more than `limit` bytes, so a small
/// body that expands to gigabytes is refused early.
async fn gunzip_limited(
    compressed: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, IngestError> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                IngestError::BadBody(format!("the gzip body could not be decompressed: {e}"))
            })?;
        if out.len() > limit {
            return Err(IngestError::TooLarge { limit });
        }
        Ok(out.into())
    })
    .await
    .map_err(|e| IngestError::Internal(e.to_string()))?
}

/// Why an ingest request stored nothing.
#[derive(Debug, Error)]
enum IngestError {
    #[error("{0}")]
    Unauthorized(String),
    #[error(
        "Content-Type `{0}` is not supported; send application/json (one event or an array) or application/x-ndjson (one event per line)"
    )]
    UnsupportedMediaType(String),
    #[error(
        "the request has no Content-Type; send application/json (one event or an array) or application/x-ndjson (one event per line)"
    )]
    NoContentType,
    #[error("Content-Encoding `{0}` is not supported; send the body as is or with gzip")]
    UnsupportedEncoding(String),
    #[error(
        "the body is larger than the {limit}-byte limit (after decompression); split it into smaller batches"
    )]
    TooLarge { limit: usize },
    #[error("{0}")]
    BadBody(String),
    #[error(transparent)]
    Unparseable(#[from] BodyError),
    #[error("no event in the request was valid")]
    NothingValid(IngestReport),
    #[error("{}", store_failure(.0))]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A store's failure as the client needs it: whether to retry, and how.
fn store_failure(e: &StoreError) -> String {
    match e {
        StoreError::Unsure(_) => e.to_string(),
        _ => format!("{e}; nothing from this request was stored, retry later"),
    }
}

impl From<IngestError> for IngestResponse {
    fn from(e: IngestError) -> Self {
        let message = e.to_string();
        let other = |status: StatusCode| ApiFailure::Other(status, message.clone()).body();
        match e {
            IngestError::Unauthorized(_) => IngestResponse::Unauthorized(
                ApiFailure::Unauthorized(message).body(),
                "Bearer".into(),
            ),
            IngestError::UnsupportedMediaType(_)
            | IngestError::NoContentType
            | IngestError::UnsupportedEncoding(_) => {
                IngestResponse::UnsupportedMediaType(other(StatusCode::UNSUPPORTED_MEDIA_TYPE))
            }
            IngestError::TooLarge { .. } => {
                IngestResponse::PayloadTooLarge(other(StatusCode::PAYLOAD_TOO_LARGE))
            }
            IngestError::BadBody(_) | IngestError::Unparseable(_) => {
                IngestResponse::BadRequest(ApiFailure::BadRequest(message).body())
            }
            IngestError::NothingValid(report) => IngestResponse::Unprocessable(SerdeJson(report)),
            IngestError::Store(StoreError::TooLarge(_)) => {
                IngestResponse::PayloadTooLarge(other(StatusCode::PAYLOAD_TOO_LARGE))
            }
            IngestError::Store(_) => {
                IngestResponse::Unavailable(ApiFailure::Unavailable(message).body())
            }
            IngestError::Internal(_) => {
                IngestResponse::Internal(other(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }
}

#[derive(ApiResponse)]
enum IngestResponse {
    /// Every valid event is durable; `rejected` lists the others.
    #[oai(status = 200)]
    Ok(SerdeJson<IngestReport>),
    /// The body could not be read as events at all (the message says where it broke).
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// A token is required (the server runs with `--token`) and the request lacks it.
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>, #[oai(header = "WWW-Authenticate")] String),
    /// The body is over the size limit (`--max-body`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ApiError>),
    /// The Content-Type or Content-Encoding is not supported.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ApiError>),
    /// No event in the request was valid; `rejected` says why for each.
    #[oai(status = 422)]
    Unprocessable(SerdeJson<IngestReport>),
    /// Unexpected failure.
    #[oai(status = 500)]
    Internal(Json<ApiError>),
    /// The events could not be stored (for example a full disk): nothing was
    /// kept, unless the message says they may or may not be stored (on a
    /// cluster, when NATS did not confirm them): then retry with the same
    /// `Idempotency-Key`.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}

#[derive(ApiResponse)]
enum DashboardResponse {
    /// The page. Its scripts and styles come from `/assets/` on this server only.
    #[oai(status = 200)]
    Ok(
        Html<&'static str>,
        #[oai(header = "Content-Security-Policy")] String,
        #[oai(header = "Cache-Control")] String,
    ),
}

/// The raw body of an ingest request, with what is needed to decode it.
/// Reading is left to the handler so every failure gets the API's error format.
pub struct IngestBody {
    content_type: Option<String>,
    encoding: Option<String>,
    content_length: Option<u64>,
    /// The client waits for `100 Continue` before sending the body.
    expects_continue: bool,
    gzip: bool,
    body: Body,
}

impl IngestBody {
    fn new(request: &Request, body: Body) -> Self {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let encoding = header(poem::http::header::CONTENT_ENCODING);
        let gzip = encoding.as_deref().is_some_and(|e| {
            e.trim().eq_ignore_ascii_case("gzip") || e.trim().eq_ignore_ascii_case("x-gzip")
        });
        Self {
            content_type: header(poem::http::header::CONTENT_TYPE),
            content_length: header(poem::http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            expects_continue: header(poem::http::header::EXPECT)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue")),
            encoding,
            gzip,
            body,
        }
    }

    fn format(&self) -> Result<BodyFormat, IngestError> {
        if let Some(encoding) = &self.encoding
            && !self.gzip
            && !encoding.trim().eq_ignore_ascii_case("identity")
        {
            return Err(IngestError::UnsupportedEncoding(encoding.clone()));
        }
        // A body without a JSON type is refused, not guessed: it is what a
        // page on another site can send without asking (a "simple" request).
        let Some(content_type) = &self.content_type else {
            return Err(IngestError::NoContentType);
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" | "text/json" => Ok(BodyFormat::Json),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Ok(BodyFormat::Ndjson),
            _ => Err(IngestError::UnsupportedMediaType(content_type.clone())),
        }
    }
}

impl<'a> ApiExtractor<'a> for IngestBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        EventsIn::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("One event or an array of events; or NDJSON, one event per line."),
            content: vec![
                MetaMediaType {
                    content_type: "application/json",
                    schema: EventsIn::schema_ref(),
                },
                MetaMediaType {
                    content_type: "application/x-ndjson",
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some("One JSON event (as in application/json) per line."),
                        ..MetaSchema::new("string")
                    })),
                },
            ],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self::new(request, body.take().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use poem::http::Method;
    use poem_openapi::OpenApi;

    use super::Api;
    use crate::server::edge::INGEST_ROUTES;

    /// The edge answers the ingest paths itself: they must stay the
    /// documented operations, POST with one parameter, read by the handler.
    #[test]
    fn direct_ingest_is_the_documented_operation() {
        let meta = <Api as OpenApi>::meta();
        let ingest: Vec<_> = meta
            .iter()
            .flat_map(|api| &api.paths)
            .filter(|p| p.path.starts_with("/api/ingest"))
            .collect();
        let paths: Vec<&str> = ingest.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, INGEST_ROUTES);
        for path in ingest {
            let [operation] = &path.operations[..] else {
                panic!("{}: one operation", path.path);
            };
            assert_eq!(operation.method, Method::POST);
            let params: Vec<&str> = operation.params.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(params, ["Idempotency-Key"], "{}", path.path);
        }
    }
}
