//! `[private]`: module paths that never leave for a place not listed.
//!
//! A module path matching `[private] modules` (GOPRIVATE syntax) is sent
//! only to the upstreams in `[private] mirrors`, and never to a checksum
//! database. The plan confines it: a mirror list keeps only
//! its listed entries (and local `file://` directories, `off`, and on
//! modgate's own endpoint `direct`, which sends `go` to fetch it itself);
//! an intercepted host's original server is used only when it is listed.
//! Whatever is left over is a 404 with a `modgate:` line, so `go` falls
//! through to its own `direct`. Whatever the client's GOPRIVATE says.
//! [`plan`](crate::policy::plan) applies what this module decides.

use crate::core::host::{Authority, Host};
use crate::policy::glob::ModuleGlob;
use crate::policy::mirrors::{Mirror, MirrorEntry, MirrorList};

/// The `[private]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Private {
    /// GOPRIVATE-style globs; empty: nothing is private.
    pub modules: Vec<ModuleGlob>,
    /// The only upstreams private module paths are sent to.
    pub mirrors: Vec<PrivateMirror>,
    /// Whether private modules are cached (under the cache's `private/`
    /// prefix); `false` fetches them every time.
    pub cache: bool,
}

impl Default for Private {
    fn default() -> Self {
        Private {
            modules: Vec::new(),
            mirrors: Vec::new(),
            cache: true,
        }
    }
}

/// One entry of `[private] mirrors`: a server, by scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateMirror {
    /// The URL as written, for messages.
    pub url: String,
    /// `https` or `http`.
    pub scheme: String,
    /// Host and port (the scheme's default when the URL has none).
    pub authority: Authority,
}

impl std::str::FromStr for PrivateMirror {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("bad private mirror '{}': {why}", s.escape_debug());
        let url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(bad(
                "expected https://host[/prefix] or http://host[/prefix] (file:// directories are local and always allowed)",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            return Err(bad("no credentials or query allowed"));
        }
        let host = Host::parse(url.host_str().unwrap_or_default()).map_err(|e| bad(&e))?;
        let port = url.port_or_known_default().unwrap_or(443);
        Ok(PrivateMirror {
            url: s.trim_end_matches('/').to_owned(),
            scheme: url.scheme().to_owned(),
            authority: Authority { host, port },
        })
    }
}

impl Private {
    /// Whether `module` is private.
    pub fn is_private(&self, module: &str) -> bool {
        self.modules.iter().any(|g| g.matches(module))
    }

    /// Whether the mirror-list entry `mirror` may receive a private path.
    /// `direct` is decided by the caller: it depends on the door.
    fn allows(&self, mirror: &Mirror) -> bool {
        match mirror {
            Mirror::Proxy(base) => self.allows_url(base),
            Mirror::Dir(_) | Mirror::Off => true,
            Mirror::Direct => false,
        }
    }

    /// Whether `url` is on a listed server (same scheme, host and port).
    pub fn allows_url(&self, url: &str) -> bool {
        url.parse::<PrivateMirror>().is_ok_and(|m| {
            self.mirrors
                .iter()
                .any(|l| l.scheme == m.scheme && l.authority == m.authority)
        })
    }

    /// Whether `dest` (an intercepted host, or where a redirect points) is a
    /// listed server.
    pub fn allows_host(&self, dest: &Authority) -> bool {
        self.mirrors.iter().any(|l| l.authority == *dest)
    }

    /// `list` with only the entries a private path may go to; `None` when
    /// none is left. `direct_allowed` says whether `direct` may stay.
    pub fn confine_list(&self, list: &MirrorList, direct_allowed: bool) -> Option<MirrorList> {
        let entries: Vec<MirrorEntry> = list
            .entries
            .iter()
            .filter(|e| match e.mirror {
                Mirror::Direct => direct_allowed,
                ref m => self.allows(m),
            })
            .cloned()
            .collect();
        (!entries.is_empty()).then_some(MirrorList { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(mirrors: &[&str]) -> Private {
        Private {
            modules: vec!["git.corp.test/*".parse().unwrap()],
            mirrors: mirrors.iter().map(|m| m.parse().unwrap()).collect(),
            cache: true,
        }
    }

    #[test]
    fn a_list_keeps_listed_servers_local_directories_and_off() {
        let private = private(&["https://athens.corp.test"]);
        let list: MirrorList = "https://proxy.golang.org,https://athens.corp.test/x|file:///srv,direct,off"
            .parse()
            .unwrap();
        let kept = |direct| private.confine_list(&list, direct).map(|l| l.to_string());
        assert_eq!(
            kept(true).as_deref(),
            Some("https://athens.corp.test/x|file:///srv,direct,off")
        );
        assert_eq!(
            kept(false).as_deref(),
            Some("https://athens.corp.test/x|file:///srv,off")
        );
        let public: MirrorList = "https://proxy.golang.org,direct".parse().unwrap();
        assert_eq!(private.confine_list(&public, false), None);
    }

    #[test]
    fn listed_hosts_compare_by_scheme_host_and_port() {
        let private = private(&["https://Athens.corp.test/gomods/", "http://10.0.0.5:3000"]);
        assert!(private.allows_url("https://athens.corp.test"));
        assert!(private.allows_url("https://athens.corp.test:443/other"));
        assert!(!private.allows_url("https://athens.corp.test:8443"));
        assert!(private.allows_url("http://10.0.0.5:3000/x"));
        assert!(!private.allows_url("https://10.0.0.5:3000"));
        assert!(private.allows_host(&Authority::parse_connect("athens.corp.test:443").unwrap()));
        for bad in [
            "athens.corp.test",
            "ftp://a.test",
            "https://u:p@a.test",
            "https://a.test/?q=1",
            "file:///srv",
        ] {
            assert!(bad.parse::<PrivateMirror>().is_err(), "{bad}");
        }
    }
}
