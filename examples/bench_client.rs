//! Load and latency probes for `bench/run.sh`, where the stock tools
//! (wrk, `rta generate`) cannot do the job.
//!
//! cargo run --release --example bench_client -- distinct URL COUNT
//!     ingests COUNT events whose `user` dimension is never repeated
//! cargo run --release --example bench_client -- query-data rta URL COUNT
//! cargo run --release --example bench_client -- query-data clickhouse URL COUNT
//!     loads the query benchmark's events (COUNT over the last 30 days, in
//!     time order with up to an hour of disorder: two types, four
//!     dimensions, two measures a type; the same events every run) into rta
//!     or into ClickHouse's table `events` over its HTTP interface
//! cargo run --release --example bench_client -- ws-latency URL CLIENTS PROBES [INGEST_URL]
//!     connects CLIENTS WebSockets, sends PROBES marked events one by one
//!     (to INGEST_URL when given: another node of a cluster than the one
//!     watched), and prints the p50/p99 time from the ingest request to the
//!     update that carries it, over every client

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["distinct", url, count] => distinct(url, count.parse()?).await,
        ["query-data", target, url, count] => query_data(target, url, count.parse()?).await,
        ["ws-latency", url, clients, probes] => {
            ws_latency(url, url, clients.parse()?, probes.parse()?).await
        }
        // Probes sent to another node of a cluster than the one watched.
        ["ws-latency", url, clients, probes, ingest_url] => {
            ws_latency(url, ingest_url, clients.parse()?, probes.parse()?).await
        }
        _ => {
            anyhow::bail!(
                "usage: bench_client distinct URL COUNT | query-data rta|clickhouse URL COUNT | ws-latency URL CLIENTS PROBES [INGEST_URL]"
            )
        }
    }
}

async fn distinct(url: &str, count: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = count.div_ceil(4);
    for t in 0..4 {
        let (http, url) = (http.clone(), format!("{url}/api/ingest"));
        tasks.spawn(async move {
            let (from, to) = (t * per_task, ((t + 1) * per_task).min(count));
            let mut i = from;
            while i < to {
                let end = (i + 1000).min(to);
                let body: String = (i..end)
                    .map(|n| format!("{{\"type\":\"visit\",\"values\":{{\"user\":\"user-{n}\",\"ms\":{}}}}}\n", n % 997))
                    .collect();
                let r = http.post(&url).header("content-type", "application/x-ndjson").body(body).send().await?;
                anyhow::ensure!(r.status().is_success(), "ingest answered {}", r.status());
                i = end;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} events with distinct values in {secs:.1} s ({:.0} events/s)",
        count as f64 / secs
    );
    Ok(())
}

/// A benchmark event: its type, time (ms), dimensions and measures.
type BenchEvent = (
    &'static str,
    i64,
    [(&'static str, String); 4],
    [(&'static str, f64); 2],
);

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// The `i`-th of `count` benchmark events ending at `end_ms`: (type, ts,
/// dimensions, measures). A fixed hash of `i` stands for randomness, so
/// both loaders get the same events.
fn bench_event(i: u64, count: u64, end_ms: i64) -> BenchEvent {
    let h = |salt: u64| {
        let mut x =
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^ (x >> 32)
    };
    let span = 30 * DAY_MS;
    let ts =
        end_ms - span + (i as i64 * span / count.max(1) as i64) - (h(1) % HOUR_MS as u64) as i64;
    const REGIONS: [&str; 5] = [
        "North America",
        "Europe",
        "Asia Pacific",
        "Latin America",
        "Africa",
    ];
    const CHANNELS: [&str; 3] = ["web", "mobile", "store"];
    const DEVICES: [&str; 2] = ["desktop", "mobile"];
    let dims = [
        ("region", REGIONS[(h(2) % 5) as usize].to_string()),
        ("channel", CHANNELS[(h(3) % 3) as usize].to_string()),
        ("device", DEVICES[(h(4) % 2) as usize].to_string()),
        ("user", format!("u{}", h(5) % 200_000)),
    ];
    let u = (h(6) % 1_000_000) as f64 / 1_000_000.0;
    if h(7) % 2 == 0 {
        // Long-tailed latencies, whole-number bytes.
        let latency = (20.0 + 30.0 * (-(1.0 - u).ln())).round();
        (
            "pageview",
            ts,
            dims,
            [("latency_ms", latency), ("bytes", (h(8) % 100_000) as f64)],
        )
    } else {
        (
            "sale",
            ts,
            dims,
            [
                ("amount", ((h(9) % 50_000) as f64) / 100.0),
                ("units", (1 + h(10) % 9) as f64),
            ],
        )
    }
}

async fn query_data(target: &str, url: &str, count: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    // The same end for every loader of one run (bench/run.sh sets it).
    let end_ms = match std::env::var("QUERY_END_MS") {
        Ok(ms) => ms.parse()?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
    };
    let started = Instant::now();
    const BATCH: u64 = 20_000;
    let clickhouse = match target {
        "rta" => false,
        "clickhouse" => true,
        other => anyhow::bail!("query-data loads `rta` or `clickhouse`, not {other:?}"),
    };
    let endpoint = if clickhouse {
        format!("{url}/?query=INSERT%20INTO%20events%20FORMAT%20JSONEachRow")
    } else {
        format!("{url}/api/ingest")
    };
    let mut tasks = tokio::task::JoinSet::new();
    // Batches in time order, taken in turn by four senders: the events
    // arrive in time order but for the hour of disorder each one has.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..4 {
        let (http, endpoint, next) = (http.clone(), endpoint.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(BATCH, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let end = (i + BATCH).min(count);
                let mut body = String::with_capacity((end - i) as usize * 200);
                for n in i..end {
                    let (kind, ts, dims, measures) = bench_event(n, count, end_ms);
                    let line = if clickhouse {
                        serde_json::json!({
                            "type": kind,
                            // DateTime: whole seconds (18.16 has no DateTime64).
                            "ts": ts.div_euclid(1000),
                            "dim_keys": dims.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                            "dim_values": dims.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
                            "measure_keys": measures.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                            "measure_values": measures.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
                        })
                    } else {
                        let mut values = serde_json::Map::new();
                        for (k, v) in &dims {
                            values.insert((*k).into(), v.as_str().into());
                        }
                        for (k, v) in measures {
                            values.insert(k.into(), v.into());
                        }
                        serde_json::json!({"type": kind, "timestamp": ts, "source": "bench", "values": values})
                    };
                    body.push_str(&line.to_string());
                    body.push('\n');
                }
                let mut request = http.post(&endpoint).body(body);
                if !clickhouse {
                    request = request.header("content-type", "application/x-ndjson");
                }
                let r = request.send().await?;
                anyhow::ensure!(r.status().is_success(), "{} answered {}: {}", endpoint, r.status(), r.text().await.unwrap_or_default());
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{count} events into {target} in {secs:.1} s ({:.0} events/s)",
        count as f64 / secs
    );
    Ok(())
}

async fn ws_latency(
    url: &str,
    ingest_url: &str,
    clients: usize,
    probes: usize,
) -> anyhow::Result<()> {
    let ws_url = format!("{}/api/ws?type=probe", url.replacen("http", "ws", 1));
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; probes]));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for _ in 0..clients {
        let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await?;
        let (sent, latencies) = (sent.clone(), latencies.clone());
        readers.push(tokio::spawn(async move {
            let mut seen = vec![false; probes];
            let mut remaining = probes;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let arrived = Instant::now();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                for event in v["events"].as_array().into_iter().flatten() {
                    let Some(id) = event["values"]["probe"].as_u64().map(|i| i as usize) else {
                        continue;
                    };
                    if id < probes && !seen[id] {
                        seen[id] = true;
                        remaining -= 1;
                        if let Some(at) = sent.lock().await[id] {
                            latencies
                                .lock()
                                .await
                                .push(arrived.duration_since(at).as_secs_f64() * 1000.0);
                        }
                    }
                }
                if remaining == 0 {
                    break;
                }
            }
        }));
    }
    let http = reqwest::Client::new();
    for id in 0..probes {
        let body = format!("{{\"type\":\"probe\",\"values\":{{\"probe\":{id}}}}}");
        sent.lock().await[id] = Some(Instant::now());
        let r = http
            .post(format!("{ingest_url}/api/ingest"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "ingest answered {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every delivery has had time to arrive; clients still waiting are missing some.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(readers),
    )
    .await;
    let mut all = latencies.lock().await.clone();
    anyhow::ensure!(!all.is_empty(), "no probe arrived");
    all.sort_by(f64::total_cmp);
    let pct = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
    let expected = clients * probes;
    println!(
        "ingest-to-WebSocket latency over {} deliveries ({} clients x {} probes, {} missing): p50 {:.1} ms p99 {:.1} ms",
        all.len(),
        clients,
        probes,
        expected - all.len(),
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
