//! The `modgate` command: serve, check, explain.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use modgate::config::Config;
use modgate::explain::{self, ExplainTarget};
use modgate::server::Server;

/// A forward proxy for Go module traffic.
#[derive(Parser)]
#[command(name = "modgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Listen on this address instead of the config's `listen`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate the config and print the rules in effect.
    Check {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show which rule a target meets, and why (a dry run: no DNS, no I/O).
    Explain {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The client address to evaluate `src` rules for.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        from: IpAddr,
        /// A URL (https://host/path, http://host/path) or host:port.
        target: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Exit code for a bad config or bad arguments.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            log_format,
        } => {
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
        Command::Check { config } => match Config::load(config.as_deref()) {
            Ok(c) => {
                print!("{}", c.describe());
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::Explain {
            config,
            from,
            target,
        } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            match ExplainTarget::parse(&target) {
                Ok(t) => {
                    print!("{}", explain::explain(&config, from, &t));
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(e),
            }
        }
    }
}

fn usage_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EXIT_USAGE)
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
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    guard
}

fn serve(config: Config, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    raise_fd_limit();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let bind = listen.unwrap_or(config.listen);
        let source = config.source.clone();
        let server = Server::start(config, listen)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
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
    tokio::signal::ctrl_c()
        .await
        .context("installing the Ctrl-C handler")?;
    Ok(())
}
