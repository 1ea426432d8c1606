//! Just enough JSON writing for `status --json`, without serde_json.
//!
//! The agent must stay under 1 MiB and carries no JSON crate, so machine
//! output is written by hand. The only part that is easy to get wrong is the
//! string escaper; everything else here exists so that commas and quotes
//! cannot be forgotten by callers. This module depends on nothing else in the
//! crate so it can be shared by any module that needs JSON output.
//!
//! Two styles: [`Object`] builds flat objects value by value (status), and
//! [`JsonWriter`] streams nested, pretty-printed documents (facts).

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

/// Builds one pretty-printed JSON document.
#[derive(Debug, Default)]
pub struct JsonWriter {
    out: String,
    depth: usize,
    /// Nothing written yet in the innermost object or array.
    fresh: bool,
}

impl JsonWriter {
    /// An empty document; start it with [`JsonWriter::open_object`].
    pub fn new() -> Self {
        JsonWriter {
            fresh: true,
            ..JsonWriter::default()
        }
    }

    /// Comma, newline and indent before a value, then `"key": ` when in an
    /// object (`key` is `None` inside arrays and at the top).
    fn start(&mut self, key: Option<&str>) {
        if self.depth > 0 {
            if !self.fresh {
                self.out.push(',');
            }
            self.out.push('\n');
            self.indent();
        }
        self.fresh = false;
        if let Some(key) = key {
            write_str(&mut self.out, key);
            self.out.push_str(": ");
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, key: Option<&str>, bracket: char) {
        self.start(key);
        self.out.push(bracket);
        self.depth += 1;
        self.fresh = true;
    }

    fn close(&mut self, bracket: char) {
        self.depth = self.depth.saturating_sub(1);
        if !self.fresh {
            self.out.push('\n');
            self.indent();
        }
        self.out.push(bracket);
        self.fresh = false;
    }

    /// `{`, as a field `key` of the enclosing object or (`None`) an array item.
    pub fn open_object(&mut self, key: Option<&str>) {
        self.open(key, '{');
    }

    /// `}`.
    pub fn close_object(&mut self) {
        self.close('}');
    }

    /// `[`, as a field or an array item.
    pub fn open_array(&mut self, key: Option<&str>) {
        self.open(key, '[');
    }

    /// `]`.
    pub fn close_array(&mut self) {
        self.close(']');
    }

    /// A string, or `null` for `None`.
    pub fn string(&mut self, key: Option<&str>, value: Option<&str>) {
        self.start(key);
        match value {
            Some(v) => write_str(&mut self.out, v),
            None => self.out.push_str("null"),
        }
    }

    /// An unsigned integer, or `null` for `None`.
    pub fn number(&mut self, key: Option<&str>, value: Option<u64>) {
        self.start(key);
        match value {
            Some(v) => self.out.push_str(&v.to_string()),
            None => self.out.push_str("null"),
        }
    }

    /// `null`.
    pub fn null(&mut self, key: Option<&str>) {
        self.start(key);
        self.out.push_str("null");
    }

    /// `true` or `false`.
    pub fn boolean(&mut self, key: Option<&str>, value: bool) {
        self.start(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// An array of strings.
    pub fn strings<S: AsRef<str>>(&mut self, key: Option<&str>, items: &[S]) {
        self.open_array(key);
        for item in items {
            self.string(None, Some(item.as_ref()));
        }
        self.close_array();
    }

    /// The document, with a trailing newline.
    pub fn finish(mut self) -> String {
        self.out.push('\n');
        self.out
    }
}

/// Writes `s` as a quoted JSON string (RFC 8259 section 7).
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
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

#[cfg(test)]
mod writer_tests {
    use super::*;

    fn s(text: &str) -> String {
        let mut out = String::new();
        write_str(&mut out, text);
        out
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(s("plain"), r#""plain""#);
        assert_eq!(s(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(s("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(
            s("\u{0}\u{1f}\u{1b}\u{7f}"),
            "\"\\u0000\\u001f\\u001b\u{7f}\""
        );
        assert_eq!(s("Grüße ✓ /"), "\"Grüße ✓ /\"");
        assert_eq!(s(r"initrd=\EFI\proxmox"), r#""initrd=\\EFI\\proxmox""#);
    }

    #[test]
    fn nested_values_are_pretty_printed() {
        let mut w = JsonWriter::new();
        w.open_object(None);
        w.string(Some("name"), Some("x"));
        w.string(Some("missing"), None);
        w.strings::<&str>(Some("empty"), &[]);
        w.open_array(Some("list"));
        w.open_object(None);
        w.number(Some("n"), Some(1));
        w.boolean(Some("ok"), true);
        w.close_object();
        w.number(None, None);
        w.close_array();
        w.open_object(Some("none"));
        w.close_object();
        w.close_object();
        assert_eq!(
            w.finish(),
            "{\n  \"name\": \"x\",\n  \"missing\": null,\n  \"empty\": [],\n  \"list\": [\n    {\n      \"n\": 1,\n      \"ok\": true\n    },\n    null\n  ],\n  \"none\": {}\n}\n"
        );
    }

    #[test]
    fn a_lone_value_is_a_document() {
        let mut w = JsonWriter::new();
        w.strings(None, &["a"]);
        assert_eq!(w.finish(), "[\n  \"a\"\n]\n");
    }
}
