//! The threads that serve client connections: one single-threaded runtime
//! per core, and each connection stays on the one it was given.
//!
//! On tokio's work-stealing runtime, every wake of a task while another
//! worker sleeps also wakes that worker to look for work (a futex call and
//! a context switch), and tasks drift between cores. A proxied request wakes
//! a task several times: the client's connection, the upstream's, the body
//! between them. Measured on the intercepted h2 leg, that was two futex
//! calls per request and about 12% of its CPU. Here a connection, and the
//! upstream connections it opens, run on one thread; the threads share
//! nothing but the [`Context`](crate::proxy::context::Context), so the cores
//! still serve different connections in parallel.
//!
//! Each worker keeps its own pooled upstream connections
//! (`core::slot::PerWorker`), so a request never wakes a connection task on
//! another thread. A client's connections go to one home worker, chosen by
//! its address, so they share that pool, while it has at most
//! [`HOME_SLACK`] more open connections than the least busy worker; beyond
//! that they go to the least busy, so one client's many connections, or
//! many long tunnels, still spread over the cores.
//! [`Workers::here`] keeps everything on the caller's runtime instead (tests,
//! and a library user with a runtime of its own).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

use crate::core::slot;

/// How many more open connections than the least busy worker a client's
/// home worker may have and still take the client's next connection. A
/// client's connections share a worker, and so its pooled upstream
/// connections (each worker keeps its own), while its load stays within
/// this of the others; beyond, its connections spread.
const HOME_SLACK: usize = 2;

/// The home worker of `client`'s connections, of `count`.
fn home_of(client: IpAddr, count: usize) -> usize {
    let n = match client {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    (n % count as u128) as usize
}

/// Where connections are served.
#[derive(Debug, Default)]
pub struct Workers {
    /// Empty: the runtime that runs the accept loop.
    threads: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    /// Connections placed here and not yet finished.
    open: Arc<AtomicUsize>,
    /// Dropped with the worker: its thread ends.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A connection's place on a worker, given back when its task ends.
#[derive(Debug)]
struct Placed(Arc<AtomicUsize>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Serve on the runtime that accepts.
    pub fn here() -> Workers {
        Workers::default()
    }

    /// `count` threads (at least one), named `modgate-worker-N`, each with
    /// a single-threaded runtime. A worker runs until these `Workers` are
    /// dropped; then the tasks still on it are dropped with its runtime.
    pub fn start(count: usize) -> io::Result<Workers> {
        let mut threads = Vec::with_capacity(count.max(1));
        for n in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("modgate-worker-{n}"))
                .spawn(move || {
                    slot::enter(n);
                    let _ = runtime.block_on(stopped);
                })?;
            threads.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                _stop: stop,
            });
        }
        slot::started(threads.len());
        Ok(Workers { threads })
    }

    /// One worker per core the process may use.
    pub fn per_core() -> io::Result<Workers> {
        Workers::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// How many threads serve connections; 0 for [`Workers::here`].
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// Open connections on each worker, in order.
    pub fn open(&self) -> Vec<usize> {
        self.threads.iter().map(|w| w.open.load(Ordering::Relaxed)).collect()
    }

    /// The worker for a new connection from `client`: the client's home
    /// worker (chosen by its address), unless that one has more than
    /// [`HOME_SLACK`] open connections beyond the least busy, which then
    /// takes it.
    fn choose(&self, client: IpAddr) -> Option<&Worker> {
        let least = self.threads.iter().min_by_key(|w| w.open.load(Ordering::Relaxed))?;
        let home = &self.threads[home_of(client, self.threads.len())];
        let (home_open, least_open) = (home.open.load(Ordering::Relaxed), least.open.load(Ordering::Relaxed));
        Some(if home_open <= least_open + HOME_SLACK {
            home
        } else {
            least
        })
    }

    /// Runs `serve(stream)`, a connection from `client`, as a task of
    /// `tracker`: on the worker [`Workers::choose`] picks, or here. The
    /// socket moves to that worker's reactor; if it cannot, the connection
    /// is closed and the error logged.
    pub fn spawn<F>(
        &self,
        tracker: &TaskTracker,
        stream: TcpStream,
        client: IpAddr,
        serve: impl FnOnce(TcpStream) -> F + Send + 'static,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self.choose(client) else {
            tracker.spawn(serve(stream));
            return;
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection to a worker; closed it");
                return;
            }
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        let placed = Placed(worker.open.clone());
        tracker.spawn_on(
            async move {
                let _placed = placed;
                match TcpStream::from_std(stream) {
                    Ok(stream) => serve(stream).await,
                    Err(e) => tracing::warn!(error = %e, "a worker cannot take a connection; closed it"),
                }
            },
            &worker.handle,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// A connected socket (the accepted end) and its client end.
    async fn connection(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (accepted, client)
    }

    /// Places one connection from 127.0.0.1 whose task reports its thread's name and the
    /// bytes it reads, and holds its place until `release` fires.
    async fn place_one(
        workers: &Workers,
        tracker: &TaskTracker,
        listener: &TcpListener,
    ) -> (TcpStream, oneshot::Receiver<(String, Vec<u8>)>, oneshot::Sender<()>) {
        use tokio::io::AsyncReadExt;
        let (accepted, client) = connection(listener).await;
        let (report, reported) = oneshot::channel();
        let (release, released) = oneshot::channel::<()>();
        workers.spawn(
            tracker,
            accepted,
            Ipv4Addr::LOCALHOST.into(),
            move |mut stream| async move {
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf).await.unwrap();
                let name = std::thread::current().name().unwrap_or("").to_string();
                let _ = report.send((name, buf.to_vec()));
                let _ = released.await;
            },
        );
        (client, reported, release)
    }

    /// Places a connection and waits until its task has read and reported.
    async fn served_on(
        workers: &Workers,
        tracker: &TaskTracker,
        listener: &TcpListener,
    ) -> (String, oneshot::Sender<()>) {
        use tokio::io::AsyncWriteExt;
        let (mut client, served, release) = place_one(workers, tracker, listener).await;
        client.write_all(b"hello").await.unwrap();
        let (thread, read) = served.await.unwrap();
        assert_eq!(read, b"hello");
        // The client end may close: the task holds its place until released.
        (thread, release)
    }

    #[tokio::test]
    async fn a_clients_connections_share_its_home_worker_until_it_is_busier_than_the_slack() {
        let workers = Workers::start(2).unwrap();
        let home = format!("modgate-worker-{}", home_of(Ipv4Addr::LOCALHOST.into(), 2));
        let other = format!("modgate-worker-{}", 1 - home_of(Ipv4Addr::LOCALHOST.into(), 2));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tracker = TaskTracker::new();
        let mut held = Vec::new();
        // HOME_SLACK + 1 connections fit at home: 0, 1 and 2 open there
        // against 0 elsewhere are within the slack.
        for n in 0..=HOME_SLACK {
            let (thread, release) = served_on(&workers, &tracker, &listener).await;
            assert_eq!(thread, home, "connection {n}");
            held.push(release);
        }
        // The next goes to the least busy, and the one after that home
        // again (3 against 1).
        let (thread, release) = served_on(&workers, &tracker, &listener).await;
        assert_eq!(thread, other);
        held.push(release);
        let (thread, release) = served_on(&workers, &tracker, &listener).await;
        assert_eq!(thread, home);
        held.push(release);
        let mut open = workers.open();
        open.sort_unstable();
        assert_eq!(open, vec![1, 4]);

        // Every worker's tasks end under the one tracker, and give their
        // places back.
        for release in held {
            release.send(()).unwrap();
        }
        tracker.close();
        tracker.wait().await;
        assert_eq!(workers.open(), vec![0, 0]);
    }

    #[test]
    fn homes_spread_addresses_over_the_workers() {
        let homes: std::collections::BTreeSet<usize> = (1..=8u8)
            .map(|n| home_of(Ipv4Addr::new(10, 0, 0, n).into(), 4))
            .collect();
        assert_eq!(homes.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert!(home_of("2001:db8::7".parse().unwrap(), 3) < 3);
    }

    #[tokio::test]
    async fn without_workers_a_connection_is_served_on_the_callers_runtime() {
        use tokio::io::AsyncWriteExt;
        let workers = Workers::here();
        assert_eq!(workers.count(), 0);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tracker = TaskTracker::new();
        let (mut client, served, release) = place_one(&workers, &tracker, &listener).await;
        client.write_all(b"hello").await.unwrap();
        let here = std::thread::current().name().unwrap_or("").to_string();
        assert_eq!(served.await.unwrap(), (here, b"hello".to_vec()));
        release.send(()).unwrap();
        tracker.close();
        tracker.wait().await;
    }
}
