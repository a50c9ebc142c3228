//! The fall-through loop: a mirror list tried in order, with GOPROXY
//! semantics (`,` moves on after 404/410, `|` after any failure, `off`
//! stops). Each entry is a [`ModuleSource`] from the [`SourceSet`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use http::Response;

use crate::core::body::Body;
use crate::core::error::Error;
use crate::modules::dir_source::DirSource;
use crate::modules::proxy_source::{OriginSource, ProxySource};
use crate::modules::source::{Answer, ModuleSource, SourceRequest};
use crate::policy::Policy;
use crate::policy::mirrors::{FallThrough, Mirror, MirrorList};
use crate::policy::rule::Action;
use crate::telemetry::metrics::FallReason;
use crate::telemetry::sink::Telemetry;
use crate::upstream::pool::Clients;

/// The source behind every mirror-list entry of the policy, built once.
pub struct SourceSet {
    by_entry: HashMap<Mirror, Arc<dyn ModuleSource>>,
    /// Where upstream latency and fall-through are counted, when serving.
    metrics: Option<Arc<Telemetry>>,
}

impl SourceSet {
    /// Sources for every entry of every `mirror` rule in `policy`.
    pub fn new(policy: &Policy, clients: &Clients) -> SourceSet {
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
                Mirror::Proxy(base) => Arc::new(ProxySource::new(base.clone(), clients.clone())),
                Mirror::Direct => Arc::new(OriginSource::new(clients.clone())),
                Mirror::Dir(dir) => Arc::new(DirSource::new(dir.clone())),
                Mirror::Off => Arc::new(Off),
            };
            by_entry.insert(entry.mirror.clone(), source);
        }
        SourceSet {
            by_entry,
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

    /// Asks `source` (the entry named `name`), timing it.
    async fn ask(&self, name: &str, source: &dyn ModuleSource, req: SourceRequest<'_>) -> Answer {
        let started = Instant::now();
        let answer = source.fetch(req).await;
        if let Some(t) = &self.metrics {
            t.metrics.observe_fetch(name, answer.outcome(), started.elapsed());
        }
        answer
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
pub async fn fetch(
    list: &MirrorList,
    sources: &SourceSet,
    req: SourceRequest<'_>,
) -> (Result<Response<Body>, Error>, String) {
    let last = list.entries.len().saturating_sub(1);
    for (i, entry) in list.entries.iter().enumerate() {
        let name = entry.mirror.to_string();
        let Some(source) = sources.get(&entry.mirror) else {
            return (Err(Error::Internal(format!("no source for mirror {name}"))), name);
        };
        match sources.ask(&name, source.as_ref(), req).await {
            Answer::Found(resp) => return (Ok(resp), name),
            Answer::NotFound(resp) if i == last => return (Ok(resp), name),
            Answer::NotFound(_) => sources.fell_through(&name, FallReason::NotFound),
            Answer::Failed(e) if i < last && entry.then == FallThrough::OnAnyError => {
                sources.fell_through(&name, FallReason::Error);
                tracing::info!(rule = req.rule, mirror = %name, error = %e, "mirror failed; trying the next (|)");
            }
            Answer::Failed(e) => return (Err(e), name),
        }
    }
    (Err(Error::Internal("empty mirror list".into())), String::new())
}
