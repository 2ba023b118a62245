//! Text that came from the wire, made safe to show a person: control characters escaped (so a newline or an
//! escape sequence cannot forge a log line or drive a terminal) and, where it is quoted back, its length bounded
//! (so a peer cannot make the server echo megabytes it sent).

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1) and every Unicode format character that can reorder or
/// hide what follows (bidirectional overrides, zero-width marks) written as `\u{…}`. Backslashes are left as
/// they are, so text escaped once (a refusal message in the store) reads the same when a table escapes it
/// again; a peer can write a literal `\u{a}`, but never a real newline. Borrowed when there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// True when `text` holds nothing [`escape`] would change: no control character and no invisible formatting one.
pub fn is_printable(text: &str) -> bool {
    !text.chars().any(needs_escape)
}

/// [`escape`]d `text`, cut to at most `max_chars` characters (ending in `…` when cut). Reads no more of `text`
/// than it needs, so its cost does not grow with a long input.
pub fn bounded(text: &str, max_chars: usize) -> String {
    let mut escaped = text.chars().flat_map(|c| {
        let mut piece = String::new();
        push_escaped(&mut piece, c);
        piece.chars().collect::<Vec<_>>()
    });
    let mut out: String = escaped.by_ref().take(max_chars).collect();
    if escaped.next().is_some() {
        out.pop();
        out.push('…');
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn push_escaped(out: &mut String, c: char) {
    if needs_escape(c) {
        out.push_str(&format!("\\u{{{:x}}}", c as u32));
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_escapes_and_bidi_overrides_cannot_reach_a_terminal() {
        assert_eq!(
            escape("a\nb\u{1b}[2Jc\u{7f}\u{202e}d\\u{a}"),
            "a\\u{a}b\\u{1b}[2Jc\\u{7f}\\u{202e}d\\u{a}"
        );
        assert!(matches!(escape("plain text é"), Cow::Borrowed(_)));
    }

    #[test]
    fn bounded_text_never_exceeds_its_length_whatever_it_escapes() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("exactly10!", 10), "exactly10!");
        assert_eq!(bounded("eleven chars", 10), "eleven ch…");
        let hostile = "\u{7f}".repeat(1 << 20);
        let cut = bounded(&hostile, 40);
        assert!(cut.chars().count() <= 40, "{cut}");
        assert!(cut.ends_with('…'));
        assert!(!cut.contains('\u{7f}'));
    }
}
