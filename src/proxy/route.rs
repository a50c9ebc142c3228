//! The plan with DNS: the policy's [`Plan`], resolving the destination only
//! when a `dst` rule needs its address, and then deciding for every
//! address. The addresses checked are the only ones connected to.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use futures_util::future::BoxFuture;

use crate::core::error::Error;
use crate::core::host::Authority;
use crate::modules::source::RedirectPolicy;
use crate::policy::decide::{Decision, decide, decide_resolved};
use crate::policy::plan::{self, Door, NeedsAddress, Plan};
use crate::policy::rule::{Action, Facts};
use crate::proxy::context::Context;
use crate::telemetry::access::Access;

/// A plan, and the addresses it checked, when it checked any.
pub struct Routed<'a> {
    /// What to do.
    pub plan: Plan<'a>,
    /// The destination's addresses, each checked by the policy. Connect
    /// only to these.
    pub checked: Option<Vec<SocketAddr>>,
}

/// Plans a request at `door`, recording the rule and action in `access`.
/// A refusal comes back as the error to answer with; `what` names the
/// target in it.
pub async fn route<'a>(
    ctx: &'a Context,
    door: Door,
    facts: Facts<'_>,
    what: &(impl fmt::Display + ?Sized),
    access: &mut Access,
) -> Result<Routed<'a>, Error> {
    let policy = &ctx.config.policy;
    let routed = match plan::plan(policy, door, &facts, what) {
        Ok(plan) => Routed { plan, checked: None },
        Err(NeedsAddress) => {
            let dest = facts
                .dest
                .ok_or_else(|| Error::Internal(format!("the policy for {what} needs an address but has no host")))?;
            // Boxed: only a `dst` rule needs it, and it would make every
            // request's future larger.
            let addrs = Box::pin(ctx.resolver.resolve_within(dest, ctx.config.timeouts.connect)).await?;
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            Routed {
                plan: plan::plan_resolved(policy, door, &facts, &ips, what),
                checked: Some(addrs),
            }
        }
    };
    access.planned(&routed.plan);
    if let Plan::Refuse { error, .. } = &routed.plan {
        return Err(error.clone());
    }
    Ok(routed)
}

/// The policy's check of a host an upstream redirected to, for the request
/// from `src` for `module`: a refusal, or the addresses it checked.
pub struct RedirectCheck<'a> {
    /// The proxy.
    pub ctx: &'a Context,
    /// The client that made the request.
    pub src: IpAddr,
    /// The module requested, when known.
    pub module: Option<&'a str>,
    /// The user who authenticated, if one did.
    pub user: Option<&'a str>,
}

impl RedirectPolicy for RedirectCheck<'_> {
    /// A redirect to another host is decided twice, as a module request
    /// in an intercepted tunnel is: first as a CONNECT to that host would
    /// be (rules with `modules` skipped), where a `block` refuses it, so a
    /// `dst` guard such as `no-internal` holds whatever module rule comes
    /// before it; then with the module path, which must allow it.
    fn admit<'a>(&'a self, dest: &'a Authority) -> BoxFuture<'a, Result<Option<Vec<SocketAddr>>, Error>> {
        Box::pin(async move {
            let rules = &self.ctx.config.policy.rules;
            let mut checked: Option<Vec<SocketAddr>> = None;
            let modules = std::iter::once(None).chain(self.module.map(Some));
            for module in modules {
                let facts = Facts {
                    src: self.src,
                    dest: Some(dest),
                    addr: None,
                    module,
                    user: self.user,
                    version: None,
                    sumdb_lookup: false,
                    sumdb_tree: false,
                };
                let decision = match decide(rules, &facts) {
                    Decision::NeedsAddress => {
                        let addrs = match &checked {
                            Some(addrs) => addrs,
                            None => checked.insert(
                                self.ctx
                                    .resolver
                                    .resolve_within(dest, self.ctx.config.timeouts.connect)
                                    .await?,
                            ),
                        };
                        let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
                        decide_resolved(rules, &facts, &ips)
                    }
                    decision => decision,
                };
                match decision {
                    Decision::Matched(rule) => match &rule.action {
                        Action::Block { reason } => {
                            return Err(Error::Blocked {
                                rule: rule.name.to_string(),
                                reason: format!("a redirect to {dest}: {reason}"),
                            });
                        }
                        Action::Direct | Action::Mirror { .. } => {}
                    },
                    // Only module rules would match: they decide next.
                    Decision::NoMatch if module.is_none() && self.module.is_some() => {}
                    Decision::NoMatch => return Err(Error::NoRule(format!("{dest} (a redirect)"))),
                    Decision::NeedsAddress => {
                        return Err(Error::Internal(format!("the policy for {dest} still needs an address")));
                    }
                }
            }
            let private = &self.ctx.config.policy.private;
            if let Some(module) = self.module.filter(|m| private.is_private(m)) {
                if !private.allows_host(dest) {
                    return Err(Error::Private {
                        module: module.to_owned(),
                        detail: format!(
                            "an upstream redirected it to {dest}, which is not in [private] mirrors; modgate does not follow"
                        ),
                    });
                }
            }
            Ok(checked)
        })
    }
}
