use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::event::{Event, Limits, Timestamp, parse_event};
use crate::query::exec::{Answer, Executor, StatValue};
use crate::query::parse::QueryText;
use crate::query::{Query, TimeRange};

/// An hour boundary, so hours are easy to read in failures.
const BASE: i64 = 1_700_002_800_000;

fn event(kind: &str, ts: i64, source: &str, values: serde_json::Value) -> Event {
    let doc = json!({"type": kind, "timestamp": ts, "source": source, "values": values});
    parse_event(
        doc,
        &Limits::default(),
        Timestamp::from_millis(BASE + 10 * HOUR_MS).unwrap(),
    )
    .unwrap()
}

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        prop::sample::select(vec!["a", "b"]),
        0..5 * HOUR_MS,
        prop::sample::select(vec!["s1", "s2"]),
        prop::option::of(-1000i32..1000),
        prop::option::of(0u32..100),
        prop::option::of(prop::sample::select(vec!["x", "y", "z", "w"])),
        prop::option::of(prop::sample::select(vec!["p", "q"])),
        // Beyond the key's limit within an hour: leaves the key.
        prop::option::of(0u32..60),
        // A name that is a number in some events and a text in others.
        prop::option::of(prop_oneof![
            Just(json!(5)),
            Just(json!("5")),
            Just(json!("x"))
        ]),
    )
        .prop_map(|(kind, offset, source, m1, m2, dim, zone, user, mixed)| {
            let mut values = serde_json::Map::new();
            if let Some(m) = m1 {
                // Multiples of 1/4: sums are exact in any order.
                values.insert("m1".into(), json!(f64::from(m) / 4.0));
            }
            if let Some(m) = m2 {
                values.insert("m2".into(), json!(m));
            }
            if let Some(d) = dim {
                values.insert("dim".into(), json!(d));
            }
            if let Some(z) = zone {
                values.insert("zone".into(), json!(z));
            }
            if let Some(u) = user {
                values.insert("user".into(), json!(format!("u{u}")));
            }
            if let Some(m) = mixed {
                values.insert("mixed".into(), m);
            }
            event(kind, BASE + offset, source, values.into())
        })
}

fn query_strategy() -> impl Strategy<Value = Query> {
    (
        prop::collection::vec(
            prop::sample::select(vec![
                "dim=x",
                "dim!=y",
                "dim=x,z",
                "dim!=x,w",
                "zone~p",
                "user=u3",
                "user!=u4",
                "source=s1",
                "type=a",
                "type!=b",
                "m1>0",
                "m2<=50",
                "mixed=5",
                "mixed!=x",
            ]),
            0..3,
        ),
        prop::sample::subsequence(vec!["dim", "zone", "source", "type", "user", "mixed"], 0..3),
        prop::option::of(prop::sample::select(vec![
            "time:hour",
            "time:minute",
            "time:day",
        ])),
        prop::collection::vec(
            prop::sample::select(vec![
                "count:m1",
                "sum:m1",
                "min:m2",
                "max:m2",
                "mean:m1",
                "last:m1",
                "last:m2",
                "p50:m1",
                "p99:m2",
                "distinct:user",
                "distinct:dim",
                "distinct:mixed",
                "top:dim",
            ]),
            0..4,
        ),
        -HOUR_MS..5 * HOUR_MS,
        0..6 * HOUR_MS,
        any::<bool>(),
    )
        .prop_map(|(filters, mut by, bucket, stats, from, span, defaults)| {
            by.truncate(if bucket.is_some() { 2 } else { 3 });
            let at = |ms: i64| Timestamp::from_millis(BASE + ms).unwrap().to_rfc3339();
            let text = QueryText {
                from: Some(at(from)),
                to: Some(at(from + span)),
                filters: filters.into_iter().map(String::from).collect(),
                by: by.into_iter().chain(bucket).map(String::from).collect(),
                stats: stats.into_iter().map(String::from).collect(),
                defaults: Some(defaults),
                ..QueryText::default()
            };
            text.to_query(Timestamp::from_millis(BASE + 10 * HOUR_MS).unwrap())
                .expect("a valid query")
        })
}

/// Summaries of `events` (numbered from 1) up to `upto`, built in two
/// halves merged, each block encoded as the store keeps it.
type Stored = Parts;

fn decode(stored: &Stored) -> HourBlock {
    HourBlock::decode(&stored[0].1, &stored[1..]).expect("decodes")
}

fn summarise(events: &[Event], upto: usize, split: usize) -> Vec<(i64, String, Stored)> {
    let mut blocks: Vec<(i64, String, HourBlock)> = Vec::new();
    let rolled = &events[..upto.min(events.len())];
    let split = split.min(rolled.len());
    for half in [&rolled[..split], &rolled[split..]] {
        let mut built: Vec<(i64, String, HourBlock)> = Vec::new();
        for (i, e) in half.iter().enumerate() {
            let seq = (half.as_ptr() as usize - events.as_ptr() as usize)
                / std::mem::size_of::<Event>()
                + i
                + 1;
            let (hour, kind) = (hour_of(e.timestamp.millis()), e.kind.to_string());
            let at = match built.iter().position(|(h, k, _)| *h == hour && *k == kind) {
                Some(at) => at,
                None => {
                    built.push((hour, kind, HourBlock::default()));
                    built.len() - 1
                }
            };
            built[at].2.add(seq as u64, e);
        }
        for (hour, kind, block) in built {
            // Through the stored form, as the store merges it.
            let block = decode(&block.encode());
            match blocks.iter_mut().find(|(h, k, _)| *h == hour && *k == kind) {
                Some((_, _, mine)) => mine.merge(block),
                None => blocks.push((hour, kind, block)),
            }
        }
    }
    blocks
        .into_iter()
        .map(|(h, k, b)| (h, k, b.encode()))
        .collect()
}

/// The query answered from the summaries it can take, and the other
/// events one at a time; and how many hours came from summaries.
fn answer_with_summaries(
    query: &Query,
    events: &[Event],
    summaries: &[(i64, String, Stored)],
    upto: u64,
) -> (Answer, usize) {
    let mut exec = Executor::new(query);
    let mut covered = Covered::new(upto);
    let (first, end) = whole_hours(query.range);
    for (hour, kind, bytes) in summaries {
        if *hour < first || *hour >= end {
            continue;
        }
        let block = BlockView::decode(&bytes[0].1).expect("decodes");
        if exec.can_take(&block) {
            let parts: Vec<(String, Vec<u8>)> = exec
                .parts_needed(&block)
                .into_iter()
                .filter_map(|name| bytes.iter().find(|(n, _)| *n == name).cloned())
                .collect();
            exec.take_block(&block, *hour, kind, &parts).expect("takes");
            covered.add(*hour, kind);
        }
    }
    for (i, e) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        if !covered.covers(seq, e.kind.as_str(), e.timestamp.millis()) {
            exec.add_one(seq, e);
        }
    }
    (exec.finish().expect("answers"), covered.len())
}

fn same_stat(a: &StatValue, b: &StatValue) -> bool {
    match (a, b) {
        (StatValue::Number(Some(x)), StatValue::Number(Some(y))) => {
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (a, b) => a == b,
    }
}

fn assert_same(a: &Answer, b: &Answer) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.matched, b.matched);
    prop_assert_eq!(&a.keys, &b.keys);
    prop_assert_eq!(&a.stats, &b.stats);
    let rows = |x: &Answer| {
        x.rows
            .iter()
            .chain(x.others.iter())
            .cloned()
            .collect::<Vec<_>>()
    };
    let (mine, theirs) = (rows(a), rows(b));
    prop_assert_eq!(mine.len(), theirs.len());
    for (x, y) in mine.iter().zip(&theirs) {
        prop_assert_eq!(&x.key, &y.key);
        prop_assert_eq!(x.events, y.events);
        prop_assert_eq!(x.span, y.span);
        for (column, (p, q)) in a.stats.iter().zip(x.stats.iter().zip(&y.stats)) {
            prop_assert!(
                same_stat(p, q),
                "{}: summaries {:?}, events {:?}",
                column.column(),
                p,
                q
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Hours taken from summaries and hours read event by event give the
    /// same answer, whatever the query, the range's edges, how the
    /// summaries were built and how far they reach.
    #[test]
    fn summaries_and_events_answer_alike(
        events in prop::collection::vec(event_strategy(), 0..400),
        query in query_strategy(),
        upto in 0usize..450,
        split in 0usize..400,
    ) {
        let summaries = summarise(&events, upto, split);
        let (taken, _) = answer_with_summaries(&query, &events, &summaries, upto.min(events.len()) as u64);
        let mut exec = Executor::new(&query);
        for (i, e) in events.iter().enumerate() {
            exec.add_one(i as u64 + 1, e);
        }
        assert_same(&taken, &exec.finish().unwrap())?;
    }
}

#[test]
fn few_valued_fields_key_the_cells_and_queries_on_them_take_whole_hours() {
    let events: Vec<Event> = (0..3000)
        .map(|i| {
            let region = ["eu", "us", "apac"][(i % 3) as usize];
            let device = ["mobile", "desktop"][(i % 5 % 2) as usize];
            event(
                if i % 2 == 0 { "pageview" } else { "sale" },
                BASE + i * 5_000,
                "web",
                json!({
                    "region": region,
                    "device": device,
                    "user": format!("u{}", i % 700),
                    "latency_ms": (i % 97) as f64,
                }),
            )
        })
        .collect();
    let summaries = summarise(&events, events.len(), 1000);
    let block = decode(&summaries[0].2);
    // Source, region, device in the key; user (hundreds of values) out.
    assert_eq!(block.keyed.len(), 3, "{block:?}");
    assert_eq!(block.unkeyed, vec![Text::from("user")]);
    assert!(block.cells.len() <= 6);
    let now = Timestamp::from_millis(BASE + 10 * HOUR_MS).unwrap();
    let to_query = |filters: &[&str], by: &[&str], stats: &[&str]| {
        QueryText::all_time(filters, by, stats, now)
    };
    // 3000 events at 5 s: hours 0..4, the last one partial but whole in range.
    for (q, hours) in [
        (
            to_query(&["device=mobile"], &["region"], &["p99:latency_ms"]),
            10,
        ),
        (to_query(&[], &["time:hour"], &["mean:latency_ms"]), 10),
        (to_query(&[], &[], &["distinct:user"]), 10),
        (to_query(&["user=u1"], &[], &[]), 0),
        (to_query(&[], &["user"], &[]), 0),
        (to_query(&[], &["time:minute"], &[]), 0),
        (to_query(&[], &[], &["top:region"]), 0),
    ] {
        let (taken, used) = answer_with_summaries(&q, &events, &summaries, events.len() as u64);
        assert_eq!(used, hours, "{q:?}");
        let mut exec = Executor::new(&q);
        for (i, e) in events.iter().enumerate() {
            exec.add_one(i as u64 + 1, e);
        }
        assert_same(&taken, &exec.finish().unwrap()).unwrap();
    }
}

#[test]
fn a_crowded_block_gives_up_its_sketches_then_the_hour() {
    let mut block = HourBlock::default();
    // Every event a cell of its own until the cells are too many, and
    // measures with wide sketches.
    for i in 0..20_000i64 {
        let mut values = serde_json::Map::new();
        values.insert(format!("k{}", i % 9), json!(format!("v{}", i % 31)));
        values.insert("id".into(), json!(format!("id{i}")));
        for m in 0..40 {
            values.insert(format!("m{m}"), json!((i * 7919 + m) as f64 * 1.37));
        }
        block.add(i as u64 + 1, &event("x", BASE + i, "s", values.into()));
    }
    assert!(block.cells.len() <= MAX_BLOCK_CELLS);
    assert!(block.is_overflowed() || block.no_distinct, "{block:?}");
    // An overflowed hour stays so, whatever is merged into it.
    let mut gone = HourBlock::default();
    gone.overflow();
    let mut other = HourBlock::default();
    other.add(1, &event("x", BASE, "s", json!({"a": 1})));
    other.merge(gone.clone());
    assert!(other.is_overflowed());
    let view_bytes = other.encode();
    let view = BlockView::decode(&view_bytes[0].1).unwrap();
    let q = QueryText::default()
        .to_query(Timestamp::from_millis(BASE).unwrap())
        .unwrap();
    assert!(!Executor::new(&q).can_take(&view));
}

#[test]
fn covered_segments_and_events() {
    let mut covered = Covered::new(100);
    covered.add(BASE, "a");
    covered.add(BASE + HOUR_MS, "a");
    let range = TimeRange {
        from: BASE - 10,
        to: BASE + 2 * HOUR_MS + 10,
    };
    let inside = (BASE + 5, BASE + HOUR_MS + 5);
    assert!(covered.covers_segment(range, 100, inside, ["a"].into_iter()));
    assert!(!covered.covers_segment(range, 101, inside, ["a"].into_iter()));
    assert!(!covered.covers_segment(range, 100, inside, ["a", "b"].into_iter()));
    // Hours outside the range need nothing.
    let narrow = TimeRange {
        from: BASE,
        to: BASE + HOUR_MS,
    };
    assert!(covered.covers_segment(
        narrow,
        50,
        (BASE - 5, BASE + 3 * HOUR_MS),
        ["a"].into_iter()
    ));
    assert!(covered.covers(100, "a", BASE + 1));
    assert!(!covered.covers(101, "a", BASE + 1));
    assert!(!covered.covers(1, "b", BASE + 1));
    assert_eq!(whole_hours(range), (BASE, BASE + 2 * HOUR_MS));
    assert!(whole_hours(TimeRange::ALL).0 <= BASE);
    assert!(BlockView::decode(b"RU1\xff\xff").is_err());
    assert!(HourBlock::decode(b"nope", &[]).is_err());
}
