//! Text from events on its way to a terminal or a file. Anyone who can send
//! events chooses these strings, so an escape sequence (`ESC[31m`, a title
//! change, a cursor move), a tab or a newline in a value must never reach
//! the operator's terminal or break a row. Control characters are shown
//! visibly instead: C0 and DEL, the C1 range (which some terminals read as
//! escapes too), and the invisible bidirectional and line-separator marks
//! that can make text display as something it is not.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not be written to a terminal as it is.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn escape(s: &str, escape_backslash: bool) -> Cow<'_, str> {
    if !s
        .chars()
        .any(|c| is_unsafe(c) || (escape_backslash && c == '\\'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' if escape_backslash => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && is_unsafe(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// For people: control characters as `\t`, `\n`, `\x1b`, `\u{202e}`.
pub fn visible(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// For TSV, which has no quoting: the same escapes, and `\\` for a
/// backslash, so the original text can be recovered.
pub fn tsv(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// JSON text with every unsafe character inside its strings written as a
/// `\uXXXX` escape: the same JSON value, safe on a terminal. (serde_json
/// already escapes C0 controls; this covers DEL, C1 and the invisible marks.)
pub fn json(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            // Outside strings, serde_json writes only ASCII whitespace
            // between tokens, and only when pretty-printing: keep that.
            if matches!(c, '\n' | '\t' | '\r') {
                out.push(c);
            } else {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible() {
        assert_eq!(visible("plain text é"), "plain text é");
        assert!(matches!(visible("plain"), Cow::Borrowed(_)));
        assert_eq!(visible("a\x1b[31mred"), "a\\x1b[31mred");
        assert_eq!(visible("tab\there\nnew"), "tab\\there\\nnew");
        assert_eq!(visible("\u{9b}2J"), "\\u{009b}2J");
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("a\\b"), "a\\b");
        assert_eq!(visible("\x7f"), "\\x7f");
    }

    #[test]
    fn tsv_escapes_are_reversible() {
        assert_eq!(tsv("a\tb\\n"), "a\\tb\\\\n");
        assert_eq!(tsv("x\ny"), "x\\ny");
    }

    #[test]
    fn json_stays_the_same_value() {
        let value = serde_json::json!({"k\u{9b}": "a\u{7f}b\u{202e}c\x1b"});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let safe = json(&text);
        assert!(
            !safe.chars().any(|c| is_unsafe(c) && !matches!(c, '\n')),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }
}
