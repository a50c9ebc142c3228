//! The `modgate` command line: clap parses it into [`Cli`], and each
//! command turns its result into an exit code. anyhow is used only here.
//!
//! - [`serve`]: `modgate serve`: logging, signals, the server.
//! - [`ca`]: `modgate ca init|bundle`.
//! - [`cache`]: `modgate cache ls|stats|rm|gc`.
//! - [`inspect`]: `modgate inspect`: the interception diagnosis.
//! - [`doctor`]: `modgate doctor`: why go cannot download, on the
//!   developer's side.
//! - `check` and `explain` are a few lines each, below.

/// `print!` for a command's output: a reader that went away (`| head`)
/// ends the command quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

/// `println!`, as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod ca;
pub mod cache;
pub mod cache_verify;
pub mod doctor;
pub mod inspect;
pub mod serve;
pub mod warm;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::policy::explain::{self, ExplainTarget, Explainer, Viewpoint};

/// A forward proxy for Go module traffic.
#[derive(Parser)]
#[command(name = "modgate", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the proxy.
    Serve {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Listen on this address instead of the config's `listen`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// The admin listener's address instead of `[admin] listen` ("" for none).
        #[arg(long, value_name = "ADDR")]
        admin_listen: Option<String>,
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
    /// Look into and maintain the module cache ([cache] in the config).
    ///
    /// Exit codes: 0 ok, 2 bad config or pattern, 1 storage failure.
    Cache {
        #[command(subcommand)]
        command: cache::CacheCommand,
    },
    /// Why can't go download? Checks go's settings, modgate, and a real fetch.
    ///
    /// Exit codes: 0 everything passes, 1 something fails, 2 bad arguments or config.
    Doctor {
        /// modgate's address as a proxy URL [default: HTTPS_PROXY, else an http:// GOPROXY entry]
        #[arg(long, value_name = "URL")]
        proxy: Option<String>,
        /// modgate's config, for its CA and rules [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// A module to fetch the way go would, e.g. golang.org/x/mod@v0.20.0.
        #[arg(value_name = "MODULE[@VERSION]")]
        module: Option<String>,
    },
    /// Show which rule a target meets, and why (a dry run: no DNS, no upstream connection; mirror health from the running modgate's admin listener when one answers).
    Explain {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The client address to evaluate `src` rules for.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        from: IpAddr,
        /// The user who authenticated ([auth]), to evaluate `users` rules for.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// As a connection redirected to the transparent listener, whose original destination is IP.
        #[arg(long, value_name = "IP")]
        transparent: Option<IpAddr>,
        /// A URL (https://host/path, http://host/path), host:port, or module[@version].
        target: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum CaCommand {
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

/// `--log-format`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Exit code for a bad config or bad arguments.
pub const EXIT_USAGE: u8 = 2;

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Ca { command } => ca::run(command),
        Command::Cache { command } => cache::run(command),
        Command::Doctor {
            proxy,
            config,
            json,
            module,
        } => doctor::run(proxy, config, json, module),
        Command::Inspect {
            target,
            file,
            config,
            proxy,
            sni,
            json,
        } => inspect::run(target, file, config, proxy, sni, json),
        Command::Serve {
            config,
            listen,
            admin_listen,
            log_format,
        } => serve::run(config, listen, admin_listen.as_deref(), log_format),
        Command::Check { config } => match Config::load(config.as_deref()) {
            Ok(c) => {
                // The same checks `serve` makes before it listens, first: a
                // config that fails them prints no summary of itself.
                let warnings = match crate::proxy::server::validate(&c) {
                    Ok(warnings) => warnings,
                    Err(e) => {
                        let e = e.to_string();
                        return usage_error(format!("{}: {e}", c.locate(&e)));
                    }
                };
                out!("{}", c.describe());
                for warning in warnings {
                    outln!("warning:  {warning}");
                }
                outln!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Command::Explain {
            config,
            from,
            user,
            transparent,
            target,
        } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let health = (config.admin.listen.addr())
                .and_then(|addr| admin_mirrors(addr).map(|lines| (lines, addr.to_string())));
            let explainer = Explainer {
                policy: &config.policy,
                hosts: &config.hosts,
                mirror_settings: &|url| config.mirrors.get(url).describe(),
                health: health.as_ref().map(|(lines, from)| (lines.as_str(), from.clone())),
            };
            let who = Viewpoint {
                from,
                user: user.as_deref(),
                transparent,
            };
            match ExplainTarget::parse(&target).and_then(|t| explain::explain(&explainer, &who, &t)) {
                Ok(text) => {
                    out!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(e),
            }
        }
    }
}

/// Prints `e` and exits with [`EXIT_USAGE`].
pub fn usage_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(EXIT_USAGE)
}

/// The mirror health a running modgate reports on its admin listener at
/// `addr` (`GET /mirrors`), when one answers within a second.
fn admin_mirrors(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let wait = std::time::Duration::from_secs(1);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream.set_write_timeout(Some(wait)).ok()?;
    stream
        .write_all(format!("GET /mirrors HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = Vec::new();
    stream.take(1 << 20).read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8(answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_owned())
}

/// Writes a command's output. When the reader has gone (`modgate check |
/// head -1`), the command ends at once with success, as a tool killed by
/// SIGPIPE would stop; another failure to write is one line and exit 1.
/// Only the one-shot commands print here, never `serve`, so no log waits
/// to be flushed when it exits.
#[allow(clippy::disallowed_methods)]
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("modgate: cannot write the output: {e}");
        std::process::exit(1);
    }
}
