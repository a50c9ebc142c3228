//! Request-target and Host parsing (`core::host`), host globs, CIDRs, and
//! the IP spellings a client may use, including IPv6 addresses that carry
//! an IPv4 one.
//!
//! Two halves:
//! - free text into `Host::parse`, `Authority::parse_connect`, `HostGlob`
//!   and `Cidr`: no panic, and whatever parses prints as text that parses
//!   back to the same value;
//! - an address chosen by the fuzzer, written in one of several spellings
//!   (dotted, bracketed, mapped, compatible, NAT64, 6to4, upper-case,
//!   fully expanded): it must parse to that address, and a `/32` rule on
//!   the IPv4 address it carries must match it (`dst` rules cannot be
//!   slipped past by spelling).

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use modgate::core::host::{Authority, Host};
use modgate::policy::glob::HostGlob;
use modgate::policy::rule::{Cidr, embedded_ipv4};

#[derive(Arbitrary, Debug)]
enum Input {
    Text(String),
    Spelled {
        v4: [u8; 4],
        form: Form,
        port: u16,
        upper: bool,
        expand: bool,
    },
    Glob {
        glob: String,
        host: String,
    },
}

/// How an IPv6 address carries an IPv4 one.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Form {
    Plain,
    Mapped,
    Compatible,
    Nat64,
    Nat64Local,
    SixToFour { tail: u16 },
}

fn carrier(v4: Ipv4Addr, form: Form) -> IpAddr {
    let [a, b, c, d] = v4.octets();
    let s = |hi: u8, lo: u8| u16::from_be_bytes([hi, lo]);
    IpAddr::V6(match form {
        Form::Plain => return IpAddr::V4(v4),
        Form::Mapped => v4.to_ipv6_mapped(),
        Form::Compatible => v4.to_ipv6_compatible(),
        Form::Nat64 => Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, s(a, b), s(c, d)),
        // RFC 8215 local-use prefix, address in bits 48..88 around the u octet.
        Form::Nat64Local => Ipv6Addr::new(0x64, 0xff9b, 1, s(a, b), s(0, c), s(d, 0), 0, 0),
        Form::SixToFour { tail } => Ipv6Addr::new(0x2002, s(a, b), s(c, d), 0, 0, 0, 0, tail),
    })
}

/// The spellings of one address a client might send.
fn spellings(ip: IpAddr, upper: bool, expand: bool) -> Vec<String> {
    let mut out = vec![ip.to_string()];
    if let IpAddr::V6(v6) = ip {
        if expand {
            let segs: Vec<String> = v6.segments().iter().map(|s| format!("{s:04x}")).collect();
            out.push(segs.join(":"));
        }
        if let Some(v4) = v6.to_ipv4_mapped() {
            out.push(format!("::ffff:{v4}"));
            out.push(format!("0:0:0:0:0:ffff:{v4}"));
        }
        let seg = v6.segments();
        if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
            let o = v6.octets();
            out.push(format!("64:ff9b::{}.{}.{}.{}", o[12], o[13], o[14], o[15]));
        }
        if upper {
            out = out.into_iter().map(|s| s.to_ascii_uppercase()).collect();
        }
        out = out.into_iter().flat_map(|s| [format!("[{s}]"), s]).collect();
    }
    out
}

fn roundtrip_text(s: &str) {
    if let Ok(host) = Host::parse(s) {
        let again = Host::parse(&host.to_string()).expect("a printed host parses");
        assert_eq!(again, host);
        if let Host::Name(name) = &host {
            assert!(
                name.parse::<IpAddr>().is_err(),
                "an IP literal parsed as a name: {name:?}"
            );
            assert_eq!(name, &name.to_ascii_lowercase());
        }
    }
    if let Ok(a) = Authority::parse_connect(s) {
        assert_eq!(
            Authority::parse_connect(&a.to_string()).expect("a printed authority parses"),
            a
        );
        assert_ne!(a.port, 0);
    }
    if let Ok(glob) = s.parse::<HostGlob>() {
        assert_eq!(
            glob.to_string().parse::<HostGlob>().expect("a printed glob parses"),
            glob
        );
    }
    if let Ok(cidr) = s.parse::<Cidr>() {
        assert_eq!(cidr.to_string().parse::<Cidr>().expect("a printed CIDR parses"), cidr);
    }
}

fuzz_target!(|input: Input| match input {
    Input::Text(s) => roundtrip_text(&s),
    Input::Spelled {
        v4,
        form,
        port,
        upper,
        expand,
    } => {
        let v4 = Ipv4Addr::from(v4);
        let ip = carrier(v4, form);
        if ip == IpAddr::V6(Ipv6Addr::LOCALHOST) {
            // `::1` is IPv6's loopback, not a carrier of 0.0.0.1.
            assert_eq!(embedded_ipv4(Ipv6Addr::LOCALHOST), None);
            return;
        }
        let rule: Cidr = format!("{v4}/32").parse().expect("a /32 parses");
        assert!(rule.contains(ip), "{ip} carries {v4} but the rule {rule} misses it");
        if let IpAddr::V6(v6) = ip {
            assert_eq!(embedded_ipv4(v6), Some(v4), "{ip} ({form:?})");
        }
        for text in spellings(ip, upper, expand) {
            roundtrip_text(&text);
            let host = Host::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(host, Host::Ip(ip), "{text:?}");
            assert!(rule.contains(host.ip().expect("an IP")), "{text:?}");
            if port != 0 {
                let bracketed = if ip.is_ipv6() && !text.starts_with('[') {
                    format!("[{text}]")
                } else {
                    text.clone()
                };
                let a = Authority::parse_connect(&format!("{bracketed}:{port}"))
                    .unwrap_or_else(|e| panic!("{bracketed}:{port}: {e}"));
                assert_eq!((a.host, a.port), (Host::Ip(ip), port));
            }
        }
    }
    Input::Glob { glob, host } => {
        roundtrip_text(&glob);
        roundtrip_text(&host);
        let (Ok(g), Ok(h)) = (glob.parse::<HostGlob>(), Host::parse(&host)) else {
            return;
        };
        let matched = g.matches(&h);
        // The oracle: what each glob form means, written out.
        let expected = match (&g, &h) {
            (HostGlob::Any, _) => true,
            (HostGlob::Exact(n), Host::Name(hn)) => n == hn,
            (HostGlob::Subdomains(s), Host::Name(hn)) => hn.len() > s.len() + 1 && hn.ends_with(&format!(".{s}")),
            (HostGlob::Ip(ip), Host::Ip(hip)) => ip == hip,
            _ => false,
        };
        assert_eq!(matched, expected, "{g} vs {h}");
    }
});
