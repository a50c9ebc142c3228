//! Policy: the rule table and the one decision made from it. Pure: no I/O.
//!
//! - [`glob`]: host globs and module-path globs (Go's `path.Match`).
//! - [`mirrors`]: the `mirrors` list of a `mirror` rule, in GOPROXY syntax.
//! - [`versions`]: version constraints of a rule's `versions` field.
//! - [`rule`]: one rule's match fields and action, and how they are checked.
//! - [`decide`]: the first rule that matches.
//! - [`parent`]: which upstream connections go through `[parent]`.
//! - [`plan`]: what modgate does at each door: the [`Plan`](plan::Plan) that
//!   `serve` carries out and `explain` prints.
//! - [`private`]: `[private]` module paths, confined to listed mirrors.
//! - [`describe`]: a rule as one line, for `check` and `explain`.
//! - [`explain`]: the dry run behind `modgate explain`.

pub mod decide;
pub mod describe;
pub mod explain;
pub mod glob;
pub mod mirrors;
pub mod parent;
pub mod plan;
pub mod private;
pub mod rule;
pub mod versions;

use crate::core::host::Host;
use glob::HostGlob;
use private::Private;
use rule::Rule;

/// Everything the decision depends on, validated at load time.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The rule table, in evaluation order; the first match wins.
    pub rules: Vec<Rule>,
    /// Hosts whose CONNECT tunnels modgate terminates with its local CA
    /// (`tls.intercept`), so that it can plan each request inside.
    pub intercept: Vec<HostGlob>,
    /// The corporate parent proxy and the hosts reached without it.
    pub parent: parent::ParentRoute,
    /// `[private]`: module paths sent only to listed mirrors.
    pub private: Private,
}

impl Policy {
    /// Whether CONNECTs to `host` are intercepted.
    pub fn intercepts(&self, host: &Host) -> bool {
        self.intercept.iter().any(|g| g.matches(host))
    }

    /// Whether the last rule matches everything, so no request goes unmatched.
    pub fn has_catch_all(&self) -> bool {
        self.rules.last().is_some_and(|r| {
            r.hosts.is_none()
                && r.ports.is_none()
                && r.src.is_none()
                && r.dst.is_none()
                && r.modules.is_none()
                && r.users.is_none()
                && r.versions.is_none()
        })
    }
}
