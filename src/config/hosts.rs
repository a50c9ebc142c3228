//! `[hosts]`: static name resolution, like /etc/hosts or `curl --resolve`.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;

use crate::config::syntax::{Located, OneOrMany};
use crate::core::host::{Host, HostOverrides, OverrideAddr};

/// The `[hosts]` table as written: name to one address or a list.
pub(crate) type FileHosts = BTreeMap<Spanned<String>, Spanned<OneOrMany>>;

/// Validates the table: names are host names, addresses parse, no name twice.
pub(crate) fn resolve(file: FileHosts) -> Result<HostOverrides, Located> {
    let mut hosts = HashMap::new();
    for (name, addrs) in file {
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
        let list: Vec<OverrideAddr> = addrs
            .into_inner()
            .into_vec()
            .iter()
            .map(|a| a.parse().map_err(|e| (span.clone(), e)))
            .collect::<Result<_, Located>>()?;
        if list.is_empty() {
            return Err((span, format!("[hosts] '{host}' has no addresses")));
        }
        if hosts.insert(host.clone(), list).is_some() {
            return Err((name.span(), format!("[hosts] '{host}' is listed twice")));
        }
    }
    Ok(HostOverrides::new(hosts))
}
