//! The fast path of parsing: JSON text straight into an [`Event`], without
//! building a `serde_json::Value` first.
//!
//! It accepts exactly what the precise path in the parent module accepts,
//! and gives up (returns `None`) on anything unusual: an invalid event,
//! escaped keys, a key given twice. The caller then runs the precise path,
//! which decides and explains. So this module never has to word an error.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::{Event, EventType, Limits, Text, Timestamp, Value};

/// Strings met while parsing one body, so that the events repeating them
/// share one allocation: event types (each also checked once), field names,
/// and short sources and dimension values. Bounded: past its limits a
/// string is simply allocated on its own.
#[derive(Default)]
pub struct Interner {
    types: Vec<EventType>,
    /// Field names met in this body.
    names: Vec<Text>,
    /// Per event type (row 0: the type is not known yet, as when `values`
    /// comes before `type`), for each field position, the index in `names`
    /// of the name the latest such event had there: events of one type
    /// repeat their names in order, so this settles most lookups with one
    /// comparison.
    by_position: Vec<Vec<usize>>,
    /// The row of `by_position` of the event being parsed.
    row: usize,
    /// Position of the next field of the event being parsed.
    position: usize,
    texts: HashSet<Text, foldhash::fast::RandomState>,
}

/// Types remembered per body; a body with more distinct types still parses.
const CACHED_TYPES: usize = 16;
/// Field names remembered per body.
const CACHED_NAMES: usize = 64;
/// Sources and dimension values remembered per body, and the longest one.
const CACHED_TEXTS: usize = 1024;
const CACHED_TEXT_LEN: usize = 64;

impl Interner {
    /// Where the next event starts.
    fn start_event(&mut self) {
        self.row = 0;
        self.position = 0;
    }

    fn kind(&mut self, s: &str, limits: &Limits) -> Option<EventType> {
        if let Some(i) = self.types.iter().position(|k| k.as_str() == s) {
            self.row = i + 1;
            return Some(self.types[i].clone());
        }
        let kind = EventType::parse(s, limits).ok()?;
        if self.types.len() < CACHED_TYPES {
            self.types.push(kind.clone());
            self.row = self.types.len();
        }
        Some(kind)
    }

    /// The name of the next field of the current event, or `None` if it is
    /// not a valid one. A name met before was valid then: it is not checked again.
    fn name(&mut self, s: &str, limits: &Limits) -> Option<Text> {
        let at = self.position;
        self.position += 1;
        let hint = self
            .by_position
            .get(self.row)
            .and_then(|row| row.get(at))
            .copied();
        if let Some(known) = hint.map(|i| &self.names[i]).filter(|known| &***known == s) {
            return Some(known.clone());
        }
        // Bodies mix kinds of events: look among every name met so far.
        let index = match self.names.iter().position(|known| &**known == s) {
            Some(i) => i,
            None => {
                if !valid_name(s, limits) {
                    return None;
                }
                let name: Text = s.into();
                if self.names.len() == CACHED_NAMES {
                    return Some(name);
                }
                self.names.push(name);
                self.names.len() - 1
            }
        };
        if self.by_position.len() <= self.row {
            self.by_position.resize_with(self.row + 1, Vec::new);
        }
        let row = &mut self.by_position[self.row];
        match row.get_mut(at) {
            Some(slot) => *slot = index,
            None if at < CACHED_NAMES => row.push(index),
            None => {}
        }
        Some(self.names[index].clone())
    }

    fn text(&mut self, s: &str) -> Text {
        if let Some(known) = self.texts.get(s) {
            return known.clone();
        }
        let text: Text = s.into();
        if s.len() <= CACHED_TEXT_LEN && self.texts.len() < CACHED_TEXTS {
            self.texts.insert(text.clone());
        }
        text
    }
}

/// Parses one event from JSON text, or `None` when the precise path must decide.
pub fn parse(text: &str, limits: &Limits, now: Timestamp, strings: &mut Interner) -> Option<Event> {
    // From text already known to be UTF-8, strings are not checked again.
    let mut de = serde_json::Deserializer::from_str(text);
    strings.start_event();
    let event = EventSeed {
        limits,
        now,
        strings,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    Some(event)
}

/// Any error: its text is never shown, the precise path words the real one.
#[derive(Debug)]
struct GiveUp;

fn give_up<E: de::Error>() -> E {
    E::custom(GiveUp)
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not on the fast path")
    }
}

struct EventSeed<'a> {
    limits: &'a Limits,
    now: Timestamp,
    strings: &'a mut Interner,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Event;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let (mut timestamp, mut source, mut kind, mut values) = (None, None, None, None);
        // A key given twice means "the last one wins" on the precise path: leave it to that.
        let mut seen = [false; 4];
        while let Some(key) = map.next_key::<&'de str>()? {
            let slot = match key {
                "timestamp" => 0,
                "source" => 1,
                "type" => 2,
                "values" => 3,
                _ => return Err(give_up()),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(give_up());
            }
            match slot {
                0 => timestamp = map.next_value_seed(TimestampSeed)?,
                1 => {
                    source = map.next_value_seed(SourceSeed {
                        limits: self.limits,
                        strings: self.strings,
                    })?
                }
                2 => {
                    let s = map.next_value::<&'de str>()?;
                    kind = Some(self.strings.kind(s, self.limits).ok_or_else(give_up)?);
                }
                _ => {
                    let mut out = Vec::new();
                    map.next_value_seed(ValuesSeed {
                        prefix: "",
                        limits: self.limits,
                        strings: self.strings,
                        out: &mut out,
                    })?;
                    values = Some(out);
                }
            }
        }
        let kind = kind.ok_or_else(give_up)?;
        let mut values = values.unwrap_or_default();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        if values.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(give_up());
        }
        Ok(Event {
            timestamp: timestamp.unwrap_or(self.now),
            source: source.unwrap_or_else(|| "unknown".into()),
            kind,
            values,
        })
    }
}

/// `timestamp`: an RFC 3339 string, Unix seconds or milliseconds, or null.
struct TimestampSeed;

impl<'de> DeserializeSeed<'de> for TimestampSeed {
    type Value = Option<Timestamp>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TimestampSeed {
    type Value = Option<Timestamp>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a timestamp")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Timestamp::rfc3339_millis(s)
            .and_then(Timestamp::from_millis)
            .map(Some)
            .ok_or_else(give_up)
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
        Timestamp::from_number(x).map(Some).ok_or_else(give_up)
    }

    fn visit_u64<E: de::Error>(self, x: u64) -> Result<Self::Value, E> {
        self.visit_f64(x as f64)
    }

    fn visit_i64<E: de::Error>(self, x: i64) -> Result<Self::Value, E> {
        self.visit_f64(x as f64)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `source`: a string or null.
struct SourceSeed<'a> {
    limits: &'a Limits,
    strings: &'a mut Interner,
}

impl<'de> DeserializeSeed<'de> for SourceSeed<'_> {
    type Value = Option<Text>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SourceSeed<'_> {
    type Value = Option<Text>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a source")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        if longer_than(s, self.limits.max_source_len) || s.chars().any(char::is_control) {
            return Err(give_up());
        }
        Ok(Some(self.strings.text(if s.is_empty() {
            "unknown"
        } else {
            s
        })))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A field name (dotted, once flattened) the precise path accepts.
fn valid_name(name: &str, limits: &Limits) -> bool {
    !name.is_empty()
        && !longer_than(name, limits.max_field_name_len)
        && !name.chars().any(char::is_control)
}

/// More than `max` characters? Counts only when the bytes could be.
fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// Keys per level remembered for the check for repeated keys; a larger
/// level holding a null or an object goes to the precise path.
const CHECKED_KEYS: usize = 16;

/// `values` (or an object nested in it), flattened into dotted names.
struct ValuesSeed<'a, 'o> {
    prefix: &'a str,
    limits: &'a Limits,
    strings: &'o mut Interner,
    out: &'o mut Vec<(Text, Value)>,
}

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of values")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Given twice, a key whose value is null or an object would not show
        // up as a repeated name after flattening: such levels are checked.
        let mut keys: [&'de str; CHECKED_KEYS] = [""; CHECKED_KEYS];
        let (mut n, mut check_keys) = (0, false);
        while let Some(key) = map.next_key::<&'de str>()? {
            if let Some(slot) = keys.get_mut(n) {
                *slot = key;
            }
            n += 1;
            let dotted;
            let name = if self.prefix.is_empty() {
                key
            } else {
                dotted = format!("{}.{key}", self.prefix);
                &dotted
            };
            let value = map.next_value_seed(FieldSeed {
                name,
                limits: self.limits,
                strings: self.strings,
                out: self.out,
            })?;
            match value {
                Some(value) => {
                    if self.out.len() == self.limits.max_fields {
                        return Err(give_up());
                    }
                    let name = self.strings.name(name, self.limits).ok_or_else(give_up)?;
                    self.out.push((name, value));
                }
                None if valid_name(name, self.limits) => check_keys = true,
                None => return Err(give_up()),
            }
        }
        // A key given twice at one level: the precise path keeps the last.
        if check_keys {
            if n > CHECKED_KEYS {
                return Err(give_up());
            }
            let keys = &mut keys[..n];
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(give_up());
            }
        }
        Ok(())
    }
}

/// One value: a measure, a dimension, nothing (null) or a nested object
/// (whose fields it adds to `out` itself).
struct FieldSeed<'a, 'o> {
    name: &'a str,
    limits: &'a Limits,
    strings: &'o mut Interner,
    out: &'o mut Vec<(Text, Value)>,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_, '_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_, '_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
        if !x.is_finite() {
            return Err(give_up());
        }
        Ok(Some(Value::Measure(x)))
    }

    fn visit_u64<E: de::Error>(self, x: u64) -> Result<Self::Value, E> {
        Ok(Some(Value::Measure(x as f64)))
    }

    fn visit_i64<E: de::Error>(self, x: i64) -> Result<Self::Value, E> {
        Ok(Some(Value::Measure(x as f64)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        if longer_than(s, self.limits.max_string_len) {
            return Err(give_up());
        }
        Ok(Some(Value::Dimension(self.strings.text(s))))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Some(Value::Dimension(self.strings.text(if b {
            "true"
        } else {
            "false"
        }))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ValuesSeed {
            prefix: self.name,
            limits: self.limits,
            strings: self.strings,
            out: self.out,
        }
        .visit_map(map)?;
        Ok(None)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Arrays are rejected; drain it so the error is ours, then give up.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(give_up())
    }
}
