//! The two escapings on a module request's path: percent-encoding (go
//! escapes `!` as `%21`) and the `!` case-encoding of upper-case letters.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Percent-decodes a request path. `go` escapes URL paths, so `!azure`
/// arrives as `%21azure`; the classifiers take the decoded path. A path
/// without `%` is itself.
pub fn decode_path(raw: &str) -> Result<Cow<'_, str>, String> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    // percent-encoding passes a stray `%` through; a request with one is
    // malformed, so it is refused here rather than decoded leniently.
    let bytes = raw.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(format!("bad percent-encoding in {}", quote(raw)));
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map(|decoded| Cow::Owned(decoded.into_owned()))
        .map_err(|_| format!("{} is not UTF-8 once percent-decoded", quote(raw)))
}

/// What a decoded request path may hold as-is in a URL's path: RFC 3986's
/// `pchar` (unreserved, sub-delims, `:`, `@`) and `/`; everything else is
/// percent-encoded again.
const PATH_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/');

/// A decoded request path made fit for a URL again: a version query such
/// as `fix#12` or `a b` goes to a mirror as `fix%2312` and `a%20b`, not
/// as a fragment or a broken request line. A path of module paths and
/// versions alone is itself.
pub fn encode_path(decoded: &str) -> Cow<'_, str> {
    utf8_percent_encode(decoded, PATH_KEEPS).into()
}

/// Decodes the `!` case-encoding: "!azure" -> "Azure". A raw upper-case
/// letter, or '!' not followed by a-z, is an error; so is a non-ASCII
/// character, as in Go.
pub fn decode_case(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '!' => match chars.next() {
                Some(l) if l.is_ascii_lowercase() => out.push(l.to_ascii_uppercase()),
                Some(other) => {
                    return Err(format!("'!' must be followed by a lower-case letter, not {:?}", other));
                }
                None => return Err("'!' at the end must be followed by a lower-case letter".into()),
            },
            'A'..='Z' => {
                return Err(format!(
                    "upper-case '{c}' must be case-encoded as '!{}'",
                    c.to_ascii_lowercase()
                ));
            }
            c if !c.is_ascii() => return Err(format!("non-ASCII character {c:?}")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Encodes upper case as '!' + lower case: "Azure" -> "!azure". Other
/// characters are copied as they are.
pub fn encode_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Quotes text from a request for an error message: escaped, so the message
/// stays on one line, and cut short.
pub fn quote(s: &str) -> String {
    const MAX_CHARS: usize = 160;
    match s.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{:?}...", &s[..end]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escapes_are_decoded() {
        assert_eq!(
            decode_path("/github.com/%21azure/x/@v/v1.0.0.mod").unwrap(),
            "/github.com/!azure/x/@v/v1.0.0.mod"
        );
        assert_eq!(decode_path("/plain/@v/list").unwrap(), "/plain/@v/list");
        assert!(decode_path("/a%2").is_err());
        assert!(decode_path("/a%zz").is_err());
        assert!(decode_path("/a%ff").is_err());
        assert_eq!(decode_path("/a.com/x%2525/@v/list").unwrap(), "/a.com/x%25/@v/list");
    }

    #[test]
    fn a_decoded_path_is_encoded_again_only_where_a_url_needs_it() {
        let plain = "/github.com/!azure/x/@v/v1.0.0-rc.1+meta.info";
        assert!(matches!(encode_path(plain), Cow::Borrowed(_)));
        assert_eq!(
            encode_path("/a.com/b/@v/fix#12 x%y?[1]{2}^3.info"),
            "/a.com/b/@v/fix%2312%20x%25y%3F%5B1%5D%7B2%7D%5E3.info"
        );
        for query in ["fix#12", "a b", "50%", "release(2)", "user@topic", "[x]"] {
            let path = format!("/a.com/b/@v/{query}.info");
            assert_eq!(decode_path(&encode_path(&path)).unwrap(), path);
        }
    }
}
