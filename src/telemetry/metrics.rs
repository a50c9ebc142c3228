//! The Prometheus metrics of one running proxy, in an explicit registry
//! (prometheus-client; no global state).
//!
//! Requests and tunnels are counted from their access event
//! ([`Metrics::observe_access`]), so every request is counted once, with
//! the labels the event carries. Every label has a bounded set of values:
//! actions, verdicts and cache results are fixed words; rules, mirrors and
//! sources come from the config; vendors from the list of known products;
//! statuses are HTTP codes. Module paths and client addresses never become
//! labels.
//!
//! What others keep (the module cache's counters) joins the registry as a
//! [`Collector`] read at each scrape.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::core::verdict::Verdict;
use crate::policy::plan::ActionTaken;
use crate::telemetry::access::{Access, CacheStatus};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `rule` label of a request no rule decided.
static NO_RULE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("-"));

/// Labels of `modgate_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    action: &'static str,
    rule: Arc<str>,
    status: Status,
    cache: &'static str,
}

/// Labels of `modgate_tunnels_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabels {
    action: &'static str,
    rule: Arc<str>,
    status: Status,
}

/// An HTTP status as a label value: its code, or `none` when no status was
/// sent (a request that failed before one).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Status(u16);

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        if (100..=599).contains(&self.0) {
            EncodeLabelValue::encode(&self.0, encoder)
        } else {
            EncodeLabelValue::encode(&"none", encoder)
        }
    }
}

/// Labels of `modgate_client_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    /// `in`: from clients (toward upstreams); `out`: to clients.
    direction: &'static str,
    /// `request` or `tunnel`.
    kind: &'static str,
}

/// Labels of `modgate_upstream_fetch_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    source: String,
    outcome: &'static str,
}

/// Labels of `modgate_mirror_fallthrough_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallLabels {
    mirror: String,
    reason: &'static str,
}

/// Labels of `modgate_verdicts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
    vendor: Cow<'static, str>,
}

/// Labels of `modgate_config_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Labels of `modgate_config_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigLabels {
    sha256: String,
}

/// Labels of `modgate_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// How an upstream fetch ended, for the latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// An answer with content (2xx, 3xx).
    Found,
    /// 404 or 410: an answer, not a failure.
    NotFound,
    /// Connect, TLS, timeout or 5xx.
    Error,
}

impl FetchOutcome {
    fn as_str(self) -> &'static str {
        match self {
            FetchOutcome::Found => "found",
            FetchOutcome::NotFound => "not_found",
            FetchOutcome::Error => "error",
        }
    }
}

/// Why a mirror list moved past an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallReason {
    /// 404/410 (`,` or `|`).
    NotFound,
    /// Any failure, after `|`.
    Error,
    /// Skipped without asking: the mirror is down.
    Down,
}

/// The metrics of one proxy, and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    /// `requests` series already looked up (see [`Seen`]).
    requests_seen: Seen,
    tunnels: Family<TunnelLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    /// `bytes` for requests and for tunnels, `in` and `out`, each looked
    /// up once (when first counted, so a series appears with its first use).
    request_bytes: [OnceLock<Counter>; 2],
    tunnel_bytes: [OnceLock<Counter>; 2],
    upstream: Family<UpstreamLabels, Histogram>,
    /// `upstream` for the source `direct`, by [`FetchOutcome`], each looked
    /// up once.
    direct_fetches: [OnceLock<Histogram>; 3],
    fallthrough: Family<FallLabels, Counter>,
    verdicts: Family<VerdictLabels, Counter>,
    /// `verdicts` without a vendor, by [`Verdict`], each looked up once.
    plain_verdicts: [OnceLock<Counter>; 3],
    reloads: Family<ResultLabels, Counter>,
    reload_ok: Gauge,
    config: Family<ConfigLabels, Gauge>,
    open_connections: Gauge,
    open_tunnels: Gauge,
}

/// The `requests` series of a [`SeenKey`].
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct SeenKey {
    /// The address of the rule's name: the same `Arc` for every request a
    /// rule decides under one config.
    rule: usize,
    action: ActionTaken,
    status: u16,
    cache: Option<CacheStatus>,
}

/// `requests` series already looked up, by a key that hashes a few
/// integers (with FNV: a few integers, in a set of bounded size, need no
/// SipHash) where the family's labels hash the rule's name and two more
/// strings. Each entry keeps its rule's name alive, so no other name can
/// take its address while the entry exists; the set is cleared when it
/// reaches [`Seen::MAX`] (a series per rule, action, status and cache
/// result, and more with each reload).
#[derive(Debug, Default)]
struct Seen(RwLock<HashMap<SeenKey, (Arc<str>, Counter), fnv::FnvBuildHasher>>);

impl Seen {
    const MAX: usize = 4096;

    /// Counts one for `key`, looking its series up with `create` the first
    /// time.
    fn inc(&self, key: SeenKey, rule: &Arc<str>, create: impl FnOnce() -> Counter) {
        if let Some((_, counter)) = self.0.read().ok().as_ref().and_then(|seen| seen.get(&key)) {
            counter.inc();
            return;
        }
        let counter = create();
        counter.inc();
        if let Ok(mut seen) = self.0.write() {
            if seen.len() >= Seen::MAX {
                seen.clear();
            }
            seen.insert(key, (rule.clone(), counter));
        }
    }
}

/// A [`Verdict`]'s slot in [`Metrics`]' `plain_verdicts`.
fn verdict_index(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Public => 0,
        Verdict::Intercepted => 1,
        Verdict::Untrusted => 2,
    }
}

/// Upstream latency buckets: 5 ms to about 82 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            requests_seen: Seen::default(),
            tunnels: Family::default(),
            bytes: Family::default(),
            request_bytes: Default::default(),
            tunnel_bytes: Default::default(),
            upstream: Family::new_with_constructor(latency_histogram),
            direct_fetches: Default::default(),
            fallthrough: Family::default(),
            verdicts: Family::default(),
            plain_verdicts: Default::default(),
            reloads: Family::default(),
            reload_ok: Gauge::default(),
            config: Family::default(),
            open_connections: Gauge::default(),
            open_tunnels: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "modgate_requests",
            "Requests (not tunnels) by action, rule, status and cache result",
            m.requests.clone(),
        );
        r.register(
            "modgate_tunnels",
            "CONNECT tunnels by action, rule and status (200: established)",
            m.tunnels.clone(),
        );
        r.register(
            "modgate_client_bytes",
            "Body and tunnel bytes: direction=in from clients toward upstreams, out to clients",
            m.bytes.clone(),
        );
        r.register(
            "modgate_upstream_fetch_duration_seconds",
            "Time to an upstream's response head, by source (mirror URL, direct, the sumdb URL) and outcome",
            m.upstream.clone(),
        );
        r.register(
            "modgate_mirror_fallthrough",
            "Times a mirror list moved past an entry, by entry and reason",
            m.fallthrough.clone(),
        );
        r.register(
            "modgate_verdicts",
            "Requests and tunnels by the verdict on their upstream chain and the interception product",
            m.verdicts.clone(),
        );
        r.register(
            "modgate_config_reloads",
            "Config reloads by result (ok, failed)",
            m.reloads.clone(),
        );
        r.register(
            "modgate_config_last_reload_successful",
            "1 when the last reload (or the start) loaded its config, 0 when it was refused",
            m.reload_ok.clone(),
        );
        r.register(
            "modgate_config_info",
            "The config in effect: the SHA-256 of its text",
            m.config.clone(),
        );
        r.register(
            "modgate_open_connections",
            "Client connections open now",
            m.open_connections.clone(),
        );
        r.register(
            "modgate_open_tunnels",
            "CONNECT tunnels open now",
            m.open_tunnels.clone(),
        );
        r.register(
            "modgate_build",
            "The modgate version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let started: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        started.set(unix_seconds(SystemTime::now()));
        r.register(
            "modgate_start_time_seconds",
            "When the process started, in seconds since the Unix epoch",
            started,
        );
        m.reload_ok.set(1);
        Metrics {
            registry: Mutex::new(registry),
            ..m
        }
    }

    /// Adds metrics read at each scrape (the module cache's).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register_collector(collector);
        }
    }

    /// The exposition text (OpenMetrics, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }

    /// Counts a finished request or tunnel from its access event.
    pub fn observe_access(&self, access: &Access) {
        let rule = access.rule.as_ref().unwrap_or(&NO_RULE);
        let status = Status(access.status);
        let action = access.action.as_str();
        let (kind, slots) = if access.method == "CONNECT" {
            self.tunnels
                .get_or_create(&TunnelLabels {
                    action,
                    rule: rule.clone(),
                    status,
                })
                .inc();
            ("tunnel", &self.tunnel_bytes)
        } else {
            let key = SeenKey {
                rule: Arc::as_ptr(rule).cast::<u8>() as usize,
                action: access.action,
                status: access.status,
                cache: access.cache,
            };
            self.requests_seen.inc(key, rule, || {
                self.requests
                    .get_or_create(&RequestLabels {
                        action,
                        rule: rule.clone(),
                        status,
                        cache: access.cache.map_or("none", CacheStatus::as_str),
                    })
                    .clone()
            });
            ("request", &self.request_bytes)
        };
        for (slot, direction, n) in [
            (&slots[0], "in", access.bytes_in.get()),
            (&slots[1], "out", access.bytes_out.get()),
        ] {
            slot.get_or_init(|| self.bytes.get_or_create(&BytesLabels { direction, kind }).clone())
                .inc_by(n);
        }
        match &access.judgement {
            None => {}
            Some(j) if j.vendor.is_none() => {
                self.plain_verdicts[verdict_index(j.verdict)]
                    .get_or_init(|| self.verdict(j.verdict, None))
                    .inc();
            }
            Some(j) => {
                self.verdict(j.verdict, j.vendor.as_deref()).inc();
            }
        }
    }

    /// The `verdicts` series of `verdict` and `vendor` (`none` without one).
    fn verdict(&self, verdict: Verdict, vendor: Option<&str>) -> Counter {
        let vendor = vendor.map_or(Cow::Borrowed("none"), |v| Cow::Owned(v.to_owned()));
        self.verdicts
            .get_or_create(&VerdictLabels {
                verdict: verdict.as_str(),
                vendor,
            })
            .clone()
    }

    /// Records how long `source` took to answer, and how it ended.
    pub fn observe_fetch(&self, source: &str, outcome: FetchOutcome, took: Duration) {
        if source == "direct" {
            self.direct_fetches[outcome as usize]
                .get_or_init(|| {
                    let labels = UpstreamLabels {
                        source: source.to_owned(),
                        outcome: outcome.as_str(),
                    };
                    self.upstream.get_or_create(&labels).clone()
                })
                .observe(took.as_secs_f64());
            return;
        }
        self.upstream
            .get_or_create(&UpstreamLabels {
                source: source.to_owned(),
                outcome: outcome.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a mirror list moving past `mirror`.
    pub fn fell_through(&self, mirror: &str, reason: FallReason) {
        let reason = match reason {
            FallReason::NotFound => "not_found",
            FallReason::Error => "error",
            FallReason::Down => "down",
        };
        self.fallthrough
            .get_or_create(&FallLabels {
                mirror: mirror.to_owned(),
                reason,
            })
            .inc();
    }

    /// Records a reload: `Some(sha256)` of the config now in effect when it
    /// was loaded, `None` when it was refused (the old one stays).
    pub fn reloaded(&self, loaded: Option<&str>) {
        match loaded {
            Some(sha256) => {
                self.reloads.get_or_create(&ResultLabels { result: "ok" }).inc();
                self.reload_ok.set(1);
                self.config_in_effect(sha256);
            }
            None => {
                self.reloads.get_or_create(&ResultLabels { result: "failed" }).inc();
                self.reload_ok.set(0);
            }
        }
    }

    /// Names the config in effect (one series at a time).
    pub fn config_in_effect(&self, sha256: &str) {
        self.config.clear();
        self.config
            .get_or_create(&ConfigLabels {
                sha256: sha256.to_owned(),
            })
            .set(1);
    }

    /// Counts an open client connection until the guard is dropped.
    pub fn open_connection(&self) -> OpenGuard {
        OpenGuard::new(self.open_connections.clone())
    }

    /// Counts an open tunnel until the guard is dropped.
    pub fn open_tunnel(&self) -> OpenGuard {
        OpenGuard::new(self.open_tunnels.clone())
    }
}

/// Seconds since the Unix epoch.
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One unit of an "open now" gauge, given back when dropped.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl OpenGuard {
    fn new(gauge: Gauge) -> OpenGuard {
        gauge.inc();
        OpenGuard(gauge)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::verdict::Judgement;

    fn request(rule: &Arc<str>, status: u16) -> Access {
        let mut a = Access::new("10.1.2.3:5555".parse().unwrap(), "GET", "https://x/");
        a.rule = Some(rule.clone());
        a.action = ActionTaken::Direct;
        a.status = status;
        a
    }

    #[test]
    fn each_request_counts_in_its_own_series() {
        let m = Metrics::new();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        // The same name from another config (another `Arc`) is the same series.
        let a_again: Arc<str> = "a".into();
        for (rule, status) in [(&a, 200), (&a, 200), (&b, 200), (&a, 404), (&a_again, 200)] {
            m.observe_access(&request(rule, status));
        }
        let mut judged = request(&b, 200);
        judged.judgement = Some(Judgement {
            verdict: Verdict::Public,
            vendor: None,
        });
        m.observe_access(&judged);
        m.observe_access(&judged);
        judged.judgement = Some(Judgement {
            verdict: Verdict::Intercepted,
            vendor: Some("Zscaler".into()),
        });
        m.observe_access(&judged);
        let text = m.encode();
        for line in [
            r#"modgate_requests_total{action="direct",rule="a",status="200",cache="none"} 3"#,
            r#"modgate_requests_total{action="direct",rule="a",status="404",cache="none"} 1"#,
            r#"modgate_requests_total{action="direct",rule="b",status="200",cache="none"} 4"#,
            r#"modgate_verdicts_total{verdict="public",vendor="none"} 2"#,
            r#"modgate_verdicts_total{verdict="intercepted",vendor="Zscaler"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn the_seen_series_stay_bounded() {
        let m = Metrics::new();
        let rule: Arc<str> = "r".into();
        for status in 0..(Seen::MAX as u16 + 10) {
            m.observe_access(&request(&rule, status));
        }
        m.observe_access(&request(&rule, 0));
        let seen = m.requests_seen.0.read().unwrap().len();
        assert!((1..=Seen::MAX).contains(&seen), "{seen}");
        assert!(
            m.encode()
                .contains(r#"modgate_requests_total{action="direct",rule="r",status="none",cache="none"} 2"#)
        );
    }

    #[test]
    fn an_access_event_counts_once_with_bounded_labels() {
        let m = Metrics::new();
        let mut a = Access::new("10.1.2.3:5555".parse().unwrap(), "GET", "/github.com/x/y/@v/list");
        a.rule = Some("modules".into());
        a.action = ActionTaken::Mirror;
        a.status = 200;
        a.cache = Some(CacheStatus::Hit);
        a.bytes_out.add(42);
        m.observe_access(&a);
        let text = m.encode();
        assert!(
            text.contains(r#"modgate_requests_total{action="mirror",rule="modules",status="200",cache="hit"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"modgate_client_bytes_total{direction="out",kind="request"} 42"#));
        assert!(!text.contains("10.1.2.3") && !text.contains("github.com/x/y"), "{text}");
        let _open = m.open_tunnel();
        assert!(m.encode().contains("modgate_open_tunnels 1"));
    }
}
