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
use modgate::{ca, inspect};

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
    /// Diagnose TLS interception for a host (one handshake) or a saved chain.
    ///
    /// Exit codes: 0 public, 3 intercepted, 4 untrusted, 2 error.
    Inspect {
        /// HOST[:PORT] to connect to (port 443 by default).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        target: Option<String>,
        /// Read the chain from a PEM file instead (e.g. from openssl s_client -showcerts).
        #[arg(long, value_name = "CHAIN.pem")]
        file: Option<PathBuf>,
        /// Take tls.public_roots, tls.extra_roots, [hosts] and tls.intercepted_dir from this config.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Connect through this HTTP proxy with CONNECT, e.g. http://127.0.0.1:3128.
        #[arg(long, value_name = "URL")]
        proxy: Option<String>,
        /// The SNI to send (default: the host).
        #[arg(long, value_name = "NAME")]
        sni: Option<String>,
        /// Print JSON (see docs/inspect.md).
        #[arg(long)]
        json: bool,
    },
    /// Manage the local CA used for intercepted hosts.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Show which rule a target meets, and why (a dry run: no DNS, no I/O).
    Explain {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The client address to evaluate `src` rules for.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        from: IpAddr,
        /// A URL (https://host/path, http://host/path), host:port, or module[@version].
        target: String,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the CA, name-constrained to tls.intercept.
    Init {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Write modgate-ca.pem and modgate-ca.key here instead of tls.ca_cert/tls.ca_key.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Replace an existing CA (clients must then trust the new one).
        #[arg(long)]
        force: bool,
    },
    /// Print the system roots plus the modgate CA as one PEM bundle (for SSL_CERT_FILE).
    Bundle {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Read modgate-ca.pem from here instead of tls.ca_cert.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Ca { command } => ca_command(command),
        Command::Inspect {
            target,
            file,
            config,
            proxy,
            sni,
            json,
        } => {
            let config = match config.as_deref().map(|p| Config::load(Some(p))).transpose() {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let source = match (target, file) {
                (_, Some(file)) => inspect::Source::File(file),
                (Some(target), None) => inspect::Source::Host { target, proxy, sni },
                (None, None) => return usage_error("modgate: give HOST[:PORT] or --file CHAIN.pem"),
            };
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return usage_error(format!("modgate: {e}")),
            };
            match runtime.block_on(inspect::inspect(source, config.as_ref())) {
                Ok(result) => {
                    if json {
                        match serde_json::to_string_pretty(&result) {
                            Ok(text) => println!("{text}"),
                            Err(e) => return usage_error(format!("modgate: {e}")),
                        }
                    } else {
                        print!("{}", inspect::render(&result));
                    }
                    ExitCode::from(result.exit_code)
                }
                Err(e) => usage_error(format!("modgate: inspect: {e}")),
            }
        }
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
        Command::Explain { config, from, target } => {
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

fn ca_paths(config: &Config, dir: Option<PathBuf>) -> (PathBuf, PathBuf) {
    match dir {
        Some(dir) => (dir.join("modgate-ca.pem"), dir.join("modgate-ca.key")),
        None => (config.tls.ca_cert.clone(), config.tls.ca_key.clone()),
    }
}

fn ca_command(command: CaCommand) -> ExitCode {
    match command {
        CaCommand::Init { config, dir, force } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let (cert, key) = ca_paths(&config, dir);
            let new = match ca::generate(&config.tls.intercept) {
                Ok(new) => new,
                Err(e) => return usage_error(format!("modgate: {e}")),
            };
            if let Err(e) = ca::write(&new, &cert, &key, force) {
                return usage_error(format!("modgate: {e}"));
            }
            if new.unconstrained {
                eprintln!(
                    "modgate: warning: tls.intercept contains '*', so this CA has no name constraints and can impersonate any site; keep {} safe",
                    key.display()
                );
            }
            let hosts: Vec<String> = config.tls.intercept.iter().map(ToString::to_string).collect();
            println!("wrote {} and {} (key mode 0600)", cert.display(), key.display());
            println!("valid for: {}", hosts.join(", "));
            println!("next: modgate ca bundle > modgate-bundle.pem && export SSL_CERT_FILE=$PWD/modgate-bundle.pem");
            ExitCode::SUCCESS
        }
        CaCommand::Bundle { config, dir } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let (cert, _) = ca_paths(&config, dir);
            let ca_pem = match std::fs::read_to_string(&cert) {
                Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => pem,
                Ok(_) => return usage_error(format!("modgate: {}: not a PEM certificate", cert.display())),
                Err(e) => {
                    return usage_error(format!(
                        "modgate: {}: {e} (run `modgate ca init` first)",
                        cert.display()
                    ));
                }
            };
            let (bundle, system) = ca::bundle(&ca_pem);
            print!("{bundle}");
            eprintln!(
                "modgate: bundle of {system} system roots plus the modgate CA from {}",
                cert.display()
            );
            ExitCode::SUCCESS
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
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
    guard
}

fn serve(config: Config, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    raise_fd_limit();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let source = config.source.clone();
        let server = Server::start(config, listen).await?;
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
