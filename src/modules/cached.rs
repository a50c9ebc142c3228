//! The module cache's semantics, wrapped around the fall-through loop:
//! what is kept and for how long, single-flight, stale-if-error, remembered
//! 404s, and verification before anything is stored.
//!
//! - Kept forever, by module and version (not by which mirror answered):
//!   `.info`, `.mod` and `.zip` of canonical versions; sumdb lookups and
//!   tiles.
//! - Kept for `cache.list_ttl`: `@v/list`, `@latest`, `.info` of a query
//!   (a branch or commit), sumdb `latest`. Past it, the upstream is asked;
//!   when every source fails, or none answers within `cache.stale_after`,
//!   the old answer is still served for `cache.stale_if_error`
//!   (`x-cache: stale`), and a slow fetch goes on to refresh it.
//! - 404 and 410 are answers, remembered for `cache.negative_ttl`, for the
//!   mirror list (and original host) that gave them: unlike a file, a 404
//!   is a fact about where it was asked, and no hash can check it.
//!
//! A miss streams to its client while it is stored; concurrent requests
//! for it join the same fetch ([`flight`](crate::modules::flight)).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::watch;

use crate::cache::{CacheError, Key, Store};
use crate::config::CacheSettings;
use crate::core::body::{Body, BoxError, Unframed, declared_length};
use crate::core::cache::{Bounded, bounded};
use crate::core::error::{Error, Side};
use crate::core::timer;
use crate::gomod::request::{ModuleRequest, SumdbKind};
use crate::gomod::semver::is_canonical;
use crate::modules::flight::{Flight, Head, Progress, spool_write};
use crate::modules::spool::Spool;
use crate::modules::verify::{ContentCheck, Subject, Verdict, Vetted, check_sumdb_shape, check_well_formed};
pub use crate::telemetry::access::CacheStatus;

/// Marks an answer read back from the store, which needs no check and no
/// storing again.
#[derive(Debug, Clone, Copy)]
struct AlreadyStored;

/// Why an unframed answer is not kept.
const UNFRAMED: &str =
    "the upstream's answer had no length and ended with its connection, so a body cut short would look whole";

/// The largest 404/410 body remembered.
const MAX_NEGATIVE_BODY: usize = 4096;
/// 404/410 answers remembered at once.
const NEGATIVE_ENTRIES: u64 = 16_384;

/// An answer, the source it came from, and how the cache took part.
pub struct Cached {
    /// The answer.
    pub result: Result<Response<Body>, Error>,
    /// The upstream it came from, when one was asked.
    pub source: Option<String>,
    /// How the cache took part.
    pub status: CacheStatus,
}

/// What the fall-through loop answered, and the source that gave it.
pub type Fetched = (Result<Response<Body>, Error>, String);

/// How long an object stays fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Never changes.
    Forever,
    /// `cache.list_ttl`, then stale.
    Ttl,
}

/// Counters for metrics and `cache stats`.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Hits.
    pub hits: AtomicU64,
    /// Misses.
    pub misses: AtomicU64,
    /// Requests that joined another's fetch.
    pub coalesced: AtomicU64,
    /// Stale answers served.
    pub stale: AtomicU64,
    /// Module files refused by verification: here, and by the content
    /// check before a small file is answered ([`ContentCheck::vet`]).
    pub refused: Arc<AtomicU64>,
}

/// What a body of unknown length is taken to need on the cache's disk.
const UNKNOWN_LENGTH: u64 = 64 * 1024 * 1024;
/// Left free on the cache's disk beyond what a body needs.
const DISK_RESERVE: u64 = 1024 * 1024;

/// The module cache.
pub struct ModuleCache {
    store: Store,
    settings: CacheSettings,
    negative: Bounded<String, NegativeAnswer>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    /// Swapped by a config reload, so the checksum database is reached
    /// with the TLS settings in effect; the store and the flights stay.
    check: arc_swap::ArcSwapOption<ContentCheck>,
    spool: Spool,
    /// A spool in the temp directory, for bodies the cache's disk has no
    /// room to spool beside the object they become; made when first needed.
    overflow: std::sync::OnceLock<Option<Spool>>,
    next_spool: AtomicU64,
    /// What happened, for metrics.
    pub counters: CacheCounters,
}

/// A remembered 404 or 410.
#[derive(Debug, Clone)]
struct NegativeAnswer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl ModuleCache {
    /// A cache over `store`, checking module files with `check` when given.
    pub fn new(
        store: Store,
        settings: CacheSettings,
        check: Option<Arc<ContentCheck>>,
    ) -> Result<ModuleCache, CacheError> {
        let spool = Spool::open(store.hidden_dir().as_deref()).map_err(|e| CacheError::Open {
            backend: store.backend().to_owned(),
            detail: format!("cannot make a spool directory: {e}"),
        })?;
        let counters = CacheCounters::default();
        if let Some(check) = &check {
            check.count_refusals_in(counters.refused.clone());
        }
        Ok(ModuleCache {
            negative: bounded(NEGATIVE_ENTRIES, settings.negative_ttl),
            store,
            settings,
            flights: Mutex::new(HashMap::new()),
            check: arc_swap::ArcSwapOption::new(check),
            spool,
            overflow: std::sync::OnceLock::new(),
            next_spool: AtomicU64::new(0),
            counters,
        })
    }

    /// Removes the spool directory, at shutdown.
    pub fn remove_spool(&self) {
        self.spool.remove();
        if let Some(Some(overflow)) = self.overflow.get() {
            overflow.remove();
        }
    }

    /// Whether the cache's disk has room to keep a body of `length` bytes
    /// (unknown: [`UNKNOWN_LENGTH`]) as well as to spool it. A body is
    /// spooled and stored at once, so a miss takes twice its size; where
    /// the disk has not room for both, `flight` spools in the temp
    /// directory instead, so a full cache disk never fails a client: what
    /// it cannot keep is served uncached.
    fn make_room(&self, flight: &Flight, length: Option<u64>) -> bool {
        if !self.spool.under_cache() {
            return true;
        }
        let Some(free) = self
            .store
            .hidden_dir()
            .and_then(|d| crate::modules::spool::free_space(&d))
        else {
            return true;
        };
        let need = length.unwrap_or(UNKNOWN_LENGTH).saturating_add(DISK_RESERVE);
        if free >= need.saturating_mul(2) {
            return true;
        }
        let overflow = self.overflow.get_or_init(|| match Spool::open(None) {
            Ok(spool) => Some(spool),
            Err(e) => {
                tracing::warn!(error = %e, "cannot make a spool in the temp directory");
                None
            }
        });
        if let Some(overflow) = overflow {
            flight.spool_in(overflow.path());
        }
        free >= need
    }

    /// Verifies module files with `check` from now on (a config reload
    /// rebuilds it over the new upstream clients).
    pub fn set_check(&self, check: Option<Arc<ContentCheck>>) {
        if let Some(check) = &check {
            check.count_refusals_in(self.counters.refused.clone());
        }
        self.check.store(check);
    }

    /// The content check module files pass before they are kept, if any.
    pub fn check(&self) -> Option<Arc<ContentCheck>> {
        self.check.load_full()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Answers `request` (at `rel_path` below a GOPROXY base) from the
    /// cache, or through `fetch` — the fall-through loop — storing what it
    /// answers. A `private` module's objects are kept under `private/`.
    /// `scope` names where `fetch` asks (the mirror list, and the original
    /// host inside a tunnel): a 404 or 410 is remembered for it alone.
    ///
    /// The fetch runs as a task of its own, so it can outlive this request:
    /// when an expired list or latest has a stale copy and no answer comes
    /// within `cache.stale_after`, the stale copy is answered at once and
    /// the fetch goes on to refresh the cache (stale-while-revalidate).
    pub async fn serve<F>(
        self: &Arc<Self>,
        request: &ModuleRequest,
        rel_path: &str,
        private: bool,
        scope: &str,
        fetch: F,
    ) -> Cached
    where
        F: FnOnce() -> BoxFuture<'static, Fetched> + Send + 'static,
    {
        let Some((key, lifetime)) = cache_key(request, rel_path, private) else {
            let (result, source) = fetch().await;
            return Cached {
                result,
                source: Some(source),
                status: CacheStatus::Bypass,
            };
        };
        let negative_key = format!("{scope}\n{}", key.as_str());
        if let Some(negative) = self.negative.get(&negative_key) {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return tagged(Ok(negative.response()), None, CacheStatus::Hit);
        }
        let mut stale_since = None;
        match self.store.get(&key).await {
            Ok(Some(hit)) if lifetime == Lifetime::Forever || self.fresh(hit.stored_at) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return tagged(Ok(hit_response(hit, request)), None, CacheStatus::Hit);
            }
            Ok(Some(expired)) => stale_since = Some(expired.stored_at).filter(|s| self.stale_allowed(*s)),
            Ok(None) => {}
            Err(e) => tracing::warn!(key = key.as_str(), error = %e, "cache read failed; fetching upstream"),
        }
        let (flight, leader) = self.join_or_lead(&key);
        let rx = flight.subscribe();
        if leader {
            // With a stale copy to answer, the refresh must finish even if
            // every client took the stale copy and went: it keeps a
            // subscription of its own.
            let keep = stale_since.map(|_| flight.subscribe());
            // With no stale copy to refresh, what another worker's fetch
            // stored between this request's look and its lead is taken.
            let recheck = stale_since.is_none().then_some(lifetime);
            self.lead(
                flight.clone(),
                key.clone(),
                negative_key,
                request.clone(),
                fetch,
                keep,
                recheck,
            );
        }
        let status = if leader {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            CacheStatus::Miss
        } else {
            self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            CacheStatus::Coalesced
        };
        let answered = match stale_since {
            Some(_) => match timer::timeout(self.settings.stale_after, flight.answer(rx)).await {
                Ok(answered) => answered,
                Err(_) => {
                    let late = format!(
                        "no answer within cache.stale_after ({})",
                        crate::core::duration::fmt_duration(self.settings.stale_after)
                    );
                    if let Some(stale) = self.stale_copy(&key, request, &late).await {
                        return stale;
                    }
                    // The stale copy went away meanwhile: wait after all.
                    flight.answer(flight.subscribe()).await
                }
            },
            None => flight.answer(rx).await,
        };
        let source = if leader { flight.source() } else { None };
        match answered {
            Ok(resp) => tagged(Ok(resp), source, status),
            // An upstream failure, or no upstream connection to be had:
            // the stale copy is better than nothing either way.
            Err(e) if stale_since.is_some() && (e.side() == Side::Upstream || matches!(e, Error::Overloaded(_))) => {
                match self.stale_copy(&key, request, &e.to_string()).await {
                    Some(stale) => Cached { source, ..stale },
                    None => tagged(Err(e), source, status),
                }
            }
            Err(e) => tagged(Err(e), source, status),
        }
    }

    /// Starts the fetch for `flight` as a task: its answer is published to
    /// the flight, and its body pumped into the spool and the store.
    fn lead<F>(
        self: &Arc<Self>,
        flight: Arc<Flight>,
        key: Key,
        negative_key: String,
        request: ModuleRequest,
        fetch: F,
        keep: Option<watch::Receiver<Progress>>,
        recheck: Option<Lifetime>,
    ) where
        F: FnOnce() -> BoxFuture<'static, Fetched> + Send + 'static,
    {
        let cache = self.clone();
        tokio::spawn(async move {
            // The store is looked at again: a fetch of the same object on
            // another worker may have landed after this request looked and
            // before it led (single flight across workers).
            if let Some(lifetime) = recheck {
                if let Ok(Some(hit)) = cache.store.get(&key).await {
                    if lifetime == Lifetime::Forever || cache.fresh(hit.stored_at) {
                        let mut resp = hit_response(hit, &request);
                        resp.extensions_mut().insert(AlreadyStored);
                        let guard = LeaderGuard {
                            cache: &cache,
                            key: &key,
                            flight: &flight,
                            armed: true,
                        };
                        flight.set_source("cache".into());
                        guard
                            .settle(Ok(resp), "cache".into(), request, key.clone(), negative_key, keep)
                            .await;
                        return;
                    }
                }
            }
            let guard = LeaderGuard {
                cache: &cache,
                key: &key,
                flight: &flight,
                armed: true,
            };
            // Every client gone before an answer came (a hung mirror
            // they gave up on): the fetch is dropped, and its upstream
            // connection closed, rather than held to the header timeout.
            // The guard tells any follower that joins meanwhile.
            let (result, from) = tokio::select! {
                fetched = fetch() => fetched,
                () = flight.all_left() => return,
            };
            flight.set_source(from.clone());
            if let Ok(resp) = &result {
                flight.set_upstream(resp.extensions());
            }
            guard
                .settle(result, from, request, key.clone(), negative_key, keep)
                .await;
        });
    }

    /// The stored copy of an expired `key`, answered because the upstream
    /// could not answer (`why`).
    async fn stale_copy(&self, key: &Key, request: &ModuleRequest, why: &str) -> Option<Cached> {
        match self.store.get(key).await {
            Ok(Some(hit)) if self.stale_allowed(hit.stored_at) => {
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key = key.as_str(), reason = why, "serving the stale copy");
                Some(tagged(Ok(hit_response(hit, request)), None, CacheStatus::Stale))
            }
            _ => None,
        }
    }

    /// The head of a fresh cached answer to `request`, for a HEAD request:
    /// no body is read. `None` when it is not cached (or not fresh).
    pub async fn head(&self, request: &ModuleRequest, rel_path: &str, private: bool) -> Option<Response<Body>> {
        let (key, lifetime) = cache_key(request, rel_path, private)?;
        let hit = self.store.get(&key).await.ok()??;
        if lifetime == Lifetime::Ttl && !self.fresh(hit.stored_at) {
            return None;
        }
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        let mut resp = Response::new(crate::core::body::empty());
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(hit.size));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(request)));
        headers.insert("x-cache", HeaderValue::from_static(CacheStatus::Hit.as_str()));
        Some(resp)
    }

    fn fresh(&self, stored: SystemTime) -> bool {
        stored.elapsed().is_ok_and(|age| age < self.settings.list_ttl)
    }

    fn stale_allowed(&self, stored: SystemTime) -> bool {
        stored
            .elapsed()
            .is_ok_and(|age| age < self.settings.list_ttl + self.settings.stale_if_error)
    }

    /// The flight for `key`: the one under way, or a new one this request
    /// leads.
    fn join_or_lead(&self, key: &Key) -> (Arc<Flight>, bool) {
        let mut flights = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(flight) = flights.get(key.as_str()) {
            return (flight.clone(), false);
        }
        let n = self.next_spool.fetch_add(1, Ordering::Relaxed);
        let flight = Flight::new(self.spool.path().join(format!("{n}.spool")));
        flights.insert(key.as_str().to_owned(), flight.clone());
        (flight, true)
    }

    fn land(&self, key: &Key, flight: &Arc<Flight>) {
        let mut flights = self.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if flights.get(key.as_str()).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key.as_str());
        }
    }

    /// Moves the upstream body into the spool (and the store), then checks
    /// it, commits it, and releases the final bytes.
    async fn pump(
        self: Arc<Self>,
        flight: Arc<Flight>,
        key: Key,
        request: ModuleRequest,
        source: String,
        resp: Response<Body>,
        keep: Option<watch::Receiver<Progress>>,
    ) {
        let outcome = self.pump_body(&flight, &key, &request, &source, resp).await;
        if let Err(e) = outcome {
            flight.set(Progress::Failed(e));
        }
        self.land(&key, &flight);
        drop(keep);
    }

    async fn pump_body(
        &self,
        flight: &Arc<Flight>,
        key: &Key,
        request: &ModuleRequest,
        source: &str,
        resp: Response<Body>,
    ) -> Result<(), Error> {
        use tokio::io::AsyncWriteExt;
        let (parts, mut body) = resp.into_parts();
        let length = declared_length(&parts.headers);
        // Cut short, it would look whole: kept only when a known hash
        // vouches for it.
        let unframed = parts.extensions.get::<Unframed>().is_some();
        // Read back from the store: checked and kept already.
        let stored = parts.extensions.get::<AlreadyStored>().is_some();
        // Judged whole before it was served (small files): not again.
        let vetted = parts.extensions.get::<Vetted>().cloned();
        let room = stored || self.make_room(flight, length);
        let mut spool = Spool::create(flight.spool())
            .await
            .map_err(|e| Error::Internal(format!("spool {}: {e}", flight.spool().display())))?;
        flight.set(Progress::Body {
            head: Head {
                status: parts.status,
                // What a hit of this object will say, not what this mirror
                // said (`application/octet-stream` for a zip, say).
                content_type: Some(HeaderValue::from_static(content_type(request))),
                length,
            },
            written: 0,
            done: false,
        });
        let mut writer = match (stored, room) {
            (true, _) => None,
            (false, false) => {
                tracing::warn!(
                    key = key.as_str(),
                    backend = self.store.backend(),
                    length,
                    "the cache's disk is full; serving without caching"
                );
                None
            }
            (false, true) => match self.store.writer(key).await {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(key = key.as_str(), error = %e, "cannot store; serving without caching");
                    None
                }
            },
        };
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            if flight.readers() == 0 {
                return Err(Error::Upstream {
                    target: source.to_owned(),
                    reason: "every client went away; the fetch was cancelled".into(),
                });
            }
            let frame = frame.map_err(|e| Error::Upstream {
                target: source.to_owned(),
                reason: format!(
                    "the body failed after {written} bytes: {}",
                    crate::upstream::pool::failure(e.as_ref())
                ),
            })?;
            let Ok(data) = frame.into_data() else { continue };
            if let Err(e) = spool_write(&mut spool, &data).await {
                // The disk filled up under way: the cache's copy goes, and
                // its space with it, so the client's copy can go on.
                if !out_of_room(&e) || writer.is_none() {
                    return Err(Error::Internal(format!("spool write: {e}")));
                }
                tracing::warn!(key = key.as_str(), error = %e, "the cache's disk is full; serving without caching");
                writer = None;
                respool(&mut spool, written, &data)
                    .await
                    .map_err(|e| Error::Internal(format!("spool write: {e}")))?;
            }
            if let Some(w) = writer.as_mut() {
                if let Err(e) = w.write(data.clone()).await {
                    tracing::warn!(key = key.as_str(), error = %e, "cache write failed; serving without caching");
                    writer = None;
                }
            }
            written += data.len() as u64;
            flight.wrote(data.len() as u64);
        }
        spool
            .flush()
            .await
            .map_err(|e| Error::Internal(format!("spool flush: {e}")))?;
        if length.is_some_and(|len| len != written) {
            return Err(Error::Upstream {
                target: source.to_owned(),
                reason: format!("the body ended after {written} of {} bytes", length.unwrap_or_default()),
            });
        }
        if stored {
            // Checked when it was stored.
        } else if let Some(subject) = Subject::of(request) {
            // With no database, still nothing that go would refuse.
            let verdict = match (self.check.load_full(), vetted.and_then(|v| v.verdict_for(written))) {
                (Some(_), Some(verdict)) => Ok(verdict),
                (Some(check), None) => check.check(&subject, flight.spool(), source, !unframed).await,
                (None, _) => check_well_formed(&subject, flight.spool(), source)
                    .await
                    .map(|()| match unframed {
                        true => Verdict::Unverifiable(UNFRAMED.into()),
                        false => Verdict::Verified,
                    }),
            };
            match verdict {
                Ok(Verdict::Verified) => {}
                Ok(Verdict::Unverifiable(why)) => {
                    tracing::warn!(key = key.as_str(), reason = %why, "cannot verify against the checksum database; served but not cached");
                    writer = None;
                }
                Err(e) => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(key = key.as_str(), error = %e, "refused: the content check failed");
                    return Err(e);
                }
            }
        } else if matches!(request, ModuleRequest::Sumdb { .. }) {
            // Kept for good: a 200 that is not a lookup or tile at all (a
            // login page, a cut-short tile) must not be.
            if let Err(why) = check_sumdb_shape(request, key.as_str(), flight.spool()).await {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                let e = Error::BadAnswer {
                    target: source.to_owned(),
                    reason: format!("{}: {why}; not served complete and not cached", request.kind()),
                };
                tracing::warn!(key = key.as_str(), error = %e, "refused: not a checksum-database answer");
                return Err(e);
            }
            if unframed && writer.take().is_some() {
                tracing::warn!(key = key.as_str(), reason = UNFRAMED, "served but not cached");
            }
        } else if unframed && writer.take().is_some() {
            tracing::warn!(key = key.as_str(), reason = UNFRAMED, "served but not cached");
        }
        if let Some(w) = writer {
            match w.commit().await {
                Err(e) => tracing::warn!(key = key.as_str(), error = %e, "cache commit failed; served without caching"),
                Ok(_) => self.keep_resolved_info(key, request, flight.spool()).await,
            }
        }
        flight.finish();
        Ok(())
    }
}

impl ModuleCache {
    /// An `@latest` or a query's `.info` (`@v/main.info`) names the
    /// canonical version it resolved to, and go keeps that answer as the
    /// version's own `.info`, never asking for `@v/VERSION.info`: it is kept
    /// under that name too (unless there is one), so a build that needs the
    /// version's `.info` (a fresh module cache, `go mod download`) finds it
    /// when every upstream is down. A version's `.info` never changes.
    async fn keep_resolved_info(&self, key: &Key, request: &ModuleRequest, answer: &std::path::Path) {
        let module = match request {
            ModuleRequest::Latest { module } => module,
            ModuleRequest::Info { module, version } if !is_canonical(version) => module,
            _ => return,
        };
        let Ok(bytes) = tokio::fs::read(answer).await else {
            return;
        };
        // The version as go reads it, and only an answer go would take as
        // that version's own `.info`.
        let Some(version) = crate::modules::shape::info_version(&bytes) else {
            return;
        };
        let own = ModuleRequest::Info {
            module: module.clone(),
            version,
        };
        let Ok(own) = Key::for_request(&own) else { return };
        let own = if key.is_private() { own.in_private() } else { own };
        if !matches!(self.store.get(&own).await, Ok(None)) {
            return;
        }
        let kept = async {
            let mut w = self.store.writer(&own).await?;
            w.write(Bytes::from(bytes)).await?;
            w.commit().await
        };
        match kept.await {
            Ok(_) => tracing::debug!(
                key = own.as_str(),
                from = key.as_str(),
                "kept as the version's own .info"
            ),
            Err(e) => tracing::debug!(key = own.as_str(), error = %e, "cannot keep as the version's own .info"),
        }
    }
}

/// Writes `data` again at `whole`, the length the spool had before a
/// write of it failed partway.
/// The cache copy's space comes back once its last write in flight ends,
/// so a few tries, a little apart.
async fn respool(spool: &mut tokio::fs::File, whole: u64, data: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncSeekExt;
    let mut tries = 0;
    loop {
        spool.set_len(whole).await?;
        spool.seek(std::io::SeekFrom::Start(whole)).await?;
        match spool_write(spool, data).await {
            Err(e) if out_of_room(&e) && tries < 3 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            done => return done,
        }
    }
}

/// A write refused for want of room: the disk is full, or the user's quota.
fn out_of_room(e: &std::io::Error) -> bool {
    // EDQUOT, whose ErrorKind (QuotaExceeded) is above the MSRV.
    const EDQUOT: i32 = 122;
    e.kind() == std::io::ErrorKind::StorageFull || (cfg!(target_os = "linux") && e.raw_os_error() == Some(EDQUOT))
}

/// Settles the leader's fetch: a failure or a 404 is published at once; a
/// body is pumped by a task of its own. If the leader goes away before it
/// settles, its followers are told, not left waiting.
struct LeaderGuard<'c> {
    cache: &'c Arc<ModuleCache>,
    key: &'c Key,
    flight: &'c Arc<Flight>,
    armed: bool,
}

impl LeaderGuard<'_> {
    async fn settle(
        mut self,
        result: Result<Response<Body>, Error>,
        source: String,
        request: ModuleRequest,
        key: Key,
        negative_key: String,
        keep: Option<watch::Receiver<Progress>>,
    ) {
        self.armed = false;
        let resp = match result {
            Err(e) => {
                self.flight.set(Progress::Failed(e));
                self.cache.land(&key, self.flight);
                return;
            }
            Ok(resp) => resp,
        };
        let status = resp.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            let answer = negative_answer(resp).await;
            self.cache.negative.insert(negative_key, answer.clone());
            self.flight.set(Progress::Answer {
                status: answer.status,
                content_type: answer.content_type,
                body: answer.body,
            });
            self.cache.land(&key, self.flight);
            return;
        }
        tokio::spawn(
            self.cache
                .clone()
                .pump(self.flight.clone(), key, request, source, resp, keep),
        );
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.flight.set(Progress::Failed(Error::Internal(
                "the request that was fetching this went away".into(),
            )));
            self.cache.land(self.key, self.flight);
        }
    }
}

impl NegativeAnswer {
    fn response(&self) -> Response<Body> {
        let mut resp = Response::new(crate::core::body::full(self.body.clone()));
        *resp.status_mut() = self.status;
        if let Some(ct) = &self.content_type {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        resp
    }
}

/// A 404/410, with at most [`MAX_NEGATIVE_BODY`] of its body.
async fn negative_answer(resp: Response<Body>) -> NegativeAnswer {
    let (parts, mut body) = resp.into_parts();
    let mut bytes = BytesMut::new();
    let read = timer::timeout(Duration::from_secs(5), async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                let room = MAX_NEGATIVE_BODY.saturating_sub(bytes.len());
                bytes.extend_from_slice(&data[..data.len().min(room)]);
                if room <= data.len() {
                    break;
                }
            }
        }
    });
    let _ = read.await;
    NegativeAnswer {
        status: parts.status,
        content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
        body: bytes.freeze(),
    }
}

/// The answer with its `x-cache` header.
fn tagged(result: Result<Response<Body>, Error>, source: Option<String>, status: CacheStatus) -> Cached {
    let result = result.map(|mut resp| {
        resp.headers_mut()
            .insert("x-cache", HeaderValue::from_static(status.as_str()));
        resp
    });
    Cached { result, source, status }
}

/// A cache hit as a response, streaming the stored object.
fn hit_response(hit: crate::cache::CachedObject, request: &ModuleRequest) -> Response<Body> {
    let size = hit.size;
    let stream = hit
        .into_stream()
        .map_ok(Frame::data)
        .map_err(|e| -> BoxError { Box::new(e) });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(request)));
    resp
}

/// The Content-Type a GOPROXY serves each file with.
pub fn content_type(request: &ModuleRequest) -> &'static str {
    match request {
        ModuleRequest::Info { .. } | ModuleRequest::Latest { .. } => "application/json",
        ModuleRequest::Zip { .. } => "application/zip",
        _ => "text/plain; charset=utf-8",
    }
}

/// The key of a cacheable request (under `private/` for a private
/// module) and how long it stays fresh; `None` for what is never cached
/// (sumdb `supported`).
fn cache_key(request: &ModuleRequest, rel_path: &str, private: bool) -> Option<(Key, Lifetime)> {
    let lifetime = match request {
        ModuleRequest::Mod { .. } | ModuleRequest::Zip { .. } => Lifetime::Forever,
        ModuleRequest::Info { version, .. } if is_canonical(version) => Lifetime::Forever,
        ModuleRequest::Info { .. } | ModuleRequest::List { .. } | ModuleRequest::Latest { .. } => Lifetime::Ttl,
        ModuleRequest::Sumdb { kind, .. } => match kind {
            SumdbKind::Supported => return None,
            SumdbKind::Latest => Lifetime::Ttl,
            SumdbKind::Lookup { .. } | SumdbKind::Tile => Lifetime::Forever,
        },
    };
    if let ModuleRequest::Mod { version, .. } | ModuleRequest::Zip { version, .. } = request {
        if !is_canonical(version) {
            return None;
        }
    }
    let key = match request {
        ModuleRequest::Sumdb { db, .. } => {
            let prefix = format!("/sumdb/{db}/");
            Key::sumdb(db, rel_path.strip_prefix(&prefix)?).ok()?
        }
        _ if private => Key::for_request(request).ok()?.in_private(),
        _ => Key::for_request(request).ok()?,
    };
    Some((key, lifetime))
}

/// Where the cache keeps its own small state (first-seen hashes, the
/// verified sumdb tree): beside a directory cache, else in the state dir.
pub fn state_dir_for(settings: &CacheSettings) -> Option<PathBuf> {
    match &settings.location {
        crate::config::CacheLocation::Dir { path, .. } => Some(path.join(".modgate")),
        crate::config::CacheLocation::Url(url) => {
            let id = crate::tls::chain::sha256_hex(url.to_string().as_bytes());
            Some(crate::config::paths::state_dir().join(format!("cache-{}", &id[..16])))
        }
        crate::config::CacheLocation::Off { .. } => None,
    }
}
