//! Proxy authentication (`[auth]`): Basic credentials on the explicit
//! listener, checked against an htpasswd file.
//!
//! - [`basic`]: reading a `Basic` credentials header.
//! - [`htpasswd`]: the users and their bcrypt or sha-crypt hashes.
//! - [`failures`]: failed logins counted per client address.
//!
//! A hash check costs milliseconds of CPU, so it runs off the runtime,
//! once per client address: credentials that verified are remembered for a
//! few minutes under a keyed digest of the address and the header (the
//! password is never kept). Remembered credentials skip the hash check, so
//! they are only ever remembered for the address that presented them: from
//! another address, a guess at them is a hash check and a counted failure
//! like any other. Unknown users cost a hash check too, so timing does not
//! tell which names exist.
//!
//! Hash checks run at most half the cores at a time, whoever asks: a flood
//! of guesses (from one address, sent all at once before the first one
//! fails, or from many) waits its turn instead of taking every core from
//! the proxy, and a guess whose address was locked out while it waited is
//! refused without a check.

pub mod basic;
pub mod failures;
pub mod htpasswd;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::auth::AuthSettings;
use crate::core::cache::{Bounded, bounded};
use crate::core::error::Error;
use crate::core::escape::escape;
use failures::Failures;
use htpasswd::Users;

/// Credentials remembered at most.
const VERIFIED_MAX: u64 = 10_000;
/// How long verified credentials are remembered.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// Where credentials are asked for: it decides the challenge and the
/// header they come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Through modgate as a proxy: `Proxy-Authorization`, else 407 with
    /// `Proxy-Authenticate`.
    Proxy,
    /// modgate's own module endpoint (an origin server): `Authorization`,
    /// else 401 with `WWW-Authenticate`.
    ModuleEndpoint,
    /// The admin listener (an origin server), under `admin.require_auth`:
    /// `Authorization`, else 401 with `WWW-Authenticate`.
    Admin,
}

/// Checks credentials against the htpasswd file.
pub struct Authenticator {
    users: Arc<Users>,
    realm: String,
    failures: Arc<Failures>,
    /// User names of header values recently verified from a client
    /// address, by keyed digest of both.
    verified: Bounded<Vec<u8>, Arc<str>>,
    key: ring::hmac::Key,
    /// Hash checks that may run at once, shared with the authenticators a
    /// reload puts in its place.
    checks: Arc<tokio::sync::Semaphore>,
    /// Hash checks run.
    checked: AtomicU64,
}

impl Authenticator {
    /// Loads the htpasswd file of `settings`; the error names the file and
    /// line.
    pub fn load(settings: &AuthSettings) -> Result<Authenticator, String> {
        let users = Users::load(&settings.htpasswd)?;
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| "cannot make a random key".to_owned())?;
        Ok(Authenticator {
            users: Arc::new(users),
            realm: settings.realm.clone(),
            failures: Arc::new(Failures::new(settings.max_failures, settings.lockout)),
            verified: bounded(VERIFIED_MAX, VERIFIED_FOR),
            key,
            checks: Arc::new(tokio::sync::Semaphore::new(concurrent_checks())),
            checked: AtomicU64::new(0),
        })
    }

    /// Takes over the failed logins counted by `before` (the authenticator
    /// a reload replaces), when both count them the same way: a reload
    /// re-reads the users but does not reset anyone's lockout.
    /// The bound on concurrent hash checks carries over as well.
    pub fn keep_failures_of(&mut self, before: &Authenticator) {
        if self.failures.same_limits(&before.failures) {
            self.failures = before.failures.clone();
        }
        self.checks = before.checks.clone();
    }

    /// Hash checks run so far.
    pub fn hash_checks(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    /// The realm of the challenge.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The user `presented` (the `Proxy-Authorization` or `Authorization`
    /// values) authenticates, for a request from `client` at `door`, which
    /// decides the challenge (407 or 401) and how the fix is worded.
    pub async fn authenticate(&self, client: IpAddr, presented: Presented<'_>, door: Door) -> Result<String, Error> {
        let refuse = |reason: String| Error::Unauthenticated {
            realm: self.realm.clone(),
            reason,
            endpoint: door != Door::Proxy,
        };
        let header = match presented {
            Presented::One(header) => header,
            Presented::Several => {
                self.failures.fail(client);
                let name = match door {
                    Door::Proxy => "Proxy-Authorization",
                    Door::ModuleEndpoint | Door::Admin => "Authorization",
                };
                return Err(refuse(format!(
                    "malformed credentials: more than one {name} header; send one"
                )));
            }
            Presented::Missing => {
                let how = match door {
                    Door::ModuleEndpoint => {
                        "send Authorization: Basic (go sends no credentials over http://: use HTTPS_PROXY=http://user:password@host:port instead)"
                    }
                    Door::Proxy => "send Proxy-Authorization: Basic (e.g. HTTPS_PROXY=http://user:password@host:port)",
                    Door::Admin => {
                        "the admin listener asks for an [auth] user (admin.require_auth): send Authorization: Basic (e.g. curl -u user:password)"
                    }
                };
                return Err(refuse(format!("no credentials; {how}")));
            }
        };
        let digest = self.digest(client, header);
        let lock = self.failures.locked(client);
        if let Some(user) = self.verified.get(&digest) {
            if !lock.is_some_and(|l| l.closed) {
                return Ok(user.to_string());
            }
        }
        if lock.is_some() {
            return Err(self.locked_out(client));
        }
        let credentials = match basic::parse(header) {
            Ok(c) => c,
            Err(why) => {
                self.failures.fail(client);
                return Err(refuse(format!("malformed credentials: {why}")));
            }
        };
        let permit = self
            .checks
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("password check: {e}")))?;
        // Failures counted while this one waited may have locked the
        // address out; or the same credentials, sent at once on another
        // connection (go fetches in parallel), were verified meanwhile.
        if self.failures.locked(client).is_some() {
            return Err(self.locked_out(client));
        }
        if let Some(user) = self.verified.get(&digest) {
            return Ok(user.to_string());
        }
        self.checked.fetch_add(1, Ordering::Relaxed);
        let users = self.users.clone();
        let user = credentials.user.clone();
        let (failures, verified) = (self.failures.clone(), self.verified.clone());
        let ok = tokio::task::spawn_blocking(move || {
            let ok = users.verify(&credentials.user, &credentials.password);
            // Counted, or remembered, before the permit goes to the next
            // check, even when the client has gone.
            match ok {
                true => verified.insert(digest, Arc::from(credentials.user.as_str())),
                false => failures.fail(client),
            }
            drop(permit);
            ok
        })
        .await
        .map_err(|e| Error::Internal(format!("password check: {e}")))?;
        if !ok {
            // A quoted string: a user name the client chose cannot add
            // fields to the line (`x client=10.0.0.9 status=200`).
            tracing::warn!(client = %client, user = &*escape(&user), "proxy authentication failed");
            return Err(refuse("unknown user or wrong password".into()));
        }
        Ok(user)
    }

    /// The refusal of a guess from `client` while it is locked out: it
    /// counts, and restarts the lockout.
    fn locked_out(&self, client: IpAddr) -> Error {
        self.failures.fail(client);
        let left = self.failures.locked(client).map_or(Duration::ZERO, |l| l.left);
        Error::LockedOut {
            client,
            retry_after: Duration::from_secs(left.as_secs().max(1)),
        }
    }

    /// The key `header` from `client` is remembered under.
    fn digest(&self, client: IpAddr, header: &[u8]) -> Vec<u8> {
        let mut digest = ring::hmac::Context::with_key(&self.key);
        match client.to_canonical() {
            IpAddr::V4(a) => digest.update(&a.octets()),
            IpAddr::V6(a) => digest.update(&a.octets()),
        }
        digest.update(header);
        digest.sign().as_ref().to_vec()
    }
}

/// Hash checks that may run at once: half the cores, at least one.
fn concurrent_checks() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The credentials a request presents: the values of its credentials
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// None.
    Missing,
    /// One value.
    One(&'a [u8]),
    /// More than one: which one counts would be a guess, so none does.
    Several,
}

impl<'a> Presented<'a> {
    /// What `values` (a header's values, in order) present.
    pub fn of(mut values: impl Iterator<Item = &'a [u8]>) -> Presented<'a> {
        match (values.next(), values.next()) {
            (None, _) => Presented::Missing,
            (Some(one), None) => Presented::One(one),
            (Some(_), Some(_)) => Presented::Several,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn authenticator(dir: &std::path::Path, max_failures: u32) -> Authenticator {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(dir.join("users"), format!("alice:{hash}\n")).unwrap();
        Authenticator::load(&AuthSettings {
            htpasswd: dir.join("users"),
            realm: "test".into(),
            max_failures,
            lockout: Duration::from_secs(60),
        })
        .unwrap()
    }

    fn basic(s: &str) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s)).into_bytes()
    }

    #[tokio::test]
    async fn right_wrong_missing_and_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let auth = authenticator(dir.path(), 2);
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            auth.authenticate(me, Presented::One(&basic("alice:s3cret")), Door::Proxy)
                .await
                .unwrap(),
            "alice"
        );
        let missing = auth
            .authenticate(me, Presented::Missing, Door::Proxy)
            .await
            .unwrap_err();
        assert_eq!(missing.status(), http::StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert_eq!(
            missing.challenge().unwrap().1,
            "Basic realm=\"test\", charset=\"UTF-8\""
        );
        let on_endpoint = auth
            .authenticate(me, Presented::Missing, Door::ModuleEndpoint)
            .await
            .unwrap_err();
        assert_eq!(on_endpoint.status(), http::StatusCode::UNAUTHORIZED);
        let wrong = auth
            .authenticate(me, Presented::One(&basic("alice:nope")), Door::Proxy)
            .await
            .unwrap_err();
        assert!(wrong.to_string().contains("unknown user or wrong password"), "{wrong}");
        let unknown = auth
            .authenticate(me, Presented::One(&basic("bob:s3cret")), Door::Proxy)
            .await
            .unwrap_err();
        assert_eq!(unknown.to_string(), wrong.to_string());
        // Two failures: locked out, even with the right password, but
        // credentials verified before still work.
        let locked = auth
            .authenticate(me, Presented::One(&basic("alice:s3cret ")), Door::Proxy)
            .await
            .unwrap_err();
        assert_eq!(locked.status(), http::StatusCode::FORBIDDEN, "{locked}");
        assert!(
            locked
                .to_string()
                .starts_with("too many failed proxy logins from 192.0.2.1")
        );
        assert_eq!(
            auth.authenticate(me, Presented::One(&basic("alice:s3cret")), Door::Proxy)
                .await
                .unwrap(),
            "alice"
        );
        // Remembered for the address that presented them only: from a
        // locked-out neighbour they are refused like any guess.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            let _ = auth
                .authenticate(other, Presented::One(&basic("alice:guess")), Door::Proxy)
                .await;
        }
        let guessed = auth
            .authenticate(other, Presented::One(&basic("alice:s3cret")), Door::Proxy)
            .await
            .unwrap_err();
        assert_eq!(guessed.status(), http::StatusCode::FORBIDDEN, "{guessed}");
        // Guessing on from `me` (3 failures so far; 4 = twice the limit)
        // closes the lockout to the remembered credentials too.
        let _ = auth
            .authenticate(me, Presented::One(&basic("alice:guess")), Door::Proxy)
            .await;
        let closed = auth
            .authenticate(me, Presented::One(&basic("alice:s3cret")), Door::Proxy)
            .await
            .unwrap_err();
        assert_eq!(closed.status(), http::StatusCode::FORBIDDEN, "{closed}");
    }

    /// Each of `headers` presented from `client` at once, on tasks of
    /// their own; the outcomes in order.
    async fn all_at_once(
        auth: &Arc<Authenticator>,
        client: IpAddr,
        headers: impl Iterator<Item = Vec<u8>>,
    ) -> Vec<Result<String, Error>> {
        let tasks: Vec<_> = headers
            .map(|header| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.authenticate(client, Presented::One(&header), Door::Proxy).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guesses_sent_at_once_cost_no_more_hash_checks_than_the_limit_allows() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Arc::new(authenticator(dir.path(), 3));
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        // All 64 pass the lockout check before the first check fails.
        let guesses = all_at_once(&auth, me, (0..64).map(|i| basic(&format!("alice:guess{i}")))).await;
        let mut locked = 0;
        for guess in guesses {
            let refused = guess.unwrap_err();
            if refused.status() == http::StatusCode::FORBIDDEN {
                locked += 1;
            }
        }
        let bound = 3 + concurrent_checks() as u64 - 1;
        assert!(
            auth.hash_checks() <= bound,
            "{} hash checks for 64 guesses, at most {bound} expected",
            auth.hash_checks()
        );
        assert_eq!(locked as u64, 64 - auth.hash_checks());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_credentials_sent_at_once_are_checked_once_per_slot() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Arc::new(authenticator(dir.path(), 3));
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        for login in all_at_once(&auth, me, (0..16).map(|_| basic("alice:s3cret"))).await {
            assert_eq!(login.unwrap(), "alice");
        }
        // Those that waited for a slot found the first one's verdict.
        assert!(
            auth.hash_checks() <= concurrent_checks() as u64,
            "{}",
            auth.hash_checks()
        );
    }

    #[tokio::test]
    async fn two_credentials_headers_are_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let auth = authenticator(dir.path(), 1);
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let (good, bad) = (basic("alice:s3cret"), basic("alice:nope"));
        let both = Presented::of([good.as_slice(), bad.as_slice()].into_iter());
        assert_eq!(both, Presented::Several);
        let refused = auth.authenticate(me, both, Door::Proxy).await.unwrap_err();
        assert!(
            refused.to_string().contains("more than one Proxy-Authorization header"),
            "{refused}"
        );
        let locked = auth
            .authenticate(me, Presented::One(&good), Door::Proxy)
            .await
            .unwrap_err();
        assert_eq!(locked.status(), http::StatusCode::FORBIDDEN, "{locked}");
    }
}
