//! Configuration: the TOML file as written, resolved once into the validated
//! [`Config`] the rest of modgate uses.
//!
//! Every problem is reported as `file:line:col: message`. Durations, CIDRs,
//! globs and ports are parsed here, at load time; nothing downstream sees a
//! string it has to check again. Each table has its own room: [`hosts`],
//! [`timeouts`], [`tls`], [`cache`], [`parent`], [`transparent`], [`auth`],
//! [`rules`], [`admin`], [`mirrors`], [`private`]; [`describe`] prints what
//! `check` shows.

pub mod admin;
pub mod auth;
pub mod cache;
pub mod describe;
pub mod dns;
pub(crate) mod hosts;
pub mod limits;
pub mod mirrors;
pub(crate) mod parent;
pub mod paths;
pub(crate) mod private;
pub(crate) mod rules;
pub mod sumdb;
pub(crate) mod syntax;
pub mod timeouts;
pub mod tls;
pub mod transparent;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// The listener for redirected connections, when there is one.
    pub transparent: Option<transparent::TransparentSettings>,
    /// Proxy authentication on the explicit listener, when it is on.
    pub auth: Option<auth::AuthSettings>,
    /// The admin listener.
    pub admin: admin::AdminSettings,
    /// Per-mirror timeouts, health checks and credentials.
    pub mirrors: mirrors::MirrorTable,
    /// SHA-256 (hex) of the config text, for the `modgate_config_info`
    /// metric and the admin page: it tells which file a process runs.
    pub digest: String,
    /// The files the config names (CA, roots, htpasswd), absolute, with
    /// the `line:col` where each was written.
    pub written_at: Vec<(PathBuf, String)>,
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
    listen: Option<Parsed<syntax::ListenAddr>>,
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
    parent: parent::FileParent,
    transparent: Option<transparent::FileTransparent>,
    auth: Option<auth::FileAuth>,
    #[serde(default)]
    admin: admin::FileAdmin,
    #[serde(default)]
    mirror: std::collections::BTreeMap<toml::Spanned<String>, mirrors::FileMirror>,
    #[serde(default)]
    private: private::FilePrivate,
    #[serde(default, rename = "rule")]
    rules: Vec<rules::FileRule>,
}

impl FileConfig {
    /// Every file path the config names, absolute, with its span.
    fn written_paths(&self, base: &Path) -> Vec<(PathBuf, std::ops::Range<usize>)> {
        let auth = self.auth.iter().flat_map(auth::FileAuth::written_paths);
        self.tls
            .written_paths()
            .into_iter()
            .chain(auth)
            .map(|(path, span)| (paths::absolute(&base.join(path)), span))
            .collect()
    }

    fn resolve(self, source: &str, base: &Path) -> Result<Config, Located> {
        let (tls, intercept) = self.tls.resolve(base, source == EMBEDDED_NAME)?;
        let auth = self.auth.map(|a| a.resolve(base)).transpose()?;
        let private = self.private.resolve()?;
        let mut sumdb = self.sumdb.resolve()?;
        // modgate's own verification never asks the database about a
        // private path either: those are trusted on first use.
        sumdb.nosumdb.extend(private.modules.iter().cloned());
        let listen = self
            .listen
            .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3128)), |l| l.0.0);
        let admin = self.admin.resolve(listen, source == EMBEDDED_NAME, auth.is_some())?;
        Ok(Config {
            source: source.to_owned(),
            listen,
            hosts: hosts::resolve(self.hosts)?,
            timeouts: self.timeouts.resolve(),
            tls,
            cache: self.cache.resolve(base)?,
            policy: Policy {
                rules: rules::resolve(self.rules, auth.is_some())?,
                intercept,
                parent: self.parent.resolve(&parent::process_env)?,
                private,
            },
            limits: self.limits.resolve()?,
            dns: self.dns.resolve()?,
            sumdb,
            transparent: self
                .transparent
                .map(|t| {
                    let mut taken = vec![(listen, "the proxy's listen address")];
                    taken.extend(admin.listen.addr().map(|a| (a, "admin.listen")));
                    t.resolve(&taken)
                })
                .transpose()?,
            auth,
            admin,
            mirrors: mirrors::resolve(self.mirror, base)?,
            digest: String::new(),
            written_at: Vec::new(),
        })
    }
}

/// The largest config file read: far beyond any real one (150 000 rules
/// fit in 10 MiB), and a bound on what `/dev/zero` or a FIFO can make
/// modgate hold.
const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;

/// Whether listeners on `a` and `b` cannot both be bound: the same port
/// on the same address, or on every address beside another (`0.0.0.0`
/// beside an IPv4 one; `[::]`, which takes IPv4 too, beside any).
pub(crate) fn listeners_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |wild: SocketAddr, other: SocketAddr| wild.ip().is_unspecified() && (wild.is_ipv6() || other.is_ipv4());
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// Reads `path`, refusing one longer than `limit` bytes (a device or a
/// FIFO, whose size says nothing, included).
pub(crate) fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "it is larger than {} MiB",
            limit / (1024 * 1024)
        )));
    }
    Ok(bytes)
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
        // Named by its absolute path in every error and report, as every
        // path modgate prints is.
        let name = paths::absolute(path).display().to_string();
        let bytes = read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError {
            location: name.clone(),
            message: format!("cannot read config: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            // Where the first byte that is not UTF-8 is, as a parse error
            // says where.
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
            ConfigError {
                location: format!("{name}:{line}:{col}"),
                message: "not UTF-8 text (TOML files are UTF-8)".into(),
            }
        })?;
        // A file that sets nothing would refuse every request (no rule
        // matches): most likely an empty `modgate.toml` put where the
        // embedded default was wanted.
        if toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.is_empty()) {
            return Err(ConfigError {
                location: format!("{name}:1:1"),
                message: "the file sets nothing (no keys, no [[rule]]), so every request would be refused; write the rules, or remove it to use the embedded default (modgate check prints it)".into(),
            });
        }
        Config::parse(&text, &name)
    }

    /// The text this config was parsed from, read again from its file:
    /// `None` for the embedded default, or when the file changed since.
    pub fn text(&self) -> Option<String> {
        let bytes = read_bounded(Path::new(&self.source), MAX_CONFIG_BYTES).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        (digest_hex(&text) == self.digest).then_some(text)
    }

    /// `source:line:col` of the key naming a file that `message` is
    /// about (the first one it mentions), or `source` alone: a CA, root
    /// or htpasswd file that cannot be used points back at its key.
    pub fn locate(&self, message: &str) -> String {
        self.written_at
            .iter()
            .find(|(path, _)| message.contains(&path.display().to_string()))
            .map_or_else(|| self.source.clone(), |(_, at)| format!("{}:{at}", self.source))
    }

    /// Where the config came from, for reports read away from the shell
    /// that started modgate (`/readyz`, the admin page, `check`, the log):
    /// an absolute path, or [`EMBEDDED_NAME`].
    pub fn source_path(&self) -> String {
        if self.source == EMBEDDED_NAME {
            return self.source.clone();
        }
        std::path::absolute(&self.source).map_or_else(|_| self.source.clone(), |p| p.display().to_string())
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
            message: one_line(message),
        };
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let mut message = e.message().trim().replace('\n', "; ");
            // Name the key written twice.
            if message == "duplicate key" {
                if let Some(key) = e.span().and_then(|span| text.get(span)) {
                    message = format!("duplicate key `{}`", key.trim());
                }
            }
            at(e.span(), toml_words(&message))
        })?;
        let written = file.written_paths(base);
        let mut config = file
            .resolve(source, base)
            .map_err(|(span, message)| at(Some(span), message))?;
        config.digest = digest_hex(text);
        config.written_at = written
            .into_iter()
            .map(|(path, span)| {
                let (line, col) = line_col(text, span.start);
                (path, format!("{line}:{col}"))
            })
            .collect();
        Ok(config)
    }
}

/// serde's words for types in `message` as TOML names them: `expected
/// struct FileTls` is `expected a table`, `expected i64` is `expected an
/// integer`, a sequence is an array, a map a table.
fn toml_words(message: &str) -> String {
    static WORDS: std::sync::LazyLock<[(regex::Regex, &str); 13]> = std::sync::LazyLock::new(|| {
        let re = |r: &str| regex::Regex::new(r).expect("a valid pattern");
        // Only where serde names a type: after `invalid type: ` or
        // `expected `, never inside a quoted key or value.
        let at = |what: &str| re(&format!(r"(invalid type: |expected )(?:an? )?{what}\b"));
        // An integer out of a type's range: say the range.
        let range = |ty: &str| re(&format!(r"invalid value: (integer `[^`]*`), expected {ty}\b"));
        [
            (
                range("u8"),
                "${1} is out of range: expected a whole number from 0 to 255",
            ),
            (
                range("u16"),
                "${1} is out of range: expected a whole number from 0 to 65535",
            ),
            (
                range("u32"),
                "${1} is out of range: expected a whole number from 0 to 4294967295",
            ),
            (
                range("u64"),
                "${1} is out of range: expected a whole number from 0 to 18446744073709551615",
            ),
            (
                range("usize"),
                "${1} is out of range: expected a whole number from 0 to 18446744073709551615",
            ),
            (
                range("i32"),
                "${1} is out of range: expected a whole number from -2147483648 to 2147483647",
            ),
            (
                range("i64"),
                "${1} is out of range: expected a whole number from -9223372036854775808 to 9223372036854775807",
            ),
            (
                re(r"invalid (?:type|value): (integer `[^`]*`) as i128, expected .*$"),
                "${1} is out of range",
            ),
            (at(r"struct [A-Za-z0-9_]+"), "${1}a table"),
            (at(r"[iu](?:8|16|32|64|128|size)"), "${1}an integer"),
            (at(r"f(?:32|64)"), "${1}a number"),
            (at("sequence"), "${1}an array"),
            (at("map"), "${1}a table"),
        ]
    });
    let mut text = message.to_owned();
    for (pattern, word) in WORDS.iter() {
        text = pattern.replace_all(&text, *word).into_owned();
    }
    text
}

/// `message` with any control character from a quoted value escaped, so
/// a config error is always one line (values are escaped where errors are
/// made; this is the net under them).
fn one_line(message: String) -> String {
    if !message.chars().any(char::is_control) {
        return message;
    }
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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

    /// The keys serde accepts in the table opened by `header` ("" for the
    /// top level), read from the message an unknown key gets.
    fn accepted_keys(header: &str) -> Vec<String> {
        let e = Config::parse(&format!("{header}\nnot_a_key_at_all = 1\n"), "t.toml")
            .unwrap_err()
            .to_string();
        let (_, expected) = e
            .split_once("expected ")
            .unwrap_or_else(|| panic!("{header}: no list of keys in {e:?}"));
        expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
    }

    /// Every key the config accepts has its row in docs/config.md, written
    /// as `[table].key` (`key`, `[key]` or `[key."NAME"]` at the top level).
    #[test]
    fn every_config_key_is_documented() {
        let docs = include_str!("../../docs/config.md");
        let top = accepted_keys("");
        assert!(top.len() > 10, "{top:?}");
        for key in &top {
            let rows = [
                format!("| `{key}`"),
                format!("| `[{key}]"),
                format!("| `[{key}."),
                format!("| `[[{key}]]`"),
            ];
            assert!(
                rows.iter().any(|r| docs.contains(r.as_str())),
                "docs/config.md has no row for `{key}`"
            );
        }
        // Each table the top level names; `listen` is a value and `[hosts]`
        // takes any name, so neither has keys of its own.
        let tables = top
            .iter()
            .filter(|k| !matches!(k.as_str(), "listen" | "hosts"))
            .map(|k| match k.as_str() {
                "rule" => ("[[rule]]".to_owned(), "[[rule]]".to_owned()),
                "mirror" => ("[mirror.\"https://m.test\"]".to_owned(), "[mirror.\"URL\"]".to_owned()),
                table => (format!("[{table}]"), format!("[{table}]")),
            });
        for (header, written) in tables {
            for key in accepted_keys(&header) {
                // A row may name two keys: `[mirror."URL"].username` / `.username_env`.
                let documented = docs.contains(&format!("`{written}.{key}`")) || docs.contains(&format!("/ `.{key}`"));
                assert!(documented, "docs/config.md has no row for `{written}.{key}`");
            }
        }
    }

    #[test]
    fn type_errors_use_tomls_words_not_rusts() {
        let cases = [
            ("tls = 5\n", "t.toml:1:7: invalid type: integer `5`, expected a table"),
            (
                "[limits]\nmax_connections = \"x\"\n",
                "t.toml:2:19: invalid type: string \"x\", expected an integer",
            ),
            (
                "listen = [1]\n",
                "t.toml:1:10: invalid type: an array, expected a string",
            ),
            (
                "listen = { a = 1 }\n",
                "t.toml:1:10: invalid type: a table, expected a string",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, "t.toml").unwrap_err();
            assert_eq!(err.to_string(), want, "{text}");
        }
        // A key that happens to be a type's name is left alone.
        let err = Config::parse("[tls]\nmap = 1\n", "t.toml").unwrap_err().to_string();
        assert!(err.contains("unknown field `map`"), "{err}");
    }
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
        let e = err("[tls]\nca_cert = \"ca.pem\"\nca_key = \"./ca.pem\"\n");
        assert!(
            e.starts_with("t.toml:3:10: tls.ca_key and tls.ca_cert are the same file"),
            "{e}"
        );
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
        let e = err("[[rule]]\nports = [-1]\naction = \"direct\"\n");
        assert!(e.contains("t.toml:2:10: bad port '-1'"), "{e}");
        let e = err("listen = \"127.0.0.1:3128\"\n[admin]\nlisten = \"0.0.0.0:3128\"\n");
        assert!(e.starts_with("t.toml:3:10: admin.listen"), "{e}");
        // Not UTF-8: where the first bad byte is.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, b"listen = \"127.0.0.1:1\"\n# caf\xe9\n").unwrap();
        let e = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(
            e.ends_with("bad.toml:2:6: not UTF-8 text (TOML files are UTF-8)"),
            "{e}"
        );
        let e = err("[hosts]\n\"a.test\" = \"nowhere\"\n");
        assert!(e.starts_with("t.toml:2:12: bad address 'nowhere'"), "{e}");
        let e = err("listen = 3128\n");
        assert!(e.starts_with("t.toml:1:10: invalid type"), "{e}");
        let e = err("[[rule]]\nname = \"x\"\n");
        assert!(e.starts_with("t.toml:1:1: missing field `action`"), "{e}");
    }

    /// Found by fuzzing (`fuzz/seeds/config/found-newline-in-a-host-glob`):
    /// a quoted value holding a newline (`"sum.gol\ng.org"`) reached the
    /// error raw, so the error spanned two lines.
    #[test]
    fn a_control_character_in_a_value_is_escaped_in_its_error() {
        for text in [
            "[tls]\nintercept = [\"sum.gol\\ng.org\"]\n",
            "[[rule]]\nhosts = [\"a\\u0085b.com\"]\naction = \"block\"\n",
            "[hosts]\n\"a\\rb.test\" = \"127.0.0.1\"\n",
            "[hosts]\n\"a.test\" = \"127.0.0.1\\n\"\n",
        ] {
            let e = err(text);
            assert!(!e.chars().any(char::is_control), "{text:?} gave {e:?}");
            assert!(e.starts_with("t.toml:2:"), "{e}");
        }
        let e = err("[tls]\nintercept = [\"sum.gol\\ng.org\"]\n");
        assert!(e.contains("sum.gol\\u{a}g.org"), "{e}");
    }

    #[test]
    fn network_tables_are_checked_at_their_position() {
        let e = err("[[rule]]\nusers = [\"alice\"]\naction = \"direct\"\n");
        assert!(e.starts_with("t.toml:2:9: users needs [auth] htpasswd"), "{e}");
        let e = err("[auth]\nhtpasswd = \"u\"\n[[rule]]\nusers = [\"a b\"]\naction = \"direct\"\n");
        assert!(e.starts_with("t.toml:4:10: bad user glob 'a b'"), "{e}");
        let e = err("[auth]\nhtpasswd = \"u\"\nrealm = \"a\\\"b\"\n");
        assert!(e.starts_with("t.toml:3:9: auth.realm must be"), "{e}");
        let e = err("[auth]\nhtpasswd = \"u\"\nmax_failures = 0\n");
        assert!(e.starts_with("t.toml:3:16: auth.max_failures"), "{e}");
        let e = err("[transparent]\nlisten = \"0.0.0.0:3129\"\nmark = -1\n");
        assert!(e.starts_with("t.toml:3:8: transparent.mark"), "{e}");
        let e = err("[dns]\nservers = []\n");
        assert!(e.starts_with("t.toml:2:11: dns.servers is empty"), "{e}");
        let e = err("[dns]\nservers = [\"10.0.0.53\", \"10.0.0.54:0\"]\n");
        assert!(
            e.starts_with("t.toml:2:25: bad name server '10.0.0.54:0': port 0"),
            "{e}"
        );
        let e = err("[transparent]\nmark = 1\n");
        assert!(
            e.starts_with("t.toml:2:8: [transparent] needs listen = \"IP:port\""),
            "{e}"
        );
        // Each listener its own port.
        let e = err("listen = \"127.0.0.1:3128\"\n[transparent]\nlisten = \"127.0.0.1:3128\"\n");
        assert!(
            e.starts_with("t.toml:3:10: transparent.listen 127.0.0.1:3128 is also the proxy's listen address"),
            "{e}"
        );
        let e = err("[admin]\nlisten = \"127.0.0.1:9300\"\n[transparent]\nlisten = \"127.0.0.1:9300\"\n");
        assert!(
            e.starts_with("t.toml:4:10: transparent.listen 127.0.0.1:9300 is also admin.listen"),
            "{e}"
        );
        let e = err("listen = \"127.0.0.1:3128\"\n[transparent]\nlisten = \"0.0.0.0:3128\"\n");
        assert!(
            e.starts_with("t.toml:3:10: transparent.listen 0.0.0.0:3128 overlaps the proxy's listen address 127.0.0.1:3128 (the same port)"),
            "{e}"
        );
        let e = err("[admin]\nlisten = \"127.0.0.1:9300\"\n[transparent]\nlisten = \"[::]:9300\"\n");
        // An IPv4 wildcard and an IPv6 address can both be bound.
        assert!(!listeners_overlap(
            "0.0.0.0:9300".parse().unwrap(),
            "[::1]:9300".parse().unwrap()
        ));
        assert!(listeners_overlap(
            "[::1]:9300".parse().unwrap(),
            "[::]:9300".parse().unwrap()
        ));
        assert!(listeners_overlap(
            "127.0.0.1:9300".parse().unwrap(),
            "[::]:9300".parse().unwrap()
        ));
        assert!(
            e.starts_with("t.toml:4:10: transparent.listen [::]:9300 overlaps admin.listen 127.0.0.1:9300"),
            "{e}"
        );
        let e = err("[parent]\nurl = \"ftp://proxy:21\"\n");
        assert!(
            e.starts_with("t.toml:2:7: bad proxy URL 'ftp://proxy:21': scheme 'ftp'"),
            "{e}"
        );
        let e = err("[parent]\nurl = \"http://proxy:3128\"\nno_parent = [\"ok.example\", \"10.0.0.0/99\"]\n");
        assert!(e.starts_with("t.toml:3:28: bad no_parent entry '10.0.0.0/99'"), "{e}");
        let e = err("[[rule]]\naction = \"direct\"\nparent = \"no\"\n");
        assert!(e.starts_with("t.toml:3:10: invalid type"), "{e}");

        let c = Config::parse(
            "[parent]\nurl = \"http://u:p@proxy:3128\"\n[transparent]\nlisten = \"0.0.0.0:3129\"\nmark = 42\n[auth]\nhtpasswd = \"users\"\n[[rule]]\nusers = [\"ci-*\"]\naction = \"direct\"\nparent = false\nverify_host = false\n",
            "/etc/modgate/t.toml",
        )
        .unwrap();
        assert_eq!(c.transparent.unwrap().mark, Some(42));
        let auth = c.auth.as_ref().unwrap();
        assert_eq!(auth.htpasswd, std::path::Path::new("/etc/modgate/users"));
        assert_eq!((auth.realm.as_str(), auth.max_failures), ("modgate", 10));
        let rule = &c.policy.rules[0];
        assert!(!rule.parent && !rule.verify_host && rule.users.is_some());
        let shown = c.describe();
        assert!(
            shown.contains("parent:   https http://proxy:3128 (as u), http http://proxy:3128 (as u)"),
            "{shown}"
        );
        assert!(!shown.contains(":p@"), "{shown}");
        assert!(
            shown.contains("users [ci-*] -> direct (parent = false) (verify_host = false)"),
            "{shown}"
        );
        assert!(shown.contains("transparent: 0.0.0.0:3129 (mark 0x2a)"), "{shown}");
    }

    #[test]
    fn version_constraints_are_checked_at_their_position() {
        let e = err("[[rule]]\nmodules = [\"a.test/m\"]\nversions = [\"v1.5.0\", \"<1.4\"]\naction = \"block\"\n");
        assert!(e.starts_with("t.toml:3:23: bad version constraint '<1.4'"), "{e}");
        let e = err("[[rule]]\nversions = []\naction = \"block\"\n");
        assert!(e.starts_with("t.toml:2:12: empty list would match nothing"), "{e}");
        let c = Config::parse(
            "[[rule]]\nname = \"pin\"\nmodules = [\"a.test/m\"]\nversions = [\"<v1.4.2\", \"v1.5.0\", \">=v2.0.0-0\"]\naction = \"block\"\n",
            "t.toml",
        )
        .unwrap();
        let rule = &c.policy.rules[0];
        assert_eq!(rule.versions.as_ref().map(Vec::len), Some(3));
        assert!(
            c.describe()
                .contains("'pin': modules [a.test/m] and versions [<v1.4.2, v1.5.0, >=v2.0.0-0] -> block"),
            "{}",
            c.describe()
        );
    }

    #[test]
    fn private_modules_and_mirrors_are_checked_at_their_position() {
        let c = Config::parse(
            "[private]\nmodules = [\"git.corp.test/*,,github.com/corp\", \"x.test\"]\nmirrors = [\"https://athens.corp.test\"]\ncache = false\n",
            "t.toml",
        )
        .unwrap();
        let p = &c.policy.private;
        assert_eq!(p.modules.len(), 3);
        assert!(p.is_private("git.corp.test/team/x") && p.is_private("github.com/corp/y"));
        assert!(!p.is_private("github.com/corporate/y"));
        assert!(!p.cache);
        assert!(
            c.sumdb.is_private("git.corp.test/team/x"),
            "private modules are never looked up"
        );
        let e = err("[private]\nmodules = [\"ok.test\", \"bad[\"]\n");
        assert!(e.starts_with("t.toml:2:23: bad module glob 'bad['"), "{e}");
        let e = err("[private]\nmodules = [\"a.test\"]\nmirrors = [\"athens.corp.test\"]\n");
        assert!(
            e.starts_with("t.toml:3:12: bad private mirror 'athens.corp.test'"),
            "{e}"
        );
        let e = err("[private]\nmirrors = [\"https://athens.corp.test\"]\n");
        assert!(
            e.starts_with("t.toml:2:11: [private] mirrors without [private] modules"),
            "{e}"
        );
        let e = err("[private]\nmodules = [\",\"]\n");
        assert!(e.starts_with("t.toml:2:11: no module glob given"), "{e}");
        let e = err("[private]\nmodule = [\"a.test\"]\n");
        assert!(e.starts_with("t.toml:2:1: unknown field `module`"), "{e}");
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
        assert_eq!(&*c.policy.rules[0].name, "rule#1");
        assert_eq!(
            c.policy.rules[0].action,
            crate::policy::rule::Action::Block {
                reason: "refused by policy".into()
            }
        );
    }
}
