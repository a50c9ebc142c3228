//! Module globs (`policy::glob::ModuleGlob`): Go's `path.Match` applied to
//! the leading elements of a module path, as GOPRIVATE does
//! (`module.MatchPrefixPatterns`).
//!
//! The oracle is written another way: the glob is parsed by the grammar in
//! Go's `path.Match` documentation and run as a nondeterministic automaton
//! (`*` loops on non-`/` characters, `?` takes one, classes take one) on
//! the prefix chosen as `MatchPrefixPatterns` chooses it. (It was a
//! `regex`; compiling one per input held the target to ~3,500 execs/s.)
//! go's `path.Match` keeps the leftmost place a chunk after a `*` fits,
//! which differs from the automaton only when a class can match `/`; the
//! oracle restates that strategy (`go_match`), checked against the
//! automaton wherever the two must agree. modgate must agree with go on
//! which globs are valid and on every match.

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

/// Go's `path.Match` strategy, restated on the parsed terms: the pattern is
/// a list of chunks, each after an optional run of stars. A chunk after a
/// star is tried at the leftmost position the star reaches (skipping only
/// non-`/` characters), and Go keeps that choice; the last chunk must end
/// the name. So where a class can match `/`, go answers `*[a/]*` on `xa/`
/// with no (`[a/]` takes the `a`, and the last `*` cannot take the `/`),
/// though an automaton finds a yes (`*` = `xa`, `[a/]` = `/`). modgate
/// must answer as go does.
fn go_match(terms: &[Term], s: &str) -> bool {
    let name: Vec<char> = s.chars().collect();
    let mut chunks: Vec<(bool, &[Term])> = Vec::new();
    let mut i = 0;
    while i < terms.len() {
        let mut star = false;
        while i < terms.len() && matches!(terms[i], Term::Star) {
            star = true;
            i += 1;
        }
        let start = i;
        while i < terms.len() && !matches!(terms[i], Term::Star) {
            i += 1;
        }
        chunks.push((star, &terms[start..i]));
    }
    let mut pos = 0;
    for (k, &(star, chunk)) in chunks.iter().enumerate() {
        if star && chunk.is_empty() {
            return !name[pos..].contains(&'/');
        }
        let last = k + 1 == chunks.len();
        let fits = |at: usize| {
            at + chunk.len() <= name.len()
                && chunk.iter().zip(&name[at..]).all(|(t, c)| term_matches(t, *c))
                && (!last || at + chunk.len() == name.len())
        };
        let mut at = pos;
        let found = loop {
            if fits(at) {
                break Some(at);
            }
            if !star || at >= name.len() || name[at] == '/' {
                break None;
            }
            at += 1;
        };
        match found {
            Some(at) => pos = at + chunk.len(),
            None => return false,
        }
    }
    pos == name.len()
}

/// Whether some class of the glob can match `/`: only then can go's
/// leftmost choice (above) differ from the automaton.
fn class_matches_slash(terms: &[Term]) -> bool {
    terms
        .iter()
        .any(|t| matches!(t, Term::Class { .. }) && term_matches(t, '/'))
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
        let Some(p) = prefix(glob, path) else {
            assert!(!parsed.matches(path), "{glob:?} on {path:?}: too few elements");
            continue;
        };
        let go = go_match(&terms, p);
        // The automaton shares nothing with either matcher: where go's
        // leftmost choice cannot matter, it must agree with go's strategy.
        if !class_matches_slash(&terms) {
            assert_eq!(go, oracle_match(&terms, p), "strategy vs automaton: {glob:?} on {p:?}");
        }
        assert_eq!(parsed.matches(path), go, "{glob:?} on {path:?}");
    }
});
