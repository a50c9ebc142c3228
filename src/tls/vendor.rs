//! Naming the product behind an intercepting chain, from the issuer names
//! that TLS-interception products put in their CAs (shared/INTERCEPTORS.md:
//! Chromium's MITM-software list plus published chain dumps).
//!
//! A name is only a hint: modgate names a product only when the trust
//! difference agrees (the chain fails the public roots). Products whose
//! admins generate their own CA (Palo Alto, Check Point, ...) have no fixed
//! name and are reported as `unknown`. Squid's ssl-bump CA is the admin's
//! too, but when the origin's own chain fails Squid's checks, Squid signs
//! the mimicked leaf with a self-signed CA it names `Not trusted by
//! "<issuer>"` (src/ssl/support.cc, `generateUntrustedCert`): that name is
//! Squid's.

use std::sync::OnceLock;

use regex::Regex;

/// Which name field a pattern looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    CommonName,
    Organization,
    OrganizationalUnit,
}

/// (product, field, anchored regex)
const PATTERNS: &[(&str, Field, &str)] = &[
    ("Zscaler", Field::Organization, r"Zscaler,? Inc\.?"),
    ("Zscaler", Field::OrganizationalUnit, r"Zscaler,? Inc\.?"),
    ("Zscaler", Field::CommonName, r"Zscaler Root CA( \d+)?"),
    // Each Zscaler cloud names its intermediate; `(t)` marks a test one.
    (
        "Zscaler",
        Field::CommonName,
        r"Zscaler Intermediate Root CA \((zscloud|zscaler|zscalerone|zscalertwo|zscalerthree|zscalerten|zscalergov|zscalerbeta|zspreview)\.net\)( \(t\))?",
    ),
    ("Netskope", Field::Organization, r"Netskope,? Inc\.?"),
    ("Netskope", Field::CommonName, r"certadmin"),
    ("Netskope", Field::CommonName, r"ca\..*\.goskope\.com"),
    ("Netskope", Field::CommonName, r"caadmin\.netskope\.com"),
    ("Fortinet", Field::CommonName, r"FortiGate CA"),
    ("Fortinet", Field::Organization, r"Fortinet( Ltd\.|,? Inc\.?)?"),
    (
        "Cisco Umbrella",
        Field::CommonName,
        r"Cisco Umbrella (Root CA|Primary SubCA)",
    ),
    ("Cisco Umbrella", Field::Organization, r"Cisco( Systems,? Inc\.?)?"),
    ("Blue Coat / Symantec", Field::Organization, r"Blue Coat.*"),
    ("Forcepoint", Field::CommonName, r"Forcepoint Cloud CA"),
    ("Forcepoint", Field::Organization, r"Forcepoint,? LLC"),
    // Forcepoint's web security was Websense's.
    ("Forcepoint", Field::Organization, r"Websense,? Inc\.?"),
    ("McAfee Web Gateway", Field::CommonName, r"McAfee Web Gateway"),
    // McAfee's enterprise web gateway, renamed.
    (
        "Skyhigh Secure Web Gateway",
        Field::CommonName,
        r"Skyhigh (Secure )?Web Gateway.*",
    ),
    (
        "Skyhigh Secure Web Gateway",
        Field::Organization,
        r"Skyhigh Security,?( LLC)?",
    ),
    ("Sophos", Field::CommonName, r"Sophos SSL CA_[A-Z0-9-]+"),
    ("Sophos", Field::CommonName, r"Sophos_CA_[A-Z0-9]+"),
    ("Sophos", Field::CommonName, r"sophosutm Proxy CA"),
    ("Sophos", Field::CommonName, r"Sophos Web Appliance"),
    ("Sophos", Field::Organization, r"Sophos( Ltd\.?| Limited| Inc\.?)?"),
    (
        "Kaspersky",
        Field::CommonName,
        r"Kaspersky Anti-Virus Personal Root Certificate",
    ),
    ("ESET", Field::CommonName, r"ESET SSL Filter CA"),
    ("ESET", Field::Organization, r"ESET, spol\. s r\. o\."),
    (
        "Avast / AVG / Norton",
        Field::CommonName,
        r"(avast!? |AVG |Norton )Web/Mail Shield Root",
    ),
    (
        "Bitdefender",
        Field::CommonName,
        r"Bitdefender Personal CA\.Net-Defender",
    ),
    ("Bitdefender", Field::Organization, r"Bitdefender"),
    (
        "Cloudflare Gateway",
        Field::CommonName,
        r"Cloudflare for Teams ECC Certificate Authority",
    ),
    (
        "Cloudflare Gateway",
        Field::OrganizationalUnit,
        r"Gateway Intermediate ECC Certificate Authority",
    ),
    ("Menlo Security", Field::CommonName, r"Menlo Security Intermediate CA"),
    ("Menlo Security", Field::Organization, r"Menlo Security Inc\."),
    (
        "ContentKeeper",
        Field::CommonName,
        r"ContentKeeper Appliance CA \(\d+\)",
    ),
    ("Cyberoam", Field::Organization, r"Cyberoam Certificate Authority"),
    (
        "SmoothWall",
        Field::CommonName,
        r"Smoothwall-default-root-certificate-authority",
    ),
    (
        "SonicWall",
        Field::Organization,
        r"HTTPS Management Certificate for SonicWALL",
    ),
    ("Trend Micro IWSS", Field::CommonName, r"IWSS\.TREND"),
    ("NetSpark", Field::CommonName, r"www\.netspark\.com"),
    ("Charles Proxy", Field::CommonName, r"Charles Proxy CA.*"),
    ("Charles Proxy", Field::Organization, r"XK72 Ltd"),
    ("Fiddler", Field::CommonName, r"DO_NOT_TRUST_FiddlerRoot"),
    ("Burp Suite", Field::CommonName, r"PortSwigger CA"),
    // Vendors whose CA the admin generates, when it keeps the vendor's
    // name as its organization.
    (
        "Palo Alto Networks",
        Field::Organization,
        r"Palo Alto Networks,?( Inc\.?)?",
    ),
    (
        "Check Point",
        Field::Organization,
        r"Check Point Software Technologies,?( Ltd\.?)?",
    ),
    ("Barracuda", Field::Organization, r"Barracuda Networks,?( Inc\.?)?"),
    (
        "WatchGuard",
        Field::Organization,
        r"WatchGuard( Technologies,?( Inc\.?)?)?",
    ),
    ("mitmproxy", Field::CommonName, r"mitmproxy"),
    ("mitmproxy", Field::Organization, r"mitmproxy"),
    // Squid ssl-bump's CA for origins whose chain Squid did not trust.
    ("Squid ssl-bump", Field::CommonName, r#"Not trusted( by ".*")?"#),
    // modgate itself, as `ca init` names its CA: another modgate (or this
    // one) intercepting upstream.
    ("modgate", Field::CommonName, r"modgate local CA [0-9a-f]{8}"),
];

/// The compiled table.
fn table() -> &'static [(&'static str, Field, Regex)] {
    static TABLE: OnceLock<Vec<(&'static str, Field, Regex)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        PATTERNS
            .iter()
            .filter_map(|(product, field, pattern)| {
                // Anchored: the whole attribute must match, as Chromium's
                // list does; but in any case (`Sophos SSL CA_c1234`, an O
                // in capitals), as admins and firmware versions write them.
                Regex::new(&format!("(?i)^(?:{pattern})$"))
                    .ok()
                    .map(|re| (*product, *field, re))
            })
            .collect()
    })
}

/// The name attributes of one certificate's issuer or subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Common names.
    pub cn: Vec<String>,
    /// Organizations.
    pub o: Vec<String>,
    /// Organizational units.
    pub ou: Vec<String>,
}

/// The product whose naming pattern matches `names`, if any.
pub fn product(names: &Names) -> Option<&'static str> {
    table().iter().find_map(|(product, field, re)| {
        let values = match field {
            Field::CommonName => &names.cn,
            Field::Organization => &names.o,
            Field::OrganizationalUnit => &names.ou,
        };
        values.iter().any(|v| re.is_match(v)).then_some(*product)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cn(s: &str) -> Names {
        Names {
            cn: vec![s.into()],
            ..Names::default()
        }
    }

    fn o(s: &str) -> Names {
        Names {
            o: vec![s.into()],
            ..Names::default()
        }
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(table().len(), PATTERNS.len());
    }

    #[test]
    fn products_are_named_from_issuer_names() {
        assert_eq!(
            product(&cn("Zscaler Intermediate Root CA (zscaler.net)")),
            Some("Zscaler")
        );
        assert_eq!(
            product(&cn("Zscaler Intermediate Root CA (zscalerthree.net)")),
            Some("Zscaler")
        );
        assert_eq!(product(&o("Zscaler Inc.")), Some("Zscaler"));
        assert_eq!(product(&cn("ca.acme.goskope.com")), Some("Netskope"));
        assert_eq!(product(&cn("FortiGate CA")), Some("Fortinet"));
        assert_eq!(product(&o("Fortinet Ltd.")), Some("Fortinet"));
        assert_eq!(product(&cn("Sophos SSL CA_C1234-XY")), Some("Sophos"));
        assert_eq!(product(&cn("ContentKeeper Appliance CA (42)")), Some("ContentKeeper"));
        assert_eq!(product(&cn("AVG Web/Mail Shield Root")), Some("Avast / AVG / Norton"));
        let cloudflare = Names {
            ou: vec!["Gateway Intermediate ECC Certificate Authority".into()],
            ..Names::default()
        };
        assert_eq!(product(&cloudflare), Some("Cloudflare Gateway"));
        assert_eq!(product(&cn("mitmproxy")), Some("mitmproxy"));
        assert_eq!(product(&o("mitmproxy")), Some("mitmproxy"));
        assert_eq!(
            product(&cn("Not trusted by \"Example Corp Root CA\"")),
            Some("Squid ssl-bump")
        );
        assert_eq!(product(&cn("Not trusted")), Some("Squid ssl-bump"));
        assert_eq!(product(&cn("modgate local CA 0a1b2c3d")), Some("modgate"));
        assert_eq!(product(&cn("modgate local CA")), None);
    }

    /// The spellings products and their admins write besides Chromium's:
    /// punctuation, case, other Zscaler clouds, renamed products.
    #[test]
    fn real_world_spellings_are_named() {
        for (names, want) in [
            (cn("Zscaler Intermediate Root CA (zscalertwo.net)"), "Zscaler"),
            (cn("Zscaler Intermediate Root CA (zscaler.net) (t)"), "Zscaler"),
            (o("Zscaler, Inc."), "Zscaler"),
            (o("Zscaler Inc"), "Zscaler"),
            (
                Names {
                    ou: vec!["Zscaler Inc.".into()],
                    ..Names::default()
                },
                "Zscaler",
            ),
            (o("Netskope Inc"), "Netskope"),
            (o("Fortinet, Inc."), "Fortinet"),
            (o("Cisco Systems, Inc."), "Cisco Umbrella"),
            (o("Sophos"), "Sophos"),
            (cn("sophos ssl ca_c1234"), "Sophos"),
            (cn("Avast Web/Mail Shield Root"), "Avast / AVG / Norton"),
            (o("Websense, Inc."), "Forcepoint"),
            (cn("Skyhigh Secure Web Gateway CA"), "Skyhigh Secure Web Gateway"),
            (o("Palo Alto Networks"), "Palo Alto Networks"),
            (o("Check Point Software Technologies Ltd."), "Check Point"),
            (o("FORTINET"), "Fortinet"),
        ] {
            assert_eq!(product(&names), Some(want), "{names:?}");
        }
    }

    #[test]
    fn near_misses_are_not_named() {
        assert_eq!(product(&cn("Zscaler Intermediate Root CA (evil.net)")), None);
        assert_eq!(product(&cn("Example Corp Root CA")), None);
        assert_eq!(product(&o("Ciscoville Ltd")), None);
        assert_eq!(product(&cn("not mitmproxy")), None);
        assert_eq!(product(&cn("Not trusted by me, or by anyone")), None);
        assert_eq!(product(&cn("DigiCert Global Root G2")), None);
    }
}
