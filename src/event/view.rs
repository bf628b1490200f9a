//! What a query reads of an event, whether it owns it ([`Event`]) or only
//! looks at it where it is stored ([`EventRef`], borrowed from a segment's
//! bytes, so that a scan of millions of events allocates nothing per event).

use super::{Event, Value};

/// A value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Measure(f64),
    Dimension(&'a str),
}

/// An event read in place: valid while its stored bytes are.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub millis: i64,
    pub kind: &'a str,
    pub source: &'a str,
    /// Sorted by name, as an event's values always are.
    pub values: &'a [(&'a str, ValueRef<'a>)],
}

/// The parts of an event a query looks at.
pub trait EventFields {
    fn millis(&self) -> i64;
    fn kind(&self) -> &str;
    fn source(&self) -> &str;
    /// The value named so.
    fn value(&self, name: &str) -> Option<ValueRef<'_>>;
    /// Every value, sorted by name.
    fn for_each_value(&self, f: impl FnMut(&str, ValueRef<'_>));
    /// The numeric values.
    fn measures(&self) -> impl Iterator<Item = (&str, f64)>;
    /// The text values.
    fn dimensions(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl EventFields for Event {
    fn millis(&self) -> i64 {
        self.timestamp.millis()
    }

    fn kind(&self) -> &str {
        self.kind.as_str()
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn value(&self, name: &str) -> Option<ValueRef<'_>> {
        let at = self
            .values
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()?;
        Some(borrow(&self.values[at].1))
    }

    fn for_each_value(&self, mut f: impl FnMut(&str, ValueRef<'_>)) {
        for (name, value) in &self.values {
            f(name, borrow(value));
        }
    }

    fn measures(&self) -> impl Iterator<Item = (&str, f64)> {
        Event::measures(self)
    }

    fn dimensions(&self) -> impl Iterator<Item = (&str, &str)> {
        Event::dimensions(self)
    }
}

fn borrow(value: &Value) -> ValueRef<'_> {
    match value {
        Value::Measure(x) => ValueRef::Measure(*x),
        Value::Dimension(s) => ValueRef::Dimension(s),
    }
}

impl EventFields for EventRef<'_> {
    fn millis(&self) -> i64 {
        self.millis
    }

    fn kind(&self) -> &str {
        self.kind
    }

    fn source(&self) -> &str {
        self.source
    }

    fn value(&self, name: &str) -> Option<ValueRef<'_>> {
        // Events have few values: a scan beats a search.
        self.values
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }

    fn for_each_value(&self, mut f: impl FnMut(&str, ValueRef<'_>)) {
        for (name, value) in self.values {
            f(name, *value);
        }
    }

    fn measures(&self) -> impl Iterator<Item = (&str, f64)> {
        self.values.iter().filter_map(|(n, v)| match v {
            ValueRef::Measure(x) => Some((*n, *x)),
            ValueRef::Dimension(_) => None,
        })
    }

    fn dimensions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().filter_map(|(n, v)| match v {
            ValueRef::Dimension(s) => Some((*n, *s)),
            ValueRef::Measure(_) => None,
        })
    }
}
