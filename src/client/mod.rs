//! What the client commands share: the HTTP client with retries, progress
//! reporting, and the exit codes they promise.

pub mod escape;
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
    #[error("the TLS connection to {url} failed: {reason}")]
    Tls { url: String, reason: String },
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
            ClientError::Unreachable { .. } | ClientError::Tls { .. } => exit::UNREACHABLE,
            _ => exit::FAILED,
        }
    }
}

/// How long a streamed answer may take in all.
const STREAM_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a command does with the server, which decides the token it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Sending events: the ingest token (`rta serve --token`).
    Write,
    /// Reading metrics: the read token (`rta serve --read-token`) or the ingest one.
    Read,
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
    purpose: Purpose,
}

impl Client {
    pub fn new(args: &ClientArgs, purpose: Purpose) -> anyhow::Result<Self> {
        let base = check_url(&args.url)?;
        // https with rustls, trusting the system's roots (or SSL_CERT_FILE).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(args.timeout)
            .read_timeout(args.timeout)
            .user_agent(concat!("rta/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base,
            token: args.token.clone().filter(|t| !t.is_empty()),
            retry_for: args.retry_for,
            purpose,
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
            Err(self.server_error(&url, response).await)
        }
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, path_and_query: &str) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}{path_and_query}", self.base);
        let response = self.send_with_retry(&url, || self.http.get(&url)).await?;
        if !response.status().is_success() {
            return Err(self.server_error(&url, response).await);
        }
        response.json().await.map_err(|e| ClientError::Protocol {
            url: url.clone(),
            reason: e.to_string(),
        })
    }

    /// GETs an answer to read as it comes (a stream of events).
    pub async fn get_streamed(
        &self,
        path_and_query: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path_and_query}", self.base);
        // The whole answer may take long (a million events); a stalled one
        // is still caught by the read timeout.
        let response = self
            .send_with_retry(&url, || self.http.get(&url).timeout(STREAM_TIMEOUT))
            .await?;
        if !response.status().is_success() {
            return Err(self.server_error(&url, response).await);
        }
        Ok(response)
    }

    /// POSTs a JSON document and reads the JSON answer (a query: reading
    /// only, so retrying it is safe).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .send_with_retry(&url, || self.http.post(&url).json(body))
            .await?;
        if !response.status().is_success() {
            return Err(self.server_error(&url, response).await);
        }
        response.json().await.map_err(|e| ClientError::Protocol {
            url: url.clone(),
            reason: e.to_string(),
        })
    }

    /// Sends a DELETE; `Ok(false)` when the server has no such thing (404).
    pub async fn delete(&self, path: &str) -> Result<bool, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .send_with_retry(&url, || self.http.delete(&url))
            .await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.server_error(&url, response).await),
        }
    }

    /// Sends, retrying failures in transit, 429 and 503 with backoff. Every
    /// request this client makes is idempotent (GETs, and ingests with a
    /// key, and queries, which only read), so a retry never stores anything
    /// twice.
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
                // Retrying cannot mend a certificate or a protocol mismatch.
                Err(e) if tls_failure(&e).is_some() => {
                    return Err(ClientError::Tls {
                        url: url.to_string(),
                        reason: tls_failure(&e).unwrap_or_default(),
                    });
                }
                Err(e) if not_http(&e) => {
                    return Err(ClientError::Protocol {
                        url: url.to_string(),
                        reason: format!(
                            "{} (it does not answer in HTTP; if it speaks https, use an https:// URL)",
                            describe(&e)
                        ),
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

impl Client {
    /// The server's error, its message made safe for a terminal, with what
    /// to do about the usual mistakes.
    async fn server_error(&self, url: &str, response: reqwest::Response) -> ClientError {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        let message = escape::visible(&message).into_owned();
        let message = match status {
            401 => self.token_hint(),
            404 => format!(
                "{message} (is --url the address rta serves its dashboard at, such as http://127.0.0.1:8080? it is {})",
                self.base
            ),
            _ => message,
        };
        ClientError::Server {
            url: url.to_string(),
            status,
            message,
        }
    }

    fn token_hint(&self) -> String {
        let which = match self.purpose {
            Purpose::Write => "its ingest token (rta serve --token)",
            Purpose::Read => "its read token (rta serve --read-token) or its ingest token",
        };
        if self.token.is_some() {
            format!("the token given (--token or RTA_TOKEN) was refused: this server needs {which}")
        } else {
            format!("this server needs {which}: pass --token TOKEN or set RTA_TOKEN")
        }
    }
}

/// The server's base URL from `--url`: http or https, a host, and no API
/// path (commands add `/api/...` themselves). A path prefix stays, for a
/// server behind a proxy under one.
fn check_url(given: &str) -> anyhow::Result<String> {
    let example = "such as http://127.0.0.1:8080 or https://rta.example.com";
    let url = match reqwest::Url::parse(given.trim()) {
        Ok(url) => url,
        Err(e) => crate::usage!(
            "--url {given:?} is not a URL ({e}); give the server's address, {example}"
        ),
    };
    if !matches!(url.scheme(), "http" | "https") {
        crate::usage!("--url {given:?} must start with http:// or https://, {example}");
    }
    if url.host_str().is_none_or(str::is_empty) {
        crate::usage!("--url {given:?} has no host; {example}");
    }
    if url.query().is_some() || url.fragment().is_some() {
        crate::usage!(
            "--url {given:?} has a query or fragment; give only the server's address, {example}"
        );
    }
    let path = url.path().trim_end_matches('/');
    if let Some(at) = path.find("/api").filter(|at| {
        let rest = &path[at + 4..];
        rest.is_empty() || rest.starts_with('/')
    }) {
        let mut base = url.clone();
        base.set_path(&path[..at]);
        crate::usage!(
            "--url is the server's address without /api (the command adds the route): try {}",
            base.as_str().trim_end_matches('/')
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Whether the answer could not be read as HTTP at all (say, a TLS server
/// asked in plain http).
fn not_http(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// The reason a request failed in TLS (a certificate, a handshake, a
/// server that does not speak TLS), with what to do about it, if it did.
fn tls_failure(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            let hint = match tls {
                rustls::Error::InvalidCertificate(_) => {
                    " (for a certificate from a private CA, point SSL_CERT_FILE at the CA's certificate)"
                }
                rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                    " (the server does not speak TLS there: rta serve speaks plain http, so use http:// unless a proxy in front of it adds TLS)"
                }
                _ => "",
            };
            return Some(format!("{tls}{hint}"));
        }
        // An io::Error's source() skips the error it wraps: step into it.
        source = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}
