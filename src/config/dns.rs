//! `[dns]`: which name servers modgate asks. By default, the system's
//! (`/etc/resolv.conf`); answers are cached for their own TTLs.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::Located;

/// The `[dns]` table, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// Name servers to ask instead of the system's, over UDP and TCP.
    pub servers: Vec<SocketAddr>,
}

/// `[dns]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDns {
    servers: Option<Spanned<Vec<Spanned<String>>>>,
}

impl FileDns {
    pub(crate) fn resolve(self) -> Result<DnsSettings, Located> {
        let mut servers = Vec::new();
        let Some(written) = self.servers else {
            return Ok(DnsSettings { servers });
        };
        if written.get_ref().is_empty() {
            return Err((
                written.span(),
                "dns.servers is empty, so no name would resolve; leave it out to use the system's name servers".into(),
            ));
        }
        for s in written.into_inner() {
            let text = s.get_ref();
            let addr = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    (
                        s.span(),
                        format!("bad name server '{text}': expected an IP address or IP:port, e.g. 10.0.0.53"),
                    )
                })?;
            if addr.port() == 0 {
                return Err((s.span(), format!("bad name server '{text}': port 0 cannot be asked")));
            }
            servers.push(addr);
        }
        Ok(DnsSettings { servers })
    }
}
