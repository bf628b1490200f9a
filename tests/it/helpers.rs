//! Spawning the app and talking to it, so tests read like specs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_rta");

/// Sends raw bytes (what an HTTP client would not send) to `server` and
/// reads the answer for at most `wait`, or until `enough` says so.
pub fn raw_exchange(
    server: &TestServer,
    request: &[u8],
    wait: Duration,
    enough: impl Fn(&[u8]) -> bool,
) -> String {
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    std::io::Write::write_all(&mut stream, request).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = std::io::Read::read(&mut stream, &mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if enough(&answer) {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A running `rta serve` with its own data directory.
pub struct TestServer {
    child: Child,
    pub url: String,
    pub dir: TempDir,
    pub http: reqwest::Client,
    /// The log line saying where it listens and how it loaded its state.
    pub startup_line: String,
    /// Every line the server logged so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(args: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().expect("a temporary directory"), args).await
    }

    /// Starts a server on an existing data directory (for restarts).
    pub async fn start_in(dir: TempDir, args: &[&str]) -> Self {
        Self::spawn_in(dir, args, &[]).await
    }

    /// Starts a server with its own data directory and `env` added to its
    /// environment.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::spawn_in(dir, args, env).await
    }

    async fn spawn_in(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        let data_dir = dir.path().to_string_lossy().into_owned();
        let mut all = vec!["--data-dir", data_dir.as_str()];
        all.extend_from_slice(args);
        Self::spawn(dir, &all, env).await
    }

    /// Starts a node of a cluster: no data directory (`args` name the store
    /// and the bus), `env` added to its environment.
    pub async fn start_node(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::spawn(dir, args, env).await
    }

    async fn spawn(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(if args.contains(&"--addr") {
                &[][..]
            } else {
                &["--addr", "127.0.0.1:0"][..]
            })
            .args(args)
            .env("RTA_LOG", "info")
            .env_remove("RTA_TOKEN")
            .env_remove("RTA_LOG_FORMAT")
            .env_remove("RTA_INGEST_VIA_ROUTER")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the rta binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let log_sink = logs.clone();
        std::thread::spawn(move || {
            let show = std::env::var_os("TEST_LOG").is_some();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if show {
                    eprintln!("[server] {line}");
                }
                log_sink.lock().unwrap().push(line.clone());
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url: String = rest
                        .chars()
                        .take_while(|c| *c != ',' && !c.is_whitespace())
                        .collect();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((url, line.clone()));
                    }
                }
            }
        });
        let (url, startup_line) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server says where it listens within 20 s");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            child,
            url,
            dir,
            http,
            startup_line,
            logs,
        }
    }

    /// The server's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc is readable");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("{}/api/ws{query}", self.url.replacen("http", "ws", 1))
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no chance to flush anything. Returns the data directory.
    pub fn kill9(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.take_dir()
    }

    /// SIGTERM and wait for a clean exit. Returns the data directory.
    pub fn stop(mut self) -> TempDir {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().expect("the server exits");
        assert!(exit.success(), "clean shutdown, got {exit}");
        self.take_dir()
    }

    fn take_dir(mut self) -> TempDir {
        std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("a temporary directory"),
        )
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// POSTs JSON to /api/ingest.
    pub async fn ingest(&self, body: &Value) -> (StatusCode, Value) {
        self.post("/api/ingest", "application/json", body.to_string())
            .await
    }

    pub async fn get(&self, path_and_query: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path_and_query}", self.url)))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}{path}", self.url)))
            .await
    }

    /// The status and the body, as JSON when it is.
    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = match request.send().await {
            Ok(resp) => resp,
            Err(e) => panic!(
                "the server answers: {e:?}; its last log lines:\n{}",
                self.last_logs(30)
            ),
        };
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// The last `n` lines the server logged, for a failure's message.
    pub fn last_logs(&self, n: usize) -> String {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs[logs.len().saturating_sub(n)..].join("\n")
    }

    pub async fn metrics(&self, query: &str) -> Value {
        let (status, body) = self.get(&format!("/api/metrics{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metrics of one type from a metrics body.
pub fn type_metrics<'a>(metrics: &'a Value, kind: &str) -> &'a Value {
    metrics["types"]
        .as_array()
        .and_then(|types| types.iter().find(|t| t["name"] == kind))
        .unwrap_or_else(|| panic!("type {kind} in {metrics}"))
}

/// One measure of a type's metrics.
pub fn measure<'a>(type_metrics: &'a Value, name: &str) -> &'a Value {
    type_metrics["measures"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("measure {name} in {type_metrics}"))
}

/// A WebSocket client of the test server.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message, as JSON (within 10 s).
pub async fn next_json(ws: &mut Socket) -> Value {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

/// The fixture's events (3,000, 2023-04-01 08:00 to 11:20).
pub fn fixture_events() -> Vec<Value> {
    std::fs::read_to_string(crate::cli::fixture("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An RFC 3339 time in milliseconds.
pub fn ts_millis(t: &str) -> i64 {
    t.parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap()
        .timestamp_millis()
}
