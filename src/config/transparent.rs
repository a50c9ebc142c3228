//! `[transparent]`: the listener for connections the firewall redirected
//! to modgate (iptables or nftables `REDIRECT`), which arrive with no proxy
//! protocol at all.
//!
//! ```toml
//! [transparent]
//! listen = "0.0.0.0:3129"
//! mark = 0x2a        # SO_MARK on upstream sockets, for loop-free firewall rules
//! ```

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::{Located, Parsed};

/// The `[transparent]` table, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransparentSettings {
    /// Where redirected connections arrive.
    pub listen: SocketAddr,
    /// The `SO_MARK` set on every upstream socket, so firewall rules can
    /// exempt modgate's own traffic from the redirect; `None` (or `0` in
    /// the file) sets none.
    pub mark: Option<u32>,
}

/// `[transparent]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTransparent {
    listen: Option<Spanned<Parsed<crate::config::syntax::ListenAddr>>>,
    mark: Option<Spanned<i64>>,
}

impl FileTransparent {
    /// Validates the table; `taken` are modgate's other listeners (the
    /// proxy's, the admin's), which this one may not share.
    pub(crate) fn resolve(self, taken: &[(SocketAddr, &str)]) -> Result<TransparentSettings, Located> {
        let Some(listen) = self.listen else {
            let at = self.mark.as_ref().map_or(0..0, Spanned::span);
            return Err((at, "[transparent] needs listen = \"IP:port\"".into()));
        };
        let (span, listen) = (listen.span(), listen.into_inner().0.0);
        if let Some((addr, name)) = taken.iter().find(|(addr, _)| super::listeners_overlap(*addr, listen)) {
            let same = match *addr == listen {
                true => format!("transparent.listen {listen} is also {name}"),
                false => format!("transparent.listen {listen} overlaps {name} {addr} (the same port)"),
            };
            return Err((span, format!("{same}; each listener needs its own port")));
        }
        let mark = match self.mark {
            None => None,
            Some(m) if *m.get_ref() == 0 => None,
            Some(m) => Some(
                u32::try_from(*m.get_ref())
                    .map_err(|_| (m.span(), "transparent.mark must be between 0 and 4294967295".to_owned()))?,
            ),
        };
        Ok(TransparentSettings { listen, mark })
    }
}
