//! Text from outside (attachment and zip entry names, subjects, links, certificate
//! subjects, server messages) passes through [`printable`] before it reaches a terminal,
//! a log line or the `events` table: an escape sequence in a zip entry name must not
//! retitle the terminal, and a line break must not forge a log line.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character, and every Unicode direction override that could
/// make text read other than it is stored, written as a visible escape (`\n`, `\x1b`,
/// `\u{202e}`). Text without any comes back borrowed.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(escaped, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(escaped, "\\u{{{:x}}}", c as u32);
            }
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// C0 and C1 controls and DEL, and the bidirectional embeddings, overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069) behind "Trojan Source" (CVE-2021-42574).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_become_visible() {
        assert!(matches!(
            printable("www.example.com"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("\x1b]0;x\x07\nfulfill: info: imported"),
            "\\x1b]0;x\\x07\\nfulfill: info: imported"
        );
        assert_eq!(printable("a\rb\tc\u{7f}\u{85}"), "a\\rb\\tc\\x7f\\x85");
        assert_eq!(printable("cert\u{202e}txt.exe"), "cert\\u{202e}txt.exe");
        assert_eq!(printable("Zürich ✓"), "Zürich ✓");
    }
}
