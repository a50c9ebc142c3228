//! `[private]`: module paths that never leave for a place not listed.
//!
//! A module path matching `[private] modules` (GOPRIVATE syntax) is sent
//! only to the upstreams in `[private] mirrors`, and never to a checksum
//! database. The plan confines it ([`confine`]): a mirror list keeps only
//! its listed entries (and local `file://` directories, `off`, and on
//! modgate's own endpoint `direct`, which sends `go` to fetch it itself);
//! an intercepted host's original server is used only when it is listed.
//! Whatever is left over is a 404 with a `modgate:` line, so `go` falls
//! through to its own `direct`. Whatever the client's GOPRIVATE says.

use std::borrow::Cow;

use crate::core::error::Error;
use crate::core::host::{Authority, Host};
use crate::policy::glob::ModuleGlob;
use crate::policy::mirrors::{Mirror, MirrorEntry, MirrorList};
use crate::policy::plan::Plan;
use crate::policy::rule::Facts;

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
    fn confine_list(&self, list: &MirrorList, direct_allowed: bool) -> Option<MirrorList> {
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

/// `plan`, confined for a private module path: what it may not do becomes
/// a 404 refusal with a `modgate:` line. Plans for public paths, and
/// refusals, are returned as they are.
pub fn confine<'a>(private: &Private, facts: &Facts<'_>, plan: Plan<'a>) -> Plan<'a> {
    let Some(module) = facts.module.filter(|m| private.is_private(m)) else {
        return plan;
    };
    let Some(rule) = plan.rule().filter(|_| !matches!(plan, Plan::Refuse { .. })) else {
        return plan;
    };
    let refuse = |detail: String| Plan::Refuse {
        rule: Some(rule),
        error: Error::Private {
            module: module.to_owned(),
            detail,
        },
    };
    if facts.sumdb_lookup {
        return refuse(
            "modgate never asks a checksum database about it; cover it with GONOSUMDB or GOPRIVATE".to_owned(),
        );
    }
    match plan {
        Plan::Mirror(rule, list) => {
            // On the endpoint, `direct` is go's own fetch; inside a
            // tunnel it is the intercepted host.
            let direct_allowed = facts.dest.is_none_or(|d| private.allows_host(d));
            match private.confine_list(&list, direct_allowed) {
                Some(kept) if kept == *list => Plan::Mirror(rule, list),
                Some(kept) => Plan::Mirror(rule, Cow::Owned(kept)),
                None => refuse(format!(
                    "rule '{}' would send it to {list}, and none of those is in [private] mirrors; go fetches it direct",
                    rule.name
                )),
            }
        }
        Plan::Origin(_) => match facts.dest {
            Some(dest) if !private.allows_host(dest) => refuse(format!(
                "modgate does not send it to {dest}, which is not in [private] mirrors; go fetches it direct"
            )),
            _ => plan,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::policy::plan::{Door, plan as plan_for};
    use crate::policy::rule::{Action, Rule};

    fn policy(action: Action, mirrors: &[&str]) -> Policy {
        Policy {
            rules: vec![Rule {
                name: "all".into(),
                hosts: None,
                ports: None,
                src: None,
                dst: None,
                modules: None,
                versions: None,
                action,
                cache: true,
            }],
            intercept: vec!["proxy.golang.org".parse().unwrap()],
            private: Private {
                modules: vec!["git.corp.test/*".parse().unwrap()],
                mirrors: mirrors.iter().map(|m| m.parse().unwrap()).collect(),
                cache: true,
            },
        }
    }

    fn mirror(list: &str) -> Action {
        Action::Mirror {
            mirrors: list.parse().unwrap(),
        }
    }

    fn facts<'a>(dest: Option<&'a Authority>, module: &'a str) -> Facts<'a> {
        Facts {
            src: "127.0.0.1".parse().unwrap(),
            dest,
            addr: None,
            module: Some(module),
            version: None,
            sumdb_lookup: false,
        }
    }

    const PRIVATE: &str = "git.corp.test/team/x";

    #[test]
    fn a_mirror_list_keeps_only_listed_entries_for_a_private_path() {
        let p = policy(
            mirror("https://proxy.golang.org,https://athens.corp.test/gomods|file:///srv/mods,direct"),
            &["https://athens.corp.test"],
        );
        let plan = plan_for(&p, Door::Endpoint, &facts(None, PRIVATE), PRIVATE).unwrap();
        let Plan::Mirror(_, list) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(
            list.to_string(),
            "https://athens.corp.test/gomods|file:///srv/mods,direct"
        );
        // A public path keeps the whole list.
        let public = "github.com/x/y";
        let Plan::Mirror(_, list) = plan_for(&p, Door::Endpoint, &facts(None, public), public).unwrap() else {
            panic!()
        };
        assert!(matches!(list, Cow::Borrowed(_)));
        // Inside an intercepted proxy.golang.org, `direct` is that host:
        // not listed, so it goes.
        let proxy = Authority::parse_connect("proxy.golang.org:443").unwrap();
        let inside = Door::Intercepted { module_request: true };
        let Plan::Mirror(_, list) = plan_for(&p, inside, &facts(Some(&proxy), PRIVATE), PRIVATE).unwrap() else {
            panic!()
        };
        assert_eq!(list.to_string(), "https://athens.corp.test/gomods|file:///srv/mods");
    }

    #[test]
    fn nothing_listed_left_is_a_404_naming_the_module() {
        let p = policy(mirror("https://proxy.golang.org"), &["https://athens.corp.test"]);
        let plan = plan_for(&p, Door::Endpoint, &facts(None, PRIVATE), PRIVATE).unwrap();
        let Plan::Refuse { error, .. } = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(error.status(), http::StatusCode::NOT_FOUND);
        assert_eq!(
            error.to_string(),
            "git.corp.test/team/x is private ([private] modules): rule 'all' would send it to https://proxy.golang.org, and none of those is in [private] mirrors; go fetches it direct"
        );
        // An http:// mirror on the listed host is another server.
        let p = policy(mirror("http://athens.corp.test"), &["https://athens.corp.test"]);
        assert!(matches!(
            plan_for(&p, Door::Endpoint, &facts(None, PRIVATE), PRIVATE).unwrap(),
            Plan::Refuse { .. }
        ));
    }

    #[test]
    fn an_intercepted_direct_reaches_only_a_listed_host() {
        let proxy = Authority::parse_connect("proxy.golang.org:443").unwrap();
        let inside = Door::Intercepted { module_request: true };
        let p = policy(Action::Direct, &["https://athens.corp.test"]);
        let plan = plan_for(&p, inside, &facts(Some(&proxy), PRIVATE), PRIVATE).unwrap();
        let Plan::Refuse { error, .. } = plan else {
            panic!("{plan:?}")
        };
        assert!(
            error.to_string().contains("does not send it to proxy.golang.org:443"),
            "{error}"
        );
        let athens = Authority::parse_connect("athens.corp.test:443").unwrap();
        let plan = plan_for(&p, inside, &facts(Some(&athens), PRIVATE), PRIVATE).unwrap();
        assert!(matches!(plan, Plan::Origin(_)), "{plan:?}");
        // On the endpoint, `direct` only tells go to fetch it itself.
        let plan = plan_for(&p, Door::Endpoint, &facts(None, PRIVATE), PRIVATE).unwrap();
        assert!(matches!(plan, Plan::ClientDirect(_)), "{plan:?}");
    }

    #[test]
    fn sumdb_lookups_of_private_paths_are_refused_and_blocks_stay_blocks() {
        let p = policy(mirror("https://athens.corp.test"), &["https://athens.corp.test"]);
        let lookup = Facts {
            sumdb_lookup: true,
            ..facts(None, PRIVATE)
        };
        let Plan::Refuse { error, .. } = plan_for(&p, Door::Endpoint, &lookup, PRIVATE).unwrap() else {
            panic!()
        };
        assert_eq!(error.status(), http::StatusCode::NOT_FOUND);
        assert!(error.to_string().contains("never asks a checksum database"), "{error}");
        let p = policy(Action::Block { reason: "no".into() }, &[]);
        let Plan::Refuse { error, .. } = plan_for(&p, Door::Endpoint, &facts(None, PRIVATE), PRIVATE).unwrap() else {
            panic!()
        };
        assert_eq!(error.status(), http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn listed_hosts_compare_by_scheme_host_and_port() {
        let p = policy(
            Action::Direct,
            &["https://Athens.corp.test/gomods/", "http://10.0.0.5:3000"],
        );
        let private = &p.private;
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
