//! The on-disk encoding of a run of events: one SQLite row holds a segment
//! of consecutive events instead of one row per event.
//!
//! A segment is a concatenation of chunks, each self-contained, so the
//! writer can join the chunks of several requests without re-encoding them.
//! A chunk is:
//!
//! ```text
//! version:u8  count:varint  min_ts:zigzag
//! count x { ts-min_ts:varint  type:str  source:str  nfields:varint
//!           nfields x { name:str  tag:u8  (f64 LE | zigzag integer | str) } }
//! ```
//!
//! where `str` is a reference into the chunk's dictionary: `0` then a
//! length-prefixed UTF-8 string (which joins the dictionary while it has
//! room), or `i` for the dictionary's `i`-th string. Repeated names, types,
//! sources and dimension values cost a byte or two each.

mod visit;
pub use visit::visit;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use crate::event::{Event, EventType, Limits, Text, Timestamp, Value};

const VERSION: u8 = 1;
/// Strings remembered per chunk; rarer strings are written out each time.
const DICT_MAX: usize = 4096;

const TAG_FLOAT: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_TEXT: u8 = 2;

/// Integers up to this magnitude are exact in an `f64` and stored as varints.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Events encoded for storage, with what the store indexes about them.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub count: usize,
    pub min_ts: i64,
    pub max_ts: i64,
    /// The distinct event types, sorted.
    pub types: Vec<EventType>,
}

impl Chunk {
    /// Appends another chunk's events after this one's.
    pub fn extend(&mut self, other: &Chunk) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min_ts = other.min_ts;
            self.max_ts = other.max_ts;
        }
        self.data.extend_from_slice(&other.data);
        self.count += other.count;
        self.min_ts = self.min_ts.min(other.min_ts);
        self.max_ts = self.max_ts.max(other.max_ts);
        for kind in &other.types {
            if let Err(at) = self.types.binary_search(kind) {
                self.types.insert(at, kind.clone());
            }
        }
    }

    /// The types as stored in the index column: `,a,b,`, so that a type is
    /// found with `instr(types, ',a,')`.
    pub fn types_column(&self) -> String {
        let mut out = String::from(",");
        for kind in &self.types {
            out.push_str(kind.as_str());
            out.push(',');
        }
        out
    }
}

/// Encodes events as one chunk.
pub fn encode(events: &[Event]) -> Chunk {
    let Some(min_ts) = events.iter().map(|e| e.timestamp.millis()).min() else {
        return Chunk::default();
    };
    let max_ts = events
        .iter()
        .map(|e| e.timestamp.millis())
        .max()
        .unwrap_or(min_ts);
    let mut out = Vec::with_capacity(16 + events.len() * 32);
    out.push(VERSION);
    put_varint(&mut out, events.len() as u64);
    put_varint(&mut out, zigzag(min_ts));
    // One event (a single-event request) is written with every string in
    // full: repeats within one event are rare, and building the table cost
    // 2,000 instructions, as much as the rest of its encoding.
    let shared = events.len() > 1;
    let mut dict = Dict {
        shared,
        // Sized for a few strings per event up front, so that small chunks
        // never grow it; larger ones grow as they need.
        by_text: HashMap::with_capacity_and_hasher(
            if shared {
                (events.len() * 6).min(64)
            } else {
                0
            },
            Default::default(),
        ),
        // A request of a few events has few repeats: not worth the table.
        by_address: if events.len() >= 4 {
            vec![(0, 0, 0); ADDRESS_SLOTS]
        } else {
            Vec::new()
        },
    };
    let mut types: Vec<EventType> = Vec::new();
    for event in events {
        put_varint(&mut out, (event.timestamp.millis() - min_ts) as u64);
        put_str(&mut out, &mut dict, event.kind.as_str());
        put_str(&mut out, &mut dict, &event.source);
        put_varint(&mut out, event.values.len() as u64);
        for (name, value) in &event.values {
            put_str(&mut out, &mut dict, name);
            match value {
                Value::Measure(x) if x.fract() == 0.0 && x.abs() <= MAX_EXACT_INT => {
                    out.push(TAG_INT);
                    put_varint(&mut out, zigzag(*x as i64));
                }
                Value::Measure(x) => {
                    out.push(TAG_FLOAT);
                    out.extend_from_slice(&x.to_le_bytes());
                }
                Value::Dimension(s) => {
                    out.push(TAG_TEXT);
                    put_str(&mut out, &mut dict, s);
                }
            }
        }
        // Mostly a few types, equal ones sharing one allocation: a pointer
        // check finds them; many types fall back to a search of the sorted list.
        let known = if types.len() <= 8 {
            types.contains(&event.kind)
        } else {
            types.binary_search(&event.kind).is_ok()
        };
        if !known && let Err(at) = types.binary_search(&event.kind) {
            types.insert(at, event.kind.clone());
        }
    }
    Chunk {
        data: out,
        count: events.len(),
        min_ts,
        max_ts,
        types,
    }
}

/// Decodes every chunk of a segment, in order.
pub fn decode(mut data: &[u8]) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    let total = data.len();
    while !data.is_empty() {
        let mut reader = Reader {
            data,
            at: 0,
            dict: Vec::new(),
        };
        reader.chunk(&mut events).map_err(|what| {
            format!(
                "corrupt segment at byte {}: {what}",
                total - data.len() + reader.at
            )
        })?;
        data = &data[reader.at..];
    }
    Ok(events)
}

/// A varint at `at`, moving past it.
fn read_varint(data: &[u8], at: &mut usize) -> Result<u64, &'static str> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at).ok_or("truncated")?;
        *at += 1;
        x |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(x);
        }
    }
    Err("varint too long")
}

/// `n` bytes at `at`, moving past them.
fn read_bytes<'a>(data: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], &'static str> {
    let end = at.checked_add(n).ok_or("length out of range")?;
    let out = data.get(*at..end).ok_or("truncated")?;
    *at = end;
    Ok(out)
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// The strings of a chunk being written, each with its dictionary number.
struct Dict<'a> {
    /// Whether repeated strings are written as references at all.
    shared: bool,
    by_text: HashMap<&'a str, u64>,
    /// The latest strings found, by address and length: the events of one
    /// body share their repeated strings (`event::fast::Interner`), so most
    /// are found here without hashing or comparing their text. Every string
    /// is borrowed for the whole encoding, so an address and a length name
    /// one text. A number of 0 marks an empty slot; no slots, no table.
    by_address: Vec<(usize, usize, u64)>,
}

const ADDRESS_SLOTS: usize = 64;

fn put_str<'a>(out: &mut Vec<u8>, dict: &mut Dict<'a>, s: &'a str) {
    let address = s.as_ptr() as usize;
    let slot = ((address >> 4) ^ (address >> 10)) % ADDRESS_SLOTS;
    if let Some(&(known_address, known_len, number)) = dict.by_address.get(slot)
        && number != 0
        && known_address == address
        && known_len == s.len()
    {
        put_varint(out, number);
        return;
    }
    if !dict.shared {
        put_literal(out, s);
        return;
    }
    let number = match dict.by_text.get(s) {
        Some(&number) => {
            put_varint(out, number);
            number
        }
        None => {
            put_literal(out, s);
            if dict.by_text.len() == DICT_MAX {
                return;
            }
            let next = dict.by_text.len() as u64 + 1;
            dict.by_text.insert(s, next);
            next
        }
    };
    if let Some(entry) = dict.by_address.get_mut(slot) {
        *entry = (address, s.len(), number);
    }
}

/// A string written in full: 0, its length, its bytes. The reader numbers
/// it as the next dictionary entry, whether or not it is referred to later.
fn put_literal(out: &mut Vec<u8>, s: &str) {
    put_varint(out, 0);
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    /// Each dictionary string, with the shared text and the event type it
    /// makes, once needed.
    dict: Vec<DictEntry<'a>>,
}

struct DictEntry<'a> {
    s: &'a str,
    text: Option<Text>,
    kind: Option<EventType>,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.data.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        read_varint(self.data, &mut self.at)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        read_bytes(self.data, &mut self.at, n)
    }

    /// Reads a string reference; returns its dictionary index, if any, too.
    fn str_ref(&mut self) -> Result<(&'a str, Option<usize>), &'static str> {
        match self.varint()? {
            0 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                let s = std::str::from_utf8(self.bytes(len)?).map_err(|_| "invalid UTF-8")?;
                if self.dict.len() < DICT_MAX {
                    self.dict.push(DictEntry {
                        s,
                        text: None,
                        kind: None,
                    });
                    Ok((s, Some(self.dict.len() - 1)))
                } else {
                    Ok((s, None))
                }
            }
            i => {
                let index = usize::try_from(i - 1).map_err(|_| "bad string reference")?;
                let entry = self.dict.get(index).ok_or("bad string reference")?;
                Ok((entry.s, Some(index)))
            }
        }
    }

    fn event_type(&mut self) -> Result<EventType, &'static str> {
        let (s, index) = self.str_ref()?;
        if let Some(kind) = index.and_then(|i| self.dict[i].kind.clone()) {
            return Ok(kind);
        }
        let kind = EventType::parse(s, &Limits::unbounded()).map_err(|_| "invalid event type")?;
        if let Some(i) = index {
            self.dict[i].kind = Some(kind.clone());
        }
        Ok(kind)
    }

    /// A string, shared by every use of one dictionary entry.
    fn text(&mut self) -> Result<Text, &'static str> {
        let (s, index) = self.str_ref()?;
        let Some(entry) = index.map(|i| &mut self.dict[i]) else {
            return Ok(s.into());
        };
        Ok(entry.text.get_or_insert_with(|| s.into()).clone())
    }

    fn chunk(&mut self, events: &mut Vec<Event>) -> Result<(), &'static str> {
        if self.byte()? != VERSION {
            return Err("unknown chunk version");
        }
        let count = self.varint()?;
        let min_ts = unzigzag(self.varint()?);
        // Each event takes at least four bytes: a bound on what to reserve.
        events.reserve((count as usize).min(self.data.len() / 4));
        for _ in 0..count {
            let offset = i64::try_from(self.varint()?).map_err(|_| "timestamp out of range")?;
            let timestamp = min_ts
                .checked_add(offset)
                .and_then(Timestamp::from_millis)
                .ok_or("timestamp out of range")?;
            let kind = self.event_type()?;
            let source = self.text()?;
            let n = self.varint()?;
            let mut values = Vec::with_capacity((n as usize).min(256));
            for _ in 0..n {
                let name = self.text()?;
                let value = match self.byte()? {
                    TAG_INT => Value::Measure(unzigzag(self.varint()?) as f64),
                    TAG_FLOAT => {
                        let bytes = self.bytes(8)?;
                        let mut raw = [0u8; 8];
                        raw.copy_from_slice(bytes);
                        Value::Measure(f64::from_le_bytes(raw))
                    }
                    TAG_TEXT => Value::Dimension(self.text()?),
                    _ => return Err("unknown value tag"),
                };
                values.push((name, value));
            }
            events.push(Event {
                timestamp,
                source,
                kind,
                values,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event_str;

    fn event(text: &str) -> Event {
        parse_event_str(text, &Limits::default(), Timestamp::now()).unwrap()
    }

    #[test]
    fn round_trips_and_joins_chunks() {
        let a = vec![
            event(
                r#"{"timestamp":"2023-04-01T12:00:00Z","source":"web","type":"sales","values":{"amount":150,"units":5,"region":"North America","price":9.99}}"#,
            ),
            event(
                r#"{"timestamp":"2023-04-01T11:59:00.5Z","source":"web","type":"sales","values":{"amount":-3,"region":"North America","big":1e300}}"#,
            ),
            event(r#"{"timestamp":1,"type":"users","values":{}}"#),
        ];
        let b = vec![event(
            r#"{"type":"x.y-z_1","source":"é","values":{"n":{"d":"ü"}}}"#,
        )];
        let mut chunk = encode(&a);
        assert_eq!(chunk.count, 3);
        assert_eq!(chunk.min_ts, 1000);
        assert_eq!(chunk.types_column(), ",sales,users,");
        let chunk_b = encode(&b);
        chunk.extend(&chunk_b);
        assert_eq!(chunk.count, 4);
        assert_eq!(chunk.max_ts, chunk_b.max_ts);
        assert_eq!(chunk.types_column(), ",sales,users,x.y-z_1,");
        let back = decode(&chunk.data).unwrap();
        assert_eq!(back, [a, b].concat());
    }

    #[test]
    fn visiting_in_place_sees_what_decoding_gives() {
        let events: Vec<Event> = (0..50)
            .map(|i| event(&format!(r#"{{"type": "t{}", "timestamp": {}, "values": {{"a": {i}, "b": "v{}", "c": 1.5}}}}"#, i % 3, 1_700_000_000_000i64 + i * 7, i % 4)))
            .collect();
        let mut data = encode(&events[..20]);
        data.extend(&encode(&events[20..]));
        let mut seen = Vec::new();
        visit(&data.data, 100, None, None, &mut |seq, e| {
            use crate::event::EventFields;
            let owned = &events[(seq - 100) as usize];
            assert_eq!(e.millis(), owned.millis());
            assert_eq!(e.kind(), owned.kind());
            assert_eq!(e.source(), owned.source());
            let mut values = Vec::new();
            e.for_each_value(|n, v| values.push(format!("{n}={v:?}")));
            let mut expected = Vec::new();
            owned.for_each_value(|n, v| expected.push(format!("{n}={v:?}")));
            assert_eq!(values, expected);
            seen.push(seq);
        })
        .unwrap();
        assert_eq!(seen, (100..150).collect::<Vec<_>>());
        assert!(
            visit(
                &data.data[..data.data.len() - 3],
                0,
                None,
                None,
                &mut |_, _| {}
            )
            .is_err()
        );
        // Skipping types keeps the dictionary right for the events after.
        use crate::event::EventFields;
        let mut kinds = Vec::new();
        visit(
            &data.data,
            0,
            Some(&["t1"]),
            Some(&["zz"]),
            &mut |seq, e| {
                assert_eq!(events[seq as usize].kind.as_str(), e.kind);
                kinds.push(e.kind.to_string());
                let mut values = 0;
                e.for_each_value(|_, _| values += 1);
                assert_eq!(
                    values, 2,
                    "the measures a and c; the dimension b is not asked for"
                );
            },
        )
        .unwrap();
        assert_eq!(kinds.len(), 17);
    }

    #[test]
    fn repeated_strings_are_written_once() {
        let one = event(
            r#"{"type":"sales","source":"web-app","values":{"amount":150,"region":"North America"}}"#,
        );
        let many = vec![one; 1000];
        let chunk = encode(&many);
        assert!(chunk.data.len() < 1000 * 12, "{} bytes", chunk.data.len());
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let chunk = encode(&[event(r#"{"type":"sales","values":{"a":1,"b":"x"}}"#)]);
        for cut in 0..chunk.data.len() {
            assert!(
                decode(&chunk.data[..cut]).is_ok() == (cut == 0),
                "cut at {cut}"
            );
        }
        let mut bad = chunk.data.clone();
        bad[0] = 9;
        assert!(
            decode(&bad)
                .unwrap_err()
                .contains("byte 1: unknown chunk version")
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<f64>()
                    .prop_filter("finite", |x| x.is_finite())
                    .prop_map(Value::Measure),
                (-1_000_000i64..1_000_000).prop_map(|x| Value::Measure(x as f64)),
                "\\PC{0,12}".prop_map(|s| Value::Dimension(s.into())),
            ]
        }

        fn event() -> impl Strategy<Value = Event> {
            (
                0i64..Timestamp::MAX,
                "[a-c]{1,3}",
                "\\PC{0,8}",
                prop::collection::btree_map("[a-e]{1,4}", value(), 0..6),
            )
                .prop_map(|(ts, kind, source, values)| Event {
                    timestamp: Timestamp::from_millis(ts).unwrap(),
                    source: source.into(),
                    kind: EventType::parse(&kind, &Limits::default()).unwrap(),
                    values: values.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                })
        }

        proptest! {
            #[test]
            fn decode_inverts_encode(events in prop::collection::vec(event(), 0..40), split in 0usize..40) {
                let split = split.min(events.len());
                let mut chunk = encode(&events[..split]);
                chunk.extend(&encode(&events[split..]));
                prop_assert_eq!(chunk.count, events.len());
                prop_assert_eq!(decode(&chunk.data).unwrap(), events);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = decode(&bytes);
                let _ = visit(&bytes, 0, None, None, &mut |_, _| {});
                let _ = visit(&bytes, 0, Some(&["a"]), Some(&[]), &mut |_, _| {});
            }
        }
    }
}
