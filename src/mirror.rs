//! The `mirror` action: a list of upstream module proxies in GOPROXY syntax,
//! tried in order.
//!
//! - `,` after an entry falls through to the next only on 404/410;
//! - `|` after an entry falls through on any error: connect, TLS, timeout, 5xx;
//! - `direct` is the original host (on modgate's own endpoint: a 404 telling
//!   `go` to use its own `direct`);
//! - `off` stops the list with a 403;
//! - `file://DIR` serves a GOPROXY-layout directory;
//! - `https://host/prefix` and `http://host/prefix` are module proxies.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;

use crate::error::Error;
use crate::forward::{self, Body, BoxError, HttpClient};
use crate::module::ModuleRequest;

/// One entry of a mirror list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirror {
    /// A module proxy base URL, without a trailing slash.
    Proxy(String),
    /// The original host.
    Direct,
    /// Stop: module downloads are disabled.
    Off,
    /// A GOPROXY-layout directory.
    Dir(PathBuf),
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mirror::Proxy(url) => f.write_str(url),
            Mirror::Direct => f.write_str("direct"),
            Mirror::Off => f.write_str("off"),
            Mirror::Dir(dir) => write!(f, "file://{}", dir.display()),
        }
    }
}

/// When to move on from an entry to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallThrough {
    /// `,`: only when the entry answers 404 or 410.
    OnNotFound,
    /// `|`: on any error.
    OnAnyError,
}

/// An entry and the separator that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorEntry {
    /// Where to fetch.
    pub mirror: Mirror,
    /// When to move on to the next entry (meaningless for the last).
    pub then: FallThrough,
}

/// A parsed mirror list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorList {
    /// The entries, in order. Never empty.
    pub entries: Vec<MirrorEntry>,
}

impl fmt::Display for MirrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            write!(f, "{}", e.mirror)?;
            if i + 1 < self.entries.len() {
                f.write_str(match e.then {
                    FallThrough::OnNotFound => ",",
                    FallThrough::OnAnyError => "|",
                })?;
            }
        }
        Ok(())
    }
}

impl FromStr for MirrorList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        let mut rest = s;
        loop {
            let cut = rest.find([',', '|']);
            let (item, then, next) = match cut {
                Some(i) => {
                    let then = if rest.as_bytes()[i] == b',' {
                        FallThrough::OnNotFound
                    } else {
                        FallThrough::OnAnyError
                    };
                    (&rest[..i], then, Some(&rest[i + 1..]))
                }
                None => (rest, FallThrough::OnNotFound, None),
            };
            let mirror = parse_entry(item.trim())?;
            if entries.last().is_some_and(|e: &MirrorEntry| e.mirror == Mirror::Off) {
                return Err(format!("bad mirrors '{s}': entries after 'off' are never used"));
            }
            entries.push(MirrorEntry { mirror, then });
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
        Ok(MirrorList { entries })
    }
}

fn parse_entry(item: &str) -> Result<Mirror, String> {
    match item {
        "" => return Err("bad mirrors: empty entry (two separators in a row, or one at an end)".into()),
        "direct" => return Ok(Mirror::Direct),
        "off" => return Ok(Mirror::Off),
        _ => {}
    }
    if let Some(path) = item.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "bad mirror '{item}': file:// needs an absolute path, e.g. file:///srv/gomods"
            ));
        }
        return Ok(Mirror::Dir(PathBuf::from(path)));
    }
    if !(item.starts_with("https://") || item.starts_with("http://")) {
        return Err(format!(
            "bad mirror '{item}': expected https://host[/prefix], http://host[/prefix], file:///dir, direct or off"
        ));
    }
    let uri: http::Uri = item.parse().map_err(|e| format!("bad mirror '{item}': {e}"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("bad mirror '{item}': no host"));
    }
    if uri.query().is_some() || item.contains('#') || item.contains('@') {
        return Err(format!(
            "bad mirror '{item}': no query, fragment or credentials allowed"
        ));
    }
    Ok(Mirror::Proxy(item.trim_end_matches('/').to_owned()))
}

/// The largest module zip `go` accepts (cmd/go rejects bigger ones).
pub const MAX_ZIP_BYTES: u64 = 500 * 1024 * 1024;

/// What a fetch needs besides the list.
pub struct Fetch<'a> {
    /// The pooled upstream client.
    pub client: &'a HttpClient,
    /// Time allowed for each upstream's response head.
    pub header_timeout: Duration,
    /// The request, classified.
    pub request: &'a ModuleRequest,
    /// The path relative to a GOPROXY base, e.g. `/golang.org/x/mod/@v/list`
    /// or `/sumdb/sum.golang.org/latest`.
    pub rel_path: &'a str,
    /// For `direct`: the original URL, when there is an original host (an
    /// intercepted connection). `None` on modgate's own endpoint.
    pub origin: Option<String>,
    /// The rule, for messages.
    pub rule: &'a str,
}

/// How one entry answered.
enum Outcome {
    /// 2xx or 3xx: this is the answer.
    Found(Response<Body>),
    /// 404 or 410: "not here".
    NotFound(Response<Body>),
    /// Anything else.
    Failed(Error),
}

/// Tries the entries in order with GOPROXY fall-through semantics and
/// returns the answer to stream to the client, and the entry that gave it.
pub async fn fetch(list: &MirrorList, f: &Fetch<'_>) -> (Result<Response<Body>, Error>, String) {
    let last = list.entries.len().saturating_sub(1);
    for (i, entry) in list.entries.iter().enumerate() {
        let outcome = match &entry.mirror {
            Mirror::Proxy(base) => from_proxy(f, base, &format!("{base}{}", f.rel_path)).await,
            Mirror::Direct => match &f.origin {
                Some(url) => from_proxy(f, url, url).await,
                None => Outcome::NotFound(direct_here(f)),
            },
            Mirror::Off => Outcome::Failed(Error::Blocked {
                rule: f.rule.to_owned(),
                reason: format!(
                    "module downloads are off for {} (mirrors = \"{list}\")",
                    describe(f.request)
                ),
            }),
            Mirror::Dir(dir) => from_dir(dir, f).await,
        };
        let source = entry.mirror.to_string();
        match outcome {
            Outcome::Found(resp) => return (Ok(resp), source),
            Outcome::NotFound(resp) if i == last => return (Ok(resp), source),
            Outcome::NotFound(_) => {}
            Outcome::Failed(e) if i < last && entry.then == FallThrough::OnAnyError => {
                tracing::info!(rule = f.rule, mirror = %source, error = %e, "mirror failed; trying the next (|)");
            }
            Outcome::Failed(e) => return (Err(e), source),
        }
    }
    (Err(Error::Internal("empty mirror list".into())), String::new())
}

fn describe(request: &ModuleRequest) -> String {
    request
        .module()
        .map_or_else(|| request.kind().to_owned(), str::to_owned)
}

/// The answer for `direct` on modgate's own endpoint: a 404 that makes `go`
/// move on to its own `direct` entry.
fn direct_here(f: &Fetch<'_>) -> Response<Body> {
    direct_answer(f.rule, &describe(f.request))
}

/// The 404 that tells `go` to fetch `what` itself.
pub fn direct_answer(rule: &str, what: &str) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        &format!(
            "modgate: rule '{rule}' sends {what} direct: go fetches it itself (end GOPROXY with ,direct and make sure GONOSUMDB/GOPRIVATE cover private modules)"
        ),
    )
}

/// A one-line `text/plain` answer.
pub fn text(status: StatusCode, line: &str) -> Response<Body> {
    let mut resp = Response::new(forward::full(format!("{line}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn from_proxy(f: &Fetch<'_>, base: &str, url: &str) -> Outcome {
    let req = match Request::get(url)
        .header(header::USER_AGENT, "modgate")
        .body(forward::full(Bytes::new()))
    {
        Ok(req) => req,
        Err(e) => return Outcome::Failed(Error::Internal(format!("bad upstream URL {url}: {e}"))),
    };
    let sent = tokio::time::timeout(f.header_timeout, f.client.request(req)).await;
    let resp = match sent {
        Err(_) => {
            return Outcome::Failed(Error::UpstreamTimeout {
                target: base.to_owned(),
                after: f.header_timeout,
            });
        }
        Ok(Err(e)) => return Outcome::Failed(forward::client_error(base, &e)),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Outcome::NotFound(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()));
    }
    if !(status.is_success() || status.is_redirection()) {
        return Outcome::Failed(Error::Upstream {
            target: base.to_owned(),
            reason: format!("answered {status} for {}", describe(f.request)),
        });
    }
    let (mut parts, body) = resp.into_parts();
    forward::strip_hop_by_hop(&mut parts.headers);
    if let ModuleRequest::Zip { .. } = f.request {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_ZIP_BYTES) {
            return Outcome::Failed(too_large(base, f));
        }
        let limited = Limited::new(body, MAX_ZIP_BYTES as usize)
            .map_err(BoxError::from)
            .boxed_unsync();
        return Outcome::Found(Response::from_parts(parts, limited));
    }
    Outcome::Found(Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()))
}

fn too_large(source: &str, f: &Fetch<'_>) -> Error {
    Error::Upstream {
        target: source.to_owned(),
        reason: format!(
            "the zip of {} is larger than go's limit of 500 MiB",
            describe(f.request)
        ),
    }
}

/// Serves `rel_path` from a GOPROXY-layout directory.
async fn from_dir(dir: &Path, f: &Fetch<'_>) -> Outcome {
    let rel = f.rel_path.trim_start_matches('/');
    // The classifier already refused `..` and friends; refuse anything but
    // plain names here as well, so no request can leave `dir`.
    if Path::new(rel).components().any(|c| !matches!(c, Component::Normal(_))) {
        return Outcome::Failed(Error::BadRequest(format!("'{rel}' is not a plain relative path")));
    }
    let path = dir.join(rel);
    let source = format!("file://{}", dir.display());
    let not_here = || {
        Outcome::NotFound(text(
            StatusCode::NOT_FOUND,
            &format!("modgate: {rel} is not in {source}"),
        ))
    };
    let failed = |e: std::io::Error| {
        Outcome::Failed(Error::Upstream {
            target: source.clone(),
            reason: format!("{rel}: {e}"),
        })
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return not_here();
        }
        Err(e) => return failed(e),
    };
    let meta = match file.metadata().await {
        Ok(m) if m.is_file() => m,
        Ok(_) => return not_here(),
        Err(e) => return failed(e),
    };
    if matches!(f.request, ModuleRequest::Zip { .. }) && meta.len() > MAX_ZIP_BYTES {
        return Outcome::Failed(too_large(&source, f));
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)
        .map_ok(Frame::data)
        .map_err(BoxError::from);
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(f.request)));
    Outcome::Found(resp)
}

fn content_type(request: &ModuleRequest) -> &'static str {
    match request {
        ModuleRequest::Info { .. } | ModuleRequest::Latest { .. } => "application/json",
        ModuleRequest::Zip { .. } => "application/zip",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goproxy_syntax_parses_with_its_separators() {
        let list: MirrorList = "https://goproxy.cn,https://proxy.golang.org/|file:///srv/gomods,direct"
            .parse()
            .unwrap();
        let got: Vec<_> = list.entries.iter().map(|e| (e.mirror.to_string(), e.then)).collect();
        assert_eq!(
            got,
            [
                ("https://goproxy.cn".to_string(), FallThrough::OnNotFound),
                ("https://proxy.golang.org".to_string(), FallThrough::OnAnyError),
                ("file:///srv/gomods".to_string(), FallThrough::OnNotFound),
                ("direct".to_string(), FallThrough::OnNotFound),
            ]
        );
        assert_eq!(
            list.to_string(),
            "https://goproxy.cn,https://proxy.golang.org|file:///srv/gomods,direct"
        );
        let prefixed: MirrorList = "https://artifactory.corp/api/go/golang/".parse().unwrap();
        assert_eq!(
            prefixed.entries[0].mirror,
            Mirror::Proxy("https://artifactory.corp/api/go/golang".into())
        );
    }

    #[test]
    fn bad_lists_are_rejected() {
        for bad in [
            "",
            ",",
            "https://a.test,,https://b.test",
            "https://a.test|",
            "goproxy.cn",
            "file://rel/dir",
            "off,direct",
            "https://u:p@a.test",
            "https://a.test/?x=1",
            "ftp://a.test",
        ] {
            assert!(bad.parse::<MirrorList>().is_err(), "{bad:?} should be rejected");
        }
    }
}
