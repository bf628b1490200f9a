//! Several `rta serve` nodes on one ClickHouse and one NATS JetStream: every
//! acknowledged event stored exactly once, every node's live view equal,
//! through a loader killed between its INSERT and its mark, a node killed
//! and restarted, ClickHouse down and NATS down.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;

use crate::helpers::{TestServer, next_json};
use crate::services::{self, Service};

pub struct Cluster {
    clickhouse: Service,
    nats: Service,
}

impl Cluster {
    pub fn start() -> Self {
        Self {
            clickhouse: services::clickhouse(),
            nats: services::nats(),
        }
    }

    pub async fn node(&self, id: &str, env: &[(&str, &str)]) -> TestServer {
        let store = self.clickhouse.clickhouse_url("rta");
        let bus = self.nats.nats_url();
        TestServer::start_node(&["--store", &store, "--bus", &bus, "--node-id", id], env).await
    }

    /// Rows in ClickHouse's table, as ClickHouse counts them (no FINAL).
    async fn rows(&self) -> u64 {
        self.clickhouse
            .sql("SELECT count() FROM rta.events")
            .await
            .parse()
            .expect("a count")
    }

    /// Waits until ClickHouse holds exactly `n` rows and no sequence number
    /// twice; fails if it ever holds more.
    pub async fn wait_rows(&self, n: u64) {
        let started = Instant::now();
        loop {
            let rows = self.rows().await;
            if rows > n {
                let doubled = self
                    .clickhouse
                    .sql("SELECT stream_seq, seq, count() AS c FROM rta.events GROUP BY stream_seq, seq HAVING c > 1 ORDER BY seq LIMIT 5")
                    .await;
                panic!("ClickHouse holds {rows} rows, more than the {n} sent; doubled: {doubled}");
            }
            if rows == n {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ClickHouse holds {rows} of {n} rows after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let distinct = self
            .clickhouse
            .sql("SELECT uniqExact(seq) FROM rta.events")
            .await;
        assert_eq!(distinct, n.to_string(), "every row a different event");
    }
}

/// Events `from..from + n`: amounts spread over 0.5..=999.5, three regions.
fn events(from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            let region = ["north", "south", "east"][i % 3];
            json!({"type": "sales", "source": "cluster-test",
                   "values": {"amount": (i * 37 % 1000) as f64 + 0.5, "region": region}})
        })
        .collect()
}

async fn post(node: &TestServer, batch: &[Value]) -> Value {
    let (status, body) = node.ingest(&Value::Array(batch.to_vec())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], batch.len());
    body
}

async fn query(node: &TestServer, body: Value) -> Value {
    let (status, answer) = node
        .post("/api/query", "application/json", body.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}: {answer}");
    answer
}

async fn status(node: &TestServer) -> Value {
    let (code, body) = node.get("/api/status").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

fn nearest_rank(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// Checks a node's answers against the events sent: by region, all time,
/// from the live engine; and with a filter, which reads ClickHouse.
async fn assert_answers_truth(node: &TestServer, sent: &[Value]) {
    let mut truth: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in sent {
        truth
            .entry(e["values"]["region"].as_str().unwrap().into())
            .or_default()
            .push(e["values"]["amount"].as_f64().unwrap());
    }
    for (body, keep) in [
        (
            json!({"window": "all", "by": ["region"], "defaults": false,
                   "stats": ["sum:amount", "min:amount", "max:amount", "p50:amount", "p99:amount"]}),
            None,
        ),
        (
            json!({"window": "30d", "where": ["amount>=300"], "by": ["region"], "defaults": false,
                   "stats": ["sum:amount", "min:amount", "max:amount", "p50:amount", "p99:amount"]}),
            Some(300.0),
        ),
    ] {
        let answer = query(node, body.clone()).await;
        let rows = answer["rows"].as_array().unwrap();
        assert_eq!(rows.len(), truth.len(), "{body}: {answer}");
        for row in rows {
            let region = row["key"]["region"].as_str().unwrap();
            let amounts: Vec<f64> = truth[region]
                .iter()
                .copied()
                .filter(|a| keep.is_none_or(|k| *a >= k))
                .collect();
            let stats = &row["stats"];
            assert_eq!(row["events"], amounts.len(), "{region} {body}");
            let sum: f64 = amounts.iter().sum();
            assert!(
                (stats["amount_sum"].as_f64().unwrap() - sum).abs() < 1e-6,
                "{region}: sum {} vs {sum}",
                stats["amount_sum"]
            );
            let min = amounts.iter().copied().fold(f64::MAX, f64::min);
            let max = amounts.iter().copied().fold(f64::MIN, f64::max);
            assert_eq!(stats["amount_min"], min, "{region}");
            assert_eq!(stats["amount_max"], max, "{region}");
            for (name, q) in [("amount_p50", 0.5), ("amount_p99", 0.99)] {
                let got = stats[name].as_f64().unwrap();
                let exact = nearest_rank(amounts.clone(), q);
                assert!(
                    (got - exact).abs() <= exact * 0.01 + 1e-9,
                    "{region} {name}: {got} vs {exact}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_one_store_and_bus_and_lose_or_double_nothing() {
    let mut cluster = Cluster::start();
    let mut sent: Vec<Value> = Vec::new();

    // A loader killed between its INSERT and moving its mark: the rows it
    // inserted are in ClickHouse, unmarked.
    let mut doomed = cluster
        .node("doomed", &[("RTA_TEST_FAULT", "exit-after-insert:1")])
        .await;
    let batch = events(0, 100);
    post(&doomed, &batch).await;
    sent.extend(batch);
    let exit = doomed.wait_exit(Duration::from_secs(20));
    assert_eq!(exit.and_then(|s| s.code()), Some(137), "the fault fired");
    assert_eq!(cluster.rows().await, 100, "the INSERT was stored");

    // Two nodes take over: the unmarked rows are replaced, not doubled.
    let a = cluster.node("a", &[]).await;
    let b = cluster.node("b", &[]).await;
    cluster.wait_rows(100).await;
    let started = Instant::now();
    while status(&a).await["loaded"].as_u64() < Some(1) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a loader took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.wait_rows(100).await;
    for node in [&a, &b] {
        let s = status(node).await;
        assert_eq!(s["store"], "clickhouse");
        assert_eq!(s["events"], 100, "{s}");
    }

    // 1,000 events in batches, alternately to B and A; A's WebSocket shows
    // them all within a second of the last answer.
    let (mut ws, _) = connect_async(a.ws_url("")).await.expect("A's WebSocket");
    assert_eq!(next_json(&mut ws).await["metrics"]["totalEvents"], 100);
    for (i, chunk) in events(100, 1000).chunks(50).enumerate() {
        post(if i % 2 == 0 { &b } else { &a }, chunk).await;
        sent.extend_from_slice(chunk);
    }
    let last_answer = Instant::now();
    loop {
        let update = next_json(&mut ws).await;
        if update["metrics"]["totalEvents"] == 1100 {
            break;
        }
    }
    assert!(
        last_answer.elapsed() <= Duration::from_secs(1),
        "A showed B's events {:?} after the last answer",
        last_answer.elapsed()
    );
    for node in [&a, &b] {
        assert_answers_truth(node, &sent).await;
    }
    cluster.wait_rows(1100).await;

    // B killed; A takes 200 more; B comes back and catches up.
    drop(b);
    for chunk in events(1100, 200).chunks(50) {
        post(&a, chunk).await;
        sent.extend_from_slice(chunk);
    }
    let b = cluster.node("b", &[]).await;
    assert_eq!(status(&b).await["events"], 1300);
    assert_answers_truth(&b, &sent).await;
    cluster.wait_rows(1300).await;

    // A retry with the same key, to the other node: the first answer, nothing stored.
    let once = events(1300, 1);
    let first = a
        .http
        .post(format!("{}/api/ingest", a.url))
        .header("idempotency-key", "order-1300")
        .json(&once[0])
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    sent.extend(once.clone());
    let retry: Value = b
        .http
        .post(format!("{}/api/ingest", b.url))
        .header("idempotency-key", "order-1300")
        .json(&once[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(retry["replayed"], true, "{retry}");
    assert_eq!(retry["firstSeq"], first["firstSeq"]);
    assert_eq!(status(&b).await["events"], 1301);
    cluster.wait_rows(1301).await;

    // More than NATS takes in one message: refused whole, with the reason.
    let big: Vec<Value> = (0..1500)
        .map(
            |i| json!({"type": "sales", "values": {"note": format!("{i:04}{}", "x".repeat(1000))}}),
        )
        .collect();
    let (code, body) = a.ingest(&Value::Array(big)).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("max_payload"),
        "{body}"
    );
    assert_eq!(status(&a).await["events"], 1301);

    // ClickHouse down: ingest goes on, the events wait in the stream.
    cluster.clickhouse.kill();
    let batch = events(1301, 50);
    post(&b, &batch).await;
    sent.extend(batch);
    assert_eq!(status(&a).await["events"], 1351);
    cluster.clickhouse.start_again();
    cluster.wait_rows(1351).await;
    assert_answers_truth(&a, &sent).await;

    // NATS down: ingest is refused with a reason, queries still answer. The
    // client retries with its key once NATS is back: stored once.
    cluster.nats.kill();
    let once = events(1351, 1);
    let keyed = |node: &TestServer| {
        node.http
            .post(format!("{}/api/ingest", node.url))
            .header("idempotency-key", "order-1351")
            .json(&once[0])
            .send()
    };
    let refused = keyed(&a).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("NATS"), "{body}");
    assert_answers_truth(&a, &sent).await;
    cluster.nats.start_again();
    let started = Instant::now();
    while keyed(&a).await.unwrap().status() != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ingest works again once NATS is back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sent.extend(once.clone());
    let batch = events(1352, 9);
    post(&b, &batch).await;
    sent.extend(batch);
    cluster.wait_rows(1361).await;
    for node in [&a, &b] {
        let started = Instant::now();
        while status(node).await["events"] != 1361 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "every node sees it"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_answers_truth(node, &sent).await;
    }
    // A node that stops cleanly leaves its engine's state in NATS: the next
    // node starts from it and reads only what came after.
    b.stop();
    let batch = events(1361, 20);
    post(&a, &batch).await;
    sent.extend(batch);
    let c = cluster.node("c", &[]).await;
    assert!(
        c.startup_line.contains("saved state + "),
        "{}",
        c.startup_line
    );
    assert_eq!(status(&c).await["events"], 1381);
    assert_answers_truth(&c, &sent).await;
}

#[test]
fn conflicting_store_flags_are_refused_with_what_to_pass() {
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(crate::helpers::BIN)
            .arg("serve")
            .args(args)
            .env_remove("RTA_DATA_DIR")
            .env_remove("RTA_STORE")
            .env_remove("RTA_BUS")
            .envs(env.iter().copied())
            .output()
            .expect("rta runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--store", "sqlite:/tmp/x", "--data-dir", "/tmp/y"],
            &[],
            "name different directories",
        ),
        (
            &["--store", "clickhouse://127.0.0.1:8123/rta"],
            &[],
            "--bus nats://",
        ),
        (
            &["--bus", "nats://127.0.0.1:4222"],
            &[],
            "SQLite store takes none",
        ),
        (
            &["--store", "sqlite:/tmp/x", "--bus", "nats://127.0.0.1:4222"],
            &[],
            "takes none",
        ),
        (
            &[
                "--store",
                "clickhouse://127.0.0.1:8123/rta",
                "--bus",
                "nats://h:1",
            ],
            &[("RTA_DATA_DIR", "/tmp/y")],
            "no use with a ClickHouse store",
        ),
        (
            &["--store", "postgres://h/db"],
            &[],
            "sqlite:DIR or clickhouse://",
        ),
        (
            &[
                "--store",
                "clickhouse://h:8123/my-db",
                "--bus",
                "nats://h:1",
            ],
            &[],
            "letters, digits and `_`",
        ),
        (
            &[
                "--store",
                "clickhouse://h:8123/rta",
                "--bus",
                "http://h:4222",
            ],
            &[],
            "nats://HOST:PORT",
        ),
        (&["--node-id", "a b"], &[], "--node-id"),
    ];
    for (args, env, expected) in cases {
        let (code, stderr) = serve(args, env);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // Nothing listening: a clear message, not a hang.
    let (code, stderr) = serve(
        &[
            "--addr",
            "127.0.0.1:0",
            "--store",
            "clickhouse://127.0.0.1:9/rta",
            "--bus",
            "nats://127.0.0.1:9",
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("cannot reach NATS at nats://127.0.0.1:9"),
        "{stderr}"
    );
}

/// A ClickHouse that takes the connection and then never answers (hung, or
/// stopped in a debugger) is given up on after the URL's timeout, with a
/// message naming it, instead of holding start-up forever.
#[test]
fn a_clickhouse_that_never_answers_is_given_up_on() {
    let nats = services::nats();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = silent.local_addr().expect("an address").port();
    std::thread::spawn(move || {
        // Accepted and kept open, never read from nor written to.
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let store = format!("clickhouse://127.0.0.1:{port}/rta?timeout=1s");
    let started = Instant::now();
    let mut child = std::process::Command::new(crate::helpers::BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--store", &store, "--bus"])
        .arg(nats.nats_url())
        .env_remove("RTA_DATA_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rta starts");
    let code = loop {
        if let Some(status) = child.try_wait().expect("rta's status") {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("rta still waits for a silent ClickHouse after 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr is text");
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach ClickHouse at clickhouse://127.0.0.1:{port}/rta"
        )) && stderr.contains("no answer within 1s"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_days_and_deletes_inside_the_cut_day() {
    let cluster = Cluster::start();
    let a = cluster.node("a", &[]).await;
    // A day long past, as an older rta would have stored it: it goes by partition.
    a.ingest(&json!({"type": "fresh", "values": {"v": 0}}))
        .await;
    cluster.wait_rows(1).await;
    drop(a);
    let past = chrono::Utc::now() - chrono::Duration::days(3);
    cluster
        .clickhouse
        .sql(&format!(
            "INSERT INTO rta.events (seq, stream_seq, ts, time_ms, type, source) VALUES (1, 0, {}, {}, 'ancient', 'x')",
            past.timestamp(),
            past.timestamp_millis()
        ))
        .await;
    let days = || async {
        cluster
            .clickhouse
            .sql("SELECT uniqExact(partition) FROM system.parts WHERE database = 'rta' AND table = 'events' AND active")
            .await
    };
    assert_eq!(days().await, "2");

    let args = ["--retention", "1m"];
    let node = |id: &'static str| {
        let store = cluster.clickhouse.clickhouse_url("rta");
        let bus = cluster.nats.nats_url();
        async move {
            TestServer::start_node(
                &[
                    &args[..],
                    &["--store", &store, "--bus", &bus, "--node-id", id],
                ]
                .concat(),
                &[],
            )
            .await
        }
    };
    let (a, b) = (node("a").await, node("b").await);
    // Inside the retention when sent, outside it a few seconds later.
    let old = (chrono::Utc::now() - chrono::Duration::seconds(57)).to_rfc3339();
    let mut batch: Vec<Value> = (0..100)
        .map(|i| json!({"timestamp": old, "type": "old", "values": {"v": i}}))
        .collect();
    batch.extend((0..10).map(|i| json!({"type": "fresh", "values": {"v": i}})));
    post(&b, &batch).await;

    let started = Instant::now();
    loop {
        let rows = cluster.rows().await;
        let (ma, mb) = (a.metrics("").await, b.metrics("").await);
        if rows == 11 && ma["totalEvents"] == 11 && mb["totalEvents"] == 11 {
            assert_eq!(ma["eventsByType"], json!({"fresh": 11}));
            assert_eq!(mb["eventsByType"], json!({"fresh": 11}));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{rows} rows; a counts {} ({}), b counts {} ({})",
            ma["totalEvents"],
            ma["eventsByType"],
            mb["totalEvents"],
            mb["eventsByType"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(days().await, "1", "the old day's partition was dropped");
}

/// NATS's JetStream store lost while ClickHouse keeps its data: a node
/// refuses to start rather than delete what is stored or number new events
/// like old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_bus_never_costs_stored_events() {
    let mut cluster = Cluster::start();
    let a = cluster.node("a", &[]).await;
    post(&a, &events(0, 50)).await;
    cluster.wait_rows(50).await;
    drop(a);
    cluster.nats.start_afresh();
    let out = std::process::Command::new(crate::helpers::BIN)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--store",
            &cluster.clickhouse.clickhouse_url("rta"),
            "--bus",
            &cluster.nats.nats_url(),
        ])
        .output()
        .expect("rta runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("JetStream store reset?"), "{stderr}");
    assert_eq!(cluster.rows().await, 50, "nothing stored was deleted");
}

/// The stream keeps what ClickHouse holds only for `--bus-keep`; a node
/// started after the stream was trimmed builds from ClickHouse and misses
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_keeps_loaded_events_only_as_long_as_told() {
    let cluster = Cluster::start();
    let store = cluster.clickhouse.clickhouse_url("rta");
    let bus = cluster.nats.nats_url();
    let a = TestServer::start_node(
        &[
            "--store",
            &store,
            "--bus",
            &bus,
            "--node-id",
            "a",
            "--bus-keep",
            "1s",
        ],
        &[],
    )
    .await;
    let mut sent = Vec::new();
    for i in 0..6 {
        let batch = events(i * 10, 10);
        post(&a, &batch).await;
        sent.extend(batch);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    cluster.wait_rows(60).await;
    let started = Instant::now();
    loop {
        let (first, last) = cluster.nats.stream_span("RTA_EVENTS").await;
        assert_eq!(last, 6, "one message a request");
        if first > 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the stream still starts at message {first}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = cluster.node("b", &[]).await;
    assert_eq!(status(&b).await["events"], 60);
    assert_answers_truth(&b, &sent).await;
}
