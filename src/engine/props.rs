//! Property tests: for any sequence of valid events, the engine's totals
//! equal counts computed directly from the events.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::event::{Limits, parse_event};

const NOW: i64 = 1_700_000_000_000;

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        prop::sample::select(vec!["a", "b", "c.d", "e-f"]),
        // From 30 hours ago to 30 s ahead: some in windows, some not.
        -30 * HOUR..30 * SECOND,
        prop::option::of(-1e6f64..1e6),
        prop::option::of(0u32..1000),
        prop::option::of(prop::sample::select(vec!["x", "y", "z", "w"])),
    )
        .prop_map(|(kind, offset, m1, m2, dim)| {
            let mut values = serde_json::Map::new();
            if let Some(m) = m1 {
                values.insert("m1".into(), json!(m));
            }
            if let Some(m) = m2 {
                values.insert("m2".into(), json!(m));
            }
            if let Some(d) = dim {
                values.insert("dim".into(), json!(d));
            }
            let doc = json!({"type": kind, "timestamp": NOW + offset, "values": values});
            parse_event(
                doc,
                &Limits::default(),
                Timestamp::from_millis(NOW).unwrap(),
            )
            .unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn totals_equal_direct_counts(events in prop::collection::vec(event_strategy(), 0..300), split in 0usize..300) {
        let mut engine = Engine::default();
        let now = Timestamp::from_millis(NOW).unwrap();
        // Applied in two batches, like two commits.
        let split = split.min(events.len());
        engine.apply_committed(1, &events[..split], now);
        engine.apply_committed(split as u64 + 1, &events[split..], now);

        let snapshot = engine.query(&Query::default(), now);
        prop_assert_eq!(snapshot.total_events, events.len() as u64);
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        for e in &events {
            *by_type.entry(e.kind.to_string()).or_default() += 1;
        }
        prop_assert_eq!(&snapshot.events_by_type, &by_type);
        for t in &snapshot.types {
            for m in &t.measures {
                let values: Vec<f64> = events.iter()
                    .filter(|e| e.kind.as_str() == t.name)
                    .filter_map(|e| e.measures().find(|(n, _)| *n == m.name).map(|(_, x)| x))
                    .collect();
                prop_assert_eq!(m.count, values.len() as u64);
                let sum: f64 = values.iter().sum();
                prop_assert!((m.sum - sum).abs() <= 1e-6 * sum.abs().max(1.0));
                prop_assert_eq!(m.min, values.iter().copied().fold(f64::INFINITY, f64::min));
                prop_assert_eq!(m.max, values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            }
        }

        // Windows count exactly the events whose timestamp falls inside them.
        for window in [5 * MINUTE, HOUR, 24 * HOUR] {
            let q = Query { window_ms: Some(window), ..Query::default() };
            let inside = events.iter().filter(|e| {
                let ts = e.timestamp.millis();
                ts > NOW - window && ts <= NOW
            }).count() as u64;
            let resolution = if window <= 15 * MINUTE { SECOND } else { MINUTE };
            // The oldest slot may be partly inside the window, and the newest
            // slot also holds events from later in its own period.
            let slot_end = (NOW / resolution + 1) * resolution;
            let edge = events.iter().filter(|e| {
                let ts = e.timestamp.millis();
                (ts <= NOW - window && ts > NOW - window - resolution) || (ts > NOW && ts < slot_end)
            }).count() as u64;
            let counted = engine.query(&q, now).window_events.unwrap_or(0);
            prop_assert!(counted >= inside && counted <= inside + edge, "window {}: {} vs {}..={}", window, counted, inside, inside + edge);
        }
    }
}

/// Events crowded into a few minutes (from `earliest` ms before `NOW`), so
/// that groups of one type and one minute are large enough to be summed and
/// merged.
fn crowded_events(earliest: i64) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["a", "b"]),
            -earliest..SECOND,
            -1000i32..1000,
            prop::sample::select(vec!["x", "y", "z"]),
            prop::option::of(0u32..100),
            prop::option::of(prop::sample::select(vec!["p", "q"])),
        )
            .prop_map(|(kind, offset, m, dim, n, zone)| {
                // Multiples of 1/4: every sum is exact, whatever the order.
                let mut values = json!({"m": f64::from(m) / 4.0, "dim": dim});
                if let Some(n) = n {
                    values["n"] = json!(n);
                }
                if let Some(zone) = zone {
                    values["zone"] = json!(zone);
                }
                let doc = json!({"type": kind, "timestamp": NOW + offset, "values": values});
                parse_event(
                    doc,
                    &Limits::default(),
                    Timestamp::from_millis(NOW).unwrap(),
                )
                .unwrap()
            }),
        0..400,
    )
}

/// What must not depend on how events were grouped: everything but float sums
/// (added in another order), which must agree closely.
fn comparable(snapshot: &Snapshot) -> (String, Vec<f64>) {
    let mut exact = format!(
        "{} {:?} {:?}",
        snapshot.total_events, snapshot.events_by_type, snapshot.window_events
    );
    let mut sums = Vec::new();
    for t in &snapshot.types {
        exact += &format!(" {} {} {} {}", t.name, t.count, t.first_seen, t.last_seen);
        for m in &t.measures {
            exact += &format!(
                " {} {} {} {} {:?} {:?} {:?}",
                m.name, m.count, m.min, m.max, m.p50, m.p90, m.p99
            );
            sums.push(m.sum);
        }
        for d in &t.dimensions {
            exact += &format!(" {} {:?} {}", d.name, d.top, d.others);
        }
    }
    for (kind, points) in &snapshot.time_series.points {
        for p in points {
            exact += &format!(" {kind}@{}={}", p.ts_ms, p.count);
            sums.extend(p.measures.values().map(|b| b.sum));
        }
    }
    (exact, sums)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn one_batch_equals_one_event_at_a_time(events in crowded_events(3 * MINUTE)) {
        same_as_one_event_at_a_time(&events, events.len(), EngineConfig::default())?;
    }

    /// Within one minute events are taken in order, so even when a type
    /// has more fields than are tracked, the same ones are kept.
    #[test]
    fn one_batch_keeps_the_same_fields_as_one_event_at_a_time(
        events in crowded_events(NOW % MINUTE - 1),
        max_fields in 2usize..6,
        split in 0usize..400,
    ) {
        // In two commits: the second meets fields the first already tracks.
        let config = EngineConfig { max_fields, ..EngineConfig::default() };
        same_as_one_event_at_a_time(&events, split, config)?;
    }
}

/// Applies `events` in two commits (split at `split`) to one engine and one
/// at a time to another, and compares what both report.
fn same_as_one_event_at_a_time(
    events: &[Event],
    split: usize,
    config: EngineConfig,
) -> Result<(), TestCaseError> {
    let now = Timestamp::from_millis(NOW).unwrap();
    let mut grouped = Engine::new(config);
    let split = split.min(events.len());
    grouped.apply_committed(1, &events[..split], now);
    grouped.apply_committed(split as u64 + 1, &events[split..], now);
    let mut single = Engine::new(config);
    for (i, event) in events.iter().enumerate() {
        single.apply_committed(i as u64 + 1, std::slice::from_ref(event), now);
    }
    for window in [None, Some(5 * MINUTE), Some(HOUR), Some(24 * HOUR)] {
        let q = Query {
            window_ms: window,
            ..Query::default()
        };
        let (a, a_sums) = comparable(&grouped.query(&q, now));
        let (b, b_sums) = comparable(&single.query(&q, now));
        prop_assert_eq!(a, b);
        prop_assert_eq!(a_sums.len(), b_sums.len());
        for (x, y) in a_sums.iter().zip(&b_sums) {
            prop_assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{} vs {}", x, y);
        }
        // Each dimension's groups, with the measures summed per value.
        for kind in ["a", "b"] {
            for by in ["dim", "zone"] {
                let q = Query {
                    kind: Some(EventType::parse(kind, &Limits::default()).unwrap()),
                    window_ms: window,
                    by: Some(by.into()),
                    ..Query::default()
                };
                let a = format!("{:?}", grouped.query(&q, now).groups);
                let b = format!("{:?}", single.query(&q, now).groups);
                prop_assert_eq!(a, b);
            }
        }
    }
    Ok(())
}
