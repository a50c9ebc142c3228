//! `modgate serve`: logging, the server, and the signals that stop it.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{LogFormat, usage_error};
use crate::config::Config;
use crate::proxy::server::Server;

/// Runs the proxy until SIGINT or SIGTERM.
pub(crate) fn run(config: Option<PathBuf>, listen: Option<SocketAddr>, log_format: LogFormat) -> ExitCode {
    let config = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let _flush_on_exit = init_logging(log_format);
    match serve(config, listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("modgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through a background writer, so a request never waits
/// on the terminal or the journal. Nothing is dropped: when the writer falls
/// behind, logging slows down instead. The guard flushes on exit.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
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
    guard
}

fn serve(config: Config, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    raise_fd_limit();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let source = config.source.clone();
        let server = Server::start(config, listen).await?;
        if let Some(transparent) = server.transparent_addr() {
            eprintln!("modgate transparent listener on {transparent}");
        }
        eprintln!("modgate listening on {}", server.local_addr());
        tracing::info!(config = %source, listen = %server.local_addr(), "started");
        wait_for_signal().await?;
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

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("installing the SIGINT handler")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("installing the Ctrl-C handler")?;
    Ok(())
}
