//! What every connection task shares: the validated config and the
//! long-lived parts built from it once at start.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::modules::cached::ModuleCache;
use crate::modules::fetch::SourceSet;
use crate::modules::proxy_source::ProxySource;
use crate::proxy::live::Live;
use crate::telemetry::access::Access;
use crate::telemetry::sink::Telemetry;
use crate::tls::interceptor::Interceptor;
use crate::tls::probe::Probes;
use crate::tls::verifier::VerdictVerifier;
use crate::upstream::dial::Dialer;
use crate::upstream::pool::Clients;
use crate::upstream::resolve::Resolver;

/// The proxy's shared state, one per running server.
pub struct Context {
    /// The validated config.
    pub config: Config,
    /// `[hosts]` and DNS, for the `dst` check.
    pub resolver: Arc<Resolver>,
    /// How upstream connections are opened.
    pub dialer: Arc<dyn Dialer>,
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
    /// TLS termination for `tls.intercept` hosts, when there are any.
    pub interceptor: Option<Interceptor>,
    /// Cancelled when shutdown begins: stop taking new work. Shared by
    /// every context a reload makes.
    pub draining: CancellationToken,
    /// Metrics and recent decisions; shared by every context a reload
    /// makes.
    pub telemetry: Arc<Telemetry>,
    /// The contexts in effect, for [`Context::latest`]; unset for a context
    /// that serves no listener (`cache warm`).
    pub live: OnceLock<Weak<Live<Context>>>,
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
    pub fn access(&self, client: SocketAddr, method: impl Into<String>, target: impl Into<String>) -> Access {
        Access::new(client, method, target).reporting_to(self.telemetry.clone())
    }

    /// The context in effect now: this one, or a newer one a reload put in
    /// its place. Taken by each request as it arrives.
    pub fn latest(self: &Arc<Self>) -> Arc<Context> {
        self.live
            .get()
            .and_then(Weak::upgrade)
            .map_or_else(|| self.clone(), |live| live.current())
    }

    /// Puts this context in effect in `live` (a reload), and lets it find
    /// its own successors.
    pub fn put_in_effect(self: Arc<Self>, live: &Arc<Live<Context>>) {
        let _ = self.live.set(Arc::downgrade(live));
        live.swap(self);
    }
}
