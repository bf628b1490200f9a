//! The streaming engine: live aggregates over committed events.
//!
//! Generic over event types and fields: everything is discovered from the
//! data. All-time aggregates per type; time series in two rings (1 s slots
//! for 15 minutes, 1 min slots for 24 hours); windowed summaries with
//! quantile sketches and top values in minute slots (last hour) and hour
//! slots (last day). Memory is bounded by [`EngineConfig`], never by the
//! number of events or distinct values.
//!
//! Pure: no I/O, no clock (callers pass `now`), no locking.
//!
//! The write path is `apply.rs`, the read path `query.rs`, the answer's
//! types `answer.rs`; `answer_query.rs` answers the query model from the
//! all-time aggregates, `overview.rs` builds the same answer from chosen
//! events, `retention.rs` forgets what retention deletes.

mod answer;
mod answer_query;
mod apply;
pub mod overview;
mod query;
pub mod retention;
mod ring;
pub mod stats;
pub use answer::{
    DimensionMetrics, FieldSeries, Group, Groups, MeasureMetrics, Metrics, Query, SeriesPointOut,
    TimeSeries, TypeMetrics,
};
pub use query::choose_step;
pub use stats::Basic;
pub mod topk;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ring::Ring;
use stats::{Names, SummaryLimits, TypeSummary};

use serde::{Deserialize, Serialize};

use crate::event::EventType;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// The longest window a query may ask for.
pub const MAX_WINDOW_MS: i64 = 24 * HOUR;

/// Bounds on what the engine tracks.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Distinct event types tracked; events of further types count only in the total.
    pub max_types: usize,
    /// Fields (measures + dimensions) tracked per type.
    pub max_fields: usize,
    /// Distinct values tracked per dimension over all time.
    pub top_values: usize,
    /// Distinct values tracked per dimension in each time slot.
    pub slot_top_values: usize,
    /// Latest values kept per measure for `recentValues`.
    pub recent_values: usize,
    /// The server's retention (ms): all-time aggregates then forget what
    /// it deletes (see [`retention`]).
    pub retention_ms: Option<i64>,
}

/// Marks a saved state of this engine's format; bump it when the layout changes.
/// A CRC-32 of the encoded state follows it, so a damaged file is refused
/// (and the engine rebuilt from the store), never read back as numbers.
const STATE_MAGIC: &[u8; 8] = b"rta-eng5";

impl EngineConfig {
    fn all_time_limits(&self) -> SummaryLimits {
        SummaryLimits {
            max_fields: self.max_fields,
            top_values: self.top_values,
        }
    }

    fn slot_limits(&self) -> SummaryLimits {
        SummaryLimits {
            max_fields: self.max_fields,
            top_values: self.slot_top_values,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_types: 100,
            max_fields: 64,
            top_values: 100,
            slot_top_values: 32,
            recent_values: 20,
            retention_ms: None,
        }
    }
}

/// One time-series slot: per type the count and per measure the basics.
type SeriesSlot = HashMap<EventType, SeriesPoint>;

/// Maps keyed by bounded sets (types, tracked values): a fast hash, seeded per process.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SeriesPoint {
    count: u64,
    measures: Vec<(Arc<str>, Basic)>,
}

impl SeriesPoint {
    fn add<E: crate::event::EventFields + ?Sized>(&mut self, event: &E, summary: &TypeSummary) {
        self.count += 1;
        for (name, x) in event.measures() {
            let Some((key, _)) = summary.measures.get_key_value(name) else {
                continue;
            };
            match self
                .measures
                .iter_mut()
                .find(|(n, _)| Arc::ptr_eq(n, key) || n == key)
            {
                Some((_, b)) => b.add(x),
                None => {
                    let mut b = Basic::default();
                    b.add(x);
                    self.measures.push((key.clone(), b));
                }
            }
        }
    }
}

/// Adds one series point into another.
fn merge_point(into: &mut SeriesPoint, point: &SeriesPoint) {
    into.count += point.count;
    for (name, b) in &point.measures {
        match into.measures.iter_mut().find(|(n, _)| n == name) {
            Some((_, mine)) => mine.merge(b),
            None => into.measures.push((name.clone(), *b)),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TypeState {
    all_time: TypeSummary,
    recent: BTreeMap<Arc<str>, VecDeque<f64>>,
}

/// Live aggregates. Feed it with [`Engine::apply`], read it with [`Engine::query`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Engine {
    #[serde(skip)]
    config: EngineConfig,
    total: u64,
    untracked: u64,
    types: BTreeMap<EventType, TypeState>,
    #[serde(skip)]
    names: Names,
    seconds: Ring<SeriesSlot>,
    minutes: Ring<SeriesSlot>,
    minute_summaries: Ring<HashMap<EventType, TypeSummary>>,
    hour_summaries: Ring<HashMap<EventType, TypeSummary>>,
    version: u64,
    last_seq: u64,
    /// With a retention: all-time summaries per epoch, to forget by.
    #[serde(default)]
    epochs: Option<retention::Epochs>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(EngineConfig::default())
    }
}
impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            total: 0,
            untracked: 0,
            types: BTreeMap::new(),
            names: Names::default(),
            // One slot more than the span, for the partial slot at the window's start.
            seconds: Ring::new(SECOND, 15 * 60 + 1),
            minutes: Ring::new(MINUTE, 24 * 60 + 1),
            minute_summaries: Ring::new(MINUTE, 61),
            hour_summaries: Ring::new(HOUR, 25),
            version: 0,
            last_seq: 0,
            epochs: config.retention_ms.map(retention::Epochs::new),
        }
    }

    /// Encodes the whole state, so a restart can skip re-reading every event.
    pub fn save_state(&self) -> Vec<u8> {
        // Serializing plain in-memory data into a Vec cannot fail.
        let state = postcard::to_stdvec(self).unwrap_or_default();
        let mut out = STATE_MAGIC.to_vec();
        out.extend(crc32fast::hash(&state).to_le_bytes());
        out.extend(state);
        out
    }

    /// Restores a state written by [`Engine::save_state`], with today's bounds.
    pub fn load_state(bytes: &[u8], config: EngineConfig) -> Result<Self, String> {
        let (crc, state) = bytes
            .strip_prefix(STATE_MAGIC.as_slice())
            .and_then(|rest| rest.split_first_chunk::<4>())
            .ok_or("not a saved engine state of this version")?;
        if crc32fast::hash(state) != u32::from_le_bytes(*crc) {
            return Err("damaged (its checksum does not match)".into());
        }
        let mut engine: Engine = postcard::from_bytes(state).map_err(|e| e.to_string())?;
        match (config.retention_ms, &engine.epochs) {
            (Some(r), Some(epochs)) if epochs.fits(r) => {}
            (None, None) => {}
            _ => return Err("saved under another retention".into()),
        }
        engine.config = config;
        Ok(engine)
    }

    /// The sequence number of the last committed event applied.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Changes on every applied batch; lets readers skip unchanged state.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The fields the engine has seen of each type it tracks, and whether
    /// that is all of them (a type with more fields than tracked, or events
    /// of untracked types, leave the catalog incomplete).
    pub fn fields(&self) -> crate::query::Catalog {
        crate::query::Catalog {
            types: self
                .types
                .iter()
                .map(|(kind, state)| {
                    let summary = &state.all_time;
                    let tracked = summary.measures.len() + summary.dimensions.len();
                    (
                        kind.clone(),
                        crate::query::KnownFields {
                            measures: summary.measures.keys().map(|k| k.to_string()).collect(),
                            dimensions: summary.dimensions.keys().map(|k| k.to_string()).collect(),
                            complete: tracked < self.config.max_fields,
                        },
                    )
                })
                .collect(),
            complete: self.untracked == 0,
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
