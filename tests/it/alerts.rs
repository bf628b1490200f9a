//! Alert rules end to end: a webhook receiver inside the test, rules added
//! over the API and the CLI, driven over and back under their thresholds,
//! through restarts and a webhook that is down.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route, Server, handler, post};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{rta, text};
use crate::helpers::TestServer;

/// An HTTP server that records every POST body and answers with `status`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    _task: tokio::task::JoinHandle<()>,
}

#[handler]
fn record(
    body: String,
    Data(got): Data<&Arc<Mutex<Vec<Value>>>>,
    Data(status): Data<&Arc<AtomicU16>>,
) -> poem::http::StatusCode {
    let status = poem::http::StatusCode::from_u16(status.load(Ordering::SeqCst))
        .unwrap_or(poem::http::StatusCode::OK);
    if status.is_success() {
        got.lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    }
    status
}

impl Receiver {
    async fn start() -> Self {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let app = Route::new()
            .at("/hook", post(record))
            .data(got.clone())
            .data(status.clone());
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            got,
            status,
            _task: task,
        }
    }

    fn got(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) until `n` notifications arrived; returns them.
    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < limit,
                "{n} notifications within {limit:?}, got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const FAST: [&str; 4] = [
    "--alert-interval",
    "200ms",
    "--allow-private-webhooks",
    "--public-url",
];

fn args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut all = FAST.to_vec();
    all.push("https://rta.example.com/");
    all.extend_from_slice(extra);
    all
}

async fn add(server: &TestServer, rule: Value) -> (StatusCode, Value) {
    server
        .post("/api/alerts", "application/json", rule.to_string())
        .await
}

async fn ingest_amounts(server: &TestServer, amounts: &[f64]) {
    let events: Vec<Value> = amounts
        .iter()
        .map(|a| json!({"type": "sales", "values": {"amount": a, "region": "Europe"}}))
        .collect();
    let (status, body) = server.ingest(&json!(events)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn mean_rule(name: &str, webhook: &str) -> Value {
    json!({"name": name, "type": "sales", "where": ["region=Europe"], "stat": "mean:amount",
           "window": "1h", "above": 100, "webhook": webhook})
}

/// The id of a notification without its rule's incarnation: `NAME/N`.
fn change(note: &Value) -> String {
    let id = note["id"].as_str().unwrap();
    let (head, incarnation) = id.rsplit_once('-').unwrap();
    assert_eq!(incarnation.len(), 8, "{id}");
    head.to_string()
}

async fn rules(server: &TestServer) -> Vec<Value> {
    let (status, body) = server.get("/api/alerts").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

#[tokio::test]
async fn a_rule_notifies_once_on_firing_and_once_on_resolving() {
    let receiver = Receiver::start().await;
    let server = TestServer::start_with(&args(&[])).await;
    let (status, body) = add(&server, mean_rule("high-mean", &receiver.url)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    ingest_amounts(&server, &[500.0]).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let firing = &got[0];
    assert_eq!(change(firing), "high-mean/1");
    assert_eq!(firing["rule"], "high-mean");
    assert_eq!(firing["state"], "firing");
    assert_eq!(firing["value"], 500.0);
    assert_eq!(firing["condition"], "above");
    assert_eq!(firing["threshold"], 100.0);
    assert_eq!(firing["stat"], "mean:amount");
    assert_eq!(firing["window"], "1h");
    assert!(firing["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        firing["link"],
        "https://rta.example.com/?window=1h&where=type%3Dsales&where=region%3DEurope"
    );
    let listed = rules(&server).await;
    assert_eq!(listed[0]["state"], "firing");
    assert_eq!(listed[0]["value"], 500.0);

    // Still over: nothing more. Then under (mean (500 + 9) / 10): resolved, once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.got().len(), 1, "no repeat while firing");
    ingest_amounts(&server, &[1.0; 9]).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(change(&got[1]), "high-mean/2");
    assert_eq!(
        got[1]["id"].as_str().unwrap()[12..],
        got[0]["id"].as_str().unwrap()[12..],
        "one incarnation"
    );
    assert_eq!(got[1]["state"], "resolved");
    assert_eq!(got[1]["value"], 50.9);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        receiver.got().len(),
        2,
        "exactly one notification per change"
    );
    assert_eq!(rules(&server).await[0]["state"], "ok");

    // `for`: pending first, firing only once the condition held that long.
    let (status, _) = add(
        &server,
        json!({"name": "held", "type": "sales", "stat": "count", "window": "1h",
               "above": 12, "for": "2s", "webhook": receiver.url}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    ingest_amounts(&server, &[1.0; 5]).await;
    let started = Instant::now();
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "held for 2 s first"
    );
    assert_eq!(change(&got[2]), "held/1");
    assert_eq!(got[2]["value"], 15.0);

    // A rule removed and added again under its name is another rule: its
    // notifications are not mistaken for the old one's.
    let (status, _) = server.delete("/api/alerts/high-mean").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut again = mean_rule("high-mean", &receiver.url);
    again["above"] = Value::Null;
    again["below"] = json!(100);
    let (status, body) = add(&server, again).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let got = receiver.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(change(&got[3]), "high-mean/1");
    assert_ne!(
        got[3]["id"], got[0]["id"],
        "not mistaken for the first rule's first"
    );
    assert_eq!(got[3]["condition"], "below");
}

#[tokio::test]
async fn restarts_neither_repeat_nor_forget_a_notification() {
    let receiver = Receiver::start().await;
    let server = TestServer::start_with(&args(&[])).await;
    add(&server, mean_rule("r", &receiver.url)).await;
    ingest_amounts(&server, &[500.0]).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;

    // A clean stop and a kill -9 while firing: nothing is sent again.
    let dir = server.stop();
    let server = TestServer::start_in(dir, &args(&[])).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rules(&server).await[0]["state"], "firing");
    let dir = server.kill9();
    let server = TestServer::start_in(dir, &args(&[])).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.got().len(),
        1,
        "no notification repeated after restarts"
    );

    // The webhook down when the rule resolves: owed, and delivered once
    // rta is back, after a stop.
    receiver.status.store(503, Ordering::SeqCst);
    ingest_amounts(&server, &[1.0; 9]).await;
    let started = Instant::now();
    while rules(&server).await[0]["state"] != "ok" {
        assert!(started.elapsed() < Duration::from_secs(10), "resolved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = server.stop();
    assert_eq!(receiver.got().len(), 1);
    receiver.status.store(200, Ordering::SeqCst);
    let server = TestServer::start_in(dir, &args(&[])).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(change(&got[1]), "r/2");
    assert_eq!(got[1]["state"], "resolved");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.got().len(), 2, "delivered once");
    drop(server);
}

#[tokio::test]
async fn a_dead_webhook_is_retried_then_given_up_without_holding_up_others() {
    let receiver = Receiver::start().await;
    // A port nothing listens on.
    let dead = format!(
        "http://127.0.0.1:{}/hook",
        crate::services::free_ports(1)[0]
    );
    let server = TestServer::start_with(&args(&["--webhook-retry-for", "3s"])).await;
    add(&server, mean_rule("dead", &dead)).await;
    add(&server, mean_rule("live", &receiver.url)).await;
    let started = Instant::now();
    ingest_amounts(&server, &[500.0]).await;
    let got = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got[0]["rule"], "live");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not held up by the dead webhook"
    );
    // Ingest answers as usual while the dead one is retried.
    for _ in 0..20 {
        let sent = Instant::now();
        ingest_amounts(&server, &[600.0]).await;
        assert!(sent.elapsed() < Duration::from_secs(1));
    }
    let started = Instant::now();
    loop {
        let logs = server.logs.lock().unwrap().clone();
        if let Some(line) = logs
            .iter()
            .find(|l| l.contains("gave up on notification dead/1"))
        {
            assert!(line.contains("attempts"), "{line}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "given up: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.got().len(), 1);
}

#[tokio::test]
async fn rules_are_checked_guarded_and_managed_from_the_cli() {
    let receiver = Receiver::start().await;
    let server = TestServer::start_with(&["--token", "w", "--read-token", "r"]).await;
    let url = server.url.clone();
    let cli = |extra: &[&str]| {
        let mut all = vec!["alerts"];
        all.extend_from_slice(extra);
        let out = std::process::Command::new(crate::helpers::BIN)
            .args(&all)
            .env("RTA_URL", &url)
            .env("RTA_TOKEN", "w")
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    // Without --allow-private-webhooks, inward webhooks are refused, however spelt.
    for inward in [
        receiver.url.as_str(),
        "http://localhost:9/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://10.0.0.1/x",
    ] {
        let (code, _, err) = cli(&[
            "add",
            "--name",
            "x",
            "--window",
            "1m",
            "--above",
            "1",
            "--webhook",
            inward,
        ]);
        assert_eq!(code, Some(2), "{inward}: {err}");
        assert!(err.contains("--allow-private-webhooks"), "{err}");
    }
    // Malformed rules: exit 2 with the part named, nothing sent.
    for (bad, part) in [
        (vec!["--window", "5s", "--above", "1"], "window"),
        (vec!["--window", "1m"], "condition"),
        (
            vec!["--window", "1m", "--above", "1", "--stat", "p95"],
            "query",
        ),
        (
            vec!["--window", "1m", "--above", "1", "--where", "nofilter"],
            "query",
        ),
        (
            vec!["--window", "1m", "--above", "1", "--for", "later"],
            "for",
        ),
    ] {
        let mut all = vec!["add", "--name", "x", "--webhook", "https://hooks.example/x"];
        all.extend(bad);
        let (code, _, err) = cli(&all);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(part), "{part}: {err}");
    }
    let (code, _, err) = cli(&[
        "add",
        "--name",
        "slow-mobile",
        "--type",
        "pageview",
        "--where",
        "device=mobile",
        "--stat",
        "p95:latency_ms",
        "--window",
        "5m",
        "--above",
        "500",
        "--for",
        "1m",
        "--webhook",
        "https://hooks.example/rta/secret-path",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(&[
        "add",
        "--name",
        "slow-mobile",
        "--window",
        "5m",
        "--absent",
        "--webhook",
        "https://hooks.example/rta",
    ]);
    assert_eq!(code, Some(2), "a second rule of that name: {err}");
    assert!(err.contains("exists"), "{err}");
    let (code, out, _) = cli(&["list", "--format", "json"]);
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["name"], "slow-mobile");
    assert_eq!(listed[0]["state"], "ok");
    assert_eq!(listed[0]["condition"], "> 500");
    assert_eq!(listed[0]["where"], "device=mobile");
    assert!(
        !out.contains("secret-path"),
        "the webhook's path stays private: {out}"
    );
    let (_, csv, _) = cli(&["list", "--format", "csv"]);
    assert!(csv.starts_with("name,state,since,value,condition"), "{csv}");
    assert!(csv.contains("slow-mobile,ok,"), "{csv}");
    let (_, table, _) = cli(&["list"]);
    assert!(
        table.contains("slow-mobile") && table.contains("p95:latency_ms"),
        "{table}"
    );
    // The tokens guard the API.
    let (status, _) = server.get("/api/alerts").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let out = rta(&url, &["alerts", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("token"));
    let (code, _, _) = cli(&["rm", "slow-mobile"]);
    assert_eq!(code, Some(0));
    let (code, _, err) = cli(&["rm", "slow-mobile"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no alert rule is named `slow-mobile`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_cluster_notifies_each_change_once_and_hands_evaluation_over() {
    let receiver = Receiver::start().await;
    let cluster = crate::cluster::Cluster::start();
    let env = [
        ("RTA_ALERT_INTERVAL", "200ms"),
        ("RTA_ALLOW_PRIVATE_WEBHOOKS", "true"),
    ];
    let a = cluster.node("a", &env).await;
    let b = cluster.node("b", &env).await;
    // Added on one node, evaluated by whichever leads, fed through the other.
    let (status, body) = add(&a, mean_rule("shared", &receiver.url)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    ingest_amounts(&b, &[500.0]).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(change(&got[0]), "shared/1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.got().len(), 1, "one node notifies");
    for node in [&a, &b] {
        assert_eq!(rules(node).await[0]["state"], "firing");
    }

    // The leading node killed: the other takes over, from the state written.
    let leads = |node: &TestServer| {
        node.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("evaluates the alert rules now"))
    };
    let (survivor, dead) = if leads(&a) { (b, a) } else { (a, b) };
    drop(dead.kill9());
    ingest_amounts(&survivor, &[1.0; 9]).await;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(change(&got[1]), "shared/2");
    assert_eq!(got[1]["state"], "resolved");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.got().len(),
        2,
        "nothing repeated after the takeover"
    );

    // Removed and added again: another rule, with ids of its own.
    let (status, _) = survivor.delete("/api/alerts/shared").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(rules(&survivor).await.is_empty());
    let mut again = mean_rule("shared", &receiver.url);
    again["above"] = Value::Null;
    again["below"] = json!(100);
    let (status, body) = add(&survivor, again).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(change(&got[2]), "shared/1");
    assert_ne!(got[2]["id"], got[0]["id"]);
}
