//! The last N decisions, for the admin page: a bounded ring of summaries
//! of access events, newest first.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::core::escape::escape;
use crate::telemetry::access::{Access, CacheStatus};

/// One request or tunnel as the admin page lists it. Text a peer chose
/// is escaped onto one line; the page escapes it again for HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// When it ended.
    pub at: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// The method (`CONNECT` for tunnels).
    pub method: String,
    /// What was asked for.
    pub target: String,
    /// The rule that decided, if one did.
    pub rule: Option<Arc<str>>,
    /// The action.
    pub action: &'static str,
    /// The status sent.
    pub status: u16,
    /// How the cache took part, or `-`.
    pub cache: &'static str,
    /// The verdict on the upstream chain, or `-`.
    pub verdict: &'static str,
    /// The interception product, or `-`.
    pub vendor: Cow<'static, str>,
    /// What failed, if anything.
    pub error: Option<String>,
}

impl Decision {
    /// The summary of `access`.
    pub fn of(access: &Access) -> Decision {
        let judgement = access.judgement.as_ref();
        Decision {
            at: SystemTime::now(),
            client: access.client,
            method: escape(&access.method).into_owned(),
            target: escape(&access.target).into_owned(),
            rule: access.rule.clone(),
            action: access.action.as_str(),
            status: access.status,
            cache: access.cache.map_or("-", CacheStatus::as_str),
            verdict: judgement.map_or("-", |j| j.verdict.as_str()),
            vendor: judgement
                .and_then(|j| j.vendor.as_deref())
                .map_or(Cow::Borrowed("-"), |v| Cow::Owned(escape(v).into_owned())),
            error: access.error.as_deref().map(|e| escape(e).into_owned()),
        }
    }
}

/// The ring.
#[derive(Debug)]
pub struct Recent {
    ring: Mutex<(usize, VecDeque<Decision>)>,
}

impl Recent {
    /// A ring keeping `cap` decisions.
    pub fn new(cap: usize) -> Recent {
        Recent {
            ring: Mutex::new((cap.max(1), VecDeque::new())),
        }
    }

    /// Keeps `cap` decisions from now on (a reload may change it).
    pub fn set_capacity(&self, cap: usize) {
        if let Ok(mut ring) = self.ring.lock() {
            ring.0 = cap.max(1);
            let cap = ring.0;
            ring.1.truncate(cap);
        }
    }

    /// Adds the newest decision, dropping the oldest beyond the capacity.
    pub fn push(&self, decision: Decision) {
        if let Ok(mut ring) = self.ring.lock() {
            let cap = ring.0;
            ring.1.push_front(decision);
            ring.1.truncate(cap);
        }
    }

    /// The decisions kept, newest first.
    pub fn list(&self) -> Vec<Decision> {
        self.ring
            .lock()
            .map(|r| r.1.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_n() {
        let recent = Recent::new(2);
        for target in ["a", "b", "c"] {
            recent.push(Decision::of(&Access::new(
                "127.0.0.1:1".parse().unwrap(),
                "GET",
                target,
            )));
        }
        let targets: Vec<String> = recent.list().into_iter().map(|d| d.target).collect();
        assert_eq!(targets, ["c", "b"]);
        recent.set_capacity(1);
        assert_eq!(recent.list().len(), 1);
    }
}
