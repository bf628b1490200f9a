//! The text form of a query, as `rta query` flags, URL parameters and the
//! API's JSON body give it. One parser for all three, so a filter means the
//! same everywhere, and every error names the part that is wrong and shows
//! what a valid one looks like.

use serde::Deserialize;

use super::{
    Breakdown, Bucket, Comparison, Field, Filter, MAX_DIMENSIONS, MIN_WINDOW_MS, Op, Order, Query,
    StatRequest, TimeSpec,
};
use crate::event::Timestamp;

/// Most rows a query may ask for with `top`.
pub const MAX_TOP: usize = 1000;
/// Rows kept when `top` is not given (but all time buckets).
pub const DEFAULT_TOP: usize = 10;

/// A query as text, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryText {
    /// `5m`, `30d`, `all`...
    pub window: Option<String>,
    /// RFC 3339, or a date (00:00 UTC that day).
    pub from: Option<String>,
    pub to: Option<String>,
    /// A shorthand for `where: ["type=..."]`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Filters, each `dim=value`, `dim=a,b`, `dim!=value`, `dim~text`, `measure>N`...
    #[serde(rename = "where", default)]
    pub filters: Vec<String>,
    /// Breakdowns: dimensions, `type`, `source`, `time:hour`.
    #[serde(default)]
    pub by: Vec<String>,
    /// Statistics, each `stat:field` (`p95:latency_ms`, `distinct:user`).
    #[serde(default)]
    pub stats: Vec<String>,
    /// A column, then `asc` or `desc` (`amount_sum desc`).
    pub order: Option<String>,
    pub top: Option<usize>,
    /// `false`: only the statistics asked for, not the default columns.
    pub defaults: Option<bool>,
}

impl QueryText {
    /// A query over all time of filters, breakdowns and statistics, as
    /// tests write them.
    #[cfg(test)]
    pub fn all_time(filters: &[&str], by: &[&str], stats: &[&str], now: Timestamp) -> Query {
        let strings = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        QueryText {
            window: Some("all".into()),
            filters: strings(filters),
            by: strings(by),
            stats: strings(stats),
            ..QueryText::default()
        }
        .to_query(now)
        .expect("a valid query")
    }

    /// Checks every part; the error says which one is wrong and why.
    pub fn to_query(&self, now: Timestamp) -> Result<Query, String> {
        let time = time_spec(
            self.window.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
        )?;
        let mut filters = Vec::new();
        if let Some(kind) = self.kind.as_deref() {
            crate::event::EventType::parse(kind, &crate::event::Limits::default())
                .map_err(|reason| format!("type {reason}"))?;
            filters.push(Filter {
                field: Field::Type,
                op: Op::Is(kind.to_string()),
            });
        }
        for text in &self.filters {
            filters.push(parse_filter(text)?);
        }
        let mut by = Vec::new();
        for text in &self.by {
            for part in text.split(',') {
                by.push(parse_breakdown(part)?);
            }
        }
        check_breakdowns(&by)?;
        let stats = self
            .stats
            .iter()
            .map(|s| parse_stat(s))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(top) = self.top
            && !(1..=MAX_TOP).contains(&top)
        {
            return Err(format!("top={top} is out of range; use 1 to {MAX_TOP}"));
        }
        // A breakdown by time keeps every bucket unless told otherwise.
        let top = self.top.or_else(|| {
            (!by.iter().any(|b| matches!(b, Breakdown::Time(_)))).then_some(DEFAULT_TOP)
        });
        let order = self.order.as_deref().map(parse_order).transpose()?;
        Ok(Query {
            range: time.resolve(now),
            filters,
            by,
            stats,
            order,
            top,
            defaults: self.defaults.unwrap_or(true),
        })
    }
}

/// The time part: a `window` (from 10s, or `all`) or `from`/`to`; neither
/// means all time.
pub fn time_spec(
    window: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<TimeSpec, String> {
    let window = window.map(str::trim).filter(|w| !w.is_empty());
    let from = from.map(str::trim).filter(|f| !f.is_empty());
    let to = to.map(str::trim).filter(|t| !t.is_empty());
    match (window, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(
            "give either a window (such as 24h) or from/to (such as 2023-04-01T09:00:00Z), not both"
                .into(),
        ),
        (Some(w), None, None) => parse_window(w),
        (None, None, None) => Ok(TimeSpec::All),
        (None, from, to) => {
            let from = from.map(|f| parse_time("from", f)).transpose()?;
            let to = to.map(|t| parse_time("to", t)).transpose()?;
            if let (Some(from), Some(to)) = (from, to)
                && to.millis() <= from.millis()
            {
                return Err(format!("to ({to}) must be after from ({from})"));
            }
            Ok(TimeSpec::Between { from, to })
        }
    }
}

fn parse_window(w: &str) -> Result<TimeSpec, String> {
    if w.eq_ignore_ascii_case("all") {
        return Ok(TimeSpec::All);
    }
    let d = humantime::parse_duration(w).map_err(|e| {
        format!("window {w:?} is not a duration ({e}); use e.g. 10s, 5m, 24h, 30d or all")
    })?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms < MIN_WINDOW_MS {
        return Err(format!(
            "window {w:?} is shorter than 10s, the shortest window"
        ));
    }
    Ok(TimeSpec::Window(ms))
}

/// RFC 3339 (`2023-04-01T09:00:00Z`) or a date (`2023-04-01`, 00:00 UTC).
pub fn parse_time(name: &str, s: &str) -> Result<Timestamp, String> {
    let invalid = || {
        format!(
            "{name} {s:?} is not a time; use RFC 3339 such as 2023-04-01T09:00:00Z, or a date such as 2023-04-01"
        )
    };
    let millis = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        t.timestamp_millis()
    } else {
        let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| invalid())?;
        date.and_hms_opt(0, 0, 0)
            .ok_or_else(invalid)?
            .and_utc()
            .timestamp_millis()
    };
    Timestamp::from_millis(millis).ok_or_else(invalid)
}

/// A field name as written: `type` and `source` are the event's own;
/// `values.NAME` is a value (needed only for values named so).
fn parse_field(name: &str) -> Result<Field, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("a field name is missing".into());
    }
    Ok(match name {
        "type" => Field::Type,
        "source" => Field::Source,
        _ => Field::Value(name.strip_prefix("values.").unwrap_or(name).to_string()),
    })
}

/// The operators, longest first, so `!=` is not read as `=`.
const OPERATORS: [&str; 7] = ["!=", ">=", "<=", "=", "~", ">", "<"];

/// One filter: `dim=value`, `dim=a,b` (one of; `\,` for a comma in a value),
/// `dim!=value`, `dim~text` (contains), `measure>N` (`>=`, `<`, `<=`).
pub fn parse_filter(text: &str) -> Result<Filter, String> {
    let example =
        "such as region=Europe, region=Europe,Asia, device!=mobile, path~/blog or amount>100";
    let (at, op) = OPERATORS
        .iter()
        .filter_map(|op| text.find(op).map(|at| (at, *op)))
        .min_by_key(|(at, op)| (*at, usize::MAX - op.len()))
        .ok_or_else(|| format!("filter {text:?} has no operator; write one {example}"))?;
    let field = parse_field(&text[..at]).map_err(|e| format!("filter {text:?}: {e}"))?;
    let raw = &text[at + op.len()..];
    let number = || {
        raw.trim().parse::<f64>().ok().filter(|n| n.is_finite()).ok_or_else(|| {
            format!("filter {text:?}: {raw:?} is not a number; `{op}` compares a measure with a number, such as amount{op}100")
        })
    };
    let compare = |cmp: Comparison| -> Result<Op, String> {
        if !matches!(field, Field::Value(_)) {
            return Err(format!(
                "filter {text:?}: `{op}` compares measures; `{}` is text",
                field.name()
            ));
        }
        Ok(Op::Compare(cmp, number()?))
    };
    let op = match op {
        "=" => {
            let values = split_values(raw);
            match values.len() {
                1 => Op::Is(values.into_iter().next().unwrap_or_default()),
                _ => Op::OneOf(values),
            }
        }
        "!=" => {
            let values = split_values(raw);
            match values.len() {
                1 => Op::IsNot(values.into_iter().next().unwrap_or_default()),
                _ => Op::NoneOf(values),
            }
        }
        "~" => {
            if raw.is_empty() {
                return Err(format!(
                    "filter {text:?}: `~` needs the text to look for, such as path~/blog"
                ));
            }
            Op::Contains(unescape(raw))
        }
        ">" => compare(Comparison::Greater)?,
        ">=" => compare(Comparison::GreaterOrEqual)?,
        "<" => compare(Comparison::Less)?,
        _ => compare(Comparison::LessOrEqual)?,
    };
    Ok(Filter { field, op })
}

/// `a,b\,c` -> [`a`, `b,c`]: commas separate values; `\,` is a comma
/// and `\\` a backslash inside one.
fn split_values(raw: &str) -> Vec<String> {
    let mut values = vec![String::new()];
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        let push = match c {
            '\\' => match chars.next() {
                Some(escaped @ (',' | '\\')) => escaped,
                Some(other) => {
                    if let Some(v) = values.last_mut() {
                        v.push('\\');
                    }
                    other
                }
                None => '\\',
            },
            ',' => {
                values.push(String::new());
                continue;
            }
            c => c,
        };
        if let Some(v) = values.last_mut() {
            v.push(push);
        }
    }
    values
}

/// One value, with the same escapes as in lists (a bare comma is its own).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(escaped @ (',' | '\\'))) => {
                out.push(escaped);
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// `region`, `type`, `time:hour`.
pub fn parse_breakdown(text: &str) -> Result<Breakdown, String> {
    let text = text.trim();
    if let Some(bucket) = text.strip_prefix("time:") {
        let bucket = match bucket {
            "minute" => Bucket::Minute,
            "hour" => Bucket::Hour,
            "day" => Bucket::Day,
            other => {
                return Err(format!(
                    "breakdown {text:?}: `{other}` is not a time bucket; use time:minute, time:hour or time:day"
                ));
            }
        };
        return Ok(Breakdown::Time(bucket));
    }
    if text == "time" {
        return Err("breakdown `time` needs a bucket: time:minute, time:hour or time:day".into());
    }
    parse_field(text)
        .map(Breakdown::Field)
        .map_err(|e| format!("breakdown: {e}; give a dimension such as region, or time:hour"))
}

fn check_breakdowns(by: &[Breakdown]) -> Result<(), String> {
    let fields = by
        .iter()
        .filter(|b| matches!(b, Breakdown::Field(_)))
        .count();
    let times = by.len() - fields;
    if fields > MAX_DIMENSIONS {
        return Err(format!(
            "at most {MAX_DIMENSIONS} dimensions to break down by, got {fields}"
        ));
    }
    if times > 1 {
        return Err("at most one time bucket to break down by".into());
    }
    for (i, b) in by.iter().enumerate() {
        if by[..i].contains(b) {
            return Err(format!("`{}` is given twice to break down by", b.name()));
        }
    }
    Ok(())
}

/// `p95:latency_ms`, `distinct:user`, `sum:amount`.
pub fn parse_stat(text: &str) -> Result<StatRequest, String> {
    let known = "count, sum, min, max, mean, last, p50, p90, p95, p99 (measures), distinct, top (dimensions)";
    let (stat, field) = text.trim().split_once(':').ok_or_else(|| {
        format!("statistic {text:?} should be stat:field, such as p95:latency_ms or distinct:user")
    })?;
    let stat = super::Stat::parse(stat.trim())
        .ok_or_else(|| format!("statistic {text:?}: `{stat}` is not one of {known}"))?;
    let field = field.trim();
    if field.is_empty() {
        return Err(format!(
            "statistic {text:?} names no field, such as {}:amount",
            stat.name()
        ));
    }
    Ok(StatRequest {
        stat,
        field: field.strip_prefix("values.").unwrap_or(field).to_string(),
    })
}

/// `amount_sum`, `amount_sum desc`, `events asc`.
pub fn parse_order(text: &str) -> Result<Order, String> {
    let mut parts = text.split_whitespace();
    let column = parts
        .next()
        .ok_or("order names no column; give one such as `events desc` or `amount_sum asc`")?;
    let descending = match parts.next() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(format!("order {text:?}: `{other}` should be asc or desc"));
        }
    };
    if parts.next().is_some() {
        return Err(format!("order {text:?} should be a column and asc or desc"));
    }
    Ok(Order {
        column: column.to_string(),
        descending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Stat;

    fn filter(s: &str) -> Filter {
        parse_filter(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_filter_form() {
        let region = Field::Value("region".into());
        assert_eq!(filter("region=Europe").op, Op::Is("Europe".into()));
        assert_eq!(filter("region=Europe").field, region);
        assert_eq!(
            filter("region=Europe,Asia Pacific").op,
            Op::OneOf(vec!["Europe".into(), "Asia Pacific".into()])
        );
        assert_eq!(filter(r"note=a\,b").op, Op::Is("a,b".into()));
        assert_eq!(filter(r"note=a\\").op, Op::Is("a\\".into()));
        assert_eq!(filter(r"note!=a\,b").op, Op::IsNot("a,b".into()));
        assert_eq!(
            filter("device!=mobile,tablet").op,
            Op::NoneOf(vec!["mobile".into(), "tablet".into()])
        );
        assert_eq!(filter(r"path~a,b\,c").op, Op::Contains("a,b,c".into()));
        assert_eq!(filter("device!=mobile").op, Op::IsNot("mobile".into()));
        assert_eq!(filter("path~/blog").op, Op::Contains("/blog".into()));
        assert_eq!(
            filter("amount>100").op,
            Op::Compare(Comparison::Greater, 100.0)
        );
        assert_eq!(
            filter("amount>=1e2").op,
            Op::Compare(Comparison::GreaterOrEqual, 100.0)
        );
        assert_eq!(filter("amount<0.5").op, Op::Compare(Comparison::Less, 0.5));
        assert_eq!(
            filter("amount<=-3").op,
            Op::Compare(Comparison::LessOrEqual, -3.0)
        );
        assert_eq!(filter("type=sales").field, Field::Type);
        assert_eq!(filter("source!=web").field, Field::Source);
        assert_eq!(filter("values.type=x").field, Field::Value("type".into()));
        // The first operator counts: the value may hold others.
        assert_eq!(filter("q=a>b").op, Op::Is("a>b".into()));
        assert_eq!(filter("expr~x=1").op, Op::Contains("x=1".into()));
    }

    #[test]
    fn bad_filters_name_the_wrong_part() {
        for (text, expected) in [
            ("region", "no operator"),
            ("=Europe", "field name is missing"),
            ("amount>ten", "\"ten\" is not a number"),
            ("amount>", "is not a number"),
            ("type>3", "compares measures"),
            ("path~", "needs the text"),
        ] {
            let e = parse_filter(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn times_windows_and_breakdowns() {
        let now = Timestamp::from_millis(1_700_000_000_000).unwrap();
        assert_eq!(time_spec(None, None, None), Ok(TimeSpec::All));
        assert_eq!(time_spec(Some("all"), None, None), Ok(TimeSpec::All));
        assert_eq!(
            time_spec(Some("48h"), None, None),
            Ok(TimeSpec::Window(48 * 3_600_000))
        );
        assert!(
            time_spec(Some("5s"), None, None)
                .unwrap_err()
                .contains("shorter than 10s")
        );
        assert!(time_spec(Some("1h"), Some("2023-04-01"), None).is_err());
        let day = time_spec(None, Some("2023-04-01"), Some("2023-04-02")).unwrap();
        let range = day.resolve(now);
        assert_eq!(range.from, 1_680_307_200_000);
        assert_eq!(range.to - range.from, 86_400_000);
        let open = time_spec(None, Some("2023-04-01T09:00:00Z"), None).unwrap();
        assert_eq!(open.resolve(now).to, now.millis() + 1, "to defaults to now");
        assert!(time_spec(None, Some("2023-04-02"), Some("2023-04-01")).is_err());
        assert!(
            time_spec(None, Some("yesterday"), None)
                .unwrap_err()
                .contains("2023-04-01T09:00:00Z")
        );

        assert_eq!(
            parse_breakdown("time:hour"),
            Ok(Breakdown::Time(Bucket::Hour))
        );
        assert_eq!(parse_breakdown("type"), Ok(Breakdown::Field(Field::Type)));
        assert!(parse_breakdown("time:week").is_err());
        let text = QueryText {
            by: vec!["a,b,c,d".into()],
            ..QueryText::default()
        };
        assert!(text.to_query(now).unwrap_err().contains("at most 3"));
        let text = QueryText {
            by: vec!["region,time:day".into()],
            stats: vec!["p95:latency_ms".into(), "distinct:user".into()],
            order: Some("latency_ms_p95 asc".into()),
            ..QueryText::default()
        };
        let q = text.to_query(now).unwrap();
        assert_eq!(q.by.len(), 2);
        assert_eq!(q.stats[1].stat, Stat::Distinct);
        assert_eq!(q.stats[0].column(), "latency_ms_p95");
        assert!(!q.order.unwrap().descending);
        assert!(parse_stat("p97:x").unwrap_err().contains("p95"));
        assert!(parse_stat("p95").is_err());
    }
}
