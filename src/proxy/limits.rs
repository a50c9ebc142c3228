//! Admission: at most `limits.max_connections` client connections at once,
//! and at most `limits.per_client` from one address, so one client cannot
//! take every file descriptor. A connection over a limit is answered at
//! once with a `503` `modgate:` line and closed; the accept loop never
//! waits on it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::limits::LimitSettings;
use crate::core::error::Error;

/// Descriptors kept back from the open-file limit for listeners, the
/// upstream pool, evidence and cache files.
const RESERVED_FDS: u64 = 256;
/// The smallest global limit derived from the fd limit.
const MIN_DERIVED: usize = 64;

/// The limits in force, and what is open.
#[derive(Debug)]
pub struct Limits {
    max: usize,
    per_client: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    limits: Arc<Limits>,
    client: IpAddr,
}

impl Limits {
    /// The configured limits, with absent ones derived from the open-file
    /// limit: each proxied connection can hold two descriptors (client and
    /// upstream), so the global limit is half of what is left after a
    /// reserve, and one client may hold half of that.
    pub fn new(settings: LimitSettings) -> Limits {
        let fds = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
        let derived = (fds.saturating_sub(RESERVED_FDS) / 2).max(MIN_DERIVED as u64);
        let max = settings
            .max_connections
            .unwrap_or(usize::try_from(derived).unwrap_or(usize::MAX));
        let per_client = settings.per_client.unwrap_or((max / 2).max(1)).min(max);
        Limits {
            max,
            per_client,
            open: Mutex::new(Open::default()),
        }
    }

    /// The global limit.
    pub fn max_connections(&self) -> usize {
        self.max
    }

    /// The per-client limit.
    pub fn per_client(&self) -> usize {
        self.per_client
    }

    /// Admits a connection from `client`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Error> {
        let client = client.to_canonical();
        let mut open = self
            .open
            .lock()
            .map_err(|_| Error::Internal("the connection counter is poisoned".into()))?;
        if open.total >= self.max {
            return Err(Error::Overloaded(format!(
                "too many connections ({} open, limits.max_connections = {}); try again shortly",
                open.total, self.max
            )));
        }
        let mine = open.by_client.entry(client).or_insert(0);
        if *mine >= self.per_client {
            return Err(Error::Overloaded(format!(
                "too many connections from {client} ({mine} open, limits.per_client = {}); close some or raise the limit",
                self.per_client
            )));
        }
        *mine += 1;
        open.total += 1;
        Ok(Admitted {
            limits: self.clone(),
            client,
        })
    }

    /// Admits a request that `client` sends alongside another on the same
    /// connection (HTTP/2 streams inside an intercepted tunnel): it can
    /// hold an upstream connection of its own, so it takes a place as a
    /// connection would, and one client's streams cannot take every
    /// upstream slot from the others.
    pub fn admit_stream(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Error> {
        self.admit(client).map_err(|over| match over {
            Error::Overloaded(why) => Error::Overloaded(format!(
                "{}: each request sent alongside another on one connection (HTTP/2) counts as a connection",
                why.trim_end_matches("; try again shortly")
            )),
            other => other,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Ok(mut open) = self.limits.open.lock() else { return };
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_freed_on_drop_and_clients_are_counted_apart() {
        let limits = Arc::new(Limits::new(LimitSettings {
            max_connections: Some(3),
            per_client: Some(2),
            workers: None,
        }));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        let e = limits.admit(a).unwrap_err();
        assert!(e.to_string().contains("limits.per_client = 2"), "{e}");
        let _b1 = limits.admit(b).unwrap();
        let e = limits.admit(b).unwrap_err();
        assert!(e.to_string().contains("limits.max_connections = 3"), "{e}");
        drop(a1);
        let _b2 = limits.admit(b).unwrap();
        // IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert!(limits.admit(mapped).is_err());
    }

    #[test]
    fn absent_limits_are_derived_from_the_fd_limit() {
        let limits = Limits::new(LimitSettings::default());
        assert!(limits.max_connections() >= MIN_DERIVED);
        assert_eq!(limits.per_client(), limits.max_connections() / 2);
    }
}
