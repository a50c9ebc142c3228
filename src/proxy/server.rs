//! Starting and stopping the proxy: load the roots, the CA and the
//! htpasswd file, build the shared [`Context`], bind the listeners (the
//! explicit one, and the transparent one of `[transparent]`), and run one
//! task per client connection ([`connection::serve`]).
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

use crate::auth::Authenticator;
use crate::cache::{CacheError, Store};
use crate::config::Config;
use crate::modules::cached::{ModuleCache, state_dir_for};
use crate::modules::fetch::SourceSet;
use crate::modules::proxy_source::ProxySource;
use crate::modules::sumdb::{FileTreeStore, SumdbVerifier};
use crate::modules::sumdb_upstream::SumdbFetcher;
use crate::modules::verify::ContentCheck;
use crate::proxy::connection;
use crate::proxy::context::Context;
use crate::proxy::limits::Limits;
use crate::proxy::listener::{Accepted, ExplicitListener, Listener};
use crate::proxy::transparent::TransparentListener;
use crate::telemetry::access::Access;
use crate::tls::ca::{CaError, LocalCa};
use crate::tls::interceptor::Interceptor;
use crate::tls::probe::Probes;
use crate::tls::trust::{Trust, TrustError, client_config};
use crate::upstream::dial::{Dialer, DirectDialer, Outgoing};
use crate::upstream::own::OwnSockets;
use crate::upstream::parent::ParentDialer;
use crate::upstream::pool::Clients;
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
    /// The module cache cannot be opened.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The htpasswd file of `[auth]` is unusable.
    #[error("auth.htpasswd: {0}")]
    Auth(String),
    /// `cache warm` with a config whose cache is off.
    #[error("the cache is off in this config: set [cache] dir or url")]
    NoCache,
}

/// A running proxy.
pub struct Server {
    addr: SocketAddr,
    transparent: Option<SocketAddr>,
    draining: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Loads the roots and the CA, binds `config.listen` (or `listen` when
    /// given), and starts serving.
    pub async fn start(config: Config, listen: Option<SocketAddr>) -> Result<Server, StartError> {
        let ctx = Arc::new(build_context(config).await?);
        let addr = listen.unwrap_or(ctx.config.listen);
        let listener = ExplicitListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let draining = ctx.draining.clone();
        let limits = Arc::new(Limits::new(ctx.config.limits));
        tracing::debug!(
            max_connections = limits.max_connections(),
            per_client = limits.per_client(),
            "connection limits"
        );
        let transparent = bind_transparent(&ctx, addr).await?;
        let transparent_addr = transparent.as_ref().and_then(|l| l.local_addr().ok());
        let mut tasks = vec![tokio::spawn(accept_loop(
            Box::new(listener),
            ctx.clone(),
            limits.clone(),
        ))];
        if let Some(listener) = transparent {
            tasks.push(tokio::spawn(accept_loop(Box::new(listener), ctx, limits)));
        }
        Ok(Server {
            addr,
            transparent: transparent_addr,
            draining,
            tasks,
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the transparent listener is bound to, when there is one.
    pub fn transparent_addr(&self) -> Option<SocketAddr> {
        self.transparent
    }

    /// Stops accepting, lets in-flight work finish within
    /// `timeouts.shutdown`, then cuts what is left.
    pub async fn shutdown(self) {
        self.draining.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The transparent listener of `[transparent]`, when there is one; it knows
/// the explicit listener at `explicit`, so it never connects to it.
async fn bind_transparent(ctx: &Context, explicit: SocketAddr) -> Result<Option<TransparentListener>, StartError> {
    let Some(settings) = ctx.config.transparent else {
        return Ok(None);
    };
    let addr = settings.listen;
    TransparentListener::bind(addr, &[explicit], ctx.own_sockets.clone())
        .await
        .map(Some)
        .map_err(|source| StartError::Bind { addr, source })
}

/// What `serve` checks before it listens, beyond the config's syntax: the
/// root files load, the CA exists and covers `tls.intercept`, and the
/// htpasswd file of `[auth]` reads and parses. `check` runs the same
/// checks, so a config it passes is one `serve` starts with.
pub fn validate(config: &Config) -> Result<(), StartError> {
    load_trust_and_ca(config)?;
    load_auth(config)?;
    Ok(())
}

/// The authenticator of `[auth]`, when it is on.
fn load_auth(config: &Config) -> Result<Option<Authenticator>, StartError> {
    config
        .auth
        .as_ref()
        .map(|settings| Authenticator::load(settings).map_err(StartError::Auth))
        .transpose()
}

fn load_trust_and_ca(config: &Config) -> Result<(Trust, Option<Interceptor>), StartError> {
    let trust = Trust::load(&config.tls.public_roots, &config.tls.extra_roots)?;
    let interceptor = match config.policy.intercept.is_empty() {
        true => None,
        false => Some(Interceptor::new(LocalCa::load(
            &config.tls.ca_cert,
            &config.tls.ca_key,
            &config.policy.intercept,
        )?)),
    };
    Ok((trust, interceptor))
}

/// Everything the connections share, built once from the config.
pub(crate) async fn build_context(config: Config) -> Result<Context, StartError> {
    let (trust, interceptor) = load_trust_and_ca(&config)?;
    let auth = load_auth(&config)?;
    let resolver = Arc::new(Resolver::new(config.hosts.clone(), &config.dns));
    let own_sockets = config.transparent.map(|_| OwnSockets::default());
    let outgoing = Outgoing {
        mark: config.transparent.and_then(|t| t.mark),
        own: own_sockets.clone(),
    };
    let direct = DirectDialer::with(resolver.clone(), outgoing);
    let direct_dialer: Arc<dyn Dialer> = Arc::new(direct.clone());
    let dialer: Arc<dyn Dialer> = Arc::new(ParentDialer::new(config.policy.parent.clone(), direct));
    let t = config.timeouts;
    let verifier = trust.verdict_verifier(config.tls.on_interception, &config.tls.intercepted_dir);
    let tls = client_config(verifier.clone()).map_err(|e| {
        StartError::Trust(TrustError {
            path: "tls".into(),
            reason: e.to_string(),
        })
    })?;
    let mut clients = Clients::new(dialer.clone(), t.connect, t.idle, tls, verifier.clone());
    let parent = &config.policy.parent;
    if parent.https.is_some() || parent.http.is_some() {
        clients = clients.with_direct(direct_dialer.clone());
    }
    let cache = open_cache(&config, &clients).await?;
    Ok(Context {
        sources: SourceSet::new(&config.policy, &clients),
        sumdb_source: ProxySource::new(config.sumdb.url.clone(), clients.clone()),
        cache,
        clients,
        verifier,
        probes: Probes::new(config.tls.probe_ttl),
        resolver,
        dialer,
        direct_dialer,
        auth,
        own_sockets,
        interceptor,
        config,
        draining: CancellationToken::new(),
    })
}

/// Connections being turned away that may linger, reading what the client
/// already sent, so that closing does not reset the connection before the
/// client reads its `503`. Beyond this many, they are closed at once.
const LINGERING_MAX: usize = 64;
/// How long a turned-away connection may linger.
const LINGER: Duration = Duration::from_secs(1);

/// Answers a connection over a limit with its `503` line, without making
/// the accept loop wait: what the socket takes at once is sent, then the
/// connection is closed after a short, bounded linger.
fn turn_away(accepted: Accepted, over: &crate::core::error::Error, lingering: &Arc<tokio::sync::Semaphore>) {
    let mut access = Access::new(accepted.peer, "-", "-");
    access.fail(over);
    access.emit();
    let stream = accepted.stream;
    let _ = stream.try_write(&over.raw_response());
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(LINGER, async {
            while matches!(tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    });
}

/// The module cache, when `[cache]` turns it on: the store, and the
/// checksum-database verifier behind it when `sumdb.verify` is set.
async fn open_cache(config: &Config, clients: &Clients) -> Result<Option<Arc<ModuleCache>>, StartError> {
    let Some(store) = Store::open(&config.cache).await? else {
        return Ok(None);
    };
    let check = match (config.sumdb.verify, state_dir_for(&config.cache)) {
        (true, Some(state)) => {
            let sumdb = &config.sumdb;
            let fetcher = Arc::new(SumdbFetcher::new(
                sumdb.name(),
                &sumdb.url,
                clients.clone(),
                config.timeouts.header,
                Some(store.clone()),
            ));
            let trees = Arc::new(FileTreeStore::new(
                state.join("sumdb").join(sumdb.name()).join("latest"),
            ));
            let verifier = Arc::new(SumdbVerifier::new(sumdb.key.clone(), fetcher, trees));
            Some(Arc::new(ContentCheck::new(sumdb.clone(), verifier, state.join("tofu"))))
        }
        _ => None,
    };
    let cache = ModuleCache::new(store, config.cache.clone(), check)?;
    Ok(Some(Arc::new(cache)))
}

async fn accept_loop(listener: Box<dyn Listener>, ctx: Arc<Context>, limits: Arc<Limits>) {
    let tracker = TaskTracker::new();
    let cut = CancellationToken::new();
    let lingering = Arc::new(tokio::sync::Semaphore::new(LINGERING_MAX));
    loop {
        let accepted = tokio::select! {
            () = ctx.draining.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                let admitted = match limits.admit(accepted.peer.ip()) {
                    Ok(admitted) => admitted,
                    Err(over) => {
                        turn_away(accepted, &over, &lingering);
                        continue;
                    }
                };
                let ctx = ctx.clone();
                let cut = cut.clone();
                tracker.spawn(async move {
                    let _place = admitted;
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
