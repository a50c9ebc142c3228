//! Durations as the config writes them: `250ms`, `10s`, `5m`, `1h`, `7d`, or
//! a sequence such as `1m30s`.
//!
//! Parsing is humantime's; modgate narrows it to the units above (no
//! spaces, fractions, months or years, whose meaning is unclear in a config)
//! and keeps its own one-line error.

use std::fmt::Write as _;
use std::time::Duration;

/// The units a config may use, longest first so `ms` is not read as `m`.
const UNITS: [&str; 5] = ["ms", "s", "m", "h", "d"];

/// The longest duration a config may write: ten years. Every timeout,
/// lifetime and lockout fits in it, and sums of them still fit the clocks
/// and caches they are given to.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses a positive duration written with [`UNITS`], at most
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration '{s}': expected e.g. 250ms, 10s, 5m, 1h, 7d or 1m30s");
    if s.is_empty() || !units_are_allowed(s) {
        return Err(bad());
    }
    let d = humantime::parse_duration(s).map_err(|_| bad())?;
    if d.is_zero() {
        return Err(format!("bad duration '{s}': must be greater than zero"));
    }
    if d > MAX_DURATION {
        return Err(format!("bad duration '{s}': at most 3650d (ten years)"));
    }
    Ok(d)
}

/// Whether `s` is digits-then-unit, repeated, with every unit in [`UNITS`].
fn units_are_allowed(s: &str) -> bool {
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if !UNITS.contains(&&rest[..unit_len]) {
            return false;
        }
        rest = &rest[unit_len..];
    }
    true
}

/// Formats a duration the way the config writes it: `90s` as `1m30s`,
/// sub-second values in `ms`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut s = (ms / 1000) as u64;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            let _ = write!(out, "{}{unit}", s / size);
            s %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, ms) in [
            ("10s", 10_000),
            ("1m30s", 90_000),
            ("250ms", 250),
            ("2h", 7_200_000),
            ("7d", 604_800_000),
            ("1d2h", 93_600_000),
            ("3650d", 315_360_000_000),
        ] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parsed, Duration::from_millis(ms), "{text}");
            assert_eq!(fmt_duration(parsed), text);
        }
    }

    #[test]
    fn bad_durations_are_refused_with_one_line() {
        for bad in [
            "",
            "10",
            "s",
            "0s",
            "-1s",
            "1.5s",
            "10 s",
            "1M",
            "1y",
            "1w",
            "5min",
            "1m 30s",
            "ten",
            "3651d",
            "400000d",
            "999999999999d",
            "99999999999999999999999s",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.starts_with(&format!("bad duration '{bad}'")), "{bad:?}: {e}");
        }
    }
}
