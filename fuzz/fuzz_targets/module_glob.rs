//! Module globs (`policy::glob::ModuleGlob`): Go's `path.Match` applied to
//! the leading elements of a module path, as GOPRIVATE does
//! (`module.MatchPrefixPatterns`).
//!
//! The oracle is written another way: the glob is parsed by the grammar in
//! Go's `path.Match` documentation and turned into a regular expression
//! (`*` → `[^/]*`, `?` → `[^/]`, classes as classes), which the `regex`
//! crate runs on the prefix chosen as `MatchPrefixPatterns` chooses it.
//! The two must agree on which globs are valid and on every match.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use modgate::policy::glob::ModuleGlob;

#[derive(Arbitrary, Debug)]
struct Input {
    glob: String,
    paths: Vec<String>,
}

/// One term of a `path.Match` pattern.
enum Term {
    Star,
    Any,
    Class { negated: bool, ranges: Vec<(char, char)> },
    Literal(char),
}

/// Parses a pattern by the documented grammar; `None` when Go would
/// report `ErrBadPattern`.
fn parse(pattern: &str) -> Option<Vec<Term>> {
    let mut chars = pattern.chars().peekable();
    let mut terms = Vec::new();
    while let Some(c) = chars.next() {
        terms.push(match c {
            '*' => Term::Star,
            '?' => Term::Any,
            '\\' => Term::Literal(chars.next()?),
            '[' => {
                let negated = chars.next_if_eq(&'^').is_some();
                let mut ranges = Vec::new();
                loop {
                    let lo = match chars.next()? {
                        ']' if !ranges.is_empty() => break,
                        ']' | '-' => return None,
                        '\\' => chars.next()?,
                        c => c,
                    };
                    let hi = if chars.next_if_eq(&'-').is_some() {
                        match chars.next()? {
                            ']' | '-' => return None,
                            '\\' => chars.next()?,
                            c => c,
                        }
                    } else {
                        lo
                    };
                    // A class character must be followed by something.
                    chars.peek()?;
                    ranges.push((lo, hi));
                }
                Term::Class { negated, ranges }
            }
            c => Term::Literal(c),
        });
    }
    Some(terms)
}

fn regex_of(terms: &[Term]) -> regex::Regex {
    let mut re = String::from("^(?s:");
    for t in terms {
        match t {
            Term::Star => re.push_str("[^/]*"),
            Term::Any => re.push_str("[^/]"),
            Term::Literal(c) => re.push_str(&format!("\\x{{{:x}}}", *c as u32)),
            Term::Class { negated, ranges } => {
                let set: String = ranges
                    .iter()
                    .filter(|(lo, hi)| lo <= hi)
                    .map(|(lo, hi)| format!("\\x{{{:x}}}-\\x{{{:x}}}", *lo as u32, *hi as u32))
                    .collect();
                match (negated, set.is_empty()) {
                    (false, true) => re.push_str("[^\\x{0}-\\x{10ffff}]"),
                    (true, true) => re.push('.'),
                    (false, false) => re.push_str(&format!("[{set}]")),
                    (true, false) => re.push_str(&format!("[^{set}]")),
                }
            }
        }
    }
    re.push_str(")$");
    regex::Regex::new(&re).unwrap_or_else(|e| panic!("oracle regex {re:?}: {e}"))
}

/// `MatchPrefixPatterns` for one glob: the prefix of `target` with as many
/// elements as the glob, or `None` when `target` has fewer.
fn prefix<'a>(glob: &str, target: &'a str) -> Option<&'a str> {
    let mut n = glob.matches('/').count();
    for (i, b) in target.bytes().enumerate() {
        if b == b'/' {
            if n == 0 {
                return Some(&target[..i]);
            }
            n -= 1;
        }
    }
    (n == 0).then_some(target)
}

fuzz_target!(|input: Input| {
    let parsed = input.glob.parse::<ModuleGlob>();
    let glob = input.glob.strip_suffix('/').unwrap_or(&input.glob);
    // modgate also refuses what cannot be one entry of a comma list.
    let listable = !glob.is_empty() && !glob.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',');
    let terms = if listable { parse(glob) } else { None };
    assert_eq!(parsed.is_ok(), terms.is_some(), "validity of {glob:?}: {parsed:?}");
    let (Ok(parsed), Some(terms)) = (parsed, terms) else {
        return;
    };
    if let Err(e) = &parsed.to_string().parse::<ModuleGlob>() {
        panic!("a printed glob parses: {e}");
    }
    let re = regex_of(&terms);
    for path in input.paths.iter().take(8) {
        let expected = prefix(glob, path).is_some_and(|p| re.is_match(p));
        assert_eq!(parsed.matches(path), expected, "{glob:?} on {path:?} (regex {re})");
    }
});
