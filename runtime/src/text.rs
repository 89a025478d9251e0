//! Text that came from a blueprint or a user, made safe to show.
//!
//! Log lines, attributes, names and failure reasons are guest- or user-controlled. Printed raw,
//! a newline forges a second log line and an escape sequence rewrites the operator's terminal.
//! [`escape`] writes every control character (and the Unicode marks that reorder text) as a
//! visible escape, so one stored value is always one line of plain text. Web pages escape HTML
//! on their own; JSON output is escaped by the serializer.

use std::borrow::Cow;

/// `text` with control characters and bidirectional marks written as escapes (`\n`, `\e`,
/// `\u{202e}`); unchanged (and not copied) when it has none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`escape`], but keeps line breaks: for multi-line messages (an error with the guest's
/// output under it) whose lines are each made safe.
pub fn escape_lines(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

/// Control characters, and the marks that reorder how a terminal shows text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The first `chars` characters of `text`, with `…` when cut; for error messages about
/// guest-supplied strings.
pub fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(escape("plain text"), "plain text");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nL9 lease.destroyed"), "a\\nL9 lease.destroyed");
        assert_eq!(escape("\x1b[2J\x1b]0;x\x07"), "\\e[2J\\e]0;x\\u{7}");
        assert_eq!(escape("tab\there\r"), "tab\\there\\r");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("naïve ✓"), "naïve ✓");
    }

    #[test]
    fn lines_stay_lines() {
        assert_eq!(escape_lines("one\ntwo\x1b[2J"), "one\ntwo\\e[2J");
    }

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ééé", 2), "éé…");
    }
}
