//! Module globs (`policy::glob::ModuleGlob`): Go's `path.Match` applied to
//! the leading elements of a module path, as GOPRIVATE does
//! (`module.MatchPrefixPatterns`).
//!
//! The oracle is written another way: the glob is parsed by the grammar in
//! Go's `path.Match` documentation and run as a nondeterministic automaton
//! (`*` loops on non-`/` characters, `?` takes one, classes take one) on
//! the prefix chosen as `MatchPrefixPatterns` chooses it. (It was a
//! `regex`; compiling one per input held the target to ~3,500 execs/s.)
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

/// Whether one non-star term matches the character `c`.
fn term_matches(term: &Term, c: char) -> bool {
    match term {
        Term::Star => unreachable!("stars are handled by the automaton"),
        Term::Any => c != '/',
        Term::Literal(l) => *l == c,
        Term::Class { negated, ranges } => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated,
    }
}

/// Runs the terms as a nondeterministic automaton over `s` (state `i`:
/// the first `i` terms matched), so the oracle shares no code or strategy
/// with modgate's backtracking matcher: `*` loops on any non-`/`
/// character or is skipped; every other term consumes one character.
fn oracle_match(terms: &[Term], s: &str) -> bool {
    let closure = |states: &mut Vec<bool>| {
        for i in 0..terms.len() {
            if states[i] && matches!(terms[i], Term::Star) {
                states[i + 1] = true;
            }
        }
    };
    let mut states = vec![false; terms.len() + 1];
    states[0] = true;
    closure(&mut states);
    for c in s.chars() {
        let mut next = vec![false; terms.len() + 1];
        for (i, term) in terms.iter().enumerate() {
            if !states[i] {
                continue;
            }
            match term {
                Term::Star if c != '/' => next[i] = true,
                Term::Star => {}
                t if term_matches(t, c) => next[i + 1] = true,
                _ => {}
            }
        }
        closure(&mut next);
        if !next.contains(&true) {
            return false;
        }
        states = next;
    }
    states[terms.len()]
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
    for path in input.paths.iter().take(8) {
        let expected = prefix(glob, path).is_some_and(|p| oracle_match(&terms, p));
        assert_eq!(parsed.matches(path), expected, "{glob:?} on {path:?}");
    }
});
