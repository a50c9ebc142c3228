//! `[admin]`: the admin listener (metrics, health, the admin page), on its
//! own address, never on the proxy port: every origin-form path on the
//! proxy port belongs to the module endpoint.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::Located;

/// Where the admin listener goes when `[admin] listen` is not written.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9128);

/// Access events the admin page keeps by default.
pub const DEFAULT_RECENT: usize = 100;

/// The admin listener's address, and whether someone chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    /// `listen = ""`: no admin listener.
    Off,
    /// Not written: [`DEFAULT_ADMIN_LISTEN`]. When that port is busy,
    /// `serve` warns and runs without the admin listener.
    Default(SocketAddr),
    /// Written in the file (or given with `serve --admin-listen`): failing
    /// to bind it is an error.
    Explicit(SocketAddr),
}

impl AdminListen {
    /// The address to bind, unless the listener is off.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            AdminListen::Off => None,
            AdminListen::Default(a) | AdminListen::Explicit(a) => Some(*a),
        }
    }

    /// Parses `serve --admin-listen`'s value: `""` (off) or `IP:port`.
    pub fn parse_flag(text: &str) -> Result<AdminListen, String> {
        if text.is_empty() {
            return Ok(AdminListen::Off);
        }
        text.parse()
            .map(AdminListen::Explicit)
            .map_err(|_| format!("bad admin address '{text}': expected IP:port, e.g. 127.0.0.1:9128, or \"\" for none"))
    }
}

impl std::fmt::Display for AdminListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminListen::Off => f.write_str("off"),
            AdminListen::Default(a) => write!(f, "{a} (default)"),
            AdminListen::Explicit(a) => write!(f, "{a}"),
        }
    }
}

/// The `[admin]` table, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where the admin listener listens.
    pub listen: AdminListen,
    /// Access events the admin page lists (the most recent first).
    pub recent: usize,
    /// Ask for an `[auth]` user's credentials on the admin listener (every
    /// path but `/healthz`). `true` needs an `[auth]` table: without one it
    /// is refused at load time, so nobody believes the page is protected.
    pub require_auth: bool,
}

impl Default for AdminSettings {
    fn default() -> AdminSettings {
        AdminSettings {
            listen: AdminListen::Default(DEFAULT_ADMIN_LISTEN),
            recent: DEFAULT_RECENT,
            require_auth: false,
        }
    }
}

/// `[admin]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAdmin {
    listen: Option<Spanned<String>>,
    recent: Option<Spanned<i64>>,
    require_auth: Option<Spanned<bool>>,
}

impl FileAdmin {
    /// Validates the table; `proxy` is the proxy's own address, which the
    /// admin listener may never share. The embedded default's address is
    /// a default, not a choice: a busy port there is only a warning.
    /// `has_auth`: the config has an `[auth]` table, whose users
    /// `require_auth` asks for.
    pub(crate) fn resolve(self, proxy: SocketAddr, embedded: bool, has_auth: bool) -> Result<AdminSettings, Located> {
        let mut settings = AdminSettings::default();
        if let Some(listen) = self.listen {
            settings.listen = AdminListen::parse_flag(listen.get_ref()).map_err(|e| (listen.span(), e))?;
            if let (true, AdminListen::Explicit(addr)) = (embedded, settings.listen) {
                settings.listen = AdminListen::Default(addr);
            }
            if let Some(admin) = settings.listen.addr().filter(|&a| super::listeners_overlap(a, proxy)) {
                let same = if admin == proxy {
                    format!("admin.listen {admin} is the proxy's own address")
                } else {
                    format!("admin.listen {admin} overlaps the proxy's address {proxy} (the same port)")
                };
                return Err((listen.span(), format!("{same}; the admin listener needs its own port")));
            }
        }
        if let Some(recent) = self.recent {
            let n = *recent.get_ref();
            if !(1..=10_000).contains(&n) {
                return Err((recent.span(), "admin.recent must be between 1 and 10000".into()));
            }
            settings.recent = n as usize;
        }
        if let Some(auth) = self.require_auth {
            if *auth.get_ref() && !has_auth {
                return Err((
                    auth.span(),
                    "admin.require_auth needs an [auth] table: its htpasswd users are the ones the admin listener lets in".into(),
                ));
            }
            settings.require_auth = *auth.get_ref();
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn default_is_loopback_9128_and_not_explicit() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.admin.listen, AdminListen::Default(DEFAULT_ADMIN_LISTEN));
        let c = Config::parse(crate::config::EMBEDDED_DEFAULT, crate::config::EMBEDDED_NAME).unwrap();
        assert_eq!(c.admin.listen, AdminListen::Default(DEFAULT_ADMIN_LISTEN));
        assert_eq!(c.admin.recent, DEFAULT_RECENT);
    }

    #[test]
    fn off_explicit_and_errors() {
        let c = Config::parse("[admin]\nlisten = \"\"\n", "t.toml").unwrap();
        assert_eq!(c.admin.listen, AdminListen::Off);
        let c = Config::parse("[admin]\nlisten = \"127.0.0.1:0\"\nrecent = 5\n", "t.toml").unwrap();
        assert_eq!(c.admin.listen, AdminListen::Explicit("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.admin.recent, 5);
        let e = Config::parse("[admin]\nlisten = \"nowhere\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:10: bad admin address 'nowhere'"), "{e}");
        let e = Config::parse(
            "listen = \"127.0.0.1:3128\"\n[admin]\nlisten = \"127.0.0.1:3128\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.toml:3:10: admin.listen 127.0.0.1:3128 is the proxy's own"),
            "{e}"
        );
        let e = Config::parse("[admin]\nrequire_auth = true\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:2:16: admin.require_auth needs an [auth] table"),
            "{e}"
        );
        let c = Config::parse("[auth]\nhtpasswd = \"users\"\n[admin]\nrequire_auth = true\n", "t.toml").unwrap();
        assert!(c.admin.require_auth);
        let e = Config::parse("[admin]\nrecent = 0\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:10: admin.recent must be"), "{e}");
    }
}
