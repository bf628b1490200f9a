use super::*;
use crate::event::{Event, Timestamp};
use crate::event::{Limits, parse_event};
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

fn ev(kind: &str, ts: i64, values: serde_json::Value) -> Event {
    let doc = json!({"type": kind, "timestamp": ts, "values": values});
    parse_event(
        doc,
        &Limits::default(),
        Timestamp::from_millis(NOW).unwrap(),
    )
    .unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_millis(NOW).unwrap()
}

fn type_of<'a>(s: &'a Metrics, name: &str) -> &'a TypeMetrics {
    s.types.iter().find(|t| t.name == name).unwrap()
}

#[test]
fn all_time_aggregates_per_type_and_field() {
    let mut engine = Engine::default();
    engine.apply(
        &[
            ev("sales", NOW - 1000, json!({"amount": 100, "region": "EU"})),
            ev("sales", NOW - 500, json!({"amount": 300, "region": "US"})),
            ev("sales", NOW - 2000, json!({"amount": 200, "region": "EU"})),
            ev("users", NOW, json!({"active": 7})),
        ],
        now(),
    );
    let s = engine.query(&Query::default(), now());
    assert_eq!(s.total_events, 4);
    assert_eq!(
        s.events_by_type,
        BTreeMap::from([("sales".into(), 3), ("users".into(), 1)])
    );
    let amount = &type_of(&s, "sales").measures[0];
    assert_eq!(
        (
            amount.count,
            amount.sum,
            amount.min,
            amount.max,
            amount.mean
        ),
        (3, 600.0, 100.0, 300.0, 200.0)
    );
    assert_eq!(
        amount.last, 300.0,
        "last is the value with the latest timestamp"
    );
    let region = &type_of(&s, "sales").dimensions[0];
    assert_eq!(
        region.top,
        vec![("EU".to_string(), 2), ("US".to_string(), 1)]
    );
    assert_eq!(
        s.recent_values["sales"]["amount"],
        vec![100.0, 300.0, 200.0]
    );
}

#[test]
fn old_events_count_in_totals_but_not_in_windows() {
    let mut engine = Engine::default();
    engine.apply(
        &[ev("sales", NOW - 10 * 60_000, json!({"amount": 5}))],
        now(),
    );
    engine.apply(
        &[ev("sales", 1_600_000_000_000, json!({"amount": 1}))],
        now(),
    );
    engine.apply(&[ev("sales", NOW - 30_000, json!({"amount": 10}))], now());
    let all = engine.query(&Query::default(), now());
    assert_eq!(all.total_events, 3);
    let five_min = engine.query(
        &Query {
            window_ms: Some(5 * MINUTE),
            ..Query::default()
        },
        now(),
    );
    assert_eq!(five_min.total_events, 3, "totalEvents is all stored events");
    assert_eq!(five_min.window_events, Some(1));
    let sales = type_of(&five_min, "sales");
    assert_eq!(sales.count, 1);
    assert_eq!(sales.measures[0].sum, 10.0);
    let hour = engine.query(
        &Query {
            window_ms: Some(HOUR),
            ..Query::default()
        },
        now(),
    );
    assert_eq!(hour.window_events, Some(2));
    assert_eq!(type_of(&hour, "sales").measures[0].sum, 15.0);
}

#[test]
fn windows_slide_with_time() {
    let mut engine = Engine::default();
    engine.apply(&[ev("x", NOW, json!({"v": 1}))], now());
    let q = Query {
        window_ms: Some(5 * MINUTE),
        ..Query::default()
    };
    assert_eq!(engine.query(&q, now()).window_events, Some(1));
    let later = Timestamp::from_millis(NOW + 6 * MINUTE).unwrap();
    assert_eq!(engine.query(&q, later).window_events, Some(0));
    assert_eq!(engine.query(&Query::default(), later).total_events, 1);
}

#[test]
fn rate_is_events_per_second_over_the_last_minute() {
    let mut engine = Engine::default();
    let events: Vec<_> = (0..120)
        .map(|i| ev("x", NOW - i * 500, json!({})))
        .collect();
    engine.apply(&events, now());
    let s = engine.query(&Query::default(), now());
    assert!(
        (type_of(&s, "x").rate - 2.0).abs() < 0.05,
        "rate {}",
        type_of(&s, "x").rate
    );
}

#[test]
fn groups_by_a_dimension_with_measures() {
    let mut engine = Engine::default();
    engine.apply(
        &[
            ev("sales", NOW, json!({"amount": 10, "region": "EU"})),
            ev("sales", NOW, json!({"amount": 30, "region": "EU"})),
            ev("sales", NOW, json!({"amount": 5, "region": "US"})),
        ],
        now(),
    );
    for window_ms in [None, Some(5 * MINUTE), Some(6 * HOUR)] {
        let q = Query {
            kind: Some(EventType::parse("sales", &Limits::default()).unwrap()),
            by: Some("region".into()),
            window_ms,
            ..Query::default()
        };
        let g = engine.query(&q, now()).groups.unwrap();
        assert_eq!(g.groups.len(), 2, "{window_ms:?}");
        assert_eq!((g.groups[0].value.as_str(), g.groups[0].count), ("EU", 2));
        assert_eq!(g.groups[0].measures["amount"].sum(), 40.0);
        assert_eq!(g.groups[1].measures["amount"].mean(), Some(5.0));
    }
}

#[test]
fn series_are_dense_and_bucketed_by_step() {
    let mut engine = Engine::default();
    engine.apply(
        &[
            ev("x", NOW - 1_000, json!({"v": 2})),
            ev("x", NOW - 1_000, json!({"v": 4})),
            ev("x", NOW - 3_000, json!({"v": 1})),
        ],
        now(),
    );
    let q = Query {
        window_ms: Some(60_000),
        step_ms: Some(1_000),
        ..Query::default()
    };
    let s = engine.query(&q, now());
    let points = &s.time_series.points["x"];
    assert_eq!(points.len(), 60);
    assert_eq!(s.time_series.step_ms, 1_000);
    let total: u64 = points.iter().map(|p| p.count).sum();
    assert_eq!(total, 3);
    let p = points.iter().find(|p| p.ts_ms == NOW - 1_000).unwrap();
    assert_eq!((p.count, p.measures["v"].mean()), (2, Some(3.0)));

    let q = Query {
        kind: Some(EventType::parse("x", &Limits::default()).unwrap()),
        field: Some("v".into()),
        window_ms: Some(HOUR),
        ..Query::default()
    };
    let fs = engine.query(&q, now()).field_series.unwrap();
    assert_eq!(fs.step_ms, MINUTE);
    assert_eq!(fs.points.iter().map(|(_, b)| b.count).sum::<u64>(), 3);
}

#[test]
fn memory_is_bounded_by_the_config() {
    let config = EngineConfig {
        max_types: 3,
        max_fields: 2,
        top_values: 5,
        slot_top_values: 2,
        recent_values: 4,
        retention_ms: None,
    };
    let mut engine = Engine::new(config);
    let events: Vec<_> = (0..10_000)
        .map(|i| {
            ev(
                &format!("t{}", i % 7),
                NOW,
                json!({"a": i, "b": 1, "c": 2, "dim": format!("v{i}")}),
            )
        })
        .collect();
    engine.apply(&events, now());
    let s = engine.query(
        &Query {
            top: 100,
            ..Query::default()
        },
        now(),
    );
    assert_eq!(s.total_events, 10_000);
    assert_eq!(s.types.len(), 3);
    assert_eq!(
        s.untracked_events,
        10_000 - s.events_by_type.values().sum::<u64>()
    );
    for t in &s.types {
        assert_eq!(t.measures.len() + t.dimensions.len(), 2);
        assert_eq!(s.recent_values[&t.name]["a"].len(), 4);
    }
}

#[test]
fn steps_are_readable_and_bounded() {
    assert_eq!(choose_step(5 * MINUTE, None), 2 * SECOND);
    assert_eq!(choose_step(15 * MINUTE, None), 5 * SECOND);
    assert_eq!(choose_step(HOUR, None), MINUTE);
    assert_eq!(choose_step(24 * HOUR, None), 10 * MINUTE);
    assert_eq!(
        choose_step(24 * HOUR, Some(SECOND)),
        2 * MINUTE,
        "at most ~1000 points"
    );
    assert_eq!(choose_step(HOUR, Some(90 * SECOND)), 2 * MINUTE);
}

#[test]
fn committed_batches_apply_once() {
    let mut engine = Engine::default();
    let batch: Vec<_> = (0..5).map(|i| ev("x", NOW, json!({"v": i}))).collect();
    engine.apply_committed(1, &batch, now());
    engine.apply_committed(1, &batch, now());
    engine.apply_committed(4, &batch[..4], now());
    assert_eq!(
        engine.total(),
        7,
        "seqs 1..=5 once, then 6 and 7 from the overlapping batch"
    );
    assert_eq!(engine.last_seq(), 7);
}

#[test]
fn a_saved_state_restores_every_answer() {
    let mut engine = Engine::default();
    let events: Vec<_> = (0..500)
        .map(|i| {
            ev(
                ["a", "b"][i % 2],
                NOW - (i as i64) * 7_000,
                json!({"v": i, "d": format!("x{}", i % 13)}),
            )
        })
        .collect();
    engine.apply_committed(1, &events, now());
    let restored = Engine::load_state(&engine.save_state(), EngineConfig::default()).unwrap();
    assert_eq!(restored.last_seq(), 500);
    for query in [
        Query::default(),
        Query {
            window_ms: Some(HOUR),
            ..Query::default()
        },
        Query {
            kind: EventType::parse("a", &Limits::default()).ok(),
            by: Some("d".into()),
            ..Query::default()
        },
    ] {
        assert_eq!(
            format!("{:?}", restored.query(&query, now())),
            format!("{:?}", engine.query(&query, now()))
        );
    }
    assert!(Engine::load_state(b"garbage", EngineConfig::default()).is_err());

    // A damaged file is refused whole: no byte of it is read back as a count.
    let saved = engine.save_state();
    for at in 8..saved.len() {
        let mut damaged = saved.clone();
        damaged[at] ^= 0x10;
        assert!(Engine::load_state(&damaged, EngineConfig::default()).is_err());
    }
}

/// A measure's count, sum (to 6 decimals), min, max and p99.
type MeasureNumbers = (String, u64, f64, f64, f64, Option<f64>);

/// The all-time numbers of an answer, per type and measure, that merging
/// cannot blur: counts, sums, min, max and quantiles.
fn all_time_numbers(s: &Metrics) -> Vec<(String, u64, Vec<MeasureNumbers>)> {
    s.types
        .iter()
        .map(|t| {
            let measures = t
                .measures
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        m.count,
                        (m.sum * 1e6).round() / 1e6,
                        m.min,
                        m.max,
                        m.p99,
                    )
                })
                .collect();
            (t.name.clone(), t.count, measures)
        })
        .collect()
}

/// What a store holding `stored` (sequence numbers from 1) gives to
/// [`super::retention::ReadSince`].
fn read_since(stored: &[Event], after: u64, sink: &mut dyn FnMut(u64, &[Event])) {
    for (i, e) in stored.iter().enumerate().skip(after as usize) {
        sink(1 + i as u64, std::slice::from_ref(e));
    }
}

#[test]
fn retention_forgets_exactly_what_it_deletes_and_reads_little_again() {
    const RETENTION: i64 = 2 * HOUR;
    let config = EngineConfig {
        retention_ms: Some(RETENTION),
        ..EngineConfig::default()
    };
    // 20,000 events over the retention, as a store would hold them (seq order).
    let mut stored: Vec<Event> = (0..20_000i64)
        .map(|i| {
            let ts = NOW - RETENTION + i * (RETENTION / 20_000);
            let kind = ["sales", "users"][(i % 2) as usize];
            ev(
                kind,
                ts,
                json!({"amount": (i * 37) % 1000, "region": format!("r{}", i % 7)}),
            )
        })
        .collect();
    let mut engine = Engine::new(config);
    for (i, chunk) in stored.chunks(500).enumerate() {
        engine.apply_committed(1 + (i * 500) as u64, chunk, now());
    }
    // Three passes, as time goes on: each cutoff a little later.
    let mut reread = 0usize;
    for step in 1..=3 {
        let cutoff = NOW - RETENTION + step * RETENTION / 50;
        let deleted = stored
            .iter()
            .filter(|e| {
                let ts = e.timestamp.millis();
                ts < cutoff && ts >= cutoff - RETENTION / 50
            })
            .count() as u64;
        let at = Timestamp::from_millis(cutoff).unwrap();
        let late = |kind: &str, amount: i64| ev(kind, cutoff + 10, json!({"amount": amount}));
        // Types first seen while the pass reads: the engine tracks them from
        // their first event, and so must what the pass puts back.
        let (refunds, returns) = (format!("refunds{step}"), format!("returns{step}"));
        // The last event applied before the plan is in the range read again:
        // taken by the plan's read, not again by the catch-up.
        stored.push(late("sales", 4));
        engine.apply_committed(stored.len() as u64, &[late("sales", 4)], now());
        let mut plan = engine.forget_plan(at);
        assert!(plan.is_some(), "pass {step} reads part of an epoch again");
        if let Some(plan) = &mut plan {
            // What the store still holds in that range.
            for (i, e) in stored.iter().enumerate() {
                let ts = e.timestamp.millis();
                if ts >= cutoff && plan.range.contains(ts) {
                    reread += 1;
                    plan.take(1 + i as u64, std::slice::from_ref(e));
                }
            }
        }
        // Late events committed while the pass reads, in the range read
        // again, each counted once: one the engine applied before the
        // catch-up made without holding it, one applied after that, and one
        // stored but applied only after the pass (a cluster node's store
        // can be ahead of its feed).
        stored.push(late(&refunds, 5));
        engine.apply_committed(stored.len() as u64, &[late(&refunds, 5)], now());
        if let Some(plan) = &mut plan {
            plan.catch_up(engine.applied(), &mut |after, sink| {
                read_since(&stored, after, sink)
            });
        }
        stored.push(late(&returns, 6));
        engine.apply_committed(stored.len() as u64, &[late(&returns, 6)], now());
        stored.push(late("sales", 7));
        engine.forget_before(at, Some(deleted), plan, &mut |after, sink| {
            read_since(&stored, after, sink)
        });
        engine.apply_committed(stored.len() as u64, &[late("sales", 7)], now());
        let kept: Vec<Event> = stored
            .iter()
            .filter(|e| e.timestamp.millis() >= cutoff)
            .cloned()
            .collect();
        let mut fresh = Engine::new(config);
        fresh.apply(&kept, now());
        let (got, want) = (
            engine.query(&Query::default(), now()),
            fresh.query(&Query::default(), now()),
        );
        assert_eq!(got.total_events, kept.len() as u64, "pass {step}");
        assert_eq!(
            all_time_numbers(&got),
            all_time_numbers(&fresh.query(&Query::default(), now())),
            "pass {step}"
        );
        assert_eq!(got.events_by_type, want.events_by_type);
        // A window reaching past the retention is everything kept.
        let day = engine.query(
            &Query {
                window_ms: Some(3 * HOUR),
                ..Query::default()
            },
            now(),
        );
        assert_eq!(day.window_events, Some(kept.len() as u64));
    }
    // The first pass read the rest of the oldest epoch (1/16 of what is
    // kept), the others only the part the cutoff cut (1/256): never all.
    assert!(
        reread < stored.len() / 8,
        "read {reread} events again for {} stored",
        stored.len()
    );
}

#[test]
fn sums_do_not_depend_on_the_order_of_adding_and_merging() {
    use super::stats::Basic;
    let values: Vec<f64> = (0..10_000)
        .map(|i| (i % 97) as f64 * 0.1 + 1e-3 * (i % 7) as f64)
        .collect();
    let mut forward = Basic::default();
    values.iter().for_each(|x| forward.add(*x));
    let mut backward = Basic::default();
    values.iter().rev().for_each(|x| backward.add(*x));
    // In uneven parts, merged.
    let mut merged = Basic::default();
    for part in values.chunks(333) {
        let mut b = Basic::default();
        part.iter().for_each(|x| b.add(*x));
        merged.merge(&b);
    }
    assert_eq!(forward.sum(), backward.sum());
    assert_eq!(forward.sum(), merged.sum());
    // 0.1 ten times reads as 1.
    let mut tenths = Basic::default();
    (0..10).for_each(|_| tenths.add(0.1));
    assert_eq!(tenths.sum(), 1.0);
}
