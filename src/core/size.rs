//! Sizes as the config writes them: `512MiB`, `20GiB`, `10GB`.
//!
//! A tiny strict parser rather than a crate: a whole number, an optional
//! space, and one unit from [`UNITS`]. No fractions, no bare numbers and no
//! lower-case units, so `1g` or `20 gigs` is a one-line error instead of a
//! guess.

/// The units a size may use, with their factors.
const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Parses a positive size in bytes, such as `20GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("bad size '{s}': expected a whole number and a unit, e.g. 512MiB, 20GiB or 10GB");
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let (number, unit) = s.split_at(digits);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let factor = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, factor)| *factor)
        .ok_or_else(bad)?;
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("bad size '{s}': too large"))?;
    if bytes == 0 {
        return Err(format!("bad size '{s}': must be greater than zero"));
    }
    Ok(bytes)
}

/// Formats a size the way the config writes it when it is a whole number of
/// a binary unit (`20GiB`), and otherwise in bytes (`1500B`).
pub fn fmt_size(bytes: u64) -> String {
    for (unit, factor) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// A size for people to read, with one decimal: `1.5 GiB`, `312 B`.
pub fn human_size(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        for (text, bytes) in [
            ("1B", 1),
            ("512MiB", 512 << 20),
            ("20GiB", 20 << 30),
            ("20 GiB", 20 << 30),
            ("1TiB", 1 << 40),
            ("10KB", 10_000),
            ("3MB", 3_000_000),
            ("10GB", 10_000_000_000),
            ("2TB", 2_000_000_000_000),
            ("1024KiB", 1 << 20),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn garbage_is_refused_with_one_line() {
        for bad in [
            "",
            "20",
            "GiB",
            "1.5GiB",
            "20gib",
            "20 gigs",
            "20  GiB",
            "-1GiB",
            "20GiB ",
            " 20GiB",
            "20G",
            "1e3B",
            "0GiB",
            "99999999999TiB",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.starts_with(&format!("bad size '{bad}'")), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn sizes_format() {
        assert_eq!(fmt_size(20 << 30), "20GiB");
        assert_eq!(fmt_size(1536), "1536B");
        assert_eq!(fmt_size(3 << 20), "3MiB");
        assert_eq!(fmt_size(1500), "1500B");
        assert_eq!(human_size(312), "312 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
