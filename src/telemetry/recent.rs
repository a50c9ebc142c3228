//! The last N decisions, for the admin page: a bounded ring of summaries
//! of access events, newest first.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::core::escape::{controls, escape};
use crate::telemetry::access::{Access, CacheStatus};

/// One request or tunnel as the admin page lists it. The ring keeps text a
/// peer chose as it came, and [`Recent::list`] escapes it onto one line
/// (the page escapes it again for HTML): a request pays for no escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// When it ended.
    pub at: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// The method (`CONNECT` for tunnels).
    pub method: Cow<'static, str>,
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
    /// The summary of `access`, taking its strings.
    pub fn of(access: Access) -> Decision {
        let Access {
            client,
            method,
            target,
            rule,
            action,
            status,
            cache,
            judgement,
            error,
            ..
        } = access;
        let (verdict, vendor) = match judgement {
            Some(j) => (j.verdict.as_str(), j.vendor.map_or(Cow::Borrowed("-"), Cow::Owned)),
            None => ("-", Cow::Borrowed("-")),
        };
        Decision {
            at: SystemTime::now(),
            client,
            method,
            target,
            rule,
            action: action.as_str(),
            status,
            cache: cache.map_or("-", CacheStatus::as_str),
            verdict,
            vendor,
            error,
        }
    }

    /// This decision with the text a peer chose escaped onto one line.
    fn escaped(&self) -> Decision {
        Decision {
            at: self.at,
            client: self.client,
            method: Cow::Owned(escape(&self.method).into_owned()),
            target: escape(&self.target).into_owned(),
            rule: self.rule.clone(),
            action: self.action,
            status: self.status,
            cache: self.cache,
            verdict: self.verdict,
            vendor: match &self.vendor {
                Cow::Borrowed(v) => Cow::Borrowed(v),
                Cow::Owned(v) => Cow::Owned(escape(v).into_owned()),
            },
            error: self.error.as_deref().map(|e| controls(e).into_owned()),
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
        let dropped = match self.ring.lock() {
            Ok(mut ring) => {
                let cap = ring.0;
                let oldest = if ring.1.len() >= cap { ring.1.pop_back() } else { None };
                ring.1.push_front(decision);
                oldest
            }
            Err(_) => None,
        };
        // Freed after the lock is released.
        drop(dropped);
    }

    /// The decisions kept, newest first, escaped onto one line each.
    pub fn list(&self) -> Vec<Decision> {
        self.ring
            .lock()
            .map(|r| r.1.iter().map(Decision::escaped).collect())
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
            recent.push(Decision::of(Access::new("127.0.0.1:1".parse().unwrap(), "GET", target)));
        }
        let targets: Vec<String> = recent.list().into_iter().map(|d| d.target).collect();
        assert_eq!(targets, ["c", "b"]);
        recent.set_capacity(1);
        assert_eq!(recent.list().len(), 1);
    }

    #[test]
    fn lists_what_a_peer_chose_escaped() {
        let recent = Recent::new(4);
        let mut access = Access::new("127.0.0.1:1".parse().unwrap(), "G\nET", "a\nb\x1b[31m");
        access.error = Some("bad\r\nthing".into());
        recent.push(Decision::of(access));
        let listed = &recent.list()[0];
        for text in [
            &*listed.method,
            listed.target.as_str(),
            listed.error.as_deref().unwrap(),
        ] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        assert_eq!(listed.target, escape("a\nb\x1b[31m"));
    }
}
