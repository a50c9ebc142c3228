//! Guessing is bounded: failed logins are counted per client address, and
//! an address with `auth.max_failures` failures within `auth.lockout` is
//! locked out until `lockout` has passed since its last failure. While it
//! is, credentials already verified from it keep working (a user behind
//! the same address as a guesser), and every other attempt counts as one
//! more failure; once the failures reach twice `max_failures`, the lockout
//! is closed: nothing from the address is accepted, so the remembered
//! credentials cannot be used to test guesses at full speed.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::cache::{Bounded, bounded};

/// Client addresses tracked at most.
const CLIENTS_MAX: u64 = 100_000;

/// Failed logins per client address.
pub struct Failures {
    max: u32,
    lockout: Duration,
    by_client: Bounded<IpAddr, Arc<Mutex<Window>>>,
}

/// A client address that is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// How long it stays locked out without another failure.
    pub left: Duration,
    /// Closed to credentials verified before as well.
    pub closed: bool,
}

/// One client's recent failures.
#[derive(Debug, Clone, Copy)]
struct Window {
    count: u32,
    last: Instant,
}

impl Failures {
    /// At most `max` failures within `lockout`.
    pub fn new(max: u32, lockout: Duration) -> Failures {
        Failures {
            max,
            lockout,
            by_client: bounded(CLIENTS_MAX, lockout),
        }
    }

    /// Whether `other` counts with the same `max` and `lockout`.
    pub fn same_limits(&self, other: &Failures) -> bool {
        self.max == other.max && self.lockout == other.lockout
    }

    /// Whether `client` is locked out, and how.
    pub fn locked(&self, client: IpAddr) -> Option<Lock> {
        let window = self.by_client.get(&client.to_canonical())?;
        let w = *window.lock().ok()?;
        let since = w.last.elapsed();
        (w.count >= self.max && since < self.lockout).then(|| Lock {
            left: self.lockout - since,
            closed: w.count >= self.max.saturating_mul(2),
        })
    }

    /// Counts a failed login from `client`.
    pub fn fail(&self, client: IpAddr) {
        let now = Instant::now();
        let window = self.by_client.get_with(client.to_canonical(), || {
            Arc::new(Mutex::new(Window { count: 0, last: now }))
        });
        if let Ok(mut w) = window.lock() {
            if w.last.elapsed() >= self.lockout {
                w.count = 0;
            }
            w.count = w.count.saturating_add(1);
            w.last = now;
        }
        // Re-inserting restarts the entry's time to live from this failure.
        // IPv4-mapped IPv6 addresses count as the IPv4 address.
        self.by_client.insert(client.to_canonical(), window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_locks_one_client_out_and_only_it() {
        let f = Failures::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        f.fail(a);
        f.fail(mapped);
        assert!(f.locked(a).is_none());
        f.fail(a);
        let lock = f.locked(a).expect("locked after 3 failures");
        assert!(lock.left > Duration::from_secs(58) && lock.left <= Duration::from_secs(60));
        assert!(!lock.closed);
        assert!(f.locked(mapped).is_some());
        assert!(f.locked(b).is_none());
        // Three more (attempts while locked out): closed.
        f.fail(a);
        f.fail(a);
        assert!(!f.locked(a).unwrap().closed);
        f.fail(a);
        assert!(f.locked(a).unwrap().closed);
    }

    #[test]
    fn failures_older_than_the_lockout_are_forgotten() {
        let f = Failures::new(2, Duration::from_millis(50));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        f.fail(a);
        std::thread::sleep(Duration::from_millis(80));
        f.fail(a);
        assert!(f.locked(a).is_none());
    }
}
