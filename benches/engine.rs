//! `cargo bench --bench engine`: the engine alone, no HTTP, no storage.
//! Prints nanoseconds per event for `apply` and microseconds per `query`,
//! on the same synthetic events `rta generate` makes.

use std::time::Instant;

use rta::client::synth::{Kind, Synth};
use rta::engine::{Engine, Query};
use rta::event::{BodyFormat, Limits, Timestamp, parse_body};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let now = Timestamp::now();
    let mut synth = Synth::new(
        Some(1),
        "bench".into(),
        vec![Kind::Sales, Kind::Users, Kind::Pageview],
    );
    // Parsed as the server parses them: 1,000-line NDJSON bodies, so the
    // events of a body share their repeated strings.
    let bodies: Vec<String> = (0..200)
        .map(|_| {
            (0..1000)
                .map(|_| format!("{}\n", synth.event(now.to_datetime())))
                .collect()
        })
        .collect();
    let parse_all = || {
        bodies
            .iter()
            .flat_map(|body| {
                parse_body(body.as_bytes(), BodyFormat::Ndjson, &Limits::default(), now)
                    .expect("generated events are valid")
                    .events
            })
            .collect::<Vec<_>>()
    };
    let mut parse_best = f64::MAX;
    let mut events = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let parsed = parse_all();
        let per_event = started.elapsed().as_nanos() as f64 / parsed.len() as f64;
        parse_best = parse_best.min(per_event);
        events = parsed;
    }
    assert_eq!(events.len(), 200_000, "every generated event is valid");
    println!(
        "parse: {parse_best:.0} ns/event ({:.0} events/s on one core; 1,000-line NDJSON bodies, best of 5)",
        1e9 / parse_best
    );

    // Best of five fresh engines: this machine's speed drifts.
    let fill = || {
        let mut engine = Engine::default();
        let started = Instant::now();
        for (i, chunk) in events.chunks(1000).enumerate() {
            engine.apply_committed(1 + i as u64 * 1000, chunk, now);
        }
        (
            engine,
            started.elapsed().as_nanos() as f64 / events.len() as f64,
        )
    };
    let (mut engine, mut best) = fill();
    for _ in 1..5 {
        let (filled, per_event) = fill();
        if per_event < best {
            (engine, best) = (filled, per_event);
        }
    }
    println!(
        "apply: {best:.0} ns/event ({:.0} events/s on one core; best of 5)",
        1e9 / best
    );

    for (name, query) in [
        ("all time", Query::default()),
        (
            "window 5m",
            Query {
                window_ms: Some(300_000),
                ..Query::default()
            },
        ),
        (
            "window 24h",
            Query {
                window_ms: Some(86_400_000),
                ..Query::default()
            },
        ),
    ] {
        let runs = 200;
        let started = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(engine.query(&query, now));
        }
        println!(
            "query {name}: {:.0} us",
            started.elapsed().as_micros() as f64 / runs as f64
        );
    }
}
