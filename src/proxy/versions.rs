//! Version rules applied to answers that name versions the plan could not
//! know beforehand: `@v/list`, `@latest`, and the `.info` of a query (a
//! branch or commit, such as `@v/master.info`).
//!
//! A request for one version (`.info`, `.mod`, `.zip` of a canonical
//! version) is planned with its version known, so a `block` rule with
//! `versions` refuses it before the cache or any upstream is asked. The
//! other three are answered first (from the cache or upstream) and then
//! screened here, on every answer, cached or not:
//!
//! - `@v/list`: each version the rules refuse is left out;
//! - `@latest`: when its version is refused, the highest allowed version
//!   of the (screened) list is answered instead, with its own `.info`
//!   (a release if there is one, as go's `latest` query prefers); with none
//!   allowed, a 404 with a `modgate:` line, so go moves on as it does for
//!   a module a proxy does not have;
//! - a query's `.info`: refused like the version it resolved to.
//!
//! Modules no `versions` rule can match are passed through untouched
//! (streamed, never buffered).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header;
use http::{Response, StatusCode};
use http_body_util::BodyExt;

use crate::core::body::{Body, full, text};
use crate::core::error::Error;
use crate::gomod::escape::encode_case;
use crate::gomod::request::ModuleRequest;
use crate::gomod::semver::{canonical, compare_go, is_canonical, is_pseudo, parse};
use crate::policy::mirrors::MirrorList;
use crate::policy::plan::{self, Door, NeedsAddress, Plan};
use crate::policy::rule::{Facts, Rule};
use crate::proxy::answer::{Original, answer};
use crate::proxy::context::Context;
use crate::telemetry::access::Access;

/// The largest list or `.info` read to screen it.
const MAX_SCREENED: usize = 4 << 20;

/// What screening needs: where the request came from, and how it was
/// answered, to ask again for a list or an `.info`.
pub struct Screen<'a> {
    /// The proxy.
    pub ctx: &'a Arc<Context>,
    /// The door the request came in by.
    pub door: Door,
    /// The client.
    pub src: IpAddr,
    /// The user who authenticated (`[auth]`), if one did.
    pub user: Option<String>,
    /// The intercepted host, when inside a tunnel.
    pub dest: Option<&'a crate::core::host::Authority>,
    /// The addresses the plan checked, when it checked any.
    pub checked: Option<&'a [SocketAddr]>,
    /// The rule that planned the request.
    pub rule: &'a Rule,
    /// The list it was answered from.
    pub mirrors: &'a MirrorList,
}

impl<'a> Screen<'a> {
    /// Whether a rule with `versions` could match `module`: only then is
    /// an answer read and screened.
    fn applies(&self, module: &str) -> bool {
        self.ctx
            .config
            .policy
            .rules
            .iter()
            .any(|r| r.versions.is_some() && r.modules.as_ref().is_none_or(|m| m.iter().any(|g| g.matches(module))))
    }

    /// The refusal the rules give `module@version`, if they refuse it.
    async fn refusal(&self, module: &str, version: &str) -> Result<Option<Plan<'a>>, Error> {
        let policy = &self.ctx.config.policy;
        let facts = Facts {
            src: self.src,
            dest: self.dest,
            addr: None,
            module: Some(module),
            user: self.user.as_deref(),
            version: Some(version),
            sumdb_lookup: false,
            sumdb_tree: false,
        };
        let plan = match plan::plan(policy, self.door, &facts, module) {
            Ok(plan) => plan,
            Err(NeedsAddress) => {
                let addrs = match (self.checked, self.dest) {
                    (Some(checked), _) => checked.to_vec(),
                    (None, Some(dest)) => {
                        self.ctx
                            .resolver
                            .resolve_within(dest, self.ctx.config.timeouts.connect)
                            .await?
                    }
                    (None, None) => Vec::new(),
                };
                let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
                plan::plan_resolved(policy, self.door, &facts, &ips, module)
            }
        };
        Ok(matches!(plan, Plan::Refuse { .. }).then_some(plan))
    }

    /// Answers `request` (at `rel_path` below a GOPROXY base) from this
    /// list under this rule ([`answer`](crate::proxy::answer::answer)),
    /// then screens the answer.
    pub async fn answer(
        &self,
        access: &mut Access,
        request: &ModuleRequest,
        rel_path: &str,
        head: bool,
        original: Option<Original<'_>>,
    ) -> Result<Response<Body>, Error> {
        let resp = answer(
            self.ctx,
            access,
            request,
            rel_path,
            head,
            self.rule,
            self.mirrors,
            original,
        )
        .await?;
        self.screen(access, request, head, resp).await
    }

    /// `resp`, the answer to `request`, with the version rules applied.
    pub async fn screen(
        &self,
        access: &mut Access,
        request: &ModuleRequest,
        head: bool,
        resp: Response<Body>,
    ) -> Result<Response<Body>, Error> {
        let Some(module) = request.module() else {
            return Ok(resp);
        };
        if resp.status() != StatusCode::OK || !self.applies(module) {
            return Ok(resp);
        }
        match request {
            ModuleRequest::List { .. } if head => Ok(without_length(resp)),
            ModuleRequest::List { .. } => {
                let (mut parts, body) = resp.into_parts();
                let list = read(body, "the version list").await?;
                let kept = self.screen_list(module, &list).await?;
                parts.headers.remove(header::CONTENT_LENGTH);
                Ok(Response::from_parts(parts, full(kept)))
            }
            ModuleRequest::Latest { .. } | ModuleRequest::Info { .. } if head => Ok(without_length(resp)),
            ModuleRequest::Latest { .. } => self.screen_latest(access, module, resp).await,
            ModuleRequest::Info { version, .. } if !is_canonical(version) => {
                let (parts, body) = resp.into_parts();
                let info = read(body, "the version's .info").await?;
                if let Some(resolved) = info_version(&info) {
                    if let Some(plan) = self.refusal(module, &resolved).await? {
                        return refuse(access, plan);
                    }
                }
                Ok(Response::from_parts(parts, full(info)))
            }
            _ => Ok(resp),
        }
    }

    /// The list with every refused version left out; lines that are not
    /// versions are kept as they are (go skips them). A short or decorated
    /// version (`v1.2`, `v1.2.0+meta`), which go reads as the version it
    /// stands for, is judged as that one (`v1.2.0`).
    async fn screen_list(&self, module: &str, list: &Bytes) -> Result<String, Error> {
        let text = String::from_utf8_lossy(list);
        let mut kept = String::with_capacity(text.len());
        for line in text.lines() {
            let version = line.split_whitespace().next().unwrap_or_default();
            let judged = match is_canonical(version) {
                true => Some(std::borrow::Cow::Borrowed(version)),
                false => canonical(version).map(std::borrow::Cow::Owned),
            };
            if let Some(judged) = judged {
                if self.refusal(module, &judged).await?.is_some() {
                    continue;
                }
            }
            kept.push_str(line);
            kept.push('\n');
        }
        Ok(kept)
    }

    /// `@latest`, or in place of a refused version the highest allowed one
    /// in the list, answered with its `.info`.
    async fn screen_latest(
        &self,
        access: &mut Access,
        module: &str,
        resp: Response<Body>,
    ) -> Result<Response<Body>, Error> {
        let (parts, body) = resp.into_parts();
        let info = read(body, "the @latest answer").await?;
        let Some(latest) = info_version(&info) else {
            return Ok(Response::from_parts(parts, full(info)));
        };
        let Some(refused) = self.refusal(module, &latest).await? else {
            return Ok(Response::from_parts(parts, full(info)));
        };
        let reason = match &refused {
            Plan::Refuse { error, .. } => error.to_string(),
            _ => String::new(),
        };
        let list_request = ModuleRequest::List {
            module: module.to_owned(),
        };
        let list_path = format!("/{}/@v/list", encode_case(module));
        let list = self.ask(access, &list_request, &list_path).await?;
        let allowed = if list.status() == StatusCode::OK {
            let list = read(list.into_body(), "the version list").await?;
            self.screen_list(module, &list).await?
        } else {
            String::new()
        };
        let Some(best) = highest(allowed.lines().filter_map(|l| l.split_whitespace().next())) else {
            access.planned(&refused);
            return Ok(text(
                StatusCode::NOT_FOUND,
                &format!(
                    "modgate: the latest version of {module}, {latest}, is refused ({reason}), and no allowed version is listed"
                ),
            ));
        };
        tracing::info!(module, refused = %latest, answered = %best, "@latest is refused; answering the highest allowed version");
        let info_request = ModuleRequest::Info {
            module: module.to_owned(),
            version: best.to_owned(),
        };
        let info_path = format!("/{}/@v/{}.info", encode_case(module), encode_case(best));
        self.ask(access, &info_request, &info_path).await
    }

    /// Answers another request for the same module through the same rule.
    async fn ask(&self, access: &mut Access, request: &ModuleRequest, rel_path: &str) -> Result<Response<Body>, Error> {
        let url = self.dest.map(|d| format!("{}{rel_path}", d.https_url()));
        let original = url.as_deref().map(|url| Original {
            url,
            checked: self.checked,
        });
        answer(
            self.ctx,
            access,
            request,
            rel_path,
            false,
            self.rule,
            self.mirrors,
            original,
        )
        .await
    }
}

/// The refusal as the error to answer with, recorded in the access event.
fn refuse(access: &mut Access, plan: Plan<'_>) -> Result<Response<Body>, Error> {
    access.planned(&plan);
    match plan {
        Plan::Refuse { error, .. } => Err(error),
        other => Err(Error::Internal(format!("not a refusal: {other:?}"))),
    }
}

/// The highest version go's `latest` would pick: the highest release, or
/// else the highest pre-release; pseudo-versions are not listed releases.
fn highest<'v>(versions: impl Iterator<Item = &'v str>) -> Option<&'v str> {
    let candidates: Vec<&str> = versions.filter(|v| is_canonical(v) && !is_pseudo(v)).collect();
    let release = |v: &&str| parse(v).is_some_and(|p| p.is_release());
    let pick = |it: Vec<&'v str>| it.into_iter().max_by(|a, b| compare_go(a, b));
    let releases: Vec<&str> = candidates.iter().copied().filter(release).collect();
    if releases.is_empty() {
        pick(candidates)
    } else {
        pick(releases)
    }
}

/// The `Version` of an `.info` or `@latest` answer.
fn info_version(info: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "Version")]
        version: String,
    }
    serde_json::from_slice::<Info>(info).ok().map(|i| i.version)
}

/// A body read whole, up to [`MAX_SCREENED`].
async fn read(mut body: Body, what: &str) -> Result<Bytes, Error> {
    let failed = |reason: String| Error::Upstream {
        target: what.to_owned(),
        reason: format!("cannot read it to apply version rules: {reason}"),
    };
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failed(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        if out.len() + data.len() > MAX_SCREENED {
            return Err(failed(format!("it is larger than {MAX_SCREENED} bytes")));
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// A HEAD answer whose length the screened body would change.
fn without_length(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_prefers_the_highest_release() {
        let list = ["v1.0.0", "v1.2.0-rc.1", "v1.1.0", "v0.0.0-20240101120000-abcdefabcdef"];
        assert_eq!(highest(list.into_iter()), Some("v1.1.0"));
        assert_eq!(highest(["v1.2.0-rc.1", "v1.2.0-beta"].into_iter()), Some("v1.2.0-rc.1"));
        assert_eq!(
            highest(["junk", "v0.0.0-20240101120000-abcdefabcdef"].into_iter()),
            None
        );
        assert_eq!(highest(["v1.9.0", "v1.10.0"].into_iter()), Some("v1.10.0"));
    }

    #[test]
    fn info_versions_are_read_from_json() {
        assert_eq!(
            info_version(br#"{"Version":"v1.5.0","Time":"2024-01-02T03:04:05Z"}"#).as_deref(),
            Some("v1.5.0")
        );
        assert_eq!(info_version(b"not json"), None);
    }
}
