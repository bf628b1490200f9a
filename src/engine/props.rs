//! Property tests: for any sequence of valid events, the engine's totals
//! equal counts computed directly from the events.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::event::{Event, Timestamp};
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

        let answer = engine.query(&Query::default(), now);
        prop_assert_eq!(answer.total_events, events.len() as u64);
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        for e in &events {
            *by_type.entry(e.kind.to_string()).or_default() += 1;
        }
        prop_assert_eq!(&answer.events_by_type, &by_type);
        for t in &answer.types {
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
fn comparable(answer: &Metrics) -> (String, Vec<f64>) {
    let mut exact = format!(
        "{} {:?} {:?}",
        answer.total_events, answer.events_by_type, answer.window_events
    );
    let mut sums = Vec::new();
    for t in &answer.types {
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
    for (kind, points) in &answer.time_series.points {
        for p in points {
            exact += &format!(" {kind}@{}={}", p.ts_ms, p.count);
            sums.extend(p.measures.values().map(|b| b.sum()));
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

/// A query the live aggregates can answer: a type filter (or none), a
/// breakdown by type (or none), statistics of measures.
fn engine_query_strategy() -> impl Strategy<Value = crate::query::Query> {
    use crate::query::parse::QueryText;
    (
        prop::option::of(prop::sample::select(vec![
            "type=a",
            "type=a,b",
            "type!=b",
            "type!=a,c.d",
            "type~-",
        ])),
        any::<bool>(),
        prop::collection::vec(
            prop::sample::select(vec![
                "count:m1", "sum:m1", "min:m2", "max:m2", "mean:m1", "last:m1", "last:m2",
                "p50:m1", "p90:m2", "p95:m1", "p99:m2",
            ]),
            0..4,
        ),
        prop::option::of(prop::sample::select(vec![
            "events",
            "m1_sum desc",
            "m2_p99 asc",
            "type",
        ])),
        prop::option::of(1usize..4),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(filter, by_type, stats, order, top, defaults)| {
            let text = QueryText {
                filters: filter.into_iter().map(String::from).collect(),
                by: if by_type {
                    vec!["type".into()]
                } else {
                    Vec::new()
                },
                stats: stats.into_iter().map(String::from).collect(),
                order: order.map(String::from),
                top,
                defaults,
                ..QueryText::default()
            };
            text.to_query(Timestamp::from_millis(NOW).unwrap())
                .expect("a valid query")
        })
}

/// The same statistic from both paths: exact ones equal (sums up to
/// rounding), quantiles within the sketch's 1% of each other.
fn same_stat(
    engine: &crate::query::exec::StatValue,
    scanned: &crate::query::exec::StatValue,
) -> bool {
    use crate::query::exec::StatValue::Number;
    match (engine, scanned) {
        (Number(Some(a)), Number(Some(b))) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (a, b) => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The live aggregates and a scan of the same events (what the store
    /// path does) give the same answer to every query the aggregates take.
    #[test]
    fn the_engine_and_a_scan_answer_alike(
        events in prop::collection::vec(event_strategy(), 0..300),
        split in 0usize..300,
        query in engine_query_strategy(),
    ) {
        let mut engine = Engine::default();
        let now = Timestamp::from_millis(NOW).unwrap();
        let split = split.min(events.len());
        engine.apply_committed(1, &events[..split], now);
        engine.apply_committed(split as u64 + 1, &events[split..], now);

        let from_engine = engine.answer(&query, None);
        prop_assert!(from_engine.is_some(), "the engine takes {:?}", query);
        let from_engine = from_engine.unwrap().unwrap();
        let mut scan = crate::query::exec::Executor::new(&query);
        scan.add(&events);
        let scanned = scan.finish().unwrap();

        prop_assert_eq!(from_engine.matched, scanned.matched);
        prop_assert_eq!(&from_engine.keys, &scanned.keys);
        prop_assert_eq!(&from_engine.stats, &scanned.stats);
        let rows = |a: &crate::query::exec::Answer| {
            a.rows.iter().chain(a.others.iter()).cloned().collect::<Vec<_>>()
        };
        let (mine, theirs) = (rows(&from_engine), rows(&scanned));
        prop_assert_eq!(mine.len(), theirs.len());
        for (a, b) in mine.iter().zip(&theirs) {
            prop_assert_eq!(&a.key, &b.key);
            prop_assert_eq!(a.events, b.events);
            prop_assert_eq!(a.span, b.span);
            for (column, (x, y)) in from_engine.stats.iter().zip(a.stats.iter().zip(&b.stats)) {
                prop_assert!(same_stat(x, y), "{}: engine {:?}, scan {:?}", column.column(), x, y);
            }
        }
        prop_assert_eq!(from_engine.others.is_some(), scanned.others.is_some());
    }

    /// What the aggregates cannot hold exactly is left to the store.
    #[test]
    fn the_engine_declines_what_it_cannot_answer_exactly(events in prop::collection::vec(event_strategy(), 1..50)) {
        let mut engine = Engine::default();
        let now = Timestamp::from_millis(NOW).unwrap();
        engine.apply_committed(1, &events, now);
        use crate::query::parse::QueryText;
        for text in [
            QueryText { filters: vec!["dim=x".into()], ..QueryText::default() },
            QueryText { by: vec!["dim".into()], ..QueryText::default() },
            QueryText { stats: vec!["distinct:dim".into()], ..QueryText::default() },
            QueryText { window: Some("1h".into()), ..QueryText::default() },
            QueryText { by: vec!["time:hour".into()], ..QueryText::default() },
        ] {
            let query = text.to_query(now).unwrap();
            let earliest = events.iter().map(|e| e.timestamp.millis()).min().unwrap();
            // A window that holds every event would be answered; others not.
            if query.range.from <= earliest && query.by.is_empty() && query.filters.is_empty() && query.stats.is_empty() {
                continue;
            }
            prop_assert!(engine.answer(&query, None).is_none(), "{:?}", text);
        }
        // Events before the retention's cutoff still held: the store decides.
        let all = QueryText::default().to_query(now).unwrap();
        let earliest = events.iter().map(|e| e.timestamp.millis()).min().unwrap();
        prop_assert!(engine.answer(&all, Some(earliest + 1)).is_none());
    }
}
