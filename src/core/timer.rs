//! modgate's timeouts, kept on a timer thread of their own instead of the
//! runtime that serves connections.
//!
//! Tokio's workers sleep in `epoll_wait`. While their runtime holds any
//! pending timer, each of those sleeps carries a timeout, and the kernel
//! starts and cancels a high-resolution timer around it: two of them per
//! proxied request. A proxy always holds timers (idle and header timeouts on
//! every connection), so they are registered here, with a current-thread
//! runtime whose only driver is the timer, and the serving runtime's workers
//! sleep without a timeout. When a deadline passes, this thread wakes the
//! task that waits for it, wherever that task runs.
//!
//! The timer thread also ticks every second: tokio wakes a timer driver
//! whenever a new deadline is earlier than the one it sleeps towards, and
//! with the tick no deadline of a second or more ever is, so a request's
//! timeouts register without waking anyone.
//!
//! Only the serving path uses these; one-shot commands (`inspect`,
//! `doctor`) keep tokio's own timer.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::runtime::Handle;
use tokio::time::{Instant, Sleep, Timeout};

/// How far ahead the timer thread always holds a deadline.
const TICK: Duration = Duration::from_secs(1);

/// The timer thread's runtime; `None` if it could not start, and then the
/// timers fall back to the runtime they are created on.
static TIMERS: LazyLock<Option<Handle>> = LazyLock::new(start);

fn start() -> Option<Handle> {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!(error = %e, "no timer thread; timeouts stay on the serving runtime");
            return None;
        }
    };
    let handle = runtime.handle().clone();
    let spawned = std::thread::Builder::new().name("modgate-timer".into()).spawn(move || {
        runtime.block_on(async {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
            }
        })
    });
    match spawned {
        Ok(_) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "no timer thread; timeouts stay on the serving runtime");
            None
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Unit tests keep their own runtime's (often paused) clock, unless a
    /// test of this module asks for the timer thread.
    static THREAD_IN_TESTS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The timer thread's runtime.
fn timer_thread() -> Option<&'static Handle> {
    #[cfg(test)]
    if !THREAD_IN_TESTS.get() {
        return None;
    }
    TIMERS.as_ref()
}

/// Runs `make` with the timer thread's runtime as the current one, so the
/// timer it creates registers there.
fn on_timer_thread<T>(make: impl FnOnce() -> T) -> T {
    match timer_thread() {
        Some(handle) => {
            let _entered = handle.enter();
            make()
        }
        None => make(),
    }
}

/// [`tokio::time::sleep`], on the timer thread.
pub fn sleep(duration: Duration) -> Sleep {
    on_timer_thread(|| tokio::time::sleep(duration))
}

/// [`tokio::time::sleep_until`], on the timer thread.
pub fn sleep_until(deadline: Instant) -> Sleep {
    on_timer_thread(|| tokio::time::sleep_until(deadline))
}

/// [`tokio::time::timeout`], on the timer thread.
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    on_timer_thread(|| tokio::time::timeout(duration, future))
}

/// [`tokio::time::timeout_at`], on the timer thread.
pub fn timeout_at<F: IntoFuture>(deadline: Instant, future: F) -> Timeout<F::IntoFuture> {
    on_timer_thread(|| tokio::time::timeout_at(deadline, future))
}

/// hyper's timer (header-read timeouts, HTTP/2 keep-alive, the pool's
/// idle sweep), on the timer thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timers;

pin_project! {
    /// A [`Sleep`] as hyper's [`hyper::rt::Sleep`].
    #[derive(Debug)]
    struct HyperSleep {
        #[pin]
        inner: Sleep,
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().inner.poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for Timers {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep { inner: sleep(duration) })
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep {
            inner: sleep_until(deadline.into()),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            // The sleep stays registered with the timer thread.
            Some(own) => own.project().inner.reset(deadline.into()),
            None => *sleep = self.sleep_until(deadline),
        }
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // This test's runtime has its clock paused: its own timers would fire
    // at once. These run on the timer thread, in real time.
    #[tokio::test(start_paused = true)]
    async fn timers_fire_on_the_timer_thread() {
        THREAD_IN_TESTS.set(true);
        assert!(timer_thread().is_some(), "the timer thread starts");
        let started = std::time::Instant::now();
        sleep(Duration::from_millis(30)).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        let started = std::time::Instant::now();
        let waited = timeout(Duration::from_millis(30), std::future::pending::<()>()).await;
        assert!(waited.is_err(), "a pending future times out");
        assert!(started.elapsed() >= Duration::from_millis(30));
        let done = timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(done.ok(), Some(7));
        let at = Instant::now() + Duration::from_millis(20);
        assert!(timeout_at(at, std::future::pending::<()>()).await.is_err());
        sleep_until(Instant::now() + Duration::from_millis(1)).await;
    }

    #[tokio::test]
    async fn hyper_sleeps_reset_in_place() {
        use hyper::rt::Timer;
        THREAD_IN_TESTS.set(true);
        let timers = Timers;
        let mut sleep = timers.sleep(Duration::from_secs(3600));
        timers.reset(&mut sleep, std::time::Instant::now() + Duration::from_millis(20));
        let woke = tokio::time::timeout(Duration::from_secs(5), sleep).await;
        assert!(woke.is_ok(), "the reset deadline fires");
        assert!(timers.now() <= std::time::Instant::now());
    }
}
