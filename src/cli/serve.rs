//! `modgate serve`: logging, the server, the admin listener, the reload
//! triggers, and the signals that stop it.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::admin::{self, AdminState};
use crate::cli::{LogFormat, usage_error};
use crate::config::Config;
use crate::config::admin::AdminListen;
use crate::proxy::reload::{Overrides, Reloader};
use crate::proxy::reload_watch;
use crate::proxy::server::{Server, StartError};
use crate::proxy::workers::Workers;
use crate::telemetry::log_writer::{FlushOnDrop, LogWriter};

/// What the command line says beyond the config file.
struct Flags {
    path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    admin_listen: Option<AdminListen>,
    /// Flushed before a line printed straight to stderr.
    log: LogWriter,
}

/// Runs the proxy until SIGINT or SIGTERM; SIGHUP reloads the config.
pub(crate) fn run(
    path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    admin_listen: Option<&str>,
    log_format: LogFormat,
) -> ExitCode {
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let admin_listen = match admin_listen.map(AdminListen::parse_flag).transpose() {
        Ok(a) => a,
        Err(e) => return usage_error(format!("--admin-listen: {e}")),
    };
    let (log, _flush_on_exit) = match init_logging(log_format) {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("modgate: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let flags = Flags {
        path,
        listen,
        admin_listen,
        log: log.clone(),
    };
    let located = config.clone();
    match serve(config, flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // What was logged before it (a warning at start) comes first.
            log.flush();
            // A file the config names that cannot be used points back at
            // the key naming it.
            // Each cause once: a bind error's text already holds its
            // socket error, which is also its source.
            let about_config = matches!(
                e.downcast_ref::<StartError>(),
                Some(StartError::Ca(_) | StartError::Trust(_) | StartError::Auth(_))
            );
            let e = crate::core::error::chain(e.as_ref());
            match located.locate(&e) {
                at if about_config || at != located.source => eprintln!("modgate: {at}: {e}"),
                _ => eprintln!("modgate: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through a background writer that writes them in
/// batches (telemetry::log_writer), so a request never waits on the
/// terminal or the journal and costs no system call of its own. Nothing is
/// dropped: when the writer falls behind, logging slows down instead. The
/// guard flushes on exit; the writer is flushed before each line `serve`
/// prints straight to stderr, so those come after what was logged before.
fn init_logging(format: LogFormat) -> anyhow::Result<(LogWriter, FlushOnDrop)> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // rustls and h2 warn about what clients send (an illegal SNI, an IP as
    // a name, a flood of stream resets), which any client can make them
    // do: modgate's own line on the connection says what failed. RUST_LOG
    // naming either brings its lines back.
    let named = |krate: &str| {
        std::env::var("RUST_LOG").is_ok_and(|v| {
            v.split(',').any(|d| {
                let d = d.trim();
                d == krate || d.starts_with(&format!("{krate}=")) || d.starts_with(&format!("{krate}::"))
            })
        })
    };
    let mut filter = filter;
    for krate in ["rustls", "h2"] {
        if let (false, Ok(quiet)) = (named(krate), format!("{krate}=error").parse()) {
            filter = filter.add_directive(quiet);
        }
    }
    let (writer, guard) = LogWriter::start(std::io::stderr()).context("starting the log writer")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer.clone());
    match format {
        LogFormat::Text => builder.init(),
        // The tracing target (modgate::access, modgate::interception) is
        // left out: an access event has its own `target` field, and a JSON
        // object must not carry a key twice. `message` names the event.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(false)
            .init(),
    }
    Ok((writer, guard))
}

fn serve(config: Config, flags: Flags) -> anyhow::Result<()> {
    raise_fd_limit();
    // This thread accepts, reloads and answers the admin listener; the
    // connections are served by `[limits] workers` threads, by default one
    // per core (proxy::workers).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let workers = match config.limits.workers {
        Some(count) => Workers::start(count),
        None => Workers::per_core(),
    }
    .context("starting the worker threads")?;
    let threads = workers.count();
    runtime.block_on(async {
        let source = config.source_path();
        let admin_listen = flags.admin_listen.unwrap_or(config.admin.listen);
        let server = Server::start_on(config, flags.listen, workers).await?;
        let overrides = Overrides {
            listen: flags.listen.is_some(),
            admin_listen: flags.admin_listen.is_some(),
        };
        let reloader = Arc::new(Reloader::new(server.live().clone(), flags.path, overrides));
        if let Err(e) = reload_watch::start(reloader.clone(), server.status().draining) {
            tracing::warn!(error = %e, "config file changes will not be noticed; reload with SIGHUP");
        }
        // The handlers are in place before any listening line: a
        // supervisor that stops modgate as soon as it reads one gets a
        // graceful shutdown, not the default action that ends the process
        // with its log unflushed.
        let stop = StopSignals::install()?;
        let state = AdminState {
            live: server.live().clone(),
            reloader: Some(reloader),
            proxy: server.status(),
            admin: None,
        };
        // Before the listening line: scripts that wait for it find the
        // admin listener up too.
        if let Some(admin) = admin::listener::start(admin_listen, state).await? {
            server.add_own_listener(admin.local_addr());
            flags.log.flush();
            eprintln!("modgate admin listening on {}", admin.local_addr());
            tracing::info!(admin = %admin.local_addr(), "admin listener: /metrics /healthz /readyz /");
        }
        if let Some(transparent) = server.transparent_addr() {
            flags.log.flush();
            eprintln!("modgate transparent listener on {transparent}");
        }
        flags.log.flush();
        eprintln!("modgate listening on {}", server.local_addr());
        tracing::info!(config = %source, listen = %server.local_addr(), workers = threads, "started");
        stop.wait().await;
        tracing::info!("shutting down: finishing in-flight requests and tunnels");
        server.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Each tunnel holds two sockets; the usual soft limit of 1024 descriptors
/// would cap a gateway at ~500 tunnels.
fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("modgate: warning: cannot raise the open-file limit: {e}");
    }
}

/// SIGINT and SIGTERM, the signals that stop the proxy gracefully.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers; from now on neither signal ends the process
    /// by its default action.
    fn install() -> anyhow::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
                terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for one of them.
    async fn wait(self) {
        #[cfg(unix)]
        {
            let StopSignals {
                mut interrupt,
                mut terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
