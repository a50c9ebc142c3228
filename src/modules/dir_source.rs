//! A GOPROXY-layout directory as a source (`file:///srv/gomods`): an
//! offline mirror, or `$GOMODCACHE/cache/download`. Files are streamed.

use std::path::{Component, Path, PathBuf};

use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::cache::file_body::FileBody;
use crate::core::body::{BoxError, text};
use crate::core::error::Error;
use crate::gomod::request::{MAX_ZIP_BYTES, ModuleRequest};
use crate::modules::proxy_source::zip_too_large;
use crate::modules::source::{Answer, ModuleSource, SourceRequest};

/// A GOPROXY-layout directory.
pub struct DirSource {
    dir: PathBuf,
    /// `file://DIR`, for messages.
    name: String,
}

impl DirSource {
    /// The directory `dir`.
    pub fn new(dir: PathBuf) -> DirSource {
        let name = format!("file://{}", dir.display());
        DirSource { dir, name }
    }

    async fn serve(&self, req: SourceRequest<'_>) -> Answer {
        let rel = req.rel_path.trim_start_matches('/');
        // The classifier already refused `..` and friends; refuse anything
        // but plain names here as well, so no request can leave the dir.
        if Path::new(rel).components().any(|c| !matches!(c, Component::Normal(_))) {
            return Answer::Failed(Error::BadRequest(format!("'{rel}' is not a plain relative path")));
        }
        let not_here = || {
            Answer::NotFound(text(
                StatusCode::NOT_FOUND,
                &format!("modgate: {rel} is not in {}", self.name),
            ))
        };
        let failed = |e: std::io::Error| {
            Answer::Failed(Error::Upstream {
                target: self.name.clone(),
                reason: format!("{rel}: {e}"),
            })
        };
        let file = match tokio::fs::File::open(self.dir.join(rel)).await {
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
        if matches!(req.request, ModuleRequest::Zip { .. }) && meta.len() > MAX_ZIP_BYTES {
            return Answer::Failed(zip_too_large(&self.name, &req));
        }
        if req.head {
            let mut resp = Response::new(crate::core::body::empty());
            let headers = resp.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(req.request)),
            );
            return Answer::Found(resp);
        }
        let stream = FileBody::new(file.into_std().await, meta.len())
            .map_ok(Frame::data)
            .map_err(BoxError::from);
        let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(req.request)),
        );
        Answer::Found(resp)
    }
}

impl ModuleSource for DirSource {
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(self.serve(req))
    }
}

/// The Content-Type a GOPROXY serves each file with.
fn content_type(request: &ModuleRequest) -> &'static str {
    match request {
        ModuleRequest::Info { .. } | ModuleRequest::Latest { .. } => "application/json",
        ModuleRequest::Zip { .. } => "application/zip",
        _ => "text/plain; charset=utf-8",
    }
}
