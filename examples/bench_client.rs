//! Load and latency probes for `bench/run.sh`, where the stock tools
//! (wrk, `rta generate`) cannot do the job.
//!
//! cargo run --release --example bench_client -- distinct URL COUNT
//!     ingests COUNT events whose `user` dimension is never repeated
//! cargo run --release --example bench_client -- ws-latency URL CLIENTS PROBES
//!     connects CLIENTS WebSockets, sends PROBES marked events one by one,
//!     and prints the p50/p99 time from the ingest request to the update
//!     that carries it, over every client

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
        ["ws-latency", url, clients, probes] => {
            ws_latency(url, clients.parse()?, probes.parse()?).await
        }
        _ => {
            anyhow::bail!("usage: bench_client distinct URL COUNT | ws-latency URL CLIENTS PROBES")
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

async fn ws_latency(url: &str, clients: usize, probes: usize) -> anyhow::Result<()> {
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
            .post(format!("{url}/api/ingest"))
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
