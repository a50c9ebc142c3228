//! `[tls]`: the local CA, which hosts are intercepted, what counts as the
//! public PKI, and what to do about interception upstream.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::paths::absolute;
use crate::config::syntax::{ConfigDuration, Located, Parsed, duration_or};
use crate::policy::glob::HostGlob;

/// The `[tls]` table, validated. Relative paths are resolved against the
/// config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The local CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// The local CA private key (PEM, mode 0600).
    pub ca_key: PathBuf,
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

/// Where the public roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicRoots {
    /// The Mozilla set compiled in (webpki-roots).
    Webpki,
    /// A PEM bundle.
    File(PathBuf),
}

/// `tls.on_interception`: what to do with an intercepted chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInterception {
    /// Proceed, log at info.
    Allow,
    /// Proceed, log at warn.
    Warn,
    /// Refuse with a `modgate:` message.
    Block,
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
    /// host:port for `tls.probe_ttl`.
    Active,
}

/// `[tls]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
    ca_cert: Option<Spanned<String>>,
    ca_key: Option<Spanned<String>>,
    intercept: Option<Vec<Spanned<String>>>,
    extra_roots: Option<Vec<Spanned<String>>>,
    public_roots: Option<Spanned<String>>,
    on_interception: Option<OnInterception>,
    probe: Option<Probe>,
    intercepted_dir: Option<Spanned<String>>,
    probe_ttl: Option<Parsed<ConfigDuration>>,
}

/// Where the CA is when the config does not say, against its directory.
const DEFAULT_CA_CERT: &str = "certs/modgate-ca.pem";
/// Where the CA's key is when the config does not say.
const DEFAULT_CA_KEY: &str = "certs/modgate-ca.key";

impl FileTls {
    /// The settings, and the `intercept` list (which belongs to the policy).
    /// `embedded`: the embedded default keeps evidence in
    /// `<state dir>/intercepted` rather than `certs/intercepted`.
    /// The file paths as written, with where: errors about the files
    /// (missing, unreadable, not a CA) point back at the key.
    /// A CA path left to its default is needed because of `intercept`:
    /// its errors point at the first entry there.
    pub(crate) fn written_paths(&self) -> Vec<(String, std::ops::Range<usize>)> {
        let public = self.public_roots.iter().filter(|p| p.get_ref() != "webpki");
        let mut written: Vec<_> = [&self.ca_cert, &self.ca_key]
            .into_iter()
            .flatten()
            .chain(self.extra_roots.iter().flatten())
            .chain(public)
            .map(|p| (p.get_ref().clone(), p.span()))
            .collect();
        if let Some(first) = self.intercept.iter().flatten().next() {
            for (path, default) in [(&self.ca_cert, DEFAULT_CA_CERT), (&self.ca_key, DEFAULT_CA_KEY)] {
                if path.is_none() {
                    written.push((default.to_owned(), first.span()));
                }
            }
        }
        written
    }

    pub(crate) fn resolve(self, base: &Path, embedded: bool) -> Result<(TlsSettings, Vec<HostGlob>), Located> {
        let path = |p: Option<Spanned<String>>, default: &str| -> Result<PathBuf, Located> {
            match p {
                Some(p) if p.get_ref().trim().is_empty() => Err((p.span(), "empty path".into())),
                Some(p) => Ok(absolute(&base.join(p.get_ref()))),
                None => Ok(absolute(&base.join(default))),
            }
        };
        let mut intercept = Vec::new();
        for g in self.intercept.unwrap_or_default() {
            let glob = g.get_ref().parse::<HostGlob>().map_err(|e| (g.span(), e))?;
            if let HostGlob::Ip(ip) = glob {
                return Err((
                    g.span(),
                    format!("tls.intercept: '{ip}' is an address; the local CA issues for host names"),
                ));
            }
            intercept.push(glob);
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
        let key_span = self.ca_key.as_ref().or(self.ca_cert.as_ref()).map(Spanned::span);
        let ca_cert = path(self.ca_cert, DEFAULT_CA_CERT)?;
        let ca_key = path(self.ca_key, DEFAULT_CA_KEY)?;
        if ca_cert == ca_key {
            return Err((
                key_span.unwrap_or(0..0),
                format!(
                    "tls.ca_key and tls.ca_cert are the same file ({}); the key and the certificate each need their own",
                    ca_key.display()
                ),
            ));
        }
        let settings = TlsSettings {
            ca_cert,
            ca_key,
            extra_roots,
            public_roots,
            on_interception: self.on_interception.unwrap_or(OnInterception::Warn),
            probe: self.probe.unwrap_or(Probe::Active),
            intercepted_dir: path(
                self.intercepted_dir,
                if embedded { "intercepted" } else { "certs/intercepted" },
            )?,
            probe_ttl: duration_or(self.probe_ttl, Duration::from_secs(600)),
        };
        Ok((settings, intercept))
    }
}
