//! `GET /api/events`: the stored events behind any query, newest or oldest
//! first, a page at a time (JSON, with a cursor) or all of them streamed
//! (NDJSON or CSV, which `rta replay` reads back unchanged).

use std::sync::Arc;

use poem::{Body, Request};
use poem_openapi::param::Query;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, OpenApi, Tags};

use super::access::TokenIn;
use super::models::{ApiError, EventOut};
use super::{ApiFailure, AppState};
use crate::event::{Event, Timestamp};
use crate::query::parse::QueryText;
use crate::store::{ScanOrder, StoredEvent};

#[derive(Tags)]
enum EventTags {
    /// Reading aggregates and events
    Metrics,
}

pub struct EventsApi {
    pub state: Arc<AppState>,
    /// Streamed exports running at once, at most [`MAX_EXPORTS`].
    pub exports: Arc<tokio::sync::Semaphore>,
}

/// Streamed exports at once: each holds a blocking thread while it runs.
pub const MAX_EXPORTS: usize = 8;
/// A client that takes no chunk for this long is dropped.
const STALLED: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes gathered before a streamed chunk is sent.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting for a slow client at most: the scan waits beyond.
const CHUNKS_AHEAD: usize = 8;

#[OpenApi]
impl EventsApi {
    /// Read stored events
    ///
    /// The events behind any query: the same time range and filters as
    /// `POST /api/query` (`where` repeated, in its syntax), newest first by
    /// default. `format=json` (default) answers a page of `limit` events and,
    /// when more remain, the header `X-Next-Cursor`: pass it as `cursor` for
    /// the next page. `format=ndjson` and `format=csv` stream every matching
    /// event (or `limit` of them) as `rta replay` reads them: one JSON event a
    /// line, or CSV with `timestamp,source,type,values` (`values` a JSON
    /// object).
    #[oai(path = "/api/events", method = "get", tag = "EventTags::Metrics")]
    // One argument per documented query parameter.
    #[allow(clippy::too_many_arguments)]
    async fn events(
        &self,
        req: &Request,
        /// How many: 1-1000 for JSON (default 50); for NDJSON and CSV, every match by default.
        limit: Query<Option<u64>>,
        /// Only this event type.
        #[oai(name = "type")]
        kind: Query<Option<String>>,
        /// The last `10s`, `24h`, `30d`... or `all`. Not with `from`/`to`.
        window: Query<Option<String>>,
        /// From this time on (RFC 3339, or a date for 00:00 UTC).
        from: Query<Option<String>>,
        /// Before this time (default: now).
        to: Query<Option<String>>,
        /// A filter as in `POST /api/query` (`region=Europe`, `amount>100`); repeat for several.
        #[oai(name = "where")]
        filters: Query<Option<Vec<String>>>,
        /// `newest` (default) or `oldest` first.
        order: Query<Option<String>>,
        /// Continue after this position (the `X-Next-Cursor` of the previous page).
        cursor: Query<Option<u64>>,
        /// `json` (default), `ndjson` or `csv`.
        format: Query<Option<String>>,
    ) -> EventsResponse {
        if let Err(denied) = self.state.access.can_read(req, TokenIn::Header) {
            return ApiFailure::Unauthorized(denied.message("reading events")).into();
        }
        let bad = |message: String| EventsResponse::from(ApiFailure::BadRequest(message));
        let now = Timestamp::now();
        let text = QueryText {
            window: window.0,
            from: from.0,
            to: to.0,
            kind: kind.0,
            filters: filters.0.unwrap_or_default(),
            ..QueryText::default()
        };
        let mut query = match text.to_query(now) {
            Ok(q) => q,
            Err(message) => return bad(message),
        };
        let catalog = self.state.engine.with(|e| e.fields());
        if let Err(message) = query.check_fields(&catalog) {
            return bad(message);
        }
        let order = match order.0.as_deref() {
            None | Some("newest") => ScanOrder::NewestFirst,
            Some("oldest") => ScanOrder::OldestFirst,
            Some(other) => return bad(format!("order={other:?} should be newest or oldest")),
        };
        let format = match format.0.as_deref() {
            None | Some("json") => Format::Json,
            Some("ndjson") | Some("jsonl") => Format::Ndjson,
            Some("csv") => Format::Csv,
            Some(other) => return bad(format!("format={other:?} should be json, ndjson or csv")),
        };
        let limit = match (format, limit.0) {
            (Format::Json, None) => 50,
            (Format::Json, Some(n)) if (1..=1000).contains(&n) => n,
            (Format::Json, Some(n)) => {
                return bad(format!(
                    "limit={n} is out of range; use 1 to 1000 (or format=ndjson for more)"
                ));
            }
            (_, Some(0)) => {
                return bad("limit=0: give at least 1, or leave it out for every event".into());
            }
            (_, Some(n)) => n,
            (_, None) => u64::MAX,
        };
        if let Some(keep) = self.state.config.retention {
            let cutoff = now.millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            query.range = query.range.not_before(Some(cutoff));
        }
        let store = self.state.store.clone();
        // A page looks one event further, to know whether more remain.
        let scan_limit = match format {
            Format::Json => limit + 1,
            _ => limit,
        };
        let scan = move |sink: &mut dyn FnMut(u64, &Event) -> bool| {
            let types = query.types();
            let mut taken = 0u64;
            store.scan_events(
                query.range,
                types.as_deref(),
                order,
                cursor.0,
                &mut |seq, event| {
                    if !query.matches(event) {
                        return true;
                    }
                    taken += 1;
                    taken <= scan_limit && sink(seq, event)
                },
            )
        };
        match format {
            Format::Json => {
                let page = tokio::task::spawn_blocking(move || {
                    let mut page: Vec<StoredEvent> = Vec::new();
                    let mut more = false;
                    let result = scan(&mut |seq, event| {
                        if page.len() as u64 == limit {
                            more = true;
                            return false;
                        }
                        page.push(StoredEvent {
                            seq,
                            event: event.clone(),
                        });
                        true
                    });
                    result.map(|()| (page, more))
                })
                .await;
                match page {
                    Ok(Ok((page, more))) => {
                        let next = more
                            .then(|| page.last().map(|e| e.seq.to_string()))
                            .flatten();
                        EventsResponse::Ok(
                            Json(page.into_iter().map(EventOut::from).collect()),
                            next,
                        )
                    }
                    Ok(Err(e)) => ApiFailure::from(e).into(),
                    Err(e) => ApiFailure::Unavailable(e.to_string()).into(),
                }
            }
            Format::Ndjson | Format::Csv => {
                let Ok(permit) = self.exports.clone().try_acquire_owned() else {
                    return ApiFailure::Unavailable(format!(
                        "{MAX_EXPORTS} exports are running already; retry when one is done"
                    ))
                    .into();
                };
                let body = stream(format, permit, scan);
                match format {
                    Format::Csv => EventsResponse::Csv(Binary(body)),
                    _ => EventsResponse::Ndjson(Binary(body)),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
    Csv,
}

/// Streams the scan's events in `format`, a chunk at a time, off the async
/// threads; a client that stops reading stops the scan.
fn stream(
    format: Format,
    permit: tokio::sync::OwnedSemaphorePermit,
    scan: impl FnOnce(&mut dyn FnMut(u64, &Event) -> bool) -> Result<(), crate::store::StoreError>
    + Send
    + 'static,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(CHUNKS_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // Waits for room at most STALLED: a client that stops reading ends
        // its export instead of holding this thread.
        let send = |chunk: std::io::Result<Vec<u8>>| {
            runtime
                .block_on(tokio::time::timeout(STALLED, tx.send(chunk)))
                .is_ok_and(|sent| sent.is_ok())
        };
        let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 1024);
        if format == Format::Csv {
            chunk.extend_from_slice(b"timestamp,source,type,values\n");
        }
        let mut open = true;
        let result = scan(&mut |_, event| {
            write_event(&mut chunk, format, event);
            if chunk.len() >= CHUNK_BYTES {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + 1024));
                open = send(Ok(full));
            }
            open
        });
        if let Err(e) = result {
            // The status is sent already: end the body with an error, so the
            // client sees a broken stream rather than a short one.
            send(Err(std::io::Error::other(e.to_string())));
            return;
        }
        if open && !chunk.is_empty() {
            send(Ok(chunk));
        }
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Body::from_bytes_stream(chunks)
}

/// One event as `rta replay` reads it: `{timestamp, source, type, values}`.
fn write_event(out: &mut Vec<u8>, format: Format, event: &Event) {
    match format {
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut *out);
            let _ = writer.write_record([
                event.timestamp.to_rfc3339().as_str(),
                &event.source,
                event.kind.as_str(),
                &event.values_json(),
            ]);
        }
        _ => {
            // Written by hand so values keep the stored form (5, not 5.0);
            // writing strings into a Vec cannot fail.
            out.extend_from_slice(b"{\"timestamp\":");
            let _ = serde_json::to_writer(&mut *out, &event.timestamp.to_rfc3339());
            out.extend_from_slice(b",\"source\":");
            let _ = serde_json::to_writer(&mut *out, &*event.source);
            out.extend_from_slice(b",\"type\":");
            let _ = serde_json::to_writer(&mut *out, event.kind.as_str());
            out.extend_from_slice(b",\"values\":");
            out.extend_from_slice(event.values_json().as_bytes());
            out.extend_from_slice(b"}\n");
        }
    }
}

impl From<ApiFailure> for EventsResponse {
    fn from(failure: ApiFailure) -> Self {
        let body = failure.body();
        match failure {
            ApiFailure::BadRequest(_) => EventsResponse::BadRequest(body),
            ApiFailure::Unauthorized(_) => EventsResponse::Unauthorized(body),
            // Nothing else fails here but the store or the limit on exports.
            _ => EventsResponse::Unavailable(body),
        }
    }
}

#[derive(ApiResponse)]
enum EventsResponse {
    /// A page of events; `X-Next-Cursor` is there when more remain.
    #[oai(status = 200)]
    Ok(
        Json<Vec<EventOut>>,
        #[oai(header = "X-Next-Cursor")] Option<String>,
    ),
    /// Every matching event, one JSON object a line (`format=ndjson`).
    #[oai(status = 200, content_type = "application/x-ndjson")]
    Ndjson(Binary<Body>),
    /// Every matching event as CSV (`format=csv`).
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Csv(Binary<Body>),
    /// A parameter is invalid.
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// The server runs with `--read-token` and the request lacks it.
    #[oai(status = 401)]
    Unauthorized(Json<ApiError>),
    /// The store could not be read, or too many exports are running.
    #[oai(status = 503)]
    Unavailable(Json<ApiError>),
}
