//! Many streams on one intercepted h2 connection, as `go` opens them
//! through one tunnel to proxy.golang.org: they are all in flight at once,
//! move bodies both ways under h2 flow control, and do not hold each other
//! up.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Barrier;

use crate::support::*;

/// Requests that wait at the origin until all of them have arrived.
const TOGETHER: usize = 24;
/// The upload and the download, each well past h2's 64 KiB initial window.
const UPLOAD: u64 = 6 * 1024 * 1024;
const DOWNLOAD: u64 = 24 * 1024 * 1024;

/// The origin: `/together/N` answers once `TOGETHER` such requests are
/// waiting, `/upload` checks the patterned body it gets, `/download` sends
/// a patterned body.
async fn start_origin(pki: &TestPki) -> std::net::SocketAddr {
    let acceptor = pki.acceptor(&["localhost"], &[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let barrier = Arc::new(Barrier::new(TOGETHER));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, barrier) = (acceptor.clone(), barrier.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let barrier = barrier.clone();
                    async move { Ok::<_, Infallible>(answer(req, &barrier).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(req: Request<Incoming>, barrier: &Barrier) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    if let Some(n) = path.strip_prefix("/together/") {
        barrier.wait().await;
        return Response::new(full(format!("together {n}")));
    }
    if path == "/upload" {
        let got = drain_checking_pattern(req.into_body()).await;
        return Response::new(full(format!("uploaded {got}")));
    }
    let (tx, body) = chan_body(4);
    tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < DOWNLOAD {
            let len = (DOWNLOAD - sent).min(64 * 1024) as usize;
            if tx.send(pattern_chunk(sent, len)).await.is_err() {
                return;
            }
            sent += len as u64;
        }
    });
    Response::new(body)
}

/// An h2 connection inside a tunnel to `target` through `proxy`, which
/// intercepts it with the CA in `dir/ca`.
async fn h2_inside(
    proxy: std::net::SocketAddr,
    dir: &std::path::Path,
    target: &str,
) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let (stream, head) = connect_via(proxy, target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = (*crate::parent::trusting(&dir.join("ca/modgate-ca.pem"))).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tls_connect(stream, Arc::new(tls), "localhost").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_one_h2_connection_are_all_in_flight_and_move_bodies_both_ways() {
    let pki = TestPki::new("H2 Streams Origin Root");
    let origin = start_origin(&pki).await;
    let (dir, served) = crate::parent::intercepting_localhost(&pki).await;
    let d = dir.path();

    let target = format!("localhost:{}", origin.port());
    let sender = h2_inside(served.addr, d, &target).await;

    let url = |path: &str| format!("https://{target}{path}");
    let get = |path: String| {
        let mut sender = sender.clone();
        let req = Request::get(url(&path)).body(full("")).unwrap();
        async move { sender.send_request(req).await.unwrap() }
    };
    // The barrier at the origin lets none of these through until every one
    // of them is there: a connection that served its streams one after
    // another would never answer.
    let together = futures_util::future::join_all((0..TOGETHER).map(|n| {
        let resp = get(format!("/together/{n}"));
        async move {
            let resp = resp.await;
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, Bytes::from(format!("together {n}")));
        }
    }));
    let upload = {
        let mut sender = sender.clone();
        let (tx, body) = chan_body(4);
        tokio::spawn(async move {
            let mut sent = 0u64;
            while sent < UPLOAD {
                let len = (UPLOAD - sent).min(48 * 1024) as usize;
                tx.send(pattern_chunk(sent, len)).await.unwrap();
                sent += len as u64;
            }
        });
        let req = Request::post(url("/upload")).body(body).unwrap();
        async move {
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, Bytes::from(format!("uploaded {UPLOAD}")));
        }
    };
    let download = async {
        let resp = get("/download".into()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(drain_checking_pattern(resp.into_body()).await, DOWNLOAD);
    };
    tokio::time::timeout(STEP, async { tokio::join!(together, upload, download) })
        .await
        .expect("every stream answered");
}

/// One intercepted h2 connection may have at most 100 requests open at
/// once (each can hold an upstream connection): the limit modgate
/// advertises, which go and every h2 client keep to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_h2_connection_advertises_at_most_100_streams() {
    let pki = TestPki::new("H2 Stream Limit Origin Root");
    let origin = start_origin(&pki).await;
    let (dir, served) = crate::parent::intercepting_localhost(&pki).await;
    let target = format!("localhost:{}", origin.port());
    let (stream, head) = connect_via(served.addr, &target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut tls = (*crate::parent::trusting(&dir.path().join("ca/modgate-ca.pem"))).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tls_connect(stream, Arc::new(tls), "localhost").await;
    let (mut sender, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(format!("https://{target}/download")).body(()).unwrap();
    let (resp, _) = sender.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(STEP, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    // The server's SETTINGS have arrived with its first answer.
    assert_eq!(sender.current_max_send_streams(), 100);
}

/// Each stream sent alongside another on one intercepted h2 connection can
/// hold an upstream connection, so it counts against `limits.per_client`
/// as a connection would: one client's streams cannot take every upstream
/// slot from the others. Past the limit a stream gets a 503 naming it; the
/// places come back when the streams end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_alongside_others_count_against_the_clients_limit() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pki = TestPki::new("H2 Stream Places Origin Root");
    // The origin holds each request until the test lets one through.
    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let acceptor = pki.acceptor(&["localhost"], &[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    {
        let (arrived, release) = (arrived.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, arrived, release) = (acceptor.clone(), arrived.clone(), release.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        let (arrived, release) = (arrived.clone(), release.clone());
                        async move {
                            arrived.fetch_add(1, Ordering::SeqCst);
                            release.acquire().await.unwrap().forget();
                            Ok::<_, Infallible>(Response::new(full("held")))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    }
    let (dir, served) = crate::parent::intercepting_localhost_with(&pki, "[limits]\nper_client = 4\n").await;
    let target = format!("localhost:{}", origin.port());
    let sender = h2_inside(served.addr, dir.path(), &target).await;
    let spawn_gets = |n: usize| -> Vec<_> {
        (0..n)
            .map(|i| {
                let mut sender = sender.clone();
                let req = Request::get(format!("https://{target}/hold/{i}"))
                    .body(full(""))
                    .unwrap();
                tokio::spawn(async move {
                    let resp = sender.send_request(req).await.unwrap();
                    let status = resp.status().as_u16();
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    (status, String::from_utf8_lossy(&body).into_owned())
                })
            })
            .collect()
    };
    let until_arrived = |n: usize| {
        let arrived = arrived.clone();
        async move {
            while arrived.load(Ordering::SeqCst) < n {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    // Six at once: the connection's own place and three more reach the
    // origin; the other two are refused.
    let gets = spawn_gets(6);
    tokio::time::timeout(STEP, until_arrived(4))
        .await
        .expect("four reach the origin");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(arrived.load(Ordering::SeqCst), 4, "no more than the limit");
    release.add_permits(4);
    let mut answers = Vec::new();
    for get in gets {
        answers.push(tokio::time::timeout(STEP, get).await.unwrap().unwrap());
    }
    assert_eq!(
        answers.iter().filter(|(s, b)| *s == 200 && b == "held").count(),
        4,
        "{answers:?}"
    );
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(refused.len(), 2, "{answers:?}");
    for (_, body) in refused {
        assert!(
            body.starts_with("modgate: too many connections from 127.0.0.1")
                && body.contains("limits.per_client = 4")
                && body
                    .contains("each request sent alongside another on one connection (HTTP/2) counts as a connection"),
            "{body}"
        );
    }
    // The places came back with the answers: four at once again.
    let gets = spawn_gets(4);
    tokio::time::timeout(STEP, until_arrived(8))
        .await
        .expect("the places came back");
    release.add_permits(4);
    for get in gets {
        let (status, _) = tokio::time::timeout(STEP, get).await.unwrap().unwrap();
        assert_eq!(status, 200);
    }
}
