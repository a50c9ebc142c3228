//! The fall-through loop: a mirror list tried in order, with GOPROXY
//! semantics (`,` moves on after 404/410, `|` after any failure, `off`
//! stops). Each entry is a [`ModuleSource`] from the [`SourceSet`].
//!
//! A module proxy that is down ([`health`](crate::modules::health)) is not
//! asked: it fails at once, as if it had failed, so the separator after it
//! decides as for any failure. After `|` the list moves on; after `,` (or
//! as the last entry) the list ends with a 502 naming the mirror and when
//! it will be tried again (its last error, which names another request,
//! is logged and shown on the admin page, not sent to this client). A down
//! mirror never turns into "not found".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use http::Response;

use crate::config::mirrors::MirrorTable;
use crate::core::body::Body;
use crate::core::duration::fmt_duration;
use crate::core::error::Error;
use crate::modules::dir_source::DirSource;
use crate::modules::health::{Admission, Health, State, Status};
use crate::modules::proxy_source::{OriginSource, ProxySource};
use crate::modules::shape;
use crate::modules::source::{Answer, ModuleSource, SourceRequest};
use crate::modules::started;
use crate::policy::Policy;
use crate::policy::mirrors::{FallThrough, Mirror, MirrorList};
use crate::policy::rule::Action;
use crate::telemetry::metrics::FallReason;
use crate::telemetry::sink::Telemetry;
use crate::upstream::pool::Clients;

/// The source behind every mirror-list entry of the policy, built once,
/// with each mirror's settings and the health of every mirror.
pub struct SourceSet {
    by_entry: HashMap<Mirror, Arc<dyn ModuleSource>>,
    /// Per-mirror timeouts and health thresholds.
    settings: MirrorTable,
    /// Which mirrors are down; outlives config reloads.
    health: Arc<Health>,
    /// Where upstream latency and fall-through are counted, when serving.
    metrics: Option<Arc<Telemetry>>,
}

impl SourceSet {
    /// Sources for every entry of every `mirror` rule in `policy`, each
    /// module proxy with its `[mirror]` settings (its own connect timeout
    /// and credentials), its health kept in `health`.
    pub fn new(policy: &Policy, mirrors: &MirrorTable, clients: &Clients, health: Arc<Health>) -> SourceSet {
        let mut by_entry: HashMap<Mirror, Arc<dyn ModuleSource>> = HashMap::new();
        // `direct` is always there: an intercepted `direct` module request
        // is carried out as a one-entry list.
        by_entry.insert(Mirror::Direct, Arc::new(OriginSource::new(clients.clone())));
        let entries = policy.rules.iter().flat_map(|rule| match &rule.action {
            Action::Mirror { mirrors } => mirrors.entries.as_slice(),
            _ => &[],
        });
        for entry in entries {
            if by_entry.contains_key(&entry.mirror) {
                continue;
            }
            let source: Arc<dyn ModuleSource> = match &entry.mirror {
                Mirror::Proxy(base) => {
                    let settings = mirrors.get(base);
                    let clients = match settings.connect {
                        Some(timeout) => clients.with_connect_timeout(timeout),
                        None => clients.clone(),
                    };
                    let source = ProxySource::new(base.clone(), clients);
                    Arc::new(match &settings.login {
                        Some(login) => source.with_login(&login.credential),
                        None => source,
                    })
                }
                Mirror::Direct => Arc::new(OriginSource::new(clients.clone())),
                Mirror::Dir(dir) => Arc::new(DirSource::new(dir.clone())),
                Mirror::Off => Arc::new(Off),
            };
            by_entry.insert(entry.mirror.clone(), source);
        }
        SourceSet {
            by_entry,
            settings: mirrors.clone(),
            health,
            metrics: None,
        }
    }

    /// The same sources, with each fetch's latency and each fall-through
    /// counted in `telemetry`.
    pub fn counted_in(self, telemetry: Arc<Telemetry>) -> SourceSet {
        SourceSet {
            metrics: Some(telemetry),
            ..self
        }
    }

    /// The health of every mirror.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The status of every module proxy of the policy's lists (and of any
    /// a reload removed while it was failing), by URL.
    pub fn statuses(&self) -> Vec<Status> {
        let mut all = self.health.statuses();
        for mirror in self.by_entry.keys() {
            if let Mirror::Proxy(url) = mirror {
                if !all.iter().any(|s| &s.mirror == url) {
                    all.push(self.health.status(url));
                }
            }
        }
        all.sort_by(|a, b| a.mirror.cmp(&b.mirror));
        all
    }

    /// The states of `list`'s module proxies that are not up, for the
    /// access event's `mirror_state`: `None` when all are up.
    pub fn unhealthy_in(&self, list: &MirrorList) -> Option<String> {
        let states: Vec<String> = list
            .entries
            .iter()
            .filter_map(|e| match &e.mirror {
                Mirror::Proxy(url) => Some(self.health.status(url)),
                _ => None,
            })
            .filter(|s| s.state != State::Up)
            .map(|s| s.to_string())
            .collect();
        (!states.is_empty()).then(|| states.join("; "))
    }

    /// Asks `source` (the entry named `name`), timing it. A `.info` or
    /// `@latest` it answers is read and checked ([`shape`]); errors name
    /// the upstream as `shown`.
    async fn ask(&self, name: &str, shown: &str, source: &dyn ModuleSource, req: SourceRequest<'_>) -> Answer {
        let started = Instant::now();
        let answer = match source.fetch(req).await {
            Answer::Found(resp) if !req.head => {
                let checked = match started::started(resp, shown, req.header_timeout, req.idle_timeout).await {
                    Ok(resp) => shape::checked(req.request, resp, shown, req.idle_timeout, req.content).await,
                    Err(e) => Err(e),
                };
                match checked {
                    Ok(resp) => Answer::Found(resp),
                    Err(e) => Answer::Failed(e),
                }
            }
            answer => answer,
        };
        if let Some(t) = &self.metrics {
            t.metrics.observe_fetch(name, answer.outcome(), started.elapsed());
        }
        answer
    }

    /// Asks a module proxy, unless it is down; its answer is noted in its
    /// health.
    /// Also says whether it was skipped.
    async fn ask_mirror(&self, url: &str, source: &dyn ModuleSource, mut req: SourceRequest<'_>) -> (Answer, bool) {
        let ticket = match self.health.admit(url) {
            Admission::Go => None,
            Admission::Probe(ticket) => Some(ticket),
            Admission::Skip(status) => {
                let retry = status.retry_in.map_or_else(
                    || "being probed".to_owned(),
                    |r| format!("retried in {}", fmt_duration(r)),
                );
                // Its last error stays in the log and on the admin page: it
                // names another client's request, perhaps a private module.
                let down = Error::Upstream {
                    target: url.to_owned(),
                    reason: format!(
                        "skipped: marked down after {} failures in a row ({retry}); its last error is in modgate's log and on its admin page",
                        status.fails
                    ),
                };
                return (Answer::Failed(down), true);
            }
        };
        let settings = self.settings.get(url);
        if let Some(first_byte) = settings.first_byte {
            req.header_timeout = first_byte;
        }
        let answer = self.ask(url, url, source, req).await;
        let mut told = true;
        match &answer {
            Answer::Found(_) | Answer::NotFound(_) => self.health.succeeded(url),
            // modgate's own limit (no upstream connection slot) says
            // nothing about the mirror: its health stays as it was, and a
            // probe is left to the next request.
            Answer::Failed(Error::Overloaded(_)) => told = false,
            Answer::Failed(e) if e.is_outage() => {
                self.health.failed(url, settings, &e.to_string());
            }
            // A refusal of this one request (401, a redirect the policy
            // refuses) says nothing about the mirror's health.
            Answer::Failed(_) => self.health.succeeded(url),
        }
        if let Some(ticket) = ticket.filter(|_| told) {
            ticket.reported();
        }
        (answer, false)
    }

    fn fell_through(&self, name: &str, reason: FallReason) {
        if let Some(t) = &self.metrics {
            t.metrics.fell_through(name, reason);
        }
    }

    fn get(&self, mirror: &Mirror) -> Option<&Arc<dyn ModuleSource>> {
        self.by_entry.get(mirror)
    }
}

/// `off`: module downloads are disabled here.
struct Off;

impl ModuleSource for Off {
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            Answer::Failed(Error::Blocked {
                rule: req.rule.to_owned(),
                reason: format!("module downloads are off for {}", req.what()),
            })
        })
    }
}

/// The list `direct`: the original host, alone.
pub fn direct_only() -> &'static MirrorList {
    static DIRECT: std::sync::OnceLock<MirrorList> = std::sync::OnceLock::new();
    DIRECT.get_or_init(|| MirrorList {
        entries: vec![crate::policy::mirrors::MirrorEntry {
            mirror: Mirror::Direct,
            then: FallThrough::OnNotFound,
        }],
    })
}

/// Tries the entries of `list` in order and returns the answer to stream to
/// the client, and the entry that gave it.
///
/// When every entry fails, the answer is the one go itself would report
/// (cmd/go's `tryProxies`): a failure of `direct` first, then the last
/// module proxy's failure other than "not found", and a 404 or 410 only
/// when nothing else went wrong. So `A|B` with A down and B not having the
/// module is A's error, never a 404 that would send go on to its own next
/// GOPROXY entry (nor be cached as a fact).
pub async fn fetch(
    list: &MirrorList,
    sources: &SourceSet,
    req: SourceRequest<'_>,
) -> (Result<Response<Body>, Error>, String) {
    let last = list.entries.len().saturating_sub(1);
    // What go would report if nothing later does better, by its rank.
    let mut best: Option<Ranked> = None;
    for (i, entry) in list.entries.iter().enumerate() {
        let name = entry.mirror.to_string();
        let Some(source) = sources.get(&entry.mirror) else {
            return (Err(Error::Internal(format!("no source for mirror {name}"))), name);
        };
        let (answer, skipped) = match &entry.mirror {
            Mirror::Proxy(url) => sources.ask_mirror(url, source.as_ref(), req).await,
            // `direct` is the original host: errors name it, not "direct".
            Mirror::Direct => {
                let shown = req.origin.map_or(name.as_str(), |o| origin_of(o.url));
                (sources.ask(&name, shown, source.as_ref(), req).await, false)
            }
            _ => (sources.ask(&name, &name, source.as_ref(), req).await, false),
        };
        let direct = entry.mirror == Mirror::Direct;
        let failed = match answer {
            Answer::Found(resp) => return (Ok(resp), name),
            Answer::NotFound(resp) => Ranked::NotFound { resp, name, direct },
            Answer::Failed(e) => Ranked::Failed {
                e,
                name,
                direct,
                skipped,
            },
        };
        let goes_on = match &failed {
            Ranked::NotFound { .. } => true,
            Ranked::Failed { .. } => entry.then == FallThrough::OnAnyError,
        };
        if i < last && goes_on {
            match &failed {
                Ranked::NotFound { name, .. } => sources.fell_through(name, FallReason::NotFound),
                Ranked::Failed { e, name, skipped, .. } => {
                    let reason = if *skipped { FallReason::Down } else { FallReason::Error };
                    sources.fell_through(name, reason);
                    // Quoted: the error may quote what the mirror sent.
                    tracing::info!(rule = req.rule, mirror = %name, error = e.to_string(), "mirror failed; trying the next (|)");
                }
            }
        }
        best = Some(Ranked::better(best, failed));
        if i == last || !goes_on {
            break;
        }
    }
    match best {
        Some(Ranked::NotFound { resp, name, .. }) => (Ok(resp), name),
        Some(Ranked::Failed { e, name, .. }) => (Err(e), name),
        None => (Err(Error::Internal("empty mirror list".into())), String::new()),
    }
}

/// An entry's answer other than found, as go's `tryProxies` ranks them
/// when every entry fails: `direct`'s answer (a not-found too) first, then
/// a module proxy's failure other than not-found, then a not-found; a
/// later one of the same rank replaces an earlier one.
enum Ranked {
    NotFound {
        resp: Response<Body>,
        name: String,
        direct: bool,
    },
    Failed {
        e: Error,
        name: String,
        direct: bool,
        skipped: bool,
    },
}

impl Ranked {
    fn rank(&self) -> u8 {
        match self {
            Ranked::NotFound { direct: true, .. } | Ranked::Failed { direct: true, .. } => 2,
            Ranked::Failed { .. } => 1,
            Ranked::NotFound { .. } => 0,
        }
    }

    /// The one of `kept` and `later` go would report.
    fn better(kept: Option<Ranked>, later: Ranked) -> Ranked {
        match kept {
            // A `direct` answer always takes the place (go: bestErr = err).
            Some(kept) if later.rank() < 2 && kept.rank() > later.rank() => kept,
            _ => later,
        }
    }
}

/// `scheme://host[:port]` of `url`, for naming an original host in errors.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::host::Authority;
    use crate::modules::source::RedirectPolicy;

    /// A source whose answer is scripted: `found`, `404`, `fail` (an
    /// outage) or `busy` (modgate's own upstream limit).
    struct Scripted(&'static str);

    impl ModuleSource for Scripted {
        fn fetch<'a>(&'a self, _req: SourceRequest<'a>) -> BoxFuture<'a, Answer> {
            let status = |code: u16| {
                Response::builder()
                    .status(code)
                    .body(crate::core::body::empty())
                    .unwrap()
            };
            let answer = match self.0 {
                "found" => Answer::Found(status(200)),
                "404" => Answer::NotFound(status(404)),
                "busy" => Answer::Failed(Error::Overloaded("no slot".into())),
                _ => Answer::Failed(Error::Upstream {
                    target: "x".into(),
                    reason: "refused".into(),
                }),
            };
            Box::pin(async move { answer })
        }
    }

    struct Anywhere;

    impl RedirectPolicy for Anywhere {
        fn admit<'a>(
            &'a self,
            _dest: &'a Authority,
        ) -> BoxFuture<'a, Result<Option<Vec<std::net::SocketAddr>>, Error>> {
            Box::pin(async { Ok(None) })
        }
    }

    /// `list` (`http://a|direct`...), each entry answering as `script`
    /// says, through `fetch`: the status served or the entry whose error
    /// is the answer.
    async fn outcome(list: &str, script: &[(&str, &'static str)], health: &Arc<Health>) -> String {
        let list: MirrorList = list.parse().unwrap();
        let by_entry = script
            .iter()
            .map(|(entry, answer)| {
                let mirror = match *entry {
                    "direct" => Mirror::Direct,
                    url => Mirror::Proxy(url.to_owned()),
                };
                (mirror, Arc::new(Scripted(answer)) as Arc<dyn ModuleSource>)
            })
            .collect();
        let sources = SourceSet {
            by_entry,
            settings: MirrorTable::default(),
            health: health.clone(),
            metrics: None,
        };
        let request = crate::gomod::classify::classify_proxy_path("/example.com/m/@v/list")
            .unwrap()
            .unwrap();
        let req = SourceRequest {
            request: &request,
            rel_path: "/example.com/m/@v/list",
            origin: None,
            redirects: &Anywhere,
            rule: "r",
            header_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            via: crate::policy::parent::Via::Direct,
            head: false,
            content: None,
        };
        match fetch(&list, &sources, req).await {
            (Ok(resp), name) => format!("{} from {name}", resp.status().as_u16()),
            (Err(_), name) => format!("error of {name}"),
        }
    }

    /// What go's `tryProxies` reports when no entry has the file: `direct`'s
    /// answer first, then a proxy's failure other than not-found (the
    /// last), then a not-found.
    #[tokio::test]
    async fn when_every_entry_fails_the_answer_is_the_one_go_would_report() {
        let (a, b) = ("http://a.test", "http://b.test");
        type Case<'a> = (&'a str, &'a [(&'a str, &'static str)], &'a str);
        let cases: &[Case<'_>] = &[
            (
                "http://a.test|http://b.test",
                &[(a, "fail"), (b, "404")],
                "error of http://a.test",
            ),
            (
                "http://a.test|http://b.test",
                &[(a, "404"), (b, "fail")],
                "error of http://b.test",
            ),
            (
                "http://a.test,http://b.test",
                &[(a, "404"), (b, "404")],
                "404 from http://b.test",
            ),
            (
                "http://a.test|http://b.test",
                &[(a, "fail"), (b, "fail")],
                "error of http://b.test",
            ),
            (
                "http://a.test|http://b.test",
                &[(a, "fail"), (b, "found")],
                "200 from http://b.test",
            ),
            // `,` stops at a failure, which outranks an earlier not-found.
            (
                "http://a.test,http://b.test,direct",
                &[(a, "404"), (b, "fail"), ("direct", "found")],
                "error of http://b.test",
            ),
            // `direct`'s answer outranks every proxy's, before or after it.
            (
                "http://a.test|direct",
                &[(a, "fail"), ("direct", "404")],
                "404 from direct",
            ),
            (
                "direct|http://a.test",
                &[("direct", "fail"), (a, "fail")],
                "error of direct",
            ),
            (
                "direct,http://a.test",
                &[("direct", "404"), (a, "fail")],
                "404 from direct",
            ),
            (
                "direct,http://a.test",
                &[("direct", "404"), (a, "404")],
                "404 from direct",
            ),
            (
                "direct,http://a.test",
                &[("direct", "404"), (a, "found")],
                "200 from http://a.test",
            ),
        ];
        for (list, script, want) in cases {
            let got = outcome(list, script, &Health::new()).await;
            assert_eq!(&got, want, "{list} {script:?}");
        }
    }

    /// modgate's own upstream limit says nothing about a mirror: its
    /// health is left as it was, where an outage counts against it.
    #[tokio::test]
    async fn a_request_refused_by_modgates_own_limit_leaves_the_mirrors_health_alone() {
        let health = Health::new();
        let a = "http://a.test";
        outcome(a, &[(a, "fail")], &health).await;
        assert_eq!(health.status(a).fails, 1);
        outcome(a, &[(a, "busy")], &health).await;
        assert_eq!(health.status(a).fails, 1, "not reset to up");
        outcome(a, &[(a, "found")], &health).await;
        assert_eq!(health.status(a).fails, 0);
    }

    #[test]
    fn an_original_url_is_named_by_its_origin() {
        assert_eq!(
            origin_of("https://proxy.golang.org/example.com/m/@v/list"),
            "https://proxy.golang.org"
        );
        assert_eq!(origin_of("https://h.test:8443"), "https://h.test:8443");
        assert_eq!(super::origin_of("no-scheme/x"), "no-scheme");
    }
}
