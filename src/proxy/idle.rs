//! Idle timeouts: a clock of the last byte moved, and a stream wrapper that
//! keeps it.
//!
//! A connection or tunnel on which no byte has moved in either direction for
//! `timeouts.idle` is closed. This covers stalls that no other timeout sees,
//! such as a body that stops half-way.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::core::timer;
use crate::telemetry::access::Counter;

/// The time of the last byte moved on a connection.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Activity {
    /// Starts the clock now.
    pub fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Records activity now.
    pub fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Completes once nothing has been recorded for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            timer::sleep_until(deadline).await;
        }
    }
}

pin_project! {
    /// A stream that records every read and write in an [`Activity`], and
    /// optionally counts the bytes.
    pub struct Watched<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
        counters: Option<(Counter, Counter)>,
    }
}

impl<T> Watched<T> {
    /// Wraps `inner`, recording into `activity`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Watched<T> {
        Watched {
            inner,
            activity,
            counters: None,
        }
    }

    /// Wraps `inner`, recording into `activity` and counting bytes read
    /// into `read` and bytes written into `written`.
    pub fn counting(inner: T, activity: Arc<Activity>, read: Counter, written: Counter) -> Watched<T> {
        Watched {
            inner,
            activity,
            counters: Some((read, written)),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.activity.touch();
            if let Some((read, _)) = this.counters {
                read.add(n as u64);
            }
        }
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            wrote(this.activity, this.counters, n);
        }
        result
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            wrote(this.activity, this.counters, n);
        }
        result
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

fn wrote(activity: &Activity, counters: &Option<(Counter, Counter)>, n: usize) {
    if n > 0 {
        activity.touch();
        if let Some((_, written)) = counters {
            written.add(n as u64);
        }
    }
}
