//! A tiny JSON writer for the agent's `--json` output.
//!
//! The agent has no JSON crate (it must stay under 1 MiB). Going through
//! serde (`T` → `toml::Value` → JSON) was measured at about 31 KB of release
//! binary for `facts --json`, writing the fields by hand at under 8 KB. So
//! callers write fields in order; the writer handles commas, indentation
//! (two spaces) and string escaping.

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

/// Writes `s` as a JSON string (RFC 8259 section 7): `"` and `\` escaped,
/// control characters U+0000..U+001F as short escapes or `\u00XX`; all
/// other characters, non-ASCII included, as UTF-8.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[n >> 4]));
                out.push(char::from(HEX[n & 15]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
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
