//! Synthetic events that look like a small business: varied enough to make
//! every chart interesting, reproducible with a seed.

use std::f64::consts::PI;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The kinds of events `rta generate` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Orders: amount, units, region, channel.
    Sales,
    /// Activity: active, new, returning users per region.
    Users,
    /// Web requests: latency_ms (long-tailed), bytes, path, device.
    Pageview,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sales => "sales",
            Kind::Users => "users",
            Kind::Pageview => "pageview",
        }
    }

    /// The value fields of this kind, for CSV headers.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Sales => &["amount", "units", "region", "channel"],
            Kind::Users => &["active", "new", "returning", "region"],
            Kind::Pageview => &["latency_ms", "bytes", "path", "device"],
        }
    }
}

const REGIONS: [(&str, f64); 4] = [
    ("North America", 0.4),
    ("Europe", 0.3),
    ("Asia Pacific", 0.2),
    ("Latin America", 0.1),
];
const CHANNELS: [(&str, f64); 4] = [
    ("web", 0.5),
    ("mobile", 0.3),
    ("store", 0.15),
    ("partner", 0.05),
];
const PATHS: [(&str, f64); 6] = [
    ("/", 0.3),
    ("/pricing", 0.15),
    ("/docs", 0.25),
    ("/signup", 0.1),
    ("/checkout", 0.1),
    ("/blog", 0.1),
];
const DEVICES: [(&str, f64); 3] = [("desktop", 0.55), ("mobile", 0.4), ("tablet", 0.05)];

pub struct Synth {
    rng: StdRng,
    source: String,
    kinds: Vec<Kind>,
}

impl Synth {
    pub fn new(seed: Option<u64>, source: String, kinds: Vec<Kind>) -> Self {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self { rng, source, kinds }
    }

    /// One event at `ts`, of a kind chosen at random among the selected ones.
    pub fn event(&mut self, ts: DateTime<Utc>) -> Value {
        let kind = self.kinds[self.rng.random_range(0..self.kinds.len())];
        // Business follows the sun: busiest mid-afternoon UTC.
        let hour = f64::from(ts.hour()) + f64::from(ts.minute()) / 60.0;
        let daily = 1.0 + 0.35 * (2.0 * PI * (hour - 9.0) / 24.0).sin();
        let values = match kind {
            Kind::Sales => {
                let amount = round2(self.log_normal(80.0 * daily, 0.6));
                let units = (1.0 + amount / 40.0 + self.normal() * 1.5)
                    .round()
                    .clamp(1.0, 50.0);
                json!({"amount": amount, "units": units as u32,
                       "region": self.pick(&REGIONS), "channel": self.pick(&CHANNELS)})
            }
            Kind::Users => {
                let active = (900.0 * daily + self.normal() * 40.0).round().max(0.0);
                let new = (active * 0.06 + self.normal() * 5.0)
                    .round()
                    .clamp(0.0, active);
                json!({"active": active as u32, "new": new as u32, "returning": (active - new) as u32,
                       "region": self.pick(&REGIONS)})
            }
            Kind::Pageview => {
                let roll: f64 = self.rng.random();
                let latency = if roll < 0.85 {
                    self.log_normal(60.0, 0.5)
                } else if roll < 0.99 {
                    self.log_normal(250.0, 0.4)
                } else {
                    self.log_normal(1500.0, 0.5)
                };
                json!({"latency_ms": (latency * 10.0).round() / 10.0,
                       "bytes": self.log_normal(20_000.0, 0.9).round() as u64,
                       "path": self.pick(&PATHS), "device": self.pick(&DEVICES)})
            }
        };
        json!({
            "timestamp": ts.to_rfc3339_opts(SecondsFormat::Millis, true),
            "source": self.source,
            "type": kind.name(),
            "values": values,
        })
    }

    fn normal(&mut self) -> f64 {
        // Box-Muller: two uniforms make one standard normal.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    fn pick(&mut self, weighted: &[(&'static str, f64)]) -> &'static str {
        let mut roll: f64 = self.rng.random::<f64>() * weighted.iter().map(|(_, w)| w).sum::<f64>();
        for (value, weight) in weighted {
            if roll < *weight {
                return value;
            }
            roll -= weight;
        }
        weighted[weighted.len() - 1].0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_runs_repeat_and_every_kind_appears() {
        let kinds = vec![Kind::Sales, Kind::Users, Kind::Pageview];
        let ts = DateTime::from_timestamp(1_680_350_400, 0).unwrap();
        let mut a = Synth::new(Some(7), "t".into(), kinds.clone());
        let mut b = Synth::new(Some(7), "t".into(), kinds);
        let events: Vec<_> = (0..300).map(|_| a.event(ts)).collect();
        assert_eq!(events, (0..300).map(|_| b.event(ts)).collect::<Vec<_>>());
        for kind in ["sales", "users", "pageview"] {
            assert!(events.iter().any(|e| e["type"] == kind), "{kind} appears");
        }
        for e in &events {
            let kind = [Kind::Sales, Kind::Users, Kind::Pageview]
                .into_iter()
                .find(|k| e["type"] == k.name())
                .unwrap();
            let fields: Vec<_> = e["values"].as_object().unwrap().keys().cloned().collect();
            let mut expected: Vec<_> = kind.fields().iter().map(|f| f.to_string()).collect();
            expected.sort();
            assert_eq!(fields, expected);
        }
    }
}
