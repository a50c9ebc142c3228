//! Starting and stopping the proxy: load the roots and the CA, build the
//! shared [`Context`], bind the listener, and run one task per client
//! connection ([`connection::serve`]).
//!
//! On shutdown the listener closes at once, idle keep-alive connections are
//! closed, and in-flight requests and tunnels get `timeouts.shutdown` to
//! finish before they are cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::modules::fetch::SourceSet;
use crate::proxy::connection;
use crate::proxy::context::Context;
use crate::proxy::listener::{ExplicitListener, Listener};
use crate::tls::ca::{CaError, LocalCa};
use crate::tls::interceptor::Interceptor;
use crate::tls::probe::Probes;
use crate::tls::trust::{Trust, TrustError, client_config};
use crate::upstream::dial::{Dialer, DirectDialer};
use crate::upstream::pool;
use crate::upstream::resolve::Resolver;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// A root file in `[tls]` is unusable.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The local CA is missing or does not fit `tls.intercept`.
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// A running proxy.
pub struct Server {
    addr: SocketAddr,
    draining: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Loads the roots and the CA, binds `config.listen` (or `listen` when
    /// given), and starts serving.
    pub async fn start(config: Config, listen: Option<SocketAddr>) -> Result<Server, StartError> {
        let ctx = Arc::new(build_context(config)?);
        let addr = listen.unwrap_or(ctx.config.listen);
        let listener = ExplicitListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let draining = ctx.draining.clone();
        let task = tokio::spawn(accept_loop(Box::new(listener), ctx));
        Ok(Server { addr, draining, task })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight work finish within
    /// `timeouts.shutdown`, then cuts what is left.
    pub async fn shutdown(self) {
        self.draining.cancel();
        let _ = self.task.await;
    }
}

/// Everything the connections share, built once from the config.
fn build_context(config: Config) -> Result<Context, StartError> {
    let trust = Trust::load(&config.tls.public_roots, &config.tls.extra_roots)?;
    let interceptor = match config.policy.intercept.is_empty() {
        true => None,
        false => Some(Interceptor::new(LocalCa::load(
            &config.tls.ca_cert,
            &config.tls.ca_key,
            &config.policy.intercept,
        )?)),
    };
    let resolver = Arc::new(Resolver::new(config.hosts.clone()));
    let dialer: Arc<dyn Dialer> = Arc::new(DirectDialer::new(resolver.clone()));
    let t = config.timeouts;
    let verifier = trust.verdict_verifier(config.tls.on_interception, &config.tls.intercepted_dir);
    let tls = client_config(verifier.clone()).map_err(|e| {
        StartError::Trust(TrustError {
            path: "tls".into(),
            reason: e.to_string(),
        })
    })?;
    let client = pool::client(dialer.clone(), t.connect, t.idle, tls, verifier.clone());
    Ok(Context {
        sources: SourceSet::new(&config.policy, &client),
        client,
        verifier,
        probes: Probes::new(config.tls.probe_ttl),
        resolver,
        dialer,
        interceptor,
        config,
        draining: CancellationToken::new(),
    })
}

async fn accept_loop(listener: Box<dyn Listener>, ctx: Arc<Context>) {
    let tracker = TaskTracker::new();
    let cut = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            () = ctx.draining.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                let ctx = ctx.clone();
                let cut = cut.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        () = connection::serve(&ctx, accepted.stream, accepted.peer, accepted.inbound) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    let grace = ctx.config.timeouts.shutdown;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            "grace period over; closing the remaining connections"
        );
        cut.cancel();
        tracker.wait().await;
    }
}
