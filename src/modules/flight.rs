//! Single-flight: one upstream fetch per uncached object, however many
//! clients ask for it at once, and every one of them streaming it as it
//! arrives.
//!
//! The first request's upstream answer is pumped by a task of its own into
//! a spool file (so memory stays flat) and, when it is cacheable, into the
//! store. Every client, the first included, reads the spool through a
//! [`SpoolBody`] that follows the pump's [`Progress`]. A body that must be
//! verified first has its final bytes held back until the check passes: no
//! client ever receives a complete body that failed verification.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::core::body::{Body, BoxError};
use crate::core::error::Error;
use crate::upstream::pool::UpstreamInfo;

/// Bytes read from the spool per frame.
const FRAME: usize = 64 * 1024;

/// What a reader needs to answer before the body: from the upstream's head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The status (200).
    pub status: StatusCode,
    /// The upstream's Content-Type.
    pub content_type: Option<HeaderValue>,
    /// The upstream's Content-Length, when it declared one.
    pub length: Option<u64>,
}

/// How far the pump has come.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The upstream has not answered yet.
    Waiting,
    /// The body is arriving in the spool. `done` is set once it is complete
    /// (and verified, when it had to be).
    Body {
        /// The answer's head.
        head: Head,
        /// Bytes in the spool so far.
        written: u64,
        /// Complete and released.
        done: bool,
    },
    /// A small final answer that is not spooled (a 404 or 410).
    Answer {
        /// Its status.
        status: StatusCode,
        /// Its Content-Type.
        content_type: Option<HeaderValue>,
        /// Its body.
        body: Bytes,
    },
    /// The fetch failed; every reader fails with this.
    Failed(Error),
}

/// One object being fetched, shared by every client that asked for it.
pub struct Flight {
    spool: PathBuf,
    /// Where the spool went instead, when the cache's disk had no room
    /// for it ([`Flight::spool_in`]).
    moved: std::sync::OnceLock<PathBuf>,
    progress: watch::Sender<Progress>,
    /// The source that answered, once one has.
    source: std::sync::OnceLock<String>,
    /// The connection its answer came over (the verdict on its chain, a
    /// parent proxy), for every client's access event.
    upstream: std::sync::OnceLock<UpstreamInfo>,
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight")
            .field("spool", &self.spool())
            .finish_non_exhaustive()
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.spool());
    }
}

impl Flight {
    /// A flight spooling to `spool` (created by the pump).
    pub fn new(spool: PathBuf) -> Arc<Flight> {
        let (progress, _) = watch::channel(Progress::Waiting);
        Arc::new(Flight {
            spool,
            moved: std::sync::OnceLock::new(),
            progress,
            source: std::sync::OnceLock::new(),
            upstream: std::sync::OnceLock::new(),
        })
    }

    /// The spool file.
    pub fn spool(&self) -> &Path {
        self.moved.get().unwrap_or(&self.spool)
    }

    /// Spools in `dir` instead: only before the pump creates the spool
    /// file, which is before any reader opens it.
    pub fn spool_in(&self, dir: &Path) {
        if let Some(name) = self.spool.file_name() {
            let _ = self.moved.set(dir.join(name));
        }
    }

    /// Notes the source that answered.
    pub fn set_source(&self, source: String) {
        let _ = self.source.set(source);
    }

    /// Notes the connection the answer came over, from its response.
    pub fn set_upstream(&self, response: &http::Extensions) {
        if let Some(info) = response.get::<UpstreamInfo>() {
            let _ = self.upstream.set(info.clone());
        }
    }

    /// Puts the connection the answer came over on `resp`.
    fn with_upstream(&self, mut resp: Response<Body>) -> Response<Body> {
        if let Some(info) = self.upstream.get() {
            resp.extensions_mut().insert(info.clone());
        }
        resp
    }

    /// The source that answered, once one has.
    pub fn source(&self) -> Option<String> {
        self.source.get().cloned()
    }

    /// Publishes progress.
    pub fn set(&self, progress: Progress) {
        self.progress.send_replace(progress);
    }

    /// Adds `n` bytes to what the body has in the spool.
    pub fn wrote(&self, n: u64) {
        self.progress.send_modify(|p| {
            if let Progress::Body { written, .. } = p {
                *written += n;
            }
        });
    }

    /// Marks the body complete and released.
    pub fn finish(&self) {
        self.progress.send_modify(|p| {
            if let Progress::Body { done, .. } = p {
                *done = true;
            }
        });
    }

    /// How many clients are still reading (or waiting).
    pub fn readers(&self) -> usize {
        self.progress.receiver_count()
    }

    /// Completes once no client is reading or waiting any more.
    pub async fn all_left(&self) {
        self.progress.closed().await;
    }

    /// A subscription to the progress; while it lives, the client counts
    /// as a reader.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Waits until the flight has an answer to give, and gives it: the
    /// response (streaming from the spool, once its first byte is there),
    /// or the fetch's error.
    pub async fn answer(self: &Arc<Self>, mut rx: watch::Receiver<Progress>) -> Result<Response<Body>, Error> {
        loop {
            let progress = rx.borrow_and_update().clone();
            match progress {
                Progress::Waiting => {}
                Progress::Failed(e) => return Err(e),
                Progress::Answer {
                    status,
                    content_type,
                    body,
                } => {
                    let mut resp = Response::new(crate::core::body::full(body));
                    *resp.status_mut() = status;
                    if let Some(ct) = content_type {
                        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    return Ok(self.with_upstream(resp));
                }
                // Until the first byte is readable, a failed fetch is
                // still the client's 502: hyper sends a head only with the
                // body's first frame, so a body that failed before any
                // would close the connection with no answer at all.
                ref body @ Progress::Body { .. } if matches!(readable(body), Ok((0, false))) => {}
                ref body @ Progress::Body { ref head, .. } => {
                    let promised = readable(body).map_or(0, |(limit, _)| limit);
                    let file = tokio::fs::File::open(self.spool())
                        .await
                        .map_err(|e| Error::Internal(format!("opening the spool {}: {e}", self.spool().display())))?;
                    let body = SpoolBody {
                        _flight: self.clone(),
                        rx: Some(rx),
                        file: Some(file),
                        read: 0,
                        promised,
                        flushed: false,
                        op: Op::Idle,
                    };
                    let mut resp = Response::new(http_body_util::BodyExt::boxed_unsync(body));
                    *resp.status_mut() = head.status;
                    if let Some(ct) = head.content_type.clone() {
                        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                    }
                    if let Some(len) = head.length {
                        resp.headers_mut()
                            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    }
                    return Ok(self.with_upstream(resp));
                }
            }
            if rx.changed().await.is_err() {
                return Err(Error::Internal("the fetch ended without an answer".into()));
            }
        }
    }
}

/// A client's view of a spooled body: it reads what the pump has written,
/// waits for more, and ends only when the flight is done.
struct SpoolBody {
    /// Keeps the flight (and so its progress sender and spool) alive.
    _flight: Arc<Flight>,
    /// The progress, while not lent to a pending wait.
    rx: Option<watch::Receiver<Progress>>,
    /// The spool, while not lent to a pending read.
    file: Option<tokio::fs::File>,
    read: u64,
    /// Bytes readable when the head was given: they are sent even if the
    /// fetch fails meanwhile, so the head goes out (with them) and the
    /// client sees a cut body, not a connection closed with no answer.
    promised: u64,
    /// hyper was given a turn to write out what was read, before a failure
    /// is passed on.
    flushed: bool,
    op: Op,
}

/// What a [`SpoolBody`] is waiting on.
enum Op {
    Idle,
    Reading(BoxFuture<'static, std::io::Result<(tokio::fs::File, Bytes)>>),
    Waiting(BoxFuture<'static, watch::Receiver<Progress>>),
}

/// How far a reader may read now: what is written, less one byte while a
/// declared length is reached but the body is not released; and whether
/// the body is complete.
fn readable(progress: &Progress) -> Result<(u64, bool), Error> {
    match progress {
        Progress::Body { head, written, done } => {
            let limit = match (done, head.length) {
                (true, _) => *written,
                (false, Some(len)) => (*written).min(len.saturating_sub(1)),
                (false, None) => *written,
            };
            Ok((limit, *done))
        }
        Progress::Failed(e) => Err(e.clone()),
        _ => Ok((0, false)),
    }
}

impl http_body::Body for SpoolBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.op {
                Op::Reading(read) => {
                    let Poll::Ready(result) = read.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    this.op = Op::Idle;
                    return match result {
                        Ok((file, chunk)) => {
                            this.file = Some(file);
                            this.read += chunk.len() as u64;
                            Poll::Ready(Some(Ok(Frame::data(chunk))))
                        }
                        Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
                    };
                }
                Op::Waiting(wait) => {
                    let Poll::Ready(rx) = wait.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    this.rx = Some(rx);
                    this.op = Op::Idle;
                }
                Op::Idle => {
                    let Some(rx) = this.rx.as_mut() else {
                        return Poll::Ready(Some(Err("the spool reader lost its progress".into())));
                    };
                    let (limit, done) = match readable(&rx.borrow_and_update()) {
                        Ok(r) => r,
                        Err(_) if this.read < this.promised => (this.promised, false),
                        // hyper drops what it has buffered (the head, too)
                        // when a body fails: give it one turn to write out
                        // what was read before failing the body.
                        Err(_) if this.read > 0 && !this.flushed => {
                            this.flushed = true;
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
                    };
                    if this.read < limit {
                        let Some(mut file) = this.file.take() else {
                            return Poll::Ready(Some(Err("the spool reader lost its file".into())));
                        };
                        let (at, want) = (this.read, ((limit - this.read) as usize).min(FRAME));
                        this.op = Op::Reading(Box::pin(async move {
                            file.seek(SeekFrom::Start(at)).await?;
                            let mut buf = BytesMut::zeroed(want);
                            let n = file.read(&mut buf).await?;
                            if n == 0 {
                                return Err(std::io::Error::other("the spool is shorter than written"));
                            }
                            buf.truncate(n);
                            Ok((file, buf.freeze()))
                        }));
                    } else if done {
                        return Poll::Ready(None);
                    } else {
                        let Some(mut rx) = this.rx.take() else { continue };
                        // The flight is kept alive by this body, so the
                        // sender cannot go away while it waits.
                        this.op = Op::Waiting(Box::pin(async move {
                            let _ = rx.changed().await;
                            rx
                        }));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match (&self.op, &self.rx) {
            (Op::Idle, Some(rx)) => matches!(readable(&rx.borrow()), Ok((limit, true)) if self.read >= limit),
            _ => false,
        }
    }
}

/// Writes `chunk` to the spool, and waits until it is in the file: a
/// tokio file's write returns once the bytes are handed to a background
/// task, and readers, told how far the spool goes, read it through handles
/// of their own.
pub async fn spool_write(file: &mut tokio::fs::File, chunk: &[u8]) -> std::io::Result<()> {
    file.write_all(chunk).await?;
    file.flush().await
}
