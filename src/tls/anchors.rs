//! Trusted roots with their own dates.
//!
//! webpki treats a trust anchor as a subject and a key, without the
//! validity of the certificate it came from, so a chain that ends at an
//! expired root still verifies. go checks the root's dates too ("x509:
//! certificate has expired or is not yet valid"), and so does modgate:
//! [`Roots`] keeps each root certificate's validity beside the store, and
//! [`Roots::outside_dates`] tells a verified chain whose every path ends
//! at a root outside its dates.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::Serialize;
use x509_parser::prelude::*;

/// Where the system store's roots come from, as [`RootDates::source`] says.
pub const SYSTEM_STORE: &str = "the system store";

/// A root certificate's validity, and where it was loaded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootDates {
    /// Its subject DN.
    pub subject: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Where it was loaded from: a file, or [`SYSTEM_STORE`].
    pub source: String,
    /// `not_before`, in seconds since the epoch.
    #[serde(skip)]
    starts: i64,
    /// `not_after`, in seconds since the epoch.
    #[serde(skip)]
    ends: i64,
}

impl RootDates {
    /// The dates of `cert`, loaded from `source`; `None` when it does not
    /// parse (webpki then decides alone, as before).
    pub fn of(cert: &CertificateDer<'_>, source: &str) -> Option<RootDates> {
        let (_, parsed) = X509Certificate::from_der(cert).ok()?;
        let validity = parsed.validity();
        let rfc3339 = |t: &ASN1Time| {
            t.to_datetime()
                .format(&::time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| t.to_string())
        };
        Some(RootDates {
            subject: crate::tls::certinfo::dn_text(parsed.subject()),
            not_before: rfc3339(&validity.not_before),
            not_after: rfc3339(&validity.not_after),
            source: source.to_owned(),
            starts: validity.not_before.timestamp(),
            ends: validity.not_after.timestamp(),
        })
    }

    /// Whether it had expired at `now` (seconds since the epoch).
    pub fn expired(&self, now: i64) -> bool {
        now > self.ends
    }

    /// Whether it was not valid yet at `now` (seconds since the epoch).
    pub fn not_yet_valid(&self, now: i64) -> bool {
        now < self.starts
    }

    /// Whether `now` is within its dates.
    fn covers(&self, now: i64) -> bool {
        !self.expired(now) && !self.not_yet_valid(now)
    }

    /// One line for people: the root, where it came from, and which date
    /// it is on the wrong side of at `now`.
    pub fn describe(&self, now: i64) -> String {
        let when = match self.expired(now) {
            true => format!("expired on {}", self.not_after),
            false => format!("is not valid until {}", self.not_before),
        };
        format!("the trusted root '{}' ({}) {when}", self.subject, self.source)
    }
}

/// A trust anchor as webpki compares them: its subject and its key.
type AnchorKey = (Vec<u8>, Vec<u8>);

fn key_of(anchor: &TrustAnchor<'_>) -> AnchorKey {
    (
        anchor.subject.as_ref().to_vec(),
        anchor.subject_public_key_info.as_ref().to_vec(),
    )
}

/// A root store and the dates of the certificates it was built from.
#[derive(Debug, Clone)]
pub struct Roots {
    store: RootCertStore,
    /// By trust anchor. Several certificates may share one anchor (a root
    /// re-issued with the same name and key, and new dates): the anchor is
    /// within its dates when one of them is, as go tries each.
    dates: HashMap<AnchorKey, Vec<RootDates>>,
    /// The path length constraints of root certificates that set one (a
    /// trust anchor keeps no extensions, so webpki never applies them; go
    /// does), with their subjects: the most intermediates a chain may have
    /// below it (of several certificates behind one anchor, the loosest).
    path_lens: HashMap<AnchorKey, (u32, String)>,
}

impl From<RootCertStore> for Roots {
    /// Roots known only as anchors (such as webpki-roots): no dates to check.
    fn from(store: RootCertStore) -> Roots {
        Roots {
            store,
            dates: HashMap::new(),
            path_lens: HashMap::new(),
        }
    }
}

/// A chain whose every path ends at a root whose path length constraint
/// it exceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTooLong {
    /// The root's subject DN.
    pub root: String,
    /// The intermediates it allows below it.
    pub allowed: u32,
    /// The intermediates the chain has below it.
    pub found: usize,
}

impl PathTooLong {
    /// One line for people.
    pub fn describe(&self) -> String {
        format!(
            "the chain has {} intermediate certificate(s) below the trusted root '{}', whose path length constraint allows {}",
            self.found, self.root, self.allowed
        )
    }
}

impl Roots {
    /// No roots.
    pub fn empty() -> Roots {
        Roots::from(RootCertStore::empty())
    }

    /// Adds a root certificate loaded from `source`, with its dates.
    pub fn add(&mut self, cert: CertificateDer<'static>, source: &str) -> Result<(), rustls::Error> {
        let dates = RootDates::of(&cert, source);
        let path_len = path_len_of(&cert);
        let key = webpki::anchor_from_trusted_cert(&cert).map(|a| key_of(&a)).ok();
        self.store.add(cert)?;
        if let (Some(key), Some(dates)) = (key.clone(), dates) {
            self.dates.entry(key).or_default().push(dates);
        }
        if let (Some(key), Some((allowed, subject))) = (key, path_len) {
            let kept = self.path_lens.entry(key).or_insert((allowed, subject));
            kept.0 = kept.0.max(allowed);
        }
        Ok(())
    }

    /// For a chain (leaf first) that verified against these roots: the
    /// root it ended at, when every path it has holds more intermediates
    /// below its root than that root's path length constraint allows.
    pub fn path_too_long(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
        algs: &[&dyn SignatureVerificationAlgorithm],
    ) -> Option<PathTooLong> {
        // Nearly always: no certificate sent names a root that sets a path
        // length (a few of the system store's do) as its issuer, nothing
        // to look for; the issuer's name is in the certificate's bytes.
        let names_one = |cert: &CertificateDer<'_>| {
            self.path_lens
                .keys()
                .any(|(subject, _)| !subject.is_empty() && cert.windows(subject.len()).any(|w| w == &subject[..]))
        };
        if !chain.iter().any(names_one) {
            return None;
        }
        self.every_path_refused(chain, now, algs, |path| {
            let (allowed, root) = self.path_lens.get(&key_of(path.anchor()))?;
            let found = path.intermediate_certificates().count();
            let too_long = PathTooLong {
                root: root.clone(),
                allowed: *allowed,
                found,
            };
            (found > *allowed as usize).then_some((too_long, webpki::Error::PathLenConstraintViolated))
        })
    }

    /// Adds every certificate that is usable as a root, ignoring the rest
    /// (as the system store is read).
    pub fn add_parsable(&mut self, certs: Vec<CertificateDer<'static>>, source: &str) {
        for cert in certs {
            let _ = self.add(cert, source);
        }
    }

    /// The store, for rustls.
    pub fn store(&self) -> &RootCertStore {
        &self.store
    }

    /// Whether it holds no root.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The root certificates outside their dates at `now` (seconds since
    /// the epoch).
    pub fn outside_dates_at(&self, now: i64) -> impl Iterator<Item = &RootDates> {
        self.dates.values().flatten().filter(move |d| !d.covers(now))
    }

    /// The root certificate behind `anchor` when none of those behind it is
    /// within its dates at `now`; `None` when one is, or when its dates
    /// are not known.
    fn stale(&self, anchor: &TrustAnchor<'_>, now: i64) -> Option<&RootDates> {
        let dates = self.dates.get(&key_of(anchor))?;
        match dates.iter().any(|d| d.covers(now)) {
            true => None,
            false => dates.iter().max_by_key(|d| d.ends),
        }
    }

    /// For a chain (leaf first) that verified against these roots: the
    /// root it ended at, when every path it has ends at a root certificate
    /// outside its dates at `now`. `None` when a path ends at a root within
    /// its dates, or at one whose dates are not known.
    pub fn outside_dates(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
        algs: &[&dyn SignatureVerificationAlgorithm],
    ) -> Option<RootDates> {
        let secs = now.as_secs() as i64;
        // Nearly always: every root is within its dates, nothing to look for.
        self.outside_dates_at(secs).next()?;
        self.every_path_refused(chain, now, algs, |path| {
            let root = self.stale(path.anchor(), secs)?;
            let error = match root.expired(secs) {
                true => webpki::Error::CertExpired {
                    time: now,
                    not_after: epoch(root.ends),
                },
                false => webpki::Error::CertNotValidYet {
                    time: now,
                    not_before: epoch(root.starts),
                },
            };
            Some((root.clone(), error))
        })
    }

    /// Verifies `chain` (leaf first) again with `refuse` judging each path
    /// webpki builds to these roots: a path it refuses (with what to
    /// report, and webpki's error for it) sends webpki on to the next, so
    /// a chain with one path it lets through passes. What it said of the
    /// first path refused, when every path was.
    fn every_path_refused<T>(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
        algs: &[&dyn SignatureVerificationAlgorithm],
        refuse: impl Fn(&webpki::VerifiedPath<'_>) -> Option<(T, webpki::Error)>,
    ) -> Option<T> {
        let (leaf, intermediates) = chain.split_first()?;
        let leaf = webpki::EndEntityCert::try_from(leaf).ok()?;
        let met = RefCell::new(None);
        let judged = |path: &webpki::VerifiedPath<'_>| match refuse(path) {
            None => Ok(()),
            Some((said, error)) => {
                met.borrow_mut().get_or_insert(said);
                Err(error)
            }
        };
        let verified = leaf.verify_for_usage(
            algs,
            &self.store.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&judged),
        );
        match verified {
            Ok(_) => None,
            Err(_) => met.into_inner(),
        }
    }
}

/// The path length constraint a root certificate sets, with its subject.
fn path_len_of(cert: &CertificateDer<'_>) -> Option<(u32, String)> {
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    let constraints = parsed.basic_constraints().ok()??.value;
    let allowed = constraints.path_len_constraint?;
    Some((allowed, crate::tls::certinfo::dn_text(parsed.subject())))
}

/// Seconds since the epoch as a [`UnixTime`] (0 before it).
fn epoch(secs: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root valid from `from` to `to` days from now, and a leaf for
    /// `a.test` it signs, valid now: (root, leaf).
    fn root_and_leaf(from: i64, to: i64) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let now = ::time::OffsetDateTime::now_utc();
        let (root, issuer) =
            crate::tls::testing::ca("Zscaler Root CA", rcgen::KeyPair::generate().unwrap(), (from, to), None);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        leaf.not_before = now - ::time::Duration::days(1);
        leaf.not_after = now + ::time::Duration::days(10);
        let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap().der().clone();
        (root, leaf)
    }

    fn algs() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all
    }

    /// A root that allows `path_len` intermediates (unconstrained when
    /// `None`), one intermediate it signs, and a leaf for `a.test` that
    /// signs: (root, [leaf, intermediate]).
    fn root_over_one_intermediate(path_len: Option<u8>) -> (CertificateDer<'static>, Vec<CertificateDer<'static>>) {
        let mut params = crate::tls::testing::ca_params("Corp Root", (-1, 30));
        if let Some(n) = path_len {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(n));
        }
        let (root, issuer) = crate::tls::testing::ca_from(params, rcgen::KeyPair::generate().unwrap(), None);
        let (intermediate, by) = crate::tls::testing::ca(
            "Corp Intermediate",
            rcgen::KeyPair::generate().unwrap(),
            (-1, 30),
            Some(&issuer),
        );
        let leaf = crate::tls::testing::leaf_by("a.test", &by);
        (root, vec![leaf, intermediate])
    }

    /// go applies a root's path length constraint; webpki keeps none of a
    /// root's extensions, so modgate applies it after webpki.
    #[test]
    fn a_chain_longer_than_its_roots_path_length_allows_is_named() {
        for (path_len, refused) in [(Some(0), true), (Some(1), false), (None, false)] {
            let (root, chain) = root_over_one_intermediate(path_len);
            let mut roots = Roots::empty();
            roots.add(root, "corp.pem").unwrap();
            let too_long = roots.path_too_long(&chain, UnixTime::now(), algs());
            match refused {
                true => assert_eq!(
                    too_long.map(|t| t.describe()).as_deref(),
                    Some(
                        "the chain has 1 intermediate certificate(s) below the trusted root 'CN=Corp Root', whose path length constraint allows 0"
                    )
                ),
                false => assert_eq!(too_long, None, "{path_len:?}"),
            }
        }
    }

    #[test]
    fn a_chain_ending_at_a_root_outside_its_dates_is_named() {
        for (from, to, expired) in [(-60, -30, true), (5, 60, false)] {
            let (root, leaf) = root_and_leaf(from, to);
            let mut roots = Roots::empty();
            roots.add(root, "extra.pem").unwrap();
            let stale = roots
                .outside_dates(&[leaf], UnixTime::now(), algs())
                .expect("the root is outside its dates");
            assert_eq!(stale.subject, "CN=Zscaler Root CA");
            assert_eq!(stale.source, "extra.pem");
            let now = UnixTime::now().as_secs() as i64;
            assert_eq!((stale.expired(now), stale.not_yet_valid(now)), (expired, !expired));
        }
    }

    /// A root re-issued with the same name and key and new dates: the
    /// anchor is the same, and one of its certificates is current, as go
    /// would find.
    #[test]
    fn a_reissued_root_within_its_dates_passes() {
        let now = ::time::OffsetDateTime::now_utc();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = |from: i64, to: i64| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, "Corp Root");
            params.not_before = now + ::time::Duration::days(from);
            params.not_after = now + ::time::Duration::days(to);
            params
        };
        let old = params(-400, -30).self_signed(&key).unwrap().der().clone();
        let renewed = params(-30, 400).self_signed(&key).unwrap().der().clone();
        let issuer = rcgen::Issuer::new(params(-30, 400), key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap()
            .der()
            .clone();
        let mut roots = Roots::empty();
        roots.add(old.clone(), "old.pem").unwrap();
        assert!(
            roots
                .outside_dates(std::slice::from_ref(&leaf), UnixTime::now(), algs())
                .is_some()
        );
        roots.add(renewed, "renewed.pem").unwrap();
        assert_eq!(roots.outside_dates(&[leaf], UnixTime::now(), algs()), None);
    }

    #[test]
    fn a_root_within_its_dates_or_without_known_dates_passes() {
        let (root, leaf) = root_and_leaf(-1, 30);
        let mut roots = Roots::empty();
        roots.add(root, "extra.pem").unwrap();
        assert_eq!(roots.outside_dates(&[leaf], UnixTime::now(), algs()), None);
        // Known only as an anchor (as webpki-roots are): webpki decides alone.
        let (root, leaf) = root_and_leaf(-60, -30);
        let mut store = RootCertStore::empty();
        store.add(root).unwrap();
        assert_eq!(Roots::from(store).outside_dates(&[leaf], UnixTime::now(), algs()), None);
    }
}
