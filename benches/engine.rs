//! `cargo bench --bench engine`: the engine alone, no HTTP, no storage.
//! Prints nanoseconds per event for `apply` and microseconds per `query`,
//! on the same synthetic events `rta generate` makes.

use std::time::Instant;

use rta::client::synth::{Kind, Synth};
use rta::engine::{Engine, Query};
use rta::event::{Limits, Timestamp, parse_event};

fn main() {
    let now = Timestamp::now();
    let mut synth = Synth::new(
        Some(1),
        "bench".into(),
        vec![Kind::Sales, Kind::Users, Kind::Pageview],
    );
    let events: Vec<_> = (0..200_000)
        .map(|_| {
            parse_event(synth.event(now.to_datetime()), &Limits::default(), now)
                .expect("generated events are valid")
        })
        .collect();

    let mut engine = Engine::default();
    let started = Instant::now();
    for (i, chunk) in events.chunks(1000).enumerate() {
        engine.apply_committed(1 + i as u64 * 1000, chunk, now);
    }
    let per_event = started.elapsed().as_nanos() as f64 / events.len() as f64;
    println!(
        "apply: {per_event:.0} ns/event ({:.0} events/s on one core)",
        1e9 / per_event
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
