//! Starting and stopping the proxy: load the roots, the CA and the
//! htpasswd file, build the shared [`Context`], bind the listeners (the
//! explicit one, and the transparent one of `[transparent]`), and run one
//! task per client connection ([`connection::serve`]), on the worker thread
//! [`Workers`] picks for it.
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
use crate::core::timer;
use crate::modules::cached::{ModuleCache, state_dir_for};
use crate::modules::fetch::SourceSet;
use crate::modules::health::Health;
use crate::modules::proxy_source::ProxySource;
use crate::modules::sumdb::{FileTreeStore, SumdbVerifier};
use crate::modules::sumdb_upstream::SumdbFetcher;
use crate::modules::verify::ContentCheck;
use crate::proxy::connection;
use crate::proxy::context::Context;
use crate::proxy::drain;
use crate::proxy::limits::Limits;
use crate::proxy::listener::{Accepted, ExplicitListener, Listener};
use crate::proxy::live::Live;
use crate::proxy::transparent::TransparentListener;
use crate::proxy::workers::Workers;
use crate::telemetry::sink::Telemetry;
use crate::tls::ca::{CaError, LocalCa};
use crate::tls::interceptor::Interceptor;
use crate::tls::probe::Probes;
use crate::tls::trust::{Trust, TrustError, client_config};
use crate::upstream::dial::{Dialer, DirectDialer, Outgoing};
use crate::upstream::own::{OwnListeners, OwnSockets};
use crate::upstream::parent::ParentDialer;
use crate::upstream::pool::{Budget, Clients};
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
    live: Arc<Live<Context>>,
}

impl Server {
    /// Loads the roots and the CA, binds `config.listen` (or `listen` when
    /// given), and starts serving on the caller's runtime.
    pub async fn start(config: Config, listen: Option<SocketAddr>) -> Result<Server, StartError> {
        Server::start_on(config, listen, Workers::here()).await
    }

    /// [`Server::start`], with the connections served by `workers`.
    pub async fn start_on(config: Config, listen: Option<SocketAddr>, workers: Workers) -> Result<Server, StartError> {
        let ctx = Arc::new(build_context(config).await?);
        ctx.telemetry.metrics.config_in_effect(&ctx.config.digest);
        let live = Arc::new(Live::new(ctx.clone()));
        let _ = ctx.live.set(Arc::downgrade(&live));
        let addr = listen.unwrap_or(ctx.config.listen);
        let listener = ExplicitListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let draining = ctx.draining.clone();
        let limits = ctx.limits.clone();
        tracing::debug!(
            max_connections = limits.max_connections(),
            per_client = limits.per_client(),
            "connection limits"
        );
        ctx.own_listeners.add(addr);
        let transparent = bind_transparent(&ctx).await?;
        let transparent_addr = transparent.as_ref().and_then(|l| l.local_addr().ok());
        let workers = Arc::new(workers);
        let mut tasks = vec![tokio::spawn(accept_loop(
            Box::new(listener),
            live.clone(),
            limits.clone(),
            workers.clone(),
        ))];
        if let Some(listener) = transparent {
            tasks.push(tokio::spawn(accept_loop(
                Box::new(listener),
                live.clone(),
                limits,
                workers,
            )));
        }
        Ok(Server {
            addr,
            transparent: transparent_addr,
            draining,
            tasks,
            live,
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

    /// Notes another listener of this process (the admin listener's), so
    /// that no upstream connection goes to it.
    pub fn add_own_listener(&self, addr: SocketAddr) {
        self.live.current().own_listeners.add(addr);
    }

    /// The context in effect, swapped by reloads.
    pub fn live(&self) -> &Arc<Live<Context>> {
        &self.live
    }

    /// The proxy's listener, for readiness.
    pub fn status(&self) -> ProxyStatus {
        ProxyStatus {
            addr: self.addr,
            draining: self.draining.clone(),
        }
    }

    /// Stops accepting, lets in-flight work finish within
    /// `timeouts.shutdown`, then cuts what is left.
    pub async fn shutdown(mut self) {
        self.draining.cancel();
        for task in &mut self.tasks {
            let _ = task.await;
        }
        // The process may end before the worker threads drop what they
        // hold (a cache among it): its spool goes now.
        if let Some(cache) = &self.live.current().cache {
            cache.remove_spool();
        }
    }
}

/// A server dropped without [`Server::shutdown`] shuts down in the
/// background: it stops listening, and its connections get
/// `timeouts.shutdown` to finish.
impl Drop for Server {
    fn drop(&mut self) {
        self.draining.cancel();
    }
}

/// The proxy's listener as readiness sees it.
#[derive(Debug, Clone)]
pub struct ProxyStatus {
    /// The address it is bound to.
    pub addr: SocketAddr,
    /// Cancelled when shutdown begins and the listener closes.
    pub draining: CancellationToken,
}

impl ProxyStatus {
    /// Whether the listener still accepts connections.
    pub fn accepting(&self) -> bool {
        !self.draining.is_cancelled()
    }
}

/// The transparent listener of `[transparent]`, when there is one; it knows
/// modgate's other listeners, so it never connects to them.
async fn bind_transparent(ctx: &Context) -> Result<Option<TransparentListener>, StartError> {
    let Some(settings) = ctx.config.transparent else {
        return Ok(None);
    };
    let addr = settings.listen;
    TransparentListener::bind(addr, ctx.own_listeners.clone(), ctx.own_sockets.clone())
        .await
        .map(Some)
        .map_err(|source| StartError::Bind { addr, source })
}

/// What `serve` checks before it listens, beyond the config's syntax: the
/// root files load, the CA exists and covers `tls.intercept`, and the
/// htpasswd file of `[auth]` reads and parses. `check` runs the same
/// checks, so a config it passes is one `serve` starts with. Returns the
/// warnings both print: configured roots outside their dates.
pub fn validate(config: &Config) -> Result<Vec<String>, StartError> {
    let (trust, _) = load_trust_and_ca(config)?;
    load_auth(config)?;
    Ok(trust.warnings())
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
            &crate::tls::ca::init_command(&config.source),
        )?)),
    };
    Ok((trust, interceptor))
}

/// Everything the connections share, built once from the config.
pub(crate) async fn build_context(config: Config) -> Result<Context, StartError> {
    let telemetry = Arc::new(Telemetry::new(config.admin.recent));
    assemble(config, Carried::Nothing(telemetry)).await
}

/// A context for a reloaded `config`, keeping what outlives a reload from
/// `previous`: the module cache (its store and in-flight fetches), the
/// metrics, and the shutdown signal. Validated like `check`: the roots
/// load, and the CA exists and covers `tls.intercept`.
pub(crate) async fn rebuild_context(config: Config, previous: &Context) -> Result<Context, StartError> {
    assemble(config, Carried::From(previous)).await
}

/// What a new context takes over.
enum Carried<'a> {
    /// Nothing: a fresh start, with these metrics.
    Nothing(Arc<Telemetry>),
    /// The cache, metrics and shutdown signal of a context in effect.
    From(&'a Context),
}

async fn assemble(config: Config, carried: Carried<'_>) -> Result<Context, StartError> {
    let (trust, interceptor) = load_trust_and_ca(&config)?;
    for warning in trust.warnings() {
        tracing::warn!(root = %warning, "a configured root is outside its dates");
    }
    let mut auth = load_auth(&config)?;
    let resolver = Arc::new(Resolver::new(config.hosts.clone(), &config.dns));
    let mut own_sockets = config.transparent.map(|_| OwnSockets::default());
    let own_listeners = match &carried {
        Carried::Nothing(_) => OwnListeners::default(),
        Carried::From(previous) => previous.own_listeners.clone(),
    };
    if let Carried::From(previous) = &carried {
        // The transparent listener holds the ports of modgate's own
        // sockets from its start: keep noting them there.
        if previous.own_sockets.is_some() {
            own_sockets.clone_from(&previous.own_sockets);
        }
        // A reload re-reads the users, but does not forgive failed logins.
        if let (Some(auth), Some(before)) = (&mut auth, &previous.auth) {
            auth.keep_failures_of(before);
        }
    }
    let outgoing = Outgoing {
        mark: config.transparent.and_then(|t| t.mark),
        own: own_sockets.clone(),
        listeners: own_listeners.clone(),
    };
    let direct = DirectDialer::with(resolver.clone(), outgoing);
    let direct_dialer: Arc<dyn Dialer> = Arc::new(direct.clone());
    let dialer: Arc<dyn Dialer> = Arc::new(ParentDialer::new(config.policy.parent.clone(), direct));
    let t = config.timeouts;
    let verifier = trust.verdict_verifier(config.tls.on_interception, &config.tls.intercepted_dir);
    let tls = client_config(&verifier).map_err(|e| {
        StartError::Trust(TrustError {
            path: "tls".into(),
            reason: e.to_string(),
        })
    })?;
    // Pooled upstream connections share the descriptors with as many
    // client connections; a reload keeps counting the ones open.
    let (budget, limits) = match &carried {
        Carried::Nothing(_) => {
            let limits = Arc::new(Limits::new(config.limits));
            (Budget::new(limits.max_connections()), limits)
        }
        Carried::From(previous) => (previous.clients.budget().clone(), previous.limits.clone()),
    };
    let mut clients = Clients::new(dialer.clone(), t.connect, t.idle, tls, verifier.clone(), budget);
    let parent = &config.policy.parent;
    if parent.https.is_some() || parent.http.is_some() {
        clients = clients.with_direct(direct_dialer.clone());
    }
    let health = match &carried {
        Carried::Nothing(_) => Health::new(),
        // A mirror that is down stays down across a reload.
        Carried::From(previous) => previous.sources.health().clone(),
    };
    let (cache, telemetry, draining) = match carried {
        Carried::Nothing(telemetry) => {
            let cache = match Store::open(&config.cache).await? {
                Some(store) => Some(Arc::new(ModuleCache::new(
                    store.clone(),
                    config.cache.clone(),
                    content_check(&config, &clients, &store),
                )?)),
                None => None,
            };
            (cache, telemetry, CancellationToken::new())
        }
        Carried::From(previous) => {
            if let Some(cache) = &previous.cache {
                // The checksum database is reached with the new TLS settings.
                cache.set_check(content_check(&config, &clients, cache.store()));
            }
            (
                previous.cache.clone(),
                previous.telemetry.clone(),
                previous.draining.clone(),
            )
        }
    };
    telemetry.recent.set_capacity(config.admin.recent);
    Ok(Context {
        sources: SourceSet::new(&config.policy, &config.mirrors, &clients, health).counted_in(telemetry.clone()),
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
        own_listeners,
        interceptor,
        config,
        draining,
        telemetry,
        limits,
        live: std::sync::OnceLock::new(),
        superseded: std::sync::atomic::AtomicBool::new(false),
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
fn turn_away(
    ctx: &Context,
    accepted: Accepted,
    over: &crate::core::error::Error,
    lingering: &Arc<tokio::sync::Semaphore>,
) {
    let mut access = ctx.access(accepted.peer, "-", "-");
    access.fail(over);
    access.emit();
    answer_and_close(accepted.stream, &over.raw_response(), lingering);
}

/// Writes what the socket takes of `answer` at once, then closes the
/// connection after a short, bounded linger that reads what the client
/// sent, so the close does not reset the connection before the client
/// reads the answer. Beyond `lingering`'s permits, it is closed at once.
pub(crate) fn answer_and_close(stream: tokio::net::TcpStream, answer: &[u8], lingering: &Arc<tokio::sync::Semaphore>) {
    let _ = stream.try_write(answer);
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
        let mut sink = [0u8; 4096];
        let _ = timer::timeout(LINGER, async {
            while matches!(tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    });
}

/// The checksum-database check behind the cache, when `sumdb.verify` is
/// set and the cache has a state directory.
fn content_check(config: &Config, clients: &Clients, store: &Store) -> Option<Arc<ContentCheck>> {
    let (true, Some(state)) = (config.sumdb.verify, state_dir_for(&config.cache)) else {
        return None;
    };
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

/// Accepts connections until shutdown; each one is served under the
/// context in effect when it arrives.
async fn accept_loop(
    listener: Box<dyn Listener>,
    live: Arc<Live<Context>>,
    limits: Arc<Limits>,
    workers: Arc<Workers>,
) {
    let tracker = TaskTracker::new();
    let cut = CancellationToken::new();
    let lingering = Arc::new(tokio::sync::Semaphore::new(LINGERING_MAX));
    let draining = live.current().draining.clone();
    loop {
        let accepted = tokio::select! {
            () = draining.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                let ctx = live.current();
                let admitted = match limits.admit(accepted.peer.ip()) {
                    Ok(admitted) => admitted,
                    Err(over) => {
                        turn_away(&ctx, accepted, &over, &lingering);
                        continue;
                    }
                };
                let cut = cut.clone();
                let (peer, inbound) = (accepted.peer, accepted.inbound);
                workers.spawn(&tracker, accepted.stream, peer.ip(), move |stream| async move {
                    let _place = admitted;
                    let _open = ctx.telemetry.metrics.open_connection();
                    let serve = connection::serve(&ctx, stream, peer, inbound);
                    drain::until_cut(serve, &cut).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    let grace = live.current().config.timeouts.shutdown;
    if timer::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            "grace period over; closing the remaining connections"
        );
        cut.cancel();
        tracker.wait().await;
    }
}
