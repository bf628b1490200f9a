//! What the client commands share: the HTTP client with retries, progress
//! reporting, and the exit codes they promise.

pub mod output;
pub mod progress;
pub mod reader;
pub mod synth;

use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;

use crate::cli::ClientArgs;

/// Exit codes: part of the interface, documented in `--help` and the README.
pub mod exit {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// Some data was rejected, or the server answered with an error.
    pub const FAILED: u8 = 1;
    /// Usage error, or the server could not be reached.
    pub const UNREACHABLE: u8 = 2;
    /// Stopped by Ctrl-C (after printing the summary).
    pub const INTERRUPTED: u8 = 130;
}

/// A command line that cannot work, found after parsing (exit code 2).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Stops the command with a usage error.
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::client::UsageError(format!($($arg)*)).into())
    };
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "cannot reach the rta server at {url}: {reason} (is `rta serve` running? set --url or RTA_URL)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the server at {url} answered {status}: {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
}

impl ClientError {
    /// The exit code this error should end the command with.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. } => exit::UNREACHABLE,
            _ => exit::FAILED,
        }
    }
}

/// The server's answer to an ingest request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestReport {
    pub accepted: u64,
    #[serde(default)]
    pub rejected: Vec<RejectedEvent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RejectedEvent {
    pub index: usize,
    #[serde(default)]
    pub line: Option<usize>,
    pub error: String,
}

/// One HTTP client for every command: timeouts, a bearer token, and bounded
/// retries with backoff for refused connections, 429 and 5xx.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    retry_for: Duration,
}

impl Client {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let base = args.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            crate::usage!("--url must start with http:// or https://, got {base:?}");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(args.timeout)
            .user_agent(concat!("rta/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base,
            token: args.token.clone().filter(|t| !t.is_empty()),
            retry_for: args.retry_for,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends an NDJSON body to `/api/ingest`. A 422 (every event invalid) is
    /// a report, not an error. The request carries an idempotency key, so a
    /// retry after a lost answer never stores the events twice.
    pub async fn ingest_ndjson(&self, body: Vec<u8>) -> Result<IngestReport, ClientError> {
        let url = format!("{}/api/ingest", self.base);
        let key = format!("{:032x}", rand::random::<u128>());
        let response = self
            .send_with_retry(&url, || {
                self.http
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .header("idempotency-key", &key)
                    .body(body.clone())
            })
            .await?;
        let status = response.status();
        if status.is_success() || status.as_u16() == 422 {
            response.json().await.map_err(|e| ClientError::Protocol {
                url: url.clone(),
                reason: e.to_string(),
            })
        } else {
            Err(server_error(&url, response).await)
        }
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}{path_and_query}", self.base);
        let response = self.send_with_retry(&url, || self.http.get(&url)).await?;
        if !response.status().is_success() {
            return Err(server_error(&url, response).await);
        }
        response.json().await.map_err(|e| ClientError::Protocol {
            url: url.clone(),
            reason: e.to_string(),
        })
    }

    /// Sends, retrying failures in transit, 429 and 503 with backoff. Every
    /// request this client makes is idempotent (GETs, and ingests with a
    /// key), so a retry never stores anything twice.
    async fn send_with_retry(
        &self,
        url: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let mut request = build();
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let retry_reason = match request.send().await {
                Ok(r) if retryable(r.status().as_u16()) => format!("status {}", r.status()),
                Ok(r) => return Ok(r),
                Err(e) if e.is_builder() => {
                    return Err(ClientError::Protocol {
                        url: url.to_string(),
                        reason: describe(&e),
                    });
                }
                Err(e) => describe(&e),
            };
            if started.elapsed() + delay > self.retry_for {
                return Err(ClientError::Unreachable {
                    url: url.to_string(),
                    reason: format!(
                        "{retry_reason}, still after {:.0?} of retries",
                        started.elapsed()
                    ),
                });
            }
            tracing::debug!(%url, %retry_reason, "retrying in {delay:?}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

fn retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// The innermost cause of a reqwest error, which is the part people need.
fn describe(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if e.is_timeout() {
        return "the request timed out".into();
    }
    source.to_string()
}

async fn server_error(url: &str, response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or(text);
    ClientError::Server {
        url: url.to_string(),
        status,
        message,
    }
}
