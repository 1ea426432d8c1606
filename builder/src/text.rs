//! Text from a profile on its way to a terminal: control characters
//! escaped, long values cut, so a profile cannot drive the terminal or
//! flood an error message.

/// At most this many characters of an offending value are echoed.
pub const ECHO_CHARS: usize = 80;

/// `s` with every control character (C0, DEL, C1) escaped as `\u{..}`;
/// tabs and newlines too, so the result is one line.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A value as an error message shows it: quoted, control characters
/// escaped, cut to [`ECHO_CHARS`] characters with the full length said.
pub fn shown(s: &str) -> String {
    let count = s.chars().count();
    if count <= ECHO_CHARS {
        return format!("\"{}\"", escape_controls(s));
    }
    let head: String = s.chars().take(ECHO_CHARS).collect();
    format!("\"{}\"... ({count} characters)", escape_controls(&head))
}

/// Whether `s` holds a control character.
pub fn has_controls(s: &str) -> bool {
    s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_long_values_cut() {
        assert_eq!(escape_controls("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\u{a}");
        assert_eq!(shown("x\u{7}"), "\"x\\u{7}\"");
        let long = "n".repeat(200_000);
        let s = shown(&long);
        assert_eq!(s, format!("\"{}\"... (200000 characters)", "n".repeat(80)));
        assert!(has_controls("\u{9b}"));
        assert!(!has_controls("plain text, ümlaut"));
    }
}
