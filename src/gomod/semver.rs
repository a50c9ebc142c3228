//! Semantic versions as the go command reads them (`golang.org/x/mod/semver`
//! and `module.CanonicalVersion`): a `v` prefix, `vMAJOR[.MINOR[.PATCH]]`,
//! an optional `-prerelease` and `+build`. Pseudo-versions are
//! pre-releases, so they sort the way go sorts them. `+incompatible` is the
//! one build suffix a canonical module version keeps.

use std::cmp::Ordering;

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    /// `-…` without the dash; empty for a release.
    prerelease: &'a str,
    /// `+…` without the plus; empty when absent.
    build: &'a str,
    /// `v1` or `v1.2`: valid, but not canonical.
    short: bool,
}

impl Version<'_> {
    /// Whether it is a release: no pre-release part (pseudo-versions are
    /// pre-releases).
    pub fn is_release(&self) -> bool {
        self.prerelease.is_empty()
    }
}

/// Parses `v`, or `None` when go would not call it a semantic version.
pub fn parse(v: &str) -> Option<Version<'_>> {
    let rest = v.strip_prefix('v')?;
    let (core, build) = match rest.split_once('+') {
        Some((core, build)) => (core, build),
        None => (rest, ""),
    };
    if rest.contains('+') && !idents_ok(build, false) {
        return None;
    }
    let (numbers, prerelease) = match core.split_once('-') {
        Some((n, p)) => (n, p),
        None => (core, ""),
    };
    if core.contains('-') && !idents_ok(prerelease, true) {
        return None;
    }
    let mut parts = numbers.split('.');
    let major = number(parts.next()?)?;
    let (minor, patch, short) = match (parts.next(), parts.next(), parts.next()) {
        (None, None, None) => ("0", "0", true),
        (Some(minor), None, None) => (number(minor)?, "0", true),
        (Some(minor), Some(patch), None) => (number(minor)?, number(patch)?, false),
        _ => return None,
    };
    // go accepts v1 and v1.2 only without a pre-release or build.
    if short && (!prerelease.is_empty() || !build.is_empty()) {
        return None;
    }
    Some(Version {
        major,
        minor,
        patch,
        prerelease,
        build,
        short,
    })
}

/// A decimal number without leading zeros.
fn number(s: &str) -> Option<&str> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then_some(s)
}

/// Dot-separated identifiers of `[0-9A-Za-z-]`; in a pre-release, numeric
/// identifiers have no leading zeros.
fn idents_ok(s: &str, prerelease: bool) -> bool {
    !s.is_empty()
        && s.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !(prerelease && id.bytes().all(|b| b.is_ascii_digit()) && id.len() > 1 && id.starts_with('0'))
        })
}

/// Whether `v` is a canonical module version: a full semantic version
/// (`v1.2.3`, `v1.2.3-pre`, a pseudo-version) with no build suffix other
/// than `+incompatible`. Such a version's `.info`, `.mod` and `.zip` never
/// change; anything else (`master`, a commit hash, `v1.2`) is a query.
pub fn is_canonical(v: &str) -> bool {
    parse(v).is_some_and(|p| !p.short && (p.build.is_empty() || p.build == "incompatible"))
}

/// Semantic-version precedence; the build suffix does not count. `None`
/// when either is not a version.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    let by_number = |x: &str, y: &str| x.len().cmp(&y.len()).then_with(|| x.cmp(y));
    Some(
        by_number(a.major, b.major)
            .then_with(|| by_number(a.minor, b.minor))
            .then_with(|| by_number(a.patch, b.patch))
            .then_with(|| compare_prerelease(a.prerelease, b.prerelease)),
    )
}

/// Go's `semver.Compare`: a total order in which every invalid string is
/// equal to every other and below every valid version.
pub fn compare_go(a: &str, b: &str) -> Ordering {
    match (parse(a).is_some(), parse(b).is_some()) {
        (false, false) => Ordering::Equal,
        (false, true) => Ordering::Less,
        (true, false) => Ordering::Greater,
        (true, true) => compare(a, b).unwrap_or(Ordering::Equal),
    }
}

/// Go's `semver.Canonical`: `vMAJOR.MINOR.PATCH[-pre]`, without any build
/// suffix; `None` for an invalid version.
pub fn canonical(v: &str) -> Option<String> {
    let p = parse(v)?;
    let mut out = format!("v{}.{}.{}", p.major, p.minor, p.patch);
    if !p.prerelease.is_empty() {
        out.push('-');
        out.push_str(p.prerelease);
    }
    Some(out)
}

/// Whether `v` names a full `vMAJOR.MINOR.PATCH` (not the short `v1` or
/// `v1.2` that go also accepts).
pub fn is_full(v: &str) -> bool {
    parse(v).is_some_and(|p| !p.short)
}

/// A release sorts after its pre-releases; identifiers compare one by one,
/// numbers numerically and below words.
fn compare_prerelease(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                let order = match (numeric(x), numeric(y)) {
                    (true, true) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Whether `v` is a pseudo-version (`vX.Y.Z-yyyymmddhhmmss-abcdefabcdef`,
/// or the `-pre.0.`/`.0.` forms): a commit, not a tag.
pub fn is_pseudo(v: &str) -> bool {
    let Some(p) = parse(v) else { return false };
    let parts: Vec<&str> = p.prerelease.split(['-', '.']).collect();
    let n = parts.len();
    n >= 2
        && parts[n - 2].len() == 14
        && parts[n - 2].bytes().all(|b| b.is_ascii_digit())
        && parts[n - 1].len() >= 12
        && parts[n - 1].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_versions_are_full_semver_with_at_most_incompatible() {
        for v in [
            "v1.2.3",
            "v0.0.0-20240101120000-abcdefabcdef",
            "v1.2.4-0.20240101120000-abcdefabcdef",
            "v2.0.0+incompatible",
            "v1.0.0-rc.1",
        ] {
            assert!(is_canonical(v), "{v}");
        }
        for v in [
            "master",
            "v1",
            "v1.2",
            "1.2.3",
            "v1.2.3+meta",
            "v01.2.3",
            "v1.2.3-01",
            "abcdef1",
            "latest",
            "v1.2.3.4",
            "v1.2.3-",
        ] {
            assert!(!is_canonical(v), "{v}");
        }
    }

    #[test]
    fn precedence_follows_semver_as_go_does() {
        let ordered = [
            "v0.9.0",
            "v1.0.0-0.20240101120000-abcdefabcdef",
            "v1.0.0-alpha",
            "v1.0.0-alpha.1",
            "v1.0.0-alpha.beta",
            "v1.0.0-beta.2",
            "v1.0.0-beta.11",
            "v1.0.0-rc.1",
            "v1.0.0",
            "v1.0.1-0.20240101120000-abcdefabcdef",
            "v1.2.0",
            "v1.10.0",
            "v2.0.0+incompatible",
        ];
        for w in ordered.windows(2) {
            assert_eq!(compare(w[0], w[1]), Some(Ordering::Less), "{} < {}", w[0], w[1]);
            assert_eq!(compare(w[1], w[0]), Some(Ordering::Greater));
        }
        assert_eq!(compare("v1.2", "v1.2.0"), Some(Ordering::Equal));
        assert_eq!(compare("v2.0.0+incompatible", "v2.0.0"), Some(Ordering::Equal));
        assert_eq!(compare("v1.0.0", "master"), None);
    }

    /// golang.org/x/mod/semver's own test table (semver_test.go), in
    /// ascending order: each input and its canonical form ("" = invalid).
    const GO_TABLE: &[(&str, &str)] = &[
        ("bad", ""),
        ("v1-alpha.beta.gamma", ""),
        ("v1-pre", ""),
        ("v1+meta", ""),
        ("v1-pre+meta", ""),
        ("v1.2-pre", ""),
        ("v1.2+meta", ""),
        ("v1.2-pre+meta", ""),
        ("v1.0.0-alpha", "v1.0.0-alpha"),
        ("v1.0.0-alpha.1", "v1.0.0-alpha.1"),
        ("v1.0.0-alpha.beta", "v1.0.0-alpha.beta"),
        ("v1.0.0-beta", "v1.0.0-beta"),
        ("v1.0.0-beta.2", "v1.0.0-beta.2"),
        ("v1.0.0-beta.11", "v1.0.0-beta.11"),
        ("v1.0.0-rc.1", "v1.0.0-rc.1"),
        ("v1", "v1.0.0"),
        ("v1.0", "v1.0.0"),
        ("v1.0.0", "v1.0.0"),
        ("v1.2", "v1.2.0"),
        ("v1.2.0", "v1.2.0"),
        ("v1.2.3-456", "v1.2.3-456"),
        ("v1.2.3-456.789", "v1.2.3-456.789"),
        ("v1.2.3-456-789", "v1.2.3-456-789"),
        ("v1.2.3-456a", "v1.2.3-456a"),
        ("v1.2.3-pre", "v1.2.3-pre"),
        ("v1.2.3-pre+meta", "v1.2.3-pre"),
        ("v1.2.3-pre.1", "v1.2.3-pre.1"),
        ("v1.2.3-zzz", "v1.2.3-zzz"),
        ("v1.2.3", "v1.2.3"),
        ("v1.2.3+meta", "v1.2.3"),
        ("v1.2.3+meta-pre", "v1.2.3"),
        ("v1.2.3+meta-pre.sha.256a", "v1.2.3"),
    ];

    #[test]
    fn go_semver_table_validity_and_canonical_forms() {
        for (input, want) in GO_TABLE {
            assert_eq!(parse(input).is_some(), !want.is_empty(), "IsValid({input})");
            assert_eq!(canonical(input).unwrap_or_default(), *want, "Canonical({input})");
        }
    }

    #[test]
    fn go_semver_table_compares_as_go_does() {
        // TestCompare: equal canonical forms compare equal, otherwise the
        // table's order decides.
        for (i, (a, ca)) in GO_TABLE.iter().enumerate() {
            for (j, (b, cb)) in GO_TABLE.iter().enumerate() {
                let want = if ca == cb { Ordering::Equal } else { i.cmp(&j) };
                assert_eq!(compare_go(a, b), want, "Compare({a}, {b})");
            }
        }
        assert_eq!(compare_go("v1", "v1"), Ordering::Equal);
        assert_eq!(compare_go("v2", "v1"), Ordering::Greater);
        assert_eq!(compare_go("v1", "v2"), Ordering::Less);
        assert_eq!(compare_go("v1.10.0", "v1.9.0"), Ordering::Greater);
    }

    #[test]
    fn pseudo_versions_and_incompatible_sort_as_go_sorts_them() {
        // A pseudo-version after v1.2.3 is a pre-release of v1.2.4: above
        // v1.2.3, below v1.2.4 and its tagged pre-releases' successors.
        let after_tag = "v1.2.4-0.20240101120000-abcdefabcdef";
        assert_eq!(compare_go(after_tag, "v1.2.3"), Ordering::Greater);
        assert_eq!(compare_go(after_tag, "v1.2.4"), Ordering::Less);
        assert_eq!(compare_go(after_tag, "v1.2.4-rc.1"), Ordering::Less);
        // Pseudo-versions of one base order by time.
        assert_eq!(
            compare_go(after_tag, "v1.2.4-0.20250101120000-000000000000"),
            Ordering::Less
        );
        // A commit before any tag.
        assert_eq!(
            compare_go("v0.0.0-20240101120000-abcdefabcdef", "v0.0.1"),
            Ordering::Less
        );
        // +incompatible is build metadata: it does not count.
        assert_eq!(compare_go("v2.0.0+incompatible", "v2.0.0"), Ordering::Equal);
        assert_eq!(compare_go("v2.0.1+incompatible", "v2.0.0"), Ordering::Greater);
        assert!(is_full("v1.2.3") && !is_full("v1.2") && !is_full("bad"));
    }

    #[test]
    fn pseudo_versions_are_recognised() {
        assert!(is_pseudo("v0.0.0-20240101120000-abcdefabcdef"));
        assert!(is_pseudo("v1.2.4-0.20240101120000-abcdefabcdef"));
        assert!(is_pseudo("v1.2.4-pre.0.20240101120000-abcdefabcdef"));
        assert!(!is_pseudo("v1.2.3"));
        assert!(!is_pseudo("v1.0.0-rc.1"));
    }
}
