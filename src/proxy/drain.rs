//! Serving one hyper connection to its end: on shutdown it is asked to
//! finish gracefully (idle keep-alive connections close at once, in-flight
//! requests finish), and a connection on which no byte has moved for
//! `timeouts.idle` is closed. The plain proxy port and intercepted tunnels
//! both run their connections through [`serve_until_done`]; past the grace
//! period, [`until_cut`] ends what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use tokio_util::sync::CancellationToken;

use crate::core::duration::fmt_duration;
use crate::proxy::idle::{Activity, Quiet};

/// A hyper connection that can be asked to finish gracefully.
pub trait Graceful: Future {
    /// Stops taking new requests; finishes those in flight.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self)
    }
}

impl<I, S, B, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self)
    }
}

/// How a served connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEnd {
    /// The client or hyper closed it (or it finished draining).
    Closed,
    /// No byte moved for the idle timeout.
    Idle,
    /// No whole request head arrived within the header timeout.
    NoHead,
    /// The client broke the protocol (an h2 frame it may not send, a
    /// malformed request hyper could not answer): why, in one line. A
    /// client that merely went away is `Closed`.
    Failed(String),
}

impl ConnEnd {
    /// Logs (at debug) why modgate closed `what` (a kind of connection)
    /// from `peer`, if it did; `header` is the header timeout.
    pub fn log(&self, peer: SocketAddr, what: &str, header: Duration) {
        match self {
            ConnEnd::Idle => tracing::debug!(client = %peer, "closing idle {what}"),
            ConnEnd::NoHead => tracing::debug!(
                client = %peer,
                "closing {what}: no request head within {}",
                fmt_duration(header)
            ),
            ConnEnd::Closed | ConnEnd::Failed(_) => {}
        }
    }
}

/// Why `e`, the end of a served connection, is the client's protocol
/// failure; `None` for a client that went away (a reset, a cut, a close
/// in the middle of a message), which is how connections end.
fn protocol_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        // A malformed HTTP/1.1 head was answered (a 400 with its own event).
        if h.is_incomplete_message() || h.is_canceled() || h.is_closed() || h.is_timeout() || h.is_parse() {
            return None;
        }
    }
    let gone = crate::core::error::causes(e).any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            use std::io::ErrorKind::*;
            matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
            )
        })
    });
    (!gone).then(|| crate::core::error::chain(e))
}

/// Runs `conn` until it ends, draining it when `draining` is cancelled and
/// closing it after `idle` without a byte on `activity` or, with `head`
/// (HTTP/1.1), after waiting that long for a request head.
///
/// Not an `async fn`: one would keep `conn` twice in its state, as its
/// argument and inside the future it awaits, and a connection's future is
/// kilobytes per open connection.
pub fn serve_until_done<'a, C, E>(
    conn: C,
    draining: &'a CancellationToken,
    activity: &'a Activity,
    idle: Duration,
    head: Option<Duration>,
    peer: SocketAddr,
) -> impl Future<Output = ConnEnd> + 'a
where
    C: Graceful<Output = Result<(), E>> + 'a,
    E: std::error::Error + 'static,
{
    UntilDone {
        conn,
        drain: draining.cancelled(),
        idle: activity.quiet_for(idle, head),
        drain_started: false,
        watch: Watchers::new(),
    }
    .map(move |ended| match ended {
        Ended::Conn(Ok(())) => ConnEnd::Closed,
        Ended::Conn(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "client connection ended");
            protocol_failure(&e).map_or(ConnEnd::Closed, ConnEnd::Failed)
        }
        Ended::Quiet(Quiet::Idle) => ConnEnd::Idle,
        Ended::Quiet(Quiet::NoHead) => ConnEnd::NoHead,
    })
}

/// Runs `serve` until it ends or `cut` is cancelled, whichever is first.
/// Not an `async fn`, for the reason [`serve_until_done`] gives.
pub fn until_cut<'a, F: Future<Output = ()> + 'a>(
    serve: F,
    cut: &'a CancellationToken,
) -> impl Future<Output = ()> + 'a {
    UntilCut {
        serve,
        cut: cut.cancelled(),
        watch: Watchers::new(),
    }
}

/// The waker of the futures that watch a connection (the drain and cut
/// tokens, the idle clock): it notes that one of them woke, and wakes the
/// task.
///
/// A connection's task wakes for every read and write; polling the shared
/// tokens (a lock each) and the idle timer every time would cost every
/// request. They are polled with this waker instead: on the first poll, and
/// again only after it fired.
struct Watchers {
    state: Arc<WatchState>,
    waker: Waker,
    polled: bool,
}

#[derive(Default)]
struct WatchState {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Watchers {
    fn new() -> Watchers {
        let state = Arc::new(WatchState::default());
        Watchers {
            waker: Waker::from(state.clone()),
            state,
            polled: false,
        }
    }

    /// Keeps the task's waker for the watchers to wake; `Some` with the
    /// context to poll them in when they are due.
    fn due(&mut self, cx: &Context<'_>) -> Option<Context<'_>> {
        // Registered before the flag is read: a watcher firing after the
        // read still wakes this task.
        self.state.task.register(cx.waker());
        if self.polled && !self.state.fired.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.polled = true;
        Some(Context::from_waker(&self.waker))
    }
}

impl Wake for WatchState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

enum Ended<R> {
    Conn(R),
    Quiet(Quiet),
}

pin_project! {
    struct UntilDone<C, D, I> {
        #[pin]
        conn: C,
        #[pin]
        drain: D,
        #[pin]
        idle: I,
        drain_started: bool,
        watch: Watchers,
    }
}

pin_project! {
    struct UntilCut<F, D> {
        #[pin]
        serve: F,
        #[pin]
        cut: D,
        watch: Watchers,
    }
}

impl<F, D> Future for UntilCut<F, D>
where
    F: Future<Output = ()>,
    D: Future<Output = ()>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Some(mut watching) = this.watch.due(cx) {
            if this.cut.poll(&mut watching).is_ready() {
                return Poll::Ready(());
            }
        }
        this.serve.poll(cx)
    }
}

impl<C, D, I> Future for UntilDone<C, D, I>
where
    C: Graceful,
    D: Future<Output = ()>,
    I: Future<Output = Quiet>,
{
    type Output = Ended<C::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(mut watching) = this.watch.due(cx) {
            if !*this.drain_started && this.drain.poll(&mut watching).is_ready() {
                *this.drain_started = true;
                this.conn.as_mut().graceful_shutdown();
            }
            if let Poll::Ready(quiet) = this.idle.poll(&mut watching) {
                return Poll::Ready(Ended::Quiet(quiet));
            }
        }
        this.conn.poll(cx).map(Ended::Conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// A connection that ends when `end` fires, or at once after a
    /// graceful shutdown was asked for.
    struct Fake {
        end: oneshot::Receiver<()>,
        asked: Arc<AtomicBool>,
    }

    impl Future for Fake {
        type Output = Result<(), std::io::Error>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if self.asked.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            Pin::new(&mut self.end).poll(cx).map(|_| Ok(()))
        }
    }

    impl Graceful for Fake {
        fn graceful_shutdown(self: Pin<&mut Self>) {
            self.asked.store(true, Ordering::Release);
        }
    }

    fn fake() -> (Fake, oneshot::Sender<()>, Arc<AtomicBool>) {
        let (tx, end) = oneshot::channel();
        let asked = Arc::new(AtomicBool::new(false));
        (
            Fake {
                end,
                asked: asked.clone(),
            },
            tx,
            asked,
        )
    }

    /// `serve_until_done`, failing instead of hanging when it never ends.
    async fn serve(conn: Fake, draining: &CancellationToken, activity: &Activity, idle: Duration) -> ConnEnd {
        tokio::time::timeout(
            Duration::from_secs(600),
            serve_until_done(conn, draining, activity, idle, None, PEER),
        )
        .await
        .expect("still serving after 600 s")
    }

    const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1));

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ends_is_closed_without_a_drain() {
        let (conn, end, asked) = fake();
        let draining = CancellationToken::new();
        let activity = Activity::new();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = end.send(());
        });
        let ended = serve(conn, &draining, &activity, Duration::from_secs(60)).await;
        assert_eq!(ended, ConnEnd::Closed);
        assert!(!asked.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_asks_the_connection_to_finish() {
        let (conn, _end, asked) = fake();
        let draining = CancellationToken::new();
        let activity = Activity::new();
        let cancel = draining.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            cancel.cancel();
        });
        let ended = serve(conn, &draining, &activity, Duration::from_secs(60)).await;
        assert_eq!(ended, ConnEnd::Closed);
        assert!(asked.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_idle_past_the_timeout_ends_and_activity_defers_it() {
        let (conn, _end, asked) = fake();
        let draining = CancellationToken::new();
        let activity = Arc::new(Activity::new());
        let busy = activity.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                busy.touch();
            }
        });
        let started = tokio::time::Instant::now();
        let ended = serve(conn, &draining, &activity, Duration::from_secs(30)).await;
        assert_eq!(ended, ConnEnd::Idle);
        // Touched at 20, 40 and 60 s: idle from 60 s, closed at 90 s.
        assert!(started.elapsed() >= Duration::from_secs(90), "{:?}", started.elapsed());
        assert!(!asked.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_ends_the_work_and_the_work_can_end_first() {
        let cut = CancellationToken::new();
        let canceller = cut.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            canceller.cancel();
        });
        let started = tokio::time::Instant::now();
        // Wakes often, as a busy connection does, until the cut.
        let busy = async {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(600), until_cut(busy, &cut))
            .await
            .expect("not cut after 600 s");
        assert!(started.elapsed() >= Duration::from_secs(5));
        let done = tokio::time::timeout(Duration::from_secs(1), until_cut(async {}, &CancellationToken::new())).await;
        assert!(done.is_ok());
    }
}
