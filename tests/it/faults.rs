//! Faults: kill -9 under load, a full or read-only disk.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestServer;

/// Every (client, n) stored, from the database itself.
fn stored_ids(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let conn = rusqlite::Connection::open(dir.join("events.db")).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "the database is intact");
    let mut stmt = conn.prepare("SELECT data FROM segments").unwrap();
    let segments: Vec<Vec<u8>> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let measure = |event: &rta::event::Event, name: &str| {
        event
            .measures()
            .find(|(n, _)| *n == name)
            .map(|(_, x)| x as u64)
            .unwrap()
    };
    segments
        .iter()
        .flat_map(|data| rta::store::segment::decode(data).unwrap())
        .map(|event| (measure(&event, "client"), measure(&event, "n")))
        .collect()
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let server = TestServer::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked_so_far = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..4u64 {
        let (http, url, stop, acked_so_far) = (
            server.http.clone(),
            format!("{}/api/ingest", server.url),
            stop.clone(),
            acked_so_far.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> = (n..n + 50)
                    .map(|i| json!({"type": "load", "values": {"client": client, "n": i}}))
                    .collect();
                match http.post(&url).json(&batch).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        acked.extend((n..n + 50).map(|i| (client, i)));
                        acked_so_far.fetch_add(50, Ordering::Relaxed);
                    }
                    _ => break,
                }
                n += 50;
            }
            acked
        }));
    }
    // Killed in the middle of the load, however slow the machine: once
    // 2,000 events were acknowledged, with requests still in flight.
    let started = std::time::Instant::now();
    while acked_so_far.load(Ordering::Relaxed) < 2000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "2,000 events acknowledged within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = server.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.unwrap());
    }
    assert!(
        acked.len() > 1000,
        "the load was real: {} events acknowledged",
        acked.len()
    );

    let stored = stored_ids(dir.path());
    let unique: HashSet<_> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "nothing stored twice");
    let missing: Vec<_> = acked.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );

    let server = TestServer::start_in(dir, &[]).await;
    assert_eq!(
        server.metrics("").await["totalEvents"],
        stored.len() as u64,
        "metrics equal what the store holds"
    );
}

/// Mounts a tmpfs of `size` at `dir`; None when this machine does not allow it (not root).
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> Option<()> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(())
}

fn remount(dir: &std::path::Path, options: &str) {
    let status = Command::new("mount")
        .args(["-o", &format!("remount,{options}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "remount {options}");
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
#[ignore = "needs root to mount a small tmpfs; .ci/run runs it when root"]
async fn a_full_or_read_only_disk_gets_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    mount_tmpfs(dir.path(), "2m")
        .expect("mounting a tmpfs (this test needs root: run it as root, as .ci/run does)");
    let _unmount = Unmount(dir.path().to_path_buf());
    let server = TestServer::start_in(tempfile::TempDir::new_in(dir.path()).unwrap(), &[]).await;
    let batch = |i: usize| -> Value {
        Value::Array(
            (0..200)
                .map(
                    |j| json!({"type": "fill", "values": {"pad": "x".repeat(200), "i": i, "j": j}}),
                )
                .collect(),
        )
    };
    // Fill the disk.
    let mut accepted = 0;
    let mut refusal = None;
    for i in 0..200 {
        let (status, body) = server.ingest(&batch(i)).await;
        match status {
            StatusCode::OK => accepted += body["accepted"].as_u64().unwrap(),
            StatusCode::SERVICE_UNAVAILABLE => {
                refusal = Some(body);
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let refusal = refusal.expect("the disk filled up");
    assert!(
        refusal["message"].as_str().unwrap().contains("full"),
        "{refusal}"
    );
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK, "still up");
    assert_eq!(
        server.metrics("").await["totalEvents"],
        accepted,
        "only what was acknowledged counts"
    );

    // Space returns: ingest works again, nothing acknowledged was lost.
    remount(dir.path(), "size=64m");
    let (status, body) = server.ingest(&batch(999)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.metrics("").await["totalEvents"], accepted + 200);

    // A read-only data directory is refused at start with a clear message.
    let data = server.stop();
    remount(dir.path(), "ro");
    let out = Command::new(crate::helpers::BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    remount(dir.path(), "rw");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open the data directory")
            && stderr.to_lowercase().contains("read-only"),
        "{stderr}"
    );
}
