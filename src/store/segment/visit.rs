//! Reading a segment's events in place, for scans: each event is borrowed
//! from the stored bytes ([`EventRef`]), so nothing is allocated per event.
//! It keeps the chunk's dictionary exactly as [`super::decode`] does.

use super::{DICT_MAX, TAG_FLOAT, TAG_INT, TAG_TEXT, VERSION, read_bytes, read_varint, unzigzag};
use crate::event::{EventRef, Timestamp, ValueRef};

/// Calls `visit(seq, event)` for every event of a segment whose first
/// event is `first_seq`, each read in place from `data` (nothing is
/// allocated per event). With `kinds`, events of other types are skipped
/// unread; with `dimensions`, only those dimensions are read (measures
/// always are). Stops at the first corrupt byte.
pub fn visit(
    data: &[u8],
    first_seq: u64,
    kinds: Option<&[&str]>,
    dimensions: Option<&[&str]>,
    visit: &mut dyn FnMut(u64, &EventRef<'_>),
) -> Result<(), String> {
    let mut visitor = Visitor {
        data,
        at: 0,
        bytes: Vec::new(),
        strs: Vec::new(),
        values: Vec::new(),
    };
    let mut seq = first_seq;
    while visitor.at < data.len() {
        visitor.bytes.clear();
        visitor.strs.clear();
        visitor
            .chunk(&mut seq, kinds, dimensions, visit)
            .map_err(|what| format!("corrupt segment at byte {}: {what}", visitor.at))?;
    }
    Ok(())
}

/// A string as stored: a dictionary entry, or written out.
enum StrRef<'a> {
    Dict(usize),
    Literal(&'a [u8]),
}

/// Reads events in place. Dictionary strings are checked as UTF-8 once,
/// when first used; strings of skipped events never are.
struct Visitor<'a> {
    data: &'a [u8],
    at: usize,
    /// The chunk's dictionary, and each entry once checked.
    bytes: Vec<&'a [u8]>,
    strs: Vec<Option<&'a str>>,
    values: Vec<(&'a str, ValueRef<'a>)>,
}

impl<'a> Visitor<'a> {
    #[inline]
    fn varint(&mut self) -> Result<u64, &'static str> {
        // Most are one byte.
        if let Some(&b) = self.data.get(self.at)
            && b < 0x80
        {
            self.at += 1;
            return Ok(u64::from(b));
        }
        read_varint(self.data, &mut self.at)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        read_bytes(self.data, &mut self.at, n)
    }

    /// Reads a string reference: a literal (which may join the dictionary)
    /// or a dictionary index. Returns the dictionary index, or the literal.
    #[inline]
    fn string(&mut self) -> Result<StrRef<'a>, &'static str> {
        match self.varint()? {
            0 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                let bytes = self.bytes(len)?;
                if self.bytes.len() < DICT_MAX {
                    self.bytes.push(bytes);
                    self.strs.push(None);
                    Ok(StrRef::Dict(self.bytes.len() - 1))
                } else {
                    Ok(StrRef::Literal(bytes))
                }
            }
            i => {
                let index = usize::try_from(i - 1).map_err(|_| "bad string reference")?;
                if index >= self.bytes.len() {
                    return Err("bad string reference");
                }
                Ok(StrRef::Dict(index))
            }
        }
    }

    /// A string reference, as text.
    #[inline]
    fn str(&mut self) -> Result<&'a str, &'static str> {
        // The usual case first: a one-byte reference to a string checked before.
        if let Some(&b) = self.data.get(self.at)
            && (1..0x80).contains(&b)
            && let Some(Some(s)) = self.strs.get(usize::from(b) - 1)
        {
            self.at += 1;
            return Ok(s);
        }
        match self.string()? {
            StrRef::Dict(index) => match self.strs[index] {
                Some(s) => Ok(s),
                None => {
                    let s = std::str::from_utf8(self.bytes[index]).map_err(|_| "invalid UTF-8")?;
                    self.strs[index] = Some(s);
                    Ok(s)
                }
            },
            StrRef::Literal(bytes) => std::str::from_utf8(bytes).map_err(|_| "invalid UTF-8"),
        }
    }

    fn chunk(
        &mut self,
        seq: &mut u64,
        kinds: Option<&[&str]>,
        dimensions: Option<&[&str]>,
        visit: &mut dyn FnMut(u64, &EventRef<'_>),
    ) -> Result<(), &'static str> {
        if self.data.get(self.at) != Some(&VERSION) {
            return Err("unknown chunk version");
        }
        self.at += 1;
        let count = self.varint()?;
        let min_ts = unzigzag(self.varint()?);
        for _ in 0..count {
            let offset = i64::try_from(self.varint()?).map_err(|_| "timestamp out of range")?;
            let millis = min_ts
                .checked_add(offset)
                .and_then(Timestamp::from_millis)
                .ok_or("timestamp out of range")?
                .millis();
            let kind = self.str()?;
            if kinds.is_some_and(|ks| !ks.contains(&kind)) {
                self.skip_event()?;
                *seq += 1;
                continue;
            }
            let source = self.str()?;
            let n = self.varint()?;
            let mut values = std::mem::take(&mut self.values);
            values.clear();
            for _ in 0..n {
                let name = self.str()?;
                let value = match self.data.get(self.at).copied() {
                    Some(TAG_INT) => {
                        self.at += 1;
                        ValueRef::Measure(unzigzag(self.varint()?) as f64)
                    }
                    Some(TAG_FLOAT) => {
                        self.at += 1;
                        let mut raw = [0u8; 8];
                        raw.copy_from_slice(self.bytes(8)?);
                        ValueRef::Measure(f64::from_le_bytes(raw))
                    }
                    Some(TAG_TEXT) => {
                        self.at += 1;
                        if dimensions.is_some_and(|ds| !ds.contains(&name)) {
                            // Not asked about: passed over, never checked.
                            self.string()?;
                            continue;
                        }
                        ValueRef::Dimension(self.str()?)
                    }
                    _ => return Err("unknown value tag"),
                };
                values.push((name, value));
            }
            visit(
                *seq,
                &EventRef {
                    millis,
                    kind,
                    source,
                    values: &values,
                },
            );
            self.values = values;
            *seq += 1;
        }
        Ok(())
    }

    /// Moves past the rest of an event (after its type), keeping the
    /// dictionary as it grows.
    fn skip_event(&mut self) -> Result<(), &'static str> {
        self.string()?;
        let n = self.varint()?;
        for _ in 0..n {
            self.string()?;
            let tag = *self.data.get(self.at).ok_or("truncated")?;
            self.at += 1;
            match tag {
                TAG_INT => {
                    self.varint()?;
                }
                TAG_FLOAT => {
                    self.bytes(8)?;
                }
                TAG_TEXT => {
                    self.string()?;
                }
                _ => return Err("unknown value tag"),
            }
        }
        Ok(())
    }
}
