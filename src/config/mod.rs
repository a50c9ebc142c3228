//! Configuration: the TOML file as written, resolved once into the validated
//! [`Config`] the rest of modgate uses.
//!
//! Every problem is reported as `file:line:col: message`. Durations, CIDRs,
//! globs and ports are parsed here, at load time; nothing downstream sees a
//! string it has to check again. Each table has its own room: [`hosts`],
//! [`timeouts`], [`tls`], [`cache`], [`rules`], [`admin`]; [`describe`]
//! prints what `check` shows.

pub mod admin;
pub mod cache;
pub mod describe;
pub mod dns;
pub(crate) mod hosts;
pub mod limits;
pub mod paths;
pub(crate) mod rules;
pub mod sumdb;
pub(crate) mod syntax;
pub mod timeouts;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::core::host::HostOverrides;
use crate::policy::Policy;
pub use cache::{CacheLocation, CacheSettings};
use syntax::{Located, Parsed};
pub use timeouts::Timeouts;
pub use tls::{OnInterception, Probe, PublicRoots, TlsSettings};

/// The config compiled into the binary; `serve` uses it when there is no
/// `--config` and no `./modgate.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// The name the embedded default is reported under.
pub const EMBEDDED_NAME: &str = "<embedded default>";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from: a path, or [`EMBEDDED_NAME`].
    pub source: String,
    /// The address `serve` listens on.
    pub listen: SocketAddr,
    /// Static name resolution, consulted before DNS.
    pub hosts: HostOverrides,
    /// Connection and request timeouts.
    pub timeouts: Timeouts,
    /// The local CA and upstream trust.
    pub tls: TlsSettings,
    /// The module cache: where it is kept and its times.
    pub cache: CacheSettings,
    /// The rule table and the intercepted hosts: everything the decision
    /// depends on.
    pub policy: Policy,
    /// Connection limits.
    pub limits: limits::LimitSettings,
    /// Name servers.
    pub dns: dns::DnsSettings,
    /// The checksum database.
    pub sumdb: sumdb::SumdbSettings,
    /// The admin listener.
    pub admin: admin::AdminSettings,
    /// SHA-256 (hex) of the config text, for the `modgate_config_info`
    /// metric and the admin page: it tells which file a process runs.
    pub digest: String,
}

/// A config that cannot be used, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    /// `file:line:col`, or just the file when there is no position.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Parsed<SocketAddr>>,
    #[serde(default)]
    hosts: hosts::FileHosts,
    #[serde(default)]
    timeouts: timeouts::FileTimeouts,
    #[serde(default)]
    tls: tls::FileTls,
    #[serde(default)]
    limits: limits::FileLimits,
    #[serde(default)]
    dns: dns::FileDns,
    #[serde(default)]
    cache: cache::FileCache,
    #[serde(default)]
    sumdb: sumdb::FileSumdb,
    #[serde(default)]
    admin: admin::FileAdmin,
    #[serde(default, rename = "rule")]
    rules: Vec<rules::FileRule>,
}

impl FileConfig {
    fn resolve(self, source: &str, base: &Path) -> Result<Config, Located> {
        let (tls, intercept) = self.tls.resolve(base, source == EMBEDDED_NAME)?;
        let listen = self
            .listen
            .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3128)), |l| l.0);
        Ok(Config {
            source: source.to_owned(),
            listen,
            hosts: hosts::resolve(self.hosts)?,
            timeouts: self.timeouts.resolve(),
            tls,
            cache: self.cache.resolve(base)?,
            policy: Policy {
                rules: rules::resolve(self.rules)?,
                intercept,
            },
            limits: self.limits.resolve()?,
            dns: self.dns.resolve()?,
            sumdb: self.sumdb.resolve()?,
            admin: self.admin.resolve(listen, source == EMBEDDED_NAME)?,
            digest: String::new(),
        })
    }
}

impl Config {
    /// Loads `path`; with no path, `./modgate.toml` when present, and
    /// otherwise the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let local = Path::new("modgate.toml");
        let path = match path {
            Some(p) => p,
            None if local.exists() => local,
            None => return Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME),
        };
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            location: name.clone(),
            message: format!("cannot read config: {e}"),
        })?;
        Config::parse(&text, &name)
    }

    /// Parses and validates config text; `source` names it in errors, and
    /// relative paths in it are resolved against `source`'s directory (the
    /// state directory for the embedded default), made absolute.
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        let base = paths::base_for(source, source == EMBEDDED_NAME);
        Config::parse_in(text, source, &base)
    }

    /// Like [`Config::parse`], with relative paths resolved against `base`.
    pub fn parse_in(text: &str, source: &str, base: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
            location: match span {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("{source}:{line}:{col}")
                }
                None => source.to_owned(),
            },
            message,
        };
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', "; ");
            at(e.span(), message)
        })?;
        let mut config = file
            .resolve(source, base)
            .map_err(|(span, message)| at(Some(span), message))?;
        config.digest = digest_hex(text);
        Ok(config)
    }
}

/// SHA-256 of `text`, hex.
fn digest_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn embedded_default_is_valid_and_refuses_internal_destinations() {
        let c = Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3128".parse().unwrap());
        assert!(
            c.policy
                .rules
                .iter()
                .any(|r| r.dst.is_some() && matches!(r.action, crate::policy::rule::Action::Block { .. }))
        );
    }

    #[test]
    fn errors_carry_file_line_col() {
        let e = err("listen = \"127.0.0.1:1\"\n[timeouts]\nconnect = \"ten\"\n");
        assert!(e.starts_with("t.toml:3:11: bad duration 'ten'"), "{e}");
        let e = err("[[rule]]\naction = \"direct\"\nbogus = 1\n");
        assert!(e.starts_with("t.toml:3:1: unknown field `bogus`"), "{e}");
        let e = err("[[rule]]\ndst = [\"10.0.0.0/8\", \"300.0.0.0/8\"]\naction = \"block\"\n");
        assert!(e.starts_with("t.toml:2:22: bad CIDR '300.0.0.0/8'"), "{e}");
        let e = err("[[rule]]\nhosts = [\"ex*ample.com\"]\naction = \"block\"\n");
        assert!(e.starts_with("t.toml:2:10: bad host glob"), "{e}");
        let e = err("[[rule]]\naction = \"mirorr\"\n");
        assert!(e.starts_with("t.toml:2:10: unknown variant `mirorr`"), "{e}");
        let e = err("[[rule]]\nname = \"a\"\naction = \"direct\"\n[[rule]]\nname = \"a\"\naction = \"direct\"\n");
        assert!(e.starts_with("t.toml:5:8: rule name 'a' is used twice"), "{e}");
        let e = err("[[rule]]\naction = \"direct\"\nreason = \"x\"\n");
        assert!(e.starts_with("t.toml:3:10: reason is only used"), "{e}");
        let e = err("[[rule]]\nports = []\naction = \"direct\"\n");
        assert!(e.starts_with("t.toml:2:9: empty list would match nothing"), "{e}");
        let e = err("[[rule]]\nports = [0]\naction = \"direct\"\n");
        assert!(e.contains("t.toml:2:10: bad port"), "{e}");
        let e = err("[hosts]\n\"a.test\" = \"nowhere\"\n");
        assert!(e.starts_with("t.toml:2:12: bad address 'nowhere'"), "{e}");
        let e = err("listen = 3128\n");
        assert!(e.starts_with("t.toml:1:10: invalid type"), "{e}");
        let e = err("[[rule]]\nname = \"x\"\n");
        assert!(e.starts_with("t.toml:1:1: missing field `action`"), "{e}");
    }

    #[test]
    fn values_parse() {
        let c = Config::parse(
            "listen = \"[::1]:0\"\n[hosts]\n\"Proxy.Golang.org\" = \"127.0.0.1:8443\"\n\"m.test\" = [\"127.0.0.2\", \"[::1]:9\"]\n[timeouts]\nconnect = \"1m30s\"\nidle = \"250ms\"\n[[rule]]\nports = [443, \"8000-8100\"]\nsrc = [\"10.0.0.1\"]\naction = \"block\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.timeouts.connect, Duration::from_secs(90));
        assert_eq!(c.timeouts.idle, Duration::from_millis(250));
        assert_eq!(c.timeouts.header, Duration::from_secs(30));
        assert_eq!(
            c.hosts.get("proxy.golang.org").unwrap()[0].with_port(443),
            "127.0.0.1:8443".parse().unwrap()
        );
        assert_eq!(
            c.hosts.get("m.test").unwrap()[0].with_port(443),
            "127.0.0.2:443".parse().unwrap()
        );
        assert_eq!(c.policy.rules[0].name, "rule#1");
        assert_eq!(
            c.policy.rules[0].action,
            crate::policy::rule::Action::Block {
                reason: "refused by policy".into()
            }
        );
    }
}
