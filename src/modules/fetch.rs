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
        match &answer {
            Answer::Found(_) | Answer::NotFound(_) => self.health.succeeded(url),
            Answer::Failed(e) if e.is_outage() => {
                self.health.failed(url, settings, &e.to_string());
            }
            // A refusal of this one request (401, a redirect the policy
            // refuses) says nothing about the mirror's health.
            Answer::Failed(_) => self.health.succeeded(url),
        }
        if let Some(ticket) = ticket {
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
    // The failure go would rank above a later "not found", its entry, and
    // whether that was `direct`.
    let mut outranks: Option<(Error, String, bool)> = None;
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
        match answer {
            Answer::Found(resp) => return (Ok(resp), name),
            // A `direct` answer outranks every earlier failure.
            Answer::NotFound(resp) if i == last && direct => return (Ok(resp), name),
            Answer::NotFound(resp) if i == last => {
                return match outranks {
                    Some((e, failed, _)) => (Err(e), failed),
                    None => (Ok(resp), name),
                };
            }
            Answer::NotFound(_) => sources.fell_through(&name, FallReason::NotFound),
            Answer::Failed(e) if i < last && entry.then == FallThrough::OnAnyError => {
                let reason = if skipped { FallReason::Down } else { FallReason::Error };
                sources.fell_through(&name, reason);
                // Quoted: the error may quote what the mirror sent.
                tracing::info!(rule = req.rule, mirror = %name, error = e.to_string(), "mirror failed; trying the next (|)");
                // A module proxy's failure does not replace `direct`'s.
                if direct || !outranks.as_ref().is_some_and(|(_, _, by_direct)| *by_direct) {
                    outranks = Some((e, name, direct));
                }
            }
            Answer::Failed(e) => return (Err(e), name),
        }
    }
    (Err(Error::Internal("empty mirror list".into())), String::new())
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
    use super::origin_of;

    #[test]
    fn an_original_url_is_named_by_its_origin() {
        assert_eq!(
            origin_of("https://proxy.golang.org/example.com/m/@v/list"),
            "https://proxy.golang.org"
        );
        assert_eq!(origin_of("https://h.test:8443"), "https://h.test:8443");
        assert_eq!(origin_of("no-scheme/x"), "no-scheme");
    }
}
