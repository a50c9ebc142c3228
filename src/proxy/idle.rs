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

/// The time of the last byte moved on a connection and, on an HTTP/1.1
/// connection, since when it has waited for a request head.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    /// Since when (ms after `base`) the connection has waited for its next
    /// request head; [`ANSWERING`] while a request is being answered.
    head_since_ms: AtomicU64,
}

/// `head_since_ms` while a request is being answered.
const ANSWERING: u64 = u64::MAX;

/// Why a connection went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// No byte moved either way for the idle timeout.
    Idle,
    /// No whole request head arrived within the header timeout since the
    /// connection began waiting for one.
    NoHead,
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
            head_since_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Records activity now.
    pub fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A request's head has arrived: no head is awaited until it is
    /// answered ([`awaiting_head`](Self::awaiting_head)).
    pub fn head_arrived(&self) {
        self.head_since_ms.store(ANSWERING, Ordering::Relaxed);
    }

    /// The connection waits for its next request head from now.
    pub fn awaiting_head(&self) {
        self.head_since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Completes once nothing has been recorded for `idle` or, with
    /// `head`, once the connection has waited that long for a request
    /// head.
    ///
    /// One sleep per connection, set again only when it ends, however many
    /// requests pass meanwhile: while a request is answered it ends every
    /// `head` at most, to see whether the connection waits for a head
    /// again. hyper's own header timeout is a timer registered and
    /// cancelled for every request (about 2k instructions of an
    /// intercepted request's 70k, by callgrind).
    pub async fn quiet_for(&self, idle: Duration, head: Option<Duration>) -> Quiet {
        loop {
            let now = Instant::now();
            let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let mut deadline = last + idle;
            if now >= deadline {
                return Quiet::Idle;
            }
            if let Some(head) = head {
                match self.head_since_ms.load(Ordering::Relaxed) {
                    ANSWERING => deadline = deadline.min(now + head),
                    since => {
                        let due = self.base + Duration::from_millis(since) + head;
                        if now >= due {
                            return Quiet::NoHead;
                        }
                        deadline = deadline.min(due);
                    }
                }
            }
            timer::sleep_until(deadline).await;
        }
    }

    /// Completes once nothing has been recorded for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        self.quiet_for(idle, None).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(30);
    const IDLE: Duration = Duration::from_secs(90);

    /// How long after the start `quiet_for` ends, and why; the clock is
    /// paused, so time moves only when every task waits.
    async fn quiet_after(activity: &Activity, head: Option<Duration>) -> (Duration, Quiet) {
        let start = Instant::now();
        let quiet = activity.quiet_for(IDLE, head).await;
        (start.elapsed(), quiet)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_waiting_for_a_head_is_quiet_after_the_header_timeout() {
        let activity = Activity::new();
        assert_eq!(quiet_after(&activity, Some(HEAD)).await, (HEAD, Quiet::NoHead));
        // Without a header timeout (h2, tunnels) only the idle one counts.
        let activity = Activity::new();
        assert_eq!(quiet_after(&activity, None).await, (IDLE, Quiet::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_stops_the_head_clock_and_its_end_restarts_it() {
        let activity = Arc::new(Activity::new());
        let clock = activity.clone();
        tokio::spawn(async move {
            // A head arrives at 10 s; its answer takes 50 s (bytes moving),
            // longer than the header timeout; the next head never comes.
            tokio::time::sleep(Duration::from_secs(10)).await;
            clock.head_arrived();
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                clock.touch();
            }
            clock.awaiting_head();
        });
        assert_eq!(
            quiet_after(&activity, Some(HEAD)).await,
            (Duration::from_secs(60) + HEAD, Quiet::NoHead)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_with_no_byte_moving_ends_at_the_idle_timeout() {
        let activity = Activity::new();
        activity.head_arrived();
        assert_eq!(quiet_after(&activity, Some(HEAD)).await, (IDLE, Quiet::Idle));
    }
}
