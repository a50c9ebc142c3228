//! Version constraints: one entry of a rule's `versions` list, matched
//! with go's own semantic-version order (`golang.org/x/mod/semver`).
//!
//! - `v1.5.0` (or `=v1.5.0`): that version;
//! - `<v1.4.2`, `<=v1.4.2`, `>v2.0.0`, `>=v2.0.0-0`: a bound;
//! - `>=v1.2.0 <v1.3.0-0`: bounds separated by spaces all hold.
//!
//! Versions compare as go compares them: a pre-release sorts below its
//! release (`v1.4.2-rc.1 < v1.4.2`), a pseudo-version is a pre-release of
//! the version after its base tag (`v1.4.2-0.2024…-abcdef` sits between
//! v1.4.1 and v1.4.2), and build suffixes such as `+incompatible` do not
//! count (`v2.0.0+incompatible` equals `v2.0.0`). To include a version's
//! pre-releases in a lower bound, write `-0`: `>=v2.0.0-0`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::gomod::semver::{compare, is_full};

/// How one bound compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, order: Ordering) -> bool {
        match self {
            Op::Eq => order == Ordering::Equal,
            Op::Lt => order == Ordering::Less,
            Op::Le => order != Ordering::Greater,
            Op::Gt => order == Ordering::Greater,
            Op::Ge => order != Ordering::Less,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One bound: an operator and a full semantic version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    op: Op,
    version: String,
}

/// One entry of a `versions` list: bounds that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMatch {
    bounds: Vec<Bound>,
}

impl VersionMatch {
    /// Whether `version` satisfies every bound. A string that is not a
    /// semantic version (a branch name, a commit hash) matches nothing.
    pub fn matches(&self, version: &str) -> bool {
        self.bounds
            .iter()
            .all(|b| compare(version, &b.version).is_some_and(|order| b.op.holds(order)))
    }
}

impl FromStr for VersionMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("bad version constraint '{}': {why}", s.escape_debug());
        let mut bounds = Vec::new();
        for word in s.split_whitespace() {
            let (op, version) = if let Some(v) = word.strip_prefix(">=") {
                (Op::Ge, v)
            } else if let Some(v) = word.strip_prefix("<=") {
                (Op::Le, v)
            } else if let Some(v) = word.strip_prefix('>') {
                (Op::Gt, v)
            } else if let Some(v) = word.strip_prefix('<') {
                (Op::Lt, v)
            } else if let Some(v) = word.strip_prefix('=') {
                (Op::Eq, v)
            } else {
                (Op::Eq, word)
            };
            if !is_full(version) {
                return Err(bad(format!(
                    "'{}' is not a full semantic version; write vMAJOR.MINOR.PATCH[-pre], e.g. v1.4.2 (a range is two bounds: \">=v1.4.0 <v1.5.0-0\")",
                    version.escape_debug()
                )));
            }
            if op == Op::Eq && s.split_whitespace().count() > 1 {
                return Err(bad("an exact version cannot be combined with other bounds".into()));
            }
            bounds.push(Bound {
                op,
                version: version.to_owned(),
            });
        }
        if bounds.is_empty() {
            return Err(bad(
                "empty; write a version such as v1.5.0 or a bound such as <v1.4.2".into()
            ));
        }
        // A lower bound at or above an upper one leaves no version between
        // them: a rule that could never match is a mistake.
        let lower = bounds.iter().filter(|b| matches!(b.op, Op::Gt | Op::Ge));
        for low in lower {
            // `>X` is `>=` the version right after X: nothing lies between
            // v1.0.0 and v1.0.1-0, or v1.0.0-rc and v1.0.0-rc.0.
            let least = match low.op {
                Op::Gt => successor(&low.version),
                _ => Some(low.version.clone()),
            };
            for high in bounds.iter().filter(|b| matches!(b.op, Op::Lt | Op::Le)) {
                let empty = match least.as_deref().and_then(|least| compare(least, &high.version)) {
                    Some(Ordering::Greater) => true,
                    Some(Ordering::Equal) => high.op == Op::Lt,
                    _ => false,
                };
                if empty {
                    return Err(bad(format!(
                        "no version is {}{} and {}{}; a range is written low first: \">=v1.4.0 <v1.5.0-0\"",
                        low.op.as_str(),
                        low.version,
                        high.op.as_str(),
                        high.version
                    )));
                }
            }
        }
        Ok(VersionMatch { bounds })
    }
}

/// The least version above `v` (build metadata aside): `vA.B.(C+1)-0`
/// after a release, `v` with `.0` appended after a pre-release.
fn successor(v: &str) -> Option<String> {
    let core = v.split('+').next()?;
    if core.contains('-') {
        return Some(format!("{core}.0"));
    }
    let (rest, patch) = core.rsplit_once('.')?;
    let patch: u64 = patch.parse().ok()?;
    Some(format!("{rest}.{}-0", patch.checked_add(1)?))
}

impl fmt::Display for VersionMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.bounds.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}{}", b.op.as_str(), b.version)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(constraint: &str, version: &str) -> bool {
        constraint.parse::<VersionMatch>().unwrap().matches(version)
    }

    #[test]
    fn bounds_follow_gos_order() {
        assert!(m("<v1.4.2", "v1.4.1"));
        assert!(m("<v1.4.2", "v1.4.2-rc.1"), "a pre-release is below its release");
        assert!(
            m("<v1.4.2", "v1.4.2-0.20240101120000-abcdefabcdef"),
            "a pseudo-version after v1.4.1 is below v1.4.2"
        );
        assert!(!m("<v1.4.2", "v1.4.2"));
        assert!(!m("<v1.4.2", "v1.10.0"), "numbers, not strings");
        assert!(m("<=v1.4.2", "v1.4.2"));
        assert!(m("v1.5.0", "v1.5.0") && m("=v1.5.0", "v1.5.0"));
        assert!(!m("v1.5.0", "v1.5.0-rc.1") && !m("v1.5.0", "v1.5.1"));
        assert!(m(">=v2.0.0-0", "v2.0.0-alpha") && m(">=v2.0.0-0", "v2.0.0"));
        assert!(m(">=v2.0.0-0", "v2.0.0-20240101120000-abcdefabcdef"));
        assert!(!m(">=v2.0.0", "v2.0.0-alpha"), "without -0 the pre-releases stay out");
        assert!(m(">v2.0.0", "v3.0.0+incompatible"));
        assert!(m("v2.0.0", "v2.0.0+incompatible"), "build suffixes do not count");
        assert!(m(">=v1.2.0 <v1.3.0-0", "v1.2.9"));
        assert!(!m(">=v1.2.0 <v1.3.0-0", "v1.3.0-rc.1"));
        assert!(!m("<v9.0.0", "master"), "queries match nothing");
    }

    #[test]
    fn bad_constraints_say_what_to_write() {
        for bad in [
            "",
            "  ",
            "v1.4",
            "<1.4.2",
            "<=",
            "~v1.2.3",
            "v1.2.3 v1.2.4",
            ">v1.0.0 v1.2.0",
            "<v01.2.3",
            "latest",
        ] {
            let e = bad.parse::<VersionMatch>().unwrap_err();
            assert!(e.starts_with("bad version constraint"), "{bad:?}: {e}");
        }
        assert!(
            "v1.4"
                .parse::<VersionMatch>()
                .unwrap_err()
                .contains("write vMAJOR.MINOR.PATCH")
        );
        assert_eq!(
            ">=v1.2.0  <v1.3.0-0".parse::<VersionMatch>().unwrap().to_string(),
            ">=v1.2.0 <v1.3.0-0"
        );
    }

    #[test]
    fn a_range_no_version_is_in_is_refused() {
        for empty in [
            ">v2.0.0 <v1.0.0",
            ">=v1.0.0 <v1.0.0",
            ">v1.0.0 <=v1.0.0",
            "<v1.0.0 >=v1.2.0",
            ">v1.0.0 <v1.0.1-0",
            ">v1.0.0-rc <v1.0.0-rc.0",
            ">v1.0.0+meta <v1.0.1-0",
        ] {
            let e = empty.parse::<VersionMatch>().unwrap_err();
            assert!(e.contains("no version is"), "{empty}: {e}");
        }
        for fine in [
            ">=v1.0.0 <=v1.0.0",
            ">v1.0.0 <v1.0.1",
            ">=v1.0.0-rc.1 <v1.0.0",
            ">v1.0.0 <=v1.0.1-0",
            ">v1.0.0-rc <v1.0.0-rc.1",
        ] {
            assert!(fine.parse::<VersionMatch>().is_ok(), "{fine}");
        }
        assert!(m(">=v1.0.0 <=v1.0.0", "v1.0.0"));
    }
}
