//! The client commands against a real server: generate, replay, query,
//! completions, and their exit codes.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::helpers::{BIN, TestServer};

pub fn rta(server_url: &str, args: &[&str]) -> Output {
    rta_with_stdin(server_url, args, b"")
}

pub fn rta_with_stdin(server_url: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RTA_URL", server_url)
        .env_remove("RTA_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rta runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("stdin written");
    child.wait_with_output().expect("rta finishes")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Per-type counts of a JSONL file, computed directly.
fn count_types(path: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        *counts
            .entry(event["type"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn generate_sends_batches_at_the_interval() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let out = rta(
        &server.url,
        &[
            "generate",
            "--count",
            "12",
            "--interval",
            "0.2",
            "--batch",
            "4",
            "--seed",
            "1",
        ],
    );
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("12 accepted, 0 rejected"),
        "{}",
        text(&out.stderr)
    );
    // Three batches: the first at once, then one per interval.
    assert!(
        elapsed.as_secs_f64() >= 0.4,
        "paced by --interval, took {elapsed:?}"
    );
    let m = server.metrics("").await;
    assert_eq!(m["totalEvents"], 12);
    let kinds: Vec<_> = m["eventsByType"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(
        kinds
            .iter()
            .all(|k| ["sales", "users", "pageview"].contains(&k.as_str())),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn generate_writes_reproducible_files() {
    let a = rta(
        "http://unused",
        &[
            "generate", "--count", "50", "--seed", "9", "--types", "pageview", "--output", "-",
        ],
    );
    let b = rta(
        "http://unused",
        &[
            "generate", "--count", "50", "--seed", "9", "--types", "pageview", "--output", "-",
        ],
    );
    assert!(a.status.success());
    let lines: Vec<Value> = text(&a.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 50);
    assert!(
        lines
            .iter()
            .all(|e| e["type"] == "pageview" && e["values"]["latency_ms"].is_number())
    );
    // Timestamps differ between runs (they end now), values do not.
    let values = |o: &Output| {
        text(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["values"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&a), values(&b));
}

#[tokio::test]
async fn replays_both_fixtures_to_the_same_totals() {
    let expected = count_types(&fixture("events.jsonl"));
    let total: u64 = expected.values().sum();
    let mut sums = Vec::new();
    for file in ["events.jsonl", "events.csv"] {
        let server = TestServer::start().await;
        let out = rta(&server.url, &["replay", &fixture(file)]);
        assert!(out.status.success(), "{file}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&format!("{total} accepted, 0 rejected")),
            "{}",
            text(&out.stderr)
        );
        let m = server.metrics("").await;
        assert_eq!(m["totalEvents"], total, "{file}");
        let by_type: BTreeMap<String, u64> =
            serde_json::from_value(m["eventsByType"].clone()).unwrap();
        assert_eq!(by_type, expected, "{file}");
        sums.push(m["types"].clone());
    }
    // Concurrent batches commit in any order, so float sums may differ in the
    // last bits and `last` among equal timestamps may differ; the rest is exact.
    let (jsonl, csv) = (sums[0].as_array().unwrap(), sums[1].as_array().unwrap());
    assert_eq!(jsonl.len(), csv.len());
    for (a, b) in jsonl.iter().zip(csv) {
        assert_eq!(
            (&a["name"], &a["count"], &a["dimensions"]),
            (&b["name"], &b["count"], &b["dimensions"])
        );
        for (ma, mb) in a["measures"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["measures"].as_array().unwrap())
        {
            for exact in ["name", "count", "min", "max", "p50", "p90", "p99"] {
                assert_eq!(ma[exact], mb[exact], "{} {exact}", ma["name"]);
            }
            let (sa, sb) = (ma["sum"].as_f64().unwrap(), mb["sum"].as_f64().unwrap());
            assert!(
                (sa - sb).abs() <= 1e-9 * sa.abs().max(1.0),
                "{} sum {sa} vs {sb}",
                ma["name"]
            );
        }
    }
}

#[tokio::test]
async fn replay_reports_bad_lines_by_number_and_keeps_the_rest() {
    let server = TestServer::start().await;
    let input = b"{\"type\":\"a\",\"values\":{\"x\":1}}\nnot json\n{\"type\":\"b\",\"values\":{\"x\":[1]}}\n\n{\"type\":\"c\"}\n";
    let out = rta_with_stdin(&server.url, &["replay", "-", "--batch", "2"], input);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit 1 when a line was rejected"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2: invalid JSON"), "{stderr}");
    assert!(
        stderr.contains("line 3: field `values.x` is an array"),
        "{stderr}"
    );
    assert_eq!(
        server.metrics("").await["eventsByType"],
        serde_json::json!({"a": 1, "c": 1})
    );

    // A CSV file with a short row.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "type,amount\nsales,5\nsales\nsales,7\n").unwrap();
    let out = rta(&server.url, &["replay", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 3: has 1 fields, the header has 2"),
        "{}",
        text(&out.stderr)
    );
    let m = server.metrics("?type=sales").await;
    assert_eq!(m["types"][0]["measures"][0]["sum"], 12.0);
}

#[tokio::test]
async fn replay_shift_to_now_lands_in_live_windows() {
    let server = TestServer::start().await;
    let out = rta(
        &server.url,
        &[
            "replay",
            &fixture("events.jsonl"),
            "--shift-to-now",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = server.metrics("?window=1h").await;
    let in_window = m["windowEvents"].as_u64().unwrap();
    // The fixture spans 3h20m at an even pace: the last hour holds about 30%.
    assert!(
        (700..=1100).contains(&in_window),
        "{in_window} events in the last hour"
    );
}

#[tokio::test]
async fn query_prints_every_format() {
    let server = TestServer::start().await;
    let out = rta(&server.url, &["replay", &fixture("events.jsonl"), "-q"]);
    assert!(out.status.success());

    let table = rta(&server.url, &["query"]);
    assert!(table.status.success());
    let table = text(&table.stdout);
    let header: Vec<_> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "type",
            "events",
            "rate_per_s",
            "first_seen",
            "last_seen",
            "measures"
        ]
    );
    assert!(!table.contains('│'), "no box drawing in a pipe");

    let csv = text(&rta(&server.url, &["query", "--format", "csv"]).stdout);
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let counts: BTreeMap<String, u64> = rows
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].parse().unwrap())
        })
        .collect();
    assert_eq!(counts, count_types(&fixture("events.jsonl")));

    let json: Value = serde_json::from_slice(
        &rta(
            &server.url,
            &["query", "--type", "sales", "--format", "json"],
        )
        .stdout,
    )
    .unwrap();
    let fields: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, ["amount", "units"]);
    assert!(json[0]["p99"].as_f64().unwrap() > json[0]["p50"].as_f64().unwrap());

    let tsv = text(
        &rta(
            &server.url,
            &[
                "query", "--type", "sales", "--by", "region", "--format", "tsv",
            ],
        )
        .stdout,
    );
    let mut lines = tsv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "region\tevents\tamount_sum\tamount_mean\tunits_sum\tunits_mean"
    );
    let regions: u64 = lines
        .map(|l| l.split('\t').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(regions, count_types(&fixture("events.jsonl"))["sales"]);

    let missing = rta(&server.url, &["query", "--type", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("known types: pageview, sales, users"));
}

#[tokio::test]
async fn an_unreachable_server_exits_2_with_the_url() {
    // A port nobody listens on (and no service of these tests is given).
    let port = crate::services::free_ports(1)[0];
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["query", "--retry-for", "300ms"],
        vec!["generate", "--count", "5", "--retry-for", "300ms"],
        vec!["replay", "-", "--retry-for", "300ms"],
    ] {
        let out = rta_with_stdin(&url, &args, b"{\"type\":\"a\"}\n");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(&format!("cannot reach the rta server at {url}")),
            "{}",
            text(&out.stderr)
        );
    }
    let bad_url = rta("localhost:8080", &["query"]);
    assert_eq!(
        bad_url.status.code(),
        Some(2),
        "a bad --url is a usage error"
    );
    assert!(
        text(&bad_url.stderr).contains("must start with http:// or https://"),
        "{}",
        text(&bad_url.stderr)
    );
    let usage = rta(&url, &["generate", "--batch", "0"]);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn committed_completions_match_the_binary() {
    for (shell, file) in [("bash", "rta.bash"), ("zsh", "_rta"), ("fish", "rta.fish")] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .expect("rta runs");
        assert!(out.status.success());
        let committed =
            std::fs::read(format!("{}/completions/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(
            out.stdout == committed,
            "completions/{file} is stale: run `cargo run -- completions {shell} > completions/{file}`"
        );
    }
}

#[tokio::test]
async fn generate_survives_a_server_restart_without_duplicates() {
    let server = TestServer::start().await;
    let url = server.url.clone();
    let addr = url.trim_start_matches("http://").to_string();
    let generator = std::thread::spawn(move || {
        rta(
            &url,
            &[
                "generate",
                "--count",
                "600",
                "--interval",
                "0.02",
                "--batch",
                "10",
                "--retry-for",
                "20s",
            ],
        )
    });
    // Restart on the same address while the generator is sending.
    let so_far = wait_for_events(&server, 50).await;
    assert!(
        so_far < 600,
        "the restart comes mid-stream ({so_far} of 600 sent)"
    );
    let dir = server.stop();
    let server = TestServer::start_in(dir, &["--addr", &addr]).await;
    let out = generator.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("600 accepted, 0 rejected"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        server.metrics("").await["totalEvents"],
        600,
        "every event once"
    );
}

#[tokio::test]
async fn ctrl_c_stops_generate_cleanly_with_a_summary() {
    let server = TestServer::start().await;
    let child = Command::new(BIN)
        .args(["generate", "--interval", "0.05", "--batch", "5"])
        .env("RTA_URL", &server.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_events(&server, 10).await;
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "interrupted");
    let stderr = text(&out.stderr);
    let accepted: u64 = stderr
        .split(" accepted")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a summary: {stderr}"));
    assert!(accepted > 0);
    assert_eq!(
        server.metrics("").await["totalEvents"],
        accepted,
        "the summary is exact"
    );
}

/// Waits (within 30 s) until the server holds at least `n` events; returns
/// how many it holds.
async fn wait_for_events(server: &TestServer, n: u64) -> u64 {
    let started = std::time::Instant::now();
    loop {
        let total = server.metrics("").await["totalEvents"]
            .as_u64()
            .unwrap_or(0);
        if total >= n {
            return total;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{n} events stored within 30 s (only {total})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
