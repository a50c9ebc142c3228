//! Configuration: the TOML file as written, resolved once into the validated
//! [`Config`] the rest of modgate uses.
//!
//! Every problem is reported as `file:line:col: message`. Durations, CIDRs,
//! globs and ports are parsed here, at load time; nothing downstream sees a
//! string it has to check again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Display, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;

use crate::glob::{HostGlob, ModuleGlob};
use crate::mirror::MirrorList;
use crate::policy::{Action, Cidr, PortRange, Rule};
use crate::request::Host;
use crate::trust::PublicRoots;
use crate::verdict::OnInterception;

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
    /// The local CA, interception, and upstream trust.
    pub tls: TlsSettings,
    /// The rule table, in evaluation order.
    pub rules: Vec<Rule>,
}

/// The `[tls]` table. Relative paths are resolved against the config
/// file's directory (the working directory for the embedded default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The local CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// The local CA private key (PEM, mode 0600).
    pub ca_key: PathBuf,
    /// Hosts whose CONNECT tunnels modgate terminates with its local CA.
    pub intercept: Vec<HostGlob>,
    /// Roots trusted beyond the system store.
    pub extra_roots: Vec<PathBuf>,
    /// What counts as the public web PKI.
    pub public_roots: PublicRoots,
    /// What to do with an intercepted upstream chain.
    pub on_interception: OnInterception,
    /// How tunnels that modgate does not terminate are checked.
    pub probe: Probe,
    /// Where intercepting chains and `index.jsonl` are kept.
    pub intercepted_dir: PathBuf,
    /// How long an active probe's result is reused per host:port.
    pub probe_ttl: Duration,
}

/// `tls.probe`: how tunnels that modgate does not terminate are checked for
/// interception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// Not checked.
    Off,
    /// The server's TLS 1.2 Certificate message is read from the relayed bytes.
    Passive,
    /// Passive, plus one probe handshake for TLS 1.3 servers, cached per
    /// host:port for 10 minutes.
    Active,
}

impl TlsSettings {
    /// Whether CONNECTs to `host` are intercepted.
    pub fn intercepts(&self, host: &Host) -> bool {
        self.intercept.iter().any(|g| g.matches(host))
    }
}

/// Timeouts, all positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// DNS resolution plus TCP connect to an upstream.
    pub connect: Duration,
    /// Receiving a request head from a client, and a response head from an
    /// upstream.
    pub header: Duration,
    /// No bytes in either direction on a connection or tunnel.
    pub idle: Duration,
    /// How long in-flight requests and tunnels may run after SIGINT/SIGTERM.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            header: Duration::from_secs(30),
            idle: Duration::from_secs(90),
            shutdown: Duration::from_secs(10),
        }
    }
}

/// The `[hosts]` table: host name to fixed addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOverrides(HashMap<String, Vec<OverrideAddr>>);

/// One address in a `[hosts]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideAddr {
    /// An address that keeps the port the client asked for.
    Ip(IpAddr),
    /// An address and port that replace both.
    Socket(SocketAddr),
}

impl OverrideAddr {
    /// The socket address to connect to for a request to `port`.
    pub fn with_port(&self, port: u16) -> SocketAddr {
        match *self {
            OverrideAddr::Ip(ip) => SocketAddr::new(ip, port),
            OverrideAddr::Socket(sa) => sa,
        }
    }
}

impl FromStr for OverrideAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(OverrideAddr::Socket(sa));
        }
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
        bare.parse::<IpAddr>()
            .map(OverrideAddr::Ip)
            .map_err(|_| format!("bad address '{s}': expected an IP address or IP:port, e.g. 127.0.0.1:8443"))
    }
}

impl Display for OverrideAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverrideAddr::Ip(ip) => write!(f, "{ip}"),
            OverrideAddr::Socket(sa) => write!(f, "{sa}"),
        }
    }
}

impl HostOverrides {
    /// The fixed addresses for `host`, if it has an entry.
    pub fn get(&self, host: &str) -> Option<&[OverrideAddr]> {
        self.0.get(host).map(Vec::as_slice)
    }

    /// Entries sorted by name, for display.
    pub fn sorted(&self) -> Vec<(&String, &Vec<OverrideAddr>)> {
        let mut v: Vec<_> = self.0.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
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
    /// relative paths in it are resolved against `source`'s directory.
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        let base = match source {
            EMBEDDED_NAME => PathBuf::new(),
            path => Path::new(path).parent().map(Path::to_path_buf).unwrap_or_default(),
        };
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
        file.resolve(source, base)
            .map_err(|(span, message)| at(Some(span), message))
    }

    /// A human-readable summary of the rules and settings in effect, printed
    /// by `modgate check`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let t = &self.timeouts;
        let _ = writeln!(out, "config:   {}", self.source);
        let _ = writeln!(out, "listen:   {}", self.listen);
        let _ = writeln!(
            out,
            "timeouts: connect {}, header {}, idle {}, shutdown {}",
            fmt_duration(t.connect),
            fmt_duration(t.header),
            fmt_duration(t.idle),
            fmt_duration(t.shutdown)
        );
        if self.tls.intercept.is_empty() {
            let _ = writeln!(out, "intercept: none (CONNECT tunnels are relayed, not terminated)");
        } else {
            let list: Vec<String> = self.tls.intercept.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "intercept: {} (CA {})",
                list.join(", "),
                self.tls.ca_cert.display()
            );
        }
        for (name, addrs) in self.hosts.sorted() {
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "hosts:    {name} -> {}", list.join(", "));
        }
        let _ = writeln!(out, "rules (first match wins):");
        for (i, rule) in self.rules.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, describe_rule(rule));
        }
        let catch_all = self.rules.last().is_some_and(|r| {
            r.hosts.is_none() && r.ports.is_none() && r.src.is_none() && r.dst.is_none() && r.modules.is_none()
        });
        if !catch_all {
            let _ = writeln!(
                out,
                "  (no rule matched: block, \"{}\")",
                crate::policy::NO_MATCH_REASON
            );
        }
        out
    }
}

/// One line describing a rule: name, match fields, action.
pub fn describe_rule(rule: &Rule) -> String {
    fn list<T: Display>(items: &[T]) -> String {
        items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
    let mut fields = Vec::new();
    if let Some(h) = &rule.hosts {
        fields.push(format!("hosts [{}]", list(h)));
    }
    if let Some(p) = &rule.ports {
        fields.push(format!("ports [{}]", list(p)));
    }
    if let Some(s) = &rule.src {
        fields.push(format!("src [{}]", list(s)));
    }
    if let Some(d) = &rule.dst {
        fields.push(format!("dst [{}]", list(d)));
    }
    if let Some(m) = &rule.modules {
        fields.push(format!("modules [{}]", list(m)));
    }
    let matches = if fields.is_empty() {
        "everything".to_owned()
    } else {
        fields.join(" and ")
    };
    let action = match &rule.action {
        Action::Direct => "direct".to_owned(),
        Action::Block { reason } => format!("block: {reason}"),
        Action::Mirror { mirrors } => format!("mirror: {mirrors}"),
    };
    format!("'{}': {} -> {}", rule.name, matches, action)
}

/// Formats a duration the way the config writes it: `90s`, `1m30s`, `250ms`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut s = (ms / 1000) as u64;
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if s >= size {
            let _ = write!(out, "{}{unit}", s / size);
            s %= size;
        }
    }
    out
}

/// Parses `250ms`, `10s`, `5m`, `1h`, or a sequence such as `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration '{s}': expected e.g. 250ms, 10s, 5m, 1h or 1m30s");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("bad duration '{s}': must be greater than zero"));
    }
    if total > Duration::from_secs(7 * 24 * 3600) {
        return Err(format!("bad duration '{s}': must be at most 7 days"));
    }
    Ok(total)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// ---- the file as written ----

/// A string parsed with `FromStr` during deserialisation, so a bad value is
/// reported at its own position.
struct Parsed<T>(T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Parsed).map_err(de::Error::custom)
    }
}

/// A port written as a number (`443`) or a range string (`"8000-8100"`).
#[derive(Deserialize)]
#[serde(untagged, expecting = "a port number or a range string such as \"8000-8100\"")]
enum FilePort {
    Number(i64),
    Text(String),
}

impl FilePort {
    fn text(&self) -> String {
        match self {
            FilePort::Number(n) => n.to_string(),
            FilePort::Text(s) => s.clone(),
        }
    }
}

/// Parses every element of a match list, reporting a bad one at its own
/// position.
fn parse_list<T: FromStr<Err = String>, R>(
    list: Option<MatchList<Spanned<R>>>,
    text: impl Fn(&R) -> String,
) -> Result<Option<Vec<T>>, Located> {
    let Some(list) = list else { return Ok(None) };
    list.0
        .iter()
        .map(|item| text(item.get_ref()).parse::<T>().map_err(|e| (item.span(), e)))
        .collect::<Result<Vec<T>, Located>>()
        .map(Some)
}

/// One address or a list of them.
#[derive(Deserialize)]
#[serde(untagged, expecting = "an address string or a list of address strings")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Parsed<SocketAddr>>,
    #[serde(default)]
    hosts: BTreeMap<Spanned<String>, Spanned<OneOrMany>>,
    #[serde(default)]
    timeouts: FileTimeouts,
    #[serde(default)]
    tls: FileTls,
    #[serde(default, rename = "rule")]
    rules: Vec<FileRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    connect: Option<Parsed<ConfigDuration>>,
    header: Option<Parsed<ConfigDuration>>,
    idle: Option<Parsed<ConfigDuration>>,
    shutdown: Option<Parsed<ConfigDuration>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca_cert: Option<Spanned<String>>,
    ca_key: Option<Spanned<String>>,
    intercept: Option<Vec<Spanned<String>>>,
    extra_roots: Option<Vec<Spanned<String>>>,
    public_roots: Option<Spanned<String>>,
    on_interception: Option<FileOnInterception>,
    probe: Option<Probe>,
    intercepted_dir: Option<Spanned<String>>,
    probe_ttl: Option<Parsed<ConfigDuration>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum FileOnInterception {
    Allow,
    Warn,
    Block,
}

impl FileTls {
    fn resolve(self, base: &Path) -> Result<TlsSettings, Located> {
        let path = |p: Option<Spanned<String>>, default: &str| -> Result<PathBuf, Located> {
            match p {
                Some(p) if p.get_ref().trim().is_empty() => Err((p.span(), "empty path".into())),
                Some(p) => Ok(base.join(p.get_ref())),
                None => Ok(base.join(default)),
            }
        };
        let intercept = self
            .intercept
            .unwrap_or_default()
            .iter()
            .map(|g| g.get_ref().parse::<HostGlob>().map_err(|e| (g.span(), e)))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(ip) = intercept.iter().find(|g| matches!(g, HostGlob::Ip(_))) {
            return Err((
                0..0,
                format!("tls.intercept: '{ip}' is an address; the local CA issues for host names"),
            ));
        }
        let extra_roots = self
            .extra_roots
            .unwrap_or_default()
            .into_iter()
            .map(|p| path(Some(p), ""))
            .collect::<Result<Vec<_>, _>>()?;
        let public_roots = match self.public_roots {
            None => PublicRoots::Webpki,
            Some(p) if p.get_ref() == "webpki" => PublicRoots::Webpki,
            Some(p) => PublicRoots::File(path(Some(p), "")?),
        };
        Ok(TlsSettings {
            ca_cert: path(self.ca_cert, "certs/modgate-ca.pem")?,
            ca_key: path(self.ca_key, "certs/modgate-ca.key")?,
            intercept,
            extra_roots,
            public_roots,
            on_interception: match self.on_interception {
                Some(FileOnInterception::Allow) => OnInterception::Allow,
                Some(FileOnInterception::Block) => OnInterception::Block,
                Some(FileOnInterception::Warn) | None => OnInterception::Warn,
            },
            probe: self.probe.unwrap_or(Probe::Active),
            intercepted_dir: path(self.intercepted_dir, "certs/intercepted")?,
            probe_ttl: self.probe_ttl.map_or(Duration::from_secs(600), |d| d.0.0),
        })
    }
}

struct ConfigDuration(Duration);

impl FromStr for ConfigDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(ConfigDuration)
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FileAction {
    Direct,
    Block,
    Mirror,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    name: Option<Spanned<String>>,
    hosts: Option<MatchList<Spanned<String>>>,
    ports: Option<MatchList<Spanned<FilePort>>>,
    src: Option<MatchList<Spanned<String>>>,
    dst: Option<MatchList<Spanned<String>>>,
    modules: Option<MatchList<Spanned<String>>>,
    action: Spanned<FileAction>,
    reason: Option<Spanned<String>>,
    mirrors: Option<Spanned<String>>,
}

type Located = (std::ops::Range<usize>, String);

/// The list of a match field. Absent means "everything"; present but empty
/// is a mistake, reported at the list.
struct MatchList<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MatchList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<T>::deserialize(d)?;
        if list.is_empty() {
            return Err(de::Error::custom(
                "empty list would match nothing; remove the field to match everything",
            ));
        }
        Ok(MatchList(list))
    }
}

impl FileConfig {
    fn resolve(self, source: &str, base: &Path) -> Result<Config, Located> {
        let defaults = Timeouts::default();
        let pick = |v: Option<Parsed<ConfigDuration>>, d: Duration| v.map_or(d, |p| p.0.0);
        let timeouts = Timeouts {
            connect: pick(self.timeouts.connect, defaults.connect),
            header: pick(self.timeouts.header, defaults.header),
            idle: pick(self.timeouts.idle, defaults.idle),
            shutdown: pick(self.timeouts.shutdown, defaults.shutdown),
        };

        let mut hosts = HashMap::new();
        for (name, addrs) in self.hosts {
            let host = match Host::parse(name.get_ref()) {
                Ok(Host::Name(n)) => n,
                Ok(Host::Ip(_)) => {
                    return Err((
                        name.span(),
                        format!("[hosts] key '{}' must be a host name, not an address", name.get_ref()),
                    ));
                }
                Err(e) => return Err((name.span(), format!("[hosts] key: {e}"))),
            };
            let span = addrs.span();
            let list: Vec<OverrideAddr> = match addrs.into_inner() {
                OneOrMany::One(a) => vec![a.parse().map_err(|e| (span.clone(), e))?],
                OneOrMany::Many(v) => v
                    .iter()
                    .map(|a| a.parse().map_err(|e| (span.clone(), e)))
                    .collect::<Result<_, Located>>()?,
            };
            if list.is_empty() {
                return Err((span, format!("[hosts] '{host}' has no addresses")));
            }
            if hosts.insert(host.clone(), list).is_some() {
                return Err((name.span(), format!("[hosts] '{host}' is listed twice")));
            }
        }

        let mut rules = Vec::with_capacity(self.rules.len());
        let mut names = HashSet::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let name = match &r.name {
                Some(n) if n.get_ref().trim().is_empty() => {
                    return Err((n.span(), "rule name is empty".into()));
                }
                Some(n) => n.get_ref().clone(),
                None => format!("rule#{}", i + 1),
            };
            if !names.insert(name.clone()) {
                let span = r.name.as_ref().map_or(r.action.span(), Spanned::span);
                return Err((span, format!("rule name '{name}' is used twice")));
            }
            let kind = *r.action.get_ref();
            if let (Some(reason), false) = (&r.reason, kind == FileAction::Block) {
                return Err((reason.span(), "reason is only used with action = \"block\"".into()));
            }
            if let (Some(mirrors), false) = (&r.mirrors, kind == FileAction::Mirror) {
                return Err((mirrors.span(), "mirrors is only used with action = \"mirror\"".into()));
            }
            let action = match kind {
                FileAction::Direct => Action::Direct,
                FileAction::Block => Action::Block {
                    reason: r
                        .reason
                        .map_or_else(|| "refused by policy".to_owned(), |r| r.into_inner()),
                },
                FileAction::Mirror => {
                    let Some(mirrors) = r.mirrors else {
                        return Err((
                            r.action.span(),
                            "action = \"mirror\" needs mirrors, e.g. mirrors = \"https://proxy.golang.org\"".into(),
                        ));
                    };
                    let list = mirrors
                        .get_ref()
                        .parse::<MirrorList>()
                        .map_err(|e| (mirrors.span(), e))?;
                    Action::Mirror { mirrors: list }
                }
            };
            rules.push(Rule {
                name,
                hosts: parse_list::<HostGlob, _>(r.hosts, String::clone)?,
                ports: parse_list::<PortRange, _>(r.ports, FilePort::text)?,
                src: parse_list::<Cidr, _>(r.src, String::clone)?,
                dst: parse_list::<Cidr, _>(r.dst, String::clone)?,
                modules: parse_list::<ModuleGlob, _>(r.modules, String::clone)?,
                action,
            });
        }

        Ok(Config {
            source: source.to_owned(),
            listen: self
                .listen
                .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3128)), |l| l.0),
            hosts: HostOverrides(hosts),
            timeouts,
            tls: self.tls.resolve(base)?,
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn embedded_default_is_valid_and_refuses_internal_destinations() {
        let c = Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3128".parse().unwrap());
        assert!(
            c.rules
                .iter()
                .any(|r| r.dst.is_some() && matches!(r.action, Action::Block { .. }))
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
        assert_eq!(c.rules[0].name, "rule#1");
        assert_eq!(
            c.rules[0].action,
            Action::Block {
                reason: "refused by policy".into()
            }
        );
    }

    #[test]
    fn durations_round_trip() {
        for (text, d) in [("10s", 10_000), ("1m30s", 90_000), ("250ms", 250), ("2h", 7_200_000)] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parsed, Duration::from_millis(d));
            assert_eq!(fmt_duration(parsed), text);
        }
        for bad in ["", "10", "s", "0s", "-1s", "1.5s", "10 s", "1d", "9999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
