//! The one decision: what modgate does with a request or tunnel, given the
//! door it came in by. `serve` carries the [`Plan`] out and `explain` prints
//! it, so the two can never disagree.
//!
//! [`decide`](crate::policy::decide::decide) picks the rule; this module
//! adds what the door allows. A `mirror` rule can only be carried out where
//! modgate sees module paths (its own endpoint, or inside an intercepted
//! tunnel), so a CONNECT to a host outside `tls.intercept` or an
//! absolute-form request under a `mirror` rule is refused here, with the
//! reason and the fix.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use crate::core::error::Error;
use crate::policy::Policy;
use crate::policy::decide::{Decision, decide, decide_resolved};
use crate::policy::mirrors::MirrorList;
use crate::policy::private::Private;
use crate::policy::rule::{Action, Facts, Rule};

/// How a request or tunnel reached modgate: what it can see there, and what
/// it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `CONNECT host:port`: only the destination is known.
    Tunnel,
    /// `GET http://host/path`: an absolute-form request, forwarded in the clear.
    Forward,
    /// An origin-form request to modgate's own module endpoint
    /// (`GOPROXY=http://<modgate>`): there is no destination host.
    Endpoint,
    /// A request inside a tunnel modgate terminated. `module_request` says
    /// whether its path is a GOPROXY or sumdb request.
    Intercepted {
        /// Whether the path is a GOPROXY or checksum-database request.
        module_request: bool,
    },
}

/// What modgate does, as the access log and `explain` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionTaken {
    /// Sent to the origin unchanged (a tunnel, a forward, or `go`'s own
    /// `direct` on the endpoint).
    Direct,
    /// Fetched from a mirror list.
    Mirror,
    /// The tunnel's TLS was terminated with the local CA.
    Intercept,
    /// Refused by the policy.
    Block,
    /// Not reached: the request failed before a rule applied.
    Error,
}

impl ActionTaken {
    /// The name in access events and `explain`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionTaken::Direct => "direct",
            ActionTaken::Mirror => "mirror",
            ActionTaken::Intercept => "intercept",
            ActionTaken::Block => "block",
            ActionTaken::Error => "error",
        }
    }
}

/// What to do with one request or tunnel.
#[derive(Debug, Clone)]
pub enum Plan<'a> {
    /// Relay the tunnel's bytes to the destination.
    Relay(&'a Rule),
    /// Terminate the tunnel's TLS with the local CA; each request inside is
    /// planned again, with its module path known.
    Intercept(&'a Rule),
    /// Send the request to its origin: a plain-HTTP forward, or the
    /// original host of an intercepted tunnel.
    Origin(&'a Rule),
    /// Fetch the module request from the rule's mirror list (for a private
    /// module path, only its entries `[private]` allows).
    Mirror(&'a Rule, Cow<'a, MirrorList>),
    /// Answer 404 so that `go` fetches the module with its own `direct`
    /// (a `direct` rule on modgate's own endpoint).
    ClientDirect(&'a Rule),
    /// Answer 404: the request inside an intercepted tunnel is not a module
    /// request, and its rule only mirrors module requests.
    NotModule(&'a Rule),
    /// Refuse with this error's `modgate:` line.
    Refuse {
        /// The rule that refused, if one matched.
        rule: Option<&'a Rule>,
        /// What the client is told.
        error: Error,
    },
}

impl<'a> Plan<'a> {
    /// The rule that decided, if one matched.
    pub fn rule(&self) -> Option<&'a Rule> {
        match self {
            Plan::Relay(r)
            | Plan::Intercept(r)
            | Plan::Origin(r)
            | Plan::Mirror(r, _)
            | Plan::ClientDirect(r)
            | Plan::NotModule(r) => Some(r),
            Plan::Refuse { rule, .. } => *rule,
        }
    }

    /// The action, as logged.
    pub fn action(&self) -> ActionTaken {
        match self {
            Plan::Relay(_) | Plan::Origin(_) | Plan::ClientDirect(_) => ActionTaken::Direct,
            Plan::Intercept(_) => ActionTaken::Intercept,
            Plan::Mirror(..) | Plan::NotModule(_) => ActionTaken::Mirror,
            Plan::Refuse { .. } => ActionTaken::Block,
        }
    }
}

/// The plan needs the destination's addresses: a `dst` rule applies before
/// any rule that matches. Resolve, then call [`plan_resolved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsAddress;

/// Plans a request with what is known. `what` names the target in the
/// no-match refusal (`host:port`, a module path, or a URL); it is only
/// formatted for a refusal.
pub fn plan<'a>(
    policy: &'a Policy,
    door: Door,
    facts: &Facts<'_>,
    what: &(impl fmt::Display + ?Sized),
) -> Result<Plan<'a>, NeedsAddress> {
    match decide(&policy.rules, facts) {
        Decision::NeedsAddress => Err(NeedsAddress),
        decision => Ok(plan_decided(policy, door, facts, decision, what)),
    }
}

/// Plans a request whose destination resolved to `addrs`: if the policy
/// refuses any of them, the request is refused.
pub fn plan_resolved<'a>(
    policy: &'a Policy,
    door: Door,
    facts: &Facts<'_>,
    addrs: &[IpAddr],
    what: &(impl fmt::Display + ?Sized),
) -> Plan<'a> {
    let decision = decide_resolved(&policy.rules, facts, addrs);
    plan_decided(policy, door, facts, decision, what)
}

/// Turns a rule decision into the plan for `door`. Used by [`plan`] and by
/// `explain`, which decides without DNS.
pub fn plan_decided<'a>(
    policy: &'a Policy,
    door: Door,
    facts: &Facts<'_>,
    decision: Decision<'a>,
    what: &(impl fmt::Display + ?Sized),
) -> Plan<'a> {
    let rule = match decision {
        Decision::Matched(rule) => rule,
        Decision::NoMatch => {
            return Plan::Refuse {
                rule: None,
                error: Error::NoRule(what.to_string()),
            };
        }
        Decision::NeedsAddress => {
            return Plan::Refuse {
                rule: None,
                error: Error::Internal(format!("the policy for {what} still needs an address")),
            };
        }
    };
    let refuse = |reason: String| Plan::Refuse {
        rule: Some(rule),
        error: Error::Blocked {
            rule: rule.name.to_string(),
            reason,
        },
    };
    let intercepted_host = facts.dest.is_some_and(|d| policy.intercepts(&d.host));
    let plan = match (&rule.action, door) {
        (Action::Block { reason }, _) => refuse(reason.clone()),
        (_, Door::Tunnel) if intercepted_host => Plan::Intercept(rule),
        (Action::Direct, Door::Tunnel) => Plan::Relay(rule),
        (Action::Mirror { .. }, Door::Tunnel) => refuse(format!(
            "it mirrors module requests, but {} is not in tls.intercept, so modgate cannot see inside this tunnel; add it to tls.intercept or use GOPROXY=http://<modgate>",
            facts.dest.map_or_else(|| "the host".to_owned(), |d| d.host.to_string())
        )),
        (Action::Direct, Door::Forward | Door::Intercepted { .. }) => Plan::Origin(rule),
        (Action::Mirror { .. }, Door::Forward) => refuse(
            "it mirrors module requests; send them to modgate's module endpoint (GOPROXY=http://<modgate>)".into(),
        ),
        (Action::Direct, Door::Endpoint) => Plan::ClientDirect(rule),
        (Action::Mirror { mirrors }, Door::Endpoint | Door::Intercepted { module_request: true }) => {
            Plan::Mirror(rule, Cow::Borrowed(mirrors))
        }
        (Action::Mirror { .. }, Door::Intercepted { module_request: false }) => Plan::NotModule(rule),
    };
    confine_private(&policy.private, facts, plan)
}

/// `plan`, confined for a private module path: what it may not do becomes
/// a 404 refusal with a `modgate:` line. Plans for public paths, and
/// refusals, are returned as they are.
fn confine_private<'a>(private: &Private, facts: &Facts<'_>, plan: Plan<'a>) -> Plan<'a> {
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
    use crate::core::host::Authority;

    /// One catch-all rule named `m` with `action`, intercepting `intercept`.
    fn policy(action: Action, intercept: &[&str]) -> Policy {
        Policy {
            rules: vec![Rule::any("m", action)],
            intercept: intercept.iter().map(|h| h.parse().unwrap()).collect(),
            private: Default::default(),
            ..Policy::default()
        }
    }

    fn mirror() -> Action {
        Action::Mirror {
            mirrors: "https://mirror.test".parse().unwrap(),
        }
    }

    fn facts<'a>(dest: Option<&'a Authority>, module: Option<&'a str>) -> Facts<'a> {
        Facts {
            src: "127.0.0.1".parse().unwrap(),
            dest,
            addr: None,
            module,
            user: None,
            version: None,
            sumdb_lookup: false,
            sumdb_tree: false,
        }
    }

    #[test]
    fn a_mirror_rule_on_a_tunnel_is_refused_unless_the_host_is_intercepted() {
        let p = policy(mirror(), &["sum.golang.org"]);
        let proxy = Authority::parse_connect("proxy.golang.org:443").unwrap();
        let plan = plan(&p, Door::Tunnel, &facts(Some(&proxy), None), "proxy.golang.org:443").unwrap();
        let Plan::Refuse {
            rule: Some(rule),
            error,
        } = plan
        else {
            panic!("{plan:?}")
        };
        assert_eq!(&*rule.name, "m");
        assert!(error.to_string().contains("not in tls.intercept"), "{error}");
        let sum = Authority::parse_connect("sum.golang.org:443").unwrap();
        let plan = super::plan(&p, Door::Tunnel, &facts(Some(&sum), None), "sum.golang.org:443").unwrap();
        assert!(matches!(plan, Plan::Intercept(_)), "{plan:?}");
        assert_eq!(plan.action(), ActionTaken::Intercept);
    }

    #[test]
    fn each_door_carries_out_direct_and_mirror_its_own_way() {
        let p = policy(mirror(), &[]);
        let dest = Authority::parse_connect("example.com:80").unwrap();
        let f = facts(Some(&dest), None);
        assert!(matches!(plan(&p, Door::Forward, &f, "x").unwrap(), Plan::Refuse { .. }));
        let f = facts(None, Some("golang.org/x/mod"));
        assert!(matches!(plan(&p, Door::Endpoint, &f, "x").unwrap(), Plan::Mirror(..)));
        let f = facts(Some(&dest), Some("golang.org/x/mod"));
        let inside = Door::Intercepted { module_request: true };
        assert!(matches!(plan(&p, inside, &f, "x").unwrap(), Plan::Mirror(..)));
        let inside = Door::Intercepted { module_request: false };
        assert!(matches!(plan(&p, inside, &f, "x").unwrap(), Plan::NotModule(_)));

        let p = policy(Action::Direct, &[]);
        let f = facts(None, Some("golang.org/x/mod"));
        assert!(matches!(
            plan(&p, Door::Endpoint, &f, "x").unwrap(),
            Plan::ClientDirect(_)
        ));
        let f = facts(Some(&dest), None);
        assert!(matches!(plan(&p, Door::Forward, &f, "x").unwrap(), Plan::Origin(_)));
        assert!(matches!(plan(&p, Door::Tunnel, &f, "x").unwrap(), Plan::Relay(_)));
    }

    #[test]
    fn no_rule_names_the_target() {
        let p = Policy::default();
        let f = facts(None, Some("golang.org/x/mod"));
        let Ok(Plan::Refuse { rule: None, error }) = plan(&p, Door::Endpoint, &f, "golang.org/x/mod") else {
            panic!()
        };
        assert_eq!(
            error.to_string(),
            "no rule matched golang.org/x/mod; modgate refuses what no rule allows"
        );
    }

    fn private_policy(action: Action, mirrors: &[&str]) -> Policy {
        Policy {
            rules: vec![Rule::any("all", action)],
            intercept: vec!["proxy.golang.org".parse().unwrap()],
            parent: Default::default(),
            private: crate::policy::private::Private {
                modules: vec!["git.corp.test/*".parse().unwrap()],
                mirrors: mirrors.iter().map(|m| m.parse().unwrap()).collect(),
                cache: true,
            },
        }
    }

    fn mirror_list(list: &str) -> Action {
        Action::Mirror {
            mirrors: list.parse().unwrap(),
        }
    }

    fn private_facts<'a>(dest: Option<&'a Authority>, module: &'a str) -> Facts<'a> {
        Facts {
            src: "127.0.0.1".parse().unwrap(),
            dest,
            addr: None,
            module: Some(module),
            user: None,
            version: None,
            sumdb_lookup: false,
            sumdb_tree: false,
        }
    }

    const PRIVATE: &str = "git.corp.test/team/x";

    #[test]
    fn a_mirror_list_keeps_only_listed_entries_for_a_private_path() {
        let p = private_policy(
            mirror_list("https://proxy.golang.org,https://athens.corp.test/gomods|file:///srv/mods,direct"),
            &["https://athens.corp.test"],
        );
        let planned = plan(&p, Door::Endpoint, &private_facts(None, PRIVATE), PRIVATE).unwrap();
        let Plan::Mirror(_, list) = planned else {
            panic!("{planned:?}")
        };
        assert_eq!(
            list.to_string(),
            "https://athens.corp.test/gomods|file:///srv/mods,direct"
        );
        // A public path keeps the whole list.
        let public = "github.com/x/y";
        let Plan::Mirror(_, list) = plan(&p, Door::Endpoint, &private_facts(None, public), public).unwrap() else {
            panic!()
        };
        assert!(matches!(list, Cow::Borrowed(_)));
        // Inside an intercepted proxy.golang.org, `direct` is that host:
        // not listed, so it goes.
        let proxy = Authority::parse_connect("proxy.golang.org:443").unwrap();
        let inside = Door::Intercepted { module_request: true };
        let Plan::Mirror(_, list) = plan(&p, inside, &private_facts(Some(&proxy), PRIVATE), PRIVATE).unwrap() else {
            panic!()
        };
        assert_eq!(list.to_string(), "https://athens.corp.test/gomods|file:///srv/mods");
    }

    #[test]
    fn nothing_listed_left_is_a_404_naming_the_module() {
        let p = private_policy(mirror_list("https://proxy.golang.org"), &["https://athens.corp.test"]);
        let planned = plan(&p, Door::Endpoint, &private_facts(None, PRIVATE), PRIVATE).unwrap();
        let Plan::Refuse { error, .. } = planned else {
            panic!("{planned:?}")
        };
        assert_eq!(error.status(), http::StatusCode::NOT_FOUND);
        assert_eq!(
            error.to_string(),
            "git.corp.test/team/x is private ([private] modules): rule 'all' would send it to https://proxy.golang.org, and none of those is in [private] mirrors; go fetches it direct"
        );
        // An http:// mirror on the listed host is another server.
        let p = private_policy(mirror_list("http://athens.corp.test"), &["https://athens.corp.test"]);
        assert!(matches!(
            plan(&p, Door::Endpoint, &private_facts(None, PRIVATE), PRIVATE).unwrap(),
            Plan::Refuse { .. }
        ));
    }

    #[test]
    fn an_intercepted_direct_reaches_only_a_listed_host() {
        let proxy = Authority::parse_connect("proxy.golang.org:443").unwrap();
        let inside = Door::Intercepted { module_request: true };
        let p = private_policy(Action::Direct, &["https://athens.corp.test"]);
        let planned = plan(&p, inside, &private_facts(Some(&proxy), PRIVATE), PRIVATE).unwrap();
        let Plan::Refuse { error, .. } = planned else {
            panic!("{planned:?}")
        };
        assert!(
            error.to_string().contains("does not send it to proxy.golang.org:443"),
            "{error}"
        );
        let athens = Authority::parse_connect("athens.corp.test:443").unwrap();
        let planned = plan(&p, inside, &private_facts(Some(&athens), PRIVATE), PRIVATE).unwrap();
        assert!(matches!(planned, Plan::Origin(_)), "{planned:?}");
        // On the endpoint, `direct` only tells go to fetch it itself.
        let planned = plan(&p, Door::Endpoint, &private_facts(None, PRIVATE), PRIVATE).unwrap();
        assert!(matches!(planned, Plan::ClientDirect(_)), "{planned:?}");
    }

    #[test]
    fn sumdb_lookups_of_private_paths_are_refused_and_blocks_stay_blocks() {
        let p = private_policy(mirror_list("https://athens.corp.test"), &["https://athens.corp.test"]);
        let lookup = Facts {
            sumdb_lookup: true,
            ..private_facts(None, PRIVATE)
        };
        let Plan::Refuse { error, .. } = plan(&p, Door::Endpoint, &lookup, PRIVATE).unwrap() else {
            panic!()
        };
        assert_eq!(error.status(), http::StatusCode::NOT_FOUND);
        assert!(error.to_string().contains("never asks a checksum database"), "{error}");
        let p = private_policy(Action::Block { reason: "no".into() }, &[]);
        let Plan::Refuse { error, .. } = plan(&p, Door::Endpoint, &private_facts(None, PRIVATE), PRIVATE).unwrap()
        else {
            panic!()
        };
        assert_eq!(error.status(), http::StatusCode::FORBIDDEN);
    }
}
