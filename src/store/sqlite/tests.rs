//! The store's hour summaries against the events themselves: answers
//! agree once the summaries are built, after retention deletes part of an
//! hour, after a restart, and when events arrive late.

use std::sync::Arc;

use serde_json::json;

use super::SqliteStore;
use crate::event::{Event, Limits, Timestamp, parse_event};
use crate::feed::Feed;
use crate::query::Query;
use crate::query::exec::Executor;
use crate::query::parse::QueryText;
use crate::query::rollup::HOUR_MS;
use crate::store::Store;
use crate::store::answer::answer;

/// 2023-04-01T09:00:00Z.
const BASE: i64 = 1_680_339_600_000;

fn event(i: i64, ts: i64) -> Event {
    let region = ["eu", "us", "apac"][(i % 3) as usize];
    let doc = json!({
        "type": if i % 3 == 0 { "a" } else { "b" },
        "timestamp": ts,
        "values": {
            "region": region,
            "user": format!("u{}", i % 100),
            // Quarters: every sum is exact in any order.
            "m": (i % 13) as f64 * 0.25,
        },
    });
    parse_event(
        doc,
        &Limits::default(),
        Timestamp::from_millis(BASE + 100 * HOUR_MS).unwrap(),
    )
    .unwrap()
}

fn queries() -> Vec<Query> {
    let now = Timestamp::from_millis(BASE + 10 * HOUR_MS).unwrap();
    let q = |filters: &[&str], by: &[&str], stats: &[&str]| {
        QueryText::all_time(filters, by, stats, now)
    };
    vec![
        q(&[], &["type"], &[]),
        q(
            &["region=eu,us"],
            &["region", "time:hour"],
            &["p90:m", "last:m"],
        ),
        q(&[], &[], &["distinct:user"]),
        q(&["type=b"], &["time:day"], &["sum:m", "min:m", "max:m"]),
    ]
}

/// Answers every query from the store, and from the events alive with a
/// plain executor, and compares; returns the summary hours used.
fn check(store: &SqliteStore, alive: &[(u64, Event)]) -> u64 {
    let mut hours = 0;
    for q in queries() {
        let got = answer(store, &q, 2).unwrap();
        let mut exec = Executor::new(&q);
        for (seq, e) in alive {
            exec.add_one(*seq, e);
        }
        assert_eq!(
            format!("{:?}", got.answer),
            format!("{:?}", exec.finish().unwrap()),
            "{q:?}"
        );
        hours += got.summary_hours;
    }
    hours
}

async fn wait_summarised(store: &SqliteStore, upto: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let covered = store
            .rollups(crate::query::TimeRange::ALL, None, &mut |_, _, _, _| false)
            .unwrap();
        if covered.upto >= upto {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "summaries reach {} of {upto}",
            covered.upto
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn summaries_answer_as_the_events_through_retention_restarts_and_late_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Arc::new(Feed::default())).unwrap();
    // Five hours from half past eight, in time order but for some disorder.
    let events: Vec<Event> = (0..6000)
        .map(|i| event(i, BASE - HOUR_MS / 2 + i * 3_000 - (i % 7) * 60_000))
        .collect();
    let mut alive: Vec<(u64, Event)> = Vec::new();
    for chunk in events.chunks(2500) {
        let first = match store.append(chunk.to_vec(), None).await.unwrap() {
            crate::store::Appended::Stored { first_seq } => first_seq,
            other => panic!("{other:?}"),
        };
        alive.extend(
            chunk
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, e)| (first + i as u64, e)),
        );
    }
    wait_summarised(&store, alive.len() as u64).await;
    assert!(check(&store, &alive) > 0, "summaries are used");

    // Retention cuts an hour in two: its summary must not count what went.
    let cutoff = BASE + HOUR_MS + 20 * 60_000;
    store
        .delete_before(Timestamp::from_millis(cutoff).unwrap())
        .await
        .unwrap();
    alive.retain(|(_, e)| e.timestamp.millis() >= cutoff);
    assert!(check(&store, &alive) > 0);

    // After a restart, from the stored summaries.
    store.close().await;
    drop(store);
    let store = SqliteStore::open(dir.path(), Arc::new(Feed::default())).unwrap();
    assert!(check(&store, &alive) > 0);

    // Late events: into summarised hours, and into the hour retention cut
    // (kept by the store, never summarised).
    let late: Vec<Event> = (0..300)
        .map(|i| {
            event(
                i,
                if i % 2 == 0 {
                    BASE + 3 * HOUR_MS + i
                } else {
                    cutoff - 60_000 + i
                },
            )
        })
        .collect();
    let first = match store.append(late.clone(), None).await.unwrap() {
        crate::store::Appended::Stored { first_seq } => first_seq,
        other => panic!("{other:?}"),
    };
    alive.extend(
        late.into_iter()
            .enumerate()
            .map(|(i, e)| (first + i as u64, e)),
    );
    wait_summarised(&store, first + 299).await;
    assert!(check(&store, &alive) > 0);

    // One request (one segment) over more hours than the builder holds at
    // once: it stores part of the segment, then goes on inside it.
    let wide: Vec<Event> = (0..3000)
        .map(|i| event(i, BASE + 6 * HOUR_MS + (i % 40) * HOUR_MS + i))
        .collect();
    let first = match store.append(wide.clone(), None).await.unwrap() {
        crate::store::Appended::Stored { first_seq } => first_seq,
        other => panic!("{other:?}"),
    };
    alive.extend(
        wide.into_iter()
            .enumerate()
            .map(|(i, e)| (first + i as u64, e)),
    );
    wait_summarised(&store, first + 2999).await;
    assert!(check(&store, &alive) > 0);
    store.close().await;
}
