//! Text from a peer (certificate fields, request targets, upstream errors)
//! made safe for human-readable output: logs, terminals, PEM comments and
//! the `modgate:` lines clients see.
//!
//! Control characters (C0, DEL, C1 such as U+0085 and U+009B), line and
//! paragraph separators (U+2028, U+2029) and bidirectional overrides are
//! written as `\u{..}` escapes, and a backslash as `\\`, so an escaped
//! string is one line that shows exactly what was received and cannot move
//! the cursor, clear the screen, forge a log line or reorder text.
//!
//! A message is escaped once. Its parts from a peer are escaped (or
//! quoted with `{:?}`) where the message names them, and the line a client
//! or a log receives goes through [`controls`], which escapes what is still
//! unsafe but leaves backslashes, so an escape made earlier is not escaped
//! a second time.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal or a line-oriented log raw.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every unsafe character escaped; borrowed when nothing needs it.
pub fn escape(s: &str) -> Cow<'_, str> {
    escaped(s, true)
}

/// `s` with every unsafe character escaped and backslashes left alone: for
/// a whole message whose quoted parts were already escaped.
pub fn controls(s: &str) -> Cow<'_, str> {
    escaped(s, false)
}

fn escaped(s: &str, backslashes: bool) -> Cow<'_, str> {
    let needs = |c: char| is_unsafe(c) || (backslashes && c == '\\');
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' if backslashes => out.push_str("\\\\"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Lossily decodes bytes from a peer and escapes them.
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes)).into_owned()
}

/// `word` as one shell word, for commands modgate prints to paste: as it
/// is when it holds only characters no shell treats specially, else in
/// single quotes.
pub fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@,%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_text_is_borrowed_unchanged() {
        assert!(matches!(escape("proxy.golang.org: Zscaler Root CA"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_line_breaking_or_terminal_character_is_escaped() {
        let hostile = "CN\n-----BEGIN CERTIFICATE-----\r\x1b[2J\u{2028}x\u{85}y\u{9b}z\u{202e}\\";
        let e = escape(hostile);
        assert_eq!(
            e,
            "CN\\u{a}-----BEGIN CERTIFICATE-----\\u{d}\\u{1b}[2J\\u{2028}x\\u{85}y\\u{9b}z\\u{202e}\\\\"
        );
        assert!(!e.chars().any(is_unsafe));
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn a_message_is_escaped_once() {
        let quoted = format!("bad path {:?} from {}", "a\\b\u{0}", escape("c\\d\u{1b}"));
        let line = format!("{quoted}, and raw\ntext");
        assert_eq!(
            controls(&line),
            "bad path \"a\\\\b\\0\" from c\\\\d\\u{1b}, and raw\\u{a}text"
        );
        assert!(matches!(controls("a\\b"), Cow::Borrowed("a\\b")));
    }

    #[test]
    fn bytes_are_decoded_lossily() {
        assert_eq!(escape_bytes(b"a\xffb\x07"), "a\u{fffd}b\\u{7}");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("conf/modgate.toml"), "conf/modgate.toml");
        assert_eq!(shell_word("my dir/c.toml"), "'my dir/c.toml'");
        assert_eq!(shell_word("it's.toml"), "'it'\\''s.toml'");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
        assert_eq!(shell_word(""), "''");
    }
}
