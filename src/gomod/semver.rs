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

    #[test]
    fn pseudo_versions_are_recognised() {
        assert!(is_pseudo("v0.0.0-20240101120000-abcdefabcdef"));
        assert!(is_pseudo("v1.2.4-0.20240101120000-abcdefabcdef"));
        assert!(is_pseudo("v1.2.4-pre.0.20240101120000-abcdefabcdef"));
        assert!(!is_pseudo("v1.2.3"));
        assert!(!is_pseudo("v1.0.0-rc.1"));
    }
}
