//! The query model over everything stored: `POST /api/query` and
//! `rta query`'s time ranges, filters, breakdowns and statistics, checked
//! against answers computed here from the fixture itself.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::{fixture, rta, text};
use crate::helpers::{TestServer, fixture_events, ts_millis};

async fn loaded(args: &[&str]) -> TestServer {
    let server = TestServer::start_with(args).await;
    let out = rta(&server.url, &["replay", &fixture("events.jsonl"), "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server
}

async fn query(server: &TestServer, body: Value) -> Value {
    let (status, answer) = server
        .post("/api/query", "application/json", body.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}: {answer}");
    answer
}

fn ts(e: &Value) -> chrono::DateTime<chrono::Utc> {
    e["timestamp"].as_str().unwrap().parse().unwrap()
}

fn in_hour_9(e: &Value) -> bool {
    let t = ts(e);
    t >= "2023-04-01T09:00:00Z"
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap()
        && t < "2023-04-01T10:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
}

/// Nearest rank: the smallest value with at least `q` of the values at or below.
fn nearest_rank(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn row<'a>(answer: &'a Value, key: &str, value: &str) -> &'a Value {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"][key] == value)
        .unwrap_or_else(|| panic!("{key}={value} in {answer}"))
}

/// Waits until whole hours of the fixture are answered from their
/// summaries, which trail ingest by a moment.
async fn wait_for_summaries(server: &TestServer) {
    let hour =
        json!({"from": "2023-04-01T09:00:00Z", "to": "2023-04-01T10:00:00Z", "by": ["type"]});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let answer = query(server, hour.clone()).await;
        // Three types in that hour, all summarised and nothing left to read.
        if answer["read"]["summaryHours"] == 3 && answer["read"]["eventsRead"] == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no summaries: {}",
            answer["read"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Whatever reads an answer (summaries or events) the answers match the
/// data: checked once as soon as the events are stored, once they are
/// summarised.
#[tokio::test]
async fn any_time_range_filters_breakdowns_and_statistics_match_the_data() {
    let server = loaded(&[]).await;
    answers_match_the_data(&server).await;
    wait_for_summaries(&server).await;
    answers_match_the_data(&server).await;
    // The same answers after a restart.
    let before = query(&server, json!({"window": "all", "by": ["type", "source"]})).await;
    let server = TestServer::start_in(server.stop(), &[]).await;
    let after = query(&server, json!({"window": "all", "by": ["type", "source"]})).await;
    assert_eq!(before["rows"], after["rows"]);
}

async fn answers_match_the_data(server: &TestServer) {
    let events = fixture_events();

    // One hour that day, per type.
    let answer = query(
        server,
        json!({"from": "2023-04-01T09:00:00Z", "to": "2023-04-01T10:00:00Z", "by": ["type"]}),
    )
    .await;
    assert_eq!(answer["totalEvents"], 3000);
    let hour: Vec<&Value> = events.iter().filter(|e| in_hour_9(e)).collect();
    assert_eq!(answer["matchedEvents"], hour.len());
    for kind in ["sales", "users", "pageview"] {
        let truth = hour.iter().filter(|e| e["type"] == kind).count();
        assert_eq!(row(&answer, "type", kind)["events"], truth, "{kind}");
    }
    let sales_sum: f64 = hour
        .iter()
        .filter(|e| e["type"] == "sales")
        .map(|e| e["values"]["amount"].as_f64().unwrap())
        .sum();
    let got = row(&answer, "type", "sales")["stats"]["amount_sum"]
        .as_f64()
        .unwrap();
    assert!((got - sales_sum).abs() < 1e-6, "{got} vs {sales_sum}");

    // Filters of every kind, a breakdown by two dimensions, quantiles and distinct counts.
    let answer = query(
        server,
        json!({"type": "sales", "where": ["region=Europe,Asia Pacific", "amount>=50", "channel!=store"],
               "by": ["region", "channel"], "stats": ["p95:amount", "max:amount", "distinct:channel"], "top": 100}),
    )
    .await;
    let matched: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "sales")
        .filter(|e| {
            ["Europe", "Asia Pacific"].contains(&e["values"]["region"].as_str().unwrap_or(""))
        })
        .filter(|e| e["values"]["amount"].as_f64().unwrap() >= 50.0)
        .filter(|e| e["values"]["channel"] != "store")
        .collect();
    assert_eq!(answer["matchedEvents"], matched.len());
    let mut groups: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for e in &matched {
        groups
            .entry((
                e["values"]["region"].as_str().unwrap().into(),
                e["values"]["channel"].as_str().unwrap().into(),
            ))
            .or_default()
            .push(e["values"]["amount"].as_f64().unwrap());
    }
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), groups.len());
    for r in rows {
        let key = (
            r["key"]["region"].as_str().unwrap().to_string(),
            r["key"]["channel"].as_str().unwrap().to_string(),
        );
        let amounts = &groups[&key];
        assert_eq!(r["events"], amounts.len(), "{key:?}");
        let max = amounts.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(r["stats"]["amount_max"], max, "{key:?}");
        let p95 = r["stats"]["amount_p95"].as_f64().unwrap();
        let exact = nearest_rank(amounts.clone(), 0.95);
        assert!(
            (p95 - exact).abs() <= exact * 0.01 + 1e-9,
            "{key:?}: p95 {p95} vs {exact}"
        );
        assert_eq!(r["stats"]["channel_distinct"], 1);
    }

    // Contains, source, per-hour buckets: every bucket, in time order.
    let answer = query(
        server,
        json!({"where": ["type=pageview", "path~/pro", "source=fixture"], "by": ["time:hour"]}),
    )
    .await;
    let mut per_hour: BTreeMap<String, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| {
        e["type"] == "pageview" && e["values"]["path"].as_str().unwrap_or("").contains("/pro")
    }) {
        let t = ts(e);
        let hour = t.format("%Y-%m-%dT%H:00:00Z").to_string();
        *per_hour.entry(hour).or_default() += 1;
    }
    let got: BTreeMap<String, u64> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"]["time"].as_str().unwrap().to_string(),
                r["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, per_hour);
    assert!(answer["others"].is_null(), "no time bucket is cut");

    // Top with the rest summed: the rows add up to every matched event.
    let answer = query(
        server,
        json!({"type": "sales", "by": ["region"], "top": 2, "order": "amount_sum desc"}),
    )
    .await;
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["stats"]["amount_sum"].as_f64() >= rows[1]["stats"]["amount_sum"].as_f64());
    let total = rows
        .iter()
        .map(|r| r["events"].as_u64().unwrap())
        .sum::<u64>()
        + answer["others"]["events"].as_u64().unwrap();
    assert_eq!(
        total,
        events.iter().filter(|e| e["type"] == "sales").count() as u64
    );

    // A field the type never had is an error listing the fields it has.
    let (status, body) = server
        .post(
            "/api/query",
            "application/json",
            json!({"type": "sales", "where": ["regoin=Europe"]}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("regoin") && message.contains("amount, channel, region, units"),
        "{message}"
    );
    for bad in [
        json!({"window": "5s"}),
        json!({"where": ["amount>x"]}),
        json!({"by": ["a", "b", "c", "d"]}),
        json!({"window": "1h", "from": "2023-04-01"}),
    ] {
        let (status, body) = server
            .post("/api/query", "application/json", bad.to_string())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn rta_query_speaks_the_query_model() {
    let server = loaded(&["--read-token", "r"]).await;
    let events = fixture_events();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--token", "r", "--format", "csv"]);
        let out = rta(&server.url, &all);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let mut reader = csv::Reader::from_reader(std::io::Cursor::new(out.stdout));
        let headers = reader.headers().unwrap().clone();
        let rows: Vec<BTreeMap<String, String>> = reader
            .records()
            .map(|r| {
                headers
                    .iter()
                    .zip(r.unwrap().iter())
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect()
            })
            .collect();
        rows
    };
    let count = |f: &dyn Fn(&Value) -> bool| events.iter().filter(|e| f(e)).count().to_string();
    let events_of = |rows: &[BTreeMap<String, String>], key: &str, value: &str| {
        rows.iter()
            .find(|r| r[key] == value)
            .map(|r| r["events"].clone())
            .unwrap_or_default()
    };

    let rows = run(&[
        "query",
        "--from",
        "2023-04-01T09:00:00Z",
        "--to",
        "2023-04-01T10:00:00Z",
    ]);
    for kind in ["sales", "users", "pageview"] {
        assert_eq!(
            events_of(&rows, "type", kind),
            count(&|e| in_hour_9(e) && e["type"] == kind),
            "{kind}"
        );
    }
    let region = |e: &Value| e["values"]["region"].as_str().unwrap_or("").to_string();
    for (filter, truth) in [
        (
            "region=Europe",
            count(&|e| e["type"] == "sales" && region(e) == "Europe"),
        ),
        (
            "region=Europe,Asia Pacific",
            count(&|e| {
                e["type"] == "sales" && ["Europe", "Asia Pacific"].contains(&region(e).as_str())
            }),
        ),
        (
            "region!=Europe",
            count(&|e| e["type"] == "sales" && region(e) != "Europe"),
        ),
        (
            "region~America",
            count(&|e| e["type"] == "sales" && region(e).contains("America")),
        ),
        (
            "amount>100",
            count(&|e| e["type"] == "sales" && e["values"]["amount"].as_f64().unwrap() > 100.0),
        ),
        (
            "amount<=20",
            count(&|e| e["type"] == "sales" && e["values"]["amount"].as_f64().unwrap() <= 20.0),
        ),
    ] {
        let rows = run(&[
            "query", "--type", "sales", "--where", filter, "--by", "type",
        ]);
        assert_eq!(events_of(&rows, "type", "sales"), truth, "{filter}");
    }
    let rows = run(&[
        "query",
        "--type",
        "sales",
        "--window",
        "all",
        "--where",
        "region=Europe",
        "--where",
        "amount>100",
        "--by",
        "channel,region",
    ]);
    assert_eq!(
        rows[0].keys().cloned().collect::<Vec<_>>(),
        [
            "amount_mean",
            "amount_sum",
            "channel",
            "events",
            "region",
            "units_mean",
            "units_sum"
        ]
    );
    let rows = run(&[
        "query",
        "--type",
        "pageview",
        "--stat",
        "p95:latency_ms",
        "--stat",
        "distinct:path",
        "--by",
        "device",
    ]);
    assert!(
        rows.iter()
            .all(|r| !r["latency_ms_p95"].is_empty() && !r["path_distinct"].is_empty()),
        "{rows:?}"
    );
    let rows = run(&["query", "--type", "pageview", "--stat", "p95:latency_ms"]);
    let latency = rows.iter().find(|r| r["field"] == "latency_ms").unwrap();
    let truth = nearest_rank(
        events
            .iter()
            .filter(|e| e["type"] == "pageview")
            .map(|e| e["values"]["latency_ms"].as_f64().unwrap())
            .collect(),
        0.95,
    );
    let p95: f64 = latency["p95"].parse().unwrap();
    assert!((p95 - truth).abs() <= truth * 0.011, "{p95} vs {truth}");
}

#[tokio::test]
async fn metrics_of_one_type_list_only_that_type() {
    let server = loaded(&[]).await;
    let metrics = server.metrics("?type=users").await;
    assert_eq!(metrics["eventsByType"], json!({"users": 1018}));
    assert_eq!(
        metrics["totalEvents"], 3000,
        "the total stays every stored event"
    );
}

/// An event as what it means: numbers as numbers (5 and 5.0 alike), the
/// timestamp as an instant (`08:00:00Z` and `08:00:00.000Z` alike).
fn normal(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match (k.as_str(), v.as_str()) {
                    ("timestamp", Some(t)) => (k.clone(), json!(ts_millis(t))),
                    _ => (k.clone(), normal(v)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test]
async fn the_events_behind_a_query_page_stream_and_round_trip() {
    let server = loaded(&[]).await;
    events_page_stream_and_round_trip(&server).await;
}

/// One shared suite for both stores: a cluster node (ClickHouse and the
/// stream) answers as the SQLite tests above expect, first while the events
/// are still being loaded (read from the stream), then from ClickHouse's
/// rows, then from the hour summaries kept there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_answers_as_the_data_says() {
    let cluster = crate::cluster::Cluster::start();
    let node = cluster.node("q", &[]).await;
    // Small batches make many stream messages, so that newest-first reads
    // from ClickHouse look among the last messages first, and further back
    // when those hold too few of the events asked for.
    let out = rta(
        &node.url,
        &["replay", &fixture("events.jsonl"), "--batch", "5", "-q"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    answers_match_the_data(&node).await;
    cluster.wait_rows(3000).await;
    answers_match_the_data(&node).await;
    // Then from the hour summaries the loading node builds in ClickHouse.
    wait_for_summaries(&node).await;
    answers_match_the_data(&node).await;
    events_page_stream_and_round_trip(&node).await;
    // A second node, started now, answers the same from what is stored.
    let other = cluster.node("r", &[]).await;
    let all = json!({"window": "all", "by": ["type", "source"]});
    assert_eq!(
        query(&node, all.clone()).await["rows"],
        query(&other, all).await["rows"]
    );
}

/// The same events, in any order: `rta replay` keeps several requests in
/// flight, so the store may number them in another order than the file's.
fn same_events(a: &[Value], b: &[Value]) -> bool {
    let sorted = |v: &[Value]| {
        let mut v: Vec<String> = v.iter().map(Value::to_string).collect();
        v.sort();
        v
    };
    sorted(a) == sorted(b)
}

async fn events_page_stream_and_round_trip(server: &TestServer) {
    let events = fixture_events();
    let europe: Vec<Value> = events
        .iter()
        .filter(|e| e["type"] == "sales" && e["values"]["region"] == "Europe")
        .map(normal)
        .collect();

    // JSON pages with a cursor: every event once, newest first.
    let mut seen: Vec<u64> = Vec::new();
    let mut newest_first: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = format!(
            "{}/api/events?type=sales&where=region%3DEurope&limit=100{}",
            server.url,
            cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default()
        );
        let response = server.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        cursor = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = response.json().await.unwrap();
        assert!(page.len() <= 100);
        seen.extend(page.iter().map(|e| e["seq"].as_u64().unwrap()));
        newest_first.extend(page.iter().map(|e| {
            let mut e = e.clone();
            e.as_object_mut().unwrap().remove("seq");
            normal(&e)
        }));
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), europe.len());
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    assert!(same_events(&newest_first, &europe), "every event as sent");
    let oldest_first: Vec<Value> = newest_first.into_iter().rev().collect();

    // Oldest first, streamed as NDJSON and as CSV.
    let ndjson = server
        .http
        .get(format!(
            "{}/api/events?type=sales&where=region%3DEurope&order=oldest&format=ndjson",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let body = ndjson.text().await.unwrap();
    let streamed: Vec<Value> = body
        .lines()
        .map(|l| normal(&serde_json::from_str(l).unwrap()))
        .collect();
    assert!(
        streamed == oldest_first,
        "the pages' events, oldest first ({} and {} events)",
        streamed.len(),
        oldest_first.len()
    );
    let (_, csv) = server
        .get("/api/events?type=sales&format=csv&limit=5")
        .await;
    let csv = csv.as_str().expect("CSV, as text");
    assert!(csv.starts_with("timestamp,source,type,values\n"), "{csv}");
    assert_eq!(csv.lines().count(), 6);

    // rta query --events --format jsonl, replayed into another server: nothing lost.
    let out = rta(
        &server.url,
        &[
            "query",
            "--events",
            "--type",
            "sales",
            "--from",
            "2023-04-01",
            "--where",
            "region=Europe",
            "--format",
            "jsonl",
            "--order",
            "oldest",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| normal(&serde_json::from_str(l).unwrap()))
        .collect();
    assert!(
        exported == oldest_first,
        "{} exported, {} expected, oldest first",
        exported.len(),
        oldest_first.len()
    );
    let copy = TestServer::start().await;
    let out = crate::cli::rta_with_stdin(&copy.url, &["replay", "-"], &out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (a, b) = (
        query(server, json!({"type": "sales", "where": ["region=Europe"]})).await,
        query(&copy, json!({"type": "sales"})).await,
    );
    assert_eq!(a["rows"], b["rows"], "the copy answers the same");

    let (status, _) = server.get("/api/events?limit=5000").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "JSON pages hold at most 1000"
    );
    let (status, _) = server.get("/api/events?order=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn answers_leave_out_what_does_not_apply_rather_than_send_null() {
    let server = TestServer::start().await;
    let (status, report) = server.ingest(&json!({"type": "bad type"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(report.get("firstSeq").is_none(), "{report}");
    let (status, report) = server.ingest(&json!({"type": "ok"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["firstSeq"], 1);
    let metrics = server.metrics("").await;
    for key in ["windowSeconds", "windowEvents", "groups", "series"] {
        assert!(metrics.get(key).is_none(), "{key} in {metrics}");
    }
    let metrics = server.metrics("?window=1h").await;
    assert_eq!(metrics["windowSeconds"], 3600.0);
    assert_eq!(metrics["windowEvents"], 1);
}

#[tokio::test]
async fn without_the_default_columns_only_the_statistics_asked_are_computed() {
    let server = loaded(&[]).await;
    let events = fixture_events();
    for window in ["all", "3650d"] {
        // `all` is answered by the live aggregates, a long window by a scan.
        let answer = query(
            &server,
            json!({"window": window, "type": "sales", "by": ["region"], "stats": ["sum:amount", "distinct:channel"], "defaults": false, "top": 10}),
        )
        .await;
        assert_eq!(
            answer["columns"],
            json!(["amount_sum", "channel_distinct"]),
            "{window}"
        );
        let europe = row(&answer, "region", "Europe");
        let sum: f64 = events
            .iter()
            .filter(|e| e["type"] == "sales" && e["values"]["region"] == "Europe")
            .map(|e| e["values"]["amount"].as_f64().unwrap())
            .sum();
        assert!((europe["stats"]["amount_sum"].as_f64().unwrap() - sum).abs() < 1e-6);
        assert_eq!(europe["stats"].as_object().unwrap().len(), 2);
    }
    let answer = query(
        &server,
        json!({"type": "sales", "stats": ["max:units"], "defaults": false}),
    )
    .await;
    assert_eq!(answer["columns"], json!(["units_max"]));
}
