//! Answering a [`Query`] of the query model from the all-time aggregates,
//! when they hold exactly the events it selects: every stored event of the
//! types it asks about, all of them inside its time range, every field
//! tracked, and nothing it asks needs more than a type's summary (no filter
//! or breakdown but the type, no dimension statistic). Then the answer
//! costs microseconds instead of a scan, and equals the store's: the same
//! executor finishes both, from the same kind of per-measure statistics.

use super::Engine;
use crate::event::EventType;
use crate::query::exec::{Answer, ExecError, Executor, KeyValue};
use crate::query::{Breakdown, Field, Query};

impl Engine {
    /// The answer from the all-time aggregates, or `None` when only the
    /// stored events can give it exactly. `cutoff` is the retention's
    /// (events before it no longer count).
    pub fn answer(&self, query: &Query, cutoff: Option<i64>) -> Option<Result<Answer, ExecError>> {
        let by_type = match query.by.as_slice() {
            [] => false,
            [Breakdown::Field(Field::Type)] => true,
            _ => return None,
        };
        if self.untracked > 0
            || query.stats.iter().any(|s| s.stat.of_dimension())
            || query.filters.iter().any(|f| f.field != Field::Type)
        {
            return None;
        }
        let selected: Vec<(&EventType, &super::TypeState)> = self
            .types
            .iter()
            .filter(|(kind, _)| {
                query
                    .filters
                    .iter()
                    .all(|f| f.allows_type(kind.as_str()).unwrap_or(false))
            })
            .collect();
        for (_, state) in &selected {
            let s = &state.all_time;
            let tracked = s.measures.len() + s.dimensions.len();
            let inside = s.count == 0
                || (query.range.from <= s.first_ts
                    && s.last_ts < query.range.to
                    && cutoff.is_none_or(|c| c <= s.first_ts));
            if tracked >= self.config.max_fields || !inside {
                return None;
            }
        }
        // Without a breakdown by type, one group holds every measure: no
        // more than a scan's group keeps.
        if !by_type {
            let mut names: Vec<&str> = selected
                .iter()
                .flat_map(|(_, st)| st.all_time.measures.keys().map(|k| &**k))
                .collect();
            names.sort_unstable();
            names.dedup();
            if names.len() >= crate::query::exec::MAX_GROUP_MEASURES {
                return None;
            }
        }
        let mut exec = Executor::new(query);
        for (kind, state) in selected {
            let s = &state.all_time;
            let key = if by_type {
                vec![KeyValue::Text(kind.as_str().into())]
            } else {
                Vec::new()
            };
            let asked = |name: &str| query.defaults || query.stats.iter().any(|r| r.field == name);
            exec.add_group(
                key,
                s.count,
                (s.first_ts, s.last_ts),
                s.measures.iter().filter(|(name, _)| asked(name)),
            );
        }
        Some(exec.finish())
    }
}
