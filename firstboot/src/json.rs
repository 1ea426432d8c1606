//! A tiny JSON writer for the agent's `--json` output.
//!
//! The agent has no JSON crate (it must stay under 1 MiB), but every type it
//! reports already implements `Serialize` for TOML. So output goes
//! `T` → [`toml::Value`] → JSON text here. TOML has no null: a `None` field
//! is simply absent from the object, which `jq` reads as `null` anyway.
//! Table keys come out sorted (the `toml` crate's map is ordered).

use serde::Serialize;

/// Serialises `value` as pretty-printed JSON (two-space indent, trailing
/// newline). A value TOML cannot represent (which our types never are) gives
/// a JSON object with an `error` key instead of a panic.
pub fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = String::new();
    match toml::Value::try_from(value) {
        Ok(v) => write_value(&mut out, &v, 0),
        Err(e) => {
            out.push_str("{\"error\": ");
            write_str(&mut out, &format!("cannot serialise: {e}"));
            out.push('}');
        }
    }
    out.push('\n');
    out
}

/// Writes one TOML value as JSON at nesting depth `depth`.
pub fn write_value(out: &mut String, value: &toml::Value, depth: usize) {
    match value {
        toml::Value::String(s) => write_str(out, s),
        toml::Value::Integer(i) => out.push_str(&i.to_string()),
        // JSON has no NaN or infinity.
        toml::Value::Float(f) if f.is_finite() => out.push_str(&f.to_string()),
        toml::Value::Float(_) => out.push_str("null"),
        toml::Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        toml::Value::Datetime(d) => write_str(out, &d.to_string()),
        toml::Value::Array(items) if items.is_empty() => out.push_str("[]"),
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_value(out, item, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        toml::Value::Table(t) if t.is_empty() => out.push_str("{}"),
        toml::Value::Table(t) => {
            out.push('{');
            for (i, (k, v)) in t.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_str(out, k);
                out.push_str(": ");
                write_value(out, v, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
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
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
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
        assert_eq!(s("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        assert_eq!(s("Grüße ✓"), "\"Grüße ✓\"");
        assert_eq!(s(r"initrd=\EFI\proxmox"), r#""initrd=\\EFI\\proxmox""#);
    }

    #[test]
    fn nested_values_are_pretty_printed() {
        #[derive(Serialize)]
        struct Inner {
            n: u32,
            ok: bool,
        }
        #[derive(Serialize)]
        struct Outer {
            name: &'static str,
            missing: Option<String>,
            empty: Vec<u32>,
            list: Vec<Inner>,
        }
        let v = Outer {
            name: "x",
            missing: None,
            empty: vec![],
            list: vec![Inner { n: 1, ok: true }],
        };
        assert_eq!(
            to_string_pretty(&v),
            "{\n  \"empty\": [],\n  \"list\": [\n    {\n      \"n\": 1,\n      \"ok\": true\n    }\n  ],\n  \"name\": \"x\"\n}\n"
        );
    }

    #[test]
    fn floats_without_json_form_become_null() {
        let mut out = String::new();
        write_value(&mut out, &toml::Value::Float(f64::NAN), 0);
        write_value(&mut out, &toml::Value::Float(1.5), 0);
        assert_eq!(out, "null1.5");
    }

    #[test]
    fn unserialisable_values_give_an_error_object() {
        // A bare None has no TOML form.
        let out = to_string_pretty(&Option::<u32>::None);
        assert!(out.starts_with("{\"error\": \"cannot serialise"), "{out}");
    }
}
