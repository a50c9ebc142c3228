//! The admin listener: metrics, health and the admin page, on their own
//! address (`[admin] listen`, loopback by default), never on the proxy
//! port, where every origin-form path belongs to the module endpoint.
//!
//! - [`listener`]: binding (`serve --admin-listen`, the default's busy
//!   port) and the routes.
//! - [`health`]: `/healthz` and `/readyz`.
//! - [`metrics`]: `/metrics`, with the module cache's counters read at
//!   each scrape.
//! - [`page`]: `/`, the admin page.
//! - [`chains`]: `/chains/SPKI.pem`, the saved chains the page links to.
//! - [`html`]: escaping and formatting for the page.

pub mod chains;
pub mod health;
pub mod html;
pub mod listener;
pub mod metrics;
pub mod page;

use std::sync::Arc;

use crate::proxy::context::Context;
use crate::proxy::live::Live;
use crate::proxy::reload::Reloader;
use crate::proxy::server::ProxyStatus;

/// What the admin listener looks at: the context in effect, the reloads,
/// and the proxy's listener.
#[derive(Clone)]
pub struct AdminState {
    /// The context in effect (its config, cache and telemetry).
    pub live: Arc<Live<Context>>,
    /// The reloads of the config, when `serve` reloads it.
    pub reloader: Option<Arc<Reloader>>,
    /// The proxy's listener.
    pub proxy: ProxyStatus,
    /// The admin listener's own address, once it is bound.
    pub admin: Option<std::net::SocketAddr>,
}
