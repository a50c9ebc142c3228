//! Absolute-form forwarding: GET/POST, 100 MB streamed each way, keep-alive
//! reuse, and header hygiene.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

use crate::support::*;

const HUNDRED_MB: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

#[tokio::test]
async fn get_and_post_reach_the_origin_with_hop_by_hop_headers_removed() {
    let origin = start_origin(Arc::new(|req| {
        Box::pin(async move {
            let method = req.method().clone();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Response::new(full(format!("{method} {}", String::from_utf8_lossy(&body))))
        })
    }))
    .await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let url = format!("http://{}/echo?q=1", origin.addr);

    let mut conn = ProxyConn::open(proxy.addr).await;
    let resp = conn
        .send(
            Request::get(&url)
                .header("proxy-authorization", "Basic c2VjcmV0")
                .header("proxy-connection", "keep-alive")
                .header("connection", "x-hop")
                .header("x-hop", "1")
                .header("x-end", "2")
                .body(full(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["via"], "1.1 modgate");
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "GET ");
    let seen = origin.last_headers.lock().unwrap().clone().unwrap();
    for gone in ["proxy-authorization", "proxy-connection", "x-hop"] {
        assert!(!seen.contains_key(gone), "{gone} must not reach the origin: {seen:?}");
    }
    assert_eq!(seen["x-end"], "2");
    // Requests name this process, so one that comes back is a loop.
    assert_eq!(seen["via"], modgate::core::via::sent(http::Version::HTTP_11));
    assert!(seen["via"].to_str().unwrap().starts_with("1.1 modgate ("));
    assert_eq!(seen["host"], origin.addr.to_string());

    let resp = conn.send(Request::post(&url).body(full("payload")).unwrap()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "POST payload");
    proxy.stop().await;
}

#[tokio::test]
async fn keep_alive_connections_are_reused_on_both_sides() {
    let origin = start_text_origin("ok").await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let url = format!("http://{}/", origin.addr);
    let mut conn = ProxyConn::open(proxy.addr).await;
    for _ in 0..5 {
        let resp = conn.send(Request::get(&url).body(full("")).unwrap()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        1,
        "the upstream connection is pooled"
    );
    proxy.stop().await;
}

/// The origin sends one chunk, then waits until the client has received it
/// before sending the remaining 100 MB. A proxy that buffered whole bodies
/// would deadlock here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_download_streams_through() {
    let first_seen = Arc::new(Notify::new());
    let gate = first_seen.clone();
    let origin = start_origin(Arc::new(move |_req| {
        let gate = gate.clone();
        Box::pin(async move {
            let (tx, body) = chan_body(4);
            tokio::spawn(async move {
                tx.send(pattern_chunk(0, CHUNK)).await.unwrap();
                gate.notified().await;
                let mut sent = CHUNK as u64;
                while sent < HUNDRED_MB {
                    let n = CHUNK.min((HUNDRED_MB - sent) as usize);
                    if tx.send(pattern_chunk(sent, n)).await.is_err() {
                        return;
                    }
                    sent += n as u64;
                }
            });
            let mut resp = Response::new(body);
            resp.headers_mut().insert("content-length", HUNDRED_MB.into());
            resp
        })
    }))
    .await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let mut conn = ProxyConn::open(proxy.addr).await;
    let resp = conn
        .send(
            Request::get(format!("http://{}/big", origin.addr))
                .body(full(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], HUNDRED_MB.to_string());
    let mut body = resp.into_body();
    let mut got = 0u64;
    let mut notified = false;
    while let Some(frame) = tokio::time::timeout(STEP, body.frame())
        .await
        .expect("streamed in time")
    {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            // Every byte, not a sample: a proxy that dropped or repeated a
            // stretch inside a frame must fail.
            if let Some(bad) = pattern_mismatch(got, data) {
                panic!("byte {bad} differs");
            }
            got += data.len() as u64;
            if !notified {
                first_seen.notify_one();
                notified = true;
            }
        }
    }
    assert_eq!(got, HUNDRED_MB);
    proxy.stop().await;
}

/// The client sends one chunk, and sends the remaining 100 MB only once the
/// origin has received it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_streams_through() {
    let (first_tx, first_rx) = oneshot::channel::<()>();
    let first_tx = Arc::new(std::sync::Mutex::new(Some(first_tx)));
    let origin = start_origin(Arc::new(move |req| {
        let first_tx = first_tx.clone();
        Box::pin(async move {
            let mut body = req.into_body();
            let mut got = 0u64;
            let mut ok = true;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    ok = false;
                    break;
                };
                if let Some(data) = frame.data_ref() {
                    ok &= pattern_mismatch(got, data).is_none();
                    got += data.len() as u64;
                    if let Some(tx) = first_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
            }
            Response::new(full(format!("{got} {ok}")))
        })
    }))
    .await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let (tx, body) = chan_body(4);
    let feeder = tokio::spawn(async move {
        tx.send(pattern_chunk(0, CHUNK)).await.unwrap();
        tokio::time::timeout(STEP, first_rx)
            .await
            .expect("origin saw the first chunk while the upload was open")
            .unwrap();
        let mut sent = CHUNK as u64;
        while sent < HUNDRED_MB {
            let n = CHUNK.min((HUNDRED_MB - sent) as usize);
            tx.send(pattern_chunk(sent, n)).await.unwrap();
            sent += n as u64;
        }
    });
    let mut conn = ProxyConn::open(proxy.addr).await;
    let req = Request::post(format!("http://{}/sink", origin.addr))
        .body(body)
        .unwrap();
    let resp = conn.send(req).await;
    feeder.await.unwrap();
    assert_eq!(resp.status(), 200);
    let text: Bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, format!("{HUNDRED_MB} true"));
    proxy.stop().await;
}

/// The upstream's time to answer (`timeouts.header`, 1 s here) starts when
/// it has the whole request: an upload that takes three times as long is
/// not cut off with a 504 that blames the upstream. An origin that then
/// says nothing still gets its 504 about a second after the body.
#[tokio::test]
async fn a_slow_upload_is_not_the_upstreams_timeout() {
    let origin = start_origin(Arc::new(|req| {
        Box::pin(async move {
            let silent = req.uri().path() == "/silent";
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if silent {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Response::new(full(format!("got {}", String::from_utf8_lossy(&body))))
        })
    }))
    .await;
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nheader = \"1s\"\n")).await;
    let trickled = |path: &str| {
        let (tx, body) = chan_body(1);
        tokio::spawn(async move {
            for b in b"0123456789abcdefghijklmnopqrstu".chunks(1) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tx.send(Bytes::copy_from_slice(b)).await.is_err() {
                    return;
                }
            }
        });
        Request::post(format!("http://{}{path}", origin.addr))
            .header("content-length", "31")
            .body(body)
            .unwrap()
    };
    let mut conn = ProxyConn::open(proxy.addr).await;
    let started = Instant::now();
    let resp = conn.send(trickled("/echo")).await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(3000));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "got 0123456789abcdefghijklmnopqrstu");

    let mut conn = ProxyConn::open(proxy.addr).await;
    let started = Instant::now();
    let resp = conn.send(trickled("/silent")).await;
    let waited = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert!(
        waited >= Duration::from_millis(4000) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"did not answer within 1s\n"), "{body:?}");
    proxy.stop().await;
}

/// A request body whose chunked framing is malformed is the client's
/// error: a 400 naming the request body, not a 502 naming the upstream.
#[tokio::test]
async fn a_malformed_chunked_request_body_is_the_clients_400() {
    let origin = start_text_origin("unused").await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    for (chunked, after) in [
        ("5\nhello\n0\n\n", 0),
        ("zz\r\n", 0),
        ("5\r\nhello\r\nfffffffffffffffffffffff\r\n", 5),
    ] {
        let req = format!(
            "POST http://{}/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}",
            origin.addr
        );
        let reply = raw_exchange(proxy.addr, req.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(
            body.starts_with(&format!(
                "modgate: bad request: the request body from the client failed after {after} bytes: "
            )),
            "{reply}"
        );
    }
    proxy.stop().await;
}

/// `timeouts.idle` on the client side: a keep-alive connection on which
/// nothing moves is closed by modgate after the idle time, not before.
#[tokio::test]
async fn an_idle_keep_alive_client_connection_is_closed() {
    let origin = start_text_origin("ok").await;
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nidle = \"600ms\"\n")).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(format!("GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut two = [0u8; 2];
    s.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"ok");
    let answered = Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(STEP, s.read_to_end(&mut rest))
        .await
        .expect("modgate closes an idle connection")
        .unwrap_or(0);
    let idle = answered.elapsed();
    assert_eq!(n, 0, "nothing more was sent: {rest:?}");
    assert!(
        idle >= Duration::from_millis(500) && idle < Duration::from_secs(5),
        "closed after {idle:?}"
    );
    proxy.stop().await;
}

/// `timeouts.idle` on the upstream side: a pooled keep-alive connection
/// to an origin is closed once it has been idle that long; one in use
/// again before then is reused.
#[tokio::test]
async fn idle_pooled_upstream_connections_are_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                // Answers each request head with "ok", keeping the
                // connection; reports when the peer closes it.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                    }
                }
                let _ = closed_tx.send((n, Instant::now()));
            });
        }
    });
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nidle = \"800ms\"\n")).await;
    let url = format!("http://{origin}/");
    for _ in 0..3 {
        let (status, _, body) = get_via(proxy.addr, &url).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    }
    let last_used = Instant::now();
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused while in use");
    let (which, at) = tokio::time::timeout(STEP, closed.recv())
        .await
        .expect("the idle upstream connection is closed")
        .unwrap();
    assert_eq!(which, 0);
    let idle = at - last_used;
    assert!(
        idle >= Duration::from_millis(700) && idle < Duration::from_secs(5),
        "closed after {idle:?} idle"
    );
    proxy.stop().await;
}

/// What an ALPN origin saw: each request's protocol and whether it carried
/// a Host header, and the TCP connections it accepted.
struct AlpnOrigin {
    addr: std::net::SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<(http::Version, bool)>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections served and then closed.
    closed: Arc<std::sync::atomic::AtomicUsize>,
    /// Whether each h2 connection serves one request only.
    once: bool,
}

/// A TLS origin for `localhost` offering `alpn`, serving h2 or HTTP/1.1 as
/// the handshake chose. Like nginx, it answers 400 ("duplicate host") to an
/// h2 request with a Host header beside `:authority`. With `once`, it
/// closes each h2 connection after one request (GOAWAY).
async fn start_alpn_origin(pki: &TestPki, alpn: &[&[u8]], once: bool) -> AlpnOrigin {
    let acceptor = pki.acceptor(&["localhost"], alpn);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (log, counted, ended) = (seen.clone(), connections.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (acceptor, log, ended) = (acceptor.clone(), log.clone(), ended.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let (answered, mut served) = tokio::sync::mpsc::unbounded_channel::<()>();
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let _ = answered.send(());
                    let host = req.headers().contains_key("host");
                    log.lock().unwrap().push((req.version(), host));
                    let duplicate = host && req.version() == http::Version::HTTP_2;
                    async move {
                        let mut resp =
                            Response::new(full(if duplicate { "duplicate host\n" } else { "alpn origin\n" }));
                        if duplicate {
                            *resp.status_mut() = http::StatusCode::BAD_REQUEST;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                if h2 {
                    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        Some(()) = served.recv(), if once => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    AlpnOrigin {
        addr,
        seen,
        connections,
        closed,
        once,
    }
}

/// Two intercepted `direct` GETs, each in a tunnel of its own, to `origin`
/// through a modgate trusting `pki`; both responses.
async fn two_intercepted_gets(pki: &TestPki, origin: &AlpnOrigin) -> [String; 2] {
    let (dir, served) = crate::parent::intercepting_localhost(pki).await;
    let d = dir.path();
    let target = format!("localhost:{}", origin.addr.port());
    let trust = crate::parent::trusting(&d.join("ca/modgate-ca.pem"));
    let first = crate::parent::tls_get(served.addr, &target, trust.clone()).await;
    if origin.once {
        eventually("the origin closed its first connection", || {
            origin.closed.load(Ordering::SeqCst) == 1
        })
        .await;
    }
    let second = crate::parent::tls_get(served.addr, &target, trust).await;
    [first, second]
}

/// An origin that takes the TCP connection and never answers the
/// ClientHello is a 504 naming the stalled TLS handshake after
/// `timeouts.connect`, not a TCP connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_tls_handshake_is_a_504_naming_the_handshake() {
    let pki = TestPki::new("Stalled Handshake Root");
    let (silent, _task) = start_silent_origin().await;
    let (dir, served) = crate::parent::intercepting_localhost_with(&pki, "[timeouts]\nconnect = \"1s\"\n").await;
    let trust = crate::parent::trusting(&dir.path().join("ca/modgate-ca.pem"));
    let started = Instant::now();
    let response = crate::parent::tls_get(served.addr, &format!("localhost:{}", silent.port()), trust).await;
    let waited = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 504"), "{response}");
    let line = format!(
        "modgate: TLS handshake with upstream https://localhost:{port} (127.0.0.1:{port}) did not finish within 1s",
        port = silent.port()
    );
    assert!(response.contains(&line), "{response}");
    assert!(waited < Duration::from_secs(8), "answered after {waited:?}");
}

/// An h2-only origin (the `h2` crate's server) that refuses the first
/// `refuse` streams with `REFUSED_STREAM` and answers the rest; counts the
/// streams it saw.
async fn start_refusing_h2_origin(
    pki: &TestPki,
    refuse: usize,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let acceptor = pki.acceptor(&["localhost"], &[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = streams.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    if seen.fetch_add(1, Ordering::SeqCst) < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let Ok(mut body) = respond.send_response(Response::new(()), false) else {
                        return;
                    };
                    let _ = body.send_data(Bytes::from_static(b"answered after a refusal\n"), true);
                }
            });
        }
    });
    (addr, streams)
}

/// An h2 upstream that refuses a stream (`REFUSED_STREAM`: at its stream
/// limit, or going away) has not processed it: a GET is sent once more
/// and answered; a second refusal is the answer, a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_a_refused_h2_stream_is_sent_once_more() {
    let pki = TestPki::new("Refused Stream Root");
    let (dir, served) = crate::parent::intercepting_localhost(&pki).await;
    let trust = crate::parent::trusting(&dir.path().join("ca/modgate-ca.pem"));
    let (origin, streams) = start_refusing_h2_origin(&pki, 1).await;
    let response = crate::parent::tls_get(served.addr, &format!("localhost:{}", origin.port()), trust.clone()).await;
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("answered after a refusal\n"),
        "{response}"
    );
    assert_eq!(streams.load(Ordering::SeqCst), 2, "refused once, sent once more");

    let (origin, streams) = start_refusing_h2_origin(&pki, usize::MAX).await;
    let response = crate::parent::tls_get(served.addr, &format!("localhost:{}", origin.port()), trust).await;
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");
    assert_eq!(streams.load(Ordering::SeqCst), 2, "sent twice at most");
}

/// Asserts that each response is the ALPN origin's answer.
fn assert_answered(responses: &[String]) {
    for response in responses {
        assert!(
            response.starts_with("HTTP/1.1 200") && response.ends_with("alpn origin\n"),
            "{response}"
        );
    }
}

/// Upstream, modgate speaks HTTP/1.1 over pooled keep-alive connections even
/// to an origin that offers h2 as well (issue 13: cheaper per request than
/// h2's streams).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_offering_h2_and_http11_gets_http11_over_one_pooled_connection() {
    let pki = TestPki::new("ALPN Origin Root");
    let origin = start_alpn_origin(&pki, &[b"h2", b"http/1.1"], false).await;
    assert_answered(&two_intercepted_gets(&pki, &origin).await);
    let http11 = (http::Version::HTTP_11, true);
    assert_eq!(origin.seen.lock().unwrap().as_slice(), &[http11, http11]);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1, "the connection is pooled");
}

/// An origin that speaks only h2 refuses a handshake offering http/1.1; it
/// is asked again with h2, and its requests carry `:authority` alone (a
/// Host header beside it makes servers such as nginx answer 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_speaking_only_h2_gets_h2_with_no_host_beside_authority() {
    let pki = TestPki::new("H2 Origin Root");
    let origin = start_alpn_origin(&pki, &[b"h2"], false).await;
    assert_answered(&two_intercepted_gets(&pki, &origin).await);
    let h2 = (http::Version::HTTP_2, false);
    assert_eq!(origin.seen.lock().unwrap().as_slice(), &[h2, h2]);
    // The refused handshake, then one h2 connection both requests share.
    assert_eq!(origin.connections.load(Ordering::SeqCst), 2);
}

/// The next connection to an origin that refused http/1.1 offers h2 at
/// once: the refusal is remembered, not met again for every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_refused_http11_is_offered_h2_at_once_next_time() {
    let pki = TestPki::new("H2 Once Origin Root");
    // Each connection serves one request, so the second request needs a
    // connection of its own.
    let origin = start_alpn_origin(&pki, &[b"h2"], true).await;
    assert_answered(&two_intercepted_gets(&pki, &origin).await);
    // The refused handshake, then an h2 connection for each request.
    assert_eq!(origin.connections.load(Ordering::SeqCst), 3);
}

/// An origin that refuses both http/1.1 and h2 (a hostile or broken one)
/// gets one retry, not a loop: each request ends in a one-line 502 naming
/// the origin and the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_refusing_every_protocol_gets_a_502_after_one_retry() {
    let pki = TestPki::new("No Protocol Origin Root");
    let origin = start_alpn_origin(&pki, &[b"acme/1"], false).await;
    let line = format!(
        "modgate: TLS handshake with upstream https://localhost:{} failed: received fatal alert: NoApplicationProtocol",
        origin.addr.port()
    );
    for response in two_intercepted_gets(&pki, &origin).await {
        assert!(response.starts_with("HTTP/1.1 502"), "{response}");
        assert!(response.contains(&line), "{response}");
    }
    assert!(origin.seen.lock().unwrap().is_empty());
    // http/1.1 refused, then h2 refused (and remembered); the second
    // request asks with h2 alone once.
    assert_eq!(origin.connections.load(Ordering::SeqCst), 3);
}
