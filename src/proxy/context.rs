//! What every connection task shares: the validated config and the
//! long-lived parts built from it once at start.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::modules::cached::ModuleCache;
use crate::modules::fetch::SourceSet;
use crate::modules::proxy_source::ProxySource;
use crate::policy::parent::Via;
use crate::proxy::limits::Limits;
use crate::proxy::live::Live;
use crate::telemetry::access::Access;
use crate::telemetry::sink::Telemetry;
use crate::tls::interceptor::Interceptor;
use crate::tls::probe::Probes;
use crate::tls::verifier::VerdictVerifier;
use crate::upstream::dial::Dialer;
use crate::upstream::own::{OwnListeners, OwnSockets};
use crate::upstream::pool::Clients;
use crate::upstream::resolve::Resolver;

/// The proxy's shared state, one per running server.
pub struct Context {
    /// The validated config.
    pub config: Config,
    /// `[hosts]` and DNS, for the `dst` check.
    pub resolver: Arc<Resolver>,
    /// How upstream connections are opened: through `[parent]` when there
    /// is one.
    pub dialer: Arc<dyn Dialer>,
    /// How upstream connections are opened for rules with `parent = false`.
    pub direct_dialer: Arc<dyn Dialer>,
    /// The pooled clients for origins and mirrors.
    pub clients: Clients,
    /// The source behind each mirror-list entry.
    pub sources: SourceSet,
    /// The checksum database as a source (`sumdb.url`), for the sumdb
    /// requests of the configured database.
    pub sumdb_source: ProxySource,
    /// The module cache, when it is on.
    pub cache: Option<Arc<ModuleCache>>,
    /// The verifier behind every upstream TLS connection.
    pub verifier: Arc<VerdictVerifier>,
    /// Active probe results per address and name for `tls.probe_ttl`, and
    /// the bounds on probing.
    pub probes: Probes,
    /// Proxy authentication on the explicit listener, when `[auth]` is on.
    pub auth: Option<Authenticator>,
    /// modgate's own upstream sockets, when the transparent listener needs
    /// to recognise them.
    pub own_sockets: Option<OwnSockets>,
    /// The addresses modgate listens on, which no upstream connection may
    /// go to; shared by every context a reload makes.
    pub own_listeners: OwnListeners,
    /// TLS termination for `tls.intercept` hosts, when there are any.
    pub interceptor: Option<Interceptor>,
    /// Cancelled when shutdown begins: stop taking new work. Shared by
    /// every context a reload makes.
    pub draining: CancellationToken,
    /// Metrics and recent decisions; shared by every context a reload
    /// makes.
    pub telemetry: Arc<Telemetry>,
    /// The connection limits and what each client holds; shared by every
    /// context a reload makes (`[limits]` needs a restart).
    pub limits: Arc<Limits>,
    /// The contexts in effect, for [`Context::latest`]; unset for a context
    /// that serves no listener (`cache warm`).
    pub live: OnceLock<Weak<Live<Context>>>,
    /// Set once a reload has put a newer context in effect.
    pub superseded: AtomicBool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config.source)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A new access record for a request or tunnel from `client`, counted
    /// in this proxy's metrics when it is emitted.
    pub fn access(
        &self,
        client: SocketAddr,
        method: impl Into<Cow<'static, str>>,
        target: impl Into<String>,
    ) -> Access {
        Access::new(client, method, target).reporting_to(self.telemetry.clone())
    }

    /// The context in effect now: this one, or a newer one a reload put in
    /// its place. Taken by each request as it arrives; until a reload, it
    /// is this one, borrowed (no shared count touched per request).
    pub fn latest(self: &Arc<Self>) -> Cow<'_, Arc<Context>> {
        if !self.superseded.load(Ordering::Acquire) {
            return Cow::Borrowed(self);
        }
        Cow::Owned(
            self.live
                .get()
                .and_then(Weak::upgrade)
                .map_or_else(|| self.clone(), |live| live.current()),
        )
    }

    /// Puts this context in effect in `live` (a reload), and lets it find
    /// its own successors.
    pub fn put_in_effect(self: Arc<Self>, live: &Arc<Live<Context>>) {
        let _ = self.live.set(Arc::downgrade(live));
        let previous = live.swap(self);
        previous.superseded.store(true, Ordering::Release);
    }
}

impl Context {
    /// The dialer for a rule's choice of parent.
    pub fn dialer_for(&self, via: Via) -> &Arc<dyn Dialer> {
        match via {
            Via::Parent => &self.dialer,
            Via::Direct => &self.direct_dialer,
        }
    }
}
