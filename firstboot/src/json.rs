//! Just enough JSON writing for `status --json`, without serde_json.
//!
//! The agent must stay under 1 MiB and carries no JSON crate, so machine
//! output is written by hand. The only part that is easy to get wrong is the
//! string escaper; everything else here exists so that commas and quotes
//! cannot be forgotten by callers. This module depends on nothing else in the
//! crate so it can be shared by any module that needs JSON output.

use std::fmt::Write as _;

/// Appends `s` to `out` escaped for the inside of a JSON string (RFC 8259):
/// `"` and `\` are escaped, control characters (U+0000 to U+001F) become
/// `\n`, `\t`, ... or `\u00XX`. U+2028 and U+2029 are escaped too so the
/// output is also a valid JavaScript literal; everything else is copied.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `s` escaped, without the surrounding quotes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// `s` as a JSON string literal, quotes included.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    escape_into(&mut out, s);
    out.push('"');
    out
}

/// A JSON array of already-rendered JSON values.
pub fn array<I>(items: I) -> String
where
    I: IntoIterator<Item = String>,
{
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
    out
}

/// Builds one JSON object, member by member, in the order given.
#[derive(Debug, Clone)]
pub struct Object {
    out: String,
    empty: bool,
}

impl Default for Object {
    fn default() -> Self {
        Self::new()
    }
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Object {
            out: String::from("{"),
            empty: true,
        }
    }

    /// Adds a member whose value is already valid JSON.
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        escape_into(&mut self.out, key);
        self.out.push_str("\":");
        self.out.push_str(json);
        self
    }

    /// Adds a string member.
    pub fn str(self, key: &str, value: &str) -> Self {
        let value = string(value);
        self.raw(key, &value)
    }

    /// Adds a string member, or `null`.
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// Adds an integer member (any integer type).
    pub fn int(self, key: &str, value: impl Into<i128>) -> Self {
        let value = value.into().to_string();
        self.raw(key, &value)
    }

    /// Adds an integer member, or `null`.
    pub fn opt_int(self, key: &str, value: Option<impl Into<i128>>) -> Self {
        match value {
            Some(v) => self.int(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// Adds a boolean member.
    pub fn bool(self, key: &str, value: bool) -> Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// The finished object.
    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strict decoder for one JSON string literal, to check that what
    /// [`string`] writes reads back as the input. Returns `None` on anything
    /// RFC 8259 forbids (raw control characters, bad escapes, trailing text).
    fn decode(lit: &str) -> Option<String> {
        let inner = lit.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return None,
                c if (c as u32) < 0x20 => return None,
                '\\' => match chars.next()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        if hex.len() != 4 {
                            return None;
                        }
                        let code = u32::from_str_radix(&hex, 16).ok()?;
                        // The escaper never writes surrogate pairs.
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        Some(out)
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("l1\nl2\r\t"), r"l1\nl2\r\t");
        assert_eq!(
            escape("\u{0}\u{1}\u{8}\u{c}\u{1f}"),
            r"\u0000\u0001\b\f\u001f"
        );
        assert_eq!(escape("\u{7f}é→😀"), "\u{7f}é→😀");
        assert_eq!(escape("\u{2028}\u{2029}"), r"\u2028\u2029");
        assert_eq!(string(""), r#""""#);
        assert_eq!(string("/"), r#""/""#);
    }

    #[test]
    fn every_char_class_round_trips() {
        let mut all: String = (0u32..0x300).filter_map(char::from_u32).collect();
        all.push_str("\u{2028}\u{2029}\u{fffd}\u{10ffff}😀 tail\\\"");
        let lit = string(&all);
        assert_eq!(decode(&lit).as_deref(), Some(all.as_str()));
        // No raw control character survives.
        assert!(!lit.chars().any(|c| (c as u32) < 0x20));
    }

    #[test]
    fn the_test_decoder_is_strict() {
        assert_eq!(decode("\"a\nb\""), None);
        assert_eq!(decode(r#""a"b""#), None);
        assert_eq!(decode(r#""\x""#), None);
        assert_eq!(decode(r#""\u00""#), None);
    }

    #[test]
    fn objects_and_arrays() {
        let o = Object::new()
            .str("name", "x\"y")
            .int("n", -3i32)
            .int("big", u64::MAX)
            .opt_int("none", None::<i32>)
            .opt_str("s", Some("v"))
            .opt_str("nil", None)
            .bool("ok", true)
            .raw("list", &array(["1".to_string(), string("two")]))
            .finish();
        assert_eq!(
            o,
            r#"{"name":"x\"y","n":-3,"big":18446744073709551615,"none":null,"s":"v","nil":null,"ok":true,"list":[1,"two"]}"#
        );
        assert_eq!(Object::new().finish(), "{}");
        assert_eq!(array(Vec::new()), "[]");
        assert_eq!(Object::new().str("k\n", "").finish(), r#"{"k\n":""}"#);
    }
}
