//! The mirror list of a `mirror` rule, in GOPROXY syntax, parsed once at
//! load time. Fetching from it is `modules::fetch`'s job.
//!
//! - `,` after an entry falls through to the next only on 404/410;
//! - `|` after an entry falls through on any error: connect, TLS, timeout, 5xx;
//! - `direct` is the original host (on modgate's own endpoint: a 404 telling
//!   `go` to use its own `direct`);
//! - `off` stops the list with a 403;
//! - `file://DIR` serves a GOPROXY-layout directory;
//! - `https://host/prefix` and `http://host/prefix` are module proxies.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// One entry of a mirror list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mirror {
    /// A module proxy base URL, without a trailing slash.
    Proxy(String),
    /// The original host.
    Direct,
    /// Stop: module downloads are disabled.
    Off,
    /// A GOPROXY-layout directory.
    Dir(PathBuf),
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mirror::Proxy(url) => f.write_str(url),
            Mirror::Direct => f.write_str("direct"),
            Mirror::Off => f.write_str("off"),
            Mirror::Dir(dir) => write!(f, "file://{}", dir.display()),
        }
    }
}

/// When to move on from an entry to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallThrough {
    /// `,`: only when the entry answers 404 or 410.
    OnNotFound,
    /// `|`: on any error.
    OnAnyError,
}

/// An entry and the separator that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorEntry {
    /// Where to fetch.
    pub mirror: Mirror,
    /// When to move on to the next entry (meaningless for the last).
    pub then: FallThrough,
}

/// A parsed mirror list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorList {
    /// The entries, in order. Never empty.
    pub entries: Vec<MirrorEntry>,
}

impl fmt::Display for MirrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            write!(f, "{}", e.mirror)?;
            if i + 1 < self.entries.len() {
                f.write_str(match e.then {
                    FallThrough::OnNotFound => ",",
                    FallThrough::OnAnyError => "|",
                })?;
            }
        }
        Ok(())
    }
}

impl FromStr for MirrorList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        let mut rest = s;
        loop {
            let cut = rest.find([',', '|']);
            let (item, then, next) = match cut {
                Some(i) => {
                    let then = if rest.as_bytes()[i] == b',' {
                        FallThrough::OnNotFound
                    } else {
                        FallThrough::OnAnyError
                    };
                    (&rest[..i], then, Some(&rest[i + 1..]))
                }
                None => (rest, FallThrough::OnNotFound, None),
            };
            let mirror = parse_entry(item.trim())?;
            if entries.last().is_some_and(|e: &MirrorEntry| e.mirror == Mirror::Off) {
                return Err(format!("bad mirrors '{s}': entries after 'off' are never used"));
            }
            entries.push(MirrorEntry { mirror, then });
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
        Ok(MirrorList { entries })
    }
}

fn parse_entry(item: &str) -> Result<Mirror, String> {
    match item {
        "" => return Err("bad mirrors: empty entry (two separators in a row, or one at an end)".into()),
        "direct" => return Ok(Mirror::Direct),
        "off" => return Ok(Mirror::Off),
        _ => {}
    }
    if let Some(path) = item.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "bad mirror '{item}': file:// needs an absolute path, e.g. file:///srv/gomods"
            ));
        }
        return Ok(Mirror::Dir(PathBuf::from(path)));
    }
    if !(item.starts_with("https://") || item.starts_with("http://")) {
        return Err(format!(
            "bad mirror '{item}': expected https://host[/prefix], http://host[/prefix], file:///dir, direct or off"
        ));
    }
    let uri: http::Uri = item.parse().map_err(|e| format!("bad mirror '{item}': {e}"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("bad mirror '{item}': no host"));
    }
    if uri.query().is_some() || item.contains('#') || item.contains('@') {
        return Err(format!(
            "bad mirror '{item}': no query, fragment or credentials allowed"
        ));
    }
    Ok(Mirror::Proxy(lower_authority(item.trim_end_matches('/'))))
}

/// `url` with its scheme and host in lower case (they are
/// case-insensitive, RFC 3986 §3.1, §3.2.2), the path as written: one
/// mirror is one URL however its host was spelt, in lists and in
/// `[mirror."URL"]` tables alike.
fn lower_authority(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirrors_host_is_one_however_it_is_spelt() {
        assert_eq!(
            parse_entry("https://Proxy.Corp.Example:8443/Go/Mods/").unwrap(),
            Mirror::Proxy("https://proxy.corp.example:8443/Go/Mods".into())
        );
        assert_eq!(
            parse_entry("https://A.example").unwrap(),
            parse_entry("https://a.example").unwrap()
        );
    }

    #[test]
    fn goproxy_syntax_parses_with_its_separators() {
        let list: MirrorList = "https://goproxy.cn,https://proxy.golang.org/|file:///srv/gomods,direct"
            .parse()
            .unwrap();
        let got: Vec<_> = list.entries.iter().map(|e| (e.mirror.to_string(), e.then)).collect();
        assert_eq!(
            got,
            [
                ("https://goproxy.cn".to_string(), FallThrough::OnNotFound),
                ("https://proxy.golang.org".to_string(), FallThrough::OnAnyError),
                ("file:///srv/gomods".to_string(), FallThrough::OnNotFound),
                ("direct".to_string(), FallThrough::OnNotFound),
            ]
        );
        assert_eq!(
            list.to_string(),
            "https://goproxy.cn,https://proxy.golang.org|file:///srv/gomods,direct"
        );
        let prefixed: MirrorList = "https://artifactory.corp/api/go/golang/".parse().unwrap();
        assert_eq!(
            prefixed.entries[0].mirror,
            Mirror::Proxy("https://artifactory.corp/api/go/golang".into())
        );
    }

    #[test]
    fn bad_lists_are_rejected() {
        for bad in [
            "",
            ",",
            "https://a.test,,https://b.test",
            "https://a.test|",
            "goproxy.cn",
            "file://rel/dir",
            "off,direct",
            "https://u:p@a.test",
            "https://a.test/?x=1",
            "ftp://a.test",
        ] {
            assert!(bad.parse::<MirrorList>().is_err(), "{bad:?} should be rejected");
        }
    }
}
