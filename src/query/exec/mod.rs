//! Answering a [`Query`] over a sequence of events: filter, group, and
//! compute each statistic, in bounded memory. Whoever holds the events (the
//! store scanning its segments, the engine) feeds them in; the answer does
//! not depend on where they came from or in what order.
//!
//! Exact: counts, sums, min, max, mean, last. Approximate: quantiles (exact
//! over up to 64 values per group, else within 1% relative, always inside
//! [min, max]: see [`crate::engine::stats::MeasureStats`]) and distinct counts (HyperLogLog++,
//! exact while small, then about 1.6% standard error: within 5% with 99.7%
//! confidence). Top values per dimension are Space-Saving counts.

mod cells;

use smallvec::SmallVec;

use super::acc::{Acc, MeasureAcc, dim_acc, measure_acc, stat_value};
use super::{Breakdown, Field, Query, Stat, StatRequest};
use crate::engine::HashMap;
use crate::engine::stats::MeasureStats;
use crate::event::{Event, EventFields, Text, ValueRef};

/// Groups a query may make while none needs a sketch; beyond, it is refused.
pub const MAX_GROUPS: usize = 100_000;
/// Groups at most when sketches (quantiles, distinct counts, top values) are
/// asked for: each can take a few KiB.
pub const MAX_SKETCHED_GROUPS: usize = 10_000;
/// Measures a group keeps; further ones are ignored.
pub const MAX_GROUP_MEASURES: usize = super::acc::MAX_FIELDS;
/// Statistics kept in all, over every group: a cheap one is a few dozen
/// bytes, so this bounds a plain answer to some tens of MiB.
pub const MAX_CELLS: usize = 1_000_000;
/// Sketches kept in all (quantiles, distinct counts, top values): each is a
/// few KiB at most.
pub const MAX_SKETCHES: usize = 20_000;

/// Why a query could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error(
        "the breakdown makes more than {0} groups; add a filter, break down by fewer or coarser fields, or ask fewer statistics"
    )]
    TooManyGroups(usize),
    #[error(
        "the answer would hold more than {0} statistics ({1}); add a filter, narrow the type, or break down by fewer fields"
    )]
    TooLarge(usize, &'static str),
}

/// One part of a group's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// Events without the field.
    Missing,
    Text(Text),
    /// The start of a time bucket (ms).
    Time(i64),
}

type Key = SmallVec<[KeyValue; 4]>;

/// What is tracked per group: every measure met (for the default
/// columns), with quantiles when the layout shows them or one is asked of
/// it, and the dimensions asked about.
#[derive(Debug, Clone)]
struct Plan {
    /// The default columns include quantiles (per type or overall); broken
    /// down further they are sums and means (many groups would each need a
    /// sketch).
    default_quantiles: bool,
    /// Measures a quantile was asked of.
    quantiles_of: Vec<Text>,
    /// Dimensions a distinct count or top values were asked of.
    dimensions: Vec<Text>,
    asked: Vec<StatRequest>,
    /// Every measure met is a default column; else only those asked of.
    defaults: bool,
}

impl Plan {
    fn new(query: &Query) -> Plan {
        let default_quantiles = query.defaults
            && query
                .by
                .iter()
                .all(|b| matches!(b, Breakdown::Field(Field::Type)));
        let mut quantiles_of: Vec<Text> = Vec::new();
        let mut dimensions: Vec<Text> = Vec::new();
        for s in &query.stats {
            let list = if s.stat.of_dimension() {
                &mut dimensions
            } else if s.stat.quantile().is_some() {
                &mut quantiles_of
            } else {
                continue;
            };
            if !list.iter().any(|n| **n == *s.field) {
                list.push(s.field.as_str().into());
            }
        }
        Plan {
            default_quantiles,
            quantiles_of,
            dimensions,
            asked: query.stats.clone(),
            defaults: query.defaults,
        }
    }

    fn sketched(&self) -> bool {
        self.default_quantiles || !self.quantiles_of.is_empty() || !self.dimensions.is_empty()
    }

    fn quantiles(&self, measure: &str) -> bool {
        self.default_quantiles || self.quantiles_of.iter().any(|n| **n == *measure)
    }

    /// Whether a measure is kept at all.
    fn keeps(&self, measure: &str) -> bool {
        self.defaults || self.asked.iter().any(|s| *s.field == *measure)
    }
}

/// A statistic's value in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum StatValue {
    /// A number; `None` when the group has no such measure.
    Number(Option<f64>),
    /// A count (distinct values).
    Count(u64),
    /// The most frequent values with their counts.
    Top(Vec<(String, u64)>),
}

/// One group of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// One value per breakdown, in the query's order.
    pub key: Vec<KeyValue>,
    pub events: u64,
    /// The earliest and latest event times in the group (ms).
    pub span: Option<(i64, i64)>,
    /// One value per column of [`Answer::stats`].
    pub stats: Vec<StatValue>,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The breakdowns' column names.
    pub keys: Vec<String>,
    /// The statistics' columns, as (field, stat).
    pub stats: Vec<StatRequest>,
    pub rows: Vec<Row>,
    /// The groups beyond `top`, summed; their key is empty.
    pub others: Option<Row>,
    /// Events that matched the time range and filters.
    pub matched: u64,
}

/// Answers one query: feed it events, then [`Executor::finish`].
pub struct Executor<'q> {
    query: &'q Query,
    plan: Plan,
    groups: HashMap<Key, Acc>,
    max_groups: usize,
    matched: u64,
    failed: Option<ExecError>,
    /// Statistics kept, and how many of them are sketches.
    cells: usize,
    sketches: usize,
    /// Events given by `add`, which numbers them.
    fed: u64,
    /// The texts of the groups' keys, shared by every event that names them.
    texts: std::collections::HashSet<Text, foldhash::fast::RandomState>,
}

/// A text the executor already holds, or a new one.
fn intern(
    texts: &mut std::collections::HashSet<Text, foldhash::fast::RandomState>,
    s: &str,
) -> Text {
    if let Some(t) = texts.get(s) {
        return t.clone();
    }
    let t: Text = s.into();
    texts.insert(t.clone());
    t
}

impl<'q> Executor<'q> {
    pub fn new(query: &'q Query) -> Self {
        let plan = Plan::new(query);
        Self {
            query,
            max_groups: if plan.sketched() {
                MAX_SKETCHED_GROUPS
            } else {
                MAX_GROUPS
            },
            plan,
            groups: HashMap::default(),
            matched: 0,
            failed: None,
            cells: 0,
            sketches: 0,
            texts: Default::default(),
            fed: 0,
        }
    }

    /// Takes events in any order; those the query is not about are skipped.
    pub fn add(&mut self, events: &[Event]) {
        for event in events {
            // In the order given: later ones count as stored later.
            self.fed += 1;
            self.add_one(self.fed, event);
        }
    }

    /// Takes one event, owned or read in place from the store, with its
    /// sequence number (which of equal times is later).
    pub fn add_one<E: EventFields + ?Sized>(&mut self, seq: u64, event: &E) {
        if self.failed.is_none() && self.query.matches(event) {
            self.add_matching(seq, event);
        }
    }

    fn add_matching<E: EventFields + ?Sized>(&mut self, seq: u64, event: &E) {
        self.matched += 1;
        let key = self.key(event);
        let groups = self.groups.len();
        let acc = match self.groups.get_mut(&key) {
            Some(acc) => acc,
            None if groups >= self.max_groups => {
                self.failed = Some(ExecError::TooManyGroups(self.max_groups));
                return;
            }
            None => self.groups.entry(key).or_default(),
        };
        acc.events += 1;
        let ts = event.millis();
        acc.see(ts);
        let before = (acc.measures.len(), acc.dimensions.len());
        let plan = &self.plan;
        event.for_each_value(|name, value| {
            if let ValueRef::Measure(x) = value
                && plan.keeps(name)
                && let Some(m) = measure_acc(acc, name, plan.quantiles(name))
            {
                m.add(x, ts, seq);
            }
        });
        for name in &plan.dimensions {
            if let Some(ValueRef::Dimension(s)) = event.value(name) {
                dim_acc(acc, name, &plan.asked).add(s);
            }
        }
        let (cells, sketches) = acc.kept_since(before);
        self.cells += cells;
        self.sketches += sketches;
        self.check_limits();
    }

    /// Whether a group met more measures than it keeps: then which ones it
    /// kept depends on the order events came in, and parts read in
    /// parallel may disagree (the caller reads again in one part).
    pub fn capped(&self) -> bool {
        self.groups
            .values()
            .any(|a| a.measures.len() >= MAX_GROUP_MEASURES)
    }

    /// Fails the query once it keeps more statistics or sketches than allowed.
    fn check_limits(&mut self) {
        if self.cells > MAX_CELLS {
            self.failed = Some(ExecError::TooLarge(MAX_CELLS, "measures over all groups"));
        } else if self.sketches > MAX_SKETCHES {
            self.failed = Some(ExecError::TooLarge(
                MAX_SKETCHES,
                "quantile sketches and distinct counts",
            ));
        }
    }

    /// Joins what another executor of the same query took (another part of
    /// the same events, scanned in parallel).
    pub fn merge(&mut self, other: Executor<'_>) {
        if self.failed.is_none() {
            self.failed = other.failed;
        }
        if self.failed.is_some() {
            return;
        }
        self.matched += other.matched;
        for (key, acc) in other.groups {
            let groups = self.groups.len();
            match self.groups.get_mut(&key) {
                Some(mine) => mine.merge(&acc),
                None if groups >= self.max_groups => {
                    self.failed = Some(ExecError::TooManyGroups(self.max_groups));
                    return;
                }
                None => {
                    self.groups.insert(key, acc);
                }
            }
        }
        // Counted again: merged groups may hold more than either part's.
        self.cells = self
            .groups
            .values()
            .map(|a| a.measures.len() + a.dimensions.len())
            .sum();
        self.sketches = self
            .groups
            .values()
            .map(|a| {
                a.measures.iter().filter(|(_, m)| m.full.is_some()).count() + a.dimensions.len()
            })
            .sum();
        self.check_limits();
    }

    /// Takes a whole group already summed elsewhere (the live engine's
    /// aggregates of one type): its key, event count, time span and
    /// measures. The caller vouches that the group is exactly the events
    /// the query selects for that key, and that no dimension statistic is
    /// asked for.
    pub fn add_group<'m>(
        &mut self,
        key: Vec<KeyValue>,
        events: u64,
        span: (i64, i64),
        measures: impl Iterator<Item = (&'m Text, &'m MeasureStats)>,
    ) {
        if self.failed.is_some() || events == 0 {
            return;
        }
        if self.groups.len() >= self.max_groups {
            self.failed = Some(ExecError::TooManyGroups(self.max_groups));
            return;
        }
        self.matched += events;
        // Several types without a breakdown by type share one group.
        let mut acc = Acc {
            events,
            span: Some(span),
            ..Acc::default()
        };
        for (name, stats) in measures {
            let m = MeasureAcc::from_stats(stats, self.plan.quantiles(name));
            self.cells += 1;
            self.sketches += usize::from(m.full.is_some());
            acc.measures.push((name.clone(), m));
        }
        match self.groups.get_mut(&Key::from_vec(key.clone())) {
            Some(group) => group.merge(&acc),
            None => {
                self.groups.insert(key.into_iter().collect(), acc);
            }
        }
    }

    fn key<E: EventFields + ?Sized>(&mut self, event: &E) -> Key {
        let texts = &mut self.texts;
        self.query
            .by
            .iter()
            .map(|b| match b {
                Breakdown::Time(bucket) => {
                    let ms = bucket.ms();
                    KeyValue::Time(event.millis().div_euclid(ms) * ms)
                }
                Breakdown::Field(Field::Type) => KeyValue::Text(intern(texts, event.kind())),
                Breakdown::Field(Field::Source) => KeyValue::Text(intern(texts, event.source())),
                Breakdown::Field(Field::Value(name)) => match event.value(name) {
                    Some(ValueRef::Dimension(s)) => KeyValue::Text(intern(texts, s)),
                    Some(ValueRef::Measure(_)) | None => KeyValue::Missing,
                },
            })
            .collect()
    }

    /// The answer: rows ordered, the first `top` kept, the rest summed.
    pub fn finish(self) -> Result<Answer, ExecError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let stats = self.columns();
        let keys: Vec<String> = self.query.by.iter().map(Breakdown::name).collect();
        let mut groups: Vec<(Key, Acc)> = self.groups.into_iter().collect();
        let row = |key: &Key, acc: &Acc| Row {
            key: key.to_vec(),
            events: acc.events,
            span: acc.span,
            stats: stats.iter().map(|s| stat_value(acc, s)).collect(),
        };
        let order = self.query.order.clone();
        let has_time = self
            .query
            .by
            .iter()
            .any(|b| matches!(b, Breakdown::Time(_)));
        let sort_key = |key: &Key, acc: &Acc| -> SortValue {
            match &order {
                Some(o) if o.column == "events" => SortValue::Number(acc.events as f64),
                Some(o) => match keys.iter().position(|k| *k == o.column) {
                    Some(i) => SortValue::Key(key[i].clone()),
                    None => stats.iter().position(|s| s.column() == o.column).map_or(
                        SortValue::Number(0.0),
                        |i| match stat_value(acc, &stats[i]) {
                            StatValue::Number(x) => {
                                SortValue::Number(x.unwrap_or(f64::NEG_INFINITY))
                            }
                            StatValue::Count(n) => SortValue::Number(n as f64),
                            StatValue::Top(_) => SortValue::Number(0.0),
                        },
                    ),
                },
                None if has_time => SortValue::Key(KeyValue::Missing),
                None => SortValue::Number(acc.events as f64),
            }
        };
        let descending = order.as_ref().map_or(!has_time, |o| o.descending);
        groups.sort_by(|(ka, a), (kb, b)| {
            let (va, vb) = (sort_key(ka, a), sort_key(kb, b));
            let primary = if descending { vb.cmp(&va) } else { va.cmp(&vb) };
            primary.then_with(|| ka.cmp(kb))
        });
        let top = self.query.top.unwrap_or(usize::MAX);
        let others = (groups.len() > top).then(|| {
            let mut rest = Acc::default();
            for (_, acc) in &groups[top..] {
                rest.merge(acc);
            }
            row(&Key::new(), &rest)
        });
        groups.truncate(top);
        Ok(Answer {
            keys,
            rows: groups.iter().map(|(k, a)| row(k, a)).collect(),
            stats,
            others,
            matched: self.matched,
        })
    }

    /// The statistic columns: the defaults for every measure met (every
    /// statistic per type or overall, else sum and mean), then those asked.
    fn columns(&self) -> Vec<StatRequest> {
        let mut names: Vec<&Text> = self
            .groups
            .values()
            .flat_map(|acc| acc.measures.iter().map(|(n, _)| n))
            .collect();
        names.sort();
        names.dedup();
        let per_measure: &[Stat] = if self.plan.default_quantiles {
            &Stat::MEASURE
        } else {
            &[Stat::Sum, Stat::Mean]
        };
        let mut columns: Vec<StatRequest> = names
            .into_iter()
            .filter(|_| self.plan.defaults)
            .flat_map(|name| {
                per_measure.iter().map(move |stat| StatRequest {
                    stat: *stat,
                    field: name.to_string(),
                })
            })
            .collect();
        for asked in &self.plan.asked {
            if !columns.contains(asked) {
                columns.push(asked.clone());
            }
        }
        columns
    }
}

/// Orders rows by a statistic or a key; numbers by total order.
#[derive(Debug, Clone, PartialEq)]
enum SortValue {
    Number(f64),
    Key(KeyValue),
}

impl Eq for SortValue {}

impl PartialOrd for SortValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (SortValue::Number(a), SortValue::Number(b)) => a.total_cmp(b),
            (SortValue::Key(a), SortValue::Key(b)) => a.cmp(b),
            (SortValue::Number(_), SortValue::Key(_)) => std::cmp::Ordering::Less,
            (SortValue::Key(_), SortValue::Number(_)) => std::cmp::Ordering::Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Limits, Timestamp, parse_event_str};
    use crate::query::parse::QueryText;

    fn events() -> Vec<Event> {
        let now = Timestamp::now();
        let lines = [
            r#"{"timestamp":"2023-04-01T09:10:00Z","type":"sales","values":{"amount":100,"region":"Europe","channel":"web"}}"#,
            r#"{"timestamp":"2023-04-01T09:20:00Z","type":"sales","values":{"amount":50,"region":"Europe","channel":"store"}}"#,
            r#"{"timestamp":"2023-04-01T09:30:00Z","type":"sales","values":{"amount":10,"region":"Asia","channel":"web"}}"#,
            r#"{"timestamp":"2023-04-01T10:30:00Z","type":"sales","values":{"amount":7,"region":"Asia"}}"#,
            r#"{"timestamp":"2023-04-01T09:15:00Z","type":"pageview","values":{"latency_ms":120,"device":"mobile","user":"u1"}}"#,
            r#"{"timestamp":"2023-04-01T09:16:00Z","type":"pageview","values":{"latency_ms":80,"device":"desktop","user":"u2"}}"#,
            r#"{"timestamp":"2023-04-01T09:17:00Z","type":"pageview","values":{"latency_ms":300,"device":"mobile","user":"u1"}}"#,
        ];
        lines
            .iter()
            .map(|l| parse_event_str(l, &Limits::default(), now).unwrap())
            .collect()
    }

    fn answer(text: QueryText) -> Answer {
        let query = text.to_query(Timestamp::now()).unwrap();
        let mut exec = Executor::new(&query);
        exec.add(&events());
        exec.finish().unwrap()
    }

    fn number(row: &Row, answer: &Answer, column: &str) -> Option<f64> {
        let i = answer
            .stats
            .iter()
            .position(|s| s.column() == column)
            .unwrap();
        match &row.stats[i] {
            StatValue::Number(x) => *x,
            other => panic!("{column}: {other:?}"),
        }
    }

    #[test]
    fn a_time_range_and_filters() {
        let a = answer(QueryText {
            from: Some("2023-04-01T09:00:00Z".into()),
            to: Some("2023-04-01T10:00:00Z".into()),
            by: vec!["type".into()],
            ..QueryText::default()
        });
        assert_eq!(a.matched, 6);
        // Three each: ties are ordered by key.
        assert_eq!(a.rows[0].key, vec![KeyValue::Text("pageview".into())]);
        assert_eq!(a.rows[1].key, vec![KeyValue::Text("sales".into())]);
        assert_eq!(number(&a.rows[1], &a, "amount_sum"), Some(160.0));
        assert_eq!(number(&a.rows[0], &a, "latency_ms_p99"), Some(300.0));
        assert_eq!(number(&a.rows[0], &a, "latency_ms_p50"), Some(120.0));

        let a = answer(QueryText {
            filters: vec!["region!=Asia".into(), "type=sales".into()],
            ..QueryText::default()
        });
        assert_eq!(a.matched, 2);
        let a = answer(QueryText {
            filters: vec!["channel!=web".into(), "type=sales".into()],
            ..QueryText::default()
        });
        assert_eq!(a.matched, 2, "an event without the dimension is not equal");
        let a = answer(QueryText {
            filters: vec!["amount>=10".into(), "region=Europe,Asia".into()],
            ..QueryText::default()
        });
        assert_eq!(a.matched, 3);
        let a = answer(QueryText {
            filters: vec!["region~si".into()],
            ..QueryText::default()
        });
        assert_eq!(a.matched, 2);
        let a = answer(QueryText {
            filters: vec!["amount=100".into()],
            ..QueryText::default()
        });
        assert_eq!(a.matched, 1, "= on a measure compares numbers");
        let a = answer(QueryText {
            filters: vec!["type=sales".into(), "amount!=100,50".into()],
            ..QueryText::default()
        });
        assert_eq!(a.matched, 2, "!= with a list is none of them");
        let a = answer(QueryText {
            filters: vec!["device!=mobile,desktop".into()],
            ..QueryText::default()
        });
        assert_eq!(
            a.matched, 4,
            "events without the dimension are none of them"
        );
    }

    #[test]
    fn breakdowns_order_top_and_others_add_up() {
        let a = answer(QueryText {
            kind: Some("sales".into()),
            by: vec!["region".into(), "channel".into()],
            stats: vec!["sum:amount".into(), "count:amount".into()],
            order: Some("amount_sum desc".into()),
            top: Some(2),
            ..QueryText::default()
        });
        assert_eq!(a.keys, ["region", "channel"]);
        assert_eq!(a.rows.len(), 2);
        assert_eq!(number(&a.rows[0], &a, "amount_sum"), Some(100.0));
        assert_eq!(number(&a.rows[1], &a, "amount_sum"), Some(50.0));
        let others = a.others.as_ref().unwrap();
        assert_eq!(others.events, 2);
        assert_eq!(number(others, &a, "amount_sum"), Some(17.0));
        assert_eq!(number(others, &a, "amount_count"), Some(2.0));
        let total: u64 = a.rows.iter().map(|r| r.events).sum::<u64>() + others.events;
        assert_eq!(total, a.matched);

        let a = answer(QueryText {
            kind: Some("sales".into()),
            by: vec!["time:hour".into()],
            ..QueryText::default()
        });
        let hours: Vec<_> = a.rows.iter().map(|r| r.key[0].clone()).collect();
        assert_eq!(
            hours,
            [
                KeyValue::Time(1_680_339_600_000),
                KeyValue::Time(1_680_343_200_000)
            ],
            "time buckets in order, none cut by top"
        );
    }

    #[test]
    fn distinct_and_top_values() {
        let a = answer(QueryText {
            kind: Some("pageview".into()),
            stats: vec![
                "distinct:user".into(),
                "top:device".into(),
                "mean:latency_ms".into(),
            ],
            ..QueryText::default()
        });
        let stat = |column: &str| {
            let i = a.stats.iter().position(|s| s.column() == column).unwrap();
            a.rows[0].stats[i].clone()
        };
        assert_eq!(stat("user_distinct"), StatValue::Count(2));
        assert_eq!(
            stat("device_top"),
            StatValue::Top(vec![("mobile".into(), 2), ("desktop".into(), 1)])
        );
        assert_eq!(
            stat("latency_ms_p50"),
            StatValue::Number(Some(120.0)),
            "the defaults stay"
        );
        assert_eq!(number(&a.rows[0], &a, "latency_ms_mean"), Some(500.0 / 3.0));
    }

    #[test]
    fn too_many_groups_is_an_error_not_a_crash() {
        let query = QueryText {
            by: vec!["user".into()],
            stats: vec!["p99:x".into()],
            ..QueryText::default()
        }
        .to_query(Timestamp::now())
        .unwrap();
        let mut exec = Executor::new(&query);
        let now = Timestamp::now();
        let many: Vec<Event> = (0..MAX_SKETCHED_GROUPS + 1)
            .map(|i| {
                parse_event_str(
                    &format!(r#"{{"type":"t","values":{{"user":"u{i}","x":1}}}}"#),
                    &Limits::default(),
                    now,
                )
                .unwrap()
            })
            .collect();
        exec.add(&many);
        assert_eq!(
            exec.finish().unwrap_err(),
            ExecError::TooManyGroups(MAX_SKETCHED_GROUPS)
        );
    }
}
